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
    config = run_config(run.path)
    template = prompt_files.load("name", prompts or os.environ.get("TAGGER_PROMPTS") or config.prompts)
    stats = CallStats()
    with RunContext(config, engine=engine) as ctx:
        params = GenerationParams(max_tokens=NAMING_MAX_TOKENS, temperature=config.temperature, seed=config.seed)
        llm = engine or ctx.lazy_engine(str(run.summary.get("model", config.model)))
        options = NamingOptions(params, language=run.summary.get("language", "en"), audience=config.audience,
                                prompts=config.prompts, k_anonymity=config.k_anonymity)
        named = name_tree(run.profiles, llm, template, options, cache=ctx.cache, stats=stats)
        hits, misses = ctx.cache.hits, ctx.cache.misses
    config = run.summary.get("config", {})
    k_anonymity = int(config.get("k_anonymity", 1))
    segments = run.segments.copy()
    by_id = {p.segment_id: result for p, result in zip(run.profiles, named, strict=True)}
    for column in ("iab_id", "iab_path"):
        if column not in segments:
            segments[column] = ""
    fields = ["name", "description", "named_by", "iab_id", "iab_path"]
    for row in segments.itertuples():
        if int(row.segment_id) in by_id and int(row.size) >= k_anonymity:
            n = by_id[int(row.segment_id)]
            segments.loc[row.Index, fields] = [n.label, n.description, n.named_by, n.iab_id, n.iab_path]
    names = dict(zip(segments["segment_id"].astype(int), segments["name"], strict=True))
    users = run.users.copy()
    # a user left unsegmented for lack of content keeps an empty name (pipeline.user_table)
    users["segment_name"] = ["" if by == "unsegmented" else names.get(int(s), "unsegmented")
                             for s, by in zip(users["segment_id"], users["assigned_by"], strict=True)]
    if "parent_id" in users:
        users["parent_name"] = [names.get(int(p), "") if p >= 0 else "" for p in users["parent_id"]]

    summary = dict(run.summary)
    summary["prompts"] = {**summary.get("prompts", {}), "name": {"path": str(template.path), "sha256": template.sha256}}
    summary["counts"] = {**summary.get("counts", {}), "segments_named_by_llm": int((segments["named_by"] == "llm").sum())}
    summary["tokens"] = {**summary.get("tokens", {}), "naming_prompt": stats.prompt_tokens,
                         "naming_output": stats.output_tokens}
    summary["renamed"] = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          "cache": {"hits": hits, "misses": misses},
                          "wall_time_s": round(time.perf_counter() - started, 3)}
    renamed = Run(run.path, summary, users, segments, run.tagged_users, run.profiles)
    _replace_files(renamed)
    return renamed


def _replace_files(run: Run) -> None:
    """Write every rewritten file aside first, then move each into place with os.replace, so a
    failure while writing leaves the old run untouched."""
    folder = RunFolder(run.path, force=True)
    try:
        folder.write_table("users", run.users)
        folder.write_table("segments", run.segments)
        folder.write_json(RUN_MARKER, run.summary)
        names = ["users.parquet", "users.csv", "segments.parquet", "segments.csv"]
        if (run.path / "report.html").exists():  # a run made with --no-report stays without one
            folder.path("report.html").write_text(render_report(run), encoding="utf-8")
            names.append("report.html")
        names.append(RUN_MARKER)  # last: it is what marks the folder as a finished run
        for name in names:
            os.replace(folder.path(name), run.path / name)
    finally:
        folder.abandon()
