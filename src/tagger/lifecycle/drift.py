"""Segments over time: shares per period within one run, and matching segments across runs.

`shares_by_period` counts, per period (month by default), the users active in it (with at
least one comment) and the share of them in each segment; segments that grow or shrink most
are ranked by the change in share between the early and late half of the activity.

`drift(old_run, new_run)` matches the two runs' segments one-to-one by centroid similarity
(Hungarian assignment over pairs above `min_similarity`); matched segments keep the old id,
unmatched new ones get fresh ids after the old maximum, and old ones left unmatched have
vanished. Similarity is the cosine of the centroids after subtracting the mean user vector of
both runs: every user vector shares a large common direction, so raw centroid cosines of
unrelated segments are already 0.5-0.9 and say little. When both runs have a segment tree, the
nodes above the leaves (parents, grandparents) are matched the same way, each level with the
same level of the other run, under the report's `parents` key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tagger.config import Period
from tagger.errors import ConfigError, ModelError
from tagger.lifecycle.segment_model import current_names, load_model
from tagger.stages.data import to_datetime
from tagger.vectors import unit_rows

PERIODS = {"day": "D", "week": "W", "month": "M", "quarter": "Q", "year": "Y"}
MIN_SIMILARITY = 0.5
# A matched segment less similar than this, or whose share changed this much, is listed as moved.
MOVED_SIMILARITY = 0.75
MOVED_SHARE = 0.05


def shares_by_period(
    activity: pd.DataFrame, segment_of: dict[str, int], names: dict[int, str], *, period: Period = "month", top: int = 3,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """`activity` has columns user_id, time (one row per comment). Returns the long table
    (period, segment_id, segment_name, users, active_users, share) and a summary."""
    if period not in PERIODS:
        raise ConfigError(f"unknown period '{period}'; choose one of: {', '.join(PERIODS)}")
    data = pd.DataFrame({"user_id": activity["user_id"].astype(str), "time": to_datetime(activity["time"])}).dropna()
    data["segment_id"] = data["user_id"].map(segment_of).fillna(-1).astype(int)
    columns = ["period", "segment_id", "segment_name", "users", "active_users", "share"]
    if data.empty:
        return pd.DataFrame(columns=columns), {"period": period, "periods": 0, "growing": [], "shrinking": []}
    data["period"] = data["time"].dt.tz_localize(None).dt.to_period(PERIODS[period]).astype(str)
    per = data.drop_duplicates(["period", "user_id"])
    active = per.groupby("period")["user_id"].nunique()
    counts = per.groupby(["period", "segment_id"]).size().rename("users").reset_index()
    counts["active_users"] = counts["period"].map(active)
    counts["share"] = (counts["users"] / counts["active_users"]).round(4)
    counts["segment_name"] = counts["segment_id"].map(lambda s: names.get(int(s), "unsegmented"))
    table = counts[columns].sort_values(["period", "segment_id"], kind="stable").reset_index(drop=True)

    # Early vs late half of all comments: monthly shares of a small run are too noisy to rank.
    middle = data["time"].median()
    halves = {}
    for half, part in (("early", data[data["time"] <= middle]), ("late", data[data["time"] > middle])):
        users = part.drop_duplicates("user_id")
        halves[half] = users["segment_id"].value_counts() / max(len(users), 1)
    trends = []
    for sid in sorted(s for s in set(segment_of.values()) if s >= 0):
        early, late = float(halves["early"].get(sid, 0.0)), float(halves["late"].get(sid, 0.0))
        trends.append({"segment_id": sid, "segment_name": names.get(sid, f"segment {sid}"),
                       "share_early": round(early, 4), "share_late": round(late, 4), "change": round(late - early, 4)})
    trends.sort(key=lambda t: (-t["change"], t["segment_id"]))
    summary = {
        "period": period, "periods": int(table["period"].nunique()),
        "first": str(table["period"].min()), "last": str(table["period"].max()),
        "split_at": str(middle),
        "growing": [t for t in trends if t["change"] > 0][:top],
        "shrinking": [t for t in reversed(trends) if t["change"] < 0][:top],
    }
    return table, summary


@dataclass
class Level:
    """One level of a run's segment tree: its nodes (dicts with segment_id, name, size), their unit
    centroids (row i = nodes[i]) and the users placed in a leaf, whom every level's shares divide."""

    nodes: list[dict[str, Any]]
    centroids: np.ndarray
    total: int


