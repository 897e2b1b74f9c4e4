"""`tagger rename`: re-run only the naming stage of a finished run and rewrite its files in place."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

from tagger import prompts as prompt_files
from tagger.errors import InputError
from tagger.llm.base import GenerationParams
from tagger.llm.structured import CallStats
from tagger.run.context import RunContext, run_config
from tagger.run.folder import RUN_MARKER, RunFolder
from tagger.run.load import Run, load_run
from tagger.run.report_html import render_report
from tagger.summary import CacheUse, PromptRef, Renamed, write_summary
from tagger.stages.naming import NAMING_MAX_TOKENS, NamingOptions, name_tree


def rename_run(path: Path | str, prompts: Path | str | None = None, *, engine=None) -> Run:
    """Re-run only the naming stage from segment_profiles.json and rewrite the segment and user
    tables, run.json and report.html in place. Tags, embeddings and clusters are reused as is.

    The template comes from `prompts`, else TAGGER_PROMPTS, else the folder the run used.
    `engine` defaults to the run's engine and model (from run.json), started only on a cache miss.
    """
    started = time.perf_counter()
    run = load_run(path)
    if not run.profiles:
        raise InputError(f"{run.path} has no segment_profiles.json (written by newer `tagger segment`); "
                         "rerun `tagger segment` to rename its segments")
    config = run_config(run.path, run.summary)
    template = prompt_files.load("name", prompts or os.environ.get("TAGGER_PROMPTS") or config.prompts)
    stats = CallStats()
    with RunContext(config, engine=engine) as ctx:
        params = GenerationParams(max_tokens=NAMING_MAX_TOKENS, temperature=config.temperature, seed=config.seed)
        llm = engine or ctx.lazy_engine(run.summary.model)
        options = NamingOptions(params, language=run.summary.language, audience=config.audience,
                                prompts=config.prompts, k_anonymity=config.k_anonymity)
        named = name_tree(run.profiles, llm, template, options, cache=ctx.cache, stats=stats)
        hits, misses = ctx.cache.hits, ctx.cache.misses
    segments = run.segments.copy()
    by_id = {p.segment_id: result for p, result in zip(run.profiles, named, strict=True)}
    for column in ("iab_id", "iab_path"):
        if column not in segments:
            segments[column] = ""
    kept = []
    for row in segments.itertuples():
        if int(row.segment_id) not in by_id or int(row.size) < config.k_anonymity:
            continue
        n = by_id[int(row.segment_id)]
        # what a person set stays: the name (with the taxonomy node it replaced) and the description
        person = set(person_fields(row))
        if "name" not in person:
            segments.loc[row.Index, ["name", "named_by", "iab_id", "iab_path"]] = [n.label, n.named_by, n.iab_id,
                                                                                   n.iab_path]
        else:
            kept.append(int(row.segment_id))
        if "description" not in person:
            segments.loc[row.Index, "description"] = n.description
    names = dict(zip(segments["segment_id"].astype(int), segments["name"], strict=True))
    users = run.users.copy()
    # a user left unsegmented for lack of content keeps an empty name (pipeline.user_table)
    users["segment_name"] = ["" if by == "unsegmented" else names.get(int(s), "unsegmented")
                             for s, by in zip(users["segment_id"], users["assigned_by"], strict=True)]
    if "parent_id" in users:
        users["parent_name"] = [names.get(int(p), "") if p >= 0 else "" for p in users["parent_id"]]

    summary = run.summary.model_copy(deep=True)
    summary.prompts["name"] = PromptRef(path=str(template.path), sha256=template.sha256)
    summary.counts.segments_named_by_llm = int((segments["named_by"] == "llm").sum())
    summary.tokens.naming_prompt, summary.tokens.naming_output = stats.prompt_tokens, stats.output_tokens
    summary.renamed = Renamed(at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              cache=CacheUse(enabled=config.cache, hits=hits, misses=misses),
                              wall_time_s=round(time.perf_counter() - started, 3), kept_person_names=kept)
    renamed = Run(run.path, summary, users, segments, run.tagged_users, run.profiles)
    _replace_files(renamed)
    return renamed


def person_fields(row) -> list[str]:
    """The fields of a segments-table row that a person set (`tagger edit`); none for runs before edits."""
    value = getattr(row, "set_by_person", None)
    return [str(v) for v in value] if value is not None and not isinstance(value, float) else []


def _replace_files(run: Run) -> None:
    """Write every rewritten file aside first, then move each into place with os.replace, so a
    failure while writing leaves the old run untouched."""
    folder = RunFolder(run.path, force=True)
    try:
        folder.write_table("users", run.users)
        folder.write_table("segments", run.segments)
        write_summary(folder.tmp, run.summary)
        names = ["users.parquet", "users.csv", "segments.parquet", "segments.csv"]
        if (run.path / "report.html").exists():  # a run made with --no-report stays without one
            folder.path("report.html").write_text(render_report(run), encoding="utf-8")
            names.append("report.html")
        names.append(RUN_MARKER)  # last: it is what marks the folder as a finished run
        for name in names:
            os.replace(folder.path(name), run.path / name)
    finally:
        folder.abandon()
