"""A deterministic engine for tests: a queue of canned answers, else answers built from the prompt."""

from __future__ import annotations

import json
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tagger.llm.base import Completion, GenerationParams, Messages

_WORD = re.compile(r"[a-z]{5,}")
_STOP = {"these", "there", "their", "about", "would", "which", "great", "really", "after",
         "other", "could", "every", "because", "before", "product", "works", "still", "where"}


class FakeEngine:
    """`responses` are returned first, in order (str, or Completion for full control).

    After the queue runs out, a tag request gets the user's most frequent long words as tags
    (evidence = that word), and a naming request gets the name its schema admits with a word
    the prompt mentions first (else its first two tags).
    """

    def __init__(self, responses: Iterable[str | Completion] = (), model_id: str = "fake", **_: Any):
        self.model_id = model_id
        self.queue: deque[str | Completion] = deque(responses)
        self.calls: list[list[Messages]] = []
        self.params: list[GenerationParams] = []

    def generate(self, chats: Sequence[Messages], *, schemas: Sequence[dict[str, Any]], params: GenerationParams,
                 on_answer: Callable[[int], None] | None = None) -> list[Completion]:
        self.calls.append(list(chats))
        self.params.append(params)
        out = []
        for chat, schema in zip(chats, schemas, strict=True):
            answer = self.queue.popleft() if self.queue else self._derive(chat, schema)
            if isinstance(answer, str):
                answer = Completion(text=answer, prompt_tokens=sum(len(m["content"].split()) for m in chat),
                                    output_tokens=len(answer.split()))
            out.append(answer)
            if on_answer:
                on_answer(1)
        return out

    def close(self) -> None:
        pass

    @staticmethod
    def _derive(chat: Messages, schema: dict[str, Any]) -> str:
        last = chat[-1]["content"]
        properties = schema.get("properties", {})
        if "tags" in properties:
            choices = properties["tags"].get("items", {}).get("enum")
            if choices is not None:  # grounded mode: pick the first candidates
                return json.dumps({"tags": choices[:3]})
            words = [w for w in _WORD.findall(last.lower()) if w not in _STOP]
            top = [w for w, _ in Counter(words).most_common(3)]
            return json.dumps({"tags": [{"tag": w, "evidence": w} for w in top]})
        match = re.search(r":\s*(.+)", last)
        tags = [t.strip() for t in (match.group(1) if match else "group").split(",")][:2]
        label = " & ".join(tags)[:40]
        names = properties.get("label", {}).get("enum")
        if names:  # the admitted name with a word (its first 4 letters) the prompt mentions first
            text = match.group(1) if match else ""

            def first_mention(name: str) -> int:
                found = [i for i in (text.find(w[:4]) for w in name.split()) if i >= 0]
                return min(found, default=len(text) + 1)

            label = min(names, key=lambda n: (first_mention(n), names.index(n)))
        return json.dumps({"label": label, "description": f"Users interested in {', '.join(tags)}."})
