"""How much of the libraries' own output reaches the terminal: quiet unless asked.

tagger's own lines are its progress and summary. vLLM, torch and transformers add warnings,
info lines and progress bars of their own, from four places: Python `logging`, `warnings`,
tqdm bars, and C++ or child-process writes to stderr. The first three are set here (through
environment variables too, because the engine's worker processes are fresh interpreters that
only inherit the environment); the engine backend sends what its child processes still print
to a log file (tagger.llm.vllm_engine).

Quiet by default; `--verbose` (or TAGGER_LOG=info) shows vLLM's info lines and everything the
libraries print, TAGGER_LOG=debug their debug lines too. A variable the user set always wins.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import MutableMapping

QUIET, INFO, DEBUG = "quiet", "info", "debug"

# Read by vLLM, torch, transformers and tqdm, in this process and in the engine's children.
QUIET_ENV: dict[str, str] = {
    "VLLM_LOGGING_LEVEL": "ERROR",            # the `vllm` logger in every engine process
    "TORCH_CPP_LOG_LEVEL": "ERROR",           # c10 warnings written from C++ ("NUMA binding: ...")
    "PYTHONWARNINGS": "ignore",               # `warnings` in the worker processes (torch deprecations)
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",      # transformers' and the hub's bars ("Loading weights")
    "TQDM_DISABLE": "1",                      # other tqdm bars (GGUF conversion); read when tqdm is imported
}
SHOWN_ENV: dict[str, dict[str, str]] = {
    INFO: {"VLLM_LOGGING_LEVEL": "INFO"},
    DEBUG: {"VLLM_LOGGING_LEVEL": "DEBUG"},
}
# vLLM logs to stdout by default; tagger's stdout carries the results (the segment table).
ALWAYS_ENV: dict[str, str] = {"VLLM_LOGGING_STREAM": "ext://sys.stderr"}

LIBRARY_LOGGERS = ("vllm", "torch", "transformers", "sentence_transformers", "huggingface_hub")
LIBRARY_MODULES = r"(vllm|torch|transformers|sentence_transformers|huggingface_hub)(\.|$)"

_level: str | None = None
_applied: dict[str, str] = {}  # variables tagger itself set, so a later call may change them
_handler: logging.Handler | None = None


def output_level(verbose: bool = False, environ: MutableMapping[str, str] = os.environ) -> str:
    """QUIET, INFO (--verbose or TAGGER_LOG=info) or DEBUG (TAGGER_LOG=debug)."""
    wanted = environ.get("TAGGER_LOG", "").strip().lower()
    if wanted == DEBUG:
        return DEBUG
    if verbose or wanted in (INFO, "verbose"):
        return INFO
    return QUIET


def library_environment(level: str, environ: MutableMapping[str, str]) -> dict[str, str]:
    """The variables tagger adds for `level`: none the user already set."""
    wanted = {**ALWAYS_ENV, **(QUIET_ENV if level == QUIET else SHOWN_ENV[level])}
    return {name: value for name, value in wanted.items() if name not in environ}


def logger_levels(level: str, environ: MutableMapping[str, str]) -> dict[str, int]:
    """Python logger levels for this process. `vllm` follows VLLM_LOGGING_LEVEL as vLLM will set
    it, but already before vLLM's import-time lines (e.g. "Triton is installed, but ...")."""
    vllm_level = logging.getLevelName(environ.get("VLLM_LOGGING_LEVEL", "INFO").upper())
    others = logging.ERROR if level == QUIET else logging.NOTSET
    levels = {name: others for name in LIBRARY_LOGGERS}
    levels["vllm"] = vllm_level if isinstance(vllm_level, int) else logging.INFO
    levels["tagger"] = logging.DEBUG if level == DEBUG else logging.NOTSET
    return levels


def configure(verbose: bool = False, environ: MutableMapping[str, str] = os.environ) -> str:
    """Apply the output level; the CLI calls it before the pipeline starts, the vLLM backend
    with the default (quiet unless TAGGER_LOG says otherwise) if nobody did. Returns the level."""
    global _level, _applied, _handler
    for name, value in _applied.items():  # tagger's earlier choice is not the user's
        if environ.get(name) == value:
            del environ[name]
    level = output_level(verbose, environ)
    _applied = library_environment(level, environ)
    environ.update(_applied)
    for name, logger_level in logger_levels(level, environ).items():
        logging.getLogger(name).setLevel(logger_level)
    warnings.filters[:] = [f for f in warnings.filters if getattr(f[3], "pattern", None) != LIBRARY_MODULES]
    getattr(warnings, "_filters_mutated", lambda: None)()  # forget warnings it ignored before
    if level == QUIET:
        warnings.filterwarnings("ignore", module=LIBRARY_MODULES)
    if _handler is not None:
        logging.getLogger("tagger").removeHandler(_handler)
        _handler = None
    if level == DEBUG:
        _handler = logging.StreamHandler(sys.stderr)
        _handler.setFormatter(logging.Formatter("%(levelname)s [%(name)s] %(message)s"))
        logging.getLogger("tagger").addHandler(_handler)
    _level = level
    return level


def current_level() -> str:
    """The level `configure` chose; configures the default first if it was never called."""
    return _level if _level is not None else configure()
