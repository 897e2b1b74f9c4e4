"""Hand edits that last: every edit × every later command (the matrix), bad input, undo, the API.

The data: four topics in two families, eight users each, written so that the hash encoder puts
each topic in a leaf of its own (`--segments 4`) and each family under a parent. Runs are made
once per module with the fake engine; a cell copies the edited run before a command that writes
in place."""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

import tagger
from tagger.cli import main
from tagger.lifecycle.drift import drift

FAST = ["--engine", "fake", "--embedder", "hash"]
TOPICS = {
    "guitar": ["guitar strings for my music lessons", "guitar amplifier for music practice", "guitar picks for music class"],
    "piano": ["piano keys for my music lessons", "piano bench for music practice", "piano sheet for music class"],
    "dog": ["dog leash for my pet walks", "dog treats for pet training", "dog bed for pet naps"],
    "cat": ["cat litter for my pet walks", "cat toys for pet training", "cat tree for pet naps"],
}
EDITS = ["rename", "describe", "merge", "split", "move"]
COMMANDS = ["assign", "rename", "recut", "drift", "like", "show", "report"]


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("edits-home")
        patch.setenv("TAGGER_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    rows = [{"user_id": f"{topic}-{u}", "text": f"{text} {'!' * u}"}
            for topic, texts in TOPICS.items() for u in range(8) for text in texts]
    path = tmp_path_factory.mktemp("edits-data") / "topics.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def base_run(home, source, tmp_path_factory):
    out = tmp_path_factory.mktemp("edits-runs") / "base"
    assert main(["segment", str(source), "--out", str(out), "--segments", "4", *FAST]) == 0
    return out


def leaf_of(run_dir) -> dict[str, int]:
    """Each topic's leaf id; fails unless every topic has a leaf of its own."""
    users = pd.read_parquet(run_dir / "users.parquet")
    ids = users.groupby(users["user_id"].str.split("-").str[0])["segment_id"].unique()
    assert all(len(found) == 1 for found in ids), ids
    return {topic: int(found[0]) for topic, found in ids.items()}


def edit_args(kind: str, leaves: dict[str, int], folder) -> list[str]:
    if kind == "rename":
        return ["--rename", f"{leaves['guitar']}=audiophiles"]
    if kind == "describe":
        return ["--describe", f"{leaves['guitar']}=People who play the guitar."]
    if kind == "merge":
        return ["--merge", f"{leaves['guitar']},{leaves['piano']}=musicians"]
    if kind == "split":
        return ["--split", str(leaves["guitar"])]
    users = folder / "move.txt"
    users.write_text("guitar-0\nguitar-1\n")
    return ["--move", f"{users}={leaves['dog']}"]


@pytest.fixture(scope="module")
def edited(home, base_run, tmp_path_factory):
    """One run per edit kind, made from the base run by `tagger edit`."""
    leaves = leaf_of(base_run)
    runs = {}
    for kind in EDITS:
        folder = tmp_path_factory.mktemp(f"edited-{kind}")
        run = folder / "run"
        shutil.copytree(base_run, run)
        assert main(["edit", str(run), *edit_args(kind, leaves, folder)]) == 0
        runs[kind] = run
    return leaves, runs


def survives(kind: str, run_dir, leaves: dict[str, int]) -> None:
    """The edit holds in RUN_DIR's tables and model."""
    users = pd.read_parquet(run_dir / "users.parquet").set_index("user_id")
    segments = pd.read_parquet(run_dir / "segments.parquet").set_index("segment_id")
    model = json.loads((run_dir / "model" / "segments.json").read_text())
    guitar = leaves["guitar"]
    if kind == "rename":
        assert segments.loc[guitar, "name"] == "audiophiles" and segments.loc[guitar, "named_by"] == "person"
        assert (users.loc[users.index.str.startswith("guitar"), "segment_name"] == "audiophiles").all()
        assert "name" in list(segments.loc[guitar, "set_by_person"])
    elif kind == "describe":
        assert segments.loc[guitar, "description"] == "People who play the guitar."
    elif kind == "merge":
        music = users.index.str.startswith(("guitar", "piano"))
        assert (users.loc[music, "segment_id"] == guitar).all() and leaves["piano"] not in segments.index
        assert segments.loc[guitar, "name"] == "musicians" and segments.loc[guitar, "size"] == 16
        assert {s["segment_id"] for s in model} == set(segments.index[segments["level"] == 0])
    elif kind == "split":
        parts = users.loc[users.index.str.startswith("guitar"), "segment_id"]
        assert parts.nunique() == 2 and guitar in set(parts) and (parts.value_counts() >= 3).all()
        assert len(model) == 5
    else:
        assert (users.loc[["guitar-0", "guitar-1"], "segment_id"] == leaves["dog"]).all()
        assert (users.loc[["guitar-0", "guitar-1"], "assigned_by"] == "person").all()
        assert next(s for s in model if s["segment_id"] == leaves["dog"])["size"] == 10


