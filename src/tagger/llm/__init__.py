"""LLM engines behind one small batched Protocol, chosen by name from an explicit registry."""

from tagger.llm.base import Completion, Engine, GenerationParams, create_engine, ENGINES

__all__ = ["Completion", "Engine", "GenerationParams", "create_engine", "ENGINES"]
