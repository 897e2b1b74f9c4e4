"""Segments → readable names. The LLM sees each segment's most characteristic tags, a few
members' evidence quotes and what the nearest segments are about (so names contrast), and
answers under a schema. Unusable answers fall back to the segment's top tags or terms.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tagger.cache import ResultCache
from tagger.llm.base import Engine, GenerationParams
from tagger.llm.structured import CallStats, Rejected, run_structured
from tagger.prompts import PromptTemplate
from tagger.schemas import LLMSegmentName, TaggedUser, UserDocument

# Output budget of one naming answer: a short label and a one-sentence description under a schema.
NAMING_MAX_TOKENS = 120
NAME_VARIABLES = {"tags", "quotes", "neighbour_tags", "size", "language"}
_CJK = re.compile(r"[\u3400-\u9fff]")
_WORD = re.compile(r"[a-z][a-z'-]{3,}")
_STOP = set("""this that with have from they them were been very just like will your when what than
then also only some more most much such into over well good great nice really would could should
about after again because before being does doing each other same their there these those
through until while which product item bought buy price works work used using use love""".split())


@dataclass
class SegmentProfile:
    segment_id: int
    size: int
    top_tags: list[str]
    top_terms: list[str]
    quotes: list[str]
    neighbours: list[int]


def characteristic(counts_in: Counter, size: int, counts_all: Counter, n_all: int, top: int) -> list[str]:
    """Rank by share in the segment × log lift over everyone (a c-TF-IDF); ties by name."""
    def score(item: str) -> float:
        share = counts_in[item] / size
        lift = share / (counts_all[item] / n_all)
        return share * math.log1p(lift)

    ranked = sorted((t for t, c in counts_in.items() if c >= 2 or size < 4), key=lambda t: (-score(t), t))
    return ranked[:top]


def _terms(text: str) -> list[str]:
    if _CJK.search(text):
        chars = [c for c in text if _CJK.match(c)]
        return list({a + b for a, b in zip(chars, chars[1:], strict=False)})
    return list({w for w in _WORD.findall(text.lower()) if w not in _STOP})


def profile_segments(
    labels: np.ndarray, strengths: np.ndarray, centroids: np.ndarray,
    tagged_users: Sequence[TaggedUser], documents: Sequence[UserDocument],
    *, top: int = 8, quotes: int = 4,
) -> list[SegmentProfile]:
    n = len(tagged_users)
    tags_all: Counter = Counter(t for u in tagged_users for t in {x.tag for x in u.tags})
    terms_per_user = [_terms(d.text) for d in documents]
    terms_all: Counter = Counter(t for terms in terms_per_user for t in terms)
    similarity = centroids @ centroids.T if len(centroids) else np.zeros((0, 0))
    profiles = []
    for seg in range(int(labels.max()) + 1 if len(labels) else 0):
        members = np.flatnonzero(labels == seg)
        if not len(members):
            continue
        tags_in = Counter(t for i in members for t in {x.tag for x in tagged_users[i].tags})
        terms_in = Counter(t for i in members for t in terms_per_user[i])
        top_tags = characteristic(tags_in, len(members), tags_all, n, top)
        best = members[np.argsort(-strengths[members], kind="stable")]
        picked, seen = [], set()
        for i in best:
            for tag in tagged_users[i].tags:
                if tag.tag in top_tags and tag.evidence and tag.evidence not in seen:
                    picked.append(tag.evidence[:100])
                    seen.add(tag.evidence)
                    break
            if len(picked) >= quotes:
                break
        order = [int(j) for j in np.argsort(-similarity[seg]) if j != seg][:2]
        profiles.append(SegmentProfile(seg, len(members), top_tags,
                                       characteristic(terms_in, len(members), terms_all, n, top), picked, order))
    return profiles


def fallback_name(profile: SegmentProfile, language: str = "en") -> tuple[str, str]:
    """The segment's own most characteristic tags (else terms): always readable, in the data's language."""
    words = profile.top_tags[:2] or profile.top_terms[:3]
    if language == "zh":
        label = "、".join(words) if words else f"用户群 {profile.segment_id}"
        listed = "、".join((profile.top_tags or profile.top_terms)[:5]) or "没有共同标签"
        return label[:30], f"评论主要关于：{listed}。"
    label = " & ".join(words) if words else f"segment {profile.segment_id}"
    listed = ", ".join((profile.top_tags or profile.top_terms)[:5]) or "no common tags"
    return label[:60], f"Users whose comments are mostly about: {listed}."


def name_segments(
    profiles: Sequence[SegmentProfile], engine: Engine | None, template: PromptTemplate, *,
    params: GenerationParams, cache: ResultCache, language: str = "en", stats: CallStats | None = None,
    use_llm: bool = True,
) -> list[tuple[str, str, str]]:
    """(label, description, named_by) per profile; labels are unique. `use_llm=False` names
    every segment by its top tags (the pipeline does so where the model is known to be weak)."""
    template.check_variables(NAME_VARIABLES)
    by_id = {p.segment_id: p for p in profiles}
    results: list[tuple[str, str, str]] = [(*fallback_name(p, language), "fallback") for p in profiles]
    askable = [i for i, p in enumerate(profiles) if p.top_tags or p.top_terms]
    if engine is not None and askable and use_llm:
        chats, shown = [], []
        for i in askable:
            p = profiles[i]
            neighbour_tags = [t for j in p.neighbours for t in (by_id[j].top_tags or by_id[j].top_terms)[:3]]
            chats.append(template.render(tags=p.top_tags or p.top_terms, quotes=p.quotes,
                                         neighbour_tags=neighbour_tags, size=p.size, language=language))
            shown.append(" ".join([*p.top_tags, *p.top_terms]))

        example_texts = _example_texts(template)
        example_stems = set().union(*(_stems(t) for t in example_texts if len(t.split()) <= 6)) if example_texts else set()

        def parse(i: int, answer: LLMSegmentName) -> tuple[str, str]:
            label = " ".join(answer.label.split()).strip(" .\"'")
            if len(label) < 2:
                raise Rejected("the label is empty")
            if len(label.split()) > 6:
                raise Rejected("the label must be 2-4 words")
            if language == "zh" and not _CJK.search(label):
                raise Rejected("the label is not in Chinese")
            # Chinese has no spaces, so the word limit above never fires: the 135M model then
            # answers with a run of keywords or a copied English example (measured on zh-shopping).
            if sum(label.count(c) for c in "，,、;；") >= 2:
                raise Rejected("the label must be a short phrase, not a list")
            if language == "zh" and len(label) > 12:
                raise Rejected("the label must be a short phrase of at most 12 characters")
            if not _shares_a_word(label, shown[i]):
                raise Rejected("the label must name the interests listed")
            description = " ".join(answer.description.split())
            if language == "zh" and not _CJK.search(description):  # e.g. a copied English example
                description = fallback_name(profiles[askable[i]], language)[1]
            # A small model sometimes copies the few-shot answer or loops on a phrase; the
            # tag-based description is better than either.
            if description.lower() in example_texts or _repeats(description):
                description = fallback_name(profiles[askable[i]], language)[1]
            if label.lower() in example_texts:
                raise Rejected("the label copies the example; name this group")
            # "controller players" for a group about controllers: "players" came from the
            # few-shot label, not from this group's interests.
            borrowed = _stems(label) & example_stems - _stems(shown[i])
            if borrowed:
                raise Rejected("the label borrows words from the example; use this group's interests")
            return label, description

        outcomes = run_structured(engine, chats, LLMSegmentName, parse, params=params, cache=cache,
                                  stats=stats, retry_message=template.retry_message)
        for i, outcome in zip(askable, outcomes, strict=True):
            if outcome.value:
                results[i] = (*outcome.value, "llm")
    return _unique(results, profiles)


def _example_texts(template: PromptTemplate) -> set[str]:
    """Labels and descriptions of the template's few-shot answers, lowercased."""
    texts = set()
    for _, answer in template.examples:
        try:
            data = json.loads(answer)
        except json.JSONDecodeError:
            continue
        texts |= {" ".join(str(v).lower().split()) for v in data.values() if isinstance(v, str)}
    return texts


def _repeats(text: str, n: int = 3) -> bool:
    """True when some run of `n` words occurs three times or more (a decoding loop)."""
    words = text.lower().split()
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return bool(grams) and max(grams.values()) >= 3


def _stems(text: str) -> set[str]:
    if _CJK.search(text):
        return {c for c in text if _CJK.match(c)}
    return {w[:4] for w in re.findall(r"[a-z]{3,}", text.lower())}


def _shares_a_word(label: str, shown: str) -> bool:
    """A name must echo something it was shown: this catches copied examples and injected text."""
    return bool(_stems(label) & _stems(shown))


def _unique(results, profiles):
    seen: Counter = Counter(label.lower() for label, _, _ in results)
    out, used = [], set()
    for (label, description, by), profile in zip(results, profiles, strict=True):
        if seen[label.lower()] > 1 or label.lower() in used:
            extra = next((t for t in profile.top_tags + profile.top_terms if t.lower() not in label.lower()), None)
            label = f"{label} ({extra})" if extra else label
            if label.lower() in used:
                label = f"{label} #{profile.segment_id}"
        used.add(label.lower())
        out.append((label, description, by))
    return out
