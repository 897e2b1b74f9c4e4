from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from tagger.cli import main

FAST = ["--engine", "fake", "--embedder", "hash"]


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_segment_writes_a_complete_run_folder(capsys, comments_csv, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "segment", str(comments_csv), "--out", str(out), "--item-col", "item",
                          "--time-col", "ts", *FAST)
    assert code == 0
    assert "segments of 12 users" in stdout
    users = pd.read_parquet(out / "users.parquet")
    segments = pd.read_csv(out / "segments.csv")
    assert len(users) == 12 and set(users.columns) >= {"user_id", "segment_id", "segment_name", "strength", "tags"}
    assert len(segments) >= 2 and segments["name"].is_unique
    summary = json.loads((out / "run.json").read_text())
    assert summary["counts"]["users"] == 12 and summary["counts"]["tagged"] == 12
    assert set(summary["timings_s"]) >= {"load", "tagging", "embedding", "clustering", "naming", "write"}
    assert summary["prompts"]["tag"]["sha256"]
    assert [json.loads(line)["user_id"] for line in (out / "tags.jsonl").read_text().splitlines()][:1] == ["baking-0"]
    assert not list(tmp_path.glob(".run.partial-*"))


def test_rerun_uses_the_cache_and_refuses_to_overwrite(capsys, comments_csv, tmp_path):
    out = tmp_path / "run"
    assert run(capsys, "segment", str(comments_csv), "--out", str(out), *FAST)[0] == 0
    code, _, err = run(capsys, "segment", str(comments_csv), "--out", str(out), *FAST)
    assert code == 2 and "already holds another run" in err and "--force" in err
    assert run(capsys, "segment", str(comments_csv), "--out", str(out), "--force", *FAST)[0] == 0
    cache = json.loads((out / "run.json").read_text())["cache"]
    assert cache["hits"] >= 12 and cache["misses"] == 0


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name,data,extra,message", [
    ("missing.csv", None, [], "input file not found"),
    ("empty.csv", b"", [], "is empty"),
    ("cols.csv", b"uid,body\nu,hi\n", [], "columns present: uid, body"),
    ("blank.csv", b"user_id,text\nu1,\nu2,   \n", [], "no row has both"),
    ("latin1.csv", b"user_id,text\nu1,caf\xe9 au lait\n", [], "--encoding"),
    ("c.csv", b"user_id,text\nu1,hi\n", ["--time-col", "when"], "column 'when' not found"),
    ("c.csv", b"user_id,text\nu1,hi\n", ["--tag-weight", "3"], "invalid setting tag_weight"),
    ("c.csv", b"user_id,text\nu1,hi\n", ["--candidates-from", "no-such-run"], "has no saved segment model"),
    ("c.csv", b"user_id,text\nu1,hi\n", ["--candidates-from", "r", "--tag-mode", "free"], "needs --tag-mode grounded"),
    ("c.csv", b"user_id,text\nu1,hi\n", ["--taxonomy", "no-such.tsv"], "taxonomy file not found"),
    ("c.csv", b"user_id,text\nu1,hi\n", ["--audience", "martians"], "unknown audience 'martians'"),
])
def test_bad_input_is_one_line_nonzero_and_writes_nothing(capsys, tmp_path, name, data, extra, message):
    path = tmp_path / name if data is None else write(tmp_path, name, data)
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "segment", str(path), "--out", str(out), *FAST, *extra)
    assert code != 0
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + stdout
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))


def test_console_script_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tagger", "segment", str(tmp_path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path} is a folder; pass a CSV, Parquet or JSONL file"


def test_segment_prints_plain_progress_lines_when_stderr_is_not_a_terminal(capsys, comments_csv, tmp_path):
    code, _, err = run(capsys, "segment", str(comments_csv), "--out", str(tmp_path / "run"), *FAST)
    assert code == 0
    progress = [line for line in err.splitlines() if line.startswith("[")]
    assert any("] load: done in " in line for line in progress)
    assert any("tagging: 12/12 users (100%)" in line and "users/s, done in" in line for line in progress)
    assert any("embedding: " in line and "texts (100%)" in line for line in progress)
    assert "\x1b[" not in err  # no terminal control codes in a log


