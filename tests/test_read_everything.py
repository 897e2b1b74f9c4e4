"""Every comment of every user is read: the embedding sees all of it, however long; only the
tagging prompt is held to --doc-tokens."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tagger.schemas import UserDocument
from tagger.stages.data import Columns, LoadStats, build_documents
from tagger.stages.embedding import EmbedStats, HashEncoder, comment_means, head, pieces


class WindowedEncoder(HashEncoder):
    """The hash encoder, refusing any text longer than its window (as a real model would cut it)."""

    window = 5

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, texts):
        texts = list(texts)
        assert all(len(t.split(" ")) <= self.window for t in texts), texts
        self.seen += texts
        return super().encode(texts)


def test_pieces_fit_the_window_evenly_and_cover_the_text():
    text = " ".join(f"w{i}" for i in range(12))
    parts = pieces(text, 5)
    assert [len(p.split()) for p in parts] == [4, 4, 4]
    assert " ".join(parts) == text
    assert pieces("short text", 5) == ["short text"] and pieces(text, None) == [text]
    assert pieces("很" * 600, 256) == ["很" * 200] * 3  # unspaced Chinese: by characters
    assert head(text, 3) == "w0 w1 w2" and head("好" * 10, 4) == "好" * 4


def test_a_long_comment_is_read_to_its_end():
    encoder = WindowedEncoder()
    tail_only = UserDocument(user_id="a", comments=["x " * 20 + "guitar strings and amp"], n_comments=1)
    vectors = comment_means([tail_only], encoder)
    assert any("guitar" in t for t in encoder.seen)  # the tail past the window was embedded
    expected = HashEncoder().encode(pieces(tail_only.comments[0], 5))
    weights = np.array([len(p) for p in pieces(tail_only.comments[0], 5)], np.float32)
    want = (expected * weights[:, None]).sum(axis=0)
    np.testing.assert_allclose(vectors[0], want / np.linalg.norm(want), atol=1e-5)


def test_every_comment_counts_and_streaming_does_not_change_the_result():
    docs = [UserDocument(user_id=str(u), comments=[f"comment {u} {c} about dogs" for c in range(7)], n_comments=7)
            for u in range(9)]
    stats = EmbedStats()
    whole = comment_means(docs, HashEncoder(), chunk=10_000, stats=stats)
    streamed = comment_means(docs, HashEncoder(), chunk=3)
    np.testing.assert_allclose(whole, streamed, atol=1e-6)
    assert stats.comments == 63 and stats.pieces == 63
    one = HashEncoder().encode(docs[4].comments).sum(axis=0)
    np.testing.assert_allclose(whole[4], one / np.linalg.norm(one), atol=1e-5)


def test_progress_counts_comments():
    docs = [UserDocument(user_id=str(u), comments=["a b c d e f g h i j k l", "b"], n_comments=2) for u in range(4)]
    ticks: list[int] = []
    comment_means(docs, WindowedEncoder(), chunk=2, on_chunk=ticks.append)
    assert sum(ticks) == 8


def test_the_loader_keeps_every_comment_and_caps_only_on_request():
    frame = pd.DataFrame({"user_id": ["u"] * 30 + ["v"], "text": [f"post number {i} " * 40 for i in range(30)] + ["hi"],
                          "ts": list(range(30)) + [0]})
    stats = LoadStats()
    docs = build_documents(frame, Columns(time="ts"), stats)
    assert len(docs[0].comments) == 30 and stats.comments_kept == 31
    assert docs[0].comments[0].startswith("post number 29")  # newest first
    capped = LoadStats()
    docs = build_documents(frame, Columns(time="ts"), capped, max_comments=4)
    assert len(docs[0].comments) == 4 and capped.beyond_max_comments_rows == 26 and docs[0].n_comments == 30
    assert sum(capped.row_reasons().values()) == capped.rows == 31
