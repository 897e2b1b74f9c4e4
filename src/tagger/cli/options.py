"""Options several commands share, declared once so their names and meaning cannot drift."""

from __future__ import annotations

import click


def input_options(default_note: str | None = None):
    """--user-col/--text-col/--time-col/--item-col/--encoding/--max-users.

    `default_note` replaces each option's default in its help (e.g. "as in the run").
    """
    def note(default: str) -> str:
        return f" [{default_note or default}]" if (default_note or default) else ""

    options = [
        click.option("--user-col", help="column with the user id" + note("user_id")),
        click.option("--text-col", help="column with the comment text" + note("text")),
        click.option("--time-col", help="timestamp column: newest comments are kept first" + note("")),
        click.option("--item-col", help="item/product column: segments list their top items" + note("")),
        click.option("--encoding", help="text encoding of a CSV/JSONL file" + note("utf-8")),
        click.option("--max-users", type=int, help="only the first N users (by id)" + note("all")),
        click.option("--max-comments-per-user", type=int,
                     help="read only each user's newest N comments (by --time-col, else file order)" + note("all")),
        click.option("--keep-quotes/--drop-quotes", default=None,
                     help="keep text quoted from others ('>' lines, 'X writes:' attributions), which is dropped "
                          "by default" + note("drop")),
    ]

    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command

    return apply


def verbose_option(command):
    """--verbose: what vLLM, torch and transformers print (warnings, info lines, the engine
    processes' output) also reaches the terminal; by default only errors do (tagger.logs)."""
    return click.option("--verbose", is_flag=True,
                        help="also show the LLM engine's and libraries' own warnings and info lines "
                             "(TAGGER_LOG=debug: their debug lines too)")(command)
