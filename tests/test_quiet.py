"""Library output is quiet unless asked: the settings tagger.logs makes, checked without an engine."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import pytest

from tagger import logs
from tagger.cli import main
from tagger.llm.vllm_engine import _child_output_to, root_cause

FAST = ["--engine", "fake", "--embedder", "hash"]


@pytest.fixture(autouse=True)
def restore_output_settings():
    """configure() changes process-wide state; put it back so other tests see what they saw."""
    names = (*logs.LIBRARY_LOGGERS, "tagger")
    env, levels = dict(os.environ), {name: logging.getLogger(name).level for name in names}
    state, filters = (logs._level, dict(logs._applied), logs._handler), warnings.filters[:]
    yield
    os.environ.clear()
    os.environ.update(env)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    if logs._handler is not None and logs._handler is not state[2]:
        logging.getLogger("tagger").removeHandler(logs._handler)
    logs._level, logs._applied, logs._handler = state
    warnings.filters[:] = filters


@pytest.mark.parametrize("verbose,tagger_log,level", [
    (False, None, logs.QUIET),
    (True, None, logs.INFO),
    (False, "debug", logs.DEBUG),
    (True, "DEBUG", logs.DEBUG),
    (False, "info", logs.INFO),
    (False, "", logs.QUIET),
    (False, "nonsense", logs.QUIET),
])
def test_level_comes_from_the_flag_and_tagger_log(verbose, tagger_log, level):
    environ = {} if tagger_log is None else {"TAGGER_LOG": tagger_log}
    assert logs.output_level(verbose, environ) == level


def test_quiet_settings_reach_every_source_of_lines():
    added = logs.library_environment(logs.QUIET, {})
    assert added["VLLM_LOGGING_LEVEL"] == "ERROR"          # vllm logger, parent and engine processes
    assert added["TORCH_CPP_LOG_LEVEL"] == "ERROR"         # C++ warnings (NUMA binding)
    assert added["PYTHONWARNINGS"] == "ignore"             # torch deprecations in the workers
    assert added["TRANSFORMERS_VERBOSITY"] == "error"
    assert added["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and added["TQDM_DISABLE"] == "1"
    assert added["VLLM_LOGGING_STREAM"] == "ext://sys.stderr"  # stdout is for tagger's results


@pytest.mark.parametrize("level,vllm_level", [(logs.INFO, "INFO"), (logs.DEBUG, "DEBUG")])
def test_verbose_settings_show_the_libraries(level, vllm_level):
    added = logs.library_environment(level, {})
    assert added == {"VLLM_LOGGING_LEVEL": vllm_level, "VLLM_LOGGING_STREAM": "ext://sys.stderr"}


def test_the_users_own_variables_win():
    environ = {"VLLM_LOGGING_LEVEL": "WARNING", "PYTHONWARNINGS": "default"}
    added = logs.library_environment(logs.QUIET, environ)
    assert "VLLM_LOGGING_LEVEL" not in added and "PYTHONWARNINGS" not in added
    assert logs.logger_levels(logs.QUIET, environ)["vllm"] == logging.WARNING


def test_logger_levels_per_level():
    quiet = logs.logger_levels(logs.QUIET, {"VLLM_LOGGING_LEVEL": "ERROR"})
    assert quiet["vllm"] == quiet["transformers"] == quiet["torch"] == logging.ERROR
    assert quiet["tagger"] == logging.NOTSET  # tagger's own warnings still show
    shown = logs.logger_levels(logs.INFO, {"VLLM_LOGGING_LEVEL": "INFO"})
    assert shown["vllm"] == logging.INFO and shown["transformers"] == logging.NOTSET
    assert logs.logger_levels(logs.DEBUG, {"VLLM_LOGGING_LEVEL": "DEBUG"})["tagger"] == logging.DEBUG


def test_configure_applies_and_a_later_call_undoes_only_its_own_settings():
    environ = {"TORCH_CPP_LOG_LEVEL": "INFO"}  # the user's
    assert logs.configure(False, environ) == logs.QUIET
    assert environ["VLLM_LOGGING_LEVEL"] == "ERROR" and environ["PYTHONWARNINGS"] == "ignore"
    assert environ["TORCH_CPP_LOG_LEVEL"] == "INFO"
    assert logging.getLogger("vllm").level == logging.ERROR
    assert logging.getLogger("transformers").level == logging.ERROR
    assert any(getattr(f[3], "pattern", None) == logs.LIBRARY_MODULES for f in warnings.filters)

    assert logs.configure(True, environ) == logs.INFO
    assert environ["VLLM_LOGGING_LEVEL"] == "INFO" and "PYTHONWARNINGS" not in environ
    assert environ["TORCH_CPP_LOG_LEVEL"] == "INFO"
    assert logging.getLogger("vllm").level == logging.INFO
    assert logging.getLogger("transformers").level == logging.NOTSET
    assert not any(getattr(f[3], "pattern", None) == logs.LIBRARY_MODULES for f in warnings.filters)


def test_the_engine_gets_the_default_when_nobody_configured(monkeypatch):
    monkeypatch.delenv("TAGGER_LOG", raising=False)
    monkeypatch.delenv("VLLM_LOGGING_LEVEL", raising=False)
    logs._level, logs._applied = None, {}
    assert logs.current_level() == logs.QUIET
    assert os.environ["VLLM_LOGGING_LEVEL"] == "ERROR"
    os.environ["TAGGER_LOG"] = "debug"
    assert logs.current_level() == logs.QUIET  # once chosen, the engine does not choose again


def test_child_processes_write_into_the_log_and_this_process_gets_its_streams_back(tmp_path, capfd):
    log = tmp_path / "engine.log"
    with _child_output_to(log):
        subprocess.run([sys.executable, "-c", "import os, sys; os.write(2, b'from C\\n'); print('child stdout')"],
                       check=True)
    print("parent after")
    os.write(2, b"parent stderr after\n")
    out, err = capfd.readouterr()
    assert log.read_text().splitlines() == ["from C", "child stdout"]
    assert "parent after" in out and "parent stderr after" in err
    assert "from C" not in err and "child stdout" not in out


def test_no_log_means_no_redirect(capfd):
    with _child_output_to(None):
        subprocess.run([sys.executable, "-c", "import os; os.write(2, b'shown\\n')"], check=True)
    assert "shown" in capfd.readouterr().err


def test_root_cause_is_the_last_exception_line(tmp_path):
    log = tmp_path / "engine.log"
    log.write_text(
        "Triton is installed, but doesn't include CPU backend. Disabling Triton.\n"
        "(EngineCore pid=12) ERROR 12-02 22:20:10 [core.py:88] EngineCore failed to start.\n"
        "(EngineCore pid=12) ERROR 12-02 22:20:10 [core.py:88] Traceback (most recent call last):\n"
        '(EngineCore pid=12) ERROR 12-02 22:20:10 [core.py:88]   File "x.py", line 1, in f\n'
        "(EngineCore pid=12) ERROR 12-02 22:20:10 [core.py:88] ValueError: No available memory for the cache blocks.\n"
        "[W1202 22:20:31.9 utils.cpp:68] Warning: something\n")
    assert root_cause(log) == "ValueError: No available memory for the cache blocks."
    clean = tmp_path / "clean.log"
    clean.write_text("Loading weights\nall fine\n")
    assert root_cause(clean) is None
    assert root_cause(tmp_path / "missing.log") is None


def test_segment_accepts_verbose_and_prints_its_own_lines(capsys, comments_csv, tmp_path):
    for extra in ([], ["--verbose"]):
        code = main(["segment", str(comments_csv), "--out", str(tmp_path / "run"), "--force", *FAST, *extra])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "segments of 12 users" in out
        assert "load: done" in err and "tagging: 12/12 users" in err
        assert "WARNING" not in out + err


def test_verbose_shows_library_warnings_and_quiet_hides_them(caplog):
    """What the flag decides, seen through a library logger and a library warning."""
    def library_noise() -> list:
        caplog.clear()
        with warnings.catch_warnings(record=True) as seen:
            warnings.warn_explicit("reduce_op is deprecated", FutureWarning, "x.py", 1, module="torch.distributed")
        logging.getLogger("vllm.platforms").warning("libtcmalloc is not found")
        return [str(w.message) for w in seen] + [r.getMessage() for r in caplog.records]

    logs.configure(False, {})
    assert library_noise() == []
    logs.configure(True, {})
    assert library_noise() == ["reduce_op is deprecated", "libtcmalloc is not found"]


@pytest.mark.parametrize("name", ["segment", "assign", "rename"])
def test_commands_that_start_an_engine_take_verbose(capsys, name):
    assert main([name, "--help"]) == 0
    assert "--verbose" in capsys.readouterr().out
