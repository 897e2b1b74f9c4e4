"""`tagger` command line: thin wrappers that parse options, call the library, print, and map
every TaggerError to one line on stderr and a non-zero exit."""

from __future__ import annotations

import importlib
import sys

import click

from tagger import __version__
from tagger.errors import TaggerError

# command name → module defining `command`; imported lazily so `tagger --help` stays fast.
COMMANDS = {
    "segment": "tagger.cli.segment",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        return importlib.import_module(COMMANDS[name]).command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tagger")
def cli() -> None:
    """Turn what users write into named user segments."""


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="tagger", standalone_mode=False)
    except TaggerError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("interrupted: answers received so far are cached; run the same command again to resume", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted: answers received so far are cached; run the same command again to resume", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return 0


def run() -> None:
    sys.exit(main())
