"""Segments over time: shares per period within one run, and matching segments across runs.

`shares_by_period` counts, per period (month by default), the users active in it (with at
least one comment) and the share of them in each segment; segments that grow or shrink most
are ranked by the change in share between the early and late half of the activity.

`drift(old_run, new_run)` matches the two runs' segments one-to-one by centroid similarity
(Hungarian assignment over pairs above `min_similarity`); matched segments keep the old id,
unmatched new ones get fresh ids after the old maximum, and old ones left unmatched have
vanished. Similarity is the cosine of the centroids after subtracting the mean user vector of
both runs: every user vector shares a large common direction, so raw centroid cosines of
unrelated segments are already 0.5-0.9 and say little.
"""

from __future__ import annotations

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


def _run_segments(run_dir: Path):
    model = load_model(run_dir)
    names = current_names(run_dir, model)
    for seg in model.segments:
        seg["name"] = names.get(seg["segment_id"], seg["name"])
    # shares of placed users, as in the run's segments table
    total = max(sum(s["size"] for s in model.segments), 1)
    return model, total


def centred_similarity(old, new) -> np.ndarray:
    """(new segments, old segments) cosine of centroids minus the mean user of both runs."""
    if not len(old.centroids) or not len(new.centroids):
        return np.zeros((len(new.centroids), len(old.centroids)))
    means = [m.user_mean for m in (old, new) if m.user_mean is not None]
    centre = np.mean(means, axis=0) if means else np.zeros(old.centroids.shape[1])

    return unit_rows(new.centroids - centre) @ unit_rows(old.centroids - centre).T


def drift(old_run: Path, new_run: Path, *, min_similarity: float = MIN_SIMILARITY) -> dict[str, Any]:
    """Matched, moved, new and vanished segments between two runs built with the same embedder."""
    from scipy.optimize import linear_sum_assignment

    old, old_total = _run_segments(old_run)
    new, new_total = _run_segments(new_run)
    if old.manifest.get("embedder") != new.manifest.get("embedder") or old.centroids.shape[1:] != new.centroids.shape[1:]:
        raise ModelError(f"the runs use different embedders ({old.manifest.get('embedder')} vs "
                         f"{new.manifest.get('embedder')}), so their segments cannot be compared; "
                         "segment both with the same --embedder")
    similarity = centred_similarity(old, new)
    raw = new.centroids @ old.centroids.T if similarity.size else similarity
    # Pairs below the threshold count as nothing, so they never displace a real match.
    rows, cols = linear_sum_assignment(-np.where(similarity >= min_similarity, similarity, 0)) if similarity.size else ([], [])
    pairs = {int(r): int(c) for r, c in zip(rows, cols, strict=True) if similarity[r, c] >= min_similarity}
    next_id = max((s["segment_id"] for s in old.segments), default=-1) + 1
    matched, new_only = [], []
    for seg in new.segments:
        sid = seg["segment_id"]
        share = seg["size"] / new_total
        if sid in pairs:
            before = old.segments[pairs[sid]]
            old_share = before["size"] / old_total
            value = float(similarity[sid, pairs[sid]])
            shift = 1 - float(raw[sid, pairs[sid]])
            matched.append({
                "stable_id": before["segment_id"], "old_id": before["segment_id"], "new_id": sid,
                "old_name": before["name"], "new_name": seg["name"], "similarity": round(value, 4),
                "centroid_shift": round(shift, 4), "old_size": before["size"], "new_size": seg["size"],
                "old_share": round(old_share, 4), "new_share": round(share, 4),
                "share_change": round(share - old_share, 4),
                "moved": bool(value < MOVED_SIMILARITY or abs(share - old_share) >= MOVED_SHARE),
            })
        else:
            best = int(similarity[sid].argmax()) if similarity.shape[1] else None
            new_only.append({"stable_id": next_id, "new_id": sid, "name": seg["name"], "size": seg["size"],
                             "share": round(share, 4),
                             "closest_old": old.segments[best]["name"] if best is not None else None,
                             "closest_similarity": round(float(similarity[sid, best]), 4) if best is not None else None})
            next_id += 1
    taken = set(pairs.values())
    vanished = [{"old_id": s["segment_id"], "name": s["name"], "size": s["size"], "share": round(s["size"] / old_total, 4)}
                for s in old.segments if s["segment_id"] not in taken]
    return {
        "old_run": str(old_run), "new_run": str(new_run), "embedder": new.manifest.get("embedder"),
        "min_similarity": min_similarity, "old_users": old_total, "new_users": new_total,
        "matched": sorted(matched, key=lambda m: m["stable_id"]),
        "moved": [m["stable_id"] for m in matched if m["moved"]],
        "new": new_only, "vanished": vanished,
    }


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
