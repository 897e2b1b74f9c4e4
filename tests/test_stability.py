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


def families(n_per=25, dim=32, spread=0.03, seed=0):
    """Four groups of users in two families: each group's centre is its family's axis plus its own
    axis, so the two groups of a family are nearer each other (cosine 0.5) than any other (0)."""
    rng = np.random.default_rng(seed)
    rows = []
    for leaf in range(4):
        centre = np.zeros(dim)
        centre[leaf // 2] = centre[2 + leaf] = 1.0
        rows.append(centre + spread * rng.normal(size=(n_per, dim)))
    return np.vstack(rows).astype(np.float32), np.repeat(np.arange(4), n_per)


def rerun_settings(runs=3):
    from types import SimpleNamespace

    return SimpleNamespace(stability=runs, seed=0, stability_sample=0.9)


def test_stability_reports_each_level_of_the_tree():
    from sklearn.metrics import adjusted_rand_score

    from tagger.lifecycle.stability import stability_for_run
    from tagger.stages.clustering import Segmenter

    x, truth = families()
    fitted = Segmenter(consensus=10, seed=0).fit(x)
    assert adjusted_rand_score(truth, fitted.labels_) == 1.0
    assert adjusted_rand_score(truth // 2, fitted.level_labels(1)) == 1.0
    summary, table = stability_for_run(rerun_settings(), x, fitted.labels_, {}, fitted)
    assert set(summary["levels"]) == {"0", "1"}
    leaves, parents = summary["levels"]["0"], summary["levels"]["1"]
    assert leaves["mean_ari"] == leaves["min_ari"] == summary["mean_ari"] == 1.0
    assert parents["mean_ari"] == parents["min_ari"] == 1.0 and parents["pairwise_ari"] == [1.0, 1.0, 1.0]
    assert leaves["segments_per_run"] == [4, 4, 4] and parents["segments_per_run"] == [2, 2, 2]
    # the leaf-level keys stay as they were
    assert summary["segments_per_run"] == [4, 4, 4] and len(table) == 4 and summary["unstable"] == []


def test_stability_judges_each_level_by_itself():
    """Reruns that keep every leaf but pair the leaves into other parents: leaves agree fully,
    parents no better than chance."""
    _, leaves = families()
    pairings = [np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), np.array([0, 1, 1, 0])]
    # each user's "vector" is its row number, so a rerun knows which leaf its users are in
    rows = np.arange(len(leaves))[:, None]

    def fit(part, seed):
        own = leaves[part[:, 0]]
        return np.vstack([own, pairings[seed % 3][own]])

    summary, _ = stability(rows, np.vstack([leaves, pairings[0][leaves]]), fit, runs=3)
    assert summary["levels"]["0"]["mean_ari"] == summary["mean_ari"] == 1.0
    assert summary["levels"]["1"]["mean_ari"] < 0.1 and summary["levels"]["1"]["segments_per_run"] == [2, 2, 2]
    assert summary["unstable"] == []


def test_stability_reruns_keep_the_runs_grain_and_flat_runs_report_no_levels(monkeypatch):
    import tagger.lifecycle.stability
    from tagger.lifecycle.stability import stability_for_run
    from tagger.stages.clustering import Segmenter

    reruns = []

    class Recording(Segmenter):
        def fit(self, *args, **kwargs):
            reruns.append(self.get_params())
            return super().fit(*args, **kwargs)

    monkeypatch.setattr(tagger.lifecycle.stability, "Segmenter", Recording)
    x, _ = families()
    grain = Segmenter(consensus=10, seed=0, n_segments=4, levels=3).fit(x)
    stability_for_run(rerun_settings(), x, grain.labels_, {}, grain)
    # every rerun has the run's parameters (its levels and leaves asked for among them) but the
    # seed, and the number of parents the run has rather than the rule that chose it
    assert [p.pop("seed") for p in reruns] == [1, 2]
    assert grain.n_parents is None and int(grain.tree_parents_[0].max()) + 1 == 2
    assert reruns == [{**{k: v for k, v in grain.get_params().items() if k != "seed"}, "n_parents": 2}] * 2
    assert {(p["n_segments"], p["levels"]) for p in reruns} == {(4, 3)}
    # Two leaves asked for: every rerun cuts the two families as well, and two leaves have no parents.
    two = Segmenter(consensus=10, seed=0, n_segments=2).fit(x)
    summary, _ = stability_for_run(rerun_settings(), x, two.labels_, {}, two)
    assert summary["segments_per_run"] == [2, 2, 2] and summary["mean_ari"] == 1.0 and "levels" not in summary
    flat = Segmenter(consensus=10, seed=0, levels=1).fit(x)
    summary, _ = stability_for_run(rerun_settings(), x, flat.labels_, {}, flat)
    assert flat.tree_parents_ == [] and summary["segments_per_run"] == [4, 4, 4] and "levels" not in summary


def test_a_rerun_without_parents_is_compared_at_its_top_level():
    from tagger.lifecycle.stability import tree_labels
    from tagger.stages.clustering import Segmenter

    x, _ = families()
    two = Segmenter(consensus=10, seed=0, n_segments=2).fit(x)
    rows = tree_labels(two, 1)
    assert rows.shape == (2, len(x)) and (rows[0] == rows[1]).all() and (rows[0] == two.labels_).all()
