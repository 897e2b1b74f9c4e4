from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tagger.cli import main
from tagger.errors import ModelError
from tagger.lifecycle.drift import MOVED_SHARE, MOVED_SIMILARITY, drift, shares_by_period, to_datetime
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


# Issue 13 (open): tag weight 0.3 with item titles held on this replayed pair before the users'
# phrases joined the vector (consensus of 100 fits: smallest centred similarity 0.82 against the
# 0.75 line, largest share change 2.8 % against 5 %), and still holds with `lexical_weight` 0, so
# that case stays a plain assertion of what drift reports. At the default lexical weight (0.7)
# it does not hold: over three clustering seeds (0, 1, 2) the pair kept no new, vanished or moved
# segment above 5 % in 1 of 3 (weight 0: in all three; 18 LSA dimensions instead of 30: 1 of 3).
# On 180 demo users each sample's phrase space is its own SVD, and a loose leaf of mixed
# reviewers ("travel accessories travellers" 7.2 %) forms in one sample only. Without items one
# segment moves whatever the weight. Comments alone (tag weight 0): one small segment vanishes
# between the samples since every comment is read.
@pytest.mark.parametrize("tag_weight,item_col,lexical_weight,holds", [
    (0.0, None, 0.7, False), (0.3, None, 0.7, False), (0.3, "product", 0.0, True), (0.3, "product", 0.7, False)])
def test_drift_between_two_samples_of_the_demo_is_only_noise(tmp_path, tag_weight, item_col, lexical_weight, holds):
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
                                                             tag_weight=tag_weight, item_col=item_col,
                                                             lexical_weight=lexical_weight),
                              out=tmp_path / f"run{seed}", engine=engine, report=False)
        assert result.summary.config["tag_weight"] == tag_weight
        assert result.summary.config["lexical_weight"] == lexical_weight
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


def tree_run(folder, leaf_axes, sizes, families=None, dim=8):
    """A run folder holding only a saved model whose answers are fixed by construction: leaf i's
    users all sit on axis `leaf_axes[i]`, `sizes[i]` of them; `families` (one parent index per
    leaf) adds parents (ids after the leaves, named "parent 0", ...) centred on their leaves' users."""
    from tagger.lifecycle.segment_model import build_model, save_model
    from tagger.stages.clustering import Segmenter

    x = np.vstack([np.repeat(np.eye(dim)[[axis]], size, axis=0) for axis, size in zip(leaf_axes, sizes, strict=True)])
    labels = np.repeat(np.arange(len(sizes)), sizes)
    segmenter = Segmenter.from_labels(x, labels)
    parents, centroids = [], None
    if families is not None:
        families = np.asarray(families)
        segmenter.tree_parents_ = [families]
        parents = [{"segment_id": len(sizes) + p, "name": f"parent {p}", "size": int(np.asarray(sizes)[families == p].sum()),
                    "level": 1, "parent_id": -1} for p in range(families.max() + 1)]
        centroids = np.vstack([x[families[labels] == p].mean(axis=0) for p in range(families.max() + 1)])
    model = build_model(segmenter, names={i: f"leaf {i}" for i in range(len(sizes))}, extractor=None,
                        manifest={"embedder": "hash"}, parents=parents, parent_centroids=centroids)
    save_model(model, folder / MODEL_DIR)
    return folder


