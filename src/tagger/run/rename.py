"""`tagger rename`: re-run only the naming stage of a finished run and rewrite its files in place."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from tagger import prompts as prompt_files
from tagger.errors import InputError
from tagger.llm.structured import CallStats
from tagger.run.context import RunContext, run_config
from tagger.run.folder import RUN_MARKER, RunFolder
from tagger.run.load import Run, load_run
from tagger.run.report_html import render_report
from tagger.privacy import exclude_sensitive, withhold_small_segments
from tagger.schemas import Segment
from tagger.stages.naming import NamedTree, NamingSettings, SegmentProfile, name_tree
from tagger.summary import CacheUse, PromptRef, Renamed, write_summary


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
        llm = engine or ctx.lazy_engine(run.summary.model)
        settings = NamingSettings.from_config(config, language=run.summary.language)
        named = name_tree(run.profiles, llm, template, settings, cache=ctx.cache, stats=stats)
        hits, misses = ctx.cache.hits, ctx.cache.misses
    segments = renamed_segments(run.segments, run.profiles, named, config.k_anonymity)
    kept = [int(r.segment_id) for r in segments.itertuples() if "name" in (r.set_by_person or [])]
    names = dict(zip(segments["segment_id"].astype(int), segments["name"], strict=True))
    parent_of = dict(zip(segments["segment_id"].astype(int), segments["parent_id"].astype(int), strict=True))
    # Users a --sensitive exclude run left out stay out: the run keeps no segment for them.
    users = run.users.copy()
    # a user left unsegmented for lack of content keeps an empty name (pipeline.user_table)
    users["segment_name"] = ["" if by == "unsegmented" else names.get(int(s), "unsegmented")
                             for s, by in zip(users["segment_id"], users["assigned_by"], strict=True)]
    if "parent_id" in users:
        users["parent_id"] = [parent_of.get(int(s), -1) if s >= 0 else -1 for s in users["segment_id"]]
        users["parent_name"] = [names.get(int(p), "") if p >= 0 else "" for p in users["parent_id"]]
    users = exclude_sensitive(users, segments, config.sensitive)

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


def renamed_segments(old: pd.DataFrame, profiles: list[SegmentProfile], named: NamedTree,
                     k_anonymity: int) -> pd.DataFrame:
    """The segments table with every segment named again: sizes, shares and items as they were;
    a parent naming now leaves out is dropped and its children take its own parent. What a
    person set stays (`tagger edit`): the name with the taxonomy node it replaced, the
    description, and a parent a person named."""
    rows = {int(r["segment_id"]): r for r in old.to_dict("records")}
    person = {sid: person_fields(r.get("set_by_person")) for sid, r in rows.items()}
    leaves = old[old["level"] == 0] if "level" in old else old
    placed = max(int(leaves["size"].sum()), 1)
    restored = {p.segment_id for p, n in zip(profiles, named.names, strict=True)
                if n is None and "name" in person.get(p.segment_id, [])}
    segments = []
    for p, n in zip(profiles, named.names, strict=True):
        if n is None and p.segment_id not in restored:
            continue
        row, mine = rows.get(p.segment_id, {}), person.get(p.segment_id, [])
        fields = dict(name=n.label, description=n.description, named_by=n.named_by, iab_id=n.iab_id,
                      iab_path=n.iab_path) if n is not None else {}
        if "name" in mine:
            fields |= {k: str(row.get(k) or "") for k in ("name", "named_by", "iab_id", "iab_path")}
        if "description" in mine or n is None:
            fields["description"] = str(row.get("description") or "")
        parent = p.parent_id if p.parent_id in restored else named.parents.get(p.segment_id, -1)
        segments.append(Segment(size=p.size, top_tags=list(p.top_tags), top_items=list(row.get("top_items", []) or []),
                                evidence=list(p.quotes), level=p.level, parent_id=parent, segment_id=p.segment_id,
                                sensitive=n.sensitive if n is not None else str(row.get("sensitive") or ""),
                                set_by_person=mine, **fields))
    return pd.DataFrame([{**s.model_dump(), "share": rows.get(s.segment_id, {}).get("share", round(s.size / placed, 4))}
                         for s in withhold_small_segments(segments, k_anonymity)], columns=[*Segment.model_fields, "share"])


def person_fields(value) -> list[str]:
    """The fields of a segments-table row that a person set (`tagger edit`); none for runs before edits."""
    return [str(v) for v in value] if value is not None and not isinstance(value, (float, str)) else []


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
