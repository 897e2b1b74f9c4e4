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
    dropped = dropped_rows(counts)
    if dropped:
        console.print(f"read {counts['rows']} rows, used {counts.get('comments_kept', '?')} comments; "
                      f"not used: {dropped}")
    if result.out is not None:
        console.print(f"wrote {result.out}/ (users, segments, tags.jsonl, run.json)")


ROW_LABELS = {"missing_user_id_rows": "without user id", "empty_text_rows": "with empty text",
              "duplicate_comments": "duplicate comments", "beyond_max_users_rows": "of users beyond --max-users",
              "comments_cut_by_budget": "cut by the --doc-tokens budget"}


def dropped_rows(counts: dict) -> str:
    """'3 no user id, 2 empty text' for the reasons with rows; '' when every row was used."""
    return ", ".join(f"{counts[key]} {label}" for key, label in ROW_LABELS.items() if counts.get(key))


def _no_content(counts: dict) -> str:
    n = counts.get("unsegmented_no_content", 0)
    return f" ({n} with no tags and no usable text)" if n else ""
