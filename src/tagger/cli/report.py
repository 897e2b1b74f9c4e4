"""`tagger report RUN_DIR [--out FILE]`"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="HTML file to write [RUN_DIR/report.html]")
def command(run_dir, out) -> None:
    """Write a self-contained HTML report (sizes, a map of users, segment cards) for a run folder."""
    from tagger.run.report_html import write_report

    click.echo(f"wrote {write_report(run_dir, out)}")
