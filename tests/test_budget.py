"""A bounded LLM budget (`--llm-users`): the sample, the distilled placer, the budgeted run end to end,
and the lifecycle commands on a budgeted run. Fake engine and hash encoder: fixed by construction."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from tagger.cli import main
from tagger.config import make_config
from tagger.errors import ConfigError
from tagger.llm.fake import FakeEngine
from tagger.progress import PlainReporter
from tagger.run.segment import segment
from tagger.stages.embedding import create_encoder
from tagger.stages.placer import WARN_BELOW, DistilledPlacer, cross_validate
from tagger.stages.sampling import AUTO_LLM_USERS, Budget, least_confident, pregroups, stratified_sample

TOPICS = {
    "guitar": ["guitar", "strings", "amplifier", "chords", "fretboard", "pickups", "tuning", "capo"],
    "dog": ["dog", "leash", "puppy", "kibble", "collar", "treats", "kennel", "walks"],
    "baking": ["baking", "flour", "oven", "dough", "yeast", "sourdough", "pastry", "whisk"],
    "garden": ["garden", "tomatoes", "compost", "seedlings", "mulch", "pruning", "soil", "watering"],
}


@pytest.fixture
def topics_csv(tmp_path):
    """Four interest groups of 15 users, each user writing three comments from their group's words."""
    rng = np.random.default_rng(0)
    rows = []
    for topic, words in TOPICS.items():
        for u in range(15):
            for _ in range(3):
                picked = rng.choice(words, 4, replace=False)
                rows.append({"user_id": f"{topic}-{u:02d}", "text": f"my {picked[0]} and {picked[1]} with the "
                                                                      f"{picked[2]} and {picked[3]}"})
    path = tmp_path / "topics.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def budgeted(source, out=None, engine=None, **settings):
    config = make_config(engine="fake", embedder="hash", **{"llm_users": 24, **settings})
    return segment(source, config, out=out, engine=engine or FakeEngine(), encoder=create_encoder("hash"), report=False)


def tag_requests(engine: FakeEngine) -> int:
    return sum(1 for call in engine.calls for chat in call if "name groups" not in chat[0]["content"])


# --- the budget and the sample ------------------------------------------------------------------


def test_budget_settings():
    assert Budget.resolve("all", 10**6).llm_users == 10**6
    assert Budget.resolve("auto", AUTO_LLM_USERS).everyone  # up to the auto size: everyone, as before
    auto = Budget.resolve("auto", AUTO_LLM_USERS + 1)
    assert auto.llm_users == AUTO_LLM_USERS and not auto.everyone
    assert Budget.resolve(50, 20).everyone and Budget.resolve(5, 20).llm_users == 5
    budget = Budget.resolve(2000, 100_000)
    assert budget.first + budget.reserve == 2000 and 0 < budget.reserve < budget.first
    assert budget.line() == "LLM: 2,000 of 100,000 users"
    for bad in (0, "-5", "abc", "1.5"):
        with pytest.raises(ConfigError, match="must be a number of users"):
            make_config(llm_users=bad)
    assert make_config(llm_users="300").llm_users == 300


def test_stratified_sample_covers_every_group_reproducibly():
    groups = np.repeat(np.arange(5), [500, 300, 150, 40, 2])  # two tiny groups
    rows, weights = stratified_sample(groups, 60, seed=3)
    assert len(rows) == 60 and len(set(rows)) == 60 and np.all(np.diff(rows) > 0)
    taken = np.bincount(groups[rows], minlength=5)
    assert (taken >= np.minimum(np.bincount(groups), 3)).all()  # a floor of 3 (all of a group of 2)
    assert taken[0] > taken[1] > taken[2]  # the rest in proportion to size
    assert np.isclose(weights.sum(), len(groups))  # each drawn user stands for group size / drawn
    again, _ = stratified_sample(groups, 60, seed=3)
    other, _ = stratified_sample(groups, 60, seed=4)
    assert (again == rows).all() and not (other == rows).all()


