from __future__ import annotations

import pandas as pd
import pytest

from tagger.stages.data import Columns, LoadStats, build_documents, clean_text, read_table
from tagger.errors import InputError
from tagger.llm.models import word_counter


def test_clean_text_removes_html_breaks_and_entities():
    assert clean_text("Great<br />really &amp; truly<br>  good\n\n") == "Great really & truly good"
    assert clean_text(None) == "" and clean_text(float("nan")) == ""


def test_documents_are_deduped_newest_first_and_budgeted():
    frame = pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u1", "u2"],
        "text": ["old comment", "new comment", "new comment", "middle " * 50, "hello there"],
        "ts": ["1", "3", "3", "2", "1"],
    })
    stats = LoadStats()
    docs = build_documents(frame, Columns(time="ts"), word_counter, token_budget=30, stats=stats)
    assert [d.user_id for d in docs] == ["u1", "u2"]
    assert docs[0].comments[0] == "new comment"  # newest first
    assert "old comment" not in docs[0].comments  # the long middle one filled the budget
    assert stats.duplicate_comments == 1 and stats.comments_cut_by_budget >= 1
    assert docs[0].n_comments == 3


def test_a_single_comment_over_budget_keeps_its_head():
    frame = pd.DataFrame({"user_id": ["u"], "text": ["word " * 1000]})
    docs = build_documents(frame, Columns(), word_counter, token_budget=50)
    assert 0 < len(docs[0].comments[0]) < 400


def test_numeric_user_ids_are_kept_as_text(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("user_id,text\n007,hi there\n7,hello\n")
    frame = read_table(path, Columns())
    docs = build_documents(frame, Columns(), word_counter, 100)
    assert sorted(d.user_id for d in docs) == ["007", "7"]


def test_csv_with_embedded_newlines_and_quotes(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('user_id,text\nu1,"line one\nline ""two"""\n', encoding="utf-8")
    docs = build_documents(read_table(path, Columns()), Columns(), word_counter, 100)
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
        build_documents(frame, Columns(), word_counter, 100)
