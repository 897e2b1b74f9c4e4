"""`tagger` command line: thin wrappers that parse options, call the library, print, and map
every TaggerError to one line on stderr and a non-zero exit."""

from __future__ import annotations

import importlib
import os
import sys

import click

from tagger import __version__
from tagger.errors import TaggerError

# command name → module defining `command`; imported lazily so `tagger --help` stays fast.
COMMANDS = {
    "segment": "tagger.cli.segment",
    "assign": "tagger.cli.assign",
    "drift": "tagger.cli.drift",
    "edit": "tagger.cli.edit",
    "prompts": "tagger.cli.prompts_cmd",
    "show": "tagger.cli.show",
    "rename": "tagger.cli.rename",
    "recut": "tagger.cli.recut",
    "report": "tagger.cli.report",
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
    except OSError as exc:  # disk full, permission denied, a file vanished mid-run
        where = f" ({exc.filename})" if exc.filename else ""
        click.echo(f"error: {exc.strerror or exc}{where}; check free space and permissions, then run the same "
                   "command again (answers so far are cached)", err=True)
        return 74
    except MemoryError:
        click.echo("error: out of memory; lower --batch-size or --max-users, or use a machine with more memory", err=True)
        return 75
    except Exception as exc:  # a bug: still one line, with a way to get the traceback
        if os.environ.get("TAGGER_DEBUG"):
            raise
        click.echo(f"error: internal error ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                   "rerun with TAGGER_DEBUG=1 for the traceback and report it", err=True)
        return 70
    return 0


def run() -> None:
    sys.exit(main())
