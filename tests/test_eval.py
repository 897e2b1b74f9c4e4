"""The evaluation harness end to end on the shipped samples: fake engine, hash embedder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from eval import baselines
from eval.harness import dataset_names, main
from eval.metrics import (cluster_scores, load_groups, name_quality, strict_name_quality, strict_option_judgements,
                          true_segments)
from tagger.stages.clustering import default_min_segment_size
from tagger.stages.embedding import HashEncoder

from conftest import AMAZON_SAMPLE, ZH_SAMPLE


def test_harness_scores_tagger_and_baselines_on_both_samples(tmp_path):
    code = main([str(AMAZON_SAMPLE), str(ZH_SAMPLE), "--engine", "fake", "--embedder", "hash",
                 "--max-users", "40", "--methods", "tagger,recipe-k3,recipe-true-k,hdbscan-raw",
                 "--out", str(tmp_path), "--name", "t"])
    assert code == 0
    saved = json.loads((tmp_path / "t.json").read_text())
    assert [r["users"] for r in saved["results"]] == [40, 40]
    for result in saved["results"]:
        rows = {r["method"]: r for r in result["rows"]}
        assert list(rows) == ["tagger", "recipe-k3", "recipe-true-k", "hdbscan-raw"]
        for row in rows.values():
            assert 0.0 <= row["nmi"] <= 1.0 and -1.0 <= row["ari"] <= 1.0
            assert 0.0 <= row["coverage"] <= 1.0 and row["segments"] >= 0
            assert row["time_s"] >= 0 and set(row["stages_s"]) >= {"embedding", "clustering"}
        assert rows["recipe-k3"]["segments"] == 3 and rows["recipe-k3"]["coverage"] == 1.0
        assert rows["recipe-true-k"]["segments"] == result["categories"]
        assert rows["tagger"]["coverage"] == 1.0  # noise joins the nearest segment by default
        assert 0.0 <= rows["tagger"]["name_quality"] <= 1.0
        # the samples' categories are those of amazon-2023 and zh-shopping, so the strict judge applies
        assert 0.0 <= rows["tagger"]["name_quality_strict"] <= 1.0
        assert 0.0 <= rows["tagger"]["name_quality_strict_fallback"] <= 1.0
        assert {"tagging", "naming"} <= set(rows["tagger"]["stages_s"])
    table = (tmp_path / "t.md").read_text()
    assert table.count("| tagger |") == 2 and "| NMI | ARI | coverage | segments | name quality |" in table
    assert "| name quality | strict judge | time (s) |" in table


def test_truth_is_the_majority_category_with_alphabetical_ties():
    frame = pd.DataFrame({"user_id": ["a", "a", "a", "b", "b"], "category": ["y", "x", "y", "y", "x"]})
    assert true_segments(frame).to_dict() == {"a": "y", "b": "x"}


def test_noise_counts_as_its_own_cluster_and_lowers_coverage():
    truth = ["p", "p", "q", "q"]
    assert cluster_scores([0, 0, 1, 1], truth)["nmi"] == 1.0
    noisy = cluster_scores([0, -1, 1, -1], truth)
    assert noisy["coverage"] == 0.5 and noisy["segments"] == 2 and noisy["nmi"] < 1.0


def test_name_quality_rewards_the_name_nearest_the_members_category():
    truth = np.array(["dog food", "dog food", "guitar strings", "guitar strings"])
    labels = np.array([0, 0, 1, 1])
    right = name_quality(labels, truth, {0: "dog food lovers", 1: "guitar strings buyers"}, HashEncoder())
    swapped = name_quality(labels, truth, {0: "guitar strings buyers", 1: "dog food lovers"}, HashEncoder())
    assert right == 1.0 and swapped == 0.0


def test_chinese_segments_get_chinese_names_even_when_the_model_answers_badly(tmp_path):
    """The fake engine answers in the prompt's (English-free) tags or not at all; every name of a
    Chinese run must still be Chinese and short (LLM label or the tag fallback)."""
    code = main([str(ZH_SAMPLE), "--engine", "fake", "--embedder", "hash", "--methods", "tagger",
                 "--out", str(tmp_path), "--name", "zh"])
    assert code == 0
    row = json.loads((tmp_path / "zh.json").read_text())["results"][0]["rows"][0]
    names = [n.rsplit(" (", 1)[0] for n in row["segment_names"]]
    assert names and all(any("\u4e00" <= ch <= "\u9fff" for ch in n) for n in names)


def test_harness_runs_from_another_folder_on_the_shipped_samples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["--engine", "fake", "--embedder", "hash", "--max-users", "20", "--methods", "tagger,recipe-k3",
                 "--out", "out", "--name", "d"])
    assert code == 0
    saved = json.loads((tmp_path / "out" / "d.json").read_text())
    assert [r["name"] for r in saved["results"]] == ["amazon-sample", "zh-sample"]
    assert all(r["users"] == 20 for r in saved["results"])
    assert "### amazon-sample (20 users" in (tmp_path / "out" / "d.md").read_text()


def test_dataset_names_use_folders_when_file_names_repeat(tmp_path):
    assert dataset_names([Path("a/amazon-sample.csv"), Path("a/zh-sample.csv")]) == ["amazon-sample", "zh-sample"]
    assert dataset_names([Path("d/amazon-2023/reviews.csv"), Path("d/zh-shopping/reviews.csv")]) == \
        ["amazon-2023", "zh-shopping"]
    assert dataset_names([Path("a/reviews.csv"), Path("b/reviews.csv"), Path("b/other.csv")]) == \
        ["a/reviews", "b/reviews", "b/other"]


def test_fair_bertopic_gets_taggers_size_rule_and_five_seeds(tmp_path, monkeypatch):
    """BERTopic itself is replaced by a stand-in: one segment for every seed but seed 3, which
    puts each user in a segment of their own (NMI > 0). So seed 3 is the best, and the median
    of the five runs is one segment with NMI 0."""
    calls = []

    def fake_bertopic(texts, vectors, *, seed, min_topic_size):
        calls.append((seed, min_topic_size))
        labels = np.arange(len(texts)) if seed == 3 else np.zeros(len(texts), int)
        return {"topics": (labels, {}, 0.0), "reduce-outliers": (labels, {}, 0.0)}

    monkeypatch.setattr(baselines, "bertopic", fake_bertopic)
    code = main([str(AMAZON_SAMPLE), "--engine", "fake", "--embedder", "hash", "--max-users", "36",
                 "--methods", "tagger,bertopic,bertopic-fair", "--out", str(tmp_path), "--name", "b"])
    assert code == 0
    assert calls == [(0, None)] + [(s, default_min_segment_size(36)) for s in range(5)]
    rows = json.loads((tmp_path / "b.json").read_text())["results"][0]["rows"]
    assert [(r["method"], r.get("over_seeds", {}).get("stat")) for r in rows] == \
        [("tagger", None), ("bertopic", None), ("bertopic-fair", "best"), ("bertopic-fair", "median")]
    best, median = rows[2], rows[3]
    assert best["seed"] == 3 and best["segments"] == 36 and best["nmi"] > 0
    assert median["nmi"] == 0 and median["segments"] == 1 and median["coverage"] == 1
    assert rows[1]["min_topic_size"] == 10 and median["min_topic_size"] == default_min_segment_size(36)
    table = (tmp_path / "b.md").read_text()
    assert "| bertopic-fair, best of 5 seeds (seed 3) |" in table and "| bertopic-fair, median of 5 seeds |" in table


class WordBags:
    """Bag of words hashed into 4096 dims, not normalised (the strict judge must normalise)."""

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen += list(texts)
        out = np.zeros((len(texts), 4096))
        for row, text in enumerate(texts):
            for word in text.lower().replace(",", " ").split():
                out[row, int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little") % 4096] += 1
        return out


GROUPS = {
    "forum": {"groups": {"crypt": "encryption keys ciphers", "hockey": "ice hockey teams players"}},
    "shop": {"groups": {"Kindle": "kindle ebooks novels", "Pets": "dog cat food"}, "same": [["Kindle", "Books"]]},
    "zh-shop": {"groups": {"水果": "新鲜 水果"}},
    "distractors": {"en": ["grocery shopping bread milk cheese"], "zh": ["理财 投资"]},
}
FORUM_TRUTH = np.array(["crypt", "crypt", "crypt", "hockey", "hockey"])
FORUM_LABELS = np.array([0, 0, 0, 1, 1])


def test_strict_judge_accepts_names_in_the_words_of_their_own_group():
    names = {0: "encryption keys", 1: "ice hockey players"}
    assert strict_name_quality(FORUM_LABELS, FORUM_TRUTH, names, WordBags(), GROUPS) == 1.0


def test_strict_judge_says_no_to_a_name_nearest_a_distractor_or_another_datasets_group():
    grocery = {0: "bread and milk shoppers", 1: "ice hockey players"}
    assert strict_name_quality(FORUM_LABELS, FORUM_TRUTH, grocery, WordBags(), GROUPS) == 2 / 5
    pets = {0: "encryption keys", 1: "dog food buyers"}  # shop's group, not a forum category
    assert strict_name_quality(FORUM_LABELS, FORUM_TRUTH, pets, WordBags(), GROUPS) == 3 / 5


def test_strict_judge_counts_unnamed_and_noise_users_in_the_denominator():
    labels = np.array([0, 0, -1, 1, 1])
    assert strict_name_quality(labels, FORUM_TRUTH, {0: "encryption keys", 1: ""}, WordBags(), GROUPS) == 2 / 4
    assert strict_name_quality(labels, FORUM_TRUTH, {}, WordBags(), GROUPS) is None


def test_strict_judge_normalises_so_a_long_description_does_not_win_by_length():
    groups = {"forum": {"groups": {"hockey": "ice hockey", "crypt": "ciphers"}},
              "distractors": {"en": ["ice hockey ice hockey beer bread milk cheese wine"]}}
    truth, labels = np.array(["hockey", "crypt"]), np.array([0, 1])
    assert strict_name_quality(labels, truth, {0: "ice hockey", 1: "ciphers"}, WordBags(), groups) == 1.0


def test_same_lets_a_name_of_the_paired_department_count():
    truth = np.array(["Kindle", "Kindle", "Books", "Books"])  # Books has no description of its own
    labels = np.array([0, 0, 1, 1])
    names = {0: "kindle novels", 1: "kindle ebooks readers"}
    assert strict_name_quality(labels, truth, names, WordBags(), GROUPS) == 1.0
    apart = {**GROUPS, "shop": {"groups": GROUPS["shop"]["groups"]}}
    assert strict_name_quality(labels, truth, names, WordBags(), apart) == 0.5


def test_strict_judge_does_not_apply_to_unknown_categories():
    assert strict_name_quality([0, 1], ["x", "y"], {0: "a", 1: "b"}, WordBags(), GROUPS) is None
    # one of three categories known: under half, so still no judgement
    truth = ["crypt", "x", "y"]
    assert strict_name_quality([0, 1, 2], truth, {0: "a", 1: "b", 2: "c"}, WordBags(), GROUPS) is None


def test_the_pool_holds_only_descriptions_in_the_datasets_language():
    encoder = WordBags()
    strict_name_quality(FORUM_LABELS, FORUM_TRUTH, {0: "keys", 1: "hockey"}, encoder, GROUPS)
    pool = set(encoder.seen) - {"keys", "hockey"}
    assert pool == {"encryption keys ciphers", "ice hockey teams players", "kindle ebooks novels", "dog cat food",
                    "grocery shopping bread milk cheese"}
    encoder = WordBags()
    assert strict_name_quality([0, 0], ["水果", "水果"], {0: "新鲜 水果"}, encoder, GROUPS) == 1.0
    assert set(encoder.seen) - {"新鲜 水果"} == {"理财 投资"}


DEV_SETS = {
    "newsgroups-dev": """talk.politics.guns sci.crypt soc.religion.christian rec.sport.baseball sci.med rec.autos
        comp.windows.x comp.sys.mac.hardware misc.forsale comp.graphics talk.politics.misc talk.religion.misc
        sci.space rec.motorcycles sci.electronics comp.sys.ibm.pc.hardware alt.atheism talk.politics.mideast
        rec.sport.hockey comp.os.ms-windows.misc""",
    "amazon-2023": """All_Beauty Toys_and_Games Gift_Cards Cell_Phones_and_Accessories Industrial_and_Scientific
        Musical_Instruments Electronics Arts_Crafts_and_Sewing Health_and_Household Office_Products
        Grocery_and_Gourmet_Food Sports_and_Outdoors Tools_and_Home_Improvement Video_Games Kindle_Store
        Patio_Lawn_and_Garden Automotive CDs_and_Vinyl Beauty_and_Personal_Care Magazine_Subscriptions Software
        Movies_and_TV Pet_Supplies""",
    "zh-shopping": "书籍 平板 手机 水果 洗发水 蒙牛 衣服 计算机 酒店 热水器",
}


def test_shipped_groups_describe_every_dev_set_category():
    groups = load_groups()
    for dataset, categories in DEV_SETS.items():
        described = groups[dataset]["groups"]
        assert set(described) == set(categories.split())
        assert all(isinstance(d, str) and d.strip() for d in described.values())
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in d) for d in groups["zh-shopping"]["groups"].values())
    assert ["Kindle_Store", "Books"] in groups["amazon-2023"]["same"]
    for language in ("en", "zh"):
        distractors = groups["distractors"][language]
        assert 15 <= len(distractors) <= 25 and all(d.strip() for d in distractors)
    # each dev set's own categories pick its own section
    for dataset, categories in DEV_SETS.items():
        truth = categories.split()
        names = {i: groups[dataset]["groups"][c] for i, c in enumerate(truth)}
        assert strict_name_quality(list(range(len(truth))), truth, names, HashEncoder(), groups) == 1.0


def test_option_judgements_judge_every_offered_name_against_the_segments_majority():
    options = {0: ["bread and milk shoppers", "encryption keys"], 1: ["ice hockey players", "dog food buyers"]}
    judged = strict_option_judgements(FORUM_LABELS, FORUM_TRUTH, options, WordBags(), GROUPS)
    assert judged == {0: [False, True], 1: [True, False]}
    assert strict_option_judgements([0, 1], ["x", "y"], {0: ["a"], 1: ["b"]}, WordBags(), GROUPS) is None
