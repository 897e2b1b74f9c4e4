"""`tagger drift OLD NEW`: what changed between two runs, and only what changed beyond the noise
of drawing users.

Both runs are compared in one space at a time, from what they saved (each user's vector and
phrases in `model/recut`, their segment in users.parquet; nothing is embedded again):

- **OLD's space.** OLD's users in OLD's segments (its users table), and NEW's users as OLD's
  model places them (NEW's phrases projected into OLD's phrase space). Per OLD segment: its share
  of OLD's users, its share of NEW's, and the change. A segment is **vanished** when the drop is
  beyond the noise and NEW's users fill at most `EMPTIED` of the share OLD's did, or at most
  `HALF` of it while no NEW segment continues it (the users left there went to other segments
  in NEW's own clustering); **moved** when the change is beyond the noise and at least
  `min_change`, measured among the users of segments both runs hold (a group that vanished or
  appeared changes every other share a little, which is not a change of theirs).
- **NEW's space.** The same the other way round: NEW's users in NEW's segments, OLD's users as
  NEW's model places them. A NEW segment is **new** when OLD's users fill at most `EMPTIED` of the
  share NEW's do (or `HALF` while it continues no OLD segment), the gap is beyond the noise, and
  OLD's model places most of its members poorly (`POOR_FIT` of them in no segment, or further from
  their segment's centroid than three in four of its own members: users OLD's segments do not
  describe).

"Beyond the noise" is a bootstrap interval on the change: users are drawn again with Poisson(1)
weights, a user in both runs (the same id) with the same weight on both sides, so a sample of the
same people is compared as one; the interval is the change ± z bootstrap standard errors at
`confidence` (seeded: the same runs give the same report). For moved, z is Bonferroni-corrected
over the report's segments (every level's); vanished and new, which also need the other run to fill under half a
segment's share, use the segment's own interval. The report gives the interval its verdict used. Each level of the segment tree is compared on its own (`parents` in the report).
Which NEW segment continues which OLD one is `lineage.match` over both placements.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagger.errors import ModelError
from tagger.lifecycle.lineage import (RunUsers, centred_similarity, contingency, index_of, match, model_levels,
                                      placed_by, run_users)
from tagger.lifecycle.like import shown_segments
from tagger.lifecycle.segment_model import SegmentModel, load_model
from tagger.stages.clustering import Placement

REPLICATES = 500
CONFIDENCE = 0.95  # family-wise over one level's segments
# The smallest share change reported as moved, however certain: at a million users a change of
# a tenth of a point is beyond the noise and of no use to anyone.
MIN_CHANGE = 0.02
# Vanished / new: the other run fills at most this much of the share (two fifths), or at most half
# where no segment of the other run continues it. A group the data set held apart fills none of
# its segment once it is gone, but a segment it shared with a few users of a neighbouring group
# keeps those few; a segment that only shrank by half is still continued there (moved).
EMPTIED = 0.4
HALF = 1 / 2
# New: at least this share of its members are users OLD's model places poorly: in no segment, or
# weaker than the weakest quarter of that segment's own members (a group OLD knows: about a quarter).
POOR_FIT = 0.5
WEAK_QUANTILE = 0.25


@dataclass
class Space:
    """One model's placement of both runs' users, at one level: node positions (-1: none)."""

    ids: list[int]
    old: np.ndarray  # per OLD user
    new: np.ndarray  # per NEW user


@dataclass
class Weights:
    """Poisson bootstrap weights of both runs' users, one row per replicate; a user in both runs
    has one weight for both."""

    old: np.ndarray
    new: np.ndarray

    @classmethod
    def draw(cls, old_ids: np.ndarray, new_ids: np.ndarray, replicates: int, seed: int) -> Weights:
        union, inverse = np.unique(np.concatenate([old_ids, new_ids]), return_inverse=True)
        draws = np.random.default_rng(seed).poisson(1.0, size=(replicates, len(union))).astype(np.float32)
        return cls(draws[:, inverse[: len(old_ids)]], draws[:, inverse[len(old_ids):]])


def shares(positions: np.ndarray, nodes: int, weights: np.ndarray | None = None,
           keep: np.ndarray | None = None) -> np.ndarray:
    """Share of the kept users in each node (last column: in none); one row per weight row."""
    keep = np.ones(len(positions), bool) if keep is None else keep
    index = np.where(positions >= 0, positions, nodes)[keep]
    if weights is None:
        counts = np.bincount(index, minlength=nodes + 1).astype(float)[None, :]
    else:
        w = weights[:, keep]
        counts = np.zeros((len(w), nodes + 1))
        for node in range(nodes + 1):
            counts[:, node] = w[:, index == node].sum(axis=1)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1e-12)


def z_value(confidence: float, tests: int) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - (1 - confidence) / (2 * max(tests, 1))))


@dataclass
class Change:
    """One share change with its bootstrap interval."""

    before: np.ndarray
    after: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, before: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray], z: float) -> Change:
        """`before`/`after`: (shares, their bootstrap replicates); the interval is the change ± z SE."""
        change = after[0] - before[0]
        error = (after[1] - before[1]).std(axis=0)
        return cls(before[0], after[0], change - z * error, change + z * error)

    def beyond_noise(self) -> np.ndarray:
        return (self.low > 0) | (self.high < 0)


def drift(old_run: Path, new_run: Path, *, seed: int = 0, replicates: int = REPLICATES,
          confidence: float = CONFIDENCE, min_change: float = MIN_CHANGE) -> dict[str, Any]:
    """The report: per OLD segment its shares, interval and verdict; new segments; the same for
    each level above the leaves (`parents`) when both runs have it."""
    old, new = load_model(old_run), load_model(new_run)
    if old.manifest.embedder != new.manifest.embedder or old.semantic_dims != new.semantic_dims:
        raise ModelError(f"the runs use different embedders ({old.manifest.embedder} vs {new.manifest.embedder}), "
                         "so their segments cannot be compared; segment both with the same --embedder")
    old_users, new_users = run_users(old_run, old), run_users(new_run, new)
    placements = {"old_in_old": _own(old, old_users), "new_in_old": placed_by(old, new_users.semantic, new_users.corpus),
                  "old_in_new": placed_by(new, old_users.semantic, old_users.corpus), "new_in_new": _own(new, new_users)}
    weights = Weights.draw(old_users.user_ids[old_users.usable], new_users.user_ids[new_users.usable], replicates, seed)
    names = (shown_segments(old_run, old), shown_segments(new_run, new))
    compared = range(min(old.levels, new.levels))
    # moved is one family over the whole report: every OLD segment of every level compared
    z_moved = z_value(confidence, sum(len(model_levels(old)[level][0]) for level in compared))
    levels = [_level(level, old, new, old_users, new_users, placements, weights, names, confidence, z_moved, min_change)
              for level in compared]
    report = {
        "old_run": str(old_run), "new_run": str(new_run), "embedder": new.manifest.embedder,
        "old_users": int(old_users.usable.sum()), "new_users": int(new_users.usable.sum()),
        "shared_users": len(set(old_users.user_ids[old_users.usable]) & set(new_users.user_ids[new_users.usable])),
        "settings": {"replicates": replicates, "confidence": confidence, "min_change": min_change, "seed": seed,
                     "emptied": round(EMPTIED, 4), "half": HALF, "poor_fit": POOR_FIT},
        **levels[0],
    }
    if len(levels) > 1:
        report["parents"] = {key: [{"level": level, **row} if isinstance(row, dict) else row
                                   for level, part in enumerate(levels[1:], start=1) for row in part[key]]
                             for key in ("segments", "matched", "moved", "new", "vanished")}
    return report


def _own(model: SegmentModel, users: RunUsers) -> Placement:
    """A run's users in its own segments, placed by its model's rule as the other run's users are
    (a user in both runs with the same vector then counts alike on both sides, and only users who
    differ carry noise); a user a person moved stays where they were put."""
    placed = placed_by(model, users.semantic, users.corpus)
    if users.moved is None or not users.moved.any():
        return placed
    labels = np.where(users.moved, users.leaves, placed.labels)
    return Placement(labels, placed.strengths, np.where(users.moved, "person", placed.assigned_by).astype(object))


def _level(level: int, old: SegmentModel, new: SegmentModel, old_users: RunUsers, new_users: RunUsers,
           placements: dict[str, Placement], weights: Weights, names, confidence: float, z_moved: float,
           min_change: float) -> dict[str, Any]:
    (old_ids, old_centroids), (new_ids, new_centroids) = model_levels(old)[level], model_levels(new)[level]
    in_old = Space(old_ids, *(index_of(old_ids, old.level_of(level, placements[k].labels))
                              for k in ("old_in_old", "new_in_old")))
    in_new = Space(new_ids, *(index_of(new_ids, new.level_of(level, placements[k].labels))
                              for k in ("old_in_new", "new_in_new")))
    ou, nu = old_users.usable, new_users.usable
    # Vanished and new need the other run to fill under half a segment's share: a change that large
    # is tested on its own interval; moved, with no such floor, on intervals that hold for all the
    # report's segments together (Bonferroni: `z_moved`).
    z_own = z_value(confidence, 1)
    # NEW's space first: users of new groups are left out of OLD's shares below
    appeared = Change.of(_with_replicates(in_new.old[ou], len(new_ids), weights.old),
                         _with_replicates(in_new.new[nu], len(new_ids), weights.new), z_own)
    matches = _matches(old, new, in_old, in_new, ou, nu, old_centroids, new_centroids)
    continued = {m.old: m.new for m in matches}
    poor = _placed_poorly(placements["new_in_old"], old_users, nu, in_new.new[nu], len(new_ids))
    emptied = np.where(np.isin(np.arange(len(new_ids)), [m.new for m in matches]), EMPTIED, HALF)
    is_new = (appeared.before[:-1] <= emptied * appeared.after[:-1]) & (appeared.low[:-1] > 0) & (poor >= POOR_FIT)
    raw = Change.of(_with_replicates(in_old.old[ou], len(old_ids), weights.old),
                    _with_replicates(in_old.new[nu], len(old_ids), weights.new), z_own)
    emptied = np.where(np.isin(np.arange(len(old_ids)), list(continued)), EMPTIED, HALF)
    vanished = (raw.after[:-1] <= emptied * raw.before[:-1]) & (raw.high[:-1] < 0)
    gone = np.flatnonzero(vanished)
    keep_old = ~np.isin(in_old.old[ou], gone)
    keep_new = ~np.isin(in_old.new[nu], gone) & ~np.isin(in_new.new[nu], np.flatnonzero(is_new))
    kept = Change.of(_with_replicates(in_old.old[ou], len(old_ids), weights.old, keep_old),
                     _with_replicates(in_old.new[nu], len(old_ids), weights.new, keep_new), z_moved)
    moved = ~vanished & kept.beyond_noise()[:-1] & (np.abs(kept.after - kept.before)[:-1] >= min_change)
    old_names, new_names = names
    rows = []
    for j, sid in enumerate(old_ids):
        verdict = "vanished" if vanished[j] else "moved" if moved[j] else "same"
        follower = continued.get(j)
        # the change that decided: a vanished segment's own, the others' among the segments both runs hold
        decided = raw if vanished[j] else kept
        rows.append({"segment_id": sid, "name": _name(old_names, old, sid), "old_share": _r(raw.before[j]),
                     "new_share": _r(raw.after[j]), "change": _r(decided.after[j] - decided.before[j]),
                     "interval": [_r(decided.low[j]), _r(decided.high[j])], "verdict": verdict,
                     "new_id": new_ids[follower] if follower is not None else None,
                     "new_name": _name(new_names, new, new_ids[follower]) if follower is not None else None})
    closest = _closest(in_old.new[nu], in_new.new[nu], len(new_ids), len(old_ids))
    appeared_rows = [{"segment_id": new_ids[i], "name": _name(new_names, new, new_ids[i]), "share": _r(appeared.after[i]),
                      "old_share": _r(appeared.before[i]), "interval": [_r(appeared.low[i]), _r(appeared.high[i])],
                      "placed_poorly": _r(poor[i]), "verdict": "new",
                      "closest_old": _name(old_names, old, old_ids[closest[i]]) if closest[i] >= 0 else None}
                     for i in np.flatnonzero(is_new)]
    return {
        "segments": rows,
        "matched": [{"old_id": old_ids[m.old], "new_id": new_ids[m.new], "old_name": _name(old_names, old, old_ids[m.old]),
                     "new_name": _name(new_names, new, new_ids[m.new]), "similarity": m.similarity,
                     "overlap": m.overlap, "jaccard": m.jaccard} for m in sorted(matches, key=lambda m: old_ids[m.old])],
        "moved": [r["segment_id"] for r in rows if r["verdict"] == "moved"],
        "new": appeared_rows,
        "vanished": [{"segment_id": r["segment_id"], "old_id": r["segment_id"], "name": r["name"],
                      "share": r["old_share"], "new_share": r["new_share"]} for r in rows if r["verdict"] == "vanished"],
    }


def _with_replicates(positions: np.ndarray, nodes: int, weights: np.ndarray,
                     keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    return shares(positions, nodes, keep=keep)[0], shares(positions, nodes, weights, keep)


def _placed_poorly(placed: Placement, own: RunUsers, usable: np.ndarray, positions: np.ndarray,
                   nodes: int) -> np.ndarray:
    """Per NEW node, the share of its members OLD's model places poorly: in no segment, or further
    from their OLD segment's centroid than three in four of that segment's own members are."""
    floor = {int(s): float(np.quantile(own.strengths[own.leaves == s], WEAK_QUANTILE))
             for s in np.unique(own.leaves[(own.leaves >= 0) & own.usable])}
    labels, strengths = placed.labels[usable], placed.strengths[usable]
    poor = (labels < 0) | (strengths < np.array([floor.get(int(s), 1.0) for s in labels]))
    out = np.zeros(nodes)
    for node in range(nodes):
        members = positions == node
        out[node] = poor[members].mean() if members.any() else 0.0
    return out


def _matches(old: SegmentModel, new: SegmentModel, in_old: Space, in_new: Space, ou: np.ndarray, nu: np.ndarray,
             old_centroids: np.ndarray, new_centroids: np.ndarray):
    """Which NEW node continues which OLD one: both runs' users, each placed by both models."""
    counts = (contingency(in_new.new[nu], in_old.new[nu], len(in_new.ids), len(in_old.ids))
              + contingency(in_new.old[ou], in_old.old[ou], len(in_new.ids), len(in_old.ids)))
    centre = np.mean([old.semantic_user_mean(), new.semantic_user_mean()], axis=0)
    return match(counts, centred_similarity(new_centroids, old_centroids, centre))


def _closest(old_positions: np.ndarray, new_positions: np.ndarray, new_nodes: int, old_nodes: int) -> np.ndarray:
    """Per NEW node, the OLD node OLD's model places most of its members in (-1: none)."""
    counts = contingency(new_positions, old_positions, new_nodes, old_nodes)[:-1, :-1]
    return np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), -1) if counts.size else np.full(new_nodes, -1)


def _name(shown: dict[int, dict[str, Any]], model: SegmentModel, sid: int) -> str:
    return str(shown.get(sid, {}).get("name", model.names.get(sid, f"segment {sid}")))


def _r(value: float) -> float:
    return round(float(value), 4)
