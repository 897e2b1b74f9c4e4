"""Leaf segments → the number of leaves asked for, and the levels above them.

Both work on leaf labels and the users' vectors, so `tagger segment --segments N` and
`tagger recut RUN --segments N` cut the same way from the same consensus leaves.

- Fewer leaves than the consensus found: the two nearest groups of leaves merge (average linkage
  of the cosine distance of the leaf centroids, centred on the mean user), as a reader would merge
  "mac users" with "pc builders" before either with "baseball fans". Centred in the full
  embedding space: every user vector shares one large direction that makes all raw centroids
  look alike, and the reduced space is refitted on every sample, so parents cut there moved more
  between reruns on 90 % samples (docs/decisions.md).
- More: the leaf whose split into two halves (2-means on its members' reduced vectors, the space
  the clustering saw) removes the most squared distance is split (bisecting k-means), as long as
  both halves keep the minimum segment size.
- Parents: the same average linkage over the leaves, cut into about sqrt(leaves) groups (or the
  number asked for) of at least two leaves each where there are enough; each level above is cut
  from the one below it the same way.
"""

from __future__ import annotations

import math

import numpy as np

from tagger.schemas import NO_SEGMENT
from tagger.vectors import unit_rows


def group_means(points: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(k x d) mean of each label's points and the label sizes; labels < 0 are left out."""
    from scipy import sparse

    placed = np.flatnonzero(labels >= 0)
    sizes = np.bincount(labels[placed], minlength=k)
    # a sparse (labels x users) product sums members without copying their rows
    membership = sparse.csr_matrix((np.ones(len(placed)), (labels[placed], placed)), shape=(k, len(labels)))
    return np.asarray(membership @ points, np.float64) / np.maximum(sizes, 1)[:, None], sizes


def centred_means(vectors: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Each label's mean vector minus the mean of every user with a label."""
    means, sizes = group_means(vectors, labels, k)
    centre = (means * sizes[:, None]).sum(axis=0) / max(int(sizes.sum()), 1)
    return means - centre


def _cosine_linkage(centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cosine distances between the centroids, their average-linkage tree)."""
    from scipy.cluster.hierarchy import linkage

    unit = unit_rows(np.asarray(centroids, np.float64))
    # cosine distance from the unit rows, clipped: float error can make it a hair below 0
    distance = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    return distance, linkage(distance[np.triu_indices(len(unit), 1)], "average")


def _by_first_member(groups: np.ndarray) -> np.ndarray:
    """Group ids renumbered 0.. in the order of each group's first member."""
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # old group number → rank of its first leaf
    return order[inverse.ravel()].astype(np.int64)


def merge_groups(centroids: np.ndarray, count: int) -> np.ndarray:
    """Each centroid's group (0..count-1, numbered by first appearance) when average linkage of
    their cosine distances is cut into `count` groups."""
    k = len(centroids)
    if count >= k:
        return np.arange(k)
    if count <= 1:
        return np.zeros(k, np.int64)
    from scipy.cluster.hierarchy import fcluster

    _, tree = _cosine_linkage(centroids)
    return _by_first_member(fcluster(tree, t=count, criterion="maxclust") - 1)


def parent_groups(centroids: np.ndarray, count: int) -> np.ndarray:
    """Like `merge_groups`, but every group holds at least two leaves where there are enough: the
    average-linkage tree is cut just low enough to give `count` groups of two or more, and each
    leaf left alone joins the group of least average distance. A parent of one leaf says nothing
    its leaf does not, and an outlying leaf that is a parent on its own in one run and a child in
    the next is what moved Amazon's parent level most between reruns (docs/decisions.md)."""
    k = len(centroids)
    if count < 2 or k < 2 * count:
        return merge_groups(centroids, count)
    from scipy.cluster.hierarchy import fcluster

    distance, tree = _cosine_linkage(centroids)
    # One more cluster splits one group in two, so the number of groups of two or more grows by at
    # most one at a time: the first cut with `count` of them has exactly `count`.
    for clusters in range(count, k + 1):
        groups = fcluster(tree, t=clusters, criterion="maxclust") - 1
        sizes = np.bincount(groups)
        if (sizes >= 2).sum() >= count:
            break
    else:  # tied distances: maxclust cannot make that many groups of two
        return merge_groups(centroids, count)
    big = np.flatnonzero(sizes >= 2)
    alone = np.flatnonzero(sizes[groups] < 2)
    if len(alone):
        to_big = np.stack([distance[np.ix_(alone, np.flatnonzero(groups == g))].mean(axis=1) for g in big], axis=1)
        groups[alone] = big[to_big.argmin(axis=1)]
    return _by_first_member(groups)


def _bisect(points: np.ndarray, min_size: int, seed: int) -> tuple[float, np.ndarray] | None:
    """The best 2-split of `points` (one segment's members): (squared distance it removes, mask of
    the second half), with both halves at least `min_size`; None when the segment is too small."""
    n = len(points)
    if n < 2 * min_size or n < 2:
        return None
    from sklearn.cluster import KMeans

    halves = KMeans(n_clusters=2, n_init=3, random_state=seed).fit(points)
    centres = halves.cluster_centers_
    # Members sorted along the line between the two centres; the cut falls where 2-means put it,
    # moved just enough that both halves keep the minimum size.
    position = points @ (centres[1] - centres[0])
    order = np.argsort(position, kind="stable")
    cut = int(np.clip((halves.labels_ == 0).sum(), min_size, n - min_size))
    second = np.zeros(n, bool)
    second[order[cut:]] = True
    a, b = points[~second].mean(axis=0), points[second].mean(axis=0)
    gain = float((~second).sum() * second.sum() / n * ((a - b) ** 2).sum())
    return gain, second


def cut_to(vectors: np.ndarray, reduced: np.ndarray, labels: np.ndarray, count: int, min_size: int,
           seed: int = 0) -> tuple[np.ndarray, str]:
    """Leaf labels with exactly `count` leaves where the data allows it, and a note ("" or one
    sentence) saying why not. `vectors`: the users' unit vectors (merges), `reduced`: their reduced
    ones (splits). Users with NO_SEGMENT stay so."""
    labels = np.asarray(labels, np.int64).copy()
    k = int(labels.max()) + 1 if (labels >= 0).any() else 0
    if k == 0 or count == k:
        return labels, ""
    if count < k:
        group = merge_groups(centred_means(vectors, labels, k), count)
        placed = labels >= 0
        labels[placed] = group[labels[placed]]
        return labels, ""
    splits: dict[int, tuple[float, np.ndarray] | None] = {}
    while k < count:
        for sid in range(k):
            if sid not in splits:
                splits[sid] = _bisect(reduced[labels == sid], min_size, seed)
        best = max((s for s in splits if splits[s] is not None), key=lambda s: (splits[s][0], -s), default=None)
        if best is None:
            placed = int((labels >= 0).sum())
            why = (f"{placed} users hold at most {placed // max(min_size, 1)} segments of {min_size}"
                   if placed < count * min_size else f"no segment can be split into two of at least {min_size} users")
            return labels, (f"{k} segments, not {count}: {why}; lower --min-segment-size to allow smaller ones")
        members = np.flatnonzero(labels == best)
        labels[members[splits[best][1]]] = k
        splits.pop(best)
        k += 1
    return labels, ""


def parent_count(children: int) -> int:
    """About sqrt(children) parents; 0 (no level) when that is one parent, or more than half the
    children (most parents would hold a single child)."""
    count = round(math.sqrt(children))
    return count if 2 <= count <= children / 2 else 0


def parent_levels(vectors: np.ndarray, labels: np.ndarray, levels: int, first: int | None = None) -> list[np.ndarray]:
    """One array per level above the leaves: each node of the level below → its parent's index
    (0-based within its level). `first`: the number of parents of the leaves (None: about
    sqrt(leaves)); each level above has about sqrt of the one below. Stops early when a level
    would have under two nodes, or as many as the level below."""
    tree: list[np.ndarray] = []
    current = np.asarray(labels, np.int64)
    for level in range(max(0, levels - 1)):
        k = int(current.max()) + 1 if (current >= 0).any() else 0
        count = first if level == 0 and first else parent_count(k)
        if not 2 <= count < k:
            break
        parents = parent_groups(centred_means(vectors, current, k), count)
        tree.append(parents)
        current = np.where(current >= 0, parents[np.maximum(current, 0)], NO_SEGMENT)
    return tree


def parents_note(asked: int | None, levels: int, tree: list[np.ndarray], leaves: int) -> str:
    """"" or one sentence on why the leaves have no `asked` parents."""
    if not asked or levels < 2 or (tree and int(tree[0].max()) + 1 == asked):
        return ""
    return (f"no parent level: {leaves} segment{'s' * (leaves != 1)} cannot have {asked} parents; "
            f"ask for fewer than {leaves} with --parents")


def labels_at(labels: np.ndarray, tree: list[np.ndarray], level: int) -> np.ndarray:
    """Per-user 0-based node index at `level` (0 = leaves), NO_SEGMENT staying so."""
    current = np.asarray(labels, np.int64)
    for parents in tree[:level]:
        current = np.where(current >= 0, parents[np.maximum(current, 0)], NO_SEGMENT)
    return current
