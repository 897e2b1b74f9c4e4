from __future__ import annotations

import json

import pytest

from tagger import prompts
from tagger.cache import ResultCache
from tagger.llm.base import Completion, GenerationParams
from tagger.llm.fake import FakeEngine
from tagger.errors import EngineDown
from tagger.llm.structured import CallStats, Pacer, StructuredSettings, run_structured
from tagger.schemas import LLMSegmentName, LLMTag, LLMTagList, UserDocument
from tagger.stages.tagging import TagOptions, ground_evidence, ground_tags, quote_for_tag, tag_users

DOC = UserDocument(user_id="u1", comments=["My guitar strings stay in tune.", "Great dog leash for walks"], n_comments=2)


def options(**settings) -> TagOptions:
    return TagOptions(params=GenerationParams(max_tokens=50), **settings)


def answer(*pairs):
    return json.dumps({"tags": [{"tag": t, "evidence": e} for t, e in pairs]})


def test_evidence_must_come_from_the_users_comments():
    assert ground_evidence("guitar strings stay", DOC.comments) == "guitar strings stay"
    assert ground_evidence("GUITAR  strings, stay!", DOC.comments) == "guitar strings stay"  # verbatim
    assert ground_evidence("in tune", DOC.comments) == "in tune."
    assert ground_evidence("300 miles of trail", DOC.comments) is None  # copied from an example
    assert ground_evidence("", DOC.comments) is None


def test_cjk_evidence_must_be_a_substring():
    comments = ["这本书的故事很感人，值得一读"]
    assert ground_evidence("故事很感人", comments) == "故事很感人"
    assert ground_evidence("电脑很快", comments) is None


def test_a_tag_found_in_the_comments_gets_a_verbatim_quote():
    assert quote_for_tag("dog leash", DOC.comments) == "Great dog leash for walks"
    assert quote_for_tag("trail running", DOC.comments) is None


def test_ground_tags_normalises_and_dedupes():
    llm = LLMTagList(tags=[LLMTag(tag="Guitar ", evidence="guitar strings"), LLMTag(tag="guitar", evidence="in tune"), LLMTag(tag="dog leash", evidence="invented quote"),
                           LLMTag(tag="trail running", evidence="300 miles of trail")])
    tags = ground_tags(llm, DOC)
    assert [(t.tag, t.evidence) for t in tags] == [("guitar", "guitar strings"), ("dog leash", "Great dog leash for walks")]


def run(engine, docs=(DOC,), cache=None, stats=None):
    return tag_users(list(docs), engine, prompts.load("tag-free"), options(mode="free"),
                     cache=cache or ResultCache(None), stats=stats)


def test_valid_answer_is_tagged_with_token_counts():
    engine = FakeEngine([Completion(text=answer(("guitar", "guitar strings")), prompt_tokens=300, output_tokens=20)])
    (user,) = run(engine)
    assert user.status == "tagged" and user.tags[0].tag == "guitar"
    assert (user.prompt_tokens, user.output_tokens, user.attempts) == (300, 20, 1)


def test_invalid_answer_is_retried_once_with_the_error_shown():
    engine = FakeEngine(["{not json", answer(("dog walks", "dog leash for walks"))])
    stats = CallStats()
    (user,) = run(engine, stats=stats)
    assert user.status == "tagged" and user.attempts == 2 and stats.retried == 1
    retry_chat = engine.calls[1][0]
    assert retry_chat[-2] == {"role": "assistant", "content": "{not json"}
    assert "invalid JSON" in retry_chat[-1]["content"]


def test_truncated_answer_retries_with_a_larger_budget_then_fails_with_reason():
    cut = Completion(text='{"tags": [{"tag": "gui', finish_reason="length")
    engine = FakeEngine([cut, cut])
    stats = CallStats()
    (user,) = run(engine, stats=stats)
    assert user.status == "failed" and user.error.startswith("truncated")
    assert stats.failed == 1 and stats.failures == {"truncated": 1}


def test_ungrounded_tags_fail_the_user_after_retry():
    engine = FakeEngine([answer(("trail running", "300 miles of trail"))] * 2)
    (user,) = run(engine)
    assert user.status == "failed" and "evidence" in user.error


