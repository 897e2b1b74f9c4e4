"""A finished run folder, loaded back into typed objects for `show`, `rename`, `report` and the API.

Everything here reads what `tagger segment` wrote; nothing recomputes tags or clusters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tagger.errors import InputError
from tagger.stages.naming import SegmentProfile
from tagger.run.folder import RUN_MARKER
from tagger.schemas import TaggedUser
from tagger.summary import RunSummary, read_summary

REQUIRED_FILES = (RUN_MARKER, "users.parquet", "segments.parquet", "tags.jsonl")


@dataclass
class Run:
    path: Path
    summary: RunSummary
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
    summary = read_summary(path)
    try:
        users = pd.read_parquet(path / "users.parquet")
        segments = pd.read_parquet(path / "segments.parquet")
        tagged = [TaggedUser.model_validate_json(line)
                  for line in (path / "tags.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
        profiles_file = path / "segment_profiles.json"
        profiles = ([SegmentProfile.from_dict(p) for p in json.loads(profiles_file.read_text(encoding="utf-8"))]
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


def tree_columns(segments: pd.DataFrame) -> pd.DataFrame:
    """`segments` with int `level` and `parent_id` columns; runs written before the segment tree have
    neither, and read as all leaves with no parent."""
    frame = segments.copy()
    frame["level"] = frame["level"].fillna(0).astype(int) if "level" in frame else 0
    frame["parent_id"] = frame["parent_id"].fillna(-1).astype(int) if "parent_id" in frame else -1
    return frame


def leaf_segments(segments: pd.DataFrame) -> pd.DataFrame:
    """The level-0 rows: the segments users are placed in."""
    frame = tree_columns(segments)
    return frame[frame["level"] == 0]


def parent_of(segments: pd.DataFrame) -> dict[int, int]:
    """Every segment's parent id, -1 at the top. A parent that is missing, or not above its child,
    counts as none, so a damaged table still reads as a tree and never as a loop."""
    frame = tree_columns(segments)
    levels = dict(zip(frame["segment_id"].astype(int), frame["level"], strict=True))
    return {sid: (pid if levels.get(pid, -1) > levels[sid] else -1)
            for sid, pid in zip(frame["segment_id"].astype(int), frame["parent_id"], strict=True)}


def ancestors(parents: dict[int, int], segment_id: int) -> list[int]:
    """The ids above `segment_id` in `parents` (from `parent_of`), nearest first; [] at the top and for -1."""
    chain: list[int] = []
    node = parents.get(int(segment_id), -1)
    while node >= 0:
        chain.append(node)
        node = parents.get(node, -1)
    return chain


def segment_tree(segments: pd.DataFrame) -> list[dict[str, Any]]:
    """The top-level segments (parents, or the leaves of a flat run), each with its `children`,
    largest first within a level: {"segment_id", "name", "size", "share", "level", "iab_id",
    "iab_path", "children": [...]}."""
    frame = tree_columns(segments)
    children: dict[int, list[dict[str, Any]]] = {}
    parents = parent_of(frame)
    nodes = {}
    for r in frame.itertuples():
        nodes[int(r.segment_id)] = {
            "segment_id": int(r.segment_id), "name": str(r.name), "size": int(r.size), "share": float(r.share),
            "level": int(r.level), "iab_id": text_cell(getattr(r, "iab_id", "")),
            "iab_path": text_cell(getattr(r, "iab_path", "")), "sensitive": text_cell(getattr(r, "sensitive", "")),
            "set_by_person": list_cell(getattr(r, "set_by_person", None)), "children": []}
        children.setdefault(parents[int(r.segment_id)], []).append(nodes[int(r.segment_id)])
    for parent_id, kids in children.items():
        kids.sort(key=lambda n: (-n["size"], n["segment_id"]))
        if parent_id >= 0:
            nodes[parent_id]["children"] = kids
    return children.get(-1, [])


def segment_overview(run: Run, level: int | None = 0) -> list[dict[str, Any]]:
    """One dict per segment at `level` (default the leaves; None: every level): id, name, size, share,
    level, parent, taxonomy node, top tags, top items."""
    frame = tree_columns(run.segments)
    names = _names(frame)
    parents = parent_of(frame)
    rows = frame if level is None else frame[frame["level"] == level]
    return [{"segment_id": int(r.segment_id), "name": r.name, "size": int(r.size), "share": float(r.share),
             "level": int(r.level), "parent_id": parents[int(r.segment_id)],
             "parent_name": names.get(parents[int(r.segment_id)], ""),
             "iab_id": text_cell(getattr(r, "iab_id", "")), "iab_path": text_cell(getattr(r, "iab_path", "")),
             "sensitive": text_cell(getattr(r, "sensitive", "")),
             "top_tags": list(r.top_tags), "top_items": list(r.top_items),
             "set_by_person": list_cell(getattr(r, "set_by_person", None))} for r in rows.itertuples()]


def user_detail(run: Run, user_id: str) -> dict[str, Any]:
    row = run.find_user(user_id)
    segment_tags = set()
    if int(row.segment_id) >= 0:
        segment_tags = set(run.find_segment(int(row.segment_id)).top_tags)
    parent_id = parent_of(run.segments).get(int(row.segment_id), -1)
    return {
        "user_id": str(row.user_id), "segment_id": int(row.segment_id), "segment_name": row.segment_name,
        "parent_id": parent_id, "parent_name": _names(run.segments).get(parent_id, ""),
        "strength": float(row.strength), "assigned_by": row.assigned_by, "status": row.status,
        "error": row.error or "", "reason": row.get("reason", "") or "", "tags": run.evidence(row.user_id),
        "shared_with_segment": [t for t in row.tags if t in segment_tags],
    }


def segment_detail(run: Run, ref: str | int, sample: int = 5) -> dict[str, Any]:
    """The segment, its strongest members with their evidence, and why they belong:
    membership strength, how they were assigned, and which of the segment's tags they carry.
    A parent's members are the users of every leaf below it."""
    seg = run.find_segment(ref)
    node = next(n for n in walk_tree(segment_tree(run.segments)) if n["segment_id"] == int(seg.segment_id))
    leaves = [n["segment_id"] for n in walk_tree([node]) if n["level"] == 0]
    members = run.users[run.users["segment_id"].isin(leaves)]
    members = members.sort_values(["strength", "user_id"], ascending=[False, True], kind="stable")
    assigned = members["assigned_by"].value_counts().to_dict()
    parent_id = parent_of(run.segments)[node["segment_id"]]
    return {
        "segment_id": node["segment_id"], "name": seg["name"], "description": text_cell(seg.get("description", "")),
        "size": int(seg["size"]), "share": float(seg.share), "named_by": text_cell(seg.get("named_by", "")),
        "level": node["level"], "parent_id": parent_id, "parent_name": _names(run.segments).get(parent_id, ""),
        "children": [{k: n[k] for k in ("segment_id", "name", "size", "share")} for n in node["children"]],
        "iab_id": text_cell(seg.get("iab_id", "")), "iab_path": text_cell(seg.get("iab_path", "")),
        "sensitive": text_cell(seg.get("sensitive", "")), "set_by_person": list_cell(seg.get("set_by_person")),
        "top_tags": list(seg.top_tags), "top_items": list(seg.top_items), "evidence": list(seg.evidence),
        "mean_strength": round(float(members["strength"].mean()), 4) if len(members) else 0.0,
        "assigned_by": {str(k): int(v) for k, v in assigned.items()},
        "members": [user_detail(run, uid) for uid in members["user_id"].head(sample)],
    }


