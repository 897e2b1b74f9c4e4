"""A finished run's tables, naming profiles and saved model rebuilt for a `Layout` (who is in
which segment after hand edits), from what the run saved: every user's vector, the naming
corpus and the tags. Nothing is tagged or embedded again and no LLM is asked: segments keep the
fields they had (names, descriptions, what a person set) and a segment an edit made (a split's
new part) takes the best-ranked name of its own phrases, as naming does without the LLM;
`tagger rename` asks the LLM later if wanted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tagger.config import RunConfig
from tagger.errors import InputError
from tagger.lifecycle.edits import Layout
from tagger.lifecycle.lineage import relabel_profiles
from tagger.lifecycle.recut_data import RecutData
from tagger.lifecycle.segment_model import SegmentModel, build_model
from tagger.pipeline import (parent_columns, parent_nodes, segments_table, tree_items, tree_profiles, tree_segments,
                             tree_summary)
from tagger.schemas import Segment, TaggedUser
from tagger.stages.clustering import Segmenter
from tagger.stages.naming import NamedTree, NamingSettings, SegmentName, best_name
from tagger.stages.placer import refit
from tagger.summary import Tree


@dataclass
class SavedRun:
    """What a finished run saved that a rebuild reads (rows of `users`, `tagged` and `data` alike)."""

    users: pd.DataFrame
    segments: pd.DataFrame
    tagged: list[TaggedUser]
    model: SegmentModel
    data: RecutData
    config: RunConfig
    language: str

    def layout(self, users: pd.DataFrame | None = None, segments: pd.DataFrame | None = None) -> Layout:
        """The layout of these tables (default: the run's own)."""
        return Layout.from_tables(self.users if users is None else users, self.segments if segments is None else segments,
                                  self.data.vectors, self.data.min_segment_size, self.config.seed)

    def segmenter(self) -> Segmenter:
        """The saved segmentation with what a re-cut or a relabel starts from (its reduction, the
        consensus's own leaves, how users were placed)."""
        segmenter = self.model.segmenter(self.config.assign_noise)
        segmenter.set_params(seed=self.config.seed, min_segment_size=self.config.min_segment_size,
                             reduce_dims=self.config.reduce_dims, consensus=self.config.consensus)
        segmenter.auto_labels_, segmenter.assigned_by_ = self.data.found, self.data.assigned_by
        segmenter.min_segment_size_, segmenter.fitted_ = self.data.min_segment_size, self.data.fitted
        return segmenter


@dataclass
class Rebuilt:
    users: pd.DataFrame
    segments: pd.DataFrame
    profiles: list[Any]
    model: SegmentModel
    segmentation: Segmenter
    tree: Tree


@dataclass
class NamingInputs:
    """What profiling and naming a segmentation reads (rows of `vectors`, `tagged` and `corpus` alike)."""

    vectors: np.ndarray
    tagged: list[TaggedUser]
    corpus: Any  # NamingCorpus
    config: RunConfig
    language: str
    semantic_dims: int
    encoder: Any
    settings: NamingSettings


@dataclass
class Relaid:
    """A segmentation cut to a layout: its own numbering (`ids` maps it to the segment ids) and
    the segments and profiles by segment id."""

    segmentation: Segmenter
    ids: dict[int, int]
    segments: list[Segment]
    profiles: list[Any]


def layout_segmentation(segmenter: Segmenter, layout: Layout, vectors: np.ndarray) -> tuple[Segmenter, dict[int, int]]:
    """`segmenter` (fitted or saved) relabelled to the layout's leaves and tree, and the map from
    its own numbering (leaves 0..k-1, then each level above) to segment ids. A segment that stands
    at the top below the deepest level (naming made no parent for it) gets a hidden parent of its
    own above it, as the segmentation's tree needs one: an id above every segment's, in no
    layout node, that naming leaves unmade (`_names`)."""
    levels = _levels(layout)
    parent_of = {sid: node.parent_id for sid, node in layout.nodes.items()}
    hidden = max(layout.nodes, default=-1) + 1
    for level in range(len(levels) - 1):
        for sid in list(levels[level]):
            if parent_of.get(sid, -1) < 0:
                parent_of[sid], parent_of[hidden] = hidden, -1
                levels[level + 1].append(hidden)
                hidden += 1
    rows = [{sid: k for k, sid in enumerate(ids)} for ids in levels]
    usable = layout.assigned_by != "unsegmented"
    labels = np.array([rows[0].get(int(s), -1) if ok else -1 for s, ok in zip(layout.leaves, usable, strict=True)],
                      np.int64)
    tree = [np.array([rows[level + 1][parent_of[sid]] for sid in levels[level]], np.int64)
            for level in range(len(levels) - 1)]
    internal, base = {}, 0
    for ids in levels:
        internal.update({base + k: sid for k, sid in enumerate(ids)})
        base += len(ids)
    return segmenter.relabelled(vectors, labels, tree, layout.assigned_by), internal


def relay(segmenter: Segmenter, layout: Layout, inputs: NamingInputs) -> Relaid:
    """The layout's segments, profiled and named: each keeps its fields, one an edit made is
    named by its own phrases."""
    config = inputs.config
    segmentation, internal = layout_segmentation(segmenter, layout, inputs.vectors)
    profiles = relabel_profiles(tree_profiles(segmentation, inputs.vectors, inputs.tagged, inputs.corpus, inputs.encoder,
                                              inputs.settings, inputs.semantic_dims), internal)
    named = _names(profiles, layout, inputs.settings)
    items = {internal[k]: v for k, v in tree_items(segmentation, inputs.corpus).items()} if config.item_col else {}
    segments = [s.model_copy(update={"set_by_person": list(layout.nodes[s.segment_id].person)})
                for s in tree_segments(profiles, named, items, config.k_anonymity)]
    return Relaid(segmentation, internal, segments, profiles)


def rebuild(saved: SavedRun, layout: Layout, *, encoder, settings: NamingSettings) -> Rebuilt:
    """Tables, profiles and model of `saved` with `layout`'s segments. `encoder` ranks the names a
    new segment may take (a CachedEncoder loads the model only for names its cache lacks)."""
    inputs = NamingInputs(saved.data.vectors, saved.tagged, saved.data.corpus, saved.config, saved.language,
                          saved.model.semantic_dims, encoder, settings)
    relaid = relay(saved.segmenter(), layout, inputs)
    segmentation, segments = relaid.segmentation, relaid.segments
    names = {s.segment_id: s.name for s in segments}
    parents, centroids = parent_nodes(segments, segmentation, saved.data.vectors, relaid.ids)
    # the placer learns the edited segments from what it was fitted on
    distilled = refit(saved.model.training, segmentation.labels_, len(segmentation.labels_), saved.config.seed)
    model = build_model(segmentation, names=names, extractor=saved.model.extractor(), manifest=saved.model.manifest,
                        parents=parents, parent_centroids=centroids, lexical=saved.model.lexical, ids=relaid.ids,
                        person={s.segment_id: s.set_by_person for s in segments},
                        fingerprint=saved.model.embedder_fingerprint,
                        leaf_parents={s.segment_id: s.parent_id for s in segments},
                        placer=distilled.placer if distilled is not None else None,
                        training=distilled.training if distilled is not None else None)
    users = _users(saved.users, segmentation, relaid.ids, names, {s.segment_id: s.parent_id for s in segments})
    table = segments_table(segments, int((segmentation.labels_ >= 0).sum()))
    return Rebuilt(users, table, relaid.profiles, model, segmentation, tree_summary(segmentation, segments))


def placement_model(segmenter: Segmenter, layout: Layout, vectors: np.ndarray, model: SegmentModel) -> SegmentModel:
    """A model that places users in the layout's segments (no naming: the layout's names), e.g.
    a run's segments as they were before its edits."""
    segmentation, internal = layout_segmentation(segmenter, layout, vectors)
    names = {sid: n.fields["name"] for sid, n in layout.nodes.items()}
    levels = range(1, len(segmentation.tree_parents_) + 1)
    # the layout's parents (a hidden one, layout_segmentation's, is no segment)
    made = [(level, k) for level in levels
            for k in sorted(i for i in internal if internal[i] in layout.nodes and layout.nodes[internal[i]].level == level)]
    parents = [{"segment_id": internal[k], "name": names[internal[k]], "size": 0, "level": level,
                "parent_id": layout.nodes[internal[k]].parent_id} for level, k in made]
    centroids = np.vstack([segmentation.level_centroids(vectors, level)[1] for level in levels]) if made else None
    leaves = len(segmentation.centroids_)
    return build_model(segmentation, names=names, extractor=None, manifest=model.manifest, parents=parents,
                       parent_centroids=centroids[[k - leaves for _, k in made]] if made else None,
                       lexical=model.lexical, ids=internal, fingerprint=model.embedder_fingerprint,
                       leaf_parents={sid: node.parent_id for sid, node in layout.nodes.items()})


def _levels(layout: Layout) -> list[list[int]]:
    """Each level's segment ids, ascending (their rows in the rebuilt segmentation); leaves without
    members dropped. A node's parent, where it has one, is on the next level."""
    present = set(layout.leaves[layout.leaves >= 0].tolist())
    deepest = max((n.level for n in layout.nodes.values()), default=0)
    levels = [sorted(sid for sid, n in layout.nodes.items() if n.level == level and (level > 0 or sid in present))
              for level in range(deepest + 1)]
    for level, ids in enumerate(levels[:-1]):
        orphans = [sid for sid in ids if layout.nodes[sid].parent_id >= 0 and layout.nodes[sid].parent_id not in layout.nodes]
        if orphans:
            raise InputError(f"segment {orphans[0]} has no parent on level {level + 1}; the run's segments table "
                             "was edited by hand: rerun `tagger segment`")
    return levels


def _names(profiles, layout: Layout, settings: NamingSettings) -> NamedTree:
    """Each segment's fields as they were; a segment an edit made is named by its own phrases
    (its best-ranked name); every segment keeps the layout's parent."""
    taken = {n.fields["name"].lower() for n in layout.nodes.values() if not n.fresh}
    out = []
    for p in profiles:
        node = layout.nodes.get(p.segment_id)
        if node is None:  # a hidden parent (layout_segmentation): not made
            out.append(None)
            continue
        fields = node.fields
        if node.fresh and "name" not in node.person:
            fresh = best_name(p, settings)
            label = fresh.label if fresh.label.lower() not in taken else f"{fresh.label} #{p.segment_id}"
            taken.add(label.lower())
            description = fields["description"] if "description" in node.person else fresh.description
            out.append(SegmentName(label, description, "fallback", fresh.iab_id, fresh.iab_path, fresh.sensitive))
            continue
        out.append(SegmentName(fields["name"], fields["description"], fields["named_by"] or "fallback",
                               fields["iab_id"], fields["iab_path"], fields.get("sensitive") or p.sensitive))
    return NamedTree(tuple(out), {p.segment_id: layout.nodes[p.segment_id].parent_id for p in profiles
                                  if p.segment_id in layout.nodes})


def _users(users: pd.DataFrame, segmentation: Segmenter, ids: dict[int, int], names: dict[int, str],
           parent_of: dict[int, int]) -> pd.DataFrame:
    """The run's users table with the segments as rebuilt (a user without a vector keeps none)."""
    users = users.copy()
    labels = np.array([ids.get(int(x), -1) if x >= 0 else -1 for x in segmentation.labels_], np.int64)
    has_vector = np.asarray(segmentation.assigned_by_) != "unsegmented"
    users["segment_id"] = labels
    users["segment_name"] = [names.get(int(x), "unsegmented") if has else "" for x, has in zip(labels, has_vector)]
    users["parent_id"], users["parent_name"] = parent_columns(labels, names, parent_of)
    users["strength"] = np.round(segmentation.strengths_, 4)
    users["assigned_by"] = list(segmentation.assigned_by_)
    return users
