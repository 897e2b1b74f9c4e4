"""The lasting parts of a run with a segment tree, end to end: stability per level, drift of
parents, and assign placing new users under their segment's parent.

The input holds two families of two topics; within a family the comments share most of their
words, so the four topics are the leaves and the two families their parents."""

from __future__ import annotations

import json

import pandas as pd

from tagger.cli import main
from tagger.schemas import NO_SEGMENT as NONE

FAMILIES = {
    "guitar": ["guitar strings for my music lessons", "guitar amplifier for music practice", "guitar picks for music class"],
    "piano": ["piano keys for my music lessons", "piano bench for music practice", "piano sheet for music class"],
    "dog": ["dog leash for my pet walks", "dog treats for pet training", "dog bed for pet naps"],
    "cat": ["cat litter for my pet walks", "cat toys for pet training", "cat tree for pet naps"],
}
FAMILY = {"guitar": "music", "piano": "music", "dog": "pets", "cat": "pets"}


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def families_run(tmp_path, levels=2, **settings):
    """(the comments file, the run folder) of a run cut into the four topics."""
    from tagger.config import make_config
    from tagger.run.segment import segment

    source = tmp_path / "families.csv"
    pd.DataFrame([{"user_id": f"{topic}-{u}", "text": f"{text} {'!' * u}"}
                  for topic, texts in FAMILIES.items() for u in range(4) for text in texts]).to_csv(source, index=False)
    out = tmp_path / f"run{levels}"
    segment(source, make_config(engine="fake", embedder="hash", n_segments=4, levels=levels, **settings), out=out,
            report=False)
    return source, out


def parent_by_family(run_dir) -> dict[str, int]:
    """Each family's parent id in the run; fails unless every family has one parent of its own."""
    users = pd.read_parquet(run_dir / "users.parquet")
    ids = users.groupby(users["user_id"].str.split("-").str[0].map(FAMILY))["parent_id"].unique()
    assert all(len(found) == 1 for found in ids), ids
    out = {family: int(found[0]) for family, found in ids.items()}
    assert len(set(out.values())) == 2 and min(out.values()) >= 4, out
    return out


def test_stability_in_run_json_has_each_level(tmp_path):
    _, run_dir = families_run(tmp_path, stability=3)
    parent_by_family(run_dir)
    summary = json.loads((run_dir / "run.json").read_text())["stability"]
    assert set(summary["levels"]) == {"0", "1"}
    for level, nodes in (("0", 4), ("1", 2)):
        figures = summary["levels"][level]
        assert set(figures) >= {"mean_ari", "min_ari"} and figures["segments_per_run"] == [nodes] * 3
    assert summary["levels"]["1"]["mean_ari"] == summary["levels"]["1"]["min_ari"] == 1.0
    assert summary["levels"]["0"]["mean_ari"] == summary["mean_ari"] == 1.0 and summary["segments_per_run"] == [4, 4, 4]


def test_stability_of_a_flat_run_has_no_levels(tmp_path):
    _, run_dir = families_run(tmp_path, levels=1, stability=3)
    summary = json.loads((run_dir / "run.json").read_text())["stability"]
    assert "levels" not in summary and summary["segments_per_run"] == [4, 4, 4]


def test_drift_of_a_run_against_itself_matches_its_parents(tmp_path, capsys):
    from tagger.lifecycle.drift import drift

    _, run_dir = families_run(tmp_path)
    families = parent_by_family(run_dir)
    report = drift(run_dir, run_dir)
    parents = report["parents"]
    assert sorted(m["old_id"] for m in parents["matched"]) == sorted(families.values())
    assert all(m["old_id"] == m["new_id"] and m["level"] == 1 and m["similarity"] == 1.0 for m in parents["matched"])
    assert all(r["old_share"] == r["new_share"] == 0.5 and r["verdict"] == "same" for r in parents["segments"])
    assert parents["new"] == parents["vanished"] == parents["moved"] == []
    code, printed, _ = run(capsys, "drift", str(run_dir), str(run_dir))
    assert code == 0 and "4 segments of run2 (16 → 16 users, 16 in both)" in printed
    assert "2 parent segments" in printed


def test_assign_places_users_under_their_segments_parent(tmp_path, capsys):
    source, run_dir = families_run(tmp_path)
    segments = pd.read_parquet(run_dir / "segments.parquet").set_index("segment_id")
    training = pd.read_parquet(run_dir / "users.parquet").set_index("user_id")
    music = parent_by_family(run_dir)["music"]
    new = tmp_path / "new.csv"
    # n1 writes what piano-0 wrote (so sits on a member of a piano leaf); n2 has no usable text
    pd.DataFrame({"user_id": ["n1", "n1", "n1", "n2"], "text": [f"{text} " for text in FAMILIES["piano"]] + ["*** !!!"]}
                 ).to_csv(new, index=False)
    code, printed, err = run(capsys, "assign", str(run_dir), str(new), "--out", str(tmp_path / "a"))
    assert code == 0, err
    users = pd.read_parquet(tmp_path / "a" / "users.parquet").set_index("user_id")
    assert users.loc["n1", "parent_id"] == music and users.loc["n1", "parent_name"] == segments.loc[music, "name"]
    assert users.loc["n1", "segment_id"] == training.loc["piano-0", "segment_id"]
    assert segments.loc[users.loc["n1", "segment_id"], "parent_id"] == music
    assert users.loc["n2", "parent_id"] == NONE and users.loc["n2", "parent_name"] == ""
    summary = json.loads((tmp_path / "a" / "assign.json").read_text())
    assert summary["parent_sizes"] == {segments.loc[music, "name"]: 1}
    assert "by parent segment:" in printed and segments.loc[music, "name"] in printed

    # the training users get their leaves and so their parents back
    code, printed, err = run(capsys, "assign", str(run_dir), str(source), "--out", str(tmp_path / "b"))
    assert code == 0, err
    again = pd.read_parquet(tmp_path / "b" / "users.parquet").set_index("user_id").loc[training.index]
    assert (again["parent_id"] == training["parent_id"]).all() and (again["parent_name"] == training["parent_name"]).all()
    summary = json.loads((tmp_path / "b" / "assign.json").read_text())
    parents = segments[segments["level"] == 1]
    assert summary["parent_sizes"] == dict(zip(parents["name"], parents["size"].astype(int), strict=True))
    assert summary["agreement"]["same_parent"] == 1.0 and "100.0% their original parent" in " ".join(printed.split())


def test_assign_in_a_flat_run_gives_no_parents(tmp_path, capsys):
    source, run_dir = families_run(tmp_path, levels=1)
    # a users table written before segment trees, without the parent columns
    training = pd.read_parquet(run_dir / "users.parquet")
    training.drop(columns=["parent_id", "parent_name"]).to_parquet(run_dir / "users.parquet")
    code, printed, err = run(capsys, "assign", str(run_dir), str(source), "--out", str(tmp_path / "a"))
    assert code == 0, err
    users = pd.read_parquet(tmp_path / "a" / "users.parquet")
    assert (users["parent_id"] == NONE).all() and (users["parent_name"] == "").all()
    summary = json.loads((tmp_path / "a" / "assign.json").read_text())
    assert summary["parent_sizes"] == {} and sum(summary["segment_sizes"].values()) == len(users) == 16
    assert "same_parent" not in summary["agreement"] and summary["agreement"]["same_segment"] == 1.0
    assert "parent" not in printed
