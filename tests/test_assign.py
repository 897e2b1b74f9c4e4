from __future__ import annotations

import json

import numpy as np
import pandas as pd

from tagger.cli import main
from tagger.lifecycle.assign import place
from tagger.lifecycle.segment_model import build_model
from tagger.schemas import NO_SEGMENT as NONE
from tagger.stages.clustering import Segmenter

FAST = ["--engine", "fake", "--embedder", "hash"]


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_reassigning_training_users_gives_their_segments(run_dir, comments_csv, tmp_path, capsys):
    out = tmp_path / "assigned"
    code, stdout, _ = run(capsys, "assign", str(run_dir), str(comments_csv), "--out", str(out), "--llm")
    assert code == 0 and "got their original segment" in stdout
    summary = json.loads((out / "assign.json").read_text())
    assert summary["cache"]["misses"] == 0  # same prompts as training: every answer is cached
    assert summary["agreement"]["cluster"]["same_segment"] == 1.0
    training = pd.read_parquet(run_dir / "users.parquet")
    assigned = pd.read_parquet(out / "users.parquet")
    both = training.merge(assigned, on="user_id", suffixes=("_t", "_a"))
    members = both[both["assigned_by_t"] == "cluster"]
    assert len(members) and (members["segment_id_t"] == members["segment_id_a"]).all()
    assert np.allclose(members["strength_t"], members["strength_a"], atol=1e-3)


def test_new_users_are_tagged_and_placed(run_dir, tmp_path, capsys):
    new = tmp_path / "new.csv"
    # n1 writes what a training guitar user wrote (a new id, the same words); n2 is unlike anyone
    pd.DataFrame({"user_id": ["n1", "n1", "n1", "n2"],
                  "text": ["my guitar strings stay in tune !", "this guitar amplifier sounds warm !",
                           "guitar picks for practice !", "quantum chromodynamics lecture notes on lattice gauge"]}
                 ).to_csv(new, index=False)
    code, _, err = run(capsys, "assign", str(run_dir), str(new), "--out", str(tmp_path / "a"), "--llm")
    assert code == 0, err
    users = pd.read_parquet(tmp_path / "a" / "users.parquet").set_index("user_id")
    training = pd.read_parquet(run_dir / "users.parquet")
    guitar_segments = set(training[training["user_id"].str.startswith("guitar")]["segment_id"])
    assert users.loc["n1", "segment_id"] in guitar_segments and users.loc["n1", "assigned_by"] == "cluster"
    assert users.loc["n2", "strength"] < users.loc["n1", "strength"]
    assert set(users["assigned_by"]) <= {"cluster", "nearest", "outlier", "noise", "unsegmented"}
    assert ((users["segment_id"] == NONE) == users["segment_name"].isin(["none", ""])).all()


