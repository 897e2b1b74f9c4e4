from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import tagger
from tagger.errors import InputError


@pytest.fixture
def frame(comments_csv) -> pd.DataFrame:
    return pd.read_csv(comments_csv).rename(columns={"user_id": "author", "text": "body"})


def test_segment_users_from_a_dataframe_returns_dataframes(frame):
    seg = tagger.segment_users(frame, user_col="author", text_col="body", item_col="item", engine="fake", embedder="hash")
    assert isinstance(seg, tagger.Segmentation) and seg.out is None
    assert len(seg.users) == frame["author"].nunique() == seg.segments["size"].sum()
    assert set(seg.users.columns) >= {"user_id", "segment_id", "segment_name", "strength", "tags", "x", "y"}
    assert set(seg.segments.columns) >= {"segment_id", "name", "description", "size", "share", "top_tags", "top_items"}
    assert list(seg.tags.columns) == ["user_id", "tag", "evidence"]
    assert len(seg.tags) == seg.users["tags"].map(len).sum()
    first = seg.segments.iloc[0]
    detail = seg.segment(first["name"])
    assert detail["segment_id"] == first.segment_id and detail["members"]
    user = seg.users.iloc[0]
    assert seg.user(user.user_id)["segment_name"] == user.segment_name
    assert all(name in seg.report_html() for name in seg.segments["name"].str.replace("&", "&amp;"))


def test_out_writes_the_same_run_folder_as_the_cli(frame, tmp_path):
    seg = tagger.segment_users(frame, user_col="author", text_col="body", engine="fake", embedder="hash",
                               out=tmp_path / "run")
    assert (tmp_path / "run" / "report.html").exists() and seg.out == tmp_path / "run"
    again = tagger.open_run(tmp_path / "run")
    assert again.segments["name"].tolist() == seg.segments["name"].tolist()
    assert again.overview()[0]["name"] == seg.segments["name"].iloc[0]
    renamed = tagger.rename_segments(tmp_path / "run")
    assert renamed.segments["name"].tolist() == seg.segments["name"].tolist()
    assert renamed.summary.renamed.cache.misses == 0
    leaves = int((seg.segments["level"] == 0).sum())
    recut = tagger.recut_segments(tmp_path / "run", leaves, parents=2, out=tmp_path / "recut")
    assert recut.summary.tree.parents_asked == 2 and recut.summary.tree.per_level[0] == leaves
    # the cut makes 2 parents; naming keeps those a name speaks for, the rest are counted as not named
    made = int((recut.segments["level"] == 1).sum())
    assert made + recut.summary.tree.parents_not_named == (2 if leaves > 2 else 0)


def test_missing_column_is_an_input_error(frame):
    with pytest.raises(InputError, match="column 'user_id' not in the DataFrame"):
        tagger.segment_users(frame, engine="fake", embedder="hash")


def test_import_tagger_stays_light():
    code = "import sys, tagger; heavy = [m for m in ('pandas', 'numpy', 'torch', 'vllm') if m in sys.modules]; print(heavy)"
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == "[]"
