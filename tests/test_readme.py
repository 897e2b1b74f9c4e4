"""Every `tagger …` command line shown in README.md (and docs/how-it-works.md) still parses:
its subcommand exists, `tagger <sub> --help` exits 0, and each option it uses is one the
subcommand has."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from tagger.cli import cli, main

REPO = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/how-it-works.md")


def command_lines(text: str) -> list[str]:
    """The `tagger …` commands in the shell code blocks of a Markdown text."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|\|\||;|\|", " ".join(shlex.split(line, comments=True))):
                words = shlex.split(part)
                while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value prefixes
                    words.pop(0)
                if words and Path(words[0]).name == "tagger":
                    commands.append(shlex.join(["tagger", *words[1:]]))
    return commands


COMMANDS = [(doc, line) for doc in DOCS for line in command_lines((REPO / doc).read_text(encoding="utf-8"))]


def resolve(args: list[str]) -> tuple[list[str], click.Command]:
    """The subcommand path (`["prompts", "render"]`) and the click command it names."""
    command: click.Command = cli
    path: list[str] = []
    for word in args:
        if word.startswith("-") or not isinstance(command, click.Group):
            break
        sub = command.get_command(click.Context(command), word)
        assert sub is not None, f"no subcommand {' '.join([*path, word])!r}"
        command, path = sub, [*path, word]
    return path, command


def test_the_readme_shows_every_subcommand():
    shown = {resolve(shlex.split(line)[1:])[0][0] for doc, line in COMMANDS if doc == "README.md"}
    assert shown == set(cli.list_commands(click.Context(cli)))


def test_command_line_extraction():
    text = "```bash\nbash x && .venv/bin/tagger segment demo --out r  # note\nA=1 tagger show r \\\n  --json\n```\n"
    assert command_lines(text) == ["tagger segment demo --out r", "tagger show r --json"]


@pytest.mark.parametrize("doc,line", COMMANDS, ids=[line for _, line in COMMANDS])
def test_command_line_parses(doc, line, capsys):
    args = shlex.split(line)[1:]
    path, command = resolve(args)
    assert path, f"{doc}: `{line}` names no subcommand"
    assert main([*path, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"Usage: tagger {' '.join(path)}")
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    used = {word.split("=")[0] for word in args if word.startswith("-")}
    assert used <= known | {"--help", "-h"}, f"{doc}: `{line}` uses {sorted(used - known)}"