@pytest.mark.parametrize("kind", EDITS)
def test_an_edit_shows_in_the_run_and_is_recorded(edited, kind):
    leaves, runs = edited
    survives(kind, runs[kind], leaves)
    (record,) = [json.loads(line) for line in (runs[kind] / "edits.jsonl").read_text().splitlines()]
    assert record["op"] == kind and record["at"]
    assert (runs[kind] / "model" / "edits.jsonl").read_text() == (runs[kind] / "edits.jsonl").read_text()
    assert json.loads((runs[kind] / "run.json").read_text())["edits"]["applied"] == 1


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", EDITS)
def test_every_edit_survives_every_later_command(edited, source, tmp_path, capsys, kind, command):
    leaves, runs = edited
    run = tmp_path / "run"
    shutil.copytree(runs[kind], run)
    guitar = leaves["guitar"]
    if command == "assign":
        code, _, err = cli(capsys, "assign", run, source, "--out", tmp_path / "assigned")
        assert code == 0, err
        placed = pd.read_parquet(tmp_path / "assigned" / "users.parquet").set_index("user_id")
        trained = pd.read_parquet(run / "users.parquet").set_index("user_id")
        members = trained["assigned_by"] == "cluster"  # moved users are placed by their own vectors
        assert (placed.loc[members[members].index, "segment_id"] == trained.loc[members, "segment_id"]).all()
        names = dict(zip(*pd.read_parquet(run / "segments.parquet")[["segment_id", "name"]].T.values, strict=True))
        assert (placed["segment_name"] == placed["segment_id"].map(names).fillna("none")).all()
        if kind == "merge":
            assert placed.loc[placed.index.str.startswith("piano"), "segment_name"].eq("musicians").all()
    elif command == "rename":
        code, _, err = cli(capsys, "rename", run)
        assert code == 0, err
        survives(kind, run, leaves)
        if kind in ("rename", "merge"):
            assert guitar in json.loads((run / "run.json").read_text())["renamed"]["kept_person_names"]
    elif command == "recut":
        code, _, err = cli(capsys, "recut", run)
        assert code == 0, err
        survives(kind, run, leaves)
        held = json.loads((run / "run.json").read_text())["edits"]
        assert held["applied"] == 1 and held["not_applying"] == []
    elif command == "drift":
        report = drift(run, run)
        rows = {r["segment_id"]: r for r in report["segments"]}
        assert report["moved"] == report["new"] == report["vanished"] == []
        segments = pd.read_parquet(run / "segments.parquet").set_index("segment_id")
        assert {sid: r["name"] for sid, r in rows.items()} == segments.loc[list(rows), "name"].to_dict()
        if kind == "merge":
            assert leaves["piano"] not in rows and rows[guitar]["old_share"] == 0.5
        if kind == "split":
            assert len(rows) == 5
        if kind == "move":
            assert rows[leaves["dog"]]["old_share"] == round(10 / 32, 4)
    elif command == "like":
        code, _, err = cli(capsys, "segment", source, "--out", tmp_path / "next", "--segments", "4", "--like", run,
                           "--no-report", *FAST)
        assert code == 0, err
        survives(kind, tmp_path / "next", leaves)
        summary = json.loads((tmp_path / "next" / "run.json").read_text())
        assert summary["edits"]["applied"] == 1 and summary["lineage"]["like"] == str(run)
        assert (tmp_path / "next" / "edits.jsonl").read_text().count("\n") == 1
    elif command == "show":
        code, out, _ = cli(capsys, "show", run)
        marked = {"rename": "name", "describe": "description"}.get(kind, "members")
        assert code == 0 and re.search(rf"\[set by a person: [^\]]*{marked}", out)
        code, out, _ = cli(capsys, "show", run, "--segment", leaves["dog"] if kind == "move" else guitar, "--json")
        assert marked in json.loads(out)["set_by_person"]
    else:
        code, _, err = cli(capsys, "report", run)
        assert code == 0, err
        html = (run / "report.html").read_text()
        assert "set by a person" in html
        if kind == "rename":
            assert "audiophiles" in html and "named by person" in html


