"""`tagger segment NEW --like OLD`: the new run's segments that continue OLD's keep OLD's ids,
names and descriptions (and what a person set there), so "segment 4 = audiophiles" carries from
last month's run to this month's.

NEW is clustered on its own first, exactly as without `--like`. Then OLD's saved model places
NEW's users (their encoder vectors and phrases, projected into OLD's phrase space) and each level
of NEW's tree is matched to the same level of OLD's (`lineage.match`: majorities both ways and
centroids that agree). A matched segment takes OLD's id and its fields as OLD shows them now
(renamed); a segment with no match takes a new id above OLD's largest, so an id never names two
different segments; OLD's segments with no match are listed as vanished.

When a person edited OLD's segments, NEW is matched to them as they were before the edits
(OLD's `model/base`), and OLD's edits apply again on NEW in order: a rename of a segment NEW
continues renames NEW's, a merge merges the segments that continue the merged ones, a split splits
again, moved users that NEW holds move again. An edit whose segments NEW does not continue is
listed as no longer applying.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tagger.lifecycle.lineage import (centred_similarity, contingency, index_of, match, model_levels, placed_by,
                                      relabel_profiles, relabel_segments, semantic_rows)
from tagger.errors import ConfigError
from tagger.lifecycle.edits import BASE_DIR, Edit, Layout, Merge, Split, replay, run_edits
from tagger.lifecycle.rebuild import NamingInputs, placement_model, relay
from tagger.lifecycle.recut_data import load_recut_data
from tagger.lifecycle.segment_model import MODEL_DIR, SegmentModel, check_embedder, load_model
from tagger.stages.naming import NamingSettings
from tagger.stages.placer import refit
from tagger.summary import EditsApplied, Lineage, LineageMatch, LineageSegment

# What a continuing segment takes from OLD: who it is, as people know it.
CARRIED = ("name", "description", "named_by", "iab_id", "iab_path", "set_by_person")


@dataclass
class Earlier:
    """The run NEW continues: the model that places users in its segments as they were before any
    edit, those segments as it shows them (by id), its edits in order, and every id it used."""

    model: SegmentModel
    shown: dict[int, dict[str, Any]]
    edits: list[Edit]
    used: set[int]


@dataclass
class Carried:
    """What `continue_run` carried: the lineage, OLD's edits that applied again and those that did
    not, and NEW's tables before those edits (its base), when any applied."""

    lineage: Lineage
    edits: list[Edit]
    not_applying: list[dict[str, Any]]
    base: tuple[pd.DataFrame, pd.DataFrame] | None = None

    def edits_summary(self) -> EditsApplied | None:
        """run.json's `edits` section, when OLD had edits."""
        return EditsApplied(applied=len(self.edits), not_applying=self.not_applying) \
            if self.edits or self.not_applying else None


def earlier_run(old_dir: Path) -> Earlier:
    """OLD_DIR as `continue_run` reads it; its edits file is checked first."""
    model = load_model(old_dir)
    edits = run_edits(old_dir, model.edits)
    shown = shown_segments(old_dir, model)
    used = {*shown, *model.names, *(i for e in edits if isinstance(e, Split) for i in e.ids)}
    base_dir = Path(old_dir) / MODEL_DIR / BASE_DIR
    if not edits or not (base_dir / "segments.parquet").exists():
        return Earlier(model, shown, edits, used)
    users = pd.read_parquet(base_dir / "users.parquet")
    segments = pd.read_parquet(base_dir / "segments.parquet")
    data = load_recut_data(old_dir, len(users))
    layout = Layout.from_tables(users, segments, data.vectors, data.min_segment_size)
    segmenter = model.segmenter()
    segmenter.auto_labels_, segmenter.assigned_by_ = data.found, data.assigned_by
    segmenter.min_segment_size_ = data.min_segment_size
    base = placement_model(segmenter, layout, data.vectors, model)
    # a segment no merge or split touched shows its fields as OLD shows them now (a `tagger rename`
    # after the edits); the others as they were before the edits, which apply again on NEW
    touched = {i for e in edits if isinstance(e, (Merge, Split)) for i in (e.segments if isinstance(e, Merge) else e.ids)}
    before = {int(r["segment_id"]): r for r in segments.to_dict("records")}
    fields = {sid: shown[sid] if sid in shown and sid not in touched else row for sid, row in before.items()}
    return Earlier(base, fields, edits, used | set(layout.nodes))


def same_embedder(config, old: SegmentModel):
    """`config` with the earlier run's embedder where it asks for `auto`; an other embedder is refused
    (segments are compared in the encoder's space)."""
    if config.embedder == "auto":
        return config.model_copy(update={"embedder": old.manifest.embedder})
    if config.embedder != old.manifest.embedder:
        raise ConfigError(f"--like {config.like} was segmented with embedder '{old.manifest.embedder}', not "
                          f"'{config.embedder}'; segment with --embedder {old.manifest.embedder}")
    return config


