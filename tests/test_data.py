from __future__ import annotations

import re

import pandas as pd
import pytest

from tagger.stages.data import MAX_COMMENT_CHARS, Columns, LoadStats, build_documents, clean_text, has_usable_text, read_table
from tagger.errors import InputError


def test_clean_text_removes_html_breaks_and_entities():
    assert clean_text("Great<br />really &amp; truly<br>  good\n\n") == "Great really & truly good"
    assert clean_text(None) == "" and clean_text(float("nan")) == ""


def test_documents_are_deduped_newest_first_and_keep_everything():
    frame = pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u1", "u2"],
        "text": ["old comment", "new comment", "new comment", "middle " * 50, "hello there"],
        "ts": ["1", "3", "3", "2", "1"],
    })
    stats = LoadStats()
    docs = build_documents(frame, Columns(time="ts"), stats)
    assert [d.user_id for d in docs] == ["u1", "u2"]
    assert docs[0].comments[0] == "new comment"  # newest first
    assert docs[0].comments[-1] == "old comment"  # no budget cuts what is read
    assert stats.duplicate_comments == 1 and stats.comments_kept == 4
    assert docs[0].n_comments == 3


def test_a_very_long_comment_is_cut_at_the_character_cap_and_counted():
    frame = pd.DataFrame({"user_id": ["u", "v"], "text": ["word " * 10_000, "short"]})
    stats = LoadStats()
    docs = build_documents(frame, Columns(), stats)
    assert len(docs[0].comments[0]) == MAX_COMMENT_CHARS and stats.comments_cut_at_max_chars == 1


