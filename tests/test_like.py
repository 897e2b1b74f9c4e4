"""`tagger segment NEW --like OLD`: segments that continue OLD's keep OLD's ids and names; new ones
take ids above OLD's largest; vanished ones are listed; without --like nothing changes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import tagger
from tagger.cli import main

FAST = ["--engine", "fake", "--embedder", "hash", "--no-report", "--quiet"]
COOKING = ["cooking pasta with fresh basil", "cooking stew in a cast iron pot", "cooking rice the slow way"]


def segment(capsys, source, out, *extra):
    code = main(["segment", str(source), "--out", str(out), *FAST, *extra])
    out_text, err = capsys.readouterr()
    assert code == 0, err
    return out


def groups(run_dir) -> dict[str, int]:
    users = pd.read_parquet(run_dir / "users.parquet")
    ids = users.groupby(users["user_id"].str.split("-").str[0])["segment_id"].unique()
    assert all(len(found) == 1 for found in ids), ids
    return {topic: int(found[0]) for topic, found in ids.items()}


def names(run_dir) -> dict[int, str]:
    frame = pd.read_parquet(run_dir / "segments.parquet")
    return dict(zip(frame["segment_id"].astype(int), frame["name"], strict=True))


def test_without_like_a_run_numbers_its_own_segments(comments_csv, tmp_path, capsys):
    run = segment(capsys, comments_csv, tmp_path / "run")
    summary = json.loads((run / "run.json").read_text())
    assert "lineage" not in summary and "edits" not in summary and summary["config"]["like"] is None
    leaves = pd.read_parquet(run / "segments.parquet").query("level == 0")["segment_id"]
    assert sorted(leaves) == list(range(len(leaves)))


def test_the_same_data_like_itself_keeps_every_id_and_name(comments_csv, tmp_path, capsys):
    old = segment(capsys, comments_csv, tmp_path / "old")
    (old / "segments.parquet").write_bytes((old / "segments.parquet").read_bytes())
    new = segment(capsys, comments_csv, tmp_path / "new", "--like", old)
    assert groups(new) == groups(old) and names(new) == names(old)
    lineage = json.loads((new / "run.json").read_text())["lineage"]
    assert lineage["like"] == str(old) and lineage["new"] == lineage["vanished"] == []
    assert {m["segment_id"] for m in lineage["matched"]} == set(names(old))
    assert all(m["overlap"] == 1.0 and m["centroid_similarity"] > 0.99 for m in lineage["matched"])


def test_new_segments_get_new_ids_and_vanished_ones_are_listed(comments_csv, tmp_path, capsys):
    old = segment(capsys, comments_csv, tmp_path / "old")
    frame = pd.read_csv(comments_csv)
    cooks = pd.DataFrame([{"user_id": f"cook-{u}", "text": f"{text} {'!' * u}", "ts": 1000, "item": "pot"}
                          for u in range(4) for text in COOKING])
    changed = tmp_path / "changed.csv"
    pd.concat([frame[~frame["user_id"].str.startswith("dog")], cooks]).to_csv(changed, index=False)
    new = segment(capsys, changed, tmp_path / "new", "--like", old)
    before, after = groups(old), groups(new)
    assert after["guitar"] == before["guitar"] and after["baking"] == before["baking"]
    assert names(new)[after["guitar"]] == names(old)[before["guitar"]]
    assert after["cook"] > max(names(old))  # above every id OLD used, its parents' included
    lineage = json.loads((new / "run.json").read_text())["lineage"]
    assert before["dog"] in {v["segment_id"] for v in lineage["vanished"]}
    assert after["cook"] in {s["segment_id"] for s in lineage["new"]}


def test_like_takes_the_names_old_shows_now(comments_csv, tmp_path, capsys):
    old = segment(capsys, comments_csv, tmp_path / "old")
    guitar = groups(old)["guitar"]
    table = pd.read_parquet(old / "segments.parquet")
    table.loc[table["segment_id"] == guitar, "name"] = "string players"  # as a rename would leave it
    table.to_parquet(old / "segments.parquet", index=False)
    new = segment(capsys, comments_csv, tmp_path / "new", "--like", old)
    assert names(new)[groups(new)["guitar"]] == "string players"


def test_like_refuses_an_earlier_run_of_another_embedder(comments_csv, tmp_path, capsys):
    old = segment(capsys, comments_csv, tmp_path / "old")
    manifest = old / "model" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "embedder": "minilm"}))
    code = main(["segment", str(comments_csv), "--out", str(tmp_path / "new"), *FAST, "--like", str(old)])
    err = capsys.readouterr().err
    assert code == 2 and "embedder 'minilm'" in err and "--embedder minilm" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()


def test_like_refuses_a_folder_without_a_model_before_tagging(comments_csv, tmp_path, capsys):
    code = main(["segment", str(comments_csv), "--out", str(tmp_path / "new"), *FAST, "--like", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "no saved segment model" in err and not (tmp_path / "new").exists()


def test_the_api_segments_like_an_earlier_run(comments_csv, tmp_path):
    frame = pd.read_csv(comments_csv)
    old = tagger.segment_users(frame, engine="fake", embedder="hash", out=tmp_path / "old", report=False)
    new = tagger.segment_users(frame[frame["user_id"] != "dog-3"], engine="fake", embedder="hash",
                               out=tmp_path / "new", report=False, like=tmp_path / "old")
    assert new.summary.lineage.like == str(tmp_path / "old")
    kept = new.users.merge(old.users, on="user_id", suffixes=("", "_old"))
    assert (kept["segment_id"] == kept["segment_id_old"]).mean() == pytest.approx(1.0)
    assert (kept["segment_name"] == kept["segment_name_old"]).all()
