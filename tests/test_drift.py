from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tagger.cli import main
from tagger.lifecycle.drift import MOVED_SHARE, drift, shares_by_period, to_datetime
from tagger.errors import ModelError
from tagger.lifecycle.segment_model import MODEL_DIR

FAST = ["--engine", "fake", "--embedder", "hash"]


def segment(capsys, source, out, *extra):
    assert main(["segment", str(source), "--out", str(out), "--no-report", *FAST, *extra]) == 0
    capsys.readouterr()
    return out


def test_timestamps_in_any_unit_or_as_dates():
    moment = pd.Timestamp("2021-03-04 05:06:07", tz="UTC")
    seconds = moment.timestamp()
    for values in ([seconds], [seconds * 1e3], [seconds * 1e6], ["2021-03-04T05:06:07Z"]):
        assert abs((to_datetime(pd.Series(values)).iloc[0] - moment).total_seconds()) < 1


def test_shares_per_period_and_growth():
    # segment 0 active every month; segment 1 users only join in the later months
    rows = [("a", "2021-01-05"), ("b", "2021-01-09"), ("a", "2021-02-01"), ("b", "2021-02-03"),
            ("c", "2021-03-01"), ("d", "2021-03-02"), ("a", "2021-03-03"), ("e", "2021-04-01")]
    activity = pd.DataFrame(rows, columns=["user_id", "time"])
    segment_of = {"a": 0, "b": 0, "c": 1, "d": 1, "e": 1}
    table, summary = shares_by_period(activity, segment_of, {0: "zero", 1: "one"})
    assert summary["periods"] == 4 and summary["first"] == "2021-01" and summary["last"] == "2021-04"
    assert np.allclose(table.groupby("period")["share"].sum(), 1.0, atol=1e-3)
    march = table[table["period"] == "2021-03"].set_index("segment_id")
    assert march.loc[1, "users"] == 2 and march.loc[1, "active_users"] == 3
    assert summary["growing"][0]["segment_id"] == 1 and summary["shrinking"][0]["segment_id"] == 0


def test_period_option_and_shares_table(comments_csv, tmp_path, capsys):
    out = segment(capsys, comments_csv, tmp_path / "run", "--time-col", "ts", "--period", "year")
    summary = json.loads((out / "run.json").read_text())["over_time"]
    assert summary["period"] == "year" and summary["periods"] >= 1
    shares = pd.read_parquet(out / "segment_shares.parquet")
    assert set(shares.columns) >= {"period", "segment_id", "segment_name", "users", "share"}


def test_drift_against_itself_matches_everything(comments_csv, tmp_path, capsys):
    run = segment(capsys, comments_csv, tmp_path / "run")
    report = drift(run, run)
    assert report["new"] == [] and report["vanished"] == [] and report["moved"] == []
    assert all(m["old_id"] == m["new_id"] == m["stable_id"] and m["similarity"] > 0.999 for m in report["matched"])


