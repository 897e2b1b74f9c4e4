"""Item titles in the user vector (--item-col, --item-weight): what a user reviewed counts beside
what they wrote."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from tagger.cli import main
from tagger.schemas import TaggedUser, UserDocument
from tagger.stages.embedding import HashEncoder, user_vectors

FAST = ["--engine", "fake", "--embedder", "hash"]
GROUPS = {"dog": ["dog leash", "dog bed", "dog treats"], "guitar": ["guitar strings", "guitar picks", "guitar strap"]}


def _unit(v):
    return v / np.linalg.norm(v)


def test_items_blend_into_the_text_side_and_users_without_items_keep_their_text():
    enc = HashEncoder()
    items = [["dog leash", "dog bed", "dog leash"], ["guitar strings"], []]
    docs = [UserDocument(user_id=str(i), comments=["works as described", "good value"], items=it, n_comments=2)
            for i, it in enumerate(items)]
    users = [TaggedUser(user_id=str(i), status="failed") for i in range(len(docs))]
    plain, _, _ = user_vectors(users, docs, enc, tag_weight=0.0, whole_document=False)
    blended, has, _ = user_vectors(users, docs, enc, tag_weight=0.0, whole_document=False, item_weight=0.4)
    assert has.all()
    text = _unit(enc.encode(docs[0].comments).sum(axis=0))
    for i, it in enumerate(items):
        if not it:  # nothing reviewed: the text alone, as without items
            np.testing.assert_allclose(blended[i], plain[i], atol=1e-6)
            continue
        # a title reviewed twice counts twice
        expected = _unit(0.6 * text + 0.4 * _unit(enc.encode(it).sum(axis=0)))
        np.testing.assert_allclose(blended[i], expected, atol=1e-5)


def _same_words_other_items(tmp_path):
    """Two groups of eight users who write the same words, user for user, and review different
    items: dog-3 and guitar-3 write identical comments. Only the items tell the groups apart."""
    rows = []
    for group, titles in GROUPS.items():
        for u in range(8):
            for c, text in enumerate(["works as described, arrived on time", f"good value for the price {'!' * (u % 3)}"]):
                rows.append({"user_id": f"{group}-{u}", "text": text, "item": titles[(u + c) % 3]})
    path = tmp_path / "same-words.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _segments(capsys, path, out, *extra):
    code = main(["segment", str(path), "--out", str(out), "--item-col", "item", *FAST, *extra])
    capsys.readouterr()
    assert code == 0
    users = pd.read_parquet(out / "users.parquet")
    return dict(zip(users["user_id"], users["segment_id"], strict=True))


def test_items_separate_users_who_write_alike(capsys, tmp_path):
    path = _same_words_other_items(tmp_path)
    by_items = _segments(capsys, path, tmp_path / "items")
    groups = {g: {by_items[f"{g}-{u}"] for u in range(8)} for g in GROUPS}
    assert not groups["dog"] & groups["guitar"]  # no segment holds both groups
    assert json.loads((tmp_path / "items" / "run.json").read_text())["config"]["item_weight"] == 0.5

    # Without items identical comments give identical vectors: each pair shares a segment.
    words_only = _segments(capsys, path, tmp_path / "words", "--item-weight", "0")
    assert all(words_only[f"dog-{u}"] == words_only[f"guitar-{u}"] for u in range(8))


def test_an_item_weight_outside_0_to_1_is_refused(capsys, tmp_path):
    code = main(["segment", str(_same_words_other_items(tmp_path)), "--out", str(tmp_path / "r"), "--item-col", "item",
                 "--item-weight", "2", *FAST])
    _, err = capsys.readouterr()
    assert code == 2 and "item_weight" in err and not (tmp_path / "r").exists()


def test_runs_saved_before_item_weights_are_read_without_items(capsys, tmp_path):
    """A run folder written before --item-weight existed was clustered on text alone: assign and
    drift must rebuild its users' vectors the same way."""
    from tagger.run.context import run_config

    out = tmp_path / "run"
    _segments(capsys, _same_words_other_items(tmp_path), out)
    assert run_config(out).item_weight == 0.5
    summary = json.loads((out / "run.json").read_text())
    del summary["config"]["item_weight"]
    del summary["format_version"]  # as run.json was written before item weights (and format versions)
    (out / "run.json").write_text(json.dumps(summary))
    assert run_config(out).item_weight == 0.0
