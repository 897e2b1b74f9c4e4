"""`tagger recut`: cut a finished run's segment tree again at another grain and re-run naming
only. No tagging, no embedding: the run's saved vectors, consensus leaves and naming corpus
(`tagger.lifecycle.recut_data`) are cut the way `tagger segment --segments N` cuts them, and the
LLM is started only when naming asks something the cache does not hold."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from tagger import prompts as prompt_files
from tagger.config import RunConfig
from tagger.lifecycle.edits import Split, replay, run_edits
from tagger.lifecycle.lineage import continuing_ids, group_centroids, relabel_profiles, relabel_segments, semantic_rows
from tagger.lifecycle.rebuild import rebuild
from tagger.lifecycle.recut_data import save_recut_data
from tagger.lifecycle.segment_model import MODEL_DIR, SegmentModel, build_model, save_model
from tagger.llm.structured import CallStats
from tagger.pipeline import (name_profiles, parent_columns, parent_nodes, public_profile, segments_table, tree_items,
                             tree_profiles, tree_segments, tree_summary)
from tagger.progress import Reporter
from tagger.run.context import RunContext, naming_encoder, run_config
from tagger.run.folder import RUN_MARKER, RunFolder, check_destination
from tagger.run.edit import base_tables, saved_run, write_edited
from tagger.run.load import Run, load_run, tree_columns
from tagger.run.report_html import write_report
from tagger.stages.clustering import Segmenter
from tagger.stages.embedding import Encoder
from tagger.privacy import exclude_sensitive
from tagger.stages.naming import NamingSettings
from tagger.stages.placer import place_unfitted
from tagger.summary import Agreement, CacheUse, EditsApplied, Recut, RunSummary, write_summary

# What a recut leaves behind: they describe the old segments and need the input or reruns.
STALE_FILES = ("stability.parquet", "stability.csv", "segment_shares.parquet", "segment_shares.csv")


def recut_run(path: Path | str, n_segments: int | None, *, levels: int | None = None, parents: int | None = None,
              out: Path | str | None = None, force: bool = False, engine=None, encoder: Encoder | None = None,
              reporter: Reporter | None = None) -> Run:
    """Re-cut RUN to `n_segments` leaves (None: the consensus's own), `levels` levels and
    `parents` parents of the leaves (None: the run's), name every level and write the run folder
    again: in place, or into `out`. Segments that continue the run's (as they were before any
    hand edit) keep their ids; the run's edits apply again where their segments continue, and
    those that no longer apply are listed in run.json (`edits.not_applying`)."""
    started = time.perf_counter()
    reporter = reporter or Reporter()
    run = load_run(path)
    if out is not None:
        check_destination(Path(out), force)
    config = run_config(run.path, run.summary, n_segments=n_segments, levels=levels, n_parents=parents)
    config = config.model_copy(update={"n_segments": n_segments})  # None asks for the automatic grain
    saved = replace(saved_run(run), config=config)
    held = run_edits(run.path, saved.model.edits)
    model, data = saved.model, saved.data
    with reporter.stage("cut"):
        segmentation = saved.segmenter().recut(data.vectors, config.n_segments, config.levels, config.n_parents)
        # users the fit did not see (--llm-users): placed again in the new segments
        distilled = place_unfitted(segmentation, data.vectors, data.assigned_by, model.training, config.seed)
    stats = CallStats()
    with RunContext(config, reporter, engine=engine) as ctx:
        with reporter.stage("naming"):
            encoder = naming_encoder(model, encoder, ctx)
            settings = NamingSettings.from_config(config, language=saved.language)
            profiles = tree_profiles(segmentation, data.vectors, saved.tagged, data.corpus, encoder, settings,
                                     model.semantic_dims)
            llm = engine or ctx.lazy_engine(run.summary.model)
            template = prompt_files.load("name", config.prompts)
            named = name_profiles(profiles, llm, template, settings, stats, ctx.cache)
        items = tree_items(segmentation, data.corpus) if config.item_col else {}
        segments = tree_segments(profiles, named, items, config.k_anonymity)
        ids = _continuing_ids(run, saved, segmentation, held)
        segments, profiles = relabel_segments(segments, ids), relabel_profiles(profiles, ids)
        names = {s.segment_id: s.name for s in segments}
        users = exclude_sensitive(_users(run.users, segmentation, ids, names,
                                         {s.segment_id: s.parent_id for s in segments}), segments, config.sensitive)
        if distilled is not None:
            users["confidence"] = np.round(distilled.confidence.astype(np.float64), 4)
        table = segments_table(segments, int((segmentation.labels_ >= 0).sum()))
        summary = _summary(run, config, segmentation, segments, stats,
                           CacheUse(enabled=config.cache, hits=ctx.cache.hits, misses=ctx.cache.misses), started)
        if distilled is not None and distilled.agreement is not None:
            summary.agreement = Agreement.model_validate(distilled.agreement.summary(names, ids))
        target = Path(out) if out is not None else run.path
        if held:  # the edits again, on the new cut
            recut = replace(saved, users=users, segments=table)
            layout, applied, skipped = replay(recut.layout(), held)
            rebuilt = rebuild(recut, layout, encoder=encoder, settings=settings)
            edited = _edited_summary(summary, rebuilt, applied, skipped)
            with reporter.stage("write"):
                write_edited(run, recut, rebuilt, applied, edited, out=target, force=force, base=(users, table),
                             drop=STALE_FILES)
            return load_run(target)
    recut = Run(target, summary, users, table, run.tagged_users, profiles)
    with reporter.stage("write"):
        _write(run, recut, model, (segmentation, data, segments, ids, distilled), config, force=force)
    return load_run(recut.path)


def _continuing_ids(run: Run, saved, segmentation: Segmenter, edits) -> dict[int, int]:
    """Ids for the new cut: a segment that continues one of the run's segments as they were before
    its edits (the same users, mostly) keeps its id; others take ids above every id the run used."""
    base_users, base_segments = base_tables(run.path, saved)
    parent_of = dict(zip(base_segments["segment_id"].astype(int), tree_columns(base_segments)["parent_id"], strict=True))
    old = [base_users["segment_id"].to_numpy(np.int64)]
    levels = int(tree_columns(base_segments)["level"].max()) + 1
    for _ in range(1, levels):
        old.append(np.array([parent_of.get(int(x), -1) if x >= 0 else -1 for x in old[-1]], np.int64))
    vectors, dims = saved.data.vectors, saved.model.semantic_dims
    usable = vectors.any(axis=1)
    centroids = [group_centroids(vectors, labels, dims) for labels in old]
    taken = {*base_segments["segment_id"].astype(int), *run.segments["segment_id"].astype(int),
             *(i for e in edits if isinstance(e, Split) for i in e.ids)}
    centre = semantic_rows(vectors[usable], dims).mean(axis=0)
    return continuing_ids(segmentation, vectors, dims, old, centroids, centre, taken)[0]


def _edited_summary(summary: RunSummary, rebuilt, applied, skipped) -> RunSummary:
    out = summary.model_copy(deep=True)
    out.counts.segments = int((rebuilt.segments["level"] == 0).sum())
    out.counts.parent_segments = int((rebuilt.segments["level"] == 1).sum())
    out.counts.segments_named_by_llm = int((rebuilt.segments["named_by"] == "llm").sum())
    out.tree = rebuilt.tree
    out.edits = EditsApplied(applied=len(applied), not_applying=skipped)
    return out


def _users(users: pd.DataFrame, segmentation: Segmenter, ids: dict[int, int], names: dict[int, str],
           parent_of: dict[int, int]) -> pd.DataFrame:
    """The run's users table with the new segments (a user without a vector keeps no segment)."""
    users = users.copy()
    labels = np.array([ids.get(int(x), int(x)) if x >= 0 else -1 for x in segmentation.labels_], np.int64)
    users["segment_id"] = labels.astype(int)
    has_vector = users["assigned_by"].to_numpy() != "unsegmented"
    users["segment_name"] = [names.get(int(x), "unsegmented") if has else "" for x, has in zip(labels, has_vector)]
    users["parent_id"], users["parent_name"] = parent_columns(labels, names, parent_of)
    users["strength"] = np.round(segmentation.strengths_, 4)
    users["assigned_by"] = list(segmentation.assigned_by_)
    return users


def _summary(run: Run, config: RunConfig, segmentation: Segmenter, segments, stats: CallStats, cache: CacheUse,
             started: float) -> RunSummary:
    summary = run.summary.model_copy(deep=True, update={"stability": None, "over_time": None})
    summary.config = {**summary.config, "n_segments": config.n_segments, "levels": config.levels,
                      "n_parents": config.n_parents}
    summary.counts.segments = sum(s.level == 0 for s in segments)
    summary.counts.parent_segments = sum(s.level == 1 for s in segments)
    summary.counts.segments_named_by_llm = sum(s.named_by == "llm" for s in segments)
    summary.tree = tree_summary(segmentation, segments)
    summary.tokens.naming_prompt, summary.tokens.naming_output = stats.prompt_tokens, stats.output_tokens
    summary.recut = Recut(at=datetime.now(timezone.utc).isoformat(timespec="seconds"), from_run=str(run.path),
                          cache=cache, wall_time_s=round(time.perf_counter() - started, 3),
                          dropped=[name for name in STALE_FILES if (run.path / name).exists()])
    return summary


def _write(old: Run, new: Run, model: SegmentModel, cut: tuple, config: RunConfig, *, force: bool) -> None:
    """The whole folder built aside (the old run's other files copied) and swapped in at once;
    `cut`: the segmentation, the recut data, the named segments, their ids and the placer fitted to them."""
    segmentation, data, segments, ids, distilled = cut
    in_place = new.path.resolve() == old.path.resolve()
    folder = RunFolder(new.path, force=force or in_place)
    try:
        for item in old.path.iterdir():
            if item.name not in (RUN_MARKER, MODEL_DIR, "report.html", *STALE_FILES) and item.is_file():
                shutil.copy2(item, folder.path(item.name))
        folder.write_table("users", new.users)
        folder.write_table("segments", new.segments)
        folder.write_json("segment_profiles.json", [public_profile(p, config.k_anonymity) for p in new.profiles])
        parents, centroids = parent_nodes(segments, segmentation, data.vectors, ids)
        names = {s.segment_id: s.name for s in segments}
        agreement = distilled.agreement if distilled is not None else None
        manifest = model.manifest.model_copy(update={
            "placer_agreement": round(agreement.overall, 4) if agreement is not None else None})
        rebuilt = build_model(segmentation, names=names, extractor=model.extractor(), manifest=manifest,
                              parents=parents, parent_centroids=centroids, lexical=model.lexical, ids=ids,
                              fingerprint=model.embedder_fingerprint,
                              leaf_parents={s.segment_id: s.parent_id for s in segments},
                              placer=distilled.placer if distilled is not None else None,
                              training=distilled.training if distilled is not None else None)
        save_model(rebuilt, folder.path(MODEL_DIR))
        save_recut_data(folder.path(MODEL_DIR), segmentation, data.vectors, data.corpus)
        write_summary(folder.tmp, new.summary)
        if (old.path / "report.html").exists():
            write_report(folder.tmp, folder.path("report.html"))
        folder.commit()
    finally:
        folder.abandon()