def walk_tree(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every node of `segment_tree`'s nodes, each before its children."""
    for node in nodes:
        yield node
        yield from walk_tree(node["children"])


def _names(segments: pd.DataFrame) -> dict[int, str]:
    return dict(zip(segments["segment_id"].astype(int), segments["name"].astype(str), strict=True))


def sensitive_badge(category: str, excluded: bool = False) -> str:
    """How `show` and the report mark a segment about a sensitive topic ("" for none)."""
    if not category:
        return ""
    return f"[sensitive: {category}{', members excluded' if excluded else ''}]"
def list_cell(value: Any) -> list[str]:
    """A list cell as a list of str, [] when empty (runs before edits have no such column)."""
    return [] if value is None or isinstance(value, float) else [str(v) for v in value]


def groups_phrase(tree: list[dict[str, Any]]) -> str:
    """' in 1 group, 12 on their own': the top-level segments with children (groups) and the
    leaves that stand at the top beside them; '' for a flat run."""
    groups = sum(1 for node in tree if node["children"])
    if not groups:
        return ""
    alone = len(tree) - groups
    return f" in {groups} group{'s' if groups != 1 else ''}" + (f", {alone} on their own" if alone else "")


def text_cell(value: Any) -> str:
    """A text cell as str, "" when empty: parent rows may leave description or taxonomy cells as None or NaN."""
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)
