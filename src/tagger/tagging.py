"""User documents → validated, evidence-grounded interest tags, through one batched LLM pass.

A tag survives only if its evidence quote is found in the user's own comments: a small model
copies its few-shot examples, and grounding is what removes those copies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from tagger.cache import ResultCache
from tagger.llm.base import Engine, GenerationParams
from tagger.llm.structured import CallStats, Rejected, run_structured
from tagger.prompts import PromptTemplate
from tagger.schemas import LLMTagList, Tag, TaggedUser, UserDocument

TAG_VARIABLES = {"comments", "user_id", "items"}
_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")


def _norm(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def ground_evidence(evidence: str, document: str) -> str | None:
    """The user's own words for `evidence`, or None when the quote is not in the document.

    Exact match (ignoring case, punctuation and spacing) returns the quote; otherwise at least
    80 % of the quote's words (characters, for CJK) must occur in the document.
    """
    quote = _norm(evidence)
    if not quote:
        return None
    doc = _norm(document)
    if quote in doc:
        return evidence.strip()
    units = list(quote.replace(" ", "")) if _CJK.search(quote) else quote.split()
    pool = set(doc.replace(" ", "")) if _CJK.search(quote) else set(doc.split())
    if len(units) >= 2 and sum(u in pool for u in units) / len(units) >= 0.8:
        return evidence.strip()
    return None


def ground_tags(answer: LLMTagList, document: UserDocument) -> list[Tag]:
    text = document.text
    kept: dict[str, Tag] = {}
    for item in answer.tags:
        tag = " ".join(item.tag.lower().split()).strip(" .,:;-")
        evidence = ground_evidence(item.evidence, text)
        if not tag or evidence is None or tag in kept:
            continue
        kept[tag] = Tag(tag=tag, evidence=evidence)
    return list(kept.values())


def tag_users(
    documents: Sequence[UserDocument],
    engine: Engine,
    template: PromptTemplate,
    *,
    params: GenerationParams,
    cache: ResultCache,
    batch_size: int = 256,
    on_batch: Callable[[int], None] | None = None,
    stats: CallStats | None = None,
) -> list[TaggedUser]:
    """One TaggedUser per document, in order: tagged with ≥1 grounded tag, or failed with why."""
    template.check_variables(TAG_VARIABLES)
    chats = [template.render(comments=d.comments, user_id=d.user_id, items=d.items) for d in documents]

    def parse(i: int, answer: LLMTagList) -> list[Tag]:
        tags = ground_tags(answer, documents[i])
        if not tags:
            raise Rejected("no tag's evidence is a phrase from the reviews")
        return tags

    outcomes = run_structured(
        engine, chats, LLMTagList, parse, params=params, cache=cache, batch_size=batch_size,
        on_batch=on_batch, stats=stats, retry_message=template.retry_message,
    )
    return [
        TaggedUser(
            user_id=doc.user_id,
            status="tagged" if outcome.value else "failed",
            tags=outcome.value or [],
            error=outcome.error if not outcome.value else "",
            attempts=outcome.attempts,
            prompt_tokens=outcome.prompt_tokens,
            output_tokens=outcome.output_tokens,
        )
        for doc, outcome in zip(documents, outcomes, strict=True)
    ]
