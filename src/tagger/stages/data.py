"""Load comments (CSV, Parquet, JSONL) and build one document per user holding everything they wrote.

Nothing here is cut to the LLM's token budget: every kept comment is embedded and yields
candidate phrases; only the tagging prompt is budgeted (`tagger.stages.excerpts`).
"""

from __future__ import annotations

import codecs
import csv
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from tagger.errors import InputError
from tagger.schemas import UserDocument
from tagger.stages.forum import drop_repeated_signatures, strip_quoted
from tagger.text import CJK, HANGUL

FORMATS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
# A single comment longer than this is cut (and counted): ~3,500 words, longer than nearly any
# post, review or message, while a pasted 5 MB log must not cost 5 MB of encoder work.
MAX_COMMENT_CHARS = 20_000

_BREAKS = re.compile(r"<\s*br\s*/?\s*>|</\s*p\s*>|<\s*p\s*>", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]{1,200}>")
_SPACE = re.compile(r"\s+")
# What makes text usable for segmenting: a word of two or more letters, or one Han, kana or
# hangul character. Comments like "12345", "3.5", "!!!" or only emoji hold nothing to place a user by.
_USABLE = re.compile(rf"[^\W\d_]{{2}}|[{CJK}{HANGUL}]")
NO_USABLE_TEXT = "no usable text: the comments hold no word of 2+ letters and no CJK character"
# Joins the strings of a list-valued text cell; ';' ends a phrase, so no candidate phrase spans two.
LIST_JOINER = "; "


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
    """Every input row lands in exactly one of the ROW_REASONS counts; they add up to `rows`."""

    rows: int = 0
    missing_user_id_rows: int = 0
    empty_text_rows: int = 0
    quoted_only_rows: int = 0
    duplicate_comments: int = 0
    beyond_max_users_rows: int = 0
    beyond_max_comments_rows: int = 0
    comments_kept: int = 0
    users: int = 0
    users_beyond_max_users: int = 0
    rows_without_time: int = 0
    # Not row fates: parts of kept comments that were not the user's own words, and long comments cut.
    quoted_pieces_dropped: int = 0
    signatures_dropped: int = 0
    comments_cut_at_max_chars: int = 0
    notes: list[str] = field(default_factory=list)

    ROW_REASONS = ("missing_user_id_rows", "empty_text_rows", "quoted_only_rows", "duplicate_comments",
                   "beyond_max_users_rows", "beyond_max_comments_rows", "comments_kept")
    TEXT_COUNTS = ("quoted_pieces_dropped", "signatures_dropped", "comments_cut_at_max_chars")

    def row_reasons(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.ROW_REASONS}

    def text_counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.TEXT_COUNTS}


def has_usable_text(text: str) -> bool:
    """The one rule for "this user wrote something we can segment on" (segment and assign)."""
    return _USABLE.search(text) is not None


class Cleaned(NamedTuple):
    text: str
    quoted: int = 0  # pieces quoted from others that were dropped
    cut: bool = False  # longer than MAX_COMMENT_CHARS


def clean_text(raw: object, keep_quotes: bool = True) -> str:
    """Turn HTML breaks and tags into spaces, unescape entities, collapse whitespace; without
    `keep_quotes`, text quoted from others is dropped first (`clean_comment`)."""
    return clean_comment(raw, keep_quotes).text


def clean_comment(raw: object, keep_quotes: bool = False) -> Cleaned:
    """Quotes are found on lines, so they go before the whitespace is collapsed; HTML breaks
    count as line ends for that."""
    if raw is None or (isinstance(raw, float) and pd.isna(raw)):
        return Cleaned("")
    text = str(raw)[: MAX_COMMENT_CHARS * 4]
    text = _BREAKS.sub("\n", text)
    text = html.unescape(_TAGS.sub(" ", text))
    dropped = 0
    if not keep_quotes:
        text, dropped = strip_quoted(text)
    text = _SPACE.sub(" ", text).strip()
    return Cleaned(text[:MAX_COMMENT_CHARS], dropped, len(text) > MAX_COMMENT_CHARS)


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
                + (_separator_hint(present[0]) if kind == "csv" and len(present) == 1 else f"pass {option} NAME")
            )
    return check_column_types(frame, columns, str(path))


def _separator_hint(header: str) -> str:
    # Excel in many locales saves "CSV" separated by ';'; the whole header then reads as one column.
    for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "'|'")):
        if sep in header:
            return f"the file looks separated by {name}, not commas; save it as comma-separated CSV (or .tsv for tabs)"
    return "pass --user-col NAME and --text-col NAME"


