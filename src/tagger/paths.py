"""Where tagger keeps converted models and its result cache."""

from __future__ import annotations

import os
from pathlib import Path


def tagger_home() -> Path:
    """`TAGGER_HOME`, else `$XDG_CACHE_HOME/tagger`, else `~/.cache/tagger`."""
    if env := os.environ.get("TAGGER_HOME"):
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "tagger"


def prompts_dir() -> Path:
    """The built-in templates: `prompts/` at the repo root, or the copy installed with the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "prompts", here / "prompts"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("built-in prompts folder not found; reinstall tagger")


def demo_file() -> Path:
    """The shipped sample of real Amazon reviews (see eval/data/SOURCES.md)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "eval" / "data" / "amazon-sample.csv", here / "demo" / "amazon-sample.csv"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("demo data not found; reinstall tagger")
