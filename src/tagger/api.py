"""The Python API for notebooks: the CLI's commands as functions that take and return DataFrames.

    import tagger
    seg = tagger.segment_users(df, user_col="author", text_col="body")
    seg.segments            # one row per segment of every level: name, description, size, share, level, parent_id...
    seg.users               # one row per user: segment, strength, tags, x/y for a map
    seg.tags                # one row per (user, tag) with its evidence quote
    seg.segment("dog owners"), seg.user("u42")      # like `tagger show --segment/--user --json`
    seg = seg.edit(rename={4: "audiophiles"}); seg = seg.undo()   # like `tagger edit` (a run folder)
    tagger.segment_users(df_june, out="runs/june", like="runs/may")  # May's ids and names carry over
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tagger.run.load import Run, load_run, segment_detail, segment_overview, user_detail
from tagger.run.rename import rename_run
from tagger.summary import RunSummary


@dataclass
class Segmentation:
    """A finished segmentation: `users`, `segments` and `tags` DataFrames plus run.json's `summary`."""

    users: pd.DataFrame
    segments: pd.DataFrame
    tags: pd.DataFrame
    summary: RunSummary
    out: Path | None = None
    _run: Run = field(repr=False, default=None)  # type: ignore[assignment]

    def overview(self) -> list[dict[str, Any]]:
        """Like `tagger show RUN_DIR --json`."""
        return segment_overview(self._run)

    def segment(self, ref: str | int, sample: int = 5) -> dict[str, Any]:
        """One segment by id or name: description, strongest members with evidence, why they belong."""
        return segment_detail(self._run, ref, sample)

    def user(self, user_id: str) -> dict[str, Any]:
        """One user's tags with evidence, segment and membership strength."""
        return user_detail(self._run, user_id)

    def report_html(self) -> str:
        """The self-contained HTML report as a string (e.g. for IPython.display.HTML)."""
        from tagger.run.report_html import render_report

        return render_report(self._run)

    def write_report(self, path: Path | str) -> Path:
        path = Path(path)
        path.write_text(self.report_html(), encoding="utf-8")
        return path

    def edit(self, *, rename: dict[int, str] | None = None, describe: dict[int, str] | None = None,
             merge: list[tuple] | None = None, split: dict[int, int] | list[int] | None = None,
             move: dict[int, list[str]] | None = None, llm=None) -> Segmentation:
        """Like `tagger edit`: hand edits of the run folder's segments, kept by every later command.

        `rename={4: "audiophiles"}`, `describe={4: "People who ..."}`, `merge=[(3, 5), (6, 7, "name")]`
        (into the first), `split={4: 2}` or `split=[4]` (2 parts), `move={4: ["u1", "u2"]}` (users into
        segment 4). They apply in that order: merges, splits, moves, renames, descriptions. Returns
        the edited run; this Segmentation is left as it was."""
        from tagger.lifecycle.edits import Describe, Merge, Move, Rename, Split
        from tagger.run.edit import edit_run

        parts = split if isinstance(split, dict) else {sid: 2 for sid in split or []}
        edits = [*(Merge(segments=[int(i) for i in m if not isinstance(i, str)],
                         name=next((i for i in m if isinstance(i, str)), None)) for m in merge or []),
                 *(Split(segment=int(sid), parts=int(n)) for sid, n in parts.items()),
                 *(Move(users=[str(u) for u in users], segment=int(sid)) for sid, users in (move or {}).items()),
                 *(Rename(segment=int(sid), name=name) for sid, name in (rename or {}).items()),
                 *(Describe(segment=int(sid), text=text) for sid, text in (describe or {}).items())]
        return Segmentation.from_run(edit_run(self._folder("edit"), edits, engine=llm).run)

    def undo(self, *, llm=None) -> Segmentation:
        """Like `tagger edit --undo`: the run folder without its last edit."""
        from tagger.run.edit import edit_run

        return Segmentation.from_run(edit_run(self._folder("undo"), undo=True, engine=llm).run)

    def _folder(self, what: str) -> Path:
        if self.out is None:
            from tagger.errors import ConfigError

            raise ConfigError(f"{what} changes a run folder; pass out= to segment_users (or open one with open_run)")
        return self.out

    @classmethod
    def from_run(cls, run: Run, written: bool = True) -> Segmentation:
        return cls(run.users, run.segments, _tags_frame(run), run.summary, run.path if written else None, run)


def segment_users(
    data: pd.DataFrame | str | Path,
    *,
    out: Path | str | None = None,
    force: bool = False,
    report: bool = True,
    llm=None,
    encoder=None,
    **options: Any,
) -> Segmentation:
    """Run the pipeline on a DataFrame (one row per comment) or a file, like `tagger segment`.

    `options` are RunConfig's settings: user_col ("user_id"), text_col ("text"), time_col,
    item_col, engine ("vllm"), model, embedder, tag_mode, prompts, tag_weight, min_segment_size,
    doc_tokens, max_users, seed, like (an earlier run whose segment ids, names and hand edits
    carry over, as `tagger segment --like`), ... With `out`, the run folder is written
    as by the CLI. Pass `llm` (an engine) or `encoder` to reuse models already loaded.
    """
    from tagger.config import make_config
    from tagger.run.segment import segment

    config = make_config(**options)
    source = data if isinstance(data, pd.DataFrame) else Path(data)
    result = segment(source, config, out=Path(out) if out is not None else None, force=force,
                     engine=llm, encoder=encoder, report=report)
    if result.out is not None:
        return Segmentation.from_run(load_run(result.out))
    run = Run(Path("."), result.summary, result.users, result.segments,
              {u.user_id: u for u in result.tagged_users})
    return Segmentation.from_run(run, written=False)


def open_run(run_dir: Path | str) -> Segmentation:
    """A run folder written by `tagger segment` (or `segment_users(..., out=...)`)."""
    return Segmentation.from_run(load_run(run_dir))


def rename_segments(run_dir: Path | str, prompts: Path | str | None = None, *, llm=None) -> Segmentation:
    """Like `tagger rename`: re-run naming only (e.g. after editing name.toml) and rewrite the folder."""
    return Segmentation.from_run(rename_run(run_dir, prompts, engine=llm))


def recut_segments(run_dir: Path | str, segments: int | None = None, *, levels: int | None = None,
                   parents: int | None = None, out: Path | str | None = None, force: bool = False,
                   llm=None) -> Segmentation:
    """Like `tagger recut`: cut the run's tree again to `segments` leaves (None: the consensus's
    own) and `parents` parents (None: the run's) and name them, without tagging or embedding; in
    place, or into `out`."""
    from tagger.run.recut import recut_run

    return Segmentation.from_run(recut_run(run_dir, segments, levels=levels, parents=parents, out=out, force=force,
                                          engine=llm))


def _tags_frame(run: Run) -> pd.DataFrame:
    rows = [{"user_id": user.user_id, "tag": tag.tag, "evidence": tag.evidence}
            for user in run.tagged_users.values() for tag in user.tags]
    return pd.DataFrame(rows, columns=["user_id", "tag", "evidence"])
