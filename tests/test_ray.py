"""Distributed tagging through Ray Data (local cluster on this machine). Skipped without ray."""

from __future__ import annotations

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
