"""The vectorised and parallel paths used at scale give what the per-user definitions give."""

from __future__ import annotations

import numpy as np

from tagger.stages.clustering import Segmenter
from tagger.stages.embedding import HashEncoder, user_vectors
from tagger.schemas import Tag, TaggedUser, UserDocument


def _unit(v):
    return v / np.linalg.norm(v)


def test_user_vectors_match_the_per_user_blend():
    enc = HashEncoder()
    words = [["hiking boots", "tent"], ["tent"], [], ["espresso", "grinder", "hiking boots"]]
    users = [TaggedUser(user_id=str(i), status="tagged" if w else "failed", tags=[Tag(tag=t) for t in w])
             for i, w in enumerate(words)]
    docs = [UserDocument(user_id=str(i), comments=[f"comment {i} about things", "another one"], n_comments=2)
            for i in range(len(words))]
    for weight in (1.0, 0.3):
        vectors, has, tag_vectors = user_vectors(users, docs, enc, tag_weight=weight, whole_document=False)
        for i, w in enumerate(words):
            text = _unit(enc.encode(docs[i].comments).sum(axis=0))
            parts = []
            if w and weight > 0:
                parts.append(weight * _unit(np.mean([tag_vectors[t] for t in w], axis=0)))
            if weight < 1:
                parts.append((1 - weight) * text)
            if not parts:
                assert not has[i] and not vectors[i].any()
                continue
            assert has[i]
            np.testing.assert_allclose(vectors[i], _unit(np.sum(parts, axis=0)), atol=1e-5)


def test_sample_fit_places_every_user_and_keeps_fitted_labels():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 24))
    vectors = np.vstack([c + 0.15 * rng.normal(size=(600, 24)) for c in centres])
    full = Segmenter(seed=0, consensus=0, min_segment_size=40).fit(vectors)
    sampled = Segmenter(seed=0, consensus=0, min_segment_size=40, max_fit_users=800).fit(vectors)
    assert (sampled.labels_ >= 0).all()
    # Placing the rest in parallel chunks must agree with fitting on everyone on clear blobs.
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(full.labels_, sampled.labels_) > 0.95
