"""User documents → validated, evidence-grounded interest tags, through one batched LLM pass.

A tag survives only if its evidence quote is found in the user's own comments, or if the tag's
own words are (then a verbatim window around them becomes the quote): a small model copies
its few-shot examples and invents quotes, and grounding is what removes those copies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tagger.cache import ResultCache
from tagger.llm.base import Engine, GenerationParams, Messages
from tagger.stages.candidates import CandidateExtractor
from tagger.stages.canon import canonical
from tagger.stages.excerpts import Filled, PromptFiller
from tagger.llm.models import word_counter
from tagger.errors import ConfigError
from tagger.llm.structured import CallStats, Outcome, Pacer, Rejected, StructuredSettings, run_structured
from tagger.prompts import PromptTemplate
from tagger.schemas import LLMTagChoice, LLMTagList, Tag, TaggedUser, UserDocument
from tagger.text import CJK_CHAR as _CJK

TAG_VARIABLES = {"comments", "candidates", "user_id", "items"}
# The prompt's share of one user's comments, in tokens, when the caller gives no budget.
DEFAULT_PROMPT_TOKENS = 384
_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)


def _norm(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def ground_evidence(evidence: str, comments: Sequence[str]) -> str | None:
    """The user's own words matching `evidence` (ignoring case, punctuation and spacing),
    copied verbatim from the comment that holds them, or None when no comment does."""
    words = _norm(evidence).split()
    if not words:
        return None
    if _CJK.search(evidence):
        compact = "".join(words)
        for comment in comments:
            if compact in comment:
                return compact
        return None
    for comment in comments:
        tokens = comment.split()
        normed = [_norm(t) for t in tokens]
        # a token like "well-made" normalises to two words: match on the flattened words
        flat, owner = [], []
        for i, n in enumerate(normed):
            for w in n.split():
                flat.append(w)
                owner.append(i)
        for at in range(len(flat) - len(words) + 1):
            if flat[at : at + len(words)] == words:
                return " ".join(tokens[owner[at] : owner[at + len(words) - 1] + 1])
    return None


def quote_for_tag(tag: str, comments: Sequence[str], width: int = 10) -> str | None:
    """A window of the user's own words around `tag`, when one comment holds all its words.

    Small models often paraphrase their evidence; a tag that the user's comments really
    contain is still grounded, and the quote shown for it is verbatim.
    """
    words = _norm(tag).split()
    if not words:
        return None
    if _CJK.search(tag):
        compact = tag.replace(" ", "")
        for comment in comments:
            at = comment.find(compact)
            if at >= 0:
                return comment[max(0, at - 8) : at + len(compact) + 8]
        return None
    for comment in comments:
        tokens = comment.split()
        normed = [_norm(t) for t in tokens]
        if all(w in normed for w in words):
            at = normed.index(words[0])
            return " ".join(tokens[max(0, at - width // 3) : at + width - width // 3])
    return None


def canonical_tags(tagged_users: Sequence[TaggedUser]) -> list[TaggedUser]:
    """One form per concept across users ("mics" → "mic" when some user has "mic"); a user's
    tags that merge keep the first one's evidence, which stays verbatim."""
    known = {t.tag for u in tagged_users for t in u.tags if " " not in t.tag}
    out = []
    for user in tagged_users:
        merged: dict[str, Tag] = {}
        for tag in user.tags:
            form = canonical(tag.tag, known)
            merged.setdefault(form, Tag(tag=form, evidence=tag.evidence))
        out.append(user.model_copy(update={"tags": list(merged.values())}))
    return out


def ground_tags(answer: LLMTagList, document: UserDocument) -> list[Tag]:
    kept: dict[str, Tag] = {}
    for item in answer.tags:
        tag = " ".join(item.tag.lower().split()).strip(" .,:;-")
        if not tag or tag in kept:
            continue
        evidence = ground_evidence(item.evidence, document.comments) or quote_for_tag(tag, document.comments)
        if evidence is None:
            continue
        kept[tag] = Tag(tag=tag, evidence=evidence)
    return list(kept.values())


TAG_MODES = {"grounded": "tag", "free": "tag-free"}


def choice_schema(candidates: Sequence[str]) -> dict:
    schema = LLMTagChoice.model_json_schema()
    schema["properties"]["tags"]["items"] = {"type": "string", "enum": list(candidates)}
    schema["properties"]["tags"]["minItems"] = 1
    return schema


@dataclass(frozen=True)
class TagOptions:
    """Settings of one tagging pass (see `tag_users`).

    mode: "grounded" (the model picks from the user's own phrases) or "free" (it writes tags and
    quotes). `extractor` and `filler` default to ones fitted on the documents being tagged.
    With `call_seconds`, each batch goes to the engine in calls of about that long, each cached
    as it returns (not for engines with `whole_batches`); None sends one call per batch, because
    on vLLM-CPU paced calls cost throughput, every call ending in decode-only steps.
    """

    params: GenerationParams
    mode: str = "grounded"
    batch_size: int = 256
    extractor: CandidateExtractor | None = None
    filler: PromptFiller | None = None
    call_seconds: float | None = None


