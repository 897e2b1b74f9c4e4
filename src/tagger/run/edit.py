"""`tagger edit RUN`: a person's edits of a finished run's segments (`tagger.lifecycle.edits`),
applied to its tables, saved model and report, and recorded in `RUN/edits.jsonl` and
`RUN/model/edits.jsonl`. The folder is rebuilt aside and swapped in at once: a bad edit leaves
the run as it was. No LLM is asked (a new segment takes the best-ranked name of its phrases).

The segments as they were before the first edit are kept in `RUN/model/base/` (users' segments
and the segments table): `--undo` replays every edit but the last on them, `recut` and
`segment --like` match their new segments to them and replay the edits there."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tagger.lifecycle.edits import (BASE_DIR, EDITS_FILE, Edit, EditError, Layout, apply, describe_edit,
                                    edits_to_text, membership_edits, replay, run_edits)
from tagger.lifecycle.rebuild import Rebuilt, SavedRun, rebuild
from tagger.lifecycle.recut_data import RECUT_DIR, load_recut_data
from tagger.lifecycle.segment_model import MODEL_DIR, load_model, save_model
from tagger.pipeline import public_profile
from tagger.run.context import RunContext, naming_encoder, run_config
from tagger.run.folder import RUN_MARKER, RunFolder
from tagger.run.load import Run, load_run
from tagger.run.report_html import write_report
from tagger.stages.naming import NamingSettings
from tagger.summary import EditsApplied, RunSummary, write_summary

# Files that describe the segments as clustered: a change of members makes them stale.
STALE_FILES = ("stability.parquet", "stability.csv", "segment_shares.parquet", "segment_shares.csv")
BASE_COLUMNS = ["user_id", "segment_id", "assigned_by"]


@dataclass
class EditResult:
    run: Run
    applied: list[Edit]  # what this command did (for --undo: nothing)
    undone: Edit | None = None


def saved_run(run: Run) -> SavedRun:
    """What a rebuild of `run` reads: its tables, tags, model, recut data and settings."""
    model = load_model(run.path)
    data = load_recut_data(run.path, len(run.users))
    tagged = [run.tagged_users[u] for u in run.users["user_id"].astype(str)]
    return SavedRun(run.users, run.segments, tagged, model, data, run_config(run.path, run.summary), run.summary.language)


def base_tables(run_dir: Path, saved: SavedRun) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The users' segments and the segments table as they were before the run's first edit (the
    run's own tables while it has none)."""
    folder = Path(run_dir) / MODEL_DIR / BASE_DIR
    if not (folder / "segments.parquet").exists():
        return saved.users, saved.segments
    base_users = pd.read_parquet(folder / "users.parquet")
    users = saved.users.drop(columns=["segment_id", "assigned_by"]).merge(base_users, on="user_id", how="left")
    if users["segment_id"].isna().any():
        raise EditError(f"{folder} does not hold every user of the run; it was edited by hand: rerun `tagger segment`")
    users["segment_id"] = users["segment_id"].astype(int)
    return users, pd.read_parquet(folder / "segments.parquet")


def edit_run(path: Path | str, edits: list[Edit] = (), *, undo: bool = False, engine=None, encoder=None) -> EditResult:
    """Apply `edits` in order to RUN (or, with `undo`, take its last edit back) and rewrite it."""
    run = load_run(path)
    saved = saved_run(run)
    held = run_edits(run.path, saved.model.edits)
    undone = None
    if undo:
        if not held:
            raise EditError(f"{run.path} holds no edit to undo")
        undone = held[-1]
        layout, kept, skipped = replay(saved.layout(*base_tables(run.path, saved)), held[:-1])
        if skipped:  # they applied before, on the same segments: only a hand-edited folder gets here
            raise EditError(f"the edits of {run.path} no longer replay ({skipped[0]['edit']}: {skipped[0]['why']}); "
                            "rerun `tagger segment`")
        _keep_current_fields(layout, saved.layout())
        applied, all_edits = [], kept
    else:
        if not edits:
            raise EditError("no edit given; pass --rename, --describe, --merge, --split, --move or --undo")
        layout, applied = saved.layout(), []
        for edit in edits:
            layout, done = apply(layout, edit)
            applied.append(done)
        all_edits = [*held, *applied]
    config = saved.config
    with RunContext(config, engine=engine) as ctx:
        rebuilt = rebuild(saved, layout, encoder=naming_encoder(saved.model, encoder, ctx),
                          settings=NamingSettings.from_config(config, language=saved.language))
    summary = _summary(run.summary, rebuilt, all_edits, [])
    write_edited(run, saved, rebuilt, all_edits, summary)
    return EditResult(load_run(run.path), applied, undone)


