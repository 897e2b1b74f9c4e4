"""`tagger recut`: cut a finished run's segment tree again at another grain and re-run naming
only. No tagging, no embedding: the run's saved vectors, consensus leaves and naming corpus
(`tagger.lifecycle.recut_data`) are cut the way `tagger segment --segments N` cuts them, and the
LLM is started only when naming asks something the cache does not hold."""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tagger import prompts as prompt_files
from tagger.config import RunConfig
from tagger.lifecycle.recut_data import RecutData, load_recut_data, save_recut_data
from tagger.lifecycle.segment_model import MODEL_DIR, SegmentModel, build_model, check_embedder, load_model, save_model
from tagger.llm.structured import CallStats
from tagger.pipeline import (name_profiles, parent_columns, parent_nodes, public_profile, segments_table, tree_items,
                             tree_profiles, tree_segments, tree_summary)
from tagger.progress import Reporter
from tagger.run.context import RunContext, run_config
from tagger.run.folder import RUN_MARKER, RunFolder, check_destination
from tagger.run.load import Run, load_run
from tagger.run.report_html import write_report
from tagger.stages.clustering import Segmenter
from tagger.stages.placer import place_unfitted
from tagger.stages.embedding import CachedEncoder, Encoder, create_encoder, encoder_identity
from tagger.stages.taxonomy import load_taxonomy

# What a recut leaves behind: they describe the old segments and need the input or reruns.
STALE_FILES = ("stability.parquet", "stability.csv", "segment_shares.parquet", "segment_shares.csv")


def recut_run(path: Path | str, n_segments: int | None, *, levels: int | None = None, parents: int | None = None,
              out: Path | str | None = None, force: bool = False, engine=None, encoder: Encoder | None = None,
              reporter: Reporter | None = None) -> Run:
    """Re-cut RUN to `n_segments` leaves (None: the consensus's own), `levels` levels and
    `parents` parents of the leaves (None: the run's), name every level and write the run folder
    again: in place, or into `out`."""
    started = time.perf_counter()
    reporter = reporter or Reporter()
    run = load_run(path)
    if out is not None:
        check_destination(Path(out), force)
    config = run_config(run.path, n_segments=n_segments, levels=levels, n_parents=parents)
    config = config.model_copy(update={"n_segments": n_segments})  # None asks for the automatic grain
    model = load_model(run.path)
    data = load_recut_data(run.path, len(run.users))
    with reporter.stage("cut"):
        segmentation = _segmenter(model, data, config).recut(data.vectors, config.n_segments, config.levels,
                                                                 config.n_parents)
        # users the fit did not see (--llm-users): placed again in the new segments
        distilled = place_unfitted(segmentation, data.vectors, data.assigned_by, model.training, config.seed)
    tagged = [run.tagged_users[u] for u in run.users["user_id"].astype(str)]
    stats = CallStats()
    with RunContext(config, reporter, engine=engine) as ctx:
        with reporter.stage("naming"):
            encoder = _name_encoder(model, encoder, ctx)
            language = run.summary.get("language", "en")
            profiles = tree_profiles(segmentation, data.vectors, tagged, data.corpus, encoder, language,
                                     load_taxonomy(config.taxonomy, config.prompts), config, model.semantic_dims)
            llm = engine or ctx.lazy_engine(str(run.summary.get("model", config.model)))
            template = prompt_files.load("name", config.prompts)
            named = name_profiles(profiles, llm, template, config, language, stats, ctx.cache)
        items = tree_items(segmentation, data.corpus) if config.item_col else {}
        segments = tree_segments(profiles, named, items, config.k_anonymity)
        cache = {"hits": ctx.cache.hits, "misses": ctx.cache.misses}
    names = {s.segment_id: s.name for s in segments}
    users = _users(run.users, segmentation, names, {s.segment_id: s.parent_id for s in segments})
    if distilled is not None:
        users["confidence"] = np.round(distilled.confidence.astype(np.float64), 4)
    table = segments_table(segments, int((segmentation.labels_ >= 0).sum()))
    summary = _summary(run, config, segmentation, segments, stats, cache, started)
    if distilled is not None:
        summary["agreement"] = distilled.summary(names)
    recut = Run(Path(out) if out is not None else run.path, summary, users, table, run.tagged_users,
                profiles)
    with reporter.stage("write"):
        _write(run, recut, model, (segmentation, data, segments, distilled), config, force=force)
    return load_run(recut.path)


