"""The answer cache and resuming: reruns recompute nothing, edited prompts re-run only their
stage, --no-cache bypasses it, and a run killed with SIGKILL during tagging resumes for real."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
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


# --- kill -9 mid-call and resume ---------------------------------------------------------------

SLOW_RUN = """
import sys, time
from pathlib import Path
from tagger.config import RunConfig
from tagger.llm.fake import FakeEngine
from tagger.run.segment import segment
from tagger.stages.embedding import create_encoder

heard = Path(sys.argv[3])

class Slow(FakeEngine):
    # answers one request every 50 ms, reporting each as it finishes, as vLLM does
    def generate(self, chats, *, schemas, params, on_answer=None):
        def tick(n):
            time.sleep(0.05)
            with heard.open("a") as out:
                out.write("x")
            if on_answer:
                on_answer(n)
        return super().generate(chats, schemas=schemas, params=params, on_answer=tick)

segment(Path(sys.argv[1]), RunConfig(engine="fake", embedder="hash", call_seconds=1.0, max_users=80, consensus=20),
        out=Path(sys.argv[2]), engine=Slow(), encoder=create_encoder("hash"), report=False)
"""


def test_kill_minus_9_mid_call_loses_only_that_call(tmp_path, isolated_home, monkeypatch):
    """Paced engine calls (`call_seconds`, on by default) are cached as each returns: killed while a
    call is answering, the run loses that call's answers only, and the rerun asks for exactly those."""
    heard, out = tmp_path / "heard", tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(AMAZON_SAMPLE), str(out), str(heard)],
                            env=os.environ | {"TAGGER_HOME": str(isolated_home)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    answered = stored = 0
    deadline = time.monotonic() + 120
    try:
        # mid-call: a call has cached its answers, and the next one has answered some not yet cached
        while proc.poll() is None and time.monotonic() < deadline:
            stored = cache_rows(isolated_home)
            answered = heard.stat().st_size if heard.exists() else 0
            if stored >= 16 and answered >= stored + 5:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    stored = cache_rows(isolated_home)
    lost = answered - stored
    assert lost >= 5 and not out.exists()

    engine = FakeEngine()
    result = run(AMAZON_SAMPLE, engine, max_users=80, consensus=20)
    fresh = FakeEngine()
    monkeypatch.setenv("TAGGER_HOME", str(new_home(tmp_path, "fresh")))
    baseline = run(AMAZON_SAMPLE, fresh, max_users=80, consensus=20)
    # the rerun asks the engine for exactly the answers the kill lost
    assert sent(engine)["tag"] == sent(fresh)["tag"] - stored
    assert result.summary.llm.tag_answers_cached == stored
    pd.testing.assert_frame_equal(result.users, baseline.users)


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
    """With the default settings (engine calls of ~30 s, each cached as it returns), killed while a
    call is answering: the rerun reads every finished call from the cache and asks only for the rest."""
    pytest.importorskip("vllm", reason="the CPU engine extra is not installed")
    from tagger.llm.embedded import embedded_model_dir

    embedded_model_dir()  # convert once, outside the timed runs
    rows = pd.read_csv(AMAZON_SAMPLE, dtype=str, keep_default_na=False)
    users = sorted(rows["user_id"].unique())[:48]
    data = tmp_path / "reviews.csv"
    rows[rows["user_id"].isin(users)].drop(columns=["category"]).to_csv(data, index=False)
    args = [str(data), "--time-col", "timestamp_ms", "--item-col", "product", "--seed", "0", "--no-report"]
    home = new_home(tmp_path, "home")
    out = tmp_path / "run"

    proc = subprocess.Popen([sys.executable, "-m", "tagger", "segment", *args, "--out", str(out)],
                            env=os.environ | {"TAGGER_HOME": str(home)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    answered = [0]

    def read_progress() -> None:  # "[0:41] tagging: 20/48 users (41%), ..." as answers arrive
        for line in proc.stderr:
            found = re.search(r"tagging: (\d+)/48 users", line)
            if found:
                answered[0] = int(found.group(1))

    threading.Thread(target=read_progress, daemon=True).start()
    deadline = time.monotonic() + 600
    try:
        # mid-call: the first call's answers are cached, and the next call has answered more
        while proc.poll() is None and time.monotonic() < deadline:
            stored = cache_rows(home)
            if stored >= 12 and answered[0] > stored:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed mid-call"
        heard, stored = answered[0], cache_rows(home)
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
    assert 12 <= stored < 48 and heard > stored  # answers of the call in flight were lost
    assert not out.exists()
    # the hidden build folder of the killed run holds nothing half-written
    assert all(not any(p.iterdir()) for p in tmp_path.glob(".run.partial-*"))

    code, err, pgid = tagger(["segment", *args, "--out", str(out)], home, timeout=600)
    assert code == 0, err
    assert not group_alive(pgid) or wait_group_gone(pgid, 30), "vLLM children outlived a finished run"
    assert not list(tmp_path.glob(".run.partial-*"))
    summary = json.loads((out / "run.json").read_text())
    assert summary["llm"]["tag_answers_cached"] == stored  # every answer cached before the kill, and no more
    assert summary["counts"]["users"] == 48

    baseline = tmp_path / "baseline"
    code, err, _ = tagger(["segment", *args, "--out", str(baseline)], new_home(tmp_path, "home2"), timeout=600)
    assert code == 0, err
    for table in ("users", "segments"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{table}.parquet"), pd.read_parquet(baseline / f"{table}.parquet"))
    print(f"\nkill/resume: {heard} answers heard, {stored} cached at the kill; the rerun sent "
          f"{summary['llm']['tag_requests_sent']} tag requests")
