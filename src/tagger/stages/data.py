"""Load comments (CSV, Parquet, JSONL) and build one budgeted document per user."""

from __future__ import annotations

import codecs
import csv
import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tagger.errors import InputError
from tagger.schemas import UserDocument

FORMATS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
# A single comment longer than this is cut before tokenising: nothing past it could fit the
# context anyway, and a 5 MB comment must not cost 5 MB of tokenizer work.
MAX_COMMENT_CHARS = 2000

_BREAKS = re.compile(r"<\s*br\s*/?\s*>|</\s*p\s*>|<\s*p\s*>", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]{1,200}>")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Columns:
    user: str = "user_id"
    text: str = "text"
    time: str | None = None
    item: str | None = None

    def required(self) -> list[tuple[str, str]]:
        pairs = [("--user-col", self.user), ("--text-col", self.text)]
        pairs += [(opt, col) for opt, col in (("--time-col", self.time), ("--item-col", self.item)) if col]
        return pairs


@dataclass
class LoadStats:
    rows: int = 0
    empty_text_rows: int = 0
    duplicate_comments: int = 0
    users: int = 0
    comments_cut_by_budget: int = 0
    notes: list[str] = field(default_factory=list)


def clean_text(raw: object) -> str:
    """Turn HTML breaks and tags into spaces, unescape entities, collapse whitespace."""
    if raw is None or (isinstance(raw, float) and pd.isna(raw)):
        return ""
    text = str(raw)[: MAX_COMMENT_CHARS * 4]
    text = _BREAKS.sub(" ", text)
    text = html.unescape(_TAGS.sub(" ", text))
    return _SPACE.sub(" ", text).strip()[:MAX_COMMENT_CHARS]


def read_table(path: Path, columns: Columns, encoding: str = "utf-8") -> pd.DataFrame:
    """Read the file with every needed column as text; raise InputError with the fix otherwise."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input file not found: {path}; check the path")
    if path.is_dir():
        raise InputError(f"{path} is a folder; pass a CSV, Parquet or JSONL file")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputError(
            f"cannot read '{path.suffix or path.name}' files: {path}; "
            f"use one of {', '.join(sorted(FORMATS))}"
        )
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty; pass a file with a header and one row per comment")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InputError(f"unknown encoding '{encoding}'; pass a codec name to --encoding, e.g. utf-8, latin-1, gb18030") from None
    try:
        frame = _read(path, kind, encoding)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path} is not valid {encoding} (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); re-save it as UTF-8 or pass --encoding (e.g. --encoding gb18030)"
        ) from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot parse {path} as {kind}: {first}; check the file's format") from None
    if frame.empty:
        raise InputError(f"{path} has a header but no rows; add one row per comment")
    present = [str(c) for c in frame.columns]
    duplicated = sorted({c for c in present if present.count(c) > 1})
    if duplicated:
        raise InputError(f"{path} has duplicate column names: {', '.join(duplicated)}; rename them")
    for option, name in columns.required():
        if name not in present:
            raise InputError(
                f"column '{name}' not found in {path}; columns present: {', '.join(present)}; "
                f"pass {option} NAME"
            )
    return frame


def _read(path: Path, kind: str, encoding: str) -> pd.DataFrame:
    if kind == "parquet":
        return pd.read_parquet(path)
    if kind == "jsonl":
        with path.open(encoding=encoding) as handle:
            return pd.read_json(handle, lines=True, dtype=False)
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(encoding=encoding, newline="") as handle:
        header = next(csv.reader(handle, delimiter=sep), [])
    if header:  # a byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name
        header[0] = header[0].removeprefix("\ufeff")
    # pandas silently renames repeated headers to 'x.1'; keep the originals to report them.
    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding=encoding)
    if len(header) == len(frame.columns):
        frame.columns = header
    return frame


def build_documents(
    frame: pd.DataFrame,
    columns: Columns,
    count_tokens: Callable[[Sequence[str]], list[int]],
    token_budget: int,
    stats: LoadStats | None = None,
) -> list[UserDocument]:
    """Clean, dedupe and order each user's comments (newest first) and cut them to the budget.

    Users are returned sorted by id so a run does not depend on row order.
    """
    stats = stats or LoadStats()
    stats.rows = len(frame)
    data = pd.DataFrame({
        "user": frame[columns.user].map(_as_id),
        "text": frame[columns.text].map(clean_text),
    })
    if columns.item:
        data["item"] = frame[columns.item].map(lambda v: clean_text(v)[:120])
    if columns.time:
        data["time"] = _parse_time(frame[columns.time])
    keep = (data["text"] != "") & (data["user"] != "")
    stats.empty_text_rows = int((~keep).sum())
    data = data[keep]
    if data.empty:
        raise InputError(
            f"no row has both a user id in '{columns.user}' and text in '{columns.text}'; "
            "check --user-col and --text-col"
        )
    sort_cols, ascending = ["user"], [True]
    if columns.time:
        sort_cols, ascending = ["user", "time"], [True, False]
    data = data.sort_values(sort_cols, ascending=ascending, kind="stable")
    before = len(data)
    data = data.drop_duplicates(["user", "text"], keep="first")
    stats.duplicate_comments = before - len(data)

    documents = []
    for user_id, group in data.groupby("user", sort=True):
        texts = group["text"].tolist()
        kept = _fit_budget(texts, count_tokens, token_budget)
        stats.comments_cut_by_budget += len(texts) - len(kept)
        items = [i for i in group["item"].tolist() if i] if columns.item else []
        documents.append(UserDocument(user_id=user_id, comments=kept, items=items, n_comments=len(texts)))
    stats.users = len(documents)
    return documents


def _fit_budget(texts: list[str], count_tokens, budget: int) -> list[str]:
    # Count only what could fit: a user with 100k comments costs a few tokenizer calls.
    kept, used = [], 0
    for start in range(0, len(texts), 16):
        chunk = texts[start : start + 16]
        for text, n in zip(chunk, count_tokens(chunk), strict=True):
            if used + n > budget:
                if not kept:  # the newest comment alone is too long: keep its head
                    share = max(1, int(len(text) * budget / max(n, 1) * 0.9))
                    kept.append(text[:share])
                return kept
            kept.append(text)
            used += n
    return kept


def _as_id(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _parse_time(series: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(series, errors="coerce")
    if numeric.notna().mean() > 0.9:
        return numeric.fillna(float("-inf"))
    parsed = pd.to_datetime(series, errors="coerce", utc=True, format="mixed")
    return parsed.map(lambda t: t.timestamp() if not pd.isna(t) else float("-inf"))
