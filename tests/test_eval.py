"""The evaluation harness end to end on the shipped samples: fake engine, hash embedder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from eval import baselines
from eval.harness import dataset_names, main
from eval.metrics import cluster_scores, name_quality, true_segments
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
        assert {"tagging", "naming"} <= set(rows["tagger"]["stages_s"])
    table = (tmp_path / "t.md").read_text()
    assert table.count("| tagger |") == 2 and "| NMI | ARI | coverage | segments | name quality |" in table


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