def _keep_current_fields(layout: Layout, current: Layout) -> None:
    """After a replay, a segment whose members did not change keeps its fields as the run shows
    them now (a `tagger rename` after the edits), unless a person set them in the replay."""
    for sid, node in layout.nodes.items():
        now = current.nodes.get(sid)
        if now is None or node.level != now.level:
            continue
        if node.level == 0 and not (set(layout.members(sid).tolist()) == set(current.members(sid).tolist())):
            continue
        for key in ("name", "description"):
            if key not in node.person and key not in now.person:
                node.fields[key] = now.fields[key]
                if key == "name":
                    node.fields.update(named_by=now.fields["named_by"], iab_id=now.fields["iab_id"],
                                       iab_path=now.fields["iab_path"])


def _summary(summary: RunSummary, rebuilt: Rebuilt, edits: list[Edit], not_applying: list[dict]) -> RunSummary:
    segments = rebuilt.segments
    out = summary.model_copy(deep=True)
    out.counts.segments = int((segments["level"] == 0).sum())
    out.counts.parent_segments = int((segments["level"] == 1).sum())
    out.counts.segments_named_by_llm = int((segments["named_by"] == "llm").sum())
    out.counts.users_in_clusters = int((rebuilt.users["assigned_by"] == "cluster").sum())
    out.tree = rebuilt.tree
    out.edits = EditsApplied(applied=len(edits), not_applying=not_applying) if edits or not_applying else None
    if membership_edits(edits):
        out.stability = out.over_time = None  # they describe the segments as clustered
    return out


def write_edited(run: Run, saved: SavedRun, rebuilt: Rebuilt, edits: list[Edit], summary: RunSummary,
                 out: Path | None = None, force: bool = True, base: tuple[pd.DataFrame, pd.DataFrame] | None = None,
                 drop: tuple[str, ...] = ()) -> None:
    """The run folder with the rebuilt tables and model, built aside and swapped in at once (in
    place, or into `out`). `base`: the tables before the edits (default: the run's base, or its
    own tables at its first edit); a run without edits keeps no base. `drop`: files of the run not
    to carry over."""
    target = Path(out) if out is not None else run.path
    stale = (*drop, *(STALE_FILES if membership_edits(edits) else ()))
    base = base or base_tables(run.path, saved)
    folder = RunFolder(target, force=force or target.resolve() == run.path.resolve())
    try:
        for item in run.path.iterdir():
            if item.is_file() and item.name not in (RUN_MARKER, "report.html", EDITS_FILE, *stale):
                shutil.copy2(item, folder.path(item.name))
        folder.write_table("users", rebuilt.users)
        folder.write_table("segments", rebuilt.segments)
        folder.write_json("segment_profiles.json", [public_profile(p, saved.config.k_anonymity) for p in rebuilt.profiles])
        rebuilt.model.edits = [e.model_dump(mode="json") for e in edits]
        save_model(rebuilt.model, folder.path(MODEL_DIR))
        shutil.copytree(run.path / MODEL_DIR / RECUT_DIR, folder.path(MODEL_DIR) / RECUT_DIR)
        write_edits(folder.tmp, edits, base)
        write_summary(folder.tmp, summary)
        if (run.path / "report.html").exists():
            write_report(folder.tmp, folder.path("report.html"))
        folder.commit()
    finally:
        folder.abandon()


def write_edits(folder: Path, edits: list[Edit], base: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """FOLDER/edits.jsonl and the tables before the edits in FOLDER/model/base (a run being built
    aside; its model, saved with the same edits, is already there). Nothing without edits."""
    if not edits:
        return
    (Path(folder) / EDITS_FILE).write_text(edits_to_text(edits), encoding="utf-8")
    base_dir = Path(folder) / MODEL_DIR / BASE_DIR
    base_dir.mkdir()
    base[0][BASE_COLUMNS].to_parquet(base_dir / "users.parquet", index=False)
    base[1].to_parquet(base_dir / "segments.parquet", index=False)


def applied_lines(result: EditResult) -> list[str]:
    """What the command did, a line each (the CLI prints them)."""
    if result.undone is not None:
        return [f"undid: {describe_edit(result.undone)}"]
    return [describe_edit(e) for e in result.applied]
