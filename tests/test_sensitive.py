"""Sensitive topics (tagger.stages.naming.sensitive, prompts/data/sensitive.toml): which segments
are flagged, how they are named, and `--sensitive flag|exclude` through segment, show, the
report and assign."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from tagger.cli import main
from tagger.paths import prompts_dir
from tagger.stages.naming import SegmentProfile
from tagger.stages.naming.sensitive import categories, category_of_path, judge_sensitive, parent_category

FAST = ["--engine", "fake", "--embedder", "hash"]


def test_the_shipped_table_covers_the_special_categories_and_the_iab_branch():
    labels = {c.label for c in categories()}
    assert {"health", "religion or belief", "political opinions", "sexual orientation or sex life",
            "racial or ethnic origin", "trade-union membership"} <= labels
    assert category_of_path("Religion & Spirituality > Christianity") == "religion or belief"
    assert category_of_path("Sensitive Topics > Arms & Ammunition") == "arms and ammunition"
    assert category_of_path("Medical Health > Diseases and Conditions > Cancer") == "health"
    # elective beauty care is shopping, not health; and an unrelated node is nothing
    assert category_of_path("Medical Health > Cosmetic Medical Services") == ""
    assert category_of_path("Sports > Baseball") == ""


class WordEncoder:
    """One axis per listed word (a text is the unit sum of its words' axes; others share the last)."""

    AXES = {"church": 0, "bible": 0, "christianity": 0, "faith": 0, "religion": 0, "god": 0,
            "guitar": 1, "amplifier": 1, "strings": 1, "dog": 2, "leash": 2}

    def encode(self, texts):
        out = np.zeros((len(texts), 4), np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace(",", " ").split():
                out[i, self.AXES.get(word, 3)] += 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_a_segment_is_flagged_when_a_category_points_at_it_and_is_close():
    ps = [SegmentProfile(0, 10, ("bible", "church"), ()), SegmentProfile(1, 10, ("guitar", "amplifier"), ()),
          SegmentProfile(2, 10, ("dog", "leash"), ())]
    centroids = np.array([[1, 0, 0, 0.3], [0, 1, 0, 0.3], [0, 0, 1, 0.3]], np.float32)
    assert judge_sensitive(ps, centroids, WordEncoder()) == ["religion or belief", "", ""]
    # a parent most of whose members are in one category's segments is about it too
    assert parent_category([(30, "religion or belief"), (20, "")]) == "religion or belief"
    assert parent_category([(20, "religion or belief"), (30, "")]) == ""


def dog_category(tmp_path):
    """A prompts folder whose sensitive table has one category, about the dog owners' words."""
    folder = tmp_path / "prompts"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "sensitive.toml").write_text(
        '[names]\nen = "{topic} discussion"\n\n[categories.dogs]\nlabel = "test topic"\niab = []\n'
        'about = ["my dog loves these dog treats, a sturdy dog leash and a dog bed"]\n')
    return folder


def run(capsys, *args):
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_flag_marks_the_segment_in_the_tables_show_and_the_report(capsys, tmp_path, comments_csv):
    out = tmp_path / "flag"
    code, _, _ = run(capsys, "segment", comments_csv, "--out", out, "--prompts", dog_category(tmp_path), *FAST)
    assert code == 0
    segments = pd.read_parquet(out / "segments.parquet")
    assert "sensitive" in pd.read_csv(out / "segments.csv").columns
    flagged = segments[segments["sensitive"] != ""]
    assert flagged["sensitive"].tolist() == ["test topic"]
    dog = flagged.iloc[0]
    assert "discussion" in dog["name"] and not dog["name"].endswith(("owners", "fans"))  # a topic, not an identity
    users = pd.read_parquet(out / "users.parquet")
    assert (users.loc[users["user_id"].str.startswith("dog"), "segment_id"] == dog["segment_id"]).all()
    _, shown, _ = run(capsys, "show", out)
    assert "[sensitive: test topic]" in shown
    assert "[sensitive: test topic]" in (out / "report.html").read_text()
    _, detail, _ = run(capsys, "show", out, "--segment", int(dog["segment_id"]))
    assert "[sensitive: test topic]" in detail


def test_exclude_leaves_the_members_unsegmented_with_a_reason_and_assign_does_the_same(capsys, tmp_path,
                                                                                      comments_csv):
    prompts = dog_category(tmp_path)
    out = tmp_path / "exclude"
    assert run(capsys, "segment", comments_csv, "--out", out, "--prompts", prompts, "--sensitive", "exclude",
               *FAST)[0] == 0
    users = pd.read_parquet(out / "users.parquet")
    dogs = users["user_id"].str.startswith("dog")
    assert (users.loc[dogs, "segment_id"] == -1).all() and (users.loc[dogs, "segment_name"] == "").all()
    assert set(users.loc[dogs, "reason"]) == {"sensitive topic: test topic (--sensitive exclude)"}
    assert (users.loc[~dogs, "segment_id"] >= 0).all()
    assert json.loads((out / "run.json").read_text())["config"]["sensitive"] == "exclude"
    _, shown, _ = run(capsys, "show", out)
    assert "[sensitive: test topic, members excluded]" in shown
    # a new user who writes like the dog owners is placed in that segment, so is left out too
    new = tmp_path / "new.csv"
    texts = {"new-dog": ["my dog loves these dog treats", "sturdy dog leash for long walks", "dog bed is soft and washable"],
             "new-guitar": ["my guitar strings stay in tune", "this guitar amplifier sounds warm", "guitar picks for practice"]}
    pd.DataFrame([{"user_id": u, "text": t} for u, ts in texts.items() for t in ts]).to_csv(new, index=False)
    assert run(capsys, "assign", out, new, "--out", tmp_path / "assigned")[0] == 0
    placed = pd.read_parquet(tmp_path / "assigned" / "users.parquet").set_index("user_id")
    assert placed.loc["new-dog", "segment_id"] == -1 and placed.loc["new-dog", "reason"].startswith("sensitive topic")
    assert placed.loc["new-guitar", "segment_id"] >= 0


def test_the_shipped_table_is_where_the_documentation_says():
    assert (prompts_dir() / "data" / "sensitive.toml").exists()