def test_a_run_made_before_edits_can_be_edited(base_run, tmp_path, capsys):
    """Its segments table has no set_by_person column and its model an older manifest."""
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    table = pd.read_parquet(run / "segments.parquet").drop(columns=["set_by_person"])
    table.to_parquet(run / "segments.parquet", index=False)
    manifest = run / "model" / "manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**{k: v for k, v in data.items() if k != "edits"}, "format_version": 2}))
    leaves = leaf_of(run)
    assert cli(capsys, "edit", run, "--rename", f"{leaves['guitar']}=audiophiles")[0] == 0
    survives("rename", run, leaves)
    code, out, _ = cli(capsys, "show", run)
    assert code == 0 and "1 hand edit (edits.jsonl)" in out


def test_undo_takes_back_the_last_edit_only(edited, base_run, tmp_path, capsys):
    leaves, runs = edited
    run = tmp_path / "run"
    shutil.copytree(runs["merge"], run)
    assert cli(capsys, "edit", run, "--rename", f"{leaves['dog']}=dog people")[0] == 0
    code, out, _ = cli(capsys, "edit", run, "--undo")
    assert code == 0 and "undid: rename" in out
    survives("merge", run, leaves)
    assert "dog people" not in set(pd.read_parquet(run / "segments.parquet")["name"])
    assert cli(capsys, "edit", run, "--undo")[0] == 0
    # back to the run as it was: the same members, names and strengths
    before, after = (pd.read_parquet(r / "users.parquet") for r in (base_run, run))
    assert (before[["segment_id", "segment_name", "parent_id"]] == after[["segment_id", "segment_name", "parent_id"]]).all().all()
    assert np.allclose(before["strength"], after["strength"], atol=1e-3)
    assert not (run / "edits.jsonl").exists() and not (run / "model" / "base").exists()
    code, _, err = cli(capsys, "edit", run, "--undo")
    assert code == 2 and "no edit to undo" in err


def test_recut_lists_the_edits_whose_segments_are_gone(edited, tmp_path, capsys):
    leaves, runs = edited
    run = tmp_path / "run"
    shutil.copytree(runs["split"], run)
    assert cli(capsys, "recut", run, "--segments", "2", "--levels", "1")[0] == 0
    held = json.loads((run / "run.json").read_text())["edits"]
    assert held["applied"] == 0 and [e["edit"] for e in held["not_applying"]] == [f"split {leaves['guitar']} into 2 "
                                                                                  f"({', '.join(map(str, json.loads((runs['split'] / 'edits.jsonl').read_text())['ids']))})"]
    assert "no segment" in held["not_applying"][0]["why"] and not (run / "edits.jsonl").exists()


BAD = {
    "no such segment": (["--rename", "99=x"], "no segment 99 to rename"),
    "merge with itself": (["--merge", "{guitar},{guitar}"], "cannot merge with itself"),
    "split too small": (["--split", "{guitar}=3"], "too small to split into 3 parts"),
    "unknown users": (["--move", "{unknown}={dog}"], "not in the run"),
    "undo with edits": (["--undo", "--rename", "{guitar}=x"], "pass --undo alone"),
    "name taken": (["--rename", "{guitar}={dog_name}"], "is already named"),
    "bad form": (["--merge", "a,b"], "--merge takes A,B[=NAME]"),
}


def test_edits_hold_where_leaves_stand_at_the_top_beside_a_parent(base_run, source, tmp_path, capsys):
    """Naming leaves out a parent no name speaks for in both its children, and they stand at the
    top beside the parents it made (a mixed tree, as the demo's): edits, assign and recut work on it."""
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    segments, users = pd.read_parquet(run / "segments.parquet"), pd.read_parquet(run / "users.parquet")
    gone = int(segments.loc[segments["level"] == 1, "segment_id"].max())
    segments = segments[segments["segment_id"] != gone].copy()
    segments.loc[segments["parent_id"] == gone, "parent_id"] = -1
    users.loc[users["parent_id"] == gone, ["parent_id", "parent_name"]] = [-1, ""]
    for name, table in (("segments", segments), ("users", users)):
        table.to_parquet(run / f"{name}.parquet", index=False)
        table.to_csv(run / f"{name}.csv", index=False)
    alone = sorted(int(s) for s in segments.loc[(segments["level"] == 0) & (segments["parent_id"] < 0), "segment_id"])
    code, _, err = cli(capsys, "edit", run, "--rename", f"{alone[0]}=the first", "--merge", ",".join(map(str, alone)))
    assert code == 0, err
    after = pd.read_parquet(run / "segments.parquet")
    merged = after[after["segment_id"] == alone[0]].iloc[0]
    assert merged["level"] == 0 and merged["parent_id"] == -1 and alone[1] not in set(after["segment_id"])
    assert gone not in set(after["segment_id"]) and (after["level"] == 1).sum() == 1  # no parent made up
    code, out, err = cli(capsys, "show", run, "--tree")
    assert code == 0 and "in 1 group, 1 on their own" in out, err
    code, _, err = cli(capsys, "assign", run, source, "--out", tmp_path / "new", "--no-cache")
    assert code == 0, err
    placed = pd.read_parquet(tmp_path / "new" / "users.parquet")
    assert (placed.loc[placed["segment_id"] == alone[0], "parent_id"] == -1).all()
    code, _, err = cli(capsys, "recut", run, "--segments", "3", "--out", tmp_path / "recut")
    assert code == 0, err


