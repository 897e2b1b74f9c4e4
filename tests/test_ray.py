"""Distributed tagging through Ray Data (local cluster on this machine). Skipped without ray."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ray")
pytest.importorskip("ray.data")

from tagger import prompts  # noqa: E402
from tagger.cache import ResultCache  # noqa: E402
from tagger.stages.data import Columns, build_documents, read_table  # noqa: E402
from tagger.llm.base import GenerationParams, create_engine  # noqa: E402
from tagger.llm.fake import FakeEngine  # noqa: E402
from tagger.stages.tagging import TagOptions, tag_users  # noqa: E402

from tests.conftest import AMAZON_SAMPLE  # noqa: E402


def _documents(n: int):
    return build_documents(read_table(AMAZON_SAMPLE, Columns()), Columns())[:n]


def test_ray_replicas_return_every_answer_in_order():
    """Two replicas, small batches: sharded answers come back matched to their own users."""
    documents = _documents(24)
    template = prompts.load("tag")
    params = GenerationParams(max_tokens=64)
    engine = create_engine("ray", model="fake", inner="fake", replicas=2, batch_size=5, cpus_per_replica=0.5)
    try:
        distributed = tag_users(documents, engine, template, TagOptions(params=params), cache=ResultCache(None))
    finally:
        engine.close()
    local = tag_users(documents, FakeEngine(), template, TagOptions(params=params), cache=ResultCache(None))
    assert [u.user_id for u in distributed] == [d.user_id for d in documents]
    assert [u.model_dump() for u in distributed] == [u.model_dump() for u in local]
    assert sum(u.status == "tagged" for u in distributed) >= len(documents) // 2


@pytest.mark.engine
def test_ray_vllm_replica_tags_real_users():
    """One vLLM (CPU) replica inside a Ray actor tags a few real users under the grounded schema.

    The replica's engine takes tagger's CPU defaults: an absolute KV cache size, so what the
    actor, Ray's object store and this test process already hold cannot make it refuse to start."""
    documents = _documents(6)
    engine = create_engine("ray", model="embedded", inner="vllm", replicas=1, batch_size=8, cpus_per_replica=1,
                           engine_options={"max_model_len": 1024})
    try:
        tagged = tag_users(documents, engine, prompts.load("tag"), TagOptions(params=GenerationParams(max_tokens=64)),
                           cache=ResultCache(None))
    finally:
        engine.close()
    assert [u.user_id for u in tagged] == [d.user_id for d in documents]
    assert sum(u.status == "tagged" for u in tagged) >= 4
    for user, document in zip(tagged, documents, strict=True):
        assert user.prompt_tokens > 0
        for tag in user.tags:  # grounded: every tag is a phrase of the user's own comments
            assert all(word in document.text.lower() for word in tag.tag.split())


def test_ray_encoder_replicas_give_the_local_vectors_in_order():
    """Two encoder replicas on a local Ray cluster embed every comment as the local encoder does."""
    from tagger.stages.embedding import create_encoder, text_vectors
    from tagger.stages.ray_encoder import RayEncoder

    documents = _documents(40)
    local = create_encoder("hash")
    encoder = RayEncoder("hash", replicas=2, cpus_per_replica=0.5, batch_size=16, chunk=100, local_below=10)
    try:
        distributed = text_vectors(documents, encoder, item_weight=0.0)
    finally:
        encoder.close()
    assert encoder.jobs >= 2  # the comments went to the replicas in several cluster jobs
    np.testing.assert_allclose(distributed, text_vectors(documents, local, item_weight=0.0), atol=1e-6)
    assert encoder.encode(["a few words"]).shape == (1, local.dim)  # a small call stays on the driver