def test_quiet_silences_progress(capsys, comments_csv, tmp_path):
    code, stdout, err = run(capsys, "segment", str(comments_csv), "--out", str(tmp_path / "run"), "--quiet", *FAST)
    assert code == 0 and "segments of 12 users" in stdout
    assert not [line for line in err.splitlines() if line.startswith("[")]


def test_a_rerun_with_the_previous_runs_candidates_serves_returning_users_from_the_cache(capsys, comments_csv, tmp_path):
    frame = pd.read_csv(comments_csv)
    assert run(capsys, "segment", str(comments_csv), "--out", str(tmp_path / "june"), *FAST, "--no-report")[0] == 0
    later = tmp_path / "july.csv"
    stayed = frame[frame["user_id"] != "dog-3"]
    newcomer = pd.DataFrame([{"user_id": "new-0", "text": "my cat loves this scratching post", "ts": 1, "item": "x"}])
    pd.concat([stayed, newcomer]).to_csv(later, index=False)
    code, out, err = run(capsys, "segment", str(later), "--out", str(tmp_path / "july"), *FAST, "--no-report",
                         "--candidates-from", str(tmp_path / "june"))
    assert code == 0, err
    summary = json.loads((tmp_path / "july" / "run.json").read_text())
    assert summary["config"]["candidates_from"] == str(tmp_path / "june")
    # the 11 returning users' tag requests are June's, answered from the cache; the newcomer's is not
    assert summary["cache"]["hits"] >= 11 and summary["cache"]["misses"] >= 1
    june = {u["user_id"]: u["tags"] for u in map(json.loads, (tmp_path / "june" / "tags.jsonl").read_text().splitlines())}
    july = {u["user_id"]: u["tags"] for u in map(json.loads, (tmp_path / "july" / "tags.jsonl").read_text().splitlines())}
    assert all(july[u] == june[u] for u in july if u != "new-0")


def test_a_users_taxonomy_names_segments_and_show_prints_the_node(capsys, comments_csv, tmp_path):
    taxonomy = tmp_path / "mine.tsv"
    taxonomy.write_text("Unique ID\tParent\tName\tTier 1\tTier 2\tTier 3\tTier 4\n"
                        "D1\t\tDog\tDog\t\t\t\nG1\t\tGuitar\tGuitar\t\t\t\nB1\t\tBaking\tBaking\t\t\t\n", encoding="utf-8")
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "segment", str(comments_csv), "--out", str(out), "--taxonomy", str(taxonomy), *FAST)
    assert code == 0
    profiles = json.loads((out / "segment_profiles.json").read_text())
    offered = {o["label"]: {"iab_id": o["iab_id"], "iab_path": o["iab_path"]}
               for p in profiles for o in p["options"] if o["source"] == "taxonomy"}
    # each node is offered to the one segment it points at, with its ID and path
    assert offered["dog followers"] == {"iab_id": "D1", "iab_path": "Dog"}
    segments = pd.read_csv(out / "segments.csv", keep_default_na=False)
    for row in segments.itertuples():
        assert (row.iab_path != "") == (row.name in offered)
        if row.iab_path:
            assert offered[row.name]["iab_path"] == row.iab_path
    code, shown, _ = run(capsys, "show", str(out))
    assert code == 0
    for row in segments[segments.iab_path != ""].itertuples():
        assert f"iab:   {row.iab_id} | {row.iab_path}" in shown
    # no taxonomy: every name is built from the segments' own phrases
    code, _, _ = run(capsys, "segment", str(comments_csv), "--out", str(tmp_path / "plain"), "--taxonomy", "none", *FAST)
    assert code == 0
    assert (pd.read_csv(tmp_path / "plain" / "segments.csv", keep_default_na=False)["iab_path"] == "").all()