def check_column_types(frame: pd.DataFrame, columns: Columns, origin: str) -> pd.DataFrame:
    """Refuse a text column of numbers, binary, nested objects or lists of non-strings, and
    nested user ids, with the fix; a text cell holding a list of strings is joined with LIST_JOINER."""
    text = frame[columns.text]
    if _only_numbers(text):
        raise InputError(f"column '{columns.text}' of {origin} holds only numbers ({text.dtype}), not comments; "
                         "pass --text-col with the column holding the comments' text")
    if not isinstance(text.dtype, pd.StringDtype):  # a string column (every CSV) needs no look inside
        kinds = text.map(_value_kind)
        if (kinds == "list").any():
            joined = text.map(lambda v: LIST_JOINER.join(v) if _value_kind(v) == "list" else v)
            frame = frame.assign(**{columns.text: joined})
            kinds = kinds.where(kinds != "list", "text")
        _refuse_kinds(kinds, columns.text, origin, "comment text", {"bytes", "nested list", "object"})
    ids = frame[columns.user]
    if not (isinstance(ids.dtype, pd.StringDtype) or pd.api.types.is_numeric_dtype(ids)):
        _refuse_kinds(ids.map(_value_kind), columns.user, origin, "user id",
                      {"nested list", "object", "list"})
    return frame


# kind of value → (what the column holds, what to do)
_PROBLEMS = {
    "bytes": ("binary values (bytes)", "store the text as a string column, decoded as UTF-8"),
    "object": ("nested objects (struct/dict)",
               "flatten them (e.g. pandas.json_normalize) and pass the text field's column with --text-col"),
    "nested list": ("lists of non-text values", "keep one string, or a list of strings, per row"),
    "list": ("lists", "keep one id per row"),
}


def _refuse_kinds(kinds: pd.Series, name: str, origin: str, role: str, refused: set[str]) -> None:
    bad = kinds.isin(refused).to_numpy()
    if bad.any():
        first = int(bad.argmax())
        what, fix = _PROBLEMS[kinds.iloc[first]]
        raise InputError(f"column '{name}' of {origin} holds {what} in {int(bad.sum())} of {len(kinds)} rows "
                         f"(first at data row {first + 1}), not one {role} per row; {fix}")


def _value_kind(value: object) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)) or getattr(value, "ndim", 0) == 1:
        return "list" if all(isinstance(v, str) for v in value) else "nested list"
    return "text"


def _only_numbers(text: pd.Series) -> bool:
    """A text column of nothing but numbers (typed, or every value of a CSV column) is a rating or an id."""
    values = text.dropna()
    if pd.api.types.is_numeric_dtype(text) or pd.api.types.is_bool_dtype(text):
        return len(values) > 0
    if not isinstance(text.dtype, pd.StringDtype) and not values.map(lambda v: isinstance(v, str)).all():
        return False
    values = values.str.strip()
    values = values[values != ""]

    def numeric(part: pd.Series) -> bool:
        return bool(pd.to_numeric(part, errors="coerce").notna().all())

    # the first rows settle it for any real comment column, without parsing a million rows
    return len(values) > 0 and numeric(values.head(1000)) and numeric(values)


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
    stats: LoadStats | None = None,
    *,
    max_users: int | None = None,
    max_comments: int | None = None,
    keep_quotes: bool = False,
) -> list[UserDocument]:
    """Clean, dedupe and order each user's comments (newest first); every comment is kept,
    or the newest `max_comments` of each user.

    Users are returned sorted by id so a run does not depend on row order; with `max_users`
    only the first that many. `stats` gets every row's fate (LoadStats.ROW_REASONS).
    """
    stats = stats or LoadStats()
    stats.rows = len(frame)
    cleaned = [clean_comment(v, keep_quotes) for v in frame[columns.text].tolist()]
    data = pd.DataFrame({
        "user": frame[columns.user].map(_as_id).to_numpy(),
        "text": [c.text for c in cleaned],
        "quoted": np.fromiter((c.quoted for c in cleaned), np.int64, len(cleaned)),
        "cut": np.fromiter((c.cut for c in cleaned), bool, len(cleaned)),
    })
    del cleaned
    if columns.item:
        data["item"] = frame[columns.item].map(lambda v: clean_text(v)[:120]).to_numpy()
    if columns.time:
        data["time"] = _parse_time(frame[columns.time]).to_numpy()
    data = _drop_rows_without_id_or_text(data, columns, stats)
    if columns.time:
        stats.rows_without_time = int((data["time"] == float("-inf")).sum())
        if stats.rows_without_time == len(data):
            example = _first_value(frame[columns.time])
            raise InputError(f"no value in --time-col '{columns.time}' is a date or a number"
                             + (f" (e.g. {example!r})" if example != "" else "")
                             + "; pass a timestamp column or leave --time-col out")
    sort_cols, ascending = ["user"], [True]
    if columns.time:
        sort_cols, ascending = ["user", "time"], [True, False]
    data = data.sort_values(sort_cols, ascending=ascending, kind="stable")
    before = len(data)
    data = data.drop_duplicates(["user", "text"], keep="first")
    stats.duplicate_comments = before - len(data)

    documents = []
    for user_id, group in data.groupby("user", sort=True):
        if max_users is not None and len(documents) >= max_users:
            stats.users_beyond_max_users += 1
            stats.beyond_max_users_rows += len(group)
            continue
        written = len(group)
        if max_comments is not None and len(group) > max_comments:
            stats.beyond_max_comments_rows += len(group) - max_comments
            group = group.iloc[:max_comments]
        texts = group["text"].tolist()
        if not keep_quotes:
            texts, stripped = drop_repeated_signatures(texts)
            stats.signatures_dropped += stripped
        stats.quoted_pieces_dropped += int(group["quoted"].sum())
        stats.comments_cut_at_max_chars += int(group["cut"].sum())
        stats.comments_kept += len(texts)
        items = [i for i in group["item"].tolist() if i] if columns.item else []
        documents.append(UserDocument(user_id=user_id, comments=texts, items=items, n_comments=written))
    stats.users = len(documents)
    return documents


