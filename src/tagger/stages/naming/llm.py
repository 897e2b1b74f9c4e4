"""The naming request: one per segment, rendered, constrained by a schema and parsed here only.

`naming_request` is what `name_level` sends and what `tagger prompts render name` shows, so the
request rendered for a segment is the very one naming sends for it. The schema is an enum of the
names offered: the best-ranked name, and the second only when the ranking scores it nearly as
high (`CLOSE_CALL`), so a small model picks only between near-equals and cannot copy a few-shot
example or text planted in a comment.
"""

from __future__ import annotations

import re

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tagger.cache import ResultCache
from tagger.llm.base import Engine
from tagger.llm.structured import CallStats, Rejected, StructuredSettings, run_structured
from tagger.prompts import PromptTemplate
from tagger.schemas import LLMSegmentName
from tagger.stages.naming.profile import SegmentProfile
from tagger.stages.naming.settings import NamingSettings

NAME_VARIABLES = {"tags", "quotes", "neighbour_tags", "size", "language", "options", "audience"}
# Names the LLM chooses among: the best two by rank (with four the 135M model chose weak names
# it was shown; docs/decisions.md) ...
LLM_OPTIONS = 2
# ... and the second only when its score is within this share of the first's.
CLOSE_CALL = 0.9


@dataclass(frozen=True)
class NamingRequest:
    """One segment's request: the chat, the schema, and the names it offers."""

    segment_id: int
    messages: list[dict[str, str]]
    schema: dict
    offered: tuple[str, ...]


def offered(options: Sequence) -> list[str]:
    """The best option's label, then those the ranking scores nearly as high (LLM_OPTIONS at most)."""
    top = list(options[:LLM_OPTIONS])
    if not top:
        return []
    if top[0].score <= 0:
        return [o.label for o in top]
    return [o.label for o in top if CLOSE_CALL * top[0].score <= o.score <= top[0].score]


def name_schema(labels: Sequence[str]) -> dict:
    schema = LLMSegmentName.model_json_schema()
    schema["properties"]["label"] = {"type": "string", "enum": list(labels)}
    return schema


def naming_request(profile: SegmentProfile, options: Sequence, level: Sequence[SegmentProfile],
                   template: PromptTemplate, settings: NamingSettings) -> NamingRequest:
    """The request for `profile` choosing among `options` (its options still free at its level);
    `level`: every profile of its level, whose phrases it is contrasted with."""
    by_id = {p.segment_id: p for p in level}
    neighbour_tags = [t for j in profile.neighbours if j in by_id for t in _shown(by_id[j], settings.language)[:3]]
    labels = offered(options)
    messages = template.render(tags=_shown(profile, settings.language), quotes=list(profile.quotes), options=labels,
                               neighbour_tags=neighbour_tags, size=profile.size, language=settings.language,
                               audience=settings.words()["plural"])
    return NamingRequest(profile.segment_id, messages, name_schema(labels), tuple(labels))


def _shown(profile: SegmentProfile, language: str) -> list[str]:
    """What the request says sets the segment apart: its topical tags, else its topical terms,
    else its tags or terms as they are."""
    return (profile.topical(profile.top_tags, language) or profile.topical(profile.top_terms, language)
            or list(profile.top_tags or profile.top_terms))


def ask(requests: Sequence[NamingRequest], engine: Engine, template: PromptTemplate, settings: NamingSettings,
        parse: Callable[[NamingRequest, LLMSegmentName], tuple[str, str]], *, cache: ResultCache | None = None,
        stats: CallStats | None = None) -> dict[int, tuple[str, str]]:
    """Send the requests; segment id → (label, description as the model wrote it) for each usable answer."""
    def check(k: int, answer: LLMSegmentName) -> tuple[str, str]:
        if answer.label not in requests[k].offered:  # the schema's enum, checked again
            raise Rejected("the label must be one of the listed names")
        return parse(requests[k], answer)

    structured = StructuredSettings(params=settings.params, retry_message=template.retry_message)
    outcomes = run_structured(engine, [r.messages for r in requests], LLMSegmentName, check, structured, cache=cache,
                              stats=stats, schemas=[r.schema for r in requests])
    return {r.segment_id: o.value for r, o in zip(requests, outcomes, strict=True) if o.value}


_WORDS = re.compile(r"\w+", re.UNICODE)


def quotes_users(label: str, quotes: list[str], tags: list[str]) -> bool:
    """True when a segment name (2+ words) repeats a member's words verbatim and is not itself
    one of the segment's tags: text planted in a comment ("... output the label X") must not
    become a segment's name, and a name should not quote a user."""
    words = _WORDS.findall(label.lower())
    if len(words) < 2 or " ".join(words) in {" ".join(_WORDS.findall(t.lower())) for t in tags}:
        return False
    phrase = f" {' '.join(words)} "
    return any(phrase in f" {' '.join(_WORDS.findall(q.lower()))} " for q in quotes)
