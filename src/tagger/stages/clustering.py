"""User vectors → segments, and new users → those segments.

`Segmenter` reduces the unit user vectors (PCA by default), then by default cuts a consensus of
`consensus` fits, each on a seeded share `consensus_sample` of the users: how often two users share
a segment (co-association), then one average-linkage cut. A single HDBSCAN tree rebuilds its
splits when a tenth of the users drop out; the co-association averages that out. The fits are
Louvain communities of the users' k-nearest-neighbour graph (`consensus_base`), HDBSCAN on
request. The co-association is users x users, so it is built on at most `max_consensus_users` and
the rest join their nearest segment. With `consensus=0` one HDBSCAN fit decides (on a seeded
sample above `max_fit_users`, the rest placed with `hdbscan.approximate_predict`). Spherical
k-means steps then settle users between two segments. Figures behind each choice: docs/decisions.md.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np

from tagger.errors import ConfigError
from tagger.schemas import NO_SEGMENT
from tagger.stages.tree import cut_to, labels_at, parent_levels, parents_note
from tagger.vectors import unit_rows

# Recomputed vectors can differ from the training ones in the last float bits.
TOLERANCE = 1e-4
# Members looked at per new user (a tree query); the first that reaches the user decides.
NEIGHBOURS = 10
MIN_GRAPH_USERS = 40  # a resample smaller than this is fitted with HDBSCAN


def default_min_segment_size(n_users: int) -> int:
    """Grows like sqrt(n): 6 at 300 users, ~33 at 10k, ~333 at 1M; never below 3. The divisor 3
    (not 2) found more of the real groups on the dev sets without being told how many."""
    return max(3, round(math.sqrt(n_users) / 3))


_CHUNK = 100_000  # rows per step where a full-size temporary would cost GBs at 1M users


def _as_unit(vectors: np.ndarray) -> np.ndarray:
    """Unit-length float32 rows, without a copy when they already are (user vectors are)."""
    vectors = np.asarray(vectors, np.float32)
    norms = np.concatenate([np.sqrt(np.einsum("ij,ij->i", vectors[s : s + _CHUNK], vectors[s : s + _CHUNK]))
                            for s in range(0, len(vectors), _CHUNK)]) if len(vectors) else np.zeros(0)
    if np.allclose(norms, 1.0, atol=1e-4):
        return vectors
    return vectors / np.maximum(norms, 1e-12)[:, None]


def _spread(n: int, rows: np.ndarray, labels: np.ndarray, strengths: np.ndarray,
            how: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row results for `rows` of `n`; the other rows have no vector: unsegmented."""
    if len(rows) == n:
        return labels, strengths, how
    all_labels, all_strengths = np.full(n, NO_SEGMENT, np.int64), np.zeros(n)
    all_how = np.full(n, "unsegmented", dtype=object)
    all_labels[rows], all_strengths[rows], all_how[rows] = labels, strengths, how
    return all_labels, all_strengths, all_how


def _nearest_fellow(points: np.ndarray) -> np.ndarray:
    """Each member's distance to its nearest fellow member of the same segment: a local
    density scale, like HDBSCAN's core distance with one neighbour. A tree keeps it
    n log n for segments of a million users."""
    if len(points) < 2:
        return np.zeros(len(points), np.float32)
    from sklearn.neighbors import NearestNeighbors

    distances, _ = NearestNeighbors(n_neighbors=2).fit(points).kneighbors(points)
    return distances[:, 1].astype(np.float32)


