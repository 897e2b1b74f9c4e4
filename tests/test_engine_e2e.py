"""The real thing: vLLM (CPU build) with the embedded SmolLM2 model on ~40 real Amazon users."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import AMAZON_SAMPLE

pytestmark = pytest.mark.engine
vllm = pytest.importorskip("vllm", reason="the CPU engine extra is not installed")


def test_segment_on_real_users_with_the_real_engine(tmp_path):
    rows = pd.read_csv(AMAZON_SAMPLE, dtype=str, keep_default_na=False)
    users = sorted(rows["user_id"].unique())[:40]
    data = tmp_path / "reviews.csv"
    rows[rows["user_id"].isin(users)].drop(columns=["category"]).to_csv(data, index=False)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "tagger", "segment", str(data), "--out", str(out),
         "--time-col", "timestamp_ms", "--item-col", "product"],
        capture_output=True, text=True, timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    tagged = [json.loads(line) for line in (out / "tags.jsonl").read_text().splitlines()]
    assert len(tagged) == 40
    assert all(u["status"] == "tagged" and u["tags"] or u["status"] == "failed" and u["error"] for u in tagged)
    assert sum(u["status"] == "tagged" for u in tagged) >= 36  # at least 90 %
    comments = " ".join(rows[rows["user_id"].isin(users)]["text"]).lower()
    for user in tagged:
        for tag in user["tags"]:
            assert tag["evidence"] and tag["evidence"].lower()[:12] in " ".join(comments.split())

    segments = pd.read_parquet(out / "segments.parquet")
    assert len(segments) >= 2
    assert segments["name"].str.strip().str.len().gt(0).all() and segments["name"].is_unique
    users_table = pd.read_csv(out / "users.csv")
    assert len(users_table) == 40 and set(users_table["segment_id"]) <= set(segments["segment_id"]) | {-1}
    summary = json.loads((out / "run.json").read_text())
    assert summary["model"].endswith("smollm2-135m-instruct")
    assert summary["engine_options"]["dtype"] == "float32"
    assert summary["engine_options"]["kv_cache_memory_bytes"] == 1 << 30  # absolute, whatever the machine holds
    assert summary["counts"]["users"] == 40
    assert "segments of 40 users" in proc.stdout
