from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tagger.stages.candidates import CandidateExtractor
from tagger.cli import main
from tagger.stages.embedding import HashEncoder
from tagger.errors import ModelError
from tagger.lifecycle.segment_model import MODEL_DIR, check_embedder, load_clusterer, load_model

FAST = ["--engine", "fake", "--embedder", "hash"]


def test_segment_saves_a_loadable_model(run_dir):
    summary = json.loads((run_dir / "run.json").read_text())
    assert summary["segment_model"]["path"] == MODEL_DIR
    model = load_model(run_dir)
    assert model.manifest.embedder == "hash" and model.manifest.model == summary["model"]
    assert model.manifest.prompts["tag"] == summary["prompts"]["tag"]["sha256"]
    assert len(model.segments) == len(model.centroids) == summary["counts"]["segments"]
    assert np.allclose(np.linalg.norm(model.centroids, axis=1), 1, atol=1e-5)
    assert len(model.members_label) == summary["counts"]["users_in_clusters"]
    assert model.members_reduced.shape[0] == len(model.members_label)
    assert all(s["strength_floor"] <= 1 and s["radius"] >= 0 for s in model.segments)
    assert not list((run_dir / MODEL_DIR).glob("*.pkl")) or model.manifest.clusterer.packages["hdbscan"]


def test_saved_frequencies_reproduce_training_candidates(run_dir, comments_csv):
    from tagger.run.context import run_config
    from tagger.pipeline import load_documents

    documents, _ = load_documents(comments_csv, run_config(run_dir))
    texts = [d.text for d in documents]
    fresh = CandidateExtractor().fit(texts)
    saved = load_model(run_dir).extractor()
    assert saved.n_ == fresh.n_
    for text in texts + ["a guitar amplifier for my dog"]:
        assert saved.candidates(text) == fresh.candidates(text)


def test_saved_model_merges_plurals_as_training_did(comments_csv, tmp_path, capsys):
    # In training "shampoos" became "shampoo" because the text also holds "shampoo"; a phrase
    # held by one user is not among the saved frequencies, yet the model must still know the
    # singular, or a training user gets other candidates (a new prompt, no cached answer) when
    # assigned again. On a 90 % sample of the demo 16 of 180 users did.
    frame = pd.read_csv(comments_csv)
    extra = pd.DataFrame([{"user_id": "hair-0", "text": "these shampoos smell nice, the shampoos lather, a fine shampoo",
                           "ts": 1, "item": "x"}])
    source = tmp_path / "plurals.csv"
    pd.concat([frame, extra]).to_csv(source, index=False)
    out = tmp_path / "run"
    assert main(["segment", str(source), "--out", str(out), "--no-report", *FAST]) == 0
    capsys.readouterr()
    from tagger.run.context import run_config
    from tagger.pipeline import load_documents

    texts = [d.text for d in load_documents(source, run_config(out))[0]]
    fresh = CandidateExtractor().fit(texts)
    saved = load_model(out).extractor()
    assert "shampoo" in fresh.candidates(texts[-1]) and fresh.df_["shampoo"] == 1
    for text in texts:
        assert saved.candidates(text) == fresh.candidates(text)


def test_load_refuses_another_format_version(run_dir):
    manifest = run_dir / MODEL_DIR / "manifest.json"
    data = json.loads(manifest.read_text())
    data["format_version"] = 99
    manifest.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="format version 99") as err:
        load_model(run_dir)
    assert "\n" not in str(err.value)


def test_load_refuses_a_run_without_model(tmp_path):
    with pytest.raises(ModelError, match="no saved segment model"):
        load_model(tmp_path)


def test_embedder_mismatch_is_refused(run_dir):
    model = load_model(run_dir)
    check_embedder(model, HashEncoder())  # the same embedder passes

    class Renamed(HashEncoder):
        name = "minilm"

    class Changed(HashEncoder):
        def encode(self, texts):
            return super().encode([t[::-1] for t in texts])

    with pytest.raises(ModelError, match="built with embedder 'hash'"):
        check_embedder(model, Renamed())
    with pytest.raises(ModelError, match="different vectors"):
        check_embedder(model, Changed())


def test_pickled_clusterer_is_version_locked(comments_csv, tmp_path, capsys):
    """A single HDBSCAN fit (--consensus 0) is pickled; a consensus of fits has no one clusterer."""
    run_dir = tmp_path / "single-fit"
    assert main(["segment", str(comments_csv), "--out", str(run_dir), "--no-report", "--consensus", "0", *FAST]) == 0
    capsys.readouterr()
    model = load_model(run_dir)
    clusterer = load_clusterer(model)
    assert hasattr(clusterer, "prediction_data_") and clusterer.prediction_data_ is not None
    manifest = run_dir / MODEL_DIR / "manifest.json"
    data = json.loads(manifest.read_text())
    data["clusterer"]["packages"]["hdbscan"] = "0.0.1"
    manifest.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="hdbscan 0.0.1 ->"):
        load_clusterer(load_model(run_dir))
