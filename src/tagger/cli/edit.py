"""`tagger edit RUN_DIR [--rename ID=NAME] [--describe ID=TEXT] [--merge A,B[=NAME]] [--split ID[=N]]
[--move USERS_FILE=ID] [--undo]`"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("edit")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--rename", multiple=True, metavar="ID=NAME", help="give segment ID this name (a leaf or a parent)")
@click.option("--describe", multiple=True, metavar="ID=TEXT", help="give segment ID this description")
@click.option("--merge", multiple=True, metavar="A,B[=NAME]",
              help="merge leaf segments into the first (its id and name, or NAME)")
@click.option("--split", multiple=True, metavar="ID[=N]",
              help="split leaf segment ID into N parts [2] by its members' vectors; the largest keeps the id")
@click.option("--move", multiple=True, metavar="USERS_FILE=ID",
              help="move the users listed in USERS_FILE (one id a line, or a CSV with a user_id column) into leaf ID")
@click.option("--undo", is_flag=True, help="take the run's last edit back")
def command(run_dir, rename, describe, merge, split, move, undo) -> None:
    """Edit a run's segments by hand; every later command keeps the edits.

    Edits apply in this order: merges, splits, moves, renames, descriptions; each is recorded
    (what, when) in RUN_DIR/edits.jsonl and in the saved model. `assign` places new users in the
    edited segments, `rename` keeps the names and descriptions set here, `recut` and `segment
    --like` apply the edits again where their segments continue. `show` marks what a person set.
    """
    from tagger.errors import ConfigError
    from tagger.run.edit import applied_lines, edit_run

    given = any((rename, describe, merge, split, move))
    if undo and given:
        raise ConfigError("pass --undo alone: it takes back the last edit, not the ones given with it")
    edits = parse_edits(rename=rename, describe=describe, merge=merge, split=split, move=move)
    result = edit_run(run_dir, edits, undo=undo)
    for line in applied_lines(result):
        click.echo(line)
    held = result.run.summary.edits.applied if result.run.summary.edits else 0
    click.echo(f"{run_dir}: {held} edit{'s' if held != 1 else ''} held (edits.jsonl); "
               f"{int((result.run.segments['level'] == 0).sum())} segments")


def parse_edits(*, rename=(), describe=(), merge=(), split=(), move=()) -> list:
    """The options as edit records, in the order they apply."""
    from tagger.lifecycle.edits import Describe, Merge, Move, Rename, Split

    out: list = []
    for text in merge:
        ids, _, name = text.partition("=")
        out.append(Merge(segments=[_id(i, "--merge", "A,B[=NAME]") for i in ids.split(",")], name=name.strip() or None))
    for text in split:
        sid, _, parts = text.partition("=")
        out.append(Split(segment=_id(sid, "--split", "ID[=N]"), parts=_count(parts) if parts else 2))
    for text in move:
        path, sep, sid = text.rpartition("=")
        if not sep:
            raise _usage("--move", "USERS_FILE=ID", text)
        out.append(Move(users=read_users(Path(path)), segment=_id(sid, "--move", "USERS_FILE=ID"), source=path))
    for text in rename:
        sid, sep, name = text.partition("=")
        if not sep or not name.strip():
            raise _usage("--rename", "ID=NAME", text)
        out.append(_valid(Rename, "--rename", segment=_id(sid, "--rename", "ID=NAME"), name=name.strip()))
    for text in describe:
        sid, sep, body = text.partition("=")
        if not sep or not body.strip():
            raise _usage("--describe", "ID=TEXT", text)
        out.append(_valid(Describe, "--describe", segment=_id(sid, "--describe", "ID=TEXT"), text=body.strip()))
    return out


def read_users(path: Path) -> list[str]:
    """User ids from a file: one a line, or a CSV/TSV whose header has a user_id column."""
    from tagger.errors import InputError

    if not path.is_file():
        raise InputError(f"users file not found: {path}; pass a file with one user id a line")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if lines and "user_id" in [c.strip() for c in lines[0].replace("\t", ",").split(",")]:
        import pandas as pd

        users = pd.read_csv(path, sep=None, engine="python", dtype={"user_id": str})["user_id"].dropna().astype(str)
        lines = [u.strip() for u in users if u.strip()]
    if not lines:
        raise InputError(f"{path} lists no users; put one user id a line")
    return list(dict.fromkeys(lines))


def _id(text: str, option: str, form: str) -> int:
    text = text.strip()
    if not text.lstrip("-").isdigit():
        raise _usage(option, form, text)
    return int(text)


def _count(text: str) -> int:
    from tagger.errors import ConfigError

    if not text.strip().isdigit() or not 2 <= int(text) <= 20:
        raise ConfigError(f"--split ID=N takes a number of parts from 2 to 20, not {text!r}")
    return int(text)


def _valid(kind, option: str, **fields):
    from pydantic import ValidationError

    from tagger.errors import ConfigError

    try:
        return kind(**fields)
    except ValidationError as exc:
        raise ConfigError(f"{option}: {exc.errors()[0]['msg']}") from None


def _usage(option: str, form: str, text: str):
    from tagger.errors import ConfigError

    return ConfigError(f"{option} takes {form} (ids from `tagger show RUN`), not {text!r}")
