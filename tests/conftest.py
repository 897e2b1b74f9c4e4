from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
AMAZON_SAMPLE = REPO / "eval" / "data" / "amazon-sample.csv"
ZH_SAMPLE = REPO / "eval" / "data" / "zh-sample.csv"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Each test gets its own cache; the converted embedded model is shared by the session."""
    home = tmp_path_factory.mktemp("home")
    shared_models = tmp_path_factory.getbasetemp() / "shared-models"
    shared_models.mkdir(exist_ok=True)
    (home / "models").symlink_to(shared_models, target_is_directory=True)
    monkeypatch.setenv("TAGGER_HOME", str(home))
    monkeypatch.delenv("TAGGER_PROMPTS", raising=False)
    return home


@pytest.fixture
def comments_csv(tmp_path) -> Path:
    """Three clear interest groups, four users each, written like real reviews."""
    topics = {
        "guitar": ["my guitar strings stay in tune", "this guitar amplifier sounds warm", "guitar picks for practice"],
        "dog": ["my dog loves these dog treats", "sturdy dog leash for long walks", "dog bed is soft and washable"],
        "baking": ["baking bread with this flour", "baking pans heat evenly", "cookie baking sheets are nonstick"],
    }
    rows = []
    for topic, texts in topics.items():
        for u in range(4):
            for t, text in enumerate(texts):
                rows.append({"user_id": f"{topic}-{u}", "text": f"{text} {'!' * u}", "ts": 1000 + t, "item": f"{topic} item {t % 2}"})
    path = tmp_path / "comments.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


# README's test command must run every test on a machine set up by `.ci/setup`: a test skipped
# for a missing browser or package means the setup is incomplete, so the run fails. Set
# TAGGER_ALLOW_SKIPS=1 to run a partial suite on purpose (e.g. without the CPU engine extra).
def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and exitstatus == 0 and not os.environ.get("TAGGER_ALLOW_SKIPS"):
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped and not os.environ.get("TAGGER_ALLOW_SKIPS"):
        terminalreporter.write_line(
            f"error: {len(skipped)} test(s) skipped: the setup is incomplete; run `bash .ci/setup .venv` "
            "(it installs every extra and Debian chromium), or set TAGGER_ALLOW_SKIPS=1 to allow skips", red=True)


def pytest_addoption(parser):
    parser.addoption("--reverse", action="store_true", help="run the tests in reverse order (finds order dependence)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--reverse"):
        items.reverse()


@pytest.fixture
def run_dir(comments_csv, tmp_path, capsys) -> Path:
    """A finished run of `comments_csv` (fake engine, hash encoder, no report)."""
    from tagger.cli import main

    out = tmp_path / "run"
    assert main(["segment", str(comments_csv), "--out", str(out), "--no-report", "--engine", "fake",
                 "--embedder", "hash"]) == 0
    capsys.readouterr()
    return out
