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

Strict name quality ("a judge that can say no"): the same score, but a name is matched against
one-line descriptions of the groups (eval/groups.toml, written blind from the category names)
pooled with the other dev sets' groups in the same language and with distractor audiences. A
name is correct only when the description nearest to it is its own segment's majority group (or
a department listed with it in `same`), so a vague or off-topic name scores nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

GROUPS = Path(__file__).resolve().parent / "groups.toml"


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
        if categories[cat] == _majority(members):
            correct += len(members)
    return correct / max(int((labels >= 0).sum()), 1)


def _majority(members: np.ndarray) -> str:
    values, counts = np.unique(members, return_counts=True)
    return values[np.argmax(counts)]  # np.unique sorts, so ties go alphabetically first


def load_groups(path: Path = GROUPS) -> dict:
    """eval/groups.toml: {dataset: {"groups": {category: description}, "same": [[a, b], ...]},
    "distractors": {"en": [...], "zh": [...]}}."""
    import tomllib  # Python 3.11+; imported here so the other scores need no TOML reader

    with open(path, "rb") as f:
        return tomllib.load(f)


def _sections(groups: dict) -> dict[str, dict]:
    return {k: v for k, v in groups.items() if isinstance(v, dict) and isinstance(v.get("groups"), dict)}


def _language(texts: Iterable[str]) -> str:
    # Only two languages among the dev sets; any CJK character marks a section as Chinese.
    return "zh" if any("\u4e00" <= ch <= "\u9fff" for t in texts for ch in t) else "en"


def _dataset(sections: dict[str, dict], categories: set[str]) -> str | None:
    """The section whose groups cover the most of the truth's categories, if at least half."""
    covered = {k: len(categories & set(v["groups"])) for k, v in sections.items()}
    best = max(covered, key=covered.get, default=None)
    return best if best is not None and 2 * covered[best] >= len(categories) else None


def _pool(groups: dict, dataset: str) -> tuple[list[str], list[str | None]]:
    """Candidate descriptions and whose they are: the dataset's own groups by category, then the
    other same-language sections' groups (by their category: a name nearest one is wrong unless
    `same_across` pairs it with the segment's group) and the distractors, owned by no category
    (None), so that a name nearest one of them is wrong."""
    sections = _sections(groups)
    own = sections[dataset]["groups"]
    language = _language(own.values())
    texts, owners = list(own.values()), list(own)
    for name, section in sections.items():
        if name != dataset and _language(section["groups"].values()) == language:
            texts += list(section["groups"].values())
            owners += list(section["groups"])
    distractors = list(groups.get("distractors", {}).get(language, []))
    return texts + distractors, owners + [None] * len(distractors)


def _equivalents(section: dict, across: Sequence[Sequence[str]] = ()) -> dict[str, set[str]]:
    """category → the categories a name may match for it (itself, its `same` partners, and the
    other dev sets' groups `same_across` says are the same audience)."""
    out: dict[str, set[str]] = {}
    for members in [*section.get("same", []), *across]:
        for m in members:
            out.setdefault(m, {m}).update(members)
    return out


def strict_name_quality(labels: Sequence[int], truth: Sequence[str], names: dict[int, str], encoder,
                        groups: dict | None = None) -> float | None:
    """Share of segmented users whose segment's name is nearest (among all pooled descriptions) to
    a description of the segment's majority category; None when no section of `groups` (default
    eval/groups.toml) covers at least half the truth's categories, or no segment has a name."""
    labels = np.asarray(labels, int)
    judged = strict_option_judgements(labels, truth, {s: [n] for s, n in names.items() if n}, encoder, groups)
    if judged is None:
        return None
    correct = sum(int((labels == seg).sum()) for seg, (ok,) in judged.items() if ok)
    return correct / max(int((labels >= 0).sum()), 1)


def strict_option_judgements(labels: Sequence[int], truth: Sequence[str], options: dict[int, Sequence[str]], encoder,
                             groups: dict | None = None) -> dict[int, list[bool]] | None:
    """The strict judge on every name a segment was offered, not only the one it took: segment →
    for each of its options, whether the description nearest it is the segment's majority group.
    What a perfect choice among the offered names could score is the share of users whose segment
    has a True; None where the strict judge does not apply (as strict_name_quality)."""
    labels = np.asarray(labels, int)
    truth = np.asarray(truth, dtype=object)
    groups = load_groups() if groups is None else groups
    dataset = _dataset(_sections(groups), set(truth.tolist()))
    segments = sorted(s for s in set(labels.tolist()) if s >= 0 and options.get(s))
    if dataset is None or not segments:
        return None
    texts, owners = _pool(groups, dataset)
    equivalents = _equivalents(groups[dataset], groups.get("same_across", []))
    # Normalised here: the score must not depend on whether the encoder returns unit vectors.
    flat = [o for seg in segments for o in options[seg]]
    nearest = iter(np.argmax(_unit(encoder.encode(flat)) @ _unit(encoder.encode(texts)).T, axis=1))
    out = {}
    for seg in segments:
        majority = _majority(truth[labels == seg])
        out[seg] = [owners[next(nearest)] in equivalents.get(majority, {majority}) for _ in options[seg]]
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    from tagger.vectors import unit_rows

    return unit_rows(np.asarray(x, np.float64))