def _run_levels(run_dir: Path):
    """(model, leaf level, parent levels by level number) with the names the run shows now."""
    model = load_model(run_dir)
    names = current_names(run_dir, model)
    parents = [dict(p) for p in model.parents]
    for node in [*model.segments, *parents]:
        node["name"] = names.get(node["segment_id"], node["name"])
    # shares of placed users, as in the run's segments table
    total = max(sum(s["size"] for s in model.segments), 1)
    # Only the encoder's columns: each run's phrase space is a basis of its own.
    leaves = Level(model.segments, model.semantic_centroids(model.centroids), total)
    upper: dict[int, Level] = {}
    if not parents:
        return model, leaves, upper
    centroids = np.asarray(model.parent_centroids if model.parent_centroids is not None else [])
    if len(centroids) != len(parents):
        raise ModelError(f"segment model in {run_dir} holds {len(parents)} parent segments but {len(centroids)} "
                         "parent centroids; rerun `tagger segment` to rebuild it")
    for level in sorted({int(p["level"]) for p in parents}):
        rows = [i for i, p in enumerate(parents) if int(p["level"]) == level]
        upper[level] = Level([parents[i] for i in rows], model.semantic_centroids(centroids[rows]), total)
    return model, leaves, upper


def mean_user(old, new) -> np.ndarray:
    """The centre centroids are compared around: the mean user vector of both runs."""
    means = [m.semantic_user_mean() for m in (old, new) if m.user_mean is not None]
    return np.mean(means, axis=0) if means else np.zeros(old.semantic_dims)


