"""`tagger assign RUN_DIR new_comments.csv --out DIR`"""

from __future__ import annotations

from pathlib import Path

import click

from tagger.cli.options import input_options, verbose_option


@click.command("assign")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("source", metavar="FILE")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="folder to write the assigned users into")
@click.option("--force", is_flag=True, help="replace an existing output folder")
@input_options("as in the run")
@click.option("--base-url", envvar="TAGGER_BASE_URL", help="server URL for --engine openai runs")
@click.option("--api-key", envvar="TAGGER_API_KEY", help="key for --engine openai runs (never written)")
@click.option("--llm", is_flag=True, help="tag the users with the run's LLM and place them by tags and text "
              "(default: the run's distilled placer, from their text alone, no LLM)")
@click.option("--no-cache", is_flag=True, help="do not read or write the LLM answer cache")
@click.option("--quiet", is_flag=True, help="no progress output (bars on a terminal, plain lines otherwise)")
@verbose_option
def command(run_dir, source, out, force, llm, no_cache, quiet, verbose, **options) -> None:
    """Place the users in FILE in the segments of RUN_DIR without re-clustering.

    By default the run's distilled placer puts each user in a segment from their text alone:
    no LLM starts. With --llm, users are tagged with the run's engine, model, prompt and
    settings (answers already in the cache cost nothing) and join the segment whose members
    they sit among; a user who fits no segment gets segment "none". FILE may be 'demo'.
    """
    from tagger import logs

    logs.configure(verbose)  # before the libraries are imported
    from rich.console import Console

    from tagger.run.assign import assign
    from tagger.paths import demo_file
    from tagger.progress import make_reporter
    from tagger.run.report_text import rows_line

    if no_cache:
        options["cache"] = False
    if source == "demo":
        source = str(demo_file())
    reporter = make_reporter(quiet=quiet)
    try:
        result = assign(run_dir, Path(source), out=out, force=force, reporter=reporter, llm=llm, **options)
    finally:
        reporter.close()
    console = Console()
    counts, agreement = result.summary["counts"], result.summary["agreement"]
    console.print(f"placed {counts['placed']}/{counts['users']} users ({counts['none']} in no segment; "
                  + ", ".join(f"{k} {v}" for k, v in counts["by"].items()) + ")")
    if rows_line(counts):
        console.print(rows_line(counts))
    for name, size in result.summary["segment_sizes"].items():
        console.print(f"  {size:6d}  {name}")
    if result.summary.get("parent_sizes"):
        console.print("by parent segment:")
        for name, size in result.summary["parent_sizes"].items():
            console.print(f"  {size:6d}  {name}")
    if agreement:
        split = "; ".join(f"{k}: {v['same_segment']:.1%} of {v['users']}" for k, v in agreement.items() if isinstance(v, dict))
        parent = f", {agreement['same_parent']:.1%} their original parent" if "same_parent" in agreement else ""
        console.print(f"{agreement['users']} users were in the run: {agreement['same_segment']:.1%} got their "
                      f"original segment ({split}){parent}")
    console.print(f"wrote {result.out}/ (users, tags.jsonl, assign.json)")
