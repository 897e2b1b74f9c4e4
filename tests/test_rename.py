from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from tagger.cli import main
from tagger.paths import prompts_dir

FAST = ["--engine", "fake", "--embedder", "hash"]
KEPT = ("tags.jsonl", "segment_profiles.json")


@pytest.fixture
def run_dir(tmp_path, comments_csv):
    out = tmp_path / "run"
    # reviews: two role nouns per phrase ("buyers", "fans"), so a segment has names to choose among
    assert main(["segment", str(comments_csv), "--out", str(out), "--item-col", "item", "--audience", "customers",
                 *FAST]) == 0
    return out


def edited_name_template(folder, user_part: str):
    """name.toml with only its `user` part replaced."""
    folder.mkdir(exist_ok=True)
    text = (prompts_dir() / "name.toml").read_text()
    start = text.index('user = """')
    end = text.index('"""', start + 10) + 3
    (folder / "name.toml").write_text(text[:start] + f'user = """{user_part}"""' + text[end:])
    return folder


def test_rename_reruns_only_naming_and_rewrites_tables(capsys, run_dir, tmp_path):
    # Each segment offered two names the ranking cannot tell apart (equal scores, so both reach the
    # request) that start differently, so listing them last first changes the fake's pick.
    profiles_file = run_dir / "segment_profiles.json"
    profiles = json.loads(profiles_file.read_text())
    assert all(p["options"] and {"label", "score", "source"} <= set(p["options"][0]) for p in profiles)
    for p in profiles:
        first = p["options"][0]
        p["options"] = [first, {**first, "label": f"other {first['label']}"}]
    profiles_file.write_text(json.dumps(profiles))
    before = {name: (run_dir / name).read_bytes() for name in KEPT}
    old_segments = pd.read_parquet(run_dir / "segments.parquet")
    old_users = pd.read_parquet(run_dir / "users.parquet")
    # The fake engine picks the admitted name with a word the prompt's first line mentions first:
    # listing the names last first there must change the names.
    prompts = edited_name_template(tmp_path / "p", "Names, last first: {{ options | reverse | join('; ') }}\n"
                                   "{{ tags | join(', ') }} {{ quotes | length }} {{ neighbour_tags | length }}")
    capsys.readouterr()
    assert main(["rename", str(run_dir), "--prompts", str(prompts)]) == 0
    out = capsys.readouterr().out
    segments = pd.read_parquet(run_dir / "segments.parquet")
    users = pd.read_parquet(run_dir / "users.parquet")
    assert segments["name"].tolist() != old_segments["name"].tolist() and "(was: " in out
    for column in ("segment_id", "size", "share"):
        assert segments[column].tolist() == old_segments[column].tolist()
    assert segments["top_tags"].map(list).tolist() == old_segments["top_tags"].map(list).tolist()
    names = dict(zip(segments.segment_id, segments.name))
    assert users["segment_name"].tolist() == [names[s] for s in users.segment_id]
    assert users[["user_id", "segment_id", "strength", "x", "y"]].equals(old_users[["user_id", "segment_id", "strength", "x", "y"]])
    assert pd.read_csv(run_dir / "segments.csv")["name"].tolist() == segments["name"].tolist()
    assert {name: (run_dir / name).read_bytes() for name in KEPT} == before
    summary = json.loads((run_dir / "run.json").read_text())
    assert summary["prompts"]["name"]["path"] == str(prompts / "name.toml")
    assert summary["renamed"]["cache"]["misses"] == len(segments)
    report = (run_dir / "report.html").read_text()
    assert all(name.replace("&", "&amp;") in report for name in segments["name"])
    assert not list(tmp_path.glob(".run.partial-*"))


def test_unchanged_template_is_answered_from_the_cache(capsys, run_dir):
    old = pd.read_parquet(run_dir / "segments.parquet")
    capsys.readouterr()
    assert main(["rename", str(run_dir)]) == 0
    assert "0 new" in capsys.readouterr().out
    assert pd.read_parquet(run_dir / "segments.parquet")["name"].tolist() == old["name"].tolist()


def test_broken_template_or_folder_changes_nothing(capsys, run_dir, tmp_path):
    files = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    prompts = edited_name_template(tmp_path / "p", "{{ tags | join(', ') }} {{ quotes }} {{ neighbour_tags }} {{ options }} {{ mood }}")
    capsys.readouterr()
    assert main(["rename", str(run_dir), "--prompts", str(prompts)]) == 2
    err = capsys.readouterr().err
    assert "unknown variable(s) ['mood']" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == files
    not_a_run = tmp_path / "copy"
    shutil.copytree(run_dir, not_a_run)
    (not_a_run / "segment_profiles.json").unlink()
    assert main(["rename", str(not_a_run)]) == 2
    assert "no segment_profiles.json" in capsys.readouterr().err


NAMING = ["name", "description", "named_by", "iab_id", "iab_path", "level", "parent_id", "sensitive"]


@pytest.mark.parametrize("language", ["en", "zh"])
def test_rename_of_an_unchanged_run_reproduces_its_names_exactly(capsys, tmp_path, comments_csv, language):
    # The Chinese run with the embedded model names without the LLM: rename must follow the same
    # rule (NamingSettings.from_config), and check for planted names the same way.
    from conftest import ZH_SAMPLE

    out = tmp_path / "run"
    source = comments_csv if language == "en" else ZH_SAMPLE
    extra = ["--max-users", "60"] if language == "zh" else []
    assert main(["segment", str(source), "--out", str(out), *extra, *FAST]) == 0
    before_segments, before_users = pd.read_parquet(out / "segments.parquet"), pd.read_parquet(out / "users.parquet")
    assert json.loads((out / "run.json").read_text())["language"] == language
    capsys.readouterr()
    assert main(["rename", str(out)]) == 0
    after_segments, after_users = pd.read_parquet(out / "segments.parquet"), pd.read_parquet(out / "users.parquet")
    assert after_segments[NAMING].equals(before_segments[NAMING])
    assert after_users[["user_id", "segment_id", "segment_name", "parent_id", "parent_name"]].equals(
        before_users[["user_id", "segment_id", "segment_name", "parent_id", "parent_name"]])
    if language == "zh":
        assert set(after_segments["named_by"]) == {"fallback"}  # no LLM names Chinese with the embedded model
