"""`tagger drift OLD_RUN NEW_RUN`"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from tagger.lifecycle.drift import CONFIDENCE, MIN_CHANGE, REPLICATES


@click.command("drift")
@click.argument("old_run", type=click.Path(path_type=Path))
@click.argument("new_run", type=click.Path(path_type=Path))
@click.option("--min-change", type=float, default=MIN_CHANGE, show_default=True,
              help="smallest share change (0..1) reported as moved, however certain")
@click.option("--confidence", type=click.FloatRange(0.5, 0.9999), default=CONFIDENCE, show_default=True,
              help="confidence of the intervals, over all segments of a level together")
@click.option("--replicates", type=click.IntRange(50, 10_000), default=REPLICATES, show_default=True,
              help="bootstrap draws of the users")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the bootstrap draws")
@click.option("--json", "as_json", is_flag=True, help="print the comparison as JSON")
def command(old_run, new_run, min_change, confidence, replicates, seed, as_json) -> None:
    """What changed between two runs of the same embedder, beyond the noise of drawing users.

    Both runs' users are placed by OLD's model (per OLD segment: old share, new share, interval
    of the change, verdict same / moved / vanished) and by NEW's model (a NEW segment OLD's users
    do not fill and OLD's model places poorly is new). Parents are compared the same way.
    """
    from rich.console import Console

    from tagger.lifecycle.drift import drift

    report = drift(old_run, new_run, seed=seed, replicates=replicates, confidence=confidence, min_change=min_change)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    console = Console()
    users = f"{report['old_users']} → {report['new_users']} users, {report['shared_users']} in both"
    _print_section(console, report, f"{len(report['segments'])} segments of {Path(old_run).name} ({users})", "")
    if "parents" in report:
        _print_section(console, report["parents"], f"{len(report['parents']['segments'])} parent segments", "parent ")


def _print_section(console, section: dict[str, Any], title: str, kind: str) -> None:
    """One row per OLD segment, then a line per new segment."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("id", "segment", "old share", "new share", "change (interval)", "verdict", "continued by"):
        table.add_column(column)
    for r in section["segments"]:
        low, high = r["interval"]
        follower = f"{r['new_id']} {r['new_name']}" if r["new_id"] is not None else "-"
        table.add_row(str(r["segment_id"]), r["name"], f"{r['old_share']:.1%}", f"{r['new_share']:.1%}",
                      f"{r['change']:+.1%} ({low:+.1%} .. {high:+.1%})", r["verdict"], follower)
    console.print(table)
    for s in section["new"]:
        console.print(f"new {kind}{s['segment_id']}: {s['name']} ({s['share']:.1%} of new users, {s['old_share']:.1%} "
                      f"of old ones; {s['placed_poorly']:.0%} placed poorly by the old model; closest old: "
                      f"{s['closest_old']})", markup=False)
    changed = len(section["moved"]) + len(section["new"]) + len(section["vanished"])
    if not changed:
        console.print(f"no {kind}segment moved, appeared or vanished beyond the noise", markup=False)