def continue_run(run, old_dir: Path) -> Carried:
    """Give the segments of `run` (a pipeline.PipelineRun, just clustered and named) that continue
    OLD_DIR's segments OLD's ids and fields, and apply OLD's edits again, in place
    (`run.segmentation`, `run.segments`, `run.profiles`, `run.ids`)."""
    earlier = earlier_run(old_dir)
    old, shown = earlier.model, earlier.shown
    same_embedder(run.config.model_copy(update={"embedder": getattr(run.encoder, "name", run.config.embedder)}), old)
    check_embedder(old, run.encoder)
    dims = run.vectors.shape[1] - (run.lexical.dims if run.lexical is not None else 0)
    semantic = semantic_rows(run.vectors, dims)
    placed = placed_by(old, semantic, run.corpus).labels
    usable = semantic.any(axis=1)
    centre = np.mean([old.semantic_user_mean(), semantic[usable].mean(axis=0)], axis=0)
    levels = _new_levels(run.segments)
    ids: dict[int, int] = {}
    found: list[tuple[int, Any, Any]] = []  # (level, match, old id)
    vanished: list[int] = []
    for level, (old_ids, old_centroids) in enumerate(model_levels(old)):
        internal = levels.get(level, [])
        if not internal:
            vanished += old_ids
            continue
        new_rows = run.segmentation.level_labels(level)
        counts = contingency(new_rows, index_of(old_ids, old.level_of(level, placed)), len(internal), len(old_ids))
        new_centroids = semantic_rows(run.segmentation.level_centroids(run.vectors, level)[1], dims)
        matches = match(counts, centred_similarity(new_centroids, old_centroids, centre))
        for m in matches:
            ids[internal[m.new]] = old_ids[m.old]
            found.append((level, m, internal[m.new]))
        vanished += [old_ids[j] for j in range(len(old_ids)) if j not in {m.old for m in matches}]
    next_id = max(earlier.used, default=-1) + 1
    for level in sorted(levels):
        for internal_id in levels[level]:
            if internal_id not in ids:
                ids[internal_id], next_id = next_id, next_id + 1
    run.segments = _carried(relabel_segments(run.segments, ids), {ids[i] for _, _, i in found}, shown)
    run.profiles = relabel_profiles(run.profiles, ids)
    run.ids = ids
    by_id = {s.segment_id: s for s in run.segments}
    lineage = Lineage(
        like=str(old_dir),
        matched=[LineageMatch(segment_id=ids[i], name=by_id[ids[i]].name, was_id=i, size=by_id[ids[i]].size,
                              overlap=m.overlap, jaccard=m.jaccard, centroid_similarity=m.similarity, level=level)
                 for level, m, i in sorted(found, key=lambda f: ids[f[2]])],
        new=[LineageSegment(segment_id=s.segment_id, name=s.name, size=s.size, level=s.level)
             for s in run.segments if s.segment_id not in {ids[i] for _, _, i in found}],
        vanished=[LineageSegment(segment_id=sid, name=str(shown.get(sid, {}).get("name", old.names.get(sid, ""))),
                                 size=int(shown.get(sid, {}).get("size", 0)), level=int(shown.get(sid, {}).get("level", 0)))
                  for sid in sorted(vanished)],
    )
    if not earlier.edits:
        return Carried(lineage, [], [])
    return _carry_edits(run, lineage, earlier.edits, dims)


def _carry_edits(run, lineage: Lineage, edits: list[Edit], dims: int) -> Carried:
    """OLD's edits again on NEW's segments (which now carry OLD's ids where they continue them)."""
    base = (run.users_table(), run.segments_table())
    layout = Layout.from_tables(base[0], base[1], run.vectors, run.segmentation.min_segment_size_, run.config.seed)
    layout, applied, skipped = replay(layout, edits)
    if applied:
        inputs = NamingInputs(run.vectors, run.tagged, run.corpus, run.config, run.language, dims, run.encoder,
                              NamingSettings.from_config(run.config, language=run.language))
        relaid = relay(run.segmentation, layout, inputs)
        run.segmentation, run.segments, run.profiles, run.ids = (relaid.segmentation, relaid.segments,
                                                                 relaid.profiles, relaid.ids)
        if run.distilled is not None:  # the placer learns the edited segments; its users keep their confidence
            confidence = run.distilled.confidence
            run.distilled = refit(run.distilled.training, relaid.segmentation.labels_, len(confidence), run.config.seed)
            if run.distilled is not None:
                run.distilled.confidence = confidence
    return Carried(lineage, applied, skipped, base if applied else None)


def shown_segments(run_dir: Path, model: SegmentModel) -> dict[int, dict[str, Any]]:
    """Every segment as the run shows it now (segments.parquet: renamed, edited), by id; the
    model's names where a run folder holds no table."""
    path = Path(run_dir) / "segments.parquet"
    if not path.exists():
        return {int(s["segment_id"]): {"name": s["name"], "size": s["size"], "level": s.get("level", 0)}
                for s in [*model.segments, *model.parents]}
    frame = pd.read_parquet(path)
    return {int(row["segment_id"]): row for row in frame.to_dict("records")}


def _new_levels(segments) -> dict[int, list[int]]:
    """The pipeline's own ids of each level's nodes, in row order (ids rise with rows in a level)."""
    levels: dict[int, list[int]] = {}
    for s in sorted(segments, key=lambda s: s.segment_id):
        levels.setdefault(s.level, []).append(s.segment_id)
    return levels


def _carried(segments, continuing: set[int], shown: dict[int, dict[str, Any]]):
    """Continuing segments take OLD's fields; a new segment whose name one of them took gets its id after it."""
    out = []
    for s in segments:
        old = shown.get(s.segment_id) if s.segment_id in continuing else None
        if old is not None:
            fields = {k: _cell(old.get(k), getattr(s, k)) for k in CARRIED if k in old}
            s = s.model_copy(update=fields)
        out.append(s)
    taken = {s.name.lower() for s in out if s.segment_id in continuing}
    return [s.model_copy(update={"name": f"{s.name} #{s.segment_id}"})
            if s.segment_id not in continuing and s.name.lower() in taken else s for s in out]


def _cell(value: Any, default: Any) -> Any:
    """A table cell as a Segment field: lists as lists, empty cells as the segment's own value."""
    if isinstance(default, list):
        return [str(v) for v in value] if value is not None and not isinstance(value, float) else default
    if value is None or (isinstance(value, float) and value != value):
        return default
    return str(value) if isinstance(default, str) else value