def _name_encoder(model: SegmentModel, encoder: Encoder | None, ctx: RunContext) -> Encoder:
    """The run's encoder for candidate names, loaded only if a name's vector is not cached: the
    cache is keyed by the fingerprint saved with the model, so it holds the same weights' vectors."""
    name, fingerprint = model.manifest.get("embedder", ""), model.manifest.get("embedder_fingerprint") or []

    def load() -> Encoder:
        loaded = encoder or create_encoder(name)
        check_embedder(model, loaded)
        return loaded

    if not fingerprint:
        return load()
    return CachedEncoder(name, encoder_identity(name, fingerprint), load, ctx.vector_cache)


def _segmenter(model: SegmentModel, data: RecutData, config: RunConfig) -> Segmenter:
    """The saved segmentation with what a recut starts from: the consensus leaves and placement."""
    segmenter = model.segmenter(config.assign_noise)
    segmenter.set_params(seed=config.seed, min_segment_size=config.min_segment_size, reduce_dims=config.reduce_dims,
                         consensus=config.consensus)
    segmenter.auto_labels_, segmenter.assigned_by_ = data.found, data.assigned_by
    segmenter.min_segment_size_, segmenter.fitted_ = data.min_segment_size, data.fitted
    return segmenter


def _users(users: pd.DataFrame, segmentation: Segmenter, names: dict[int, str], parent_of: dict[int, int]) -> pd.DataFrame:
    """The run's users table with the new segments (a user without a vector keeps no segment)."""
    users = users.copy()
    labels = segmentation.labels_
    users["segment_id"] = labels.astype(int)
    has_vector = users["assigned_by"].to_numpy() != "unsegmented"
    users["segment_name"] = [names.get(int(x), "unsegmented") if has else "" for x, has in zip(labels, has_vector)]
    users["parent_id"], users["parent_name"] = parent_columns(labels, names, parent_of)
    users["strength"] = np.round(segmentation.strengths_, 4)
    users["assigned_by"] = list(segmentation.assigned_by_)
    return users


def _summary(run: Run, config: RunConfig, segmentation: Segmenter, segments, stats: CallStats, cache: dict[str, int],
             started: float) -> dict[str, Any]:
    summary = {k: v for k, v in run.summary.items() if k not in ("stability", "over_time")}
    summary["config"] = {**summary.get("config", {}), "n_segments": config.n_segments, "levels": config.levels,
                         "n_parents": config.n_parents}
    summary["counts"] = {**summary.get("counts", {}),
                         "segments": sum(s.level == 0 for s in segments),
                         "parent_segments": sum(s.level == 1 for s in segments),
                         "segments_named_by_llm": sum(s.named_by == "llm" for s in segments)}
    summary["tree"] = tree_summary(segmentation, segments)
    summary["tokens"] = {**summary.get("tokens", {}), "naming_prompt": stats.prompt_tokens,
                         "naming_output": stats.output_tokens}
    summary["recut"] = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "from": str(run.path),
                        "cache": cache, "wall_time_s": round(time.perf_counter() - started, 3),
                        "dropped": [name for name in STALE_FILES if (run.path / name).exists()]}
    return summary


def _write(old: Run, new: Run, model: SegmentModel, cut: tuple, config: RunConfig, *,
           force: bool) -> None:
    """The whole folder built aside (the old run's other files copied) and swapped in at once;
    `cut`: the segmentation, the recut data, the named segments and the placer fitted to them."""
    segmentation, data, segments, distilled = cut
    in_place = new.path.resolve() == old.path.resolve()
    folder = RunFolder(new.path, force=force or in_place)
    try:
        for item in old.path.iterdir():
            if item.name not in (RUN_MARKER, MODEL_DIR, "report.html", *STALE_FILES) and item.is_file():
                shutil.copy2(item, folder.path(item.name))
        folder.write_table("users", new.users)
        folder.write_table("segments", new.segments)
        folder.write_json("segment_profiles.json", [public_profile(p, config.k_anonymity) for p in new.profiles])
        parents, centroids = parent_nodes(segments, segmentation, data.vectors)
        names = {s.segment_id: s.name for s in segments}
        manifest = dict(model.manifest)
        if distilled is not None and distilled.agreement is not None:
            manifest["placer_agreement"] = round(distilled.agreement.overall, 4)
        rebuilt = build_model(segmentation, names=names, extractor=model.extractor(), manifest=manifest,
                              parents=parents, parent_centroids=centroids, lexical=model.lexical,
                              placer=distilled.placer if distilled is not None else None,
                              training=distilled.training if distilled is not None else None)
        save_model(rebuilt, folder.path(MODEL_DIR))
        save_recut_data(folder.path(MODEL_DIR), segmentation, data.vectors, data.corpus)
        folder.write_json(RUN_MARKER, new.summary)
        if (old.path / "report.html").exists():
            write_report(folder.tmp, folder.path("report.html"))
        folder.commit()
    finally:
        folder.abandon()