def test_cache_makes_a_rerun_free(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite")
    first = run(FakeEngine(), cache=cache)
    again_engine = FakeEngine()
    second = run(again_engine, cache=cache)
    assert first == second and again_engine.calls == [] and cache.hits == 1


def test_edited_prompt_misses_the_cache(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite")
    run(FakeEngine(), cache=cache)
    folder = tmp_path / "prompts"
    folder.mkdir()
    original = prompts.load("tag-free").path.read_text()
    source = original.replace("list what the person", "list what this person")
    assert source != original, "the edit must change the template"
    (folder / "tag-free.toml").write_text(source)
    engine = FakeEngine()
    tag_users([DOC], engine, prompts.load("tag-free", folder), options(mode="free"),
              cache=cache)
    assert len(engine.calls) == 1


def grounded(engine, docs):
    return tag_users(docs, engine, prompts.load("tag"), options(mode="grounded"),
                     cache=ResultCache(None))


OTHER = UserDocument(user_id="u2", comments=["The dog leash snapped on a walk", "guitar picks"], n_comments=2)


def test_grounded_mode_offers_only_the_users_phrases_as_an_enum():
    engine = FakeEngine()
    users = grounded(engine, [DOC, OTHER])
    assert all(u.status == "tagged" for u in users)
    chat = engine.calls[0][0]
    candidates = chat[-1]["content"].split("Candidates: ")[1].split(", ")
    assert "guitar strings" in candidates and "dog leash" in candidates and "trail" not in candidates
    for user, doc in zip(users, [DOC, OTHER]):
        for tag in user.tags:
            assert tag.evidence in doc.text


def test_grounded_mode_rejects_a_phrase_outside_the_enum_then_fails_with_reason():
    users = grounded(FakeEngine(['{"tags": ["trail running"]}'] * 4), [DOC, OTHER])
    assert [u.status for u in users] == ["failed", "failed"] and "evidence" in users[0].error


def test_user_without_content_words_fails_without_an_llm_call():
    empty = UserDocument(user_id="u3", comments=["it is what it is"], n_comments=1)
    engine = FakeEngine()
    users = grounded(engine, [DOC, empty])
    assert users[1].status == "failed" and "no candidate phrases" in users[1].error
    assert len(engine.calls[0]) == 1


# --- progress per engine call, answers cached as each call returns -------------------------

def many_docs(n):
    return [UserDocument(user_id=f"u{i}", comments=[f"guitar strings number {i} stay in tune"], n_comments=1)
            for i in range(n)]


class StepClock:
    """Each reading is `step` seconds after the last: every engine call measures 2 readings apart."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_the_first_engine_call_is_small_and_progress_follows_each_call():
    class CallLevel(FakeEngine):  # an engine that cannot report single answers (no on_answer)
        def generate(self, chats, *, schemas, params):
            return super().generate(chats, schemas=schemas, params=params)

    engine, steps = CallLevel(), []
    users = tag_users(many_docs(40), engine, prompts.load("tag"), options(call_seconds=30),
                      cache=ResultCache(None), on_batch=steps.append)
    assert all(u.status == "tagged" for u in users)
    assert len(engine.calls[0]) == 16 and steps[0] == 16  # progress before the batch of 40 is done
    assert sum(steps) == 40 and [len(c) for c in engine.calls] == steps


def test_progress_follows_each_answer_inside_one_batched_call(tmp_path):
    """An engine that reports finished requests (vLLM through its use_tqdm hook) moves the bar
    per user while the whole batch still goes to it in one call, and answers are cached."""
    engine, steps = FakeEngine(), []
    cache = ResultCache(tmp_path / "c.sqlite")
    users = tag_users(many_docs(40), engine, prompts.load("tag"), options(),
                      cache=cache, on_batch=steps.append)
    assert all(u.status == "tagged" for u in users)
    assert [len(c) for c in engine.calls] == [40]
    assert steps == [1] * 40
    again, steps_again = FakeEngine(), []
    tag_users(many_docs(40), again, prompts.load("tag"), options(),
              cache=cache, on_batch=steps_again.append)
    assert again.calls == [] and steps_again == [40]  # all cached: one step


def test_vllm_progress_hook_counts_finished_requests_only():
    from tagger.llm.vllm_engine import _AnswerTicks

    heard = []
    rendering = _AnswerTicks(["a", "b"], on_answer=heard.append, desc="Rendering conversations")
    assert list(rendering) == ["a", "b"] and heard == []
    running = _AnswerTicks(total=3, desc="Processed prompts", dynamic_ncols=True, on_answer=heard.append)
    running.update(1)
    running.update(2)
    assert heard == [1, 2] and running.n == 3 and running.format_dict["elapsed"] > 0


def test_an_engine_that_wants_whole_batches_gets_one_call():
    engine = FakeEngine()
    engine.whole_batches = True  # as RayEngine: every call starts its replicas
    tag_users(many_docs(40), engine, prompts.load("tag"), options(call_seconds=30),
              cache=ResultCache(None))
    assert [len(c) for c in engine.calls] == [40]


def test_pacer_sizes_calls_from_the_previous_rate():
    pacer = Pacer(target_s=10, first=4, most=100)
    assert pacer.size == 4
    pacer.record(4, 2.0)  # 2 requests/s for 10 s
    assert pacer.size == 20
    pacer.record(20, 0.5)  # a fast engine gets whole batches
    assert pacer.size == 100
    pacer.record(100, 1000.0)  # never below the first size
    assert pacer.size == 4


def test_paced_calls_report_progress_and_cache_each_call_before_a_failure(tmp_path):
    class DiesOnThirdCall(FakeEngine):
        def generate(self, chats, *, schemas, params):
            if len(self.calls) == 2:
                raise EngineDown("server gone", partial=[])
            return super().generate(chats, schemas=schemas, params=params)

    chats = [[{"role": "user", "content": f"name group {i}: dogs, walks"}] for i in range(40)]
    cache, steps = ResultCache(tmp_path / "c.sqlite"), []
    pacer = Pacer(target_s=4, first=4, most=256, clock=StepClock(1.0))  # each call measures 1 s
    with pytest.raises(EngineDown):
        run_structured(DiesOnThirdCall(), chats, LLMSegmentName, lambda i, a: a.label,
                       StructuredSettings(params=GenerationParams(), on_batch=steps.append, pacer=pacer), cache=cache)
    assert steps == [4, 16]  # 4 requests in 1 s and 4 s wanted per call: the second call asks 16
    again = FakeEngine()
    outcomes = run_structured(again, chats, LLMSegmentName, lambda i, a: a.label,
                              StructuredSettings(params=GenerationParams()), cache=cache)
    assert all(o.value for o in outcomes) and [len(c) for c in again.calls] == [20]  # the 20 cached are not asked again