def test_assign_refuses_a_folder_without_model_and_writes_nothing(tmp_path, comments_csv, capsys):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "run.json").write_text(json.dumps({"config": {"engine": "fake"}}))
    code, _, err = run(capsys, "assign", str(tmp_path / "old"), str(comments_csv), "--out", str(tmp_path / "o"))
    assert code != 0 and err.startswith("error: ") and "no saved segment model" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def _toy_model(assign_noise=True):
    rng = np.random.default_rng(0)
    centers = np.eye(8)[:2] * 3
    x = np.vstack([c + 0.1 * rng.normal(size=(20, 8)) for c in centers])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.repeat([0, 1], 20)
    centroids = np.vstack([x[labels == k].mean(axis=0) for k in (0, 1)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    strengths = np.einsum("ij,ij->i", x, centroids[labels])
    model = build_model(Segmenter.from_labels(x, labels, strengths), names={0: "a", 1: "b"}, extractor=None,
                        manifest={})
    return model, x, labels, strengths


def test_place_rule_members_noise_and_none():
    model, x, labels, strengths = _toy_model()
    got, strength, how = place(model, x)
    assert (got == labels).all() and (how == "cluster").all() and np.allclose(strength, strengths, atol=1e-5)
    far = np.eye(8)[5:6]  # orthogonal to both segments
    between = (np.eye(8)[0] + np.eye(8)[1])[None, :]
    got, strength, how = place(model, np.vstack([far, between]))
    assert got[0] == NONE and how[0] == "outlier"  # fits worse than any training member
    assert how[1] in {"nearest", "outlier"} and strength[1] < strengths.min()
    got, _, how = place(model, far, assign_noise=False)
    assert got[0] == NONE and how[0] == "noise"


def test_nonlinear_reducer_places_in_full_space():
    model, x, labels, _ = _toy_model()

    class Umapish:  # a fitted reducer without linear components
        pass

    full = build_model(Segmenter.from_labels(x, labels, np.ones(len(x)) * 0.5, reducer=Umapish()), names={},
                       extractor=None, manifest={})
    assert full.manifest.placement_space == "full" and full.pca_components is None
    assert (place(full, x)[0] == labels).all()


def test_users_without_usable_text_stay_unsegmented_in_assign(run_dir, tmp_path, capsys):
    new = tmp_path / "new.csv"
    pd.DataFrame({"user_id": ["n1", "n1", "n1", "n2", "n2", "n3", None],
                  "text": ["my guitar strings stay in tune !", "this guitar amplifier sounds warm !",
                           "guitar picks for practice !", "12345", "3.5", "*** !!!", "orphan"]}
                 ).to_csv(new, index=False)
    code, printed, err = run(capsys, "assign", str(run_dir), str(new), "--out", str(tmp_path / "a"), "--llm")
    assert code == 0, err
    line = " ".join(printed.split())
    assert "read 7 rows, used 6 comments (6 embedded, 3 with an excerpt in the tagging prompt); not used: 1 without user id" in line
    users = pd.read_parquet(tmp_path / "a" / "users.parquet").set_index("user_id")
    empty = users.loc[["n2", "n3"]]
    assert (empty["segment_id"] == NONE).all() and (empty["segment_name"] == "").all()
    assert (empty["assigned_by"] == "unsegmented").all() and empty["reason"].str.startswith("no usable text").all()
    assert users.loc["n1", "segment_id"] != NONE and users.loc["n1", "reason"] == ""
    summary = json.loads((tmp_path / "a" / "assign.json").read_text())
    assert summary["counts"]["placed"] == 1 and summary["counts"]["by"]["unsegmented"] == 2
    assert summary["counts"]["rows"] == 7 and summary["counts"]["missing_user_id_rows"] == 1
    assert sum(summary["segment_sizes"].values()) == 1


def test_assign_places_with_the_distilled_placer_and_starts_no_llm(run_dir, comments_csv, tmp_path, monkeypatch):
    import tagger.run.context as context
    from tagger.run.assign import assign

    def no_engine(*args, **kwargs):
        raise AssertionError("assign without --llm started an engine")

    monkeypatch.setattr(context, "create_engine", no_engine)
    result = assign(run_dir, comments_csv, out=tmp_path / "a")
    users = result.users.set_index("user_id")
    assert (users["assigned_by"] == "distilled").all() and (users["status"] == "unread").all()
    assert users["tags"].map(len).eq(0).all()  # no tags invented for users the LLM did not read
    assert users["confidence"].between(0, 1).all() and (users["strength"] > 0).all()
    assert result.summary["llm"] is False and result.summary["counts"]["unread"] == 12
    assert result.summary["cache"]["hits"] == result.summary["cache"]["misses"] == 0
    # the training users, placed from their text alone, land in their own segments
    assert result.summary["agreement"]["same_segment"] == 1.0
    tags = [json.loads(line) for line in (tmp_path / "a" / "tags.jsonl").read_text().splitlines()]
    assert {t["status"] for t in tags} == {"unread"} and not any(t["tags"] for t in tags)


def test_assign_of_a_model_without_placer_says_to_pass_llm(run_dir, comments_csv, tmp_path, capsys):
    manifest_path = run_dir / "model" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["placer"]  # as a model saved before placers
    manifest_path.write_text(json.dumps(manifest))
    code, _, err = run(capsys, "assign", str(run_dir), str(comments_csv), "--out", str(tmp_path / "a"))
    assert code != 0 and err.startswith("error: ") and "--llm" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()
    code, _, err = run(capsys, "assign", str(run_dir), str(comments_csv), "--out", str(tmp_path / "b"), "--llm")
    assert code == 0, err
