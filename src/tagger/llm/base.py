"""The engine contract: many chats in, one JSON-constrained completion per chat out."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from tagger.errors import ConfigError

Messages = list[dict[str, str]]
S = TypeVar("S")


class GenerationParams(BaseModel):
    """Sampling settings shared by every request of one batched call (part of the cache key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(default=160, ge=1, le=8192)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    seed: int = 0


class Completion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    finish_reason: str = "stop"  # "length" means the budget cut the JSON short
    prompt_tokens: int = 0
    output_tokens: int = 0
    error: str = ""  # set when the engine could not answer this one request


@runtime_checkable
class Engine(Protocol):
    """What tagging and naming need from a model. Implementations batch internally."""

    model_id: str

    def generate(
        self, chats: Sequence[Messages], *, schemas: Sequence[dict[str, Any]], params: GenerationParams
    ) -> list[Completion]:
        """One completion per chat, in order, chat i constrained to the JSON schema `schemas[i]`.

        An engine may also take a keyword `on_answer`, called with 1 as each request finishes
        (progress inside one batched call); callers look for it in the signature."""
        ...

    def close(self) -> None: ...


# name → "module:Class"; imported only when chosen, so vllm/torch load only for that engine.
ENGINES: dict[str, str] = {
    "vllm": "tagger.llm.vllm_engine:VLLMEngine",
    "openai": "tagger.llm.openai_engine:OpenAIEngine",
    "fake": "tagger.llm.fake:FakeEngine",
    "ray": "tagger.llm.ray_engine:RayEngine",  # Ray Data replicas of one of the engines above
}


def create_engine(name: str, **options: Any) -> Engine:
    if name not in ENGINES:
        raise ConfigError(f"unknown engine '{name}'; choose one of: {', '.join(ENGINES)}")
    module_name, _, class_name = ENGINES[name].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)(**options)


def settings_from(kind: type[S], options: Mapping[str, Any]) -> S:
    """An engine's settings dataclass from the `create_engine` keywords it names; the rest are
    ignored, since callers pass every engine the same keywords (concurrency, api_key, ...)."""
    names = {f.name for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
    return kind(**{k: v for k, v in options.items() if k in names})