def _nearest_centroid(vectors: np.ndarray, rows: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    out = np.empty(len(rows), np.int64)
    for start in range(0, len(rows), _CHUNK):
        part = rows[start : start + _CHUNK]
        out[start : start + len(part)] = np.argmax(vectors[part] @ centroids.T, axis=1)
    return out


def _strengths(vectors: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Cosine of each user to their own segment's centroid, clipped to 0..1; 0 for noise."""
    out = np.zeros(len(labels))
    for start in range(0, len(labels), _CHUNK):
        part = slice(start, start + _CHUNK)
        own = labels[part]
        cosine = np.einsum("ij,ij->i", vectors[part], centroids[np.maximum(own, 0)])
        out[part] = np.where(own >= 0, np.clip(cosine, 0, 1), 0.0)
    return out


class _Linear(NamedTuple):
    """A saved PCA's arrays, where placement expects a fitted reducer."""

    components_: np.ndarray
    mean_: np.ndarray


class Placement(NamedTuple):
    """Where users went: segment ids (NO_SEGMENT for none), strengths 0..1 and how."""

    labels: np.ndarray
    strengths: np.ndarray
    assigned_by: np.ndarray


@dataclass(eq=False)
class Segmenter:
    """User vectors → segments, scikit-learn style: the fields are the parameters (their defaults
    are the product's, `RunConfig`'s), `fit` validates them and sets the attributes ending in `_`,
    `place`/`predict` put new users in the fitted segments.

    Parameters: `min_segment_size` (None: grows like sqrt(users)), `min_samples` (HDBSCAN's;
    None: half the segment size), `reduce_dims` (PCA or UMAP dimensions, 0 = none), `reducer`
    ("pca" or "umap"), `assign_noise` (noise users join their nearest segment), `selection`
    (HDBSCAN's cluster selection), `max_fit_users` (HDBSCAN fits a sample above this), `seed`,
    `consensus` (fits cut once; 0 = one HDBSCAN fit), `consensus_sample` (share of users each fit
    sees), `consensus_cut` (co-association needed to stay together), `max_consensus_users`,
    `refine` (k-means steps), `consensus_dims` (share of reduced dimensions each fit sees),
    `consensus_base` ("louvain" or "hdbscan"), `resolution` and `neighbours` (Louvain's graph),
    `n_segments` (exactly this many leaves where the data allows; None: as many as the consensus
    finds), `levels` (1: leaves only; 2: leaves and their parents; 3: grandparents too), `n_parents`
    (the leaves' parents; None: about sqrt(leaves)).
    """

    min_segment_size: int | None = None
    min_samples: int | None = 1
    reduce_dims: int = 16
    assign_noise: bool = True
    selection: str = "eom"
    max_fit_users: int = 50_000
    seed: int = 0
    reducer: str = "pca"
    consensus: int = 100
    consensus_sample: float = 0.8
    consensus_cut: float = 0.5
    max_consensus_users: int = 5_000
    refine: int = 10
    consensus_dims: float = 0.9
    consensus_base: str = "louvain"
    resolution: float = 2.0
    neighbours: int = 10
    n_segments: int | None = None
    levels: int = 2
    n_parents: int | None = None

    def get_params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def set_params(self, **params: Any) -> Segmenter:
        unknown = set(params) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown segmenter parameter(s): {', '.join(sorted(unknown))}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def fit(self, vectors: np.ndarray, usable: np.ndarray | None = None) -> Segmenter:
        """Sets, for every row: labels_ (NO_SEGMENT for none), strengths_ (cosine to own
        centroid, 0..1), assigned_by_ (cluster, nearest, noise, or unsegmented for a row that
        `usable` marks as having no vector); and centroids_ (full space, unit),
        min_segment_size_, plus what `place` needs for new users."""
        self._validate()
        vectors = np.asarray(vectors, np.float32)
        n = len(vectors)
        usable = np.ones(n, bool) if usable is None else np.asarray(usable, bool)
        rows = np.flatnonzero(usable)
        # every row usable: no copy of the vectors (1.5 GB at 1M users)
        own = vectors if len(rows) == n else vectors[rows]
        self.reducer_ = None
        if len(rows) >= 2:
            self._fit_rows(_as_unit(own))
        else:
            self.labels_, self.strengths_ = np.zeros(len(rows), np.int64), np.ones(len(rows))
            self.assigned_by_ = np.full(len(rows), "cluster", dtype=object)
            self.centroids_, self.min_segment_size_ = own[:1], 1
            self.tree_parents_, self.cut_note_, self.auto_labels_ = [], "", self.labels_.copy()
        self._fit_placement(unit_rows(own))
        self._spread_rows(n, rows)
        self.fitted_ = usable.copy()
        return self

    def add_placed(self, rows: np.ndarray, labels: np.ndarray, strengths: np.ndarray, assigned_by) -> Segmenter:
        """Rows the fit did not see, placed afterwards (by a distilled placer, or `place`), join
        `labels_`, `strengths_`, `assigned_by_` and `auto_labels_`; the segments themselves (centroids,
        tree, what `place` compares with) stay those of the fitted rows (`fitted_`)."""
        rows = np.asarray(rows, np.int64)
        self.labels_[rows] = labels
        self.strengths_[rows] = strengths
        self.assigned_by_[rows] = assigned_by
        self.auto_labels_[rows] = labels
        return self

    def _spread_rows(self, n: int, rows: np.ndarray) -> None:
        if len(rows) < n:
            found = self.auto_labels_
            self.labels_, self.strengths_, self.assigned_by_ = _spread(n, rows, self.labels_, self.strengths_,
                                                                       self.assigned_by_)
            self.auto_labels_ = np.full(n, NO_SEGMENT, np.int64)
            self.auto_labels_[rows] = found

    def recut(self, vectors: np.ndarray, n_segments: int | None, levels: int, n_parents: int | None = None) -> Segmenter:
        """A new fitted segmentation cut from this one's consensus leaves (`auto_labels_`, every
        row's) to `n_segments` leaves (None: those leaves), `levels` levels and `n_parents` parents,
        without refitting: the same cut `fit` makes. Needs `assigned_by_`, `min_segment_size_` and
        the PCA arrays."""
        # the rows the segments were fitted on; rows placed afterwards are placed again by the caller
        fitted = getattr(self, "fitted_", None)
        usable = np.asarray(self.assigned_by_) != "unsegmented"
        rows = np.flatnonzero(usable & fitted if fitted is not None else usable)
        unit = unit_rows(np.asarray(vectors, np.float32)[rows])
        reduced = self.project(unit)
        new = Segmenter(**{**self.get_params(), "n_segments": n_segments, "levels": levels, "n_parents": n_parents})
        new._validate()
        found = np.asarray(self.auto_labels_, np.int64)[rows]
        count = n_segments or (int(found.max()) + 1 if (found >= 0).any() else 0)
        labels, new.cut_note_ = cut_to(unit, reduced, found, count, self.min_segment_size_, self.seed)
        new.labels_, new.auto_labels_ = labels, found
        new.assigned_by_ = np.asarray(self.assigned_by_, dtype=object)[rows]
        new.centroids_ = self._centroids(unit, labels)
        new.strengths_ = _strengths(unit, labels, new.centroids_)
        new._fit_parents(unit)
        new.min_segment_size_ = self.min_segment_size_
        new.reducer_ = _Linear(self.pca_components_, self.pca_mean_) if self.pca_components_ is not None else None
        new._fit_placement(unit)
        new._spread_rows(len(vectors), rows)
        new.fitted_ = np.zeros(len(vectors), bool)
        new.fitted_[rows] = True
        return new

    def relabelled(self, vectors: np.ndarray, labels: np.ndarray, tree: list[np.ndarray],
                   assigned_by: np.ndarray | None = None) -> Segmenter:
        """This segmentation with the leaves given (every row's, 0..k-1, NO_SEGMENT for a row
        without a vector) and the `tree` above them (as `tree_parents_`), e.g. after a person
        merged, split or moved segments: centroids, strengths and placement recomputed, the
        reduction and the consensus's own leaves kept. `assigned_by` (every row's) replaces how
        users were placed; only rows marked "cluster" are members placement compares with."""
        how = np.asarray(self.assigned_by_ if assigned_by is None else assigned_by, dtype=object)
        rows = np.flatnonzero(how != "unsegmented")
        unit = unit_rows(np.asarray(vectors, np.float32)[rows])
        new = Segmenter(**self.get_params())
        new._validate()
        new.labels_, new.assigned_by_ = np.asarray(labels, np.int64)[rows], how[rows]
        new.auto_labels_ = np.asarray(self.auto_labels_, np.int64)[rows]
        new.centroids_ = self._centroids(unit, new.labels_)
        new.strengths_ = _strengths(unit, new.labels_, new.centroids_)
        new.tree_parents_, new.cut_note_ = [np.asarray(level, np.int64) for level in tree], ""
        new.min_segment_size_ = self.min_segment_size_
        new.reducer_ = _Linear(self.pca_components_, self.pca_mean_) if self.pca_components_ is not None else None
        new._fit_placement(unit)
        new._spread_rows(len(vectors), rows)
        # the rows the segments were fitted on stay those of the fit (--llm-users: the read sample)
        fitted = getattr(self, "fitted_", None)
        new.fitted_ = np.asarray(fitted, bool).copy() if fitted is not None and len(fitted) == len(vectors) \
            else how != "unsegmented"
        return new

    @classmethod
    def from_labels(cls, vectors: np.ndarray, labels: np.ndarray, strengths: np.ndarray | None = None,
                    reducer: Any = None, **params: Any) -> Segmenter:
        """A fitted segmentation whose segments are given (every user a clustered member), e.g.
        labels from another tool, so tagger can place new users in them."""
        segmenter = cls(**params)
        vectors = unit_rows(np.asarray(vectors, np.float32))
        segmenter.labels_ = np.asarray(labels, np.int64)
        segmenter.centroids_ = segmenter._centroids(vectors, segmenter.labels_)
        segmenter.strengths_ = (_strengths(vectors, segmenter.labels_, segmenter.centroids_) if strengths is None
                                else np.asarray(strengths, float))
        segmenter.assigned_by_ = np.where(segmenter.labels_ >= 0, "cluster", "noise").astype(object)
        segmenter.reducer_, segmenter.min_segment_size_ = reducer, 1
        segmenter.tree_parents_, segmenter.cut_note_, segmenter.auto_labels_ = [], "", segmenter.labels_.copy()
        segmenter.fitted_ = np.ones(len(segmenter.labels_), bool)
        segmenter._fit_placement(vectors)
        return segmenter

    def level_labels(self, level: int) -> np.ndarray:
        """Every row's 0-based node index at `level` (0 = leaves, `labels_`); NO_SEGMENT stays."""
        if level > len(self.tree_parents_):
            raise ConfigError(f"this segmentation has {len(self.tree_parents_) + 1} level(s), not {level + 1}")
        return labels_at(self.labels_, self.tree_parents_, level)

    def level_centroids(self, vectors: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(per-row node index, unit centroids, strengths) at `level` of the tree for the fitted
        rows' `vectors`; level 0 gives `labels_`, `centroids_` and `strengths_` themselves."""
        labels = self.level_labels(level)
        if level == 0:
            return labels, self.centroids_, self.strengths_
        unit = unit_rows(np.asarray(vectors, np.float32))
        centroids = self._centroids(unit, labels)
        return labels, centroids, _strengths(unit, labels, centroids)

    def predict(self, vectors: np.ndarray) -> np.ndarray:
        return self.place(vectors).labels

    def place(self, vectors: np.ndarray, usable: np.ndarray | None = None) -> Placement:
        """Put users in the fitted segments (the rule of tagger.lifecycle.assign's docstring)."""
        vectors = np.asarray(vectors, np.float32)
        n = len(vectors)
        usable = np.ones(n, bool) if usable is None else np.asarray(usable, bool)
        rows = np.flatnonzero(usable)
        labels, strengths, how = self._place_rows(unit_rows(vectors[rows]))
        return Placement(*_spread(n, rows, labels, strengths, how))

    def nearest(self, vectors: np.ndarray) -> Placement:
        """Every row to its nearest centroid (`nearest`), as the fit itself places the users outside
        its consensus sample: no noise and no outliers, unlike `place`."""
        unit = unit_rows(np.asarray(vectors, np.float32))
        labels = _nearest_centroid(unit, np.arange(len(unit)), np.asarray(self.centroids_, np.float32))
        return Placement(labels, _strengths(unit, labels, np.asarray(self.centroids_, np.float32)),
                         np.full(len(unit), "nearest", dtype=object))

    def _validate(self) -> None:
        if self.consensus_base not in ("louvain", "hdbscan"):
            raise ConfigError(f"unknown consensus base '{self.consensus_base}'; use louvain or hdbscan")
        if self.reducer not in ("pca", "umap"):
            raise ConfigError(f"unknown reducer '{self.reducer}'; use pca or umap")
        if self.n_segments is not None and self.n_segments < 1:
            raise ConfigError(f"--segments must be at least 1, not {self.n_segments}")
        if self.n_parents is not None and self.n_parents < 2:
            raise ConfigError(f"--parents must be at least 2, not {self.n_parents}")
        if not 1 <= self.levels <= 3:
            raise ConfigError(f"--levels must be 1, 2 or 3, not {self.levels}")

    def _fit_rows(self, vectors: np.ndarray) -> None:
        n = len(vectors)
        self.min_segment_size_ = self.min_segment_size or default_min_segment_size(n)
        reduced = self._reduce(vectors)
        if self.consensus and self.assign_noise:  # a consensus leaves no noise: keep-noise needs one fit
            self._fit_consensus(vectors, reduced)
        else:
            self._fit_hdbscan(vectors, reduced)
        self._fit_tree(vectors, reduced)

    def _fit_tree(self, vectors: np.ndarray, reduced: np.ndarray) -> None:
        """The leaves asked for (`n_segments`) cut from the ones found, then the levels above."""
        self.cut_note_, self.auto_labels_ = "", self.labels_.copy()
        if self.n_segments:
            labels, self.cut_note_ = cut_to(vectors, reduced, self.labels_, self.n_segments, self.min_segment_size_,
                                            self.seed)
            if not np.array_equal(labels, self.labels_):
                self.labels_ = labels
                self.centroids_ = self._centroids(vectors, labels)
                self.strengths_ = _strengths(vectors, labels, self.centroids_)
        self._fit_parents(vectors)

    def _fit_parents(self, vectors: np.ndarray) -> None:
        self.tree_parents_ = parent_levels(vectors, self.labels_, self.levels, self.n_parents)
        leaves = int(self.labels_.max()) + 1 if (self.labels_ >= 0).any() else 0
        self.cut_note_ = " ".join(filter(None, [self.cut_note_, parents_note(self.n_parents, self.levels,
                                                                             self.tree_parents_, leaves)]))

    def _fit_hdbscan(self, vectors: np.ndarray, reduced: np.ndarray) -> None:
        import hdbscan

        n = len(vectors)
        rng = np.random.default_rng(self.seed)
        fit_rows = np.sort(rng.choice(n, self.max_fit_users, replace=False)) if n > self.max_fit_users else np.arange(n)

        labels = np.full(n, NO_SEGMENT)
        model, size = self._hdbscan(reduced[fit_rows], self.min_segment_size_, prediction_data=n > len(fit_rows))
        labels[fit_rows] = model.labels_
        self.hdbscan_probability_ = np.zeros(n)
        self.hdbscan_probability_[fit_rows] = model.probabilities_
        if n > len(fit_rows):
            rest = np.setdiff1d(np.arange(n), fit_rows)
            # Each point is placed independently and the tree query releases the GIL: chunks on
            # threads give the same labels, up to one core each (the query dominates at 1M users).
            from concurrent.futures import ThreadPoolExecutor

            parts = [rest[start : start + 25_000] for start in range(0, len(rest), 25_000)]
            with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
                placed = list(pool.map(lambda part: hdbscan.approximate_predict(model, reduced[part]), parts))
            for part, (part_labels, part_probability) in zip(parts, placed, strict=True):
                labels[part], self.hdbscan_probability_[part] = part_labels, part_probability
        self.clusterer_ = model
        self.assigned_by_ = np.where(labels == NO_SEGMENT, "noise", "cluster").astype(object)

        if labels.max() < 0:  # no structure at all: one segment holds everyone
            labels[:] = 0
            self.assigned_by_[:] = "nearest"
        self.centroids_ = self._centroids(vectors, labels)
        if self.assign_noise:
            noise = labels == NO_SEGMENT
            if noise.any():
                labels[noise] = _nearest_centroid(vectors, np.flatnonzero(noise), self.centroids_)
                self.assigned_by_[noise] = "nearest"
                self.centroids_ = self._centroids(vectors, labels)
            labels = self._refine(vectors, labels)
        self.labels_ = labels
        self.strengths_ = _strengths(vectors, labels, self.centroids_)
        self.final_min_segment_size_ = size

    def _fit_placement(self, vectors: np.ndarray) -> None:
        """What placing a new user needs: the members HDBSCAN or the consensus clustered (their
        reduced vectors, labels and nearest-fellow distance), the members' own centroids, and
        each segment's weakest strength."""
        labels, k = self.labels_, len(self.centroids_)
        pca = self.reducer_ if hasattr(self.reducer_, "components_") and hasattr(self.reducer_, "mean_") else None
        # A linear reducer (PCA) is kept as arrays; a non-linear one (UMAP) is not portable, so
        # placement then compares users with members in the full embedding space.
        self.pca_components_ = np.asarray(pca.components_, np.float32) if pca is not None else None
        self.pca_mean_ = np.asarray(pca.mean_, np.float32) if pca is not None else None
        self.user_mean_ = vectors.mean(axis=0) if len(vectors) else np.zeros(vectors.shape[1:], np.float32)
        members = (np.asarray(self.assigned_by_) == "cluster") & (labels >= 0)
        reduced = self.project(vectors[members]) if members.any() else np.zeros((0, 1), np.float32)
        self.members_reduced_, self.members_label_ = reduced.astype(np.float32), labels[members].astype(np.int64)
        self.members_radius_ = np.zeros(len(reduced), np.float32)
        self.member_centroids_ = unit_rows(np.asarray(self.centroids_, np.float32)).copy()
        self.sizes_ = np.bincount(labels[labels >= 0], minlength=k).astype(int)
        self.strength_floor_ = np.ones(k)
        for sid in range(k):
            own = self.members_label_ == sid
            if own.any():
                self.members_radius_[own] = _nearest_fellow(reduced[own])
                self.member_centroids_[sid] = unit_rows(vectors[members][own].sum(axis=0)[None])[0]
            if self.sizes_[sid]:
                self.strength_floor_[sid] = float(self.strengths_[labels == sid].min())

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """Full-space vectors → the space placement compares users with members in."""
        vectors = unit_rows(np.asarray(vectors, np.float32))
        if self.pca_components_ is None:
            return vectors
        return unit_rows((vectors - self.pca_mean_) @ self.pca_components_.T)

    def _place_rows(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(vectors)
        labels = np.full(n, NO_SEGMENT, np.int64)
        how = np.full(n, "noise", dtype=object)
        if n == 0 or len(self.centroids_) == 0:
            return labels, np.zeros(n), how
        if len(self.members_label_):
            from sklearn.neighbors import NearestNeighbors

            k = min(NEIGHBOURS, len(self.members_label_))
            distances, index = NearestNeighbors(n_neighbors=k).fit(self.members_reduced_).kneighbors(self.project(vectors))
            # the nearest of the k nearest members whose own nearest-fellow distance reaches the user
            reach = distances <= self.members_radius_[index] + TOLERANCE
            first = reach.argmax(axis=1)
            inside = reach.any(axis=1)
            labels[inside] = self.members_label_[index[inside, first[inside]]]
            how[inside] = "cluster"
        similarity = vectors @ np.asarray(self.centroids_).T
        noise = labels == NO_SEGMENT
        if self.assign_noise and noise.any():
            labels[noise] = (vectors[noise] @ self.member_centroids_.T).argmax(axis=1)
            how[noise] = "nearest"
        placed = labels >= 0
        strengths = np.zeros(n)
        strengths[placed] = np.clip(similarity[placed, labels[placed]], 0, 1)
        outlier = placed & (strengths < self.strength_floor_[np.maximum(labels, 0)] - TOLERANCE)
        labels[outlier], how[outlier] = NO_SEGMENT, "outlier"
        return labels, strengths, how

    def _hdbscan(self, points: np.ndarray, size: int, prediction_data: bool = False):
        """HDBSCAN with the size halved until it finds at least two segments (or size 2)."""
        import hdbscan

        size = min(size, max(2, len(points) // 2))
        while True:
            model = hdbscan.HDBSCAN(
                min_cluster_size=size, min_samples=self.min_samples or max(1, size // 2),
                cluster_selection_method=self.selection, prediction_data=prediction_data, core_dist_n_jobs=1,
            ).fit(points)
            if model.labels_.max() >= 1 or size <= 2:
                return model, size
            size = max(2, size // 2)

    def _fit_consensus(self, vectors: np.ndarray, reduced: np.ndarray) -> None:
        n = len(vectors)
        rng = np.random.default_rng(self.seed)
        rows = np.sort(rng.choice(n, self.max_consensus_users, replace=False)) if n > self.max_consensus_users else np.arange(n)
        # The size rule is a share of the users, so on a sample it shrinks with the sample; but not
        # below the rule for the sample's own size: at 100k users 5 of 5,000 split 60 topics into 210.
        size = max(2, round(self.min_segment_size_ * len(rows) / n),
                   default_min_segment_size(len(rows)) if n > len(rows) else 2)
        together = self._co_association(vectors[rows], reduced[rows], size, rng)
        labels = np.full(n, NO_SEGMENT)
        labels[rows] = _consensus_cut(together, self.consensus_cut, size)
        self.assigned_by_ = np.full(n, "nearest", dtype=object)
        self.assigned_by_[rows] = "cluster"
        self.centroids_ = self._centroids(vectors, labels)
        if n > len(rows):
            rest = np.setdiff1d(np.arange(n), rows)
            labels[rest] = _nearest_centroid(vectors, rest, self.centroids_)
            self.centroids_ = self._centroids(vectors, labels)
        labels = self._refine(vectors, labels)
        self.labels_ = labels
        self.strengths_ = _strengths(vectors, labels, self.centroids_)
        self.hdbscan_probability_ = np.zeros(n)
        self.clusterer_ = None
        self.final_min_segment_size_ = size

    def _refine(self, vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Spherical k-means steps from the segments found: every user joins their nearest
        centroid, centroids are recomputed, until nothing moves (at most `refine` steps).

        A user between two interests then follows the centroids (which move little when a tenth
        of the users drop out) rather than the cluster tree."""
        for _ in range(self.refine):
            moved = _nearest_centroid(vectors, np.arange(len(vectors)), self.centroids_)
            kept, moved = np.unique(moved, return_inverse=True)  # a segment left empty is dropped
            if len(kept) == self.centroids_.shape[0] and (moved == labels).all():
                break
            labels = moved
            self.centroids_ = self._centroids(vectors, labels)
        return labels

    def _co_association(self, vectors: np.ndarray, reduced: np.ndarray, size: int, rng) -> np.ndarray:
        """Share of the resamples holding both users in which they share a segment; each
        resample's noise users join their nearest segment there, as in a plain run.

        Each resample also sees a random `consensus_dims` share of the reduced dimensions (14 of
        16): a split that rests on one direction alone then holds in only some resamples."""
        n, d = reduced.shape
        together = np.zeros((n, n), np.float32)
        seen = np.zeros((n, n), np.float32)
        take = min(n, max(2, round(n * self.consensus_sample)))
        keep = min(d, max(2, round(d * self.consensus_dims)))
        for _ in range(self.consensus):
            rows = np.sort(rng.choice(n, take, replace=False))
            points = reduced[rows]
            if keep < d:
                points = unit_rows(points[:, np.sort(rng.choice(d, keep, replace=False))])
            labels = self._base_fit(points, max(2, round(size * self.consensus_sample)), rng)
            if labels.max() < 0:
                labels[:] = 0
            noise = labels == NO_SEGMENT
            if noise.any():
                centroids = self._centroids(vectors[rows], labels)
                labels[noise] = _nearest_centroid(vectors[rows], np.flatnonzero(noise), centroids)
            member = np.zeros((n, labels.max() + 1), np.float32)
            member[rows, labels] = 1
            together += member @ member.T
            sampled = np.zeros(n, np.float32)
            sampled[rows] = 1
            seen += np.outer(sampled, sampled)
        together /= np.maximum(seen, 1)
        return together

    def _base_fit(self, points: np.ndarray, size: int, rng) -> np.ndarray:
        """One consensus fit on a resample: HDBSCAN, or Louvain communities of the cosine
        k-nearest-neighbour graph (communities under `size` users are noise).

        Louvain by default: HDBSCAN's tree moves with the few users between two
        interests, so whole branches flip between resamples; a community is kept by the
        majority of each user's neighbours."""
        # Below ~40 users a group is smaller than the neighbour count, so its users' edges must
        # reach into other groups and Louvain merges them (12 users in groups of 8 and 4: one
        # community); HDBSCAN keeps them apart.
        if self.consensus_base == "hdbscan" or len(points) < MIN_GRAPH_USERS:
            return self._hdbscan(points, size)[0].labels_.copy()
        import networkx as nx
        from sklearn.neighbors import NearestNeighbors

        n = len(points)
        k = min(self.neighbours, n - 1)
        # unit points: euclidean neighbours are the cosine ones
        distance, neighbour = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
        # a floor: networkx divides by the total weight, 0 when every neighbour is orthogonal
        weight = np.clip(1.0 - distance[:, 1:] ** 2 / 2.0, 1e-6, None)
        graph = nx.Graph()
        graph.add_nodes_from(range(n))
        graph.add_weighted_edges_from(zip(np.repeat(np.arange(n), k).tolist(), neighbour[:, 1:].ravel().tolist(),
                                          weight.ravel().tolist()))
        communities = nx.community.louvain_communities(graph, resolution=self.resolution,
                                                       seed=int(rng.integers(2**31 - 1)))
        labels = np.full(n, NO_SEGMENT)
        # label order is irrelevant: the co-association only asks who shares a community
        for label, members in enumerate(c for c in communities if len(c) >= size):
            labels[list(members)] = label
        return labels

    def _reduce(self, vectors: np.ndarray) -> np.ndarray:
        dims = min(self.reduce_dims, vectors.shape[1], max(1, len(vectors) - 1))
        if not self.reduce_dims or dims >= vectors.shape[1]:
            self.reducer_ = None
            return vectors
        if self.reducer == "umap":
            from umap import UMAP

            # BERTopic's settings; cosine on the unit vectors, seeded so runs repeat
            self.reducer_ = UMAP(n_components=dims, n_neighbors=min(15, len(vectors) - 1), min_dist=0.0,
                                 metric="cosine", random_state=self.seed, n_jobs=1)
            return self.reducer_.fit_transform(vectors).astype(np.float32)
        from sklearn.decomposition import PCA

        # Exact eigen-decomposition of the covariance: as fast as the randomized solver for
        # n >> d, and it does not depend on the seed, so reruns with other seeds (stability)
        # differ only where HDBSCAN itself does.
        self.reducer_ = PCA(n_components=dims, svd_solver="covariance_eigh")
        sample = vectors if len(vectors) <= 200_000 else vectors[np.random.default_rng(self.seed).choice(len(vectors), 200_000, replace=False)]
        self.reducer_.fit(sample)
        # PCA.transform centres a full copy of its input: in chunks that copy stays small.
        return np.vstack([unit_rows(self.reducer_.transform(vectors[start : start + _CHUNK])).astype(np.float32)
                          for start in range(0, len(vectors), _CHUNK)])

    @staticmethod
    def _centroids(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
        # A sparse (segments x users) product sums members without copying their rows: at 1M
        # users a boolean-mask copy of the vectors alone is 1.5 GB.
        from scipy import sparse

        members = np.flatnonzero(labels >= 0)
        k = int(labels.max()) + 1
        membership = sparse.csr_matrix((np.ones(len(members), np.float32), (labels[members], members)),
                                       shape=(k, len(labels)))
        return unit_rows(np.asarray(membership @ vectors, dtype=np.float32))


def _consensus_cut(together: np.ndarray, cut: float, size: int) -> np.ndarray:
    """Average-linkage groups whose members share a segment in at least `cut` of the resamples
    on average; groups under `size` users join the group they share most resamples with."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    distance = 1.0 - together
    np.fill_diagonal(distance, 0.0)
    groups = fcluster(linkage(squareform(distance, checks=False), "average"), t=1.0 - cut, criterion="distance") - 1
    counts = np.bincount(groups)
    big = np.flatnonzero(counts >= size)
    if len(big) == 0:
        return np.zeros(len(groups), np.int64)
    labels = np.full(len(counts), NO_SEGMENT)
    labels[big] = np.arange(len(big))
    labels = labels[groups]
    small = np.flatnonzero(labels == NO_SEGMENT)
    if len(small):
        share = np.stack([together[np.ix_(small, np.flatnonzero(labels == k))].mean(axis=1) for k in range(len(big))], axis=1)
        labels[small] = np.argmax(share, axis=1)
    return labels
