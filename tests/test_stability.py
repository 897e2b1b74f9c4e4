from __future__ import annotations

import json

import numpy as np
import pytest

from tagger.cli import main
from tagger.lifecycle.stability import best_match_jaccard, stability

FAST = ["--engine", "fake", "--embedder", "hash"]
TABLES = ["users.parquet", "users.csv", "segments.parquet", "segments.csv"]


def test_same_seed_gives_byte_identical_tables(comments_csv, tmp_path, capsys):
    for name in ("a", "b"):
        args = ["segment", str(comments_csv), "--out", str(tmp_path / name), "--seed", "7", "--time-col", "ts",
                "--no-report", *FAST]
        assert main(args) == 0
    capsys.readouterr()
    for table in [*TABLES, "segment_shares.csv", "model/centroids.npy", "model/members_reduced.npy"]:
        assert (tmp_path / "a" / table).read_bytes() == (tmp_path / "b" / table).read_bytes(), table


def blobs(k=3, n_per=30, dim=16, spread=0.1, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, dim))
    return np.vstack([c + spread * rng.normal(size=(n_per, dim)) for c in centers]), np.repeat(np.arange(k), n_per)


def test_separated_groups_are_stable_and_random_labels_are_not():
    from tagger.stages.clustering import Segmenter

    x, _ = blobs()
    labels = Segmenter(seed=0).fit(x).labels_
    summary, table = stability(x, labels, lambda v, s: Segmenter(seed=s).fit(v).labels_, runs=4)
    assert summary["runs"] == 4 and len(summary["pairwise_ari"]) == 6
    assert summary["mean_ari"] > 0.9 and summary["unstable"] == [] and table["stable"].all()

    rng = np.random.default_rng(1)
    shaky, table = stability(x, labels, lambda v, s: rng.integers(0, 3, len(v)), runs=4)
    assert shaky["mean_ari"] < 0.2 and set(shaky["unstable"]) == set(np.unique(labels).tolist())
    assert (table["mean_jaccard"] < 0.6).all()


def test_best_match_jaccard_ignores_label_names():
    a = np.array([0, 0, 1, 1, 2, 2])
    assert best_match_jaccard(a, (a + 1) % 3) == {0: 1.0, 1: 1.0, 2: 1.0}
    assert best_match_jaccard(a, np.array([0, 0, 0, 0, 1, -1])) == {0: 0.5, 1: 0.5, 2: 0.5}


@pytest.mark.parametrize("runs", [3])
def test_segment_stability_option_writes_table_and_run_json(comments_csv, tmp_path, capsys, runs):
    out = tmp_path / "run"
    assert main(["segment", str(comments_csv), "--out", str(out), "--stability", str(runs), "--no-report", *FAST]) == 0
    capsys.readouterr()
    summary = json.loads((out / "run.json").read_text())["stability"]
    assert summary["runs"] == runs and len(summary["pairwise_ari"]) == runs * (runs - 1) // 2
    assert -1 <= summary["mean_ari"] <= 1 and summary["sample_fraction"] == 0.9
    assert {s["segment_id"] for s in summary["segments"]} >= set(summary["unstable"])
    assert (out / "stability.csv").exists() and (out / "stability.parquet").exists()
