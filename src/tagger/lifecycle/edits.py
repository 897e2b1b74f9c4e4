"""Hand edits of a run's segments, as data, and how each applies.

A person renames a segment, describes it, merges two, splits one or moves users into one
(`tagger edit`). Each edit is a record (`Edit`), kept in order in the run's `edits.jsonl` (one
JSON object a line: what, when) and in the saved model (`model/edits.jsonl`); the run's tables,
model and report show the result. The edits apply to a `Layout` (who is in which segment, by the
ids a person sees, and what a person set), never to the tables themselves, so the same records
apply again wherever the segments are cut afresh: `undo` replays all but the last on the
segments as they were before the first edit (`model/base/`), `recut` on its new cut and
`segment --like` on new data, each with the ids of the segments that continue the edited ones.
An edit whose segments are gone there does not apply, and is listed with why.

Bad input stops with one line (`EditError`, exit 2) before anything is written: a segment that
does not exist, a merge of a segment with itself, a split of a segment too small to split, users
the run does not hold, an edits file changed by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tagger.errors import InputError

EDITS_FILE = "edits.jsonl"
BASE_DIR = "base"  # model/base: the segments as they were before the first edit
MAX_NAME_CHARS = 80
# Fields of a segment a person may set; "members" marks a segment whose members a person changed.
PERSON_FIELDS = ("name", "description", "members")
MACHINE_FIELDS = ("name", "description", "named_by", "iab_id", "iab_path", "sensitive")


class EditError(InputError):
    """An edit that cannot apply: one line, naming the problem and the fix."""


class _Edit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


class Rename(_Edit):
    op: Literal["rename"] = "rename"
    segment: int
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)


class Describe(_Edit):
    op: Literal["describe"] = "describe"
    segment: int
    text: str = Field(min_length=1, max_length=400)


class Merge(_Edit):
    op: Literal["merge"] = "merge"
    segments: list[int] = Field(min_length=2)
    name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_CHARS)


class Split(_Edit):
    op: Literal["split"] = "split"
    segment: int
    parts: int = Field(default=2, ge=2, le=20)
    ids: list[int] = Field(default_factory=list)  # the parts' ids, largest first, once applied


class Move(_Edit):
    op: Literal["move"] = "move"
    users: list[str] = Field(min_length=1)
    segment: int
    source: str = ""  # the file the users came from, for the record


Edit = Annotated[Union[Rename, Describe, Merge, Split, Move], Field(discriminator="op")]
_EDIT = TypeAdapter(Edit)


def describe_edit(edit: Edit) -> str:
    """One line a person reads: what the edit did."""
    if isinstance(edit, Rename):
        return f"rename {edit.segment} to {edit.name!r}"
    if isinstance(edit, Describe):
        return f"describe {edit.segment}"
    if isinstance(edit, Merge):
        return f"merge {', '.join(map(str, edit.segments))}" + (f" as {edit.name!r}" if edit.name else "")
    if isinstance(edit, Split):
        return f"split {edit.segment} into {edit.parts}" + (f" ({', '.join(map(str, edit.ids))})" if edit.ids else "")
    return f"move {len(edit.users)} user{'s' if len(edit.users) != 1 else ''} to {edit.segment}"


# --- the records on disk -------------------------------------------------------------------------

def edits_to_text(edits: list[Edit]) -> str:
    return "".join(json.dumps(e.model_dump(mode="json"), ensure_ascii=False) + "\n" for e in edits)


def edits_from_records(records: list[dict[str, Any]], where: str) -> list[Edit]:
    out = []
    for number, record in enumerate(records, start=1):
        try:
            out.append(_EDIT.validate_python(record))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise EditError(f"{where} line {number} is not an edit tagger can read ({'.'.join(map(str, first['loc']))}: "
                            f"{first['msg']}); restore the file from the run's model/{EDITS_FILE}") from None
    return out


def read_edits(path: Path) -> list[Edit]:
    """The edits in an edits.jsonl; [] when there is none."""
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise EditError(f"{path} line {number} is not JSON; restore the file from the run's "
                            f"model/{EDITS_FILE}") from None
    return edits_from_records(records, str(path))


def run_edits(run_dir: Path, saved: list[dict[str, Any]]) -> list[Edit]:
    """The run's edits, checked against the copy its model holds (`saved`): the tables show what
    those records did, so a file changed by hand is refused rather than half believed."""
    path = Path(run_dir) / EDITS_FILE
    edits = read_edits(path)
    held = edits_from_records(saved, f"{run_dir}/model/{EDITS_FILE}")
    if [e.model_dump(mode="json") for e in edits] != [e.model_dump(mode="json") for e in held]:
        raise EditError(f"{path} differs from the edits the run's segments hold (model/{EDITS_FILE}): it was changed by "
                        f"hand; restore it (cp {run_dir}/model/{EDITS_FILE} {path}) and change segments with "
                        "`tagger edit`")
    return edits


# --- who is where: the layout edits apply to -----------------------------------------------------

@dataclass
class Node:
    """A segment as a person sees it: its place in the tree, its fields (MACHINE_FIELDS) and
    which of them a person set; `fresh` when an edit made it (a split's new part)."""

    segment_id: int
    level: int
    parent_id: int
    fields: dict[str, str]
    person: list[str] = field(default_factory=list)
    fresh: bool = False

    def set_by(self, what: str) -> None:
        if what not in self.person:
            self.person.append(what)


@dataclass
class Layout:
    """Every user's leaf (segment id, -1 for none) and how they got there, every segment, and
    what splits need: the users' vectors (unit rows, zero for none) and the smallest part."""

    user_ids: np.ndarray
    leaves: np.ndarray
    assigned_by: np.ndarray
    nodes: dict[int, Node]
    vectors: np.ndarray
    min_size: int
    seed: int = 0
    retired: set[int] = field(default_factory=set)  # ids of segments merged away: never taken again

    @classmethod
    def from_tables(cls, users: pd.DataFrame, segments: pd.DataFrame, vectors: np.ndarray, min_size: int,
                    seed: int = 0) -> Layout:
        nodes = {}
        for row in segments.to_dict("records"):
            fields = {k: _text(row.get(k)) for k in MACHINE_FIELDS}
            person = row.get("set_by_person")
            nodes[int(row["segment_id"])] = Node(int(row["segment_id"]), int(_number(row.get("level"), 0)),
                                                 int(_number(row.get("parent_id"), -1)), fields,
                                                 [str(p) for p in person] if isinstance(person, (list, np.ndarray)) else [])
        return cls(users["user_id"].astype(str).to_numpy(), users["segment_id"].to_numpy(np.int64).copy(),
                   users["assigned_by"].astype(object).to_numpy().copy(), nodes, np.asarray(vectors, np.float32),
                   max(2, int(min_size)), seed)

    def copy(self) -> Layout:
        return Layout(self.user_ids, self.leaves.copy(), self.assigned_by.copy(),
                      {k: Node(n.segment_id, n.level, n.parent_id, dict(n.fields), list(n.person), n.fresh)
                       for k, n in self.nodes.items()}, self.vectors, self.min_size, self.seed, set(self.retired))

    def next_id(self) -> int:
        return max([*self.nodes, *self.retired], default=-1) + 1

    def leaf(self, sid: int, what: str) -> Node:
        node = self.nodes.get(int(sid))
        if node is None:
            raise EditError(f"no segment {sid} to {what}; segments: {self.listing()}")
        if node.level != 0:
            raise EditError(f"segment {sid} ({node.fields['name']}) is a parent; {what} takes leaf segments "
                            "(the ones users belong to: `tagger show RUN`)")
        return node

    def node(self, sid: int, what: str) -> Node:
        node = self.nodes.get(int(sid))
        if node is None:
            raise EditError(f"no segment {sid} to {what}; segments: {self.listing()}")
        return node

    def listing(self) -> str:
        shown = [f"{n.segment_id} {n.fields['name']}" for n in sorted(self.nodes.values(), key=lambda n: n.segment_id)]
        return "; ".join(shown[:12]) + (f"; … ({len(shown)} in all)" if len(shown) > 12 else "")

    def members(self, sid: int) -> np.ndarray:
        return np.flatnonzero(self.leaves == sid)


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def _number(value: Any, default: int) -> int:
    return default if value is None or (isinstance(value, float) and value != value) else int(value)


# --- how each edit applies ------------------------------------------------------------------------

def apply(layout: Layout, edit: Edit) -> tuple[Layout, Edit]:
    """The layout after `edit`, and the edit as it applied (a split records its parts' ids).
    `layout` is left as it was; an edit that cannot apply raises EditError."""
    out = layout.copy()
    if isinstance(edit, Rename):
        node = out.node(edit.segment, "rename")
        _unique_name(out, edit.name, node.segment_id)
        node.fields.update(name=edit.name.strip(), named_by="person", iab_id="", iab_path="")
        node.set_by("name")
    elif isinstance(edit, Describe):
        node = out.node(edit.segment, "describe")
        node.fields["description"] = edit.text.strip()
        node.set_by("description")
    elif isinstance(edit, Merge):
        edit = _merge(out, edit)
    elif isinstance(edit, Split):
        edit = _split(out, edit)
    else:
        _move(out, edit)
    return out, edit


def replay(layout: Layout, edits: list[Edit]) -> tuple[Layout, list[Edit], list[dict[str, Any]]]:
    """Every edit that still applies, in order; the others listed with why (recut, --like, undo)."""
    applied, skipped = [], []
    for edit in edits:
        try:
            layout, done = apply(layout, edit)
            applied.append(done)
        except EditError as exc:
            skipped.append({"edit": describe_edit(edit), "at": edit.at, "why": str(exc).split(";")[0]})
    return layout, applied, skipped


def _unique_name(layout: Layout, name: str, own: int | None) -> None:
    clash = [n for n in layout.nodes.values() if n.fields["name"].strip().lower() == name.strip().lower()
             and n.segment_id != own]
    if clash:
        raise EditError(f"segment {clash[0].segment_id} is already named {name!r}; names are unique: choose another "
                        f"or rename {clash[0].segment_id} first")


def _merge(layout: Layout, edit: Merge) -> Merge:
    if len(set(edit.segments)) < len(edit.segments):
        raise EditError(f"--merge {','.join(map(str, edit.segments))} names a segment twice; a segment cannot merge "
                        "with itself: pass two or more different ids")
    nodes = [layout.leaf(sid, "merge") for sid in edit.segments]
    target = nodes[0]
    if edit.name:
        _unique_name(layout, edit.name, target.segment_id)
        target.fields.update(name=edit.name.strip(), named_by="person", iab_id="", iab_path="")
        target.set_by("name")
    for node in nodes[1:]:
        layout.leaves[layout.leaves == node.segment_id] = target.segment_id
        del layout.nodes[node.segment_id]
        layout.retired.add(node.segment_id)
    target.set_by("members")
    _drop_empty_parents(layout)
    return edit


def _drop_empty_parents(layout: Layout) -> None:
    """A parent left with no child (its leaves merged into another family's) goes too."""
    while True:
        has_child = {n.parent_id for n in layout.nodes.values()}
        empty = [sid for sid, n in layout.nodes.items() if n.level > 0 and sid not in has_child]
        if not empty:
            return
        for sid in empty:
            del layout.nodes[sid]
            layout.retired.add(sid)


def _split(layout: Layout, edit: Split) -> Split:
    node = layout.leaf(edit.segment, "split")
    members = layout.members(node.segment_id)
    members = members[layout.vectors[members].any(axis=1)]
    need = edit.parts * layout.min_size
    if len(members) < need:
        raise EditError(f"segment {node.segment_id} ({node.fields['name']}) has {len(members)} users: too small to split "
                        f"into {edit.parts} parts of at least {layout.min_size}; split a segment of {need} or more")
    from sklearn.cluster import KMeans

    parts = KMeans(n_clusters=edit.parts, n_init=10, random_state=layout.seed).fit_predict(layout.vectors[members])
    sizes = np.bincount(parts, minlength=edit.parts)
    if sizes.min() < layout.min_size:
        raise EditError(f"segment {node.segment_id} ({node.fields['name']}) does not split into {edit.parts} parts of "
                        f"at least {layout.min_size} users (the parts found: {', '.join(map(str, sorted(sizes, reverse=True)))}); "
                        "ask for fewer parts")
    order = np.argsort(-sizes, kind="stable")
    wanted = list(edit.ids[1:]) if len(edit.ids) == edit.parts else []
    ids = [node.segment_id]
    for rank in range(1, edit.parts):
        # an id recorded by an earlier application is taken again when it is free here
        free = wanted[rank - 1] if wanted and wanted[rank - 1] not in layout.nodes and wanted[rank - 1] not in ids else None
        ids.append(free if free is not None else max(layout.next_id(), max(ids) + 1))
        layout.nodes[ids[-1]] = Node(ids[-1], 0, node.parent_id, {**node.fields, "named_by": "fallback"},
                                     ["members"], fresh=True)
    for rank, part in enumerate(order):
        layout.leaves[members[parts == part]] = ids[rank]
    node.set_by("members")
    return edit.model_copy(update={"ids": ids})


def _move(layout: Layout, edit: Move) -> None:
    target = layout.leaf(edit.segment, "move users to")
    index = {u: i for i, u in enumerate(layout.user_ids)}
    unknown = [u for u in edit.users if u not in index]
    if unknown:
        raise EditError(f"{len(unknown)} of the users to move are not in the run (e.g. {unknown[0]!r}); "
                        "list user ids from its users.csv")
    rows = np.array([index[u] for u in edit.users])
    empty = [u for u, r in zip(edit.users, rows, strict=True) if layout.assigned_by[r] == "unsegmented"]
    if empty:
        raise EditError(f"user {empty[0]!r} has no tags and no usable text, so no place among segments; "
                        "leave it out of the users file")
    sources = set(layout.leaves[rows].tolist()) - {target.segment_id, -1}
    for sid in sources:
        if np.all(np.isin(layout.members(sid), rows)):
            raise EditError(f"moving these users would leave segment {sid} ({layout.nodes[sid].fields['name']}) empty; "
                            f"merge it instead (--merge {target.segment_id},{sid})")
    layout.leaves[rows] = target.segment_id
    layout.assigned_by[rows] = "person"
    target.set_by("members")


def membership_edits(edits: list[Edit]) -> list[Edit]:
    return [e for e in edits if isinstance(e, (Merge, Split, Move))]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
