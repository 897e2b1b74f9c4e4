"""Which segment of one run continues which of another's: `segment --like`, `recut` and `drift`
all ask it, and answer it the same way.

Two runs' segments are compared through users, not names: where one run's saved model places
the other run's users (a contingency table of segment against segment), and where their
centroids lie (the encoder's columns only: each run's phrase space is a basis of its own,
centred on the mean user of both runs, since every user vector shares a large common
direction). A new segment continues an old one when the majority of its members are placed in
the old one and the majority of the users placed there are its members, and their centroids
agree (centred cosine at least `MIN_SIMILARITY`). Majorities both ways make the match
one-to-one by themselves: a segment that split in two is continued by its larger half, two that
merged by the one that holds most of the merged members, a segment that split evenly by none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tagger.errors import ModelError
from tagger.lifecycle.recut_data import load_recut_data
from tagger.lifecycle.segment_model import SegmentModel
from tagger.stages.lexical import semantic_part
from tagger.stages.naming import NamingCorpus
from tagger.vectors import unit_rows

MIN_SHARE = 0.5  # of a segment's members in the other segment, both ways
MIN_SIMILARITY = 0.5  # centred centroid cosine, encoder part


@dataclass(frozen=True)
class Match:
    """Node `new` (a row of the contingency) continues node `old` (a column)."""

    new: int
    old: int
    overlap: float  # share of the new node's users in the old node
    jaccard: float  # those users against everyone in either
    similarity: float  # centred centroid cosine


def match(counts: np.ndarray, similarity: np.ndarray, *, min_share: float = MIN_SHARE,
          min_similarity: float = MIN_SIMILARITY) -> list[Match]:
    """`counts` from `contingency` (its last row and column: users in no node on that side, who
    count in a node's size but match nothing); `similarity[i, j]`: the centred cosine of new node
    i's and old node j's centroids. Every match, by new row."""
    counts = np.asarray(counts, float)
    new_sizes, old_sizes = counts.sum(axis=1, keepdims=True)[:-1], counts.sum(axis=0, keepdims=True)[:, :-1]
    counts = counts[:-1, :-1]
    if not counts.size:
        return []
    with np.errstate(divide="ignore", invalid="ignore"):
        of_new = np.where(new_sizes > 0, counts / new_sizes, 0.0)
        of_old = np.where(old_sizes > 0, counts / old_sizes, 0.0)
        jaccard = np.where(counts > 0, counts / (new_sizes + old_sizes - counts), 0.0)
    allowed = (of_new > min_share) & (of_old > min_share) & (np.asarray(similarity) >= min_similarity)
    return [Match(int(i), int(j), round(float(of_new[i, j]), 4), round(float(jaccard[i, j]), 4),
                  round(float(similarity[i, j]), 4)) for i, j in zip(*np.nonzero(allowed), strict=True)]


def contingency(new_labels: np.ndarray, old_labels: np.ndarray, new_nodes: int, old_nodes: int) -> np.ndarray:
    """(new nodes + 1, old nodes + 1) counts of one population's users by their node on each side
    (positions 0..nodes-1); the last row and column count those in no node there (-1)."""
    new_labels, old_labels = np.asarray(new_labels, np.int64), np.asarray(old_labels, np.int64)
    rows = np.where(new_labels >= 0, new_labels, new_nodes)
    columns = np.where(old_labels >= 0, old_labels, old_nodes)
    out = np.zeros((new_nodes + 1, old_nodes + 1), np.int64)
    np.add.at(out, (rows, columns), 1)
    return out


def centred_similarity(new_centroids: np.ndarray, old_centroids: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """(new nodes, old nodes) cosine of the centroids minus `centre` (the mean user of both runs)."""
    if not len(old_centroids) or not len(new_centroids):
        return np.zeros((len(new_centroids), len(old_centroids)))
    return unit_rows(np.asarray(new_centroids, np.float32) - centre) @ unit_rows(
        np.asarray(old_centroids, np.float32) - centre).T


def semantic_rows(vectors: np.ndarray, dims: int) -> np.ndarray:
    """The encoder's part of joined user vectors, unit rows (a user without a vector stays zero)."""
    return semantic_part(np.asarray(vectors, np.float32), dims)


@dataclass
class RunUsers:
    """A finished run's users as another run's model can place them: ids, the leaf each is in
    (its segment id; -1 for none), the encoder's part of their vectors and their phrases, all
    from what the run saved (users.parquet and model/recut): nothing is embedded again."""

    user_ids: np.ndarray
    leaves: np.ndarray
    strengths: np.ndarray  # cosine to their own segment's centroid
    vectors: np.ndarray  # as the run's own model placed them (encoder and phrase space joined)
    semantic: np.ndarray
    corpus: NamingCorpus
    moved: np.ndarray | None = None  # users a person moved (`tagger edit --move`): they stay where they were put

    @property
    def usable(self) -> np.ndarray:
        return self.semantic.any(axis=1)


def run_users(run_dir: Path, model: SegmentModel) -> RunUsers:
    users = pd.read_parquet(Path(run_dir) / "users.parquet")
    data = load_recut_data(run_dir, len(users))
    strengths = users["strength"].to_numpy(float) if "strength" in users else np.ones(len(users))
    moved = users["assigned_by"].astype(str).to_numpy() == "person" if "assigned_by" in users else None
    return RunUsers(users["user_id"].astype(str).to_numpy(), users["segment_id"].to_numpy(np.int64), strengths,
                    data.vectors, semantic_rows(data.vectors, model.semantic_dims), data.corpus, moved)


def placed_by(model: SegmentModel, semantic: np.ndarray, corpus: NamingCorpus):
    """Where `model` places users given by their encoder vectors and phrases (another run's), by
    segment id: their phrases are projected into the model's own phrase space first."""
    if semantic.shape[1] != model.semantic_dims:
        raise ModelError(f"the runs' encoders give {semantic.shape[1]} and {model.semantic_dims} dimensions, so "
                         "their users cannot be placed in each other's segments; segment both with the same --embedder")
    return model.place(model.vectors_for(semantic, corpus), semantic.any(axis=1))


def model_levels(model: SegmentModel) -> list[tuple[list[int], np.ndarray]]:
    """Per level of the model's tree (leaves first): the node ids and their semantic centroids."""
    out = [([int(s["segment_id"]) for s in model.segments], model.semantic_centroids(model.centroids))]
    for level in range(1, model.levels):
        rows = [i for i, p in enumerate(model.parents) if int(p["level"]) == level]
        if model.parent_centroids is None or len(model.parent_centroids) != len(model.parents):
            raise ModelError(f"segment model in {model.path} holds {len(model.parents)} parent segments but "
                             f"{0 if model.parent_centroids is None else len(model.parent_centroids)} parent "
                             "centroids; rerun `tagger segment` to rebuild it")
        out.append(([int(model.parents[i]["segment_id"]) for i in rows],
                    model.semantic_centroids(np.asarray(model.parent_centroids)[rows])))
    return out


def index_of(ids: list[int], labels: np.ndarray) -> np.ndarray:
    """Segment ids → their position in `ids` (-1 for an id not there, and for -1)."""
    position = {sid: k for k, sid in enumerate(ids)}
    return np.array([position.get(int(x), -1) for x in labels], np.int64)


def relabel_segments(segments, ids: dict[int, int]):
    """schemas.Segment values with their ids and parent ids mapped by `ids` (missing: kept)."""
    return [s.model_copy(update={"segment_id": ids.get(s.segment_id, s.segment_id),
                                 "parent_id": ids.get(s.parent_id, s.parent_id) if s.parent_id >= 0 else s.parent_id})
            for s in segments]


def relabel_profiles(profiles, ids: dict[int, int]):
    """Naming profiles (segment_profiles.json's) with their ids, parents and neighbours mapped by `ids`."""
    from dataclasses import replace

    return [replace(p, segment_id=ids.get(p.segment_id, p.segment_id),
                    parent_id=ids.get(p.parent_id, p.parent_id) if p.parent_id >= 0 else p.parent_id,
                    neighbours=[ids.get(n, n) for n in p.neighbours]) for p in profiles]


def continuing_ids(segmentation, vectors: np.ndarray, semantic_dims: int, old_labels: list[np.ndarray],
                   old_centroids: list[dict[int, np.ndarray]], centre: np.ndarray, taken: set[int],
                   population: np.ndarray | None = None) -> tuple[dict[int, int], list[tuple[int, int, Match]]]:
    """Ids for a fresh segmentation's nodes (the pipeline's numbering: leaves 0..k-1, then each
    level above) that continue earlier segments: `old_labels[level]` holds, per row of the
    segmentation's users, the earlier segment id at that level (-1: none), `old_centroids[level]`
    their semantic centroids; `population` masks the users that count (default: all with a
    vector). Matched nodes take the earlier id; the others ids above `taken`. Returns the ids and
    the matches as (level, internal id, Match)."""
    usable = np.asarray(segmentation.assigned_by_) != "unsegmented" if population is None else population
    ids: dict[int, int] = {}
    found: list[tuple[int, int, Match]] = []
    base, levels = 0, len(segmentation.tree_parents_) + 1
    internal_levels = []
    for level in range(levels):
        rows, centroids, _ = segmentation.level_centroids(vectors, level)
        internal = list(range(base, base + len(centroids)))
        internal_levels.append(internal)
        base += len(centroids)
        if level >= len(old_labels):
            continue
        old_ids = sorted(old_centroids[level])
        counts = contingency(rows[usable], index_of(old_ids, old_labels[level][usable]), len(internal), len(old_ids))
        similarity = centred_similarity(semantic_part(centroids, semantic_dims),
                                        np.array([old_centroids[level][sid] for sid in old_ids]).reshape(len(old_ids), -1),
                                        centre)
        for m in match(counts, similarity):
            ids[internal[m.new]] = old_ids[m.old]
            found.append((level, internal[m.new], m))
    next_id = max(taken, default=-1) + 1
    for internal in internal_levels:
        for node in internal:
            if node not in ids:
                ids[node], next_id = next_id, next_id + 1
    return ids, found


def group_centroids(vectors: np.ndarray, labels: np.ndarray, semantic_dims: int) -> dict[int, np.ndarray]:
    """Each label's (>= 0) mean vector, encoder part, unit."""
    semantic = semantic_rows(vectors, semantic_dims)
    return {int(sid): unit_rows(semantic[labels == sid].mean(axis=0, keepdims=True))[0]
            for sid in np.unique(labels[labels >= 0])}
