"""The design's last step: per segment, the items its members have far more often than everyone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from tagger.schemas import UserDocument


def top_items_by_lift(labels: np.ndarray, documents: Sequence[UserDocument] | Sequence[Sequence[str]], *,
                      top: int = 5, min_members: int = 2) -> dict[int, list[tuple[str, float, int]]]:
    """segment → [(item, lift, members with it)], lift = share in segment / share overall.
    `documents`: the users' documents, or each user's items.

    An item must be held by at least `min_members` members so that one user's purchase is
    not reported as a segment's taste.
    """
    n = len(documents)
    holders = [set(d.items) if isinstance(d, UserDocument) else set(d) for d in documents]
    overall: Counter = Counter(item for items in holders for item in items)
    result: dict[int, list[tuple[str, float, int]]] = {}
    for seg in sorted(set(int(x) for x in labels if x >= 0)):
        members = np.flatnonzero(labels == seg)
        counts: Counter = Counter(item for i in members for item in holders[i])
        scored = [
            (item, (c / len(members)) / (overall[item] / n), c)
            for item, c in counts.items() if c >= min(min_members, len(members))
        ]
        scored.sort(key=lambda r: (-r[1], -r[2], r[0]))
        result[seg] = [(item, round(lift, 3), c) for item, lift, c in scored[:top]]
    return result
