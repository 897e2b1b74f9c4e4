from __future__ import annotations

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
