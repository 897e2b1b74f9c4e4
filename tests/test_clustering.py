from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from tagger.errors import ConfigError
from tagger.config import RunConfig
from tagger.schemas import NO_SEGMENT as NOISE
from tagger.stages.clustering import Segmenter, default_min_segment_size


def blobs(n_per=40, k=4, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, dim))
    x = np.vstack([c + 0.15 * rng.normal(size=(n_per, dim)) for c in centers])
    return x, np.repeat(np.arange(k), n_per)


def test_recovers_well_separated_groups_and_assigns_noise():
    x, truth = blobs()
    seg = Segmenter(seed=0).fit(x)
    assert adjusted_rand_score(truth, seg.labels_) > 0.95
    assert (seg.labels_ != NOISE).all()
    assert set(seg.assigned_by_) <= {"cluster", "nearest"}
    assert ((seg.strengths_ >= 0) & (seg.strengths_ <= 1)).all()
    assert seg.centroids_.shape == (seg.labels_.max() + 1, x.shape[1])


def test_keep_noise_leaves_outliers_unassigned():
    x, _ = blobs()
    outliers = np.random.default_rng(1).normal(size=(10, x.shape[1])) * 5
    seg = Segmenter(assign_noise=False, min_samples=5, seed=0).fit(np.vstack([x, outliers]))
    assert (seg.labels_ == NOISE).sum() >= 1
    assert (seg.assigned_by_[seg.labels_ == NOISE] == "noise").all()


def test_same_seed_same_labels():
    x, _ = blobs(seed=3)
    assert (Segmenter(seed=5).fit(x).labels_ == Segmenter(seed=5).fit(x).labels_).all()


def test_sample_fit_agrees_with_full_fit():
    x, truth = blobs(n_per=300, k=5)
    sampled = Segmenter(consensus=0, max_fit_users=400, seed=0).fit(x)  # one HDBSCAN fit on a sample
    assert adjusted_rand_score(truth, sampled.labels_) > 0.9


def test_no_structure_still_gives_one_segment():
    x = np.random.default_rng(0).normal(size=(6, 8))
    seg = Segmenter(seed=0).fit(x)
    assert (seg.labels_ >= 0).all()


def test_min_segment_size_grows_with_users():
    assert default_min_segment_size(10) == 3
    assert default_min_segment_size(300) < default_min_segment_size(10_000) < default_min_segment_size(1_000_000)


def test_consensus_recovers_groups_and_covers_everyone():
    x, truth = blobs()
    seg = Segmenter(consensus=10, seed=0).fit(x)
    assert adjusted_rand_score(truth, seg.labels_) > 0.95
    assert (seg.labels_ >= 0).all() and set(seg.assigned_by_) == {"cluster"}
    assert seg.centroids_.shape == (4, x.shape[1])


def test_consensus_holds_on_resamples():
    """Two fits on different 90 % samples put the users both saw in the same groups."""
    x, _ = blobs(n_per=50, k=5, seed=2)
    rng = np.random.default_rng(0)
    a, b = (np.sort(rng.choice(len(x), 225, replace=False)) for _ in range(2))
    labels_a = np.full(len(x), -1)
    labels_b = np.full(len(x), -1)
    labels_a[a] = Segmenter(consensus=10, seed=1).fit(x[a]).labels_
    labels_b[b] = Segmenter(consensus=10, seed=2).fit(x[b]).labels_
    both = np.intersect1d(a, b)
    assert adjusted_rand_score(labels_a[both], labels_b[both]) > 0.95


def test_consensus_on_a_bounded_sample_places_the_rest():
    x, truth = blobs(n_per=150, k=4, seed=4)
    # 20 fits: Louvain splits a structureless blob at random, and a handful of fits do not
    # average that out (5 fits: 9 groups of 4 blobs)
    seg = Segmenter(consensus=20, max_consensus_users=200, seed=0).fit(x)
    assert (seg.assigned_by_ == "cluster").sum() == 200
    assert (seg.labels_ >= 0).all() and adjusted_rand_score(truth, seg.labels_) > 0.95


def test_consensus_on_a_handful_of_users():
    x, _ = blobs(n_per=1, k=3)
    for n in (2, 3):
        seg = Segmenter(consensus=5, seed=0).fit(x[:n])
        assert len(seg.labels_) == n and (seg.labels_ >= 0).all()


@pytest.mark.parametrize("base", ["louvain", "hdbscan"])
def test_either_consensus_base_recovers_well_separated_groups(base):
    x, truth = blobs(n_per=40, k=4, seed=3)
    seg = Segmenter(consensus=20, consensus_base=base, seed=0).fit(x)
    assert seg.consensus_base == base
    assert adjusted_rand_score(truth, seg.labels_) > 0.95


def test_an_unknown_consensus_base_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown consensus base 'kmeans'; use louvain or hdbscan"):
        Segmenter(consensus_base="kmeans").fit(blobs()[0])


def test_the_class_defaults_are_the_products():
    config, params = RunConfig(), Segmenter().get_params()
    shared = set(params) & set(RunConfig.model_fields)
    assert {"consensus", "consensus_base", "min_samples", "reduce_dims", "assign_noise", "seed"} <= shared
    assert {p: params[p] for p in shared} == {p: getattr(config, p) for p in shared}


def test_get_params_rebuilds_the_same_segmenter():
    x, _ = blobs(seed=6)
    first = Segmenter(consensus=10, seed=3).fit(x)
    again = Segmenter(**first.get_params()).fit(x)
    assert (first.labels_ == again.labels_).all()
    with pytest.raises(ConfigError, match="unknown segmenter parameter"):
        Segmenter().set_params(clusters=3)


def test_rows_without_a_vector_are_unsegmented_and_the_rest_as_alone():
    x, truth = blobs(seed=7)
    usable = np.ones(len(x), bool)
    usable[[0, 50, 99]] = False
    masked = Segmenter(consensus=10, seed=0).fit(x, usable)
    alone = Segmenter(consensus=10, seed=0).fit(x[usable])
    assert (masked.labels_[~usable] == NOISE).all() and (masked.assigned_by_[~usable] == "unsegmented").all()
    assert (masked.strengths_[~usable] == 0).all()
    assert (masked.labels_[usable] == alone.labels_).all()


def test_place_gives_every_clustered_member_its_own_segment_and_far_users_none():
    x, _ = blobs(seed=8)
    seg = Segmenter(consensus=10, seed=0).fit(x)
    placed = seg.place(x)
    members = seg.assigned_by_ == "cluster"
    assert (placed.labels[members] == seg.labels_[members]).all()
    assert (seg.predict(x) == placed.labels).all()
    far = -seg.centroids_.sum(axis=0, keepdims=True)  # opposite every segment
    assert seg.place(far).labels[0] == NOISE and seg.place(far).assigned_by[0] == "outlier"
    kept_out = seg.place(x[:2], np.array([True, False]))
    assert kept_out.assigned_by[1] == "unsegmented" and kept_out.labels[1] == NOISE