def test_pregroups_and_least_confident():
    rng = np.random.default_rng(0)
    points = np.vstack([rng.normal(c, 0.05, (30, 4)) for c in np.eye(4) * 3])
    groups = pregroups(points, 4, seed=1)
    assert len(set(groups)) == 4 and (groups == pregroups(points, 4, seed=1)).all()
    assert all(len(set(groups[k * 30:(k + 1) * 30])) == 1 for k in range(4))
    confidence = np.array([0.9, 0.2, 0.5, 0.1, 0.3])
    assert least_confident(confidence, np.array([1, 1, 1, 0, 1], bool), 2).tolist() == [1, 4]


# --- the placer ---------------------------------------------------------------------------------


def test_placer_learns_separable_segments_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    features = np.vstack([rng.normal(c, 0.2, (40, 6)) for c in np.eye(6)[:3] * 2]).astype(np.float32)
    labels = np.repeat([0, 1, 2], 40)
    placer = DistilledPlacer().fit(features, labels)
    placed, confidence = placer.place(features)
    assert (placed == labels).all() and (confidence > 0.5).all() and (confidence <= 1).all()
    placer.save(tmp_path)
    loaded = DistilledPlacer.load(tmp_path)
    np.testing.assert_allclose(loaded.probabilities(features), placer.probabilities(features), atol=1e-6)
    agreement = cross_validate(features, labels)
    assert agreement.overall == 1.0 and set(agreement.per_segment) == {0, 1, 2} and not agreement.low
    noise = cross_validate(features, rng.permutation(labels))  # labels the features do not hold
    assert noise.overall < WARN_BELOW and noise.low
    assert sum(n for n, _ in noise.per_segment.values()) == noise.users == 120
    assert DistilledPlacer.load(tmp_path / "none") is None


# --- a budgeted run -----------------------------------------------------------------------------


def test_the_llm_reads_only_its_budget_and_invents_no_tags(topics_csv, tmp_path):
    engine = FakeEngine()
    result = budgeted(topics_csv, tmp_path / "run", engine)
    users = result.users.set_index("user_id")
    assert tag_requests(engine) == 24
    unread = users[users["status"] == "unread"]
    assert len(unread) == 36 and unread["tags"].map(len).eq(0).all()
    assert (unread["assigned_by"] == "distilled").all() and unread["confidence"].between(0, 1).all()
    read = users[users["status"] != "unread"]
    assert read["confidence"].isna().all() and set(read["assigned_by"]) <= {"cluster", "nearest"}
    assert (users["segment_id"] >= 0).all()
    tags = {t["user_id"]: t for t in map(json.loads, (tmp_path / "run" / "tags.jsonl").read_text().splitlines())}
    assert all(tags[u]["status"] == "unread" and not tags[u]["tags"] for u in unread.index)
    summary = result.summary.model_dump(mode="json")
    assert summary["llm"] | {"users": 60, "llm_users": 24, "read": 24} == summary["llm"]
    assert summary["llm"]["sample"] + summary["llm"]["reserve"] == 24
    assert summary["counts"]["unread"] == 36 and summary["counts"]["distilled"] == 36
    agreement = summary["agreement"]
    assert 0 <= agreement["overall"] <= 1 and agreement["per_segment"]
    assert {s["segment_id"] for s in agreement["per_segment"]} <= set(result.segments["segment_id"])
    # segment-level top tags stay facts: tags some members were given by the LLM
    given = {t["tag"] for u in tags.values() for t in u["tags"]}
    assert set(t for ts in result.segments["top_tags"] for t in ts) <= given
    # four groups, and each segment is mostly one of them
    topic = users.index.str.split("-").str[0]
    purity = pd.crosstab(users["segment_id"], topic).max(axis=1).sum() / len(users)
    assert purity >= 0.9


def test_a_budgeted_run_is_reproducible_and_auto_below_its_size_reads_everyone(topics_csv):
    first, again = budgeted(topics_csv), budgeted(topics_csv)
    pd.testing.assert_frame_equal(first.users, again.users)
    auto, everyone = budgeted(topics_csv, llm_users="auto"), budgeted(topics_csv, llm_users="all")
    assert (auto.users["status"] != "unread").all()
    pd.testing.assert_frame_equal(auto.users, everyone.users)


