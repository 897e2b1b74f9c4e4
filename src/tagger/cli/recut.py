"""`tagger recut RUN_DIR --segments N [--levels L] [--parents P] [--out DIR]`"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import click

from tagger.cli.options import verbose_option


@click.command("recut")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--segments", "n_segments", type=click.IntRange(min=1), help="leaf segments to cut [the consensus's own number]")
@click.option("--levels", type=click.IntRange(1, 3), help="levels of the tree: 1 flat, 2 with parents, 3 with grandparents [the run's]")
@click.option("--parents", type=click.IntRange(min=2), help="parents of the leaves: exactly P where there are more than P leaves [the run's]")
@click.option("--out", type=click.Path(path_type=Path), help="write the re-cut run here instead of replacing RUN_DIR")
@click.option("--force", is_flag=True, help="replace an existing --out folder")
@click.option("--quiet", is_flag=True, help="no progress output")
@verbose_option
def command(run_dir, n_segments, levels, parents, out, force, quiet, verbose) -> None:
    """Cut the run's segments again at another grain and re-run naming only.

    No tagging and no embedding: the run's saved user vectors are cut the way `tagger segment
    --segments N` cuts them; the LLM starts only for names the cache does not hold.
    """
    from tagger import logs

    logs.configure(verbose)  # before the libraries are imported
    from tagger.progress import make_reporter
    from tagger.run.recut import recut_run
    from tagger.run.report_text import print_segments

    reporter = make_reporter(quiet=quiet)
    try:
        run = recut_run(run_dir, n_segments, levels=levels, parents=parents, out=out, force=force, reporter=reporter)
    finally:
        reporter.close()
    print_segments(SimpleNamespace(summary=run.summary, segments=run.segments, out=run.path))
    tree, recut = run.summary.tree, run.summary.recut
    click.echo(f"recut {run.path} into {' + '.join(map(str, tree.per_level))} segments in {recut.wall_time_s:.1f} s "
               f"({recut.cache.hits} cached names, {recut.cache.misses} new)")
