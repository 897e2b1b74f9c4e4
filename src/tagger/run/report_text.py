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
        f"{counts['unsegmented']} unsegmented; wall time {result.summary['wall_time_s']:.0f} s"
    )
    if result.out is not None:
        console.print(f"wrote {result.out}/ (users, segments, tags.jsonl, run.json)")
