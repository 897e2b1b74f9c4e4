"""A placer distilled from the LLM-read users: their segments, learnt from what costs no LLM.

Segments are found on the full vectors (tags and text) of the users the LLM read; everyone
else is placed by a multinomial logistic regression from the LLM-free part of the vector (the
encoder's text vector joined with the users' phrase space), as TnT-LLM labels a corpus with
light classifiers trained on an LLM-labelled sample. Its arrays (`weights`, `bias`) are plain
`.npy`, so placing a user is one matrix product and a softmax, without scikit-learn or pickle;
scikit-learn is needed only to fit it. It reads the unit LLM-free vectors as they are: on the three
dev sets, cross-validated on every user of a full run, it agreed with the full vectors' segments on
0.961 / 0.937 / 0.998 of users (newsgroups-dev, amazon-2023, zh-shopping; C = 10, 100 and 1000
alike), against 0.950 / 0.883 / 0.998 with standardised dimensions, 0.967 / 0.927 / 0.998 for the
nearest centroid and 0.959 / 0.873 / 0.998 for 10 nearest neighbours.

How far to trust it is measured in every run: `cross_validate` fits it on four fifths of the
read users and places the fifth it did not see, five times, and counts how often it put a user
where the full vectors did (overall, weighted as the sample stands for all users, and per segment).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagger.errors import ModelError
from tagger.stages.clustering import Segmenter

# Regularisation of the logistic regression (the module docstring's figures).
C = 10.0
FOLDS = 5
CV_USERS = 5_000  # the cross-validation sees at most this many read users (seeded)
WARN_BELOW = 0.85  # agreement under this is flagged in the run's summary and report
FILES = ("placer.json", "placer_weights.npy", "placer_bias.npy")
TRAIN_FILES = ("placer_train_rows.npy", "placer_train_features.npy", "placer_train_weights.npy")


@dataclass
class DistilledPlacer:
    """LLM-free features → segment, scikit-learn style: `fit` sets the arrays ending in `_`."""

    C: float = C
    seed: int = 0
    classes_: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    weights_: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32), repr=False)
    bias_: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)

    @property
    def features(self) -> int:
        """Dimensions of the vectors it reads."""
        return int(self.weights_.shape[1])

    def fit(self, features: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> DistilledPlacer:
        """Learn `labels` (segment ids; negative ones are left out) from `features`; `weights`:
        how many users each row stands for (a stratified sample over-represents small groups)."""
        features, labels = np.asarray(features, np.float32), np.asarray(labels, np.int64)
        keep = labels >= 0
        features, labels = features[keep], labels[keep]
        weights = np.ones(len(labels)) if weights is None else np.asarray(weights, float)[keep]
        self.classes_ = np.unique(labels)
        if len(self.classes_) < 2:
            self.weights_ = np.zeros((len(self.classes_), features.shape[1]), np.float32)
            self.bias_ = np.zeros(len(self.classes_), np.float32)
            return self
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)
        model.fit(features, labels, sample_weight=weights / weights.mean())
        self.weights_, self.bias_ = model.coef_.astype(np.float32), model.intercept_.astype(np.float32)
        if len(self.classes_) == 2:  # scikit-learn keeps one row for two classes: the second's odds
            self.weights_ = np.vstack([-self.weights_ / 2, self.weights_ / 2])
            self.bias_ = np.array([-self.bias_[0] / 2, self.bias_[0] / 2], np.float32)
        return self

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(users, classes) probabilities, columns in `classes_` order."""
        features = np.asarray(features, np.float32)
        if len(self.classes_) < 2:
            return np.ones((len(features), len(self.classes_)), np.float32)
        logits = features @ self.weights_.T + self.bias_
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        return logits / logits.sum(axis=1, keepdims=True)

    def place(self, features: np.ndarray, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
        """(segment id, confidence = the placer's probability of that segment) per row."""
        labels, confidence = np.zeros(len(features), np.int64), np.zeros(len(features), np.float32)
        if not len(self.classes_):
            return labels - 1, confidence
        for start in range(0, len(features), chunk):
            p = self.probabilities(features[start : start + chunk])
            best = p.argmax(axis=1)
            labels[start : start + len(p)] = self.classes_[best]
            confidence[start : start + len(p)] = p[np.arange(len(p)), best]
        return labels, confidence

    def save(self, folder: Path) -> dict[str, Any]:
        """Write the placer's arrays into `folder`; returns what placer.json holds."""
        folder = Path(folder)
        arrays = {"placer_weights.npy": self.weights_, "placer_bias.npy": self.bias_}
        for name, array in arrays.items():
            np.save(folder / name, np.asarray(array, np.float32), allow_pickle=False)
        info = {"kind": "logistic regression", "C": self.C, "seed": self.seed,
                "classes": [int(c) for c in self.classes_], "features": self.features}
        (folder / FILES[0]).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        return info

    @classmethod
    def load(cls, folder: Path) -> DistilledPlacer | None:
        """The placer saved in `folder`, or None when the model has none (made before placers)."""
        folder = Path(folder)
        if not (folder / FILES[0]).exists():
            return None
        try:
            info = json.loads((folder / FILES[0]).read_text(encoding="utf-8"))
            arrays = [np.load(folder / name, allow_pickle=False) for name in FILES[1:]]
        except (OSError, ValueError) as exc:
            raise ModelError(f"the placer in {folder} is incomplete ({type(exc).__name__}); rerun `tagger segment`") from None
        placer = cls(C=float(info.get("C", C)), seed=int(info.get("seed", 0)))
        placer.classes_ = np.asarray(info["classes"], np.int64)
        placer.weights_, placer.bias_ = (a.astype(np.float32) for a in arrays)
        if placer.weights_.shape[0] != len(placer.classes_) or placer.bias_.shape != (len(placer.classes_),):
            raise ModelError(f"the placer in {folder} does not add up ({placer.weights_.shape} weights for "
                             f"{len(placer.classes_)} segments); rerun `tagger segment`")
        return placer


@dataclass(frozen=True)
class TrainingSet:
    """What a placer was fitted on, saved so `tagger recut` can fit it again to new segments:
    the rows (users table order), their LLM-free features and how many users each stands for."""

    rows: np.ndarray
    features: np.ndarray
    weights: np.ndarray

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        np.save(folder / TRAIN_FILES[0], np.asarray(self.rows, np.int64), allow_pickle=False)
        # float16: the directions matter, not the last bits (as the recut vectors)
        np.save(folder / TRAIN_FILES[1], np.asarray(self.features, np.float16), allow_pickle=False)
        np.save(folder / TRAIN_FILES[2], np.asarray(self.weights, np.float32), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> TrainingSet | None:
        folder = Path(folder)
        if not all((folder / name).exists() for name in TRAIN_FILES):
            return None
        rows, features, weights = (np.load(folder / name, allow_pickle=False) for name in TRAIN_FILES)
        return cls(rows.astype(np.int64), features.astype(np.float32), weights.astype(np.float32))


@dataclass(frozen=True)
class Agreement:
    """How often the placer puts a read user where the full vectors put them, on users it was
    not fitted on: `overall` weighted as the sample stands for all users, `per_segment` as
    segment id → (read users held out, share placed in their own segment). `placed`: the same
    share among the held-out users the placer was at least as sure of as of every user it was left
    to place (the least sure were read by the LLM instead; None until `with_cutoff`)."""

    overall: float
    users: int
    folds: int
    per_segment: dict[int, tuple[int, float]]
    same: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, bool))  # per held-out user
    confidence: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.float32))
    weights: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    placed: float | None = None

    @property
    def low(self) -> bool:
        return self.overall < WARN_BELOW

    def with_cutoff(self, cutoff: float) -> Agreement:
        """The agreement expected on the users the placer placed: those above `cutoff` confidence."""
        above = self.confidence > cutoff
        if not above.any():
            return self
        share = float((self.same[above] * self.weights[above]).sum() / self.weights[above].sum())
        return Agreement(self.overall, self.users, self.folds, self.per_segment, self.same, self.confidence,
                         self.weights, share)

    def summary(self, names: dict[int, str] | None = None, ids: dict[int, int] | None = None) -> dict[str, Any]:
        """run.json's "agreement"; `ids`: segment id by the segmentation's own number (`segment --like`,
        edits), `names` by segment id."""
        names, ids = names or {}, ids or {}
        return {"overall": round(self.overall, 4), "users": self.users, "folds": self.folds,
                "warn_below": WARN_BELOW, "low": self.low,
                **({"placed_estimate": round(self.placed, 4)} if self.placed is not None else {}),
                "per_segment": [{"segment_id": ids.get(row, row), "name": names.get(ids.get(row, row), ""), "users": n,
                                 "agreement": round(a, 4)} for row, (n, a) in sorted(self.per_segment.items())]}


