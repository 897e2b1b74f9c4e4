"""The segment tree: leaves cut to the number asked for, parents above them, and `tagger recut`.

Data whose answer is fixed by construction: points in tight groups far apart, groups in pairs
that lie closer to each other than to any other group.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from tagger.cli import main
from tagger.stages.clustering import Segmenter
from tagger.stages.tree import cut_to, labels_at, merge_groups, parent_count, parent_groups, parent_levels

FAST = ["--engine", "fake", "--embedder", "hash"]


def paired_groups(pairs: int = 3, per_group: int = 12, dims: int = 24, seed: int = 0):
    """`pairs` pairs of groups: each pair near one random direction, its two groups on either
    side of it, every point close to its group's centre. Returns (points, group, pair)."""
    rng = np.random.default_rng(seed)
    points, group = [], []
    for p in range(pairs):
        centre = np.zeros(dims)
        centre[p] = 10.0
        for side in (0, 1):
            offset = np.zeros(dims)
            offset[pairs + p] = 3.0 if side else -3.0
            points.append(centre + offset + rng.normal(scale=0.2, size=(per_group, dims)))
            group += [2 * p + side] * per_group
    group = np.array(group)
    return np.vstack(points).astype(np.float32), group, group // 2


def test_cut_splits_each_merged_pair_back_into_its_groups():
    points, group, pair = paired_groups()
    labels, note = cut_to(points, points, pair, 6, min_size=5)
    assert note == "" and labels.max() + 1 == 6
    assert adjusted_rand_score(group, labels) == 1.0


def test_cut_merges_the_nearest_leaves_first():
    points, group, pair = paired_groups()
    labels, note = cut_to(points, points, group, 3, min_size=5)
    assert note == "" and adjusted_rand_score(pair, labels) == 1.0
    assert (cut_to(points, points, group, 1, min_size=5)[0] == 0).all()


