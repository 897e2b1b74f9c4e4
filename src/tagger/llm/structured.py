"""Batched, cached, validated generation: the one place that talks to an engine.

Each chat's answer is parsed by the caller's `parse`; an answer that is cut short, not JSON,
or rejected by `parse` is retried once with a doubled token budget and the error shown to
the model, then reported as failed with the reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import jsonschema
from pydantic import BaseModel, ValidationError

from tagger.cache import ResultCache, cache_key
from tagger.errors import EngineDown
from tagger.llm.base import Completion, Engine, GenerationParams, Messages

T = TypeVar("T")


class Rejected(ValueError):
    """Raised by a parse function: the answer is valid JSON but not usable."""


@dataclass
class Outcome(Generic[T]):
    value: T | None = None
    error: str = ""
    attempts: int = 1
    prompt_tokens: int = 0
    output_tokens: int = 0


@dataclass
class CallStats:
    requests: int = 0
    cached: int = 0  # answers read from the cache (first attempts and retries alike)
    engine_calls: int = 0
    retried: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    failures: dict[str, int] = field(default_factory=dict)


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


@dataclass(frozen=True)
class StructuredSettings:
    """How `run_structured` calls the engine: sampling, batch size, pacing, retry prompt, progress.

    `on_batch(n)` reports n more chats answered (a retry does not count again): per request
    as it finishes where the engine can tell (its `generate` takes `on_answer`, e.g. vLLM),
    else per engine call. With a `pacer`, a batch goes to the engine in calls sized by it; otherwise in one call.
    """

    params: GenerationParams
    batch_size: int = 256
    retry_message: Callable[[str], str] = str
    pacer: Pacer | None = None
    on_batch: Callable[[int], None] | None = None


def run_structured(
    engine: Engine,
    chats: Sequence[Messages],
    answer_model: type[BaseModel],
    parse: Callable[[int, BaseModel], T],
    settings: StructuredSettings,
    *,
    cache: ResultCache | None = None,
    schemas: Sequence[dict[str, Any]] | None = None,
    stats: CallStats | None = None,
) -> list[Outcome[T]]:
    """One Outcome per chat, in order. `schemas` (one per chat) narrows `answer_model`'s schema
    per request, e.g. to an enum. Without a `cache`, nothing is kept between runs."""
    cache = cache if cache is not None else ResultCache(None)
    params = settings.params
    stats = stats if stats is not None else CallStats()
    schemas = list(schemas) if schemas is not None else [schema_of(answer_model)] * len(chats)
    outcomes: list[Outcome[T]] = [Outcome() for _ in chats]
    retry_params = params.model_copy(update={"max_tokens": params.max_tokens * 2})
    for start in range(0, len(chats), settings.batch_size):
        index = list(range(start, min(start + settings.batch_size, len(chats))))
        retry: list[tuple[int, Messages]] = []
        for arrived in _answers(engine, [chats[i] for i in index], [schemas[i] for i in index], params, cache, stats,
                                settings.pacer, on_arrival=settings.on_batch):
            for k, answer in arrived.items():
                i = index[k]
                _account(outcomes[i], answer, stats)
                value, error = _parse(i, answer, answer_model, parse, schemas[i])
                if error:
                    retry.append((i, _with_error(chats[i], answer, settings.retry_message(error))))
                outcomes[i].value, outcomes[i].error = value, error
        if retry:
            stats.retried += len(retry)
            again = {k: c for arrived in _answers(engine, [chat for _, chat in retry], [schemas[i] for i, _ in retry],
                                                   retry_params, cache, stats) for k, c in arrived.items()}
            for k, (i, _) in enumerate(retry):
                answer = again[k]
                _account(outcomes[i], answer, stats)
                outcomes[i].attempts = 2
                value, error = _parse(i, answer, answer_model, parse, schemas[i])
                outcomes[i].value, outcomes[i].error = value, error
                if error:
                    stats.failed += 1
                    reason = error.split(":")[0]
                    stats.failures[reason] = stats.failures.get(reason, 0) + 1
    stats.requests += len(chats)
    return outcomes


@dataclass
class Pacer:
    """Sizes the engine calls inside a batch so each takes about `target_s`.

    Progress and the answer cache then move every call, while a fast engine (a GPU) still
    gets whole batches: the size follows the rate of the previous call.
    """

    target_s: float = 30.0
    first: int = 16
    most: int = 256
    clock: Callable[[], float] = time.perf_counter
    size: int = 0

    def __post_init__(self) -> None:
        self.size = min(self.first, self.most)

    def record(self, requests: int, seconds: float) -> None:
        wanted = self.most if seconds <= 0 else round(requests / seconds * self.target_s)
        self.size = max(min(self.first, self.most), min(self.most, wanted))


def _reports_answers(engine: Engine) -> bool:
    import inspect

    try:
        return "on_answer" in inspect.signature(engine.generate).parameters
    except (TypeError, ValueError):
        return False


def _answers(engine, chats, schemas, params, cache, stats, pacer: Pacer | None = None,
             on_arrival: Callable[[int], None] | None = None) -> Iterator[dict[int, Completion]]:
    """Answers by position, in groups as they arrive: every cached one first, then each engine
    call's (cached as soon as it returns, so an interrupted run keeps them). `on_arrival(n)`
    hears of every answer once, during the engine call where the engine reports them."""
    keys = [cache_key(engine.model_id, chat, params.model_dump(), schema) for chat, schema in zip(chats, schemas, strict=True)]
    found = cache.get_many(keys)
    stats.cached += len(found)
    if found:
        if on_arrival:
            on_arrival(len(found))
        yield {i: Completion.model_validate(found[key]) for i, key in enumerate(keys) if key in found}
    missing = [i for i, key in enumerate(keys) if key not in found]
    while missing:
        size = pacer.size if pacer else len(missing)
        part, missing = missing[:size], missing[size:]
        stats.engine_calls += 1
        started = pacer.clock() if pacer else 0.0
        heard = [0]

        def tick(n: int) -> None:
            heard[0] += n
            on_arrival(n)

        extra = {"on_answer": tick} if on_arrival and _reports_answers(engine) else {}
        try:
            fresh = engine.generate([chats[i] for i in part], schemas=[schemas[i] for i in part], params=params, **extra)
        except EngineDown as down:
            # Keep what did arrive before the run stops: the rerun asks only for the rest.
            cache.put_many((keys[i], c.model_dump()) for i, c in zip(part, down.partial, strict=False) if not c.error)
            raise
        if pacer:
            pacer.record(len(part), pacer.clock() - started)
        # Engine-side errors (server down for one request) are not cached: a rerun retries them.
        cache.put_many((keys[i], c.model_dump()) for i, c in zip(part, fresh, strict=True) if not c.error)
        if on_arrival and heard[0] < len(part):
            on_arrival(len(part) - heard[0])
        yield dict(zip(part, fresh, strict=True))


def _account(outcome: Outcome, answer: Completion, stats: CallStats) -> None:
    outcome.prompt_tokens += answer.prompt_tokens
    outcome.output_tokens += answer.output_tokens
    stats.prompt_tokens += answer.prompt_tokens
    stats.output_tokens += answer.output_tokens


def _parse(i: int, answer: Completion, answer_model, parse, schema: dict[str, Any]) -> tuple[Any, str]:
    if answer.error:
        return None, f"engine error: {answer.error}"
    if answer.finish_reason == "length":
        return None, "truncated: the answer hit the token budget"
    try:
        data = json.loads(answer.text)
        value = parse(i, answer_model.model_validate(data))
        # The request's own schema (e.g. a per-user enum) is checked too: a server that ignores
        # constrained decoding, or a model obeying injected text, must not get past it.
        jsonschema.validate(data, schema)
        return value, ""
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg}"
    except jsonschema.ValidationError as exc:
        where = ".".join(map(str, exc.absolute_path)) or "answer"
        return None, f"schema mismatch: {where} {exc.message[:120]}"
    except ValidationError as exc:
        first = exc.errors()[0]
        return None, f"schema mismatch: {'.'.join(map(str, first['loc']))} {first['msg']}"
    except Rejected as exc:
        return None, f"rejected: {exc}"


def _with_error(chat: Messages, answer: Completion, message: str) -> Messages:
    if not answer.text or answer.error or answer.finish_reason == "length":
        return list(chat)  # nothing worth showing: just retry with the larger budget
    return [*chat, {"role": "assistant", "content": answer.text}, {"role": "user", "content": message}]
