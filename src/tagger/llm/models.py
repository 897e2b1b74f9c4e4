"""Resolve `--model` to something an engine can load, and count tokens the way that model does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from tagger.errors import ModelError

EMBEDDED = "embedded"


def resolve_model(model: str) -> str:
    """'embedded' → the converted SmolLM2 folder; a local folder → its path; else a hub id as is."""
    if model == EMBEDDED:
        from tagger.llm.embedded import embedded_model_dir

        return str(embedded_model_dir())
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelError(f"{path} is not a model folder (no config.json); pass a Hugging Face model folder or id")
        return str(path.resolve())
    return model


def token_counter(model: str) -> Callable[[Sequence[str]], list[int]]:
    """Counts with the model's own tokenizer when it can be loaded offline, else ~4 chars/token."""
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
    except Exception:
        return lambda texts: [len(t) // 4 + 1 for t in texts]

    def count(texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    return count


def word_counter(texts: Sequence[str]) -> list[int]:
    """A model-free stand-in (tests, fake engine): roughly tokens for English, chars for CJK."""
    return [max(len(t.split()), len(t) // 3) + 1 for t in texts]


def engine_model(engine: str, model: str) -> str:
    """What `engine` loads for `--model`: the embedded model's folder, a local folder, or the name as given."""
    return resolve_model(model) if engine in ("vllm", "ray") or Path(model).exists() else model


def prompt_counter(engine: str, model: str) -> Callable[[Sequence[str]], list[int]]:
    """Counts prompt tokens like the engine's model does (a word count for the fake engine)."""
    if engine == "fake" or (engine == "openai" and not Path(model).exists()):
        # A served model name need not be a hub id, and looking it up would wait on the network.
        return word_counter
    return token_counter(model)