def centred_similarity(old_centroids: np.ndarray, new_centroids: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """(new nodes, old nodes) cosine of centroids minus `centre` (the mean user of both runs)."""
    if not len(old_centroids) or not len(new_centroids):
        return np.zeros((len(new_centroids), len(old_centroids)))
    return unit_rows(new_centroids - centre) @ unit_rows(old_centroids - centre).T


def _pairs(similarity: np.ndarray, min_similarity: float) -> dict[int, int]:
    """new row -> old row of the Hungarian assignment, pairs below `min_similarity` left out."""
    from scipy.optimize import linear_sum_assignment

    if not similarity.size:
        return {}
    # Pairs below the threshold count as nothing, so they never displace a real match.
    rows, cols = linear_sum_assignment(-np.where(similarity >= min_similarity, similarity, 0))
    return {int(r): int(c) for r, c in zip(rows, cols, strict=True) if similarity[r, c] >= min_similarity}


def _matched(before: dict[str, Any], after: dict[str, Any], value: float, raw: float, old: Level,
             new: Level) -> dict[str, Any]:
    old_share, share = before["size"] / old.total, after["size"] / new.total
    return {
        "stable_id": before["segment_id"], "old_id": before["segment_id"], "new_id": after["segment_id"],
        "old_name": before["name"], "new_name": after["name"], "similarity": round(value, 4),
        # float error can put the cosine of two equal unit centroids a hair above 1
        "centroid_shift": round(max(0.0, 1 - raw), 4), "old_size": before["size"], "new_size": after["size"],
        "old_share": round(old_share, 4), "new_share": round(share, 4), "share_change": round(share - old_share, 4),
        "moved": bool(value < MOVED_SIMILARITY or abs(share - old_share) >= MOVED_SHARE),
    }


def match_level(old: Level, new: Level, centre: np.ndarray, *, next_id: int,
                min_similarity: float) -> tuple[dict[str, Any], int]:
    """({matched, moved, new, vanished}, the next free stable id) for one level of two runs.
    Matched nodes keep the old id; unmatched new ones take ids from `next_id` on."""
    similarity = centred_similarity(old.centroids, new.centroids, centre)
    raw = new.centroids @ old.centroids.T if similarity.size else similarity
    pairs = _pairs(similarity, min_similarity)
    matched, new_only = [], []
    for row, node in enumerate(new.nodes):
        if row in pairs:
            col = pairs[row]
            matched.append(_matched(old.nodes[col], node, float(similarity[row, col]), float(raw[row, col]), old, new))
            continue
        best = int(similarity[row].argmax()) if similarity.shape[1] else None
        new_only.append({"stable_id": next_id, "new_id": node["segment_id"], "name": node["name"], "size": node["size"],
                         "share": round(node["size"] / new.total, 4),
                         "closest_old": old.nodes[best]["name"] if best is not None else None,
                         "closest_similarity": round(float(similarity[row, best]), 4) if best is not None else None})
        next_id += 1
    taken = set(pairs.values())
    vanished = [{"old_id": s["segment_id"], "name": s["name"], "size": s["size"], "share": round(s["size"] / old.total, 4)}
                for col, s in enumerate(old.nodes) if col not in taken]
    matched.sort(key=lambda m: m["stable_id"])
    return {"matched": matched, "moved": [m["stable_id"] for m in matched if m["moved"]], "new": new_only,
            "vanished": vanished}, next_id


def _parents(old_upper: dict[int, Level], new_upper: dict[int, Level], centre: np.ndarray, *, next_id: int,
             min_similarity: float) -> dict[str, Any]:
    """Every level above the leaves matched level by level, one section: each entry names its level."""
    section: dict[str, list] = {"matched": [], "moved": [], "new": [], "vanished": []}
    for level in sorted(set(old_upper) | set(new_upper)):
        # a level only one run has: all its nodes there are new (or vanished)
        none = Level([], np.zeros((0, len(centre))), 1)
        part, next_id = match_level(old_upper.get(level, none), new_upper.get(level, none), centre,
                                    next_id=next_id, min_similarity=min_similarity)
        for key in ("matched", "new", "vanished"):
            section[key] += [{"level": level, **entry} for entry in part[key]]
        section["moved"] += part["moved"]
    return section


def drift(old_run: Path, new_run: Path, *, min_similarity: float = MIN_SIMILARITY) -> dict[str, Any]:
    """Matched, moved, new and vanished segments between two runs built with the same embedder;
    with `parents` the same for the nodes above the leaves, when both runs have them."""
    old, old_leaves, old_upper = _run_levels(old_run)
    new, new_leaves, new_upper = _run_levels(new_run)
    if old.manifest.embedder != new.manifest.embedder or old.semantic_dims != new.semantic_dims:
        raise ModelError(f"the runs use different embedders ({old.manifest.embedder} vs "
                         f"{new.manifest.embedder}), so their segments cannot be compared; "
                         "segment both with the same --embedder")
    centre = mean_user(old, new)
    # New ids follow every old id, parents' included, so a new leaf never takes an old parent's id.
    next_id = max((n["segment_id"] for level in [old_leaves, *old_upper.values()] for n in level.nodes), default=-1) + 1
    leaves, next_id = match_level(old_leaves, new_leaves, centre, next_id=next_id, min_similarity=min_similarity)
    report = {
        "old_run": str(old_run), "new_run": str(new_run), "embedder": new.manifest.embedder,
        "min_similarity": min_similarity, "old_users": old_leaves.total, "new_users": new_leaves.total,
        **leaves,
    }
    # A flat run (or a model saved before segment trees) has no parents to compare with.
    if old_upper and new_upper:
        report["parents"] = _parents(old_upper, new_upper, centre, next_id=next_id, min_similarity=min_similarity)
    return report


def shares_for_run(frame: pd.DataFrame, config, users: pd.DataFrame):
    """Per-period shares for a finished run's users table, from the loaded input frame's --time-col.
    Only users placed in a segment count, as in the segments table's shares."""
    from tagger.stages.data import _as_id

    activity = pd.DataFrame({"user_id": frame[config.user_col].map(_as_id), "time": frame[config.time_col]})
    placed = users[users["segment_id"] >= 0]
    segment_of = dict(zip(placed["user_id"], placed["segment_id"].astype(int), strict=True))
    activity = activity[activity["user_id"].isin(segment_of)]
    names = dict(zip(placed["segment_id"].astype(int), placed["segment_name"], strict=True))
    return shares_by_period(activity, segment_of, names, period=config.period)
