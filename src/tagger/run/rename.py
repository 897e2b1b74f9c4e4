"""`tagger rename`: re-run only the naming stage of a finished run and rewrite its files in place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tagger.errors import InputError
from tagger.run.folder import RUN_MARKER
from tagger.run.load import Run, load_run


class _LazyEngine:
    """Starts the run's engine only if naming misses the cache: a rename whose answers are all
    cached (an unchanged template) then costs no engine start."""

    def __init__(self, config: dict[str, Any], model_id: str):
        self.config = config
        self.model_id = model_id
        self.engine = None

    def generate(self, chats, *, schemas, params):
        if self.engine is None:
            from tagger.llm.base import create_engine
            from tagger.llm.models import resolve_model

            name, model = self.config.get("engine", "vllm"), self.config.get("model", "embedded")
            if name == "vllm" or Path(model).exists():
                model = resolve_model(model)
            self.engine = create_engine(name, model=model, seed=self.config.get("seed", 0),
                                        base_url=self.config.get("base_url"))
        return self.engine.generate(chats, schemas=schemas, params=params)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


def rename_run(path: Path | str, prompts: Path | str | None = None, *, engine=None) -> Run:
    """Re-run only the naming stage from segment_profiles.json and rewrite the segment and user
    tables, run.json and report.html in place. Tags, embeddings and clusters are reused as is.

    The template comes from `prompts`, else TAGGER_PROMPTS, else the folder the run used.
    `engine` defaults to the run's engine and model (from run.json), started only on a cache miss.
    """
    import os
    import time
    from datetime import datetime, timezone

    from tagger import prompts as prompt_files
    from tagger.cache import ResultCache
    from tagger.llm.base import GenerationParams
    from tagger.llm.structured import CallStats
    from tagger.stages.naming import DEFAULT_AUDIENCE, NAMING_MAX_TOKENS, name_segments
    from tagger.paths import tagger_home

    started = time.perf_counter()
    run = load_run(path)
    if not run.profiles:
        raise InputError(f"{run.path} has no segment_profiles.json (written by newer `tagger segment`); "
                         "rerun `tagger segment` to rename its segments")
    config = run.summary.get("config", {})
    template = prompt_files.load("name", prompts or os.environ.get("TAGGER_PROMPTS") or config.get("prompts"))
    cache = ResultCache(tagger_home() / "cache.sqlite" if config.get("cache", True) else None)
    own_engine = engine is None
    engine = engine or _LazyEngine(config, str(run.summary.get("model", config.get("model", ""))))
    stats = CallStats()
    try:
        params = GenerationParams(max_tokens=NAMING_MAX_TOKENS, temperature=config.get("temperature", 0.0),
                                  seed=config.get("seed", 0))
        named = name_segments(run.profiles, engine, template, params=params, cache=cache,
                              language=run.summary.get("language", "en"), stats=stats,
                              audience=config.get("audience", DEFAULT_AUDIENCE), prompts=config.get("prompts"))
    finally:
        if own_engine:
            engine.close()
        cache.close()

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
    # a user left unsegmented for lack of content keeps an empty name (pipeline._tables)
    users["segment_name"] = ["" if by == "unsegmented" else names.get(int(s), "unsegmented")
                             for s, by in zip(users["segment_id"], users["assigned_by"], strict=True)]

    summary = dict(run.summary)
    summary["prompts"] = {**summary.get("prompts", {}), "name": {"path": str(template.path), "sha256": template.sha256}}
    summary["counts"] = {**summary.get("counts", {}), "segments_named_by_llm": int((segments["named_by"] == "llm").sum())}
    summary["tokens"] = {**summary.get("tokens", {}), "naming_prompt": stats.prompt_tokens,
                         "naming_output": stats.output_tokens}
    summary["renamed"] = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          "cache": {"hits": cache.hits, "misses": cache.misses},
                          "wall_time_s": round(time.perf_counter() - started, 3)}
    renamed = Run(run.path, summary, users, segments, run.tagged_users, run.profiles)
    _replace_files(renamed)
    return renamed


def _replace_files(run: Run) -> None:
    """Write every rewritten file aside first, then move each into place with os.replace, so a
    failure while writing leaves the old run untouched."""
    import os

    from tagger.run.folder import RunFolder
    from tagger.run.report_html import render_report

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
