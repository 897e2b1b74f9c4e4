"""`tagger drift OLD_RUN NEW_RUN`"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


@click.command("drift")
@click.argument("old_run", type=click.Path(path_type=Path))
@click.argument("new_run", type=click.Path(path_type=Path))
@click.option("--min-similarity", type=float, default=0.5, show_default=True,
              help="centroid cosine (relative to the mean user) below which two segments are not the same")
@click.option("--json", "as_json", is_flag=True, help="print the comparison as JSON")
def command(old_run, new_run, min_similarity, as_json) -> None:
    """Match the segments of two runs by centroid and list matched, moved, new and vanished ones.

    Matched segments keep the old run's id (stable_id); new ones get ids after the old maximum.
    When both runs have parent segments, the parents are matched the same way (a second table).
    """
    from rich.console import Console

    from tagger.lifecycle.drift import drift

    report = drift(old_run, new_run, min_similarity=min_similarity)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    console = Console()
    users = f"({report['old_users']} → {report['new_users']} users)"
    _print_section(console, report, f"{len(report['matched'])} matched segments {users}", "")
    if "parents" in report:
        parents = report["parents"]
        _print_section(console, parents, f"{len(parents['matched'])} matched parent segments {users}", "parent ")


def _print_section(console, section: dict[str, Any], title: str, kind: str) -> None:
    """One table of matched nodes, then a line per new and per vanished one."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("id", "old name", "new name", "similarity", "share", "change", ""):
        table.add_column(column)
    for m in section["matched"]:
        table.add_row(str(m["stable_id"]), m["old_name"], m["new_name"], f"{m['similarity']:.3f}",
                      f"{m['old_share']:.0%} → {m['new_share']:.0%}", f"{m['share_change']:+.1%}", "moved" if m["moved"] else "")
    console.print(table)
    for s in section["new"]:
        console.print(f"new {kind}{s['stable_id']}: {s['name']} ({s['size']} users, {s['share']:.0%}; closest old: "
                      f"{s['closest_old']} at {s['closest_similarity']})")
    for s in section["vanished"]:
        console.print(f"vanished {kind}{s['old_id']}: {s['name']} ({s['size']} users, {s['share']:.0%})")