def test_numeric_user_ids_are_kept_as_text(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("user_id,text\n007,hi there\n7,hello\n")
    frame = read_table(path, Columns())
    docs = build_documents(frame, Columns())
    assert sorted(d.user_id for d in docs) == ["007", "7"]


def test_csv_with_embedded_newlines_and_quotes(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('user_id,text\nu1,"line one\nline ""two"""\n', encoding="utf-8")
    docs = build_documents(read_table(path, Columns()), Columns())
    assert docs[0].comments == ['line one line "two"']


@pytest.mark.parametrize("suffix,writer", [
    (".parquet", lambda f, p: f.to_parquet(p)),
    (".jsonl", lambda f, p: f.to_json(p, orient="records", lines=True)),
])
def test_parquet_and_jsonl(tmp_path, suffix, writer):
    path = tmp_path / f"c{suffix}"
    writer(pd.DataFrame({"user_id": [1, 2], "text": ["a b", "c d"]}), path)
    assert len(read_table(path, Columns())) == 2


@pytest.mark.parametrize("content,expected", [
    (None, "input file not found"),
    (b"", "is empty"),
    (b"user_id,text\n", "no rows"),
    (b"user_id,body\nu,hi\n", "column 'text' not found"),
    (b"user_id,text,text\nu,a,b\n", "duplicate column names: text"),
    (b"user_id,text\nu,caf\xe9\n", "not valid utf-8"),
])
def test_bad_files_raise_one_clear_error(tmp_path, content, expected):
    path = tmp_path / "c.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=expected):
        read_table(path, Columns())


def test_unknown_column_lists_the_columns_present(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("uid,body\nu,hi\n")
    with pytest.raises(InputError) as err:
        read_table(path, Columns())
    assert "columns present: uid, body" in str(err.value) and "--user-col" in str(err.value)


def test_folder_and_unknown_format(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        read_table(tmp_path, Columns())
    other = tmp_path / "c.xlsx"
    other.write_text("x")
    with pytest.raises(InputError, match="cannot read '.xlsx'"):
        read_table(other, Columns())


def test_no_text_anywhere():
    frame = pd.DataFrame({"user_id": ["a", "b"], "text": ["", "   "]})
    with pytest.raises(InputError, match="no row has both"):
        build_documents(frame, Columns())


def every_kind_of_row() -> pd.DataFrame:
    """Rows whose fate is fixed by construction: each reason of LoadStats.ROW_REASONS at least once."""
    rows = [
        ("a", "guitar strings", "3"), ("a", "guitar picks", "2"),          # kept
        ("a", "guitar strings", "1"),                                     # duplicate (older copy)
        ("a", "middle " * 40, "1"),                                       # beyond max_comments=2
        ("", "I love dog food and dog toys", "1"), (None, None, "1"),     # no user id (text or not)
        ("b", "", "1"), ("b", "   ", "1"), ("b", "dog leash", "1"),       # two empty texts, one kept
        ("c", "beyond max users", "1"), ("c", "also beyond", "1"),        # user beyond max_users=2
    ]
    return pd.DataFrame(rows, columns=["user_id", "text", "ts"])


def test_every_row_is_counted_once_by_its_real_reason():
    stats = LoadStats()
    docs = build_documents(every_kind_of_row(), Columns(time="ts"), stats, max_users=2, max_comments=2)
    assert [d.user_id for d in docs] == ["a", "b"]
    assert stats.row_reasons() == {"missing_user_id_rows": 2, "empty_text_rows": 2, "quoted_only_rows": 0,
                                   "duplicate_comments": 1, "beyond_max_users_rows": 2,
                                   "beyond_max_comments_rows": 1, "comments_kept": 3}
    assert sum(stats.row_reasons().values()) == stats.rows == 11
    assert stats.users == 2 and stats.users_beyond_max_users == 1


@pytest.mark.parametrize("text,usable", [
    ("12345", False), ("3.5", False), ("!!! ???", False), ("🐕🐕🐕", False), ("a 1 b 2", False), ("", False),
    ("ok", True), ("5 stars", True), ("很好", True), ("好", True), ("собака", True), ("ギ", True), ("café", True),
])
def test_usable_text_rule(text, usable):
    assert has_usable_text(clean_text(text)) is usable


def write(frame: pd.DataFrame, path):
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_a_text_column_of_string_lists_is_joined(tmp_path, suffix):
    frame = pd.DataFrame({"user_id": ["u1", "u2"], "text": [["guitar strings", "new picks"], ["dog leash"]]})
    loaded = read_table(write(frame, tmp_path / f"c{suffix}"), Columns())
    docs = build_documents(loaded, Columns())
    assert [d.comments for d in docs] == [["guitar strings; new picks"], ["dog leash"]]


@pytest.mark.parametrize("suffix,values,message", [
    (".parquet", [b"guitar strings", b"dog leash"], "holds binary values (bytes) in 2 of 2 rows"),
    (".parquet", [{"body": "guitar"}, {"body": "dog"}], "holds nested objects (struct/dict)"),
    (".jsonl", [{"body": "guitar"}, "dog leash"], "holds nested objects (struct/dict) in 1 of 2 rows"),
    (".jsonl", [["guitar", 3], "dog leash"], "holds lists of non-text values"),
    (".parquet", [4, 5], "holds only numbers (int64)"),
    (".jsonl", [4.5, 3.0], "holds only numbers (float64)"),
])
def test_text_columns_of_other_types_are_refused_with_the_fix(tmp_path, suffix, values, message):
    path = write(pd.DataFrame({"user_id": ["u1", "u2"], "text": values}), tmp_path / f"c{suffix}")
    with pytest.raises(InputError, match=re.escape(message)) as err:
        read_table(path, Columns())
    assert "column 'text'" in str(err.value) and "\n" not in str(err.value)


def test_a_csv_text_column_of_numbers_is_refused(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("user_id,rating,text\nu1,5,great guitar\nu2,3.5,dog leash\n")
    with pytest.raises(InputError, match="column 'rating' of .* holds only numbers .* pass --text-col"):
        read_table(path, Columns(text="rating"))
    assert len(read_table(path, Columns())) == 2


def test_nested_user_ids_are_refused_mixed_ones_kept(tmp_path):
    path = write(pd.DataFrame({"user_id": [{"id": 1}, "u2"], "text": ["a b", "c d"]}), tmp_path / "c.jsonl")
    with pytest.raises(InputError, match="column 'user_id' .* nested objects"):
        read_table(path, Columns())
    path = write(pd.DataFrame({"user_id": [1, "u2", 2.0, None], "text": ["ab", "cd", "ef", "gh"]}), tmp_path / "d.jsonl")
    docs = build_documents(read_table(path, Columns()), Columns())
    assert [d.user_id for d in docs] == ["1", "2", "u2"]


def test_a_semicolon_separated_csv_gets_a_hint(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("user_id;text\nu1;guitar\n")
    with pytest.raises(InputError, match="looks separated by semicolons"):
        read_table(path, Columns())


def test_user_ids_all_missing():
    frame = pd.DataFrame({"user_id": [None, ""], "text": ["guitar strings", "dog leash"]})
    with pytest.raises(InputError, match="every row's user id in 'user_id' is empty"):
        build_documents(frame, Columns())


def test_time_column_without_a_single_date():
    frame = pd.DataFrame({"user_id": ["a", "b"], "text": ["guitar", "dog"], "ts": ["yesterday", "soon"]})
    with pytest.raises(InputError, match="no value in --time-col 'ts' is a date or a number \\(e.g. 'yesterday'\\)"):
        build_documents(frame, Columns(time="ts"))
    frame["ts"] = ["2021-01-02", "soon"]
    stats = LoadStats()
    build_documents(frame, Columns(time="ts"), stats)
    assert stats.rows_without_time == 1


def test_a_dataframe_passed_to_the_api_is_checked_like_a_file():
    from tagger.config import RunConfig
    from tagger.pipeline import read_input

    frame = pd.DataFrame({"user_id": ["u1", "u2"], "text": [b"guitar", b"dog"]})
    with pytest.raises(InputError, match="column 'text' of the DataFrame holds binary values"):
        read_input(frame, RunConfig(engine="fake"))
