"""Each text embedded once: the vector store keyed by encoder identity and text."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tagger.config import RunConfig
from tagger.llm.fake import FakeEngine
from tagger.paths import tagger_home
from tagger.run.segment import segment
from tagger.stages.embedding import HashEncoder
from tagger.stages.vector_store import STORE_FILE, StoredEncoder, VectorStore


class Counting(HashEncoder):
    """The hash encoder, remembering every text it was asked to embed."""

    def __init__(self, name: str = "hash"):
        self.name, self.seen = name, []

    def encode(self, texts):
        self.seen += list(texts)
        return super().encode(texts)


def test_a_text_is_embedded_once_and_read_back_exactly(tmp_path):
    store = VectorStore(tmp_path / STORE_FILE)
    inner = Counting()
    stored = StoredEncoder(inner, store, "hash:one")
    first = stored.encode(["red apples", "green pears", "red apples"])
    assert inner.seen == ["red apples", "green pears"]  # the repeat within the call too
    second = stored.encode(["green pears", "blue plums"])
    assert inner.seen[2:] == ["blue plums"] and stored.counts.summary() == {"hits": 1, "misses": 3}
    np.testing.assert_array_equal(second[0], first[1])  # the very vector the first call used
    np.testing.assert_allclose(first, HashEncoder().encode(["red apples", "green pears", "red apples"]), atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1, atol=1e-6)
    other = Counting()
    StoredEncoder(other, store, "hash:two").encode(["red apples"])  # another encoder's identity
    assert other.seen == ["red apples"]


def test_a_rerun_embeds_no_comment_again(comments_csv):
    first, again = Counting(), Counting()
    before = segment(comments_csv, RunConfig(engine="fake", embedder="hash"), engine=FakeEngine(), encoder=first)
    after = segment(comments_csv, RunConfig(engine="fake", embedder="hash"), engine=FakeEngine(), encoder=again)
    comments = {c for d in before.documents for c in d.comments}
    assert comments <= set(first.seen) and not comments & set(again.seen)
    assert before.summary.embedding.store.misses > 0 and after.summary.embedding.store.misses == 0
    assert after.summary.embedding.store.hits == before.summary.embedding.store.misses
    pd.testing.assert_frame_equal(before.users, after.users)
    assert (tagger_home() / STORE_FILE).exists()
    # a comment that changed is the only one embedded again
    frame = pd.read_csv(comments_csv)
    frame.loc[0, "text"] = "a brand new comment about violins"
    changed = comments_csv.with_name("changed.csv")
    frame.to_csv(changed, index=False)
    third = Counting()
    segment(changed, RunConfig(engine="fake", embedder="hash"), engine=FakeEngine(), encoder=third)
    assert "a brand new comment about violins" in third.seen and not comments & set(third.seen)


def test_no_cache_keeps_no_store(comments_csv):
    result = segment(comments_csv, RunConfig(engine="fake", embedder="hash", cache=False), engine=FakeEngine(),
                     encoder=Counting())
    assert result.summary.embedding.store is None and not (tagger_home() / STORE_FILE).exists()
