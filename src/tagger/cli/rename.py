"""`tagger rename RUN_DIR [--prompts DIR]`"""

from __future__ import annotations

from pathlib import Path

import click

from tagger.cli.options import verbose_option


@click.command("rename")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--prompts", type=click.Path(path_type=Path), help="folder whose name.toml overrides the built-in [TAGGER_PROMPTS, else the run's]")
@verbose_option
def command(run_dir, prompts, verbose) -> None:
    """Re-run only segment naming (e.g. after editing name.toml), reusing the run's tags and clusters.

    Rewrites the segment and user tables, run.json and report.html in RUN_DIR.
    """
    from tagger import logs

    logs.configure(verbose)  # before the libraries are imported
    from tagger.run.load import load_run, segment_overview
    from tagger.run.rename import rename_run

    before = {s["segment_id"]: s["name"] for s in segment_overview(load_run(run_dir), level=None)}
    run = rename_run(run_dir, prompts)
    for row in segment_overview(run, level=None):
        old = before.get(row["segment_id"], "")
        change = f"  (was: {old})" if old != row["name"] else "  (unchanged)"
        click.echo(f"{row['segment_id']:>3}  {row['name']}{change}")
    cache = run.summary.renamed.cache
    click.echo(f"renamed {len(run.segments)} segments in {run.path} ({cache.hits} cached answers, {cache.misses} new)")
