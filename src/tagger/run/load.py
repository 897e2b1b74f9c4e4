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
    """One dict per segment: id, name, size, share, taxonomy node, top tags, top items."""
    return [{"segment_id": int(r.segment_id), "name": r.name, "size": int(r.size), "share": float(r.share),
             "iab_id": str(getattr(r, "iab_id", "") or ""), "iab_path": str(getattr(r, "iab_path", "") or ""),
             "top_tags": list(r.top_tags), "top_items": list(r.top_items)} for r in run.segments.itertuples()]


def user_detail(run: Run, user_id: str) -> dict[str, Any]:
    row = run.find_user(user_id)
    segment_tags = set()
    if int(row.segment_id) >= 0:
        segment_tags = set(run.find_segment(int(row.segment_id)).top_tags)
    return {
        "user_id": str(row.user_id), "segment_id": int(row.segment_id), "segment_name": row.segment_name,
        "strength": float(row.strength), "assigned_by": row.assigned_by, "status": row.status,
        "error": row.error or "", "reason": row.get("reason", "") or "", "tags": run.evidence(row.user_id),
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
        "iab_id": str(seg.get("iab_id", "") or ""), "iab_path": str(seg.get("iab_path", "") or ""),
        "top_tags": list(seg.top_tags), "top_items": list(seg.top_items), "evidence": list(seg.evidence),
        "mean_strength": round(float(members["strength"].mean()), 4) if len(members) else 0.0,
        "assigned_by": {str(k): int(v) for k, v in assigned.items()},
        "members": [user_detail(run, uid) for uid in members["user_id"].head(sample)],
    }