def test_no_parent_is_made_over_one_segment(home, source, tmp_path, capsys):
    """Three parents asked of four leaves: the cut gives two of them one leaf each, and a parent
    of one segment only repeats it, so naming does not make it (run.json counts it)."""
    code, _, err = cli(capsys, "segment", source, "--out", tmp_path / "r", "--segments", "4", "--parents", "3",
                       "--no-report", *FAST)
    assert code == 0, err
    segments = pd.read_parquet(tmp_path / "r" / "segments.parquet")
    children = segments.loc[(segments["level"] == 0) & (segments["parent_id"] >= 0), "parent_id"].value_counts()
    assert (children >= 2).all() and len(children) == (segments["level"] == 1).sum()
    summary = json.loads((tmp_path / "r" / "run.json").read_text())
    assert summary["tree"]["parents_not_named"] == 3 - len(children) >= 2


@pytest.mark.parametrize("case", BAD)
def test_bad_edits_stop_with_one_line_and_leave_the_run_as_it_was(base_run, tmp_path, capsys, case):
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    leaves = leaf_of(run)
    (tmp_path / "unknown.txt").write_text("nobody\n")
    names = dict(zip(*pd.read_parquet(run / "segments.parquet")[["segment_id", "name"]].T.values, strict=True))
    args, message = BAD[case]
    args = [a.format(**leaves, unknown=tmp_path / "unknown.txt", dog_name=names[leaves["dog"]]) for a in args]
    before = snapshot(run)
    code, _, err = cli(capsys, "edit", run, *args)
    assert code == 2 and err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert snapshot(run) == before


@pytest.mark.parametrize("damage", ["nonsense", "not json", "changed by hand"])
def test_an_edits_file_changed_by_hand_is_refused_everywhere(edited, source, tmp_path, capsys, damage):
    leaves, runs = edited
    run = tmp_path / "run"
    shutil.copytree(runs["rename"], run)
    path = run / "edits.jsonl"
    record = json.loads(path.read_text())
    if damage == "nonsense":
        path.write_text(json.dumps({**record, "op": "paint", "colour": "blue"}) + "\n")
    elif damage == "not json":
        path.write_text("{rename 3 to audiophiles\n")
    else:
        path.write_text(json.dumps({**record, "name": "other name"}) + "\n")
    before = snapshot(run)
    for args in (["edit", run, "--rename", f"{leaves['dog']}=x"], ["edit", run, "--undo"], ["recut", run],
                 ["segment", source, "--out", tmp_path / "next", "--like", run, *FAST]):
        code, _, err = cli(capsys, *args)
        assert code == 2 and err.startswith("error: ") and "edits.jsonl" in err, (args, err)
        assert len(err.strip().splitlines()) == 1
    assert snapshot(run) == before and not (tmp_path / "next").exists()


def test_the_api_edits_and_undoes(edited, base_run, tmp_path):
    leaves, _ = edited
    run = tmp_path / "run"
    shutil.copytree(base_run, run)
    seg = tagger.open_run(run)
    edited_seg = seg.edit(rename={leaves["guitar"]: "audiophiles"}, merge=[(leaves["dog"], leaves["cat"], "pets")])
    names = dict(zip(edited_seg.segments["segment_id"], edited_seg.segments["name"], strict=True))
    assert names[leaves["guitar"]] == "audiophiles" and names[leaves["dog"]] == "pets" and leaves["cat"] not in names
    assert edited_seg.summary.edits.applied == 2
    undone = edited_seg.undo()  # merges apply first: the rename was the last edit
    assert undone.summary.edits.applied == 1 and {"pets"} <= set(undone.segments["name"]) - {"audiophiles"}
    assert "audiophiles" not in set(undone.segments["name"])
    with pytest.raises(tagger.errors.ConfigError, match="pass out="):
        tagger.api.Segmentation.from_run(seg._run, written=False).edit(rename={0: "x"})