def cross_validate(features: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None, *,
                   folds: int = FOLDS, seed: int = 0, most: int = CV_USERS) -> Agreement | None:
    """The placer's agreement with `labels` on held-out rows (see `Agreement`); None with fewer
    than two segments or too few users to hold any out."""
    labels = np.asarray(labels, np.int64)
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, float)
    rows = np.flatnonzero(labels >= 0)
    rng = np.random.default_rng(seed)
    if len(rows) > most:
        rows = np.sort(rng.choice(rows, most, replace=False))
    if len(np.unique(labels[rows])) < 2 or len(rows) < 2 * folds:
        return None
    fold = rng.permutation(len(rows)) % folds
    predicted = np.full(len(rows), -1, np.int64)
    confidence = np.zeros(len(rows), np.float32)
    for k in range(folds):
        train, test = rows[fold != k], rows[fold == k]
        placer = DistilledPlacer(seed=seed).fit(features[train], labels[train], weights[train])
        predicted[fold == k], confidence[fold == k] = placer.place(features[test])
    truth, w = labels[rows], weights[rows]
    same = predicted == truth
    per_segment = {int(s): (int((truth == s).sum()), float(same[truth == s].mean())) for s in np.unique(truth)}
    return Agreement(float((same * w).sum() / w.sum()), len(rows), folds, per_segment, same, confidence, w)


