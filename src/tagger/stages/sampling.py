"""Which users the LLM reads when it may read only some (`--llm-users N`).

The LLM is most of a run's cost and grows with every user, while what separates users comes
mostly from their text, which costs no LLM. So with a budget of N users below the number of
users, the run reads a sample that covers every group of the data:

1. every user's LLM-free vector (the encoder's text vector joined with their phrase space) is
   grouped by seeded mini-batch k-means into about sqrt(users) pre-groups (no more than the
   sample can give `FLOOR` users each);
2. the first `1 - RESERVE` of the budget is drawn from every pre-group: each gets `FLOOR` users
   (all of a smaller one), the rest of the draw is shared in proportion to the groups' sizes,
   and a drawn user stands for `group size / drawn from it` users (the placer's and the
   agreement's weights);
3. the rest of the budget goes to the users the distilled placer is least sure of
   (`least_confident`), who are then placed by their full vectors.

The same seed gives the same sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# The size up to which `auto` reads everyone, and how many it reads of a larger input. Chosen from
# the agreement curve on the dev sets and the cost of a read user against an embedded one
# (docs/how-it-works.md, "A bounded LLM budget").
AUTO_LLM_USERS = 2_000
RESERVE = 0.2  # of the budget, kept for the users the placer is least sure of
FLOOR = 3  # users drawn from every pre-group (all of a smaller one)
MAX_GROUPS = 300


@dataclass(frozen=True)
class Budget:
    """How many of `users` the LLM reads (`llm_users`), from the `--llm-users` setting."""

    users: int
    llm_users: int

    @classmethod
    def resolve(cls, setting: int | str, users: int) -> Budget:
        if setting == "all" or (setting == "auto" and users <= AUTO_LLM_USERS):
            return cls(users, users)
        wanted = AUTO_LLM_USERS if setting == "auto" else int(setting)
        return cls(users, min(wanted, users))

    @property
    def everyone(self) -> bool:
        return self.llm_users >= self.users

    @property
    def first(self) -> int:
        """Users read before the segments are found; the rest of the budget is the reserve."""
        return self.llm_users if self.everyone else max(1, self.llm_users - math.floor(self.llm_users * RESERVE))

    @property
    def reserve(self) -> int:
        return self.llm_users - self.first

    def line(self) -> str:
        """The progress line: 'LLM: 2,000 of 100,000 users'."""
        return f"LLM: {self.llm_users:,} of {self.users:,} users"

    def summary(self) -> dict[str, int]:
        return {"users": self.users, "llm_users": self.llm_users, "sample": self.first, "reserve": self.reserve}


def group_count(users: int, sample: int) -> int:
    """About sqrt(users) pre-groups, but no more than the sample can give `FLOOR` users each twice over."""
    return int(max(1, min(round(math.sqrt(users)), sample // (2 * FLOOR), MAX_GROUPS)))


FIT_USERS = 100_000  # the pre-groups are fitted on at most this many users; the rest are only assigned
_CHUNK = 100_000


def pregroups(features: np.ndarray, count: int, seed: int = 0, rows: np.ndarray | None = None) -> np.ndarray:
    """A pre-group per row of `features[rows]` (users' LLM-free vectors; `rows` None: all): seeded
    mini-batch k-means, fitted on a seeded sample of at most `FIT_USERS` and assigned in chunks, so
    no copy of every user's vector is made."""
    rows = np.arange(len(features)) if rows is None else np.asarray(rows, np.int64)
    count = min(count, len(rows))
    if count <= 1:
        return np.zeros(len(rows), np.int64)
    from sklearn.cluster import MiniBatchKMeans

    rng = np.random.default_rng(seed)
    fit = np.sort(rng.choice(rows, FIT_USERS, replace=False)) if len(rows) > FIT_USERS else rows
    model = MiniBatchKMeans(n_clusters=count, random_state=seed, batch_size=4096, n_init=3)
    model.fit(np.asarray(features[fit], np.float32))
    return np.concatenate([model.predict(np.asarray(features[rows[s : s + _CHUNK]], np.float32))
                           for s in range(0, len(rows), _CHUNK)]).astype(np.int64)


def stratified_sample(groups: np.ndarray, size: int, seed: int = 0,
                      floor: int = FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """(rows, weights): `size` rows drawn from every group (module docstring, step 2), sorted,
    and how many users each drawn row stands for."""
    groups = np.asarray(groups, np.int64)
    n = len(groups)
    if size >= n:
        return np.arange(n), np.ones(n)
    rng = np.random.default_rng(seed)
    counts = np.bincount(groups)
    take = np.minimum(counts, floor)
    if take.sum() > size:  # more groups than the sample can floor: the largest get one each
        take = np.zeros_like(counts)
        take[np.argsort(-counts, kind="stable")[:size]] = 1
    rest = size - int(take.sum())
    if rest > 0:
        room = counts - take
        share = rest * room / max(room.sum(), 1)
        extra = np.floor(share).astype(np.int64)
        # largest remainders first, ties by group id
        left = rest - int(extra.sum())
        order = np.lexsort((np.arange(len(counts)), -(share - extra)))
        extra[order[:left]] += 1
        take += np.minimum(extra, room)
    rows, weights = [], []
    for group in np.flatnonzero(take):
        members = np.flatnonzero(groups == group)
        drawn = rng.choice(members, int(take[group]), replace=False)
        rows.append(drawn)
        weights.append(np.full(len(drawn), counts[group] / len(drawn)))
    rows_all, weights_all = np.concatenate(rows), np.concatenate(weights)
    order = np.argsort(rows_all)
    return rows_all[order], weights_all[order]


def least_confident(confidence: np.ndarray, candidates: np.ndarray, count: int) -> np.ndarray:
    """The `count` candidate rows with the lowest confidence (ties by row), sorted."""
    rows = np.flatnonzero(candidates)
    if count <= 0 or not len(rows):
        return np.zeros(0, np.int64)
    order = np.lexsort((rows, np.asarray(confidence)[rows]))
    return np.sort(rows[order[:count]])
