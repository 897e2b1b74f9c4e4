"""The answer cache and resuming: reruns recompute nothing, edited prompts re-run only their
stage, --no-cache bypasses it, and a run killed with SIGKILL during tagging resumes for real."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tagger.config import RunConfig
from tagger.stages.embedding import create_encoder
from tagger.llm.fake import FakeEngine
from tagger.paths import prompts_dir, tagger_home
from tagger.run.segment import segment
from tests.conftest import AMAZON_SAMPLE


def run(source, engine, **options):
    config = RunConfig(engine="fake", embedder="hash", **options)
    return segment(source, config, engine=engine, encoder=create_encoder("hash", []))


def sent(engine: FakeEngine) -> dict[str, int]:
    """Requests the engine actually received, split by stage (by the system prompt)."""
    counts = {"tag": 0, "name": 0}
    for call in engine.calls:
        for chat in call:
            counts["name" if "name groups" in chat[0]["content"] else "tag"] += 1
    return counts


@pytest.fixture
def prompts(tmp_path) -> Path:
    folder = tmp_path / "prompts"
    shutil.copytree(prompts_dir(), folder)
    return folder


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_unchanged_rerun_sends_nothing_to_the_engine(comments_csv, prompts):
    first, again = FakeEngine(), FakeEngine()
    before = run(comments_csv, first, prompts=prompts)
    after = run(comments_csv, again, prompts=prompts)
    assert sent(first)["tag"] == 12 and sent(first)["name"] >= 2
    assert sent(again) == {"tag": 0, "name": 0}
    assert after.summary.cache.misses == 0
    assert after.summary.cache.hits == before.summary.cache.misses
    pd.testing.assert_frame_equal(before.users, after.users)
    pd.testing.assert_frame_equal(before.segments, after.segments)


def test_editing_the_naming_prompt_reruns_only_naming(comments_csv, prompts):
    run(comments_csv, FakeEngine(), prompts=prompts)
    edit(prompts / "name.toml", "for a marketing team", "for a marketing team of a shop")
    engine = FakeEngine()
    result = run(comments_csv, engine, prompts=prompts)
    assert sent(engine)["tag"] == 0 and sent(engine)["name"] == len(result.segments)
    assert result.summary.cache.misses == len(result.segments)


def test_editing_the_tag_prompt_retags_everyone(comments_csv, prompts):
    run(comments_csv, FakeEngine(), prompts=prompts)
    edit(prompts / "tag.toml", "pick the person's interests", "pick the person's main interests")
    engine = FakeEngine()
    run(comments_csv, engine, prompts=prompts)
    assert sent(engine)["tag"] == 12


def test_no_cache_neither_reads_nor_writes(comments_csv):
    run(comments_csv, FakeEngine())
    db = tagger_home() / "cache.sqlite"
    rows = sqlite3.connect(db).execute("SELECT count(*) FROM answers").fetchone()[0]
    engine = FakeEngine()
    result = run(comments_csv, engine, cache=False)
    assert sent(engine)["tag"] == 12
    assert result.summary.cache.enabled is False and result.summary.cache.hits == 0
    assert sqlite3.connect(db).execute("SELECT count(*) FROM answers").fetchone()[0] == rows


def test_engine_errors_are_not_cached_so_a_rerun_retries_only_them(comments_csv):
    from tagger.llm.base import Completion

    class DogServerDown(FakeEngine):
        def generate(self, chats, *, schemas, params):
            out = super().generate(chats, schemas=schemas, params=params)
            return [Completion(text="", finish_reason="error", error="HTTP 503") if "dog" in chat[-1]["content"] else c
                    for chat, c in zip(chats, out, strict=True)]

    first = run(comments_csv, DogServerDown(), batch_size=4)
    assert first.summary.counts.failed == 4
    assert first.summary.counts.failure_reasons == {"engine error": 4}
    engine = FakeEngine()
    second = run(comments_csv, engine, batch_size=4)
    assert second.summary.counts.failed == 0 and sent(engine)["tag"] == 4


# --- kill -9 and resume, with the real engine ------------------------------------------------


def cache_rows(home: Path) -> int:
    path = home / "cache.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT count(*) FROM answers").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_group_gone(pgid: int, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return True
        time.sleep(0.2)
    return False


def new_home(base: Path, name: str) -> Path:
    home = base / name
    home.mkdir()
    (home / "models").symlink_to((tagger_home() / "models").resolve(), target_is_directory=True)
    return home


def tagger(args, home: Path, timeout: float) -> tuple[int, str, int]:
    """Run the CLI in its own process group; returns (exit code, stderr tail, pgid)."""
    proc = subprocess.Popen([sys.executable, "-m", "tagger", *args], env=os.environ | {"TAGGER_HOME": str(home)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err[-3000:], proc.pid


@pytest.mark.engine
@pytest.mark.timeout(1200)
def test_kill_minus_9_during_tagging_then_resume(tmp_path):
    pytest.importorskip("vllm", reason="the CPU engine extra is not installed")
    from tagger.llm.embedded import embedded_model_dir

    embedded_model_dir()  # convert once, outside the timed runs
    rows = pd.read_csv(AMAZON_SAMPLE, dtype=str, keep_default_na=False)
    users = sorted(rows["user_id"].unique())[:48]
    data = tmp_path / "reviews.csv"
    rows[rows["user_id"].isin(users)].drop(columns=["category"]).to_csv(data, index=False)
    args = [str(data), "--time-col", "timestamp_ms", "--item-col", "product", "--batch-size", "6", "--seed", "0",
            "--no-report"]
    home = new_home(tmp_path, "home")
    out = tmp_path / "run"

    proc = subprocess.Popen([sys.executable, "-m", "tagger", "segment", *args, "--out", str(out)],
                            env=os.environ | {"TAGGER_HOME": str(home)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 420
    try:
        while cache_rows(home) < 12 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
        assert cache_rows(home) >= 12, "tagging did not start in time"
        # kill -9 the CLI process alone: vLLM's EngineCore and worker must notice and exit
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        orphans_gone = wait_group_gone(proc.pid, 60)
    finally:
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert orphans_gone, "vLLM child processes outlived the killed run"
    stored = cache_rows(home)
    assert 12 <= stored < 48
    assert not out.exists()
    # the hidden build folder of the killed run holds nothing half-written
    assert all(not any(p.iterdir()) for p in tmp_path.glob(".run.partial-*"))

    code, err, pgid = tagger(["segment", *args, "--out", str(out)], home, timeout=600)
    assert code == 0, err
    assert not group_alive(pgid) or wait_group_gone(pgid, 30), "vLLM children outlived a finished run"
    assert not list(tmp_path.glob(".run.partial-*"))
    summary = json.loads((out / "run.json").read_text())
    assert summary["cache"]["hits"] >= stored
    assert summary["counts"]["users"] == 48

    baseline = tmp_path / "baseline"
    code, err, _ = tagger(["segment", *args, "--out", str(baseline)], new_home(tmp_path, "home2"), timeout=600)
    assert code == 0, err
    for table in ("users", "segments"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{table}.parquet"), pd.read_parquet(baseline / f"{table}.parquet"))
    print(f"\nkill/resume: {stored} answers cached at the kill; resume hits={summary['cache']['hits']} "
          f"misses={summary['cache']['misses']}")

