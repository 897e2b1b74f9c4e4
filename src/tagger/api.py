"""The Python API for notebooks: the CLI's commands as functions that take and return DataFrames.

    import tagger
    seg = tagger.segment_users(df, user_col="author", text_col="body")
    seg.segments            # one row per segment of every level: name, description, size, share, level, parent_id...
    seg.users               # one row per user: segment, strength, tags, x/y for a map
    seg.tags                # one row per (user, tag) with its evidence quote
    seg.segment("dog owners"), seg.user("u42")      # like `tagger show --segment/--user --json`
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
    doc_tokens, max_users, seed, ... With `out`, the run folder is written
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