def test_drift_lists_vanished_segments_and_keeps_ids(comments_csv, tmp_path, capsys):
    frame = pd.read_csv(comments_csv)
    smaller = tmp_path / "smaller.csv"
    frame[~frame["user_id"].str.startswith("dog")].to_csv(smaller, index=False)
    old = segment(capsys, comments_csv, tmp_path / "old")
    new = segment(capsys, smaller, tmp_path / "new")
    report = drift(old, new)
    old_n, new_n = (len(json.loads((r / MODEL_DIR / "segments.json").read_text())) for r in (old, new))
    assert len(report["matched"]) + len(report["vanished"]) == old_n
    assert len(report["matched"]) + len(report["new"]) == new_n
    ids = [m["stable_id"] for m in report["matched"]] + [s["stable_id"] for s in report["new"]]
    assert len(set(ids)) == len(ids) and all(s["stable_id"] >= old_n for s in report["new"])
    old_users = pd.read_parquet(old / "users.parquet")
    dog_segments = set(old_users[old_users["user_id"].str.startswith("dog")]["segment_id"])
    assert dog_segments <= {v["old_id"] for v in report["vanished"]} | {m["old_id"] for m in report["matched"] if m["moved"]}

    code = main(["drift", str(old), str(new), "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["vanished"] == report["vanished"]


def test_drift_refuses_runs_with_different_embedders(comments_csv, tmp_path, capsys):
    old = segment(capsys, comments_csv, tmp_path / "old")
    manifest = old / MODEL_DIR / "manifest.json"
    data = json.loads(manifest.read_text())
    data["embedder"] = "minilm"
    manifest.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="different embedders"):
        drift(old, segment(capsys, comments_csv, tmp_path / "new"))


def test_segment_reads_its_input_once(comments_csv, tmp_path, capsys, monkeypatch):
    import tagger.stages.data

    reads = []
    original = tagger.stages.data._read
    monkeypatch.setattr(tagger.stages.data, "_read", lambda *args: reads.append(args) or original(*args))
    segment(capsys, comments_csv, tmp_path / "run", "--time-col", "ts")
    assert len(reads) == 1 and (tmp_path / "run" / "segment_shares.parquet").exists()


# Issue 13 (open): the demo's defaults (tag weight 0.3, item titles) hold on this replayed pair
# with the consensus of 100 fits (smallest centred similarity 0.82 against the 0.75 line, largest
# share change 2.8 % against 5 %, no new or vanished segment above 3.3 %); with 50 fits one
# segment moved (8.9 % -> 3.3 %). Without items one segment still moves. Comments alone (tag
# weight 0) held while a user's text was their first 384 tokens; now that every comment is read,
# one small segment ("crafters") vanishes between the two samples, so that case is known not to hold.
@pytest.mark.parametrize("tag_weight,item_col,holds", [(0.0, None, False), (0.3, None, False), (0.3, "product", True)])
def test_drift_between_two_samples_of_the_demo_is_only_noise(tmp_path, tag_weight, item_col, holds):
    """Two seeded 90 % user samples of the demo: the same people, so drift must find no moved
    segment and no new or vanished one above 5 % share. The real embedded model's answers for
    these samples are replayed from tests/data (recorded by `python -m tests.replay`). Where the
    property is known not to hold yet (issue 13) a failure is reported as an expected failure
    with what moved, and a pass as a pass."""
    from replay import DEMO_SAMPLES, SAMPLE_SEEDS, ReplayEngine, demo_sample

    from tagger.config import make_config
    from tagger.run.segment import segment as run_pipeline

    engine = ReplayEngine(DEMO_SAMPLES)
    runs = []
    for seed in SAMPLE_SEEDS:
        result = run_pipeline(demo_sample(seed), make_config(engine="vllm", embedder="minilm", cache=False,
                                                             tag_weight=tag_weight, item_col=item_col),
                              out=tmp_path / f"run{seed}", engine=engine, report=False)
        assert result.summary["config"]["tag_weight"] == tag_weight
        runs.append(tmp_path / f"run{seed}")
    # Every tagging prompt was recorded: the candidate lists depend on counts and on rough groups
    # that no longer move with the machine's float details. Naming prompts quote the segments,
    # which rest on the encoder's floats; a naming request not recorded falls back to the
    # best-ranked name and cannot change what drift compares (memberships and centroids).
    assert engine.tagging_misses == 0, "the recorded answers are stale (an edited prompt?): rerun python -m tests.replay"
    report = drift(*runs)
    new = [s["name"] for s in report["new"] if s["share"] > MOVED_SHARE]
    vanished = [s["name"] for s in report["vanished"] if s["share"] > MOVED_SHARE]
    if not holds and (report["moved"] or new or vanished):
        moved = [f"{m['old_name']} {m['old_share']:.1%} -> {m['new_name']} {m['new_share']:.1%}"
                 for m in report["matched"] if m["moved"]]
        pytest.xfail(f"issue 13: moved {moved}, new {new}, vanished {vanished}")
    assert report["moved"] == []
    assert new == []
    assert vanished == []
