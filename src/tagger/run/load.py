"""A finished run folder, loaded back into typed objects for `show`, `rename`, `report` and the API.

Everything here reads what `tagger segment` wrote; nothing recomputes tags or clusters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tagger.errors import InputError
from tagger.stages.naming import SegmentProfile
from tagger.run.folder import RUN_MARKER
from tagger.schemas import TaggedUser

REQUIRED_FILES = (RUN_MARKER, "users.parquet", "segments.parquet", "tags.jsonl")


@dataclass
class Run:
    path: Path
    summary: dict[str, Any]
    users: pd.DataFrame
    segments: pd.DataFrame
    tagged_users: dict[str, TaggedUser]
    profiles: list[SegmentProfile] = field(default_factory=list)

    def find_segment(self, ref: str | int) -> pd.Series:
        """A segment by id or by name (case-insensitive); InputError lists what exists."""
        text = str(ref).strip()
        rows = self.segments
        match = rows[rows["segment_id"].astype(str) == text] if text.lstrip("-").isdigit() else rows.iloc[0:0]
        if match.empty:
            match = rows[rows["name"].str.lower() == text.lower()]
        if match.empty:
            known = "; ".join(f"{r.segment_id}: {r.name}" for r in rows.itertuples())
            raise InputError(f"no segment '{text}' in {self.path}; pass an id or name from: {known}")
        return match.iloc[0]

    def find_user(self, user_id: str) -> pd.Series:
        match = self.users[self.users["user_id"].astype(str) == str(user_id)]
        if match.empty:
            sample = ", ".join(self.users["user_id"].astype(str).head(3))
            raise InputError(f"no user '{user_id}' in {self.path}; pass a user_id from users.csv (e.g. {sample})")
        return match.iloc[0]

    def evidence(self, user_id: str) -> list[dict[str, str]]:
        user = self.tagged_users.get(str(user_id))
        return [t.model_dump() for t in user.tags] if user else []


def load_run(path: Path | str) -> Run:
    """Read a run folder; an InputError says what is missing when `path` is not one."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"run folder not found: {path}; pass the --out folder of a `tagger segment` run")
    missing = [name for name in REQUIRED_FILES if not (path / name).exists()]
    if missing:
        raise InputError(f"{path} is not a tagger run folder (missing {', '.join(missing)}); "
                         "pass the --out folder of a `tagger segment` run")
    try:
        summary = json.loads((path / RUN_MARKER).read_text(encoding="utf-8"))
        users = pd.read_parquet(path / "users.parquet")
        segments = pd.read_parquet(path / "segments.parquet")
        tagged = [TaggedUser.model_validate_json(line)
                  for line in (path / "tags.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
        profiles_file = path / "segment_profiles.json"
        profiles = ([SegmentProfile(**p) for p in json.loads(profiles_file.read_text(encoding="utf-8"))]
                    if profiles_file.exists() else [])
    except (ValueError, OSError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read the run folder {path} ({first}); rerun `tagger segment` to rewrite it") from None
    for frame in (users, segments):
        for column in ("tags", "top_tags", "top_items", "evidence"):
            if column in frame:
                frame[column] = frame[column].map(lambda v: [str(x) for x in v] if v is not None else [])
    users["user_id"] = users["user_id"].astype(str)
    return Run(path, summary, users, segments, {u.user_id: u for u in tagged}, profiles)


def segment_overview(run: Run) -> list[dict[str, Any]]:
    """One dict per segment: id, name, size, share, top tags, top items."""
    return [{"segment_id": int(r.segment_id), "name": r.name, "size": int(r.size), "share": float(r.share),
             "top_tags": list(r.top_tags), "top_items": list(r.top_items)} for r in run.segments.itertuples()]


def user_detail(run: Run, user_id: str) -> dict[str, Any]:
    row = run.find_user(user_id)
    segment_tags = set()
    if int(row.segment_id) >= 0:
        segment_tags = set(run.find_segment(int(row.segment_id)).top_tags)
    return {
        "user_id": str(row.user_id), "segment_id": int(row.segment_id), "segment_name": row.segment_name,
        "strength": float(row.strength), "assigned_by": row.assigned_by, "status": row.status,
        "error": row.error or "", "tags": run.evidence(row.user_id),
        "shared_with_segment": [t for t in row.tags if t in segment_tags],
    }


def segment_detail(run: Run, ref: str | int, sample: int = 5) -> dict[str, Any]:
    """The segment, its strongest members with their evidence, and why they belong:
    membership strength, how they were assigned, and which of the segment's tags they carry."""
    seg = run.find_segment(ref)
    members = run.users[run.users["segment_id"] == int(seg.segment_id)]
    members = members.sort_values(["strength", "user_id"], ascending=[False, True], kind="stable")
    assigned = members["assigned_by"].value_counts().to_dict()
    return {
        "segment_id": int(seg.segment_id), "name": seg["name"], "description": seg.description,
        "size": int(seg["size"]), "share": float(seg.share), "named_by": seg.named_by,
        "top_tags": list(seg.top_tags), "top_items": list(seg.top_items), "evidence": list(seg.evidence),
        "mean_strength": round(float(members["strength"].mean()), 4) if len(members) else 0.0,
        "assigned_by": {str(k): int(v) for k, v in assigned.items()},
        "members": [user_detail(run, uid) for uid in members["user_id"].head(sample)],
    }


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
    from tagger.stages.naming import name_segments
    from tagger.paths import tagger_home
    from tagger.pipeline import NAMING_MAX_TOKENS

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
                              language=run.summary.get("language", "en"), stats=stats)
    finally:
        if own_engine:
            engine.close()
        cache.close()

    k_anonymity = int(config.get("k_anonymity", 1))
    segments = run.segments.copy()
    by_id = {p.segment_id: result for p, result in zip(run.profiles, named, strict=True)}
    for row in segments.itertuples():
        if int(row.segment_id) in by_id and int(row.size) >= k_anonymity:
            label, description, named_by = by_id[int(row.segment_id)]
            segments.loc[row.Index, ["name", "description", "named_by"]] = [label, description, named_by]
    names = dict(zip(segments["segment_id"].astype(int), segments["name"], strict=True))
    users = run.users.copy()
    users["segment_name"] = [names.get(int(s), "unsegmented") for s in users["segment_id"]]

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