def test_progress_and_terminal_show_the_budget(topics_csv, tmp_path, capsys):
    stream = io.StringIO()
    config = make_config(engine="fake", embedder="hash", llm_users=24)
    segment(topics_csv, config, engine=FakeEngine(), encoder=create_encoder("hash"), report=False,
            reporter=PlainReporter(stream, ticker=False))
    assert "LLM: 24 of 60 users" in stream.getvalue()
    code = main(["segment", str(topics_csv), "--out", str(tmp_path / "run"), "--engine", "fake", "--embedder", "hash",
                 "--llm-users", "24"])
    printed = " ".join(capsys.readouterr().out.split())
    assert code == 0 and "the LLM read 24 of 60 users (--llm-users 24); 36 were placed" in printed
    assert "placer agreement" in printed
    report = (tmp_path / "run" / "report.html").read_text()
    assert 'id="agreement"' in report and "the LLM read 24 of 60 users" in report


def test_a_low_agreement_prints_a_warning():
    from tagger.run.report_text import budget_lines

    from tagger.summary import summary_from_dict

    data = {"format_version": 1, "tagger_version": "0", "config": {}, "model": "m", "embedder": "e",
            "counts": {"users": 10, "unread": 0}, "agreement": {
                "overall": 0.6, "users": 10, "folds": 5, "warn_below": 0.85, "low": True,
                "per_segment": [{"segment_id": 0, "name": "a", "users": 5, "agreement": 0.4}]}}
    lines = budget_lines(summary_from_dict(data))
    assert lines[-1].startswith("warning: the placer agrees with the full vectors on only 60%")
    data["agreement"] |= {"overall": 0.9, "low": False}
    assert not any(line.startswith("warning") for line in budget_lines(summary_from_dict(data)))


def test_every_run_saves_a_placer_and_its_agreement(topics_csv, tmp_path):
    from tagger.lifecycle.segment_model import load_model

    result = budgeted(topics_csv, tmp_path / "run", llm_users="all")
    model = load_model(tmp_path / "run")
    assert model.placer is not None and model.training is not None
    assert result.summary.agreement.overall >= 0.9 and result.summary.counts.unread == 0
    assert model.placer.features == model.centroids.shape[1]  # the LLM-free vector's dimensions
    assert not any(name.endswith(".pkl") for name in model.manifest.placer.files)


# --- the lifecycle commands on a budgeted run ----------------------------------------------------


def test_recut_of_a_budgeted_run_cuts_the_sample_and_places_the_rest_again(topics_csv, tmp_path):
    from tagger.lifecycle.segment_model import load_model
    from tagger.run.recut import recut_run

    budgeted(topics_csv, tmp_path / "run")
    recut = recut_run(tmp_path / "run", 2, out=tmp_path / "two", engine=FakeEngine(), encoder=create_encoder("hash"))
    users = recut.users
    assert users["segment_id"].nunique() == 2 and (users["segment_id"] >= 0).all()  # ids continue the run's
    assert (users["assigned_by"] == "distilled").sum() == 36 and users.loc[users["status"] == "unread", "confidence"].notna().all()
    model = load_model(tmp_path / "two")
    assert model.placer.classes_.tolist() == [0, 1] and recut.summary.agreement.per_segment
    # the placer fitted to the new segments places the unread users where they are now
    assert (users[users["assigned_by"] == "distilled"].groupby("segment_id").size() > 0).all()


def test_rename_and_drift_work_on_a_budgeted_run(topics_csv, tmp_path, capsys):
    from tagger.lifecycle.drift import drift

    budgeted(topics_csv, tmp_path / "run")
    code = main(["rename", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    users = pd.read_parquet(tmp_path / "run" / "users.parquet")
    assert (users.loc[users["status"] == "unread", "assigned_by"] == "distilled").all()
    budgeted(topics_csv, tmp_path / "all", llm_users="all")
    report = drift(tmp_path / "all", tmp_path / "run")
    # both runs' users, read or placed by the placer, placed by each run's model
    assert report["matched"] and {r["verdict"] for r in report["segments"]} <= {"same", "moved", "vanished"}
    assert abs(sum(r["old_share"] for r in report["segments"]) - 1) < 0.01