def test_cut_to_the_same_number_changes_nothing_and_keeps_users_without_a_segment():
    points, group, _ = paired_groups()
    labels = group.copy()
    labels[:3] = -1
    again, note = cut_to(points, points, labels, 6, min_size=5)
    assert note == "" and (again == labels).all()
    split, _ = cut_to(points, points, np.where(labels >= 0, labels // 2, -1), 6, min_size=5)
    assert (split[:3] == -1).all() and split.max() + 1 == 6


def test_cut_says_why_it_gives_fewer_leaves_than_asked():
    points, group, _ = paired_groups(per_group=6)  # 36 users
    labels, note = cut_to(points, points, group, 10, min_size=5)
    # no group of 6 splits into two of 5; and 36 users hold at most 7 segments of 5 anyway
    assert labels.max() + 1 == 6 and adjusted_rand_score(group, labels) == 1.0
    assert note.startswith("6 segments, not 10") and "at most 7" in note and "--min-segment-size" in note


def test_parents_group_the_pairs_and_nest_the_leaves():
    assert parent_count(6) == 2 and parent_count(9) == 3 and parent_count(3) == 0 and parent_count(4) == 2
    # nine leaves: three tight triples of groups far apart
    rng = np.random.default_rng(1)
    centres = np.repeat(np.eye(9, 24)[:3] * 10, 3, axis=0) + np.eye(9, 24, k=9) * 2
    x = np.vstack([c + rng.normal(scale=0.1, size=(5, 24)) for c in centres])
    leaves = np.repeat(np.arange(9), 5)
    (parents,) = parent_levels(x, leaves, levels=2)
    assert list(parents) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert (labels_at(leaves, [parents], 1) == leaves // 3).all()
    assert parent_levels(x, leaves, levels=1) == []


def test_parents_asked_for_are_cut_from_the_same_linkage():
    points, group, pair = paired_groups(pairs=3, per_group=15)  # six leaves: the rule gives 2 parents
    assert parent_count(6) == 2
    (parents,) = parent_levels(points, group, levels=2, first=3)
    assert (labels_at(group, [parents], 1) == pair).all()
    fitted = Segmenter(n_parents=3).fit(points)
    assert fitted.cut_note_ == "" and adjusted_rand_score(pair, fitted.level_labels(1)) == 1.0
    assert (fitted.recut(points, None, 2, n_parents=3).level_labels(1) == fitted.level_labels(1)).all()
    # three levels: the grandparents follow the rule over the parents asked for (sqrt(3) → none)
    assert len(Segmenter(n_parents=3, levels=3).fit(points).tree_parents_) == 1
    # as many parents as leaves, or more: no parent level, and the one line says why
    too_many = Segmenter(n_parents=6).fit(points)
    assert too_many.tree_parents_ == []
    assert too_many.cut_note_ == "no parent level: 6 segments cannot have 6 parents; ask for fewer than 6 with --parents"
    both = Segmenter(n_segments=3, n_parents=4).fit(points)
    assert both.cut_note_.startswith("no parent level: 3 segments cannot have 4 parents")
    assert Segmenter(n_parents=4, levels=1).fit(points).cut_note_ == ""  # flat: nothing asked of a parent level


def test_no_parent_holds_a_single_leaf_when_there_are_enough_leaves():
    # two tight pairs (0 and 10 degrees, 90 and 100) and an outlier at 200 degrees, nearer the
    # second pair: cut into two, average linkage leaves the outlier a parent of its own
    angles = np.radians([0, 10, 90, 100, 200])
    centroids = np.column_stack([np.cos(angles), np.sin(angles)])
    assert list(merge_groups(centroids, 2)) == [0, 0, 0, 0, 1]
    assert list(parent_groups(centroids, 2)) == [0, 0, 1, 1, 1]
    # too few leaves for two of two each: the plain cut, so the count asked for still holds
    assert list(parent_groups(centroids[[0, 2, 4]], 2)) == list(merge_groups(centroids[[0, 2, 4]], 2))
    assert len(set(parent_groups(centroids, 2))) == 2


def test_merge_groups_numbers_groups_by_their_first_member():
    centroids = np.array([[0, 1.0], [1.0, 0], [0, 0.9], [0.9, 0.1]])
    assert list(merge_groups(centroids, 2)) == [0, 1, 0, 1]


def test_segmenter_gives_exactly_the_leaves_asked_for_and_parents_above_them():
    points, group, pair = paired_groups(pairs=4, per_group=15)
    auto = Segmenter().fit(points)
    assert adjusted_rand_score(group, auto.labels_) == 1.0
    assert len(auto.tree_parents_) == 1 and auto.level_labels(1).max() + 1 == parent_count(8)
    for n in (4, 8, 12):
        fitted = Segmenter(n_segments=n).fit(points)
        assert fitted.labels_.max() + 1 == n and fitted.cut_note_ == ""
        assert len(fitted.centroids_) == n
        # every leaf lies within one parent
        parents = fitted.level_labels(1)
        assert all(len(set(parents[fitted.labels_ == leaf])) == 1 for leaf in range(n))
    assert adjusted_rand_score(pair, Segmenter(n_segments=4).fit(points).labels_) == 1.0
    flat = Segmenter(levels=1).fit(points)
    assert flat.tree_parents_ == [] and (flat.level_labels(0) == flat.labels_).all()


def test_recut_of_a_fitted_segmentation_equals_fitting_with_that_number():
    points, group, _ = paired_groups(pairs=4, per_group=15)
    fitted = Segmenter().fit(points)
    for n in (3, 5, 8):
        assert (fitted.recut(points, n, levels=2).labels_ == Segmenter(n_segments=n).fit(points).labels_).all()


def test_bad_tree_settings_are_one_line_errors():
    from tagger.errors import ConfigError

    with pytest.raises(ConfigError, match="--segments must be at least 1"):
        Segmenter(n_segments=0).fit(np.eye(4, dtype=np.float32))
    with pytest.raises(ConfigError, match="--levels must be 1, 2 or 3"):
        Segmenter(levels=4).fit(np.eye(4, dtype=np.float32))
    with pytest.raises(ConfigError, match="--parents must be at least 2, not 1"):
        Segmenter(n_parents=1).fit(np.eye(4, dtype=np.float32))


# --- the run folder and `tagger recut` ------------------------------------------------------


@pytest.fixture
def paired_csv(tmp_path):
    """Six interests in three pairs that share words (guitar/drums share music words, ...),
    five users each."""
    pairs = {"music": ("guitar strings", "drum sticks"), "pets": ("dog leash", "cat litter"),
             "kitchen": ("bread flour", "coffee beans")}
    rows = []
    for shared, interests in pairs.items():
        for interest in interests:
            for u in range(5):
                for k in range(3):
                    rows.append({"user_id": f"{interest.split()[0]}-{u}",
                                 "text": f"{interest} {interest} {shared} {shared} review {k} {'!' * u}"})
    path = tmp_path / "paired.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def tables(folder):
    return pd.read_parquet(folder / "segments.parquet"), pd.read_parquet(folder / "users.parquet")


def test_segments_asks_for_the_grain_and_recut_cuts_the_same_without_retagging(capsys, paired_csv, tmp_path):
    auto, asked, recut = tmp_path / "auto", tmp_path / "asked", tmp_path / "recut"
    assert run(capsys, "segment", paired_csv, "--out", auto, "--min-segment-size", "3", *FAST)[0] == 0
    code, _, _ = run(capsys, "segment", paired_csv, "--out", asked, "--segments", "3", "--min-segment-size", "3", *FAST)
    assert code == 0
    code, out, err = run(capsys, "recut", auto, "--segments", "3", "--out", recut)
    assert code == 0, err
    assert "recut" in out and "segments" in out
    users_a, (segments_r, users_r) = tables(asked)[1], tables(recut)
    assert (segments_r["level"] == 0).sum() == 3
    # the same segments; recut numbers those that continue the run's segments with their ids
    pairs = set(zip(users_r["segment_id"], users_a["segment_id"]))
    assert len(pairs) == len({r for r, _ in pairs}) == len({a for _, a in pairs}) == 3
    summary = json.loads((recut / "run.json").read_text())
    assert summary["tree"]["segments_asked"] == 3 and summary["recut"]["from"] == str(auto)
    # recut reuses the run's tags: no tagging stage, the same tags.jsonl
    assert (recut / "tags.jsonl").read_text() == (auto / "tags.jsonl").read_text()
    assert "tagging" not in summary["timings_s"] or summary["timings_s"] == json.loads((auto / "run.json").read_text())["timings_s"]


def test_recut_in_place_and_back_gives_the_first_cut_again(capsys, paired_csv, tmp_path):
    out = tmp_path / "run"
    assert run(capsys, "segment", paired_csv, "--out", out, "--min-segment-size", "2", *FAST)[0] == 0
    first_segments, first_users = tables(out)
    leaves = int((first_segments["level"] == 0).sum())
    code, stdout, _ = run(capsys, "recut", out, "--segments", 40)
    assert code == 0 and f"note: {leaves * 2} segments, not 40" in stdout  # 30 users: halves of 2 or 3
    assert run(capsys, "recut", out, "--segments", leaves + 2)[0] == 0
    segments, users = tables(out)
    assert (segments["level"] == 0).sum() == leaves + 2
    # the parents hold their leaves, and the users table names both
    parent_of = dict(zip(segments["segment_id"], segments["parent_id"]))
    assert all(parent_of[s] == p for s, p in zip(users["segment_id"], users["parent_id"]) if s >= 0)
    assert run(capsys, "recut", out)[0] == 0  # no --segments: the consensus's own leaves
    again, users_again = tables(out)
    assert list(users_again["segment_id"]) == list(first_users["segment_id"])
    assert list(again["name"]) == list(first_segments["name"])
    assert not list(tmp_path.glob(".run.partial-*")) and not list(tmp_path.glob(".run.old-*"))


def test_levels_one_is_flat_and_the_model_places_new_users_at_both_levels(capsys, paired_csv, tmp_path):
    from tagger.lifecycle.segment_model import load_model

    flat, tree = tmp_path / "flat", tmp_path / "tree"
    assert run(capsys, "segment", paired_csv, "--out", flat, "--levels", "1", "--segments", "6", *FAST)[0] == 0
    segments, users = tables(flat)
    assert set(segments["level"]) == {0} and set(segments["parent_id"]) == {-1} and set(users["parent_id"]) == {-1}
    # Parents are cut over the pairs; a parent no name speaks for in two of its leaves is not made
    # (here the pairs' shared word is none of their leaves' first phrases), and the saved model
    # holds exactly the parents made.
    assert run(capsys, "segment", paired_csv, "--out", tree, "--segments", "6", *FAST)[0] == 0
    segments, users = tables(tree)
    made = int((segments["level"] == 1).sum())
    assert (segments["level"] == 0).sum() == 6
    model = load_model(tree)
    assert len(model.parents) == made and (made == 0 or model.parent_centroids.shape[0] == made)
    leaves = users["segment_id"].to_numpy()
    assert list(model.level_of(1, leaves)) == list(users["parent_id"])
    # names are unique across levels: no leaf repeats its parent's
    assert segments["name"].str.lower().is_unique


def test_parents_are_asked_for_in_segment_and_kept_or_changed_by_recut(capsys, paired_csv, tmp_path):
    out = tmp_path / "run"
    assert run(capsys, "segment", paired_csv, "--out", out, "--segments", "6", "--parents", "3", *FAST)[0] == 0
    segments, users = tables(out)
    # Three parents are cut, one per pair of interests; each is made only when a name speaks for
    # both its leaves (here none does: the pair's shared word is none of its leaves' first phrases).
    summary = json.loads((out / "run.json").read_text())
    tree = summary["tree"]
    assert tree["parents_asked"] == 3 and tree["per_level"][0] == 6
    assert tree["per_level"][1] + tree["parents_not_named"] == 3
    assert run(capsys, "recut", out, "--segments", "6")[0] == 0  # the run's cut is kept
    assert json.loads((out / "run.json").read_text())["tree"]["per_level"] == tree["per_level"]
    code, stdout, _ = run(capsys, "recut", out, "--segments", "6", "--parents", "6")
    assert code == 0 and "note: no parent level: 6 segments cannot have 6 parents" in stdout
    assert set(tables(out)[0]["level"]) == {0}
    code, stdout, _ = run(capsys, "segment", paired_csv, "--out", tmp_path / "few", "--segments", "2", "--parents", "2", *FAST)
    assert code == 0 and "note: no parent level: 2 segments cannot have 2 parents" in stdout
    code, _, err = run(capsys, "segment", paired_csv, "--out", tmp_path / "bad", "--parents", "1", *FAST)
    assert code == 2 and "--parents" in err and not (tmp_path / "bad").exists()


def test_recut_refuses_bad_input_with_one_line_and_leaves_the_run_as_it_was(capsys, paired_csv, tmp_path):
    out = tmp_path / "run"
    assert run(capsys, "segment", paired_csv, "--out", out, *FAST)[0] == 0
    before = (out / "segments.csv").read_text()
    code, _, err = run(capsys, "recut", tmp_path / "nope", "--segments", "3")
    assert code == 2 and "run folder not found" in err
    code, _, err = run(capsys, "recut", out, "--segments", "0")
    assert code == 2 and "--segments" in err
    for name in ("vectors.npy", "meta.json"):
        (out / "model" / "recut" / name).rename(out / "model" / "recut" / f"{name}.aside")
    code, _, err = run(capsys, "recut", out, "--segments", "3")
    assert code == 3 and "holds no recut data" in err and "rerun `tagger segment`" in err
    assert (out / "segments.csv").read_text() == before
    assert len(err.strip().splitlines()) == 1