FIT_USERS = 20_000  # a placer is fitted on at most this many read users (seeded)


@dataclass
class Distilled:
    """A run's placer, what it was fitted on, its cross-validated agreement, and per user the
    placer's confidence where it placed them (NaN for users the full vectors placed)."""

    placer: DistilledPlacer
    training: TrainingSet
    agreement: Agreement | None
    confidence: np.ndarray

    def summary(self, names: dict[int, str] | None = None, ids: dict[int, int] | None = None) -> dict[str, Any] | None:
        return self.agreement.summary(names, ids) if self.agreement is not None else None


def training_rows(rows: np.ndarray, seed: int = 0, most: int = FIT_USERS) -> np.ndarray:
    """At most `most` of `rows` (seeded, sorted): the rows a placer is fitted on."""
    rows = np.asarray(rows, np.int64)
    if len(rows) <= most:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, most, replace=False))


def distil(features: np.ndarray, rows: np.ndarray, labels: np.ndarray, weights: np.ndarray | None, *, users: int,
           seed: int = 0) -> Distilled:
    """Fit the placer on the read users' LLM-free `features` (rows of the users table `rows`) and
    their segments `labels`, and cross-validate it."""
    weights = np.ones(len(rows), np.float32) if weights is None else np.asarray(weights, np.float32)
    placer = DistilledPlacer(seed=seed).fit(features, labels, weights)
    agreement = cross_validate(features, labels, weights, seed=seed)
    return Distilled(placer, TrainingSet(np.asarray(rows, np.int64), np.asarray(features, np.float32), weights),
                     agreement, np.full(users, np.nan, np.float32))


def refit(training: TrainingSet | None, labels: np.ndarray, users: int, seed: int = 0) -> Distilled | None:
    """The placer fitted again on what it was fitted on, to new segments (`labels`: per user, the
    segmentation's own numbers), as after a hand edit; None without a training set or with fewer
    than two segments among its users."""
    if training is None:
        return None
    target = np.asarray(labels, np.int64)[training.rows]
    if len(np.unique(target[target >= 0])) < 2:
        return None
    return distil(training.features, training.rows, target, training.weights, users=users, seed=seed)


def place_distilled(segmentation: Segmenter, vectors: np.ndarray, rows: np.ndarray, distilled: Distilled) -> None:
    """Place `rows` with the distilled placer from their LLM-free vectors (`assigned_by = distilled`,
    strength = cosine to the segment's centroid, confidence = the placer's probability)."""
    if not len(rows):
        return
    centroids = np.asarray(segmentation.centroids_, np.float32)
    labels, confidence, strengths = np.zeros(len(rows), np.int64), np.zeros(len(rows), np.float32), np.zeros(len(rows))
    for start in range(0, len(rows), 100_000):  # in chunks: no copy of every placed user's vector
        part = slice(start, start + 100_000)
        chunk = vectors[rows[part]]
        labels[part], confidence[part] = distilled.placer.place(chunk)
        strengths[part] = np.clip(np.einsum("ij,ij->i", chunk, centroids[np.maximum(labels[part], 0)]), 0, 1)
    segmentation.add_placed(rows, labels, strengths, "distilled")
    distilled.confidence[rows] = confidence


def place_unfitted(segmentation: Segmenter, vectors: np.ndarray, before: np.ndarray, training: TrainingSet | None,
                   seed: int = 0) -> Distilled | None:
    """After the fitted rows were cut again (`tagger recut`): the placer fitted again to the new
    segments from what it was fitted on, and the rows the fit did not see placed again as they were
    placed before (`before`: their assigned_by): the distilled ones by the placer, the ones read
    later by their full vectors."""
    distilled = None
    if training is not None:
        distilled = distil(training.features, training.rows, segmentation.labels_[training.rows], training.weights,
                           users=len(vectors), seed=seed)
    unfitted = ~segmentation.fitted_ & (before != "unsegmented")
    by_placer = unfitted & (before == "distilled") & (distilled is not None)
    if distilled is not None:
        place_distilled(segmentation, vectors, np.flatnonzero(by_placer), distilled)
    later = np.flatnonzero(unfitted & ~by_placer)
    if len(later):
        placed = segmentation.nearest(vectors[later])
        segmentation.add_placed(later, placed.labels, placed.strengths, placed.assigned_by)
    return distilled
