"""The lasting parts of a run with a segment tree, end to end: stability per level, drift of
parents, and assign placing new users under their segment's parent.

The input holds two families of two topics; within a family the comments share most of their
words, so the four topics are the leaves and the two families their parents."""

from __future__ import annotations

import json

import pandas as pd
import pytest

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


def test_parent_stability_script_scores_each_count_asked(tmp_path, monkeypatch):
    """eval/parent_stability.py --counts on the four-topic run: two parents asked are the two
    families in every rerun (ARI 1 by construction), and both result files say so."""
    from eval import parent_stability

    _, run_dir = families_run(tmp_path)
    monkeypatch.setattr(parent_stability, "RESULTS", tmp_path / "results")
    assert parent_stability.main([str(run_dir), "--runs", "3", "--counts", "2", "--name", "ps"]) == 0
    saved = json.loads((tmp_path / "results" / "ps.json").read_text())
    (row,) = saved["rows"]
    assert row["parents"] == 2 and row["parents_cut"] == "two leaves or more, asked"
    assert row["leaves_per_run"] == [4, 4, 4]
    assert row["levels"]["1"] == {"mean_ari": 1.0, "min_ari": 1.0}
    table = (tmp_path / "results" / "ps.md").read_text()
    assert "| run2 | 16 | 2 | two leaves or more, asked | 4–4 | 1.000 / 1.000 | 1.000 / 1.000 |" in table


def test_segmenter_sweep_scores_each_setting_on_a_saved_run(tmp_path, monkeypatch):
    """eval/segmenter_sweep.py on the four-topic run, labelled by topic: four leaves asked are the
    four topics (NMI and ARI 1); two are the two families, each two whole topics, so NMI is
    ln 2 / mean(ln 4, ln 2) = 2/3 and ARI (24 - 11.2) / (40 - 11.2) = 0.444 by construction."""
    from eval import segmenter_sweep

    source, run_dir = families_run(tmp_path)
    labelled = tmp_path / "fourtopics" / "comments.csv"
    labelled.parent.mkdir()
    frame = pd.read_csv(source)
    frame.assign(category=frame["user_id"].str.split("-").str[0]).to_csv(labelled, index=False)
    monkeypatch.setattr(segmenter_sweep, "RESULTS", tmp_path / "results")
    args = [f"{run_dir}={labelled}", "--settings", "n_segments=4", "n_segments=2", "--seeds", "2", "--name", "ss"]
    assert segmenter_sweep.main(args) == 0
    four, two = json.loads((tmp_path / "results" / "ss.json").read_text())["fourtopics"]
    assert four == {"setting": "n_segments=4", "nmi": 1.0, "ari": 1.0, "segments": 4.0, "nmi_min": 1.0}
    assert two == {"setting": "n_segments=2", "nmi": 0.667, "ari": 0.444, "segments": 2.0, "nmi_min": 0.667}
    table = (tmp_path / "results" / "ss.md").read_text()
    assert "| n_segments=4 | 1.000 / 1.000 (4.0) |" in table and "| n_segments=2 | 0.667 / 0.444 (2.0) |" in table


def test_segmenter_sweep_refuses_a_setting_it_does_not_know(tmp_path, monkeypatch):
    from eval import segmenter_sweep

    monkeypatch.setattr(segmenter_sweep, "RESULTS", tmp_path / "results")
    with pytest.raises(SystemExit, match="'reduce=3' is not name=value of a Segmenter parameter"):
        segmenter_sweep.main([f"{tmp_path}=x.csv", "--settings", "reduce=3"])
    assert not (tmp_path / "results").exists()


def test_parent_stability_script_takes_segmenter_settings(tmp_path, monkeypatch):
    """`--setting n_parents=2` replaces the run's own count as `--counts 2` does: both cuts give
    the two families in every rerun, and the rows and table say which setting made them."""
    from eval import parent_stability

    _, run_dir = families_run(tmp_path)
    monkeypatch.setattr(parent_stability, "RESULTS", tmp_path / "results")
    assert parent_stability.main([str(run_dir), "--runs", "3", "--setting", "n_parents=2", "--name", "ps"]) == 0
    rows = json.loads((tmp_path / "results" / "ps.json").read_text())["rows"]
    assert [r["parents_cut"] for r in rows] == ["two leaves or more", "plain linkage"]
    for row in rows:
        assert row["setting"] == "n_parents=2" and row["parents"] == 2
        assert row["levels"]["1"] == {"mean_ari": 1.0, "min_ari": 1.0}
    assert "| run2 (n_parents=2) | 16 | 2 | plain linkage |" in (tmp_path / "results" / "ps.md").read_text()
