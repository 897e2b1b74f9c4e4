"""The users' phrase space beside the encoder (tagger.stages.lexical): data fixed by construction."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tagger.cli import main
from tagger.lifecycle.drift import drift
from tagger.lifecycle.segment_model import load_model
from tagger.stages.clustering import Segmenter
from tagger.stages.lexical import LexicalSpace, semantic_part

FAST = ["--engine", "fake", "--embedder", "hash"]
X_WORDS = ["xterm", "motif", "widget", "xlib", "window manager", "x server", "twm", "xview"]
IMAGE_WORDS = ["jpeg", "bitmap", "gif", "tiff", "image format", "ray tracing", "pixel", "polygon"]


def _two_groups(per_group: int = 30, seed: int = 0) -> tuple[list[list[str]], np.ndarray]:
    """Users of two groups, each writing 4 of their group's 8 phrases and 2 of 6 everyone writes."""
    rng = np.random.default_rng(seed)
    common = ["computer", "program", "version", "problem", "help", "file"]
    terms, group = [], []
    for g, words in enumerate((X_WORDS, IMAGE_WORDS)):
        for _ in range(per_group):
            terms.append([*rng.choice(words, 4, replace=False).tolist(), *rng.choice(common, 2, replace=False).tolist()])
            group.append(g)
    return terms, np.array(group)


def test_the_words_part_users_the_encoder_cannot():
    terms, group = _two_groups()
    # The encoder reads every user alike (one direction plus a little noise): nothing to split on.
    semantic = np.tile(np.eye(16, dtype=np.float32)[0], (len(terms), 1))
    semantic += np.random.default_rng(1).normal(0, 0.01, semantic.shape).astype(np.float32)
    space = LexicalSpace.fit(terms, dims=8, weight=0.7)
    assert space is not None
    joined = space.join(semantic, terms)
    assert joined.shape == (len(terms), 16 + space.dims)
    assert np.allclose(np.linalg.norm(joined, axis=1), 1, atol=1e-5)
    labels = Segmenter(consensus=20, levels=1, n_segments=2).fit(joined).labels_
    # exactly the two groups: one label per group, different labels
    assert len(set(labels[group == 0])) == 1 and len(set(labels[group == 1])) == 1
    assert labels[group == 0][0] != labels[group == 1][0]
    # the encoder alone cannot: each of its two segments mixes the groups
    alone = Segmenter(consensus=20, levels=1, n_segments=2).fit(semantic).labels_
    assert all(len(set(group[alone == k])) == 2 for k in set(alone))


def test_the_encoders_columns_keep_its_direction():
    terms, _ = _two_groups(per_group=10)
    semantic = np.random.default_rng(2).normal(size=(len(terms), 12)).astype(np.float32)
    semantic /= np.linalg.norm(semantic, axis=1, keepdims=True)
    space = LexicalSpace.fit(terms, dims=4, weight=0.7)
    joined = space.join(semantic, terms)
    assert np.allclose(semantic_part(joined, 12), semantic, atol=1e-5)
    # a mean of joined vectors keeps the direction of the mean of the encoder's vectors
    mean = semantic_part(joined[:10].mean(axis=0, keepdims=True), 12)[0]
    expected = semantic[:10].mean(axis=0)
    assert np.allclose(mean, expected / np.linalg.norm(expected), atol=1e-5)


def test_unknown_phrases_and_users_without_a_vector():
    terms, _ = _two_groups(per_group=10)
    space = LexicalSpace.fit(terms, dims=4, weight=1.0)
    lexical = space.transform([["never seen", "nowhere"], []])
    assert lexical.shape == (2, space.dims) and not lexical.any()
    semantic = np.zeros((2, 5), np.float32)
    semantic[1, 0] = 1.0
    joined = space.join(semantic, [X_WORDS[:3], X_WORDS[:3]])
    assert not joined[0].any()  # no encoder vector: no vector at all, as before
    assert np.isclose(np.linalg.norm(joined[1]), 1.0)


def test_nothing_shared_gives_no_space():
    assert LexicalSpace.fit([["a"], ["b"], ["c"]], dims=5, weight=0.7) is None
    assert LexicalSpace.fit([], dims=5, weight=0.7) is None


def test_a_phrase_one_user_wrote_is_not_in_the_space():
    terms, _ = _two_groups(per_group=5)
    space = LexicalSpace.fit([*terms, ["only mine"]], dims=3, weight=0.7)
    assert "only mine" not in space.vocabulary and "xterm" in space.vocabulary


def test_saved_space_projects_alike(tmp_path):
    terms, _ = _two_groups(per_group=8)
    space = LexicalSpace.fit(terms, dims=5, weight=0.7)
    info = space.save(tmp_path)
    loaded = LexicalSpace.load(tmp_path, info)
    assert loaded.vocabulary == space.vocabulary and loaded.weight == 0.7
    assert np.allclose(loaded.transform(terms), space.transform(terms))


def test_fit_is_seeded():
    terms, _ = _two_groups(per_group=12)
    one = LexicalSpace.fit(terms, dims=6, weight=0.7, seed=3)
    two = LexicalSpace.fit(terms, dims=6, weight=0.7, seed=3)
    assert np.array_equal(one.components, two.components)


def _run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_run_saves_its_phrase_space_and_assign_uses_it(comments_csv, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _run(capsys, "segment", str(comments_csv), "--out", str(out), "--no-report", *FAST)
    assert code == 0, err
    model = load_model(out)
    assert model.lexical is not None and model.lexical.weight == 0.7
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    assert manifest["lexical"]["dims"] == model.lexical.dims and manifest["embedder_dim"] == 256  # hash: 256
    assert model.semantic_dims == 256 and model.centroids.shape[1] == 256 + model.lexical.dims
    # the training users, placed again through the saved space, land where they were
    code, _, err = _run(capsys, "assign", str(out), str(comments_csv), "--out", str(tmp_path / "a"))
    assert code == 0, err
    both = pd.read_parquet(out / "users.parquet").merge(pd.read_parquet(tmp_path / "a" / "users.parquet"),
                                                        on="user_id", suffixes=("_t", "_a"))
    assert (both["segment_id_t"] == both["segment_id_a"]).all()
    # drift compares the encoder's columns only: a run against itself matches every segment fully
    report = drift(out, out)
    assert not report["new"] and not report["vanished"]
    assert all(m["similarity"] > 0.999 for m in report["matched"])


def test_lexical_weight_zero_is_the_encoder_alone(comments_csv, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _run(capsys, "segment", str(comments_csv), "--out", str(out), "--no-report", "--lexical-weight", "0",
                        *FAST)
    assert code == 0, err
    model = load_model(out)
    assert model.lexical is None and model.centroids.shape[1] == 256
    assert not (out / "model" / "lexical_components.npy").exists()


@pytest.mark.parametrize("value", ["-1", "5"])
def test_a_lexical_weight_out_of_range_is_refused(comments_csv, tmp_path, capsys, value):
    out = tmp_path / "run"
    code, _, err = _run(capsys, "segment", str(comments_csv), "--out", str(out), "--lexical-weight", value, *FAST)
    assert code != 0 and "lexical_weight" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
