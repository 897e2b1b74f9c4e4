"""Segment shares over time within one run (`--time-col`, `--period`).

`shares_by_period` counts, per period (month by default), the users active in it (with at
least one comment) and the share of them in each segment; segments that grow or shrink most
are ranked by the change in share between the early and late half of the activity.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from tagger.config import Period
from tagger.errors import ConfigError
from tagger.stages.data import to_datetime

PERIODS = {"day": "D", "week": "W", "month": "M", "quarter": "Q", "year": "Y"}


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
