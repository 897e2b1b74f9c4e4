"""Scores of one segmentation against ground truth, per user.

Protocol (../shared/data/README.md): a user's true segment is the majority `category` of their
rows, ties broken alphabetically. Noise (label -1) is scored as one cluster of its own.

Name quality ("name→category match"): each segment's name and every true category label are
embedded with the run's encoder; a segment's name is correct when the category label nearest
to it (cosine) is the majority true category of the segment's members. The score is the share
of segmented users whose segment name is correct. It has no free parameters, so it cannot be
tuned by hand; it rewards names and segments together (an impure segment cannot score for its
minority members), and chance level is about 1 / number of categories. Category labels are
shown with underscores as spaces ("Pet_Supplies" → "Pet Supplies").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def true_segments(frame: pd.DataFrame, user_col: str = "user_id", label_col: str = "category") -> pd.Series:
    """user id → majority category (ties: alphabetically first)."""
    counts = frame.groupby([user_col, label_col]).size().reset_index(name="n")
    counts = counts.sort_values([user_col, "n", label_col], ascending=[True, False, True])
    return counts.drop_duplicates(user_col).set_index(user_col)[label_col]


def cluster_scores(labels: Sequence[int], truth: Sequence[str]) -> dict[str, float]:
    labels = np.asarray(labels, int)
    return {
        "nmi": float(normalized_mutual_info_score(truth, labels)),
        "ari": float(adjusted_rand_score(truth, labels)),
        "coverage": float((labels >= 0).mean()) if len(labels) else 0.0,
        "segments": int(len(set(labels[labels >= 0].tolist()))),
    }


def readable_category(label: str) -> str:
    return str(label).replace("_", " ")


def name_quality(labels: Sequence[int], truth: Sequence[str], names: dict[int, str], encoder) -> float | None:
    """Share of segmented users whose segment's name is nearest to the segment's majority category."""
    labels = np.asarray(labels, int)
    truth = np.asarray(truth, dtype=object)
    segments = sorted(s for s in set(labels.tolist()) if s >= 0 and names.get(s))
    if not segments:
        return None
    categories = sorted(set(truth.tolist()))
    cat_vecs = encoder.encode([readable_category(c) for c in categories])
    name_vecs = encoder.encode([names[s] for s in segments])
    nearest = np.argmax(name_vecs @ cat_vecs.T, axis=1)
    correct = 0
    for seg, cat in zip(segments, nearest, strict=True):
        members = truth[labels == seg]
        values, counts = np.unique(members, return_counts=True)
        majority = values[np.argmax(counts)]  # np.unique sorts, so ties go alphabetically first
        if categories[cat] == majority:
            correct += len(members)
    return correct / max(int((labels >= 0).sum()), 1)
