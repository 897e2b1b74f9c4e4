"""The terminal summary printed at the end of `tagger segment`."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_segments(result, console: Console | None = None) -> None:
    console = console or Console()
    counts = result.summary["counts"]
    table = Table(title=f"{counts['segments']} segments of {counts['users']} users")
    for column, justify in (("id", "right"), ("segment", "left"), ("users", "right"), ("share", "right"), ("top tags", "left")):
        table.add_column(column, justify=justify)
    for row in result.segments.itertuples():
        table.add_row(str(row.segment_id), row.name, str(row.size), f"{row.share:.0%}", ", ".join(row.top_tags[:4]))
    console.print(table)
    console.print(
        f"tagged {counts['tagged']}/{counts['users']} users ({counts['failed']} failed), "
        f"{counts['noise_assigned_to_nearest']} noise users joined their nearest segment, "
        f"{counts['unsegmented']} unsegmented{_no_content(counts)}; wall time {result.summary['wall_time_s']:.0f} s"
    )
    if rows_line(counts):
        console.print(rows_line(counts))
    if result.out is not None:
        console.print(f"wrote {result.out}/ (users, segments, tags.jsonl, run.json)")


ROW_LABELS = {"missing_user_id_rows": "without user id", "empty_text_rows": "with empty text",
              "duplicate_comments": "duplicate comments", "beyond_max_users_rows": "of users beyond --max-users",
              "comments_cut_by_budget": "cut by the --doc-tokens budget"}


def rows_line(counts: dict) -> str:
    """'read 9 rows, used 6 comments; not used: 2 without user id, 1 with empty text', or ''
    when every row was used (segment and assign print it)."""
    dropped = ", ".join(f"{counts[key]} {label}" for key, label in ROW_LABELS.items() if counts.get(key))
    if not dropped:
        return ""
    return f"read {counts['rows']} rows, used {counts['comments_kept']} comments; not used: {dropped}"


def _no_content(counts: dict) -> str:
    n = counts.get("unsegmented_no_content", 0)
    return f" ({n} with no tags and no usable text)" if n else ""