@dataclass
class _Requests:
    """The tagging requests: which documents are asked, and what each prompt shows."""

    askable: list[int]
    candidates: list[list[str]]
    filled: dict[int, Filled]
    surfaces: dict[int, dict[str, str]]
    chats: list[Messages]


def tag_users(
    documents: Sequence[UserDocument],
    engine: Engine,
    template: PromptTemplate,
    options: TagOptions,
    *,
    cache: ResultCache | None = None,
    stats: CallStats | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> list[TaggedUser]:
    """One TaggedUser per document, in order: tagged with >=1 grounded tag, or failed with why.

    grounded: the model picks from phrases of the user's own comments (schema enum per user);
    free: the model writes tags and evidence quotes, and ungrounded ones are dropped.
    Each prompt holds the excerpts `options.filler` picks from all of the user's comments
    (tagger.stages.excerpts; by default a word count stands in for tokens).
    `on_batch(n)` reports users as their answers arrive.
    """
    if options.mode not in TAG_MODES:
        raise ConfigError(f"unknown tag mode '{options.mode}'; choose one of: {', '.join(TAG_MODES)}")
    template.check_variables(TAG_VARIABLES)
    grounded = options.mode == "grounded"
    requests = _requests(documents, template, options)
    askable = requests.askable

    def parse(k: int, answer) -> list[Tag]:
        document = documents[askable[k]]
        if grounded:
            tags = _chosen_tags(answer, document, requests.surfaces[askable[k]])
        else:
            tags = ground_tags(answer, document)
        if not tags:
            raise Rejected("no tag's evidence is a phrase from the reviews")
        return tags

    whole_batches = getattr(engine, "whole_batches", False)  # e.g. Ray: each call starts its replicas
    paced = options.call_seconds and not whole_batches
    settings = StructuredSettings(
        params=options.params, batch_size=options.batch_size, retry_message=template.retry_message,
        pacer=Pacer(target_s=options.call_seconds, most=options.batch_size) if paced else None, on_batch=on_batch)
    outcomes = run_structured(
        engine, requests.chats, LLMTagChoice if grounded else LLMTagList, parse, settings, cache=cache, stats=stats,
        schemas=[choice_schema(requests.candidates[i]) for i in askable] if grounded else None,
    )
    if on_batch and len(askable) < len(documents):
        on_batch(len(documents) - len(askable))
    return _tagged_users(documents, dict(zip(askable, outcomes, strict=True)), requests.filled)


def _requests(documents: Sequence[UserDocument], template: PromptTemplate, options: TagOptions) -> _Requests:
    """The prompts of the documents that can be asked (grounded mode needs candidate phrases)."""
    # A saved model passes the training run's extractor, so a user seen in training gets the
    # same candidates (same prompt, cached answer) when assigned again. Free mode uses the
    # candidates only to pick the prompt's excerpts.
    extractor = options.extractor or CandidateExtractor().fit([d.text for d in documents])
    filler = options.filler or PromptFiller(word_counter, DEFAULT_PROMPT_TOKENS)
    grounded = options.mode == "grounded"
    candidates = [extractor.candidates(d.text) for d in documents]
    askable = [i for i, c in enumerate(candidates) if c or not grounded]
    filled = {i: filler.fill(documents[i].comments, candidates[i], extractor.phrases) for i in askable}
    # Candidates are canonical ("mic" for "mics"); quotes need the form the user wrote.
    surfaces = {i: extractor.surfaces(documents[i].text) for i in askable} if grounded else {}
    chats = [template.render(comments=filled[i].lines, candidates=candidates[i] if grounded else [],
                             user_id=documents[i].user_id, items=documents[i].items) for i in askable]
    return _Requests(askable, candidates, filled, surfaces, chats)


def _tagged_users(documents: Sequence[UserDocument], by_index: dict[int, Outcome],
                  filled: dict[int, Filled]) -> list[TaggedUser]:
    results = []
    for i, doc in enumerate(documents):
        outcome = by_index.get(i) or Outcome(error="no candidate phrases: the comments hold no content words",
                                             attempts=0)
        results.append(TaggedUser(
            user_id=doc.user_id,
            status="tagged" if outcome.value else "failed",
            tags=outcome.value or [],
            error=outcome.error if not outcome.value else "",
            attempts=outcome.attempts,
            prompt_tokens=outcome.prompt_tokens,
            output_tokens=outcome.output_tokens,
            prompt_comments=filled[i].comments if i in filled else 0,
        ))
    return results


def _chosen_tags(answer: LLMTagChoice, document: UserDocument, surfaces: dict[str, str]) -> list[Tag]:
    kept: dict[str, Tag] = {}
    for phrase in answer.tags:
        tag = " ".join(phrase.lower().split())
        quote = quote_for_tag(surfaces.get(tag, tag), document.comments) or quote_for_tag(tag, document.comments)
        if tag and quote and tag not in kept:
            kept[tag] = Tag(tag=tag, evidence=quote)
    return list(kept.values())