def test_drift_matches_parents_as_well_as_leaves(tmp_path, capsys):
    # Old: leaves on axes 0-3, in families {0, 1} and {2, 3}. New: leaves 0 and 1 stay (leaf 0 now
    # holds half the users), the other family is replaced by leaves on axes 4 and 5.
    old = tree_run(tmp_path / "old", [0, 1, 2, 3], [10, 10, 10, 10], families=[0, 0, 1, 1])
    new = tree_run(tmp_path / "new", [0, 1, 4, 5], [20, 10, 5, 5], families=[0, 0, 1, 1])
    report = drift(old, new)
    assert [(m["old_id"], m["new_id"], m["moved"]) for m in report["matched"]] == [(0, 0, True), (1, 1, False)]
    # new ids follow every old id (leaves 0-3, parents 4-5): leaves first, then parents
    assert [(s["new_id"], s["stable_id"]) for s in report["new"]] == [(2, 6), (3, 7)]
    assert [s["old_id"] for s in report["vanished"]] == [2, 3] and report["moved"] == [0]
    parents = report["parents"]
    assert set(parents) == {"matched", "moved", "new", "vanished"}
    (kept,) = parents["matched"]
    assert (kept["level"], kept["stable_id"], kept["old_id"], kept["new_id"]) == (1, 4, 4, 4)
    # its centre leans towards leaf 0 now, yet stays nearer the old parent 0 than the line for moved
    assert kept["old_name"] == kept["new_name"] == "parent 0" and MOVED_SIMILARITY <= kept["similarity"] < 1
    assert (kept["old_share"], kept["new_share"], kept["share_change"], kept["moved"]) == (0.5, 0.75, 0.25, True)
    assert parents["moved"] == [4]
    assert [(s["level"], s["new_id"], s["stable_id"], s["name"], s["share"]) for s in parents["new"]] == [
        (1, 5, 8, "parent 1", 0.25)]
    assert [(s["level"], s["old_id"], s["name"], s["share"]) for s in parents["vanished"]] == [(1, 5, "parent 1", 0.5)]

    code = main(["drift", str(old), str(new)])
    printed = " ".join(capsys.readouterr().out.split())
    assert code == 0 and "2 matched segments (40 → 40 users)" in printed
    assert "1 matched parent segments (40 → 40 users)" in printed
    assert "new parent 8: parent 1 (10 users, 25%" in printed and "vanished parent 5: parent 1 (20 users, 50%)" in printed
    assert main(["drift", str(old), str(new), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parents"] == parents


def test_drift_without_parents_has_no_parents_section(tmp_path, capsys):
    tree = tree_run(tmp_path / "tree", [0, 1, 2, 3], [10, 10, 10, 10], families=[0, 0, 1, 1])
    flat = tree_run(tmp_path / "flat", [0, 1, 2, 3], [10, 10, 10, 10])
    for old, new in ((flat, flat), (tree, flat), (flat, tree)):
        report = drift(old, new)
        assert "parents" not in report and len(report["matched"]) == 4 and report["new"] == report["vanished"] == []
    code = main(["drift", str(tree), str(flat)])
    printed = capsys.readouterr().out
    assert code == 0 and "4 matched segments" in printed and "parent" not in printed


def test_drift_reads_a_model_saved_before_segment_trees(tmp_path, capsys):
    """A format 1 model (no parents.json, no parent_id) loads as a flat run."""
    tree = tree_run(tmp_path / "tree", [0, 1, 2, 3], [10, 10, 10, 10], families=[0, 0, 1, 1])
    old = tree_run(tmp_path / "old", [0, 1, 2, 3], [10, 10, 10, 10])
    folder = old / MODEL_DIR
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in ("parents.json", "parent_centroids.npy"):
        (folder / name).unlink(missing_ok=True)
    manifest["files"] = [f for f in manifest["files"] if f not in ("parents.json", "parent_centroids.npy")]
    manifest["format_version"] = 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    segments = json.loads((folder / "segments.json").read_text())
    (folder / "segments.json").write_text(json.dumps([{k: v for k, v in s.items() if k != "parent_id"} for s in segments]))
    report = drift(old, tree)
    assert "parents" not in report and len(report["matched"]) == 4
    assert main(["drift", str(old), str(tree)]) == 0 and "parent" not in capsys.readouterr().out


def test_drift_refuses_a_model_whose_parents_lack_centroids(tmp_path):
    tree = tree_run(tmp_path / "tree", [0, 1, 2, 3], [10, 10, 10, 10], families=[0, 0, 1, 1])
    np.save(tree / MODEL_DIR / "parent_centroids.npy", np.eye(8, dtype=np.float32)[:1])
    with pytest.raises(ModelError, match="2 parent segments but 1 parent centroids; rerun `tagger segment`"):
        drift(tree, tree)