def _drop_rows_without_id_or_text(data: pd.DataFrame, columns: Columns, stats: LoadStats) -> pd.DataFrame:
    # A row with neither counts as missing its user id: that is what a reader checks first.
    no_id = data["user"] == ""
    no_text = ~no_id & (data["text"] == "")
    only_quotes = no_text & (data["quoted"] > 0)
    stats.missing_user_id_rows, stats.quoted_only_rows = int(no_id.sum()), int(only_quotes.sum())
    stats.empty_text_rows = int(no_text.sum()) - stats.quoted_only_rows
    if no_id.all():
        raise InputError(f"every row's user id in '{columns.user}' is empty; pass --user-col with the column "
                         "holding who wrote each comment")
    data = data[~no_id & ~no_text]
    if data.empty and stats.quoted_only_rows:
        raise InputError(f"every comment with a user id is text quoted from others ({stats.quoted_only_rows} rows); "
                         "pass --keep-quotes to use quoted text")
    if data.empty:
        raise InputError(
            f"no row has both a user id in '{columns.user}' and text in '{columns.text}'; "
            "check --user-col and --text-col"
        )
    return data


def _first_value(series: pd.Series) -> object:
    values = series.dropna()
    values = values[values.astype(str).str.strip() != ""]
    return values.iloc[0] if len(values) else ""


def _as_id(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def to_datetime(values: pd.Series) -> pd.Series:
    """UTC timestamps (NaT where none) from numbers (seconds, ms, us or ns since 1970, told by the
    column's magnitude) when nearly all values are numbers, else from date strings of any format."""
    numeric = _as_numbers(values)
    if numeric is None:
        return _from_strings(values)
    scale = numeric.abs().median()
    unit = "ns" if scale > 1e17 else "us" if scale > 1e14 else "ms" if scale > 1e11 else "s"
    return pd.to_datetime(numeric, unit=unit, errors="coerce", utc=True)


def _parse_time(series: pd.Series) -> pd.Series:
    """A sort key per value (seconds since 1970 for dates), -inf where the value is no time."""
    numeric = _as_numbers(series)
    if numeric is not None:  # numbers sort the same in any unit, including past what datetime64 holds
        return numeric.fillna(float("-inf"))
    return _from_strings(series).map(lambda t: t.timestamp() if not pd.isna(t) else float("-inf"))


def _as_numbers(values: pd.Series) -> pd.Series | None:
    """The values as numbers (NaN where not) when more than 90 % are, else None: a time column of
    epoch numbers with a few stray cells, not a column of date strings."""
    numeric = pd.to_numeric(values, errors="coerce")
    return numeric if numeric.notna().mean() > 0.9 else None


def _from_strings(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
