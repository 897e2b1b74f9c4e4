"""`tagger segment`: load, run the pipeline inside one RunContext, then write the run folder
with the lasting parts (the saved segment model, stability reruns, shares over time)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tagger.config import RunConfig
from tagger.errors import ConfigError
from tagger.lifecycle.like import continue_run, earlier_run, same_embedder
from tagger.lifecycle.manifest import FORMAT_VERSION
from tagger.lifecycle.over_time import shares_for_run
from tagger.lifecycle.recut_data import save_recut_data
from tagger.lifecycle.segment_model import MODEL_DIR, load_model, model_for_run, save_model
from tagger.lifecycle.stability import stability_for_run
from tagger.llm.base import Engine
from tagger.pipeline import (PipelineRun, Prepared, documents_from_frame, public_profile, read_input, run_pipeline,
                             run_summary)
from tagger.progress import Reporter
from tagger.run.context import RunContext
from tagger.run.edit import write_edits
from tagger.run.folder import RunFolder, check_destination
from tagger.run.report_html import write_report
from tagger.schemas import TaggedUser, UserDocument
from tagger.stages.candidates import CandidateExtractor
from tagger.stages.embedding import Encoder
from tagger.summary import ModelRef, OverTime, RunSummary, Stability, write_summary


@dataclass
class RunResult:
    users: pd.DataFrame
    segments: pd.DataFrame
    tagged_users: list[TaggedUser]
    documents: list[UserDocument]
    summary: RunSummary
    vectors: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    out: Path | None = None
    profiles: list = field(repr=False, default_factory=list)  # what naming saw, every level (stages.naming)


def segment(source: Path | pd.DataFrame, config: RunConfig, *, out: Path | None = None, force: bool = False,
            reporter: Reporter | None = None, engine: Engine | None = None, encoder: Encoder | None = None,
            report: bool = True) -> RunResult:
    """The whole run. Pass `engine`/`encoder` to reuse loaded models (notebooks, tests);
    `report=False` skips the run folder's report.html."""
    reporter = reporter or Reporter()
    started = time.perf_counter()
    if out is not None:
        check_destination(Path(out), force)
    if config.like is not None:  # before any tagging: a folder without a model, or nonsense edits, fail first
        config = same_embedder(config, earlier_run(config.like).model)
    prepared = Prepared.from_config(config, previous_candidates(config))
    with reporter.stage("load"):
        frame = read_input(source, config)  # the only read: shares over time use this frame too
        documents, load_stats = documents_from_frame(frame, config)
        if not config.time_col:
            frame = None  # nothing reads it again: its memory (~12 KB a user of forum posts) is freed
    with RunContext(config, reporter, out=out, force=force, engine=engine) as ctx:
        run = run_pipeline(documents, load_stats, config, prepared, ctx, encoder)
        carried = continue_run(run, config.like) if config.like is not None else None
        engine_used = ctx.started_engine
        ctx.close_engine()
        summary = run_summary(run, engine_used, ctx.cache, reporter, started)
        if carried is not None:
            summary.lineage, summary.edits = carried.lineage, carried.edits_summary()
        users = run.users_table()
        result = RunResult(users, run.segments_table(), run.tagged, run.documents, summary, run.vectors,
                           profiles=run.profiles)
        lasting = _lasting(run, frame, summary, users, reporter, save=ctx.folder is not None)
        if ctx.folder is not None:
            _write(ctx.folder, run, result, lasting, reporter)
            if carried is not None and carried.edits:
                write_edits(ctx.folder.tmp, carried.edits, carried.base)
            summary.timings_s = dict(reporter.timings)
            summary.wall_time_s = round(time.perf_counter() - started, 3)
            write_summary(ctx.folder.tmp, summary)
            if report:
                write_report(ctx.folder.tmp, ctx.folder.path("report.html"))
            result.out = ctx.commit()
    return result


def previous_candidates(config: RunConfig) -> CandidateExtractor | None:
    """--candidates-from RUN: that run's phrase statistics, so a user it saw, writing what they
    wrote then, gets the same candidate list: the same prompt, the cached answer and the same
    tags. Fitted afresh, the list depends on everyone else in the data."""
    if config.candidates_from is None:
        return None
    if config.tag_mode != "grounded":
        raise ConfigError("--candidates-from needs --tag-mode grounded: free tagging has no candidate lists")
    model = load_model(config.candidates_from)
    if not model.manifest.candidates.n_documents:
        raise ConfigError(f"{config.candidates_from} saved no candidate statistics (it ran with --tag-mode free); "
                          "pass a run made with --tag-mode grounded")
    return model.extractor()


def _lasting(run: PipelineRun, frame: pd.DataFrame | None, summary: RunSummary, users: pd.DataFrame,
             reporter: Reporter, save: bool = True, edits=()) -> dict[str, Any]:
    """The saved segment model (holding `edits`, the hand edits --like carried), optional
    stability reruns, shares per period.
    Adds the keys `segment_model`, `stability` and `over_time` to the run summary."""
    config, segmentation = run.config, run.segmentation
    # the users the segments were fitted on (with --llm-users: the LLM-read sample)
    rows = np.flatnonzero(run.has_vector & segmentation.fitted_)
    out: dict[str, Any] = {}
    if save and len(rows) and len(segmentation.centroids_):
        out["model"] = model_for_run(segmentation, summary=summary, config=config, names=run.names(),
                                     extractor=run.extractor, encoder=run.encoder, tree=run.parent_nodes(),
                                     lexical=run.lexical, ids=run.ids, leaf_parents=run.parent_of(),
                                     person={s.segment_id: s.set_by_person for s in run.segments if s.set_by_person},
                                     distilled=run.distilled)
        out["model"].edits = [e.model_dump(mode="json") for e in edits]
        out["clusterer"] = getattr(segmentation, "clusterer_", None)
        summary.segment_model = ModelRef(path=MODEL_DIR, format_version=FORMAT_VERSION)
    if config.stability >= 2 and len(rows) >= 4:
        with reporter.stage("stability"):
            figures, out["stability"] = stability_for_run(config, run.vectors[rows], segmentation.labels_[rows],
                                                          run.names(), segmentation, ids=run.ids)
            summary.stability = Stability.model_validate(figures)
    if config.time_col:
        out["shares"], over_time = shares_for_run(frame, config, users)
        summary.over_time = OverTime.model_validate(over_time)
    return out


def _write(folder: RunFolder, run: PipelineRun, result: RunResult, lasting: dict[str, Any], reporter: Reporter) -> None:
    with reporter.stage("write"):
        folder.write_table("users", result.users)
        folder.write_table("segments", result.segments)
        folder.write_jsonl("tags.jsonl", [u.model_dump() for u in run.tagged])
        # What naming saw, so `tagger rename` can re-run naming alone.
        folder.write_json("segment_profiles.json", [public_profile(p, run.config.k_anonymity) for p in run.profiles])
        if "model" in lasting:
            save_model(lasting["model"], folder.path(MODEL_DIR), lasting.get("clusterer"))
            save_recut_data(folder.path(MODEL_DIR), run.segmentation, run.vectors, run.corpus)
        if "stability" in lasting:
            folder.write_table("stability", lasting["stability"])
        if "shares" in lasting:
            folder.write_table("segment_shares", lasting["shares"])
