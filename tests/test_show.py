from __future__ import annotations

import json

import pandas as pd
import pytest

from tagger.cli import main
from tagger.run.load import leaf_segments

FAST = ["--engine", "fake", "--embedder", "hash"]


@pytest.fixture
def run_dir(tmp_path, comments_csv):
    out = tmp_path / "run"
    assert main(["segment", str(comments_csv), "--out", str(out), "--item-col", "item", "--no-report", *FAST]) == 0
    return out


def show(capsys, *args):
    capsys.readouterr()
    code = main(["show", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_overview_lists_every_segment_with_size_share_tags_and_items(capsys, run_dir):
    segments = leaf_segments(pd.read_parquet(run_dir / "segments.parquet"))
    code, out, _ = show(capsys, run_dir)
    assert code == 0
    for row in segments.itertuples():
        assert f"{row.name}  ({row.size} users, {row.share:.0%})" in out
        assert ", ".join(row.top_tags[:3]) in out
    code, out, _ = show(capsys, run_dir, "--json")
    data = json.loads(out)
    assert [d["name"] for d in data] == segments["name"].tolist()
    assert sum(d["size"] for d in data) == 12 and all(d["top_items"] for d in data)


def test_segment_by_id_or_name_explains_membership(capsys, run_dir):
    segments = pd.read_parquet(run_dir / "segments.parquet")
    users = pd.read_parquet(run_dir / "users.parquet")
    first = segments.iloc[0]
    _, by_id, _ = show(capsys, run_dir, "--segment", first.segment_id, "--json")
    _, by_name, _ = show(capsys, run_dir, "--segment", first["name"].upper(), "--json")
    detail = json.loads(by_id)
    assert detail == json.loads(by_name)
    members = users[users.segment_id == first.segment_id]
    assert detail["description"] == first.description and detail["size"] == len(members)
    strengths = [m["strength"] for m in detail["members"]]
    assert strengths == sorted(strengths, reverse=True) and strengths[0] == members.strength.max()
    for member in detail["members"]:
        assert member["segment_id"] == first.segment_id and member["tags"]
        assert all(t["evidence"] for t in member["tags"])
        assert set(member["shared_with_segment"]) <= set(first.top_tags)
    code, text, _ = show(capsys, run_dir, "--segment", first.segment_id, "--sample", 2)
    assert code == 0 and first.description in text and "strength" in text
    assert detail["members"][0]["user_id"] in text and detail["members"][0]["tags"][0]["evidence"] in text


def test_user_shows_tags_evidence_and_segment(capsys, run_dir):
    users = pd.read_parquet(run_dir / "users.parquet")
    user = users.iloc[5]
    code, out, _ = show(capsys, run_dir, "--user", user.user_id, "--json")
    data = json.loads(out)
    assert code == 0 and data["segment_name"] == user.segment_name
    assert [t["tag"] for t in data["tags"]] == list(user.tags)
    code, text, _ = show(capsys, run_dir, "--user", user.user_id)
    assert user.segment_name in text and data["tags"][0]["evidence"] in text


@pytest.mark.parametrize("args,message", [
    (["--segment", "no such segment"], "no segment 'no such segment'"),
    (["--segment", "99"], "no segment '99'"),
    (["--user", "nobody"], "no user 'nobody'"),
])
def test_unknown_segment_or_user_is_one_line(capsys, run_dir, args, message):
    code, out, err = show(capsys, run_dir, *args)
    assert code == 2 and out == "" and err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1


def test_not_a_run_folder_is_one_line(capsys, tmp_path):
    code, _, err = show(capsys, tmp_path / "missing")
    assert code == 2 and err.startswith("error: run folder not found")
    (tmp_path / "empty").mkdir()
    code, _, err = show(capsys, tmp_path / "empty")
    assert code == 2 and "is not a tagger run folder (missing run.json" in err and len(err.strip().splitlines()) == 1
