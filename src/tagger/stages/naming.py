"""Segments → readable names, contrastive and grounded.

A segment's profile holds what sets it apart from the other users (tags and phrases ranked by
share × lift, a c-TF-IDF, as Clio's contrastive naming does). The names it may take are the
taxonomy's audience names ("baseball fans", stages/taxonomy.py) grounded in those phrases, and
the phrases themselves as noun phrases with a role noun ("dog owners"; prompts/data/roles.toml),
all ranked on one scale in the encoder's space (rank_options); the LLM's schema admits only
the best few (an enum per segment), so no few-shot word can become a name. The LLM picks one
and writes a one-sentence description; a description that is cut off, copied, looping or
wandering off what it was shown becomes a template sentence about the segment's tags. Without
a usable answer the best-ranked name is the name.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple
from pathlib import Path

import numpy as np

from tagger.cache import ResultCache
from tagger.errors import ConfigError
from tagger.llm.base import Engine, GenerationParams
from tagger.stages.canon import (STOPWORDS, canonical, chinese_noun, never_a_noun, singular, surface_phrases,
                                 used_as_verbs, vocabulary)
from tagger.llm.structured import CallStats, Rejected, StructuredSettings, run_structured
from tagger.prompts import PromptTemplate, data_file
from tagger.schemas import LLMSegmentName, TaggedUser, UserDocument
from tagger.stages.taxonomy import Topic
from tagger.text import HAN_CHAR as _CJK  # Han, not kana: asks "is this Chinese?" (jieba, zh names)
from tagger.vectors import unit_rows

# Output budget of one naming answer: a short label and a one-sentence description under a schema.
NAMING_MAX_TOKENS = 120
NAME_VARIABLES = {"tags", "quotes", "neighbour_tags", "size", "language", "options", "audience"}
# Who the people in a segment are, in prompts/data/audience.toml: the data need not be reviews.
DEFAULT_AUDIENCE = "people"
MAX_OPTIONS = 8
# Names the LLM chooses among: the best two by rank (with four the 135M model chose weak names
# it was shown; eval/README.md) ...
LLM_OPTIONS = 2
# ... and the second only when the ranking cannot tell them apart: its score within this share
# of the first's, since a small model offered a clearly weaker name often takes it (eval/README.md, Names).
CLOSE_CALL = 0.9
# A taxonomy node must be this close (cosine) to one of the segment's own distinctive phrases:
# the encoder's nearest segment alone put "grocery shopping" on a segment about keys and
# algorithms. Calibrated on the dev sets' segments (eval/README.md, Names).
GROUNDING = 0.45
# ... or this close to the segment's centroid, the mean of what its members wrote: a garden
# segment's own phrases ("bulb", "hose") are each too narrow for "Gardening".
GROUNDING_TEXT = 0.40
# How much better a taxonomy node must score than its parent to be offered instead of it.
SPECIFIC = 0.1
# Added to the score of a Chinese name built from the segment's phrases, twice for one built on a
# product with its own role noun (rank_options): in Chinese those rank first.
PRODUCT_FIRST = 1.0
GROUNDING_PHRASES = 6
# Share of a description's own nouns that must come from the segment's name, phrases or quotes.
GROUNDED_SHARE = 0.6
# ... and at most this many of its nouns may be new: "... provide food and treats to pets, but they
# have a different perspective on life." holds 3 of 5, two of them padding.
MAX_UNGROUNDED = 1
MAX_LABEL_CHARS = 40
# A parent's name must speak for this share of its members at least (`_speaks_for`): the
# encoder's nearest node to a parent of skin care, food, gifts and crafts was "lotteries and
# scratchcards", and one of sports gear, cars and computer mice was "sports equipment".
COVERED = 0.5
VERB_SAMPLE = 20_000
_SENTENCE_END = tuple(".!?。！？")


@dataclass
class SegmentProfile:
    segment_id: int
    size: int
    top_tags: list[str]
    top_terms: list[str]
    quotes: list[str]
    neighbours: list[int]
    # The names it may take, best first (rank_options); empty: built from its phrases alone.
    options: list[str] = field(default_factory=list)
    # Words of its phrases the data uses as verbs ("wait", "watch"): no name is built on them.
    verbs: list[str] = field(default_factory=list)
    # Each option's score (rank_options): its fit to the segment plus how clearly it points at it.
    scores: list[float] = field(default_factory=list)
    # The options taken from the taxonomy: option → {"iab_id", "iab_path"}.
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    # Its place in the segment tree (schemas.Segment's level and parent_id).
    level: int = 0
    parent_id: int = -1
    # What each option is about ("dog" for "dog owners"; a taxonomy node's own name).
    heads: dict[str, str] = field(default_factory=dict)

    def nouns(self, phrases: Sequence[str]) -> list[str]:
        """The phrases that can name a group of people: their last word can be a noun here."""
        def noun(p: str) -> bool:
            if _CJK.search(p):
                return chinese_noun(p)
            head = p.split()[-1]
            return not (head in self.verbs or never_a_noun(head))

        return [p for p in phrases if noun(p)]


def characteristic(counts_in: Counter, size: int, counts_all: Counter, n_all: int, top: int,
                   min_count: int = 2) -> list[str]:
    """Rank by share in the segment × log lift over everyone (a c-TF-IDF); ties by name."""
    def score(item: str) -> float:
        share = counts_in[item] / size
        lift = share / (counts_all[item] / n_all)
        return share * math.log1p(lift)

    ranked = sorted((t for t, c in counts_in.items() if c >= min_count or size < 4), key=lambda t: (-score(t), t))
    return ranked[:top]


def _terms(text: str, known: set[str]) -> list[str]:
    """The text's distinct phrases in canonical form (Chinese: jieba words, not bigrams)."""
    return list({canonical(p, known) for p in surface_phrases(text) if p not in STOPWORDS})


@dataclass
class NamingCorpus:
    """What naming reads of the users' text, one entry per user: their distinct phrases in
    canonical form, their distinct items and the phrases of those, plus the words the data uses as
    verbs. Computed once per run and saved with it, so `tagger recut` names new segments without
    the comments."""

    terms: list[list[str]]
    items: list[list[str]]
    item_terms: list[list[str]]
    verbs: frozenset[str]

    @classmethod
    def from_documents(cls, documents: Sequence[UserDocument], tagged_users: Sequence[TaggedUser] = (),
                       known: Collection[str] = ()) -> NamingCorpus:
        """`known`: singulars a saved run knew, so new users' plurals merge as that run's did."""
        known = vocabulary(d.text for d in documents) | set(known)
        # One string object per distinct phrase (sys.intern): a forum poster holds ~330 phrases,
        # most of them shared, and a copy of each per user cost ~2.4 GB at 100k users.
        terms = [[sys.intern(t) for t in _terms(d.text, known)] for d in documents]
        items = [list(dict.fromkeys(d.items)) for d in documents]
        item_terms = [[sys.intern(t) for t in _terms(" . ".join(d.items), known)] if d.items else [] for d in documents]
        heads = {p.split()[-1] for phrases in [*terms, *item_terms] for p in phrases}
        heads |= {t.tag.split()[-1] for u in tagged_users for t in u.tags}
        # Judged on at most VERB_SAMPLE documents (evenly spread): at a million users the counts are
        # settled long before the end and a full pass would cost as much as the profiles themselves.
        step = max(1, len(documents) // VERB_SAMPLE)
        return cls(terms, items, item_terms, frozenset(used_as_verbs(heads, (d.text for d in documents[::step]))))

    def phrases(self, items: bool = True) -> list[list[str]]:
        """Per user, the phrases they wrote and (`items`) those of their items: the lexical space's input."""
        if not items:
            return [list(t) for t in self.terms]
        return [[*t, *i] for t, i in zip(self.terms, self.item_terms, strict=True)]


def profile_segments(
    labels: np.ndarray, strengths: np.ndarray, centroids: np.ndarray,
    tagged_users: Sequence[TaggedUser], corpus: NamingCorpus | Sequence[UserDocument],
    *, top: int = 8, quotes: int = 4,
) -> list[SegmentProfile]:
    """One profile per segment of `labels`; `corpus` is the run's NamingCorpus (or its documents)."""
    if not isinstance(corpus, NamingCorpus):
        corpus = NamingCorpus.from_documents(corpus, tagged_users)
    n = len(tagged_users)
    tags_all: Counter = Counter(t for u in tagged_users for t in {x.tag for x in u.tags})
    terms_all: Counter = Counter(t for terms in corpus.terms for t in terms)
    items_all: Counter = Counter(i for items in corpus.items for i in items)
    similarity = centroids @ centroids.T if len(centroids) else np.zeros((0, 0))
    profiles = []
    for seg in range(int(labels.max()) + 1 if len(labels) else 0):
        members = np.flatnonzero(labels == seg)
        if not len(members):
            continue
        tags_in = Counter(t for i in members for t in {x.tag for x in tagged_users[i].tags})
        terms_in = Counter(t for i in members for t in corpus.terms[i])
        top_tags = characteristic(tags_in, len(members), tags_all, n, top)
        order = [int(j) for j in np.argsort(-similarity[seg]) if j != seg][:2]
        # Members that share no tag still share words, or at least items: every segment gets
        # something of its own to be named from.
        top_terms = (characteristic(terms_in, len(members), terms_all, n, top)
                     or characteristic(terms_in, len(members), terms_all, n, top, min_count=1)
                     or characteristic(Counter(i for m in members for i in corpus.items[m]),
                                       len(members), items_all, n, top, min_count=1))
        picked = _quotes(members, strengths, tagged_users, top_tags, quotes)
        profiles.append(SegmentProfile(seg, len(members), top_tags, top_terms, picked, order))
    items_words: Counter = Counter(t for terms in corpus.item_terms for t in terms)
    for profile in profiles:
        heads = {p.split()[-1] for p in [*profile.top_tags, *profile.top_terms]}
        profile.verbs = sorted(heads & corpus.verbs)
        if profile.nouns(profile.top_tags) or profile.nouns(profile.top_terms):
            continue
        # Nothing its members write can name people ("can't wait" is what a whole small segment
        # may share): the words of their items can ("print magazine").
        members = np.flatnonzero(labels == profile.segment_id)
        profile.top_terms = list(dict.fromkeys([*profile.top_terms, *characteristic(
            Counter(t for i in members for t in corpus.item_terms[i]), len(members), items_words, n, top)]))
    return profiles


def _quotes(members: np.ndarray, strengths: np.ndarray, tagged_users: Sequence[TaggedUser], top_tags: list[str],
            quotes: int) -> list[str]:
    """Evidence of the segment's top tags from its strongest members, one per member."""
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
    return picked


@cache
def _roles(override: str | Path | None = None) -> dict:
    return data_file("roles.toml", override)


@cache
def audience_words(audience: str = DEFAULT_AUDIENCE, override: str | Path | None = None) -> dict[str, str]:
    """The words naming uses for the people in a segment (prompts/data/audience.toml)."""
    table = data_file("audience.toml", override)
    if audience not in table:
        raise ConfigError(f"unknown audience '{audience}'; choose one of: {', '.join(table) or 'none defined'} "
                          "(prompts/data/audience.toml)")
    return {str(k): str(v) for k, v in table[audience].items()}


def rank_options(profiles: Sequence[SegmentProfile], centroids: np.ndarray, encoder, language: str = "en",
                 topics: Sequence[Topic] = (), prompts: str | Path | None = None,
                 audience: str = DEFAULT_AUDIENCE) -> None:
    """Set each profile's `options`: the names it may take, best first, and their `scores`.

    Candidates are the taxonomy's audience names (`topics`) and the names built from the
    segment's own phrases ("bulb fans"). All are scored on one scale, the name as it will be
    read, in the encoder's space the users were clustered in: how near it is to its segment's
    centroid (it says what the members write) plus how much nearer that is than to the nearest
    other segment's (it points at this segment, so no two segments share a name). A taxonomy
    name's meaning (the node with its path) only checks its sense. A taxonomy name is
    offered only when it and its meaning point at the segment (positive margins) and its node
    is within GROUNDING (cosine) of one of the segment's own distinctive phrases or within
    GROUNDING_TEXT of its members' mean text (the centroid), in absolute terms: nearest is not enough, the encoder's nearest topic of a segment about keys and
    algorithms can be "grocery shopping"."""
    topics = [t for t in topics if bool(_CJK.search(t.name)) == (language == "zh")]
    heads = [label_heads(p, language, prompts, audience) for p in profiles]
    built = [list(h) for h in heads]
    # Grounded in the segment's noun phrases: "watch" written as a verb ("to watch the game") put
    # "watch enthusiasts" on a Nintendo segment.
    phrases = [list(dict.fromkeys([*p.nouns(p.top_tags)[:GROUNDING_PHRASES],
                                   *p.nouns(p.top_terms)[:GROUNDING_PHRASES]])) for p in profiles]
    grounds = [t.grounds or t.meaning for t in topics]
    texts = list(dict.fromkeys([*(t.name for t in topics), *(t.meaning for t in topics), *grounds,
                                *(o for b in built for o in b), *(t for ph in phrases for t in ph)]))
    if not texts or not len(centroids):
        for p, h in zip(profiles, heads, strict=True):
            p.options, p.heads = list(h), h
        return
    vectors = unit_rows(np.asarray(encoder.encode(texts), np.float32))
    row = {t: i for i, t in enumerate(texts)}
    to_segments = vectors @ unit_rows(np.asarray(centroids, np.float32)).T
    names, meanings = [row[t.name] for t in topics], [row[t.meaning] for t in topics]
    for p, b, ph, h in zip(profiles, built, phrases, heads, strict=True):
        others = np.delete(to_segments, p.segment_id, axis=1)
        margin = to_segments[:, p.segment_id] - (others.max(axis=1) if others.shape[1] else 0.0)
        fit = to_segments[:, p.segment_id] + margin
        scored: dict[str, float] = {}
        if topics and ph:
            node = [row[g] for g in grounds]
            grounded = ((vectors[node] @ vectors[[row[t] for t in ph]].T).max(axis=1) >= GROUNDING) \
                | (to_segments[node, p.segment_id] >= GROUNDING_TEXT)
            for k, topic in enumerate(topics):
                if margin[names[k]] > 0 and margin[meanings[k]] > 0 and grounded[k]:
                    if fit[names[k]] > scored.get(topic.name, -np.inf):
                        scored[topic.name] = float(fit[names[k]])
                        p.sources[topic.name] = {"iab_id": topic.iab_id, "iab_path": topic.iab_path}
                        tier = topic.iab_path.split(" > ")[-1] if topic.iab_path else topic.grounds or topic.name
                        h[topic.name] = tier.lower()
        _prefer_parents(scored, p.sources)
        products = product_phrases(p, language, prompts)
        for option in b:
            # Chinese segments are named by their own phrases before any taxonomy name (the nearest
            # hobby of a shampoo segment was "护发用户"), and by a product with its own role noun
            # ("手机用户") before any feature of it ("短信买家"), whatever their scores.
            first = any(option.startswith(x) for x in products)
            bonus = (1 + first) * PRODUCT_FIRST if language == "zh" else 0.0
            scored.setdefault(option, float(fit[row[option]]) + bonus)
        ranked = sorted(scored, key=lambda o: (-scored[o], o))[:MAX_OPTIONS]
        p.options, p.scores = ranked, [round(scored[o], 6) for o in ranked]
        p.sources = {o: v for o, v in p.sources.items() if o in ranked}
        p.heads = {o: h[o] for o in ranked if o in h}


def _prefer_parents(scored: dict[str, float], sources: dict[str, dict[str, str]]) -> None:
    """Drop a taxonomy name when a node above it is offered too and scores within SPECIFIC of
    it: a segment that writes about music in general scores a dozen music genres a little above
    "music fans" (the genres' words add to the fit), and only a clear lead makes the genre its name."""
    by_path = {v["iab_path"]: name for name, v in sources.items() if v.get("iab_path")}
    for name, v in list(sources.items()):
        tiers = v.get("iab_path", "").split(" > ")
        above = [by_path.get(" > ".join(tiers[:k])) for k in range(1, len(tiers))]
        if any(a in scored and scored[name] < scored[a] + SPECIFIC for a in above if a is not None):
            del scored[name], sources[name]


def _role_table(language: str, prompts: str | Path | None, audience: str) -> tuple[dict, list[str]]:
    """roles.toml's role nouns by head word, and the default roles for this audience."""
    table = _roles(prompts).get("zh" if language == "zh" else "en", {})
    default = table.get("default", {})
    if isinstance(default, Mapping):
        default = default.get(audience, default.get(DEFAULT_AUDIENCE, []))
    return table.get("roles", {}), list(default)


def _own_roles(phrase: str, roles: Mapping[str, Sequence[str]], language: str) -> list[str]:
    head = phrase.split()[-1]
    return [role for role, heads in roles.items()
            if head in heads or (language == "zh" and any(phrase.endswith(h) for h in heads))]


def product_phrases(profile: SegmentProfile, language: str = "en", prompts: str | Path | None = None) -> list[str]:
    """A Chinese segment's phrases that name a product with a role noun of its own ("手机" →
    "手机用户"), found anywhere among its top tags and terms: a phone segment's first tags are
    its features ("短信", "铃声"), whose names with the default role ("短信买家") miss the product."""
    if language != "zh":
        return []
    roles, _ = _role_table(language, prompts, DEFAULT_AUDIENCE)
    products = set(_roles(prompts).get("zh", {}).get("products", []))
    roles = {role: heads for role, heads in roles.items() if role in products}
    phrases = dict.fromkeys([*profile.nouns(profile.top_tags), *profile.nouns(profile.top_terms)])
    return [p for p in phrases if _own_roles(p, roles, language)][:2]


def label_options(profile: SegmentProfile, language: str = "en", prompts: str | Path | None = None,
                  audience: str = DEFAULT_AUDIENCE) -> list[str]:
    """The names a segment may take: its distinctive phrases (tags first) as noun phrases."""
    return list(label_heads(profile, language, prompts, audience))


def label_heads(profile: SegmentProfile, language: str = "en", prompts: str | Path | None = None,
                audience: str = DEFAULT_AUDIENCE) -> dict[str, str]:
    """label_options, each with the phrase it was built from ("dog owners" → "dog")."""
    roles, default = _role_table(language, prompts, audience)
    tags, terms = profile.top_tags, profile.top_terms
    # A role noun needs a noun before it: no "install fans", "wait buyers", "安装买家", "京东买家".
    nouns = profile.nouns(tags), profile.nouns(terms)
    if nouns[0] or nouns[1]:  # with none at all a verb's name still beats "segment N"
        tags, terms = nouns
    # Tags first: the model chose them as interests; a segment's terms (any words its members
    # share, "feel", "cute") only fill in when it has fewer than two tags.
    phrases = list(dict.fromkeys([*tags[:3], *terms[:3]]))
    phrases = phrases[:3] if len(tags) >= 2 else phrases[:2]
    products = product_phrases(profile, language, prompts)
    options: dict[str, str] = {}
    for phrase in [*products, *(p for p in phrases if p not in products)]:
        head = phrase.split()[-1]
        for role in _own_roles(phrase, roles, language) or default:
            if language == "zh":
                option = f"{phrase}{role}"
            elif role.startswith(head[:4]):  # "garden" + "gardeners": "gardeners", not "garden gardeners"
                option = " ".join([*phrase.split()[:-1], role])
            else:
                option = f"{phrase} {role}"
            options.setdefault(option, phrase)
    fitting = [(option, phrase) for option, phrase in options.items() if len(option) <= MAX_LABEL_CHARS]
    return dict(fitting[:MAX_OPTIONS])


class SegmentName(NamedTuple):
    """A segment's name, its one-sentence description, who chose it and, for a taxonomy name,
    the node it came from."""

    label: str
    description: str
    named_by: str  # "llm" or "fallback"
    iab_id: str = ""
    iab_path: str = ""


def template_description(profile: SegmentProfile, language: str = "en", audience: str = DEFAULT_AUDIENCE,
                         prompts: str | Path | None = None) -> str:
    """A complete sentence about the segment's tags (else terms), for when the model's is unusable."""
    listed = (profile.top_tags or profile.nouns(profile.top_terms) or profile.top_terms)[:4]
    words = audience_words(audience, prompts)
    if language == "zh":
        return words["zh_about"].format(topics="、".join(listed)) if listed else words["zh_none"]
    if not listed:
        return words["en_none"]
    joined = listed[0] if len(listed) == 1 else f"{', '.join(listed[:-1])} and {listed[-1]}"
    return words["en_about"].format(topics=joined)


def _named(profile: SegmentProfile, label: str, description: str, by: str) -> SegmentName:
    source = profile.sources.get(label, {})
    return SegmentName(label, description, by, source.get("iab_id", ""), source.get("iab_path", ""))


def fallback_name(profile: SegmentProfile, language: str = "en", audience: str = DEFAULT_AUDIENCE,
                  prompts: str | Path | None = None) -> SegmentName:
    """Named without the LLM: the best-ranked name; always readable, in the data's language."""
    options = profile.options or label_options(profile, language, prompts, audience)
    description = template_description(profile, language, audience, prompts)
    if language == "zh" and not options:
        words = profile.top_tags[:2] or profile.top_terms[:3]
        label = "、".join(words) if words else f"用户群 {profile.segment_id}"
        return SegmentName(label[:30], description, "fallback")
    return _named(profile, options[0] if options else f"segment {profile.segment_id}", description, "fallback")


@dataclass(frozen=True)
class NamingOptions:
    """Settings of the naming stage (see `name_segments`). `use_llm=False` names every segment
    without the LLM (the pipeline does so where the model is known to be weak)."""

    params: GenerationParams
    language: str = "en"
    use_llm: bool = True
    audience: str = DEFAULT_AUDIENCE
    prompts: str | Path | None = None
    # A parent named by its children names none under this size (--k-anonymity).
    k_anonymity: int = 1


def name_segments(
    profiles: Sequence[SegmentProfile], engine: Engine | None, template: PromptTemplate, options: NamingOptions, *,
    cache: ResultCache | None = None, stats: CallStats | None = None, taken: Collection[str] = (),
    level: Sequence[SegmentProfile] = (),
) -> list[SegmentName]:
    """One name per profile; labels are unique, and none is one of `taken` (lowercase). `level`:
    every profile of their level, when some are named otherwise (their tags still contrast)."""
    template.check_variables(NAME_VARIABLES)
    language, audience, prompts = options.language, options.audience, options.prompts
    every = [p.options or label_options(p, language, prompts, audience) for p in profiles]
    offered = [_close_calls(o, p.scores) for o, p in zip(every, profiles, strict=True)]
    results = [fallback_name(p, language, audience, prompts) for p in profiles]
    askable = [i for i, p in enumerate(profiles) if offered[i]]
    if engine is not None and askable and options.use_llm:
        for i, answer in _llm_names(profiles, askable, offered, engine, template, options, cache=cache, stats=stats,
                                     level=level):
            results[i] = answer
    return _unique(results, profiles, every, set(taken))


def name_tree(profiles: Sequence[SegmentProfile], engine: Engine | None, template: PromptTemplate,
              options: NamingOptions, *, cache: ResultCache | None = None, stats: CallStats | None = None,
              check: Callable[[list[SegmentProfile], list[SegmentName]], list[SegmentName]] | None = None,
              ) -> list[SegmentName]:
    """Names for the segments of every level, the leaves first: each level is named among
    itself (its profiles were ranked against each other), and no segment takes a name a level
    below took, so a parent never repeats a child's. Leaves first: they are what users belong
    to, and a parent named first took its best child's name ("book readers" over the book leaf),
    leaving the leaf a worse one. A parent keeps only the options that speak for COVERED of its
    members (`_speaks_for` its children as named); one left with none is named by its children,
    largest first ("skin care / food & drink +2"). `check` may replace names of a level."""
    results: list[SegmentName | None] = [None] * len(profiles)
    taken: set[str] = set()
    for level in sorted({p.level for p in profiles}):
        rows = [i for i, p in enumerate(profiles) if p.level == level]
        own = [profiles[i] for i in rows]
        for profile in own:
            keep = [k for k, o in enumerate(profile.options) if o.lower() not in taken]
            profile.options = [profile.options[k] for k in keep]
            profile.scores = [profile.scores[k] for k in keep if k < len(profile.scores)]
        by_children = {k: name for k, p in enumerate(own)
                       if (name := _keep_covering(p, profiles, results, options)) is not None}
        asked = [p for k, p in enumerate(own) if k not in by_children]
        named_asked = iter(name_segments(asked, engine, template, options, cache=cache, stats=stats, taken=taken,
                                           level=own))
        named = [by_children[k] if k in by_children else next(named_asked) for k in range(len(own))]
        if check is not None:
            named = _unique(check(own, named), own, [p.options for p in own], set(taken))
        for i, name in zip(rows, named, strict=True):
            results[i] = name
        taken |= {n.label.lower() for n in named}
    return results  # type: ignore[return-value]


def _keep_covering(parent: SegmentProfile, profiles: Sequence[SegmentProfile],
                   names: Sequence[SegmentName | None], options: NamingOptions) -> SegmentName | None:
    """Drops the parent's options that speak for under COVERED of its members (a leaf has no
    named children and keeps its own); the name from its children when none is left."""
    children = [(profiles[i], names[i]) for i in sorted(
        (i for i, p in enumerate(profiles) if p.parent_id == parent.segment_id and names[i]),
        key=lambda i: (-profiles[i].size, i))]
    if not children:
        return None
    kept = [o for o in parent.options if _covered(o, parent, children, options.language) >= COVERED]
    parent.scores = [s for o, s in zip(parent.options, parent.scores) if o in kept]
    parent.options = kept
    return None if kept else _children_name(parent, children, options)


def _covered(option: str, parent: SegmentProfile, children: Sequence[tuple[SegmentProfile, SegmentName]],
             language: str) -> float:
    """Share of the parent's members in the children `option` speaks for (`_speaks_for`)."""
    total = sum(child.size for child, _ in children)
    return sum(child.size for child, name in children if _speaks_for(option, parent, child, name, language)) / max(total, 1)


def _speaks_for(option: str, parent: SegmentProfile, child: SegmentProfile, name: SegmentName, language: str) -> bool:
    """A parent's option speaks for a child named `name` when the child's taxonomy node lies
    under the option's ("Sports" over "Sports > Fishing Sports"), or when what the option is
    about is a word of the child's name or of its first tags or phrases ("book" for a child about
    "book, story, reading"). The encoder cannot tell: every shopping name is near every shopping
    segment."""
    path = parent.sources.get(option, {}).get("iab_path", "")
    if path and name.iab_path and f"{name.iab_path} >".startswith(f"{path} >"):
        return True
    head = parent.heads.get(option, option)
    about = " ".join([name.label, *child.top_tags[:4], *child.nouns(child.top_terms)[:4]])
    if language == "zh":
        return head in about
    words = [w for w in re.findall(r"[a-z]{3,}", head.lower()) if w not in _GENERIC and w not in STOPWORDS]
    return bool({s for w in words for s in _stem_forms(w)} & _stems(about))


def _children_name(parent: SegmentProfile, children: Sequence[tuple[SegmentProfile, SegmentName]],
                   options: NamingOptions) -> SegmentName:
    """The parent's children by what their names are about, largest first, as many as fit."""
    heads = [child.heads.get(name.label) or name.label for child, name in children
             if child.size >= options.k_anonymity]
    joiner = "、" if options.language == "zh" else " / "
    label, shown = (heads[0], 1) if heads else (f"segment {parent.segment_id}", 0)
    for head in heads[1:]:
        rest = len(children) - shown - 1
        if len(label + joiner + head) + (len(f" +{rest}") if rest else 0) > MAX_LABEL_CHARS:
            break
        label, shown = label + joiner + head, shown + 1
    if len(children) > shown and heads:
        label += f" +{len(children) - shown}"
    description = template_description(parent, options.language, options.audience, options.prompts)
    return SegmentName(label, description, "fallback")


def _llm_names(profiles, askable, offered, engine, template, options: NamingOptions, *, cache,
               stats, level=()) -> list[tuple[int, SegmentName]]:
    """The LLM's pick among each askable segment's `offered` names, and its description (when usable)."""
    language, audience, prompts = options.language, options.audience, options.prompts
    by_id = {p.segment_id: p for p in [*level, *profiles]}
    words = audience_words(audience, prompts)
    chats, shown = [], []
    for i in askable:
        p = profiles[i]
        neighbour_tags = [t for j in p.neighbours for t in (by_id[j].top_tags or by_id[j].top_terms)[:3]]
        chats.append(template.render(tags=p.top_tags or p.top_terms, quotes=p.quotes, options=offered[i],
                                     neighbour_tags=neighbour_tags, size=p.size, language=language,
                                     audience=words["plural"]))
        shown.append(" ".join([*p.top_tags, *p.top_terms]))
    example_texts = _example_texts(template)

    def parse(k: int, answer: LLMSegmentName) -> SegmentName:
        profile = profiles[askable[k]]
        if answer.label not in offered[askable[k]]:  # the schema's enum, checked again
            raise Rejected("the label must be one of the listed names")
        description = _description(answer.description, profile, shown[k], example_texts, language, answer.label)
        return _named(profile, answer.label, description or template_description(profile, language, audience, prompts),
                      "llm")

    settings = StructuredSettings(params=options.params, retry_message=template.retry_message)
    outcomes = run_structured(engine, chats, LLMSegmentName, parse, settings, cache=cache, stats=stats,
                              schemas=[name_schema(offered[i]) for i in askable])
    return [(i, outcome.value) for i, outcome in zip(askable, outcomes, strict=True) if outcome.value]


def _close_calls(options: Sequence[str], scores: Sequence[float]) -> list[str]:
    """The best option, then those the ranking scores nearly as high (at most LLM_OPTIONS).
    Without scores (a run saved before they were) the best LLM_OPTIONS are offered."""
    if not scores or len(scores) < len(options[:LLM_OPTIONS]) or scores[0] <= 0:
        return list(options[:LLM_OPTIONS])
    return [o for o, s in zip(options[:LLM_OPTIONS], scores, strict=False) if CLOSE_CALL * scores[0] <= s <= scores[0]]


def name_schema(options: Sequence[str]) -> dict:
    schema = LLMSegmentName.model_json_schema()
    schema["properties"]["label"] = {"type": "string", "enum": list(options)}
    return schema


def _description(text: str, profile: SegmentProfile, shown: str, example_texts: set[str], language: str,
                 label: str = "") -> str:
    """The model's sentence when it is complete, its own and about the segment; else ""."""
    description = " ".join(text.split())
    if language != "zh":
        description = _first_clause(description)
    # A sentence cut by the length limit has no end mark; a Chinese run needs a Chinese sentence
    # (not a copied English example).
    complete = description.endswith(_SENTENCE_END) and (
        bool(_CJK.search(description)) if language == "zh" else len(description.split()) >= 3)
    usable = (complete and description.lower() not in example_texts and not _repeats(description)
              and not (language != "zh" and _FIRST_PERSON.search(description)))
    if not usable or not _shares_a_word(description, shown):
        return ""
    if language != "zh" and not _grounded(description, " ".join([label, shown, *profile.quotes])):
        return ""
    return description


# ", but ..." after what a segment's members write about is the small model's padding, a claim
# nothing shown supports ("People who love food and drink, but they're not the only ones.",
# "People who support gun control, but are against gun violence."); "but also" adds, so it stays.
_BUT = re.compile(r",\s*but\s+(?!also\b)", re.IGNORECASE)


def _first_clause(description: str) -> str:
    """The sentence up to a contrastive ", but", as a sentence of its own (3 words at least)."""
    head = _BUT.split(description, maxsplit=1)[0].rstrip(" ,;:")
    return head + "." if head != description and len(head.split()) >= 3 else description


# Words any description of a customer group may use; the rest must come from what was shown.
_GENERIC = frozenset("""customer customers people person users user buyers shoppers owners fans group members
who whose enjoy enjoys like likes love loves use uses buy buys interested interest interests products product
items item things their they them and also are is for with about into of the to in on at from that this
these those often mostly many most some all various different kinds types other others variety way ways range""".split())


# A description speaks of the group; in the first person it is a member's review copied ("This
# magazine is a good one. I love it.").
_FIRST_PERSON = re.compile(r"\b(i|i'm|i've|me|my|we|our)\b", re.IGNORECASE)


def _grounded(description: str, shown: str) -> bool:
    """Most of a description's own nouns (not the generic words) appear in what the model was
    shown: "... the magazine and read the stories and the books" wanders off a magazine segment.
    Words that are never nouns ("healthy", "beautiful") only qualify them, so they are not judged:
    "Customers who use skin care products to keep their skin healthy and beautiful." stands."""
    words = {w for w in re.findall(r"[a-z]{3,}", description.lower())
             if w not in _GENERIC and w not in STOPWORDS and not never_a_noun(w)}
    known = _stems(shown)
    missing = sum(not (_stem_forms(w) & known) for w in words)
    return bool(words) and missing <= MAX_UNGROUNDED and len(words) - missing >= GROUNDED_SHARE * len(words)


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
    """True when some run of `n` words occurs three times or more, or of `n + 1` words twice: a
    decoding loop ("... and make their own products, using the skin care products to make their
    own products.")."""
    words = re.findall(r"\w+", text.lower())

    def most(k: int) -> int:
        return max(Counter(tuple(words[i : i + k]) for i in range(len(words) - k + 1)).values(), default=0)

    return most(n) >= 3 or most(n + 1) >= 2


def _stem_forms(word: str) -> set[str]:
    """A word's first four letters, as written and of its regular singular: "toys" meets "toy",
    "parties" "party", and "movies" (whose rule-made singular is "movy") still meets "movie"."""
    return {word[:4], singular(word)[:4]}


def _stems(text: str) -> set[str]:
    if _CJK.search(text):
        return {c for c in text if _CJK.match(c)}
    return {s for w in re.findall(r"[a-z]{3,}", text.lower()) for s in _stem_forms(w)}


def _shares_a_word(label: str, shown: str) -> bool:
    """A name must echo something it was shown: this catches copied examples and injected text."""
    return bool(_stems(label) & _stems(shown))


def _unique(results: Sequence[SegmentName], profiles: Sequence[SegmentProfile],
            options: Sequence[Sequence[str]], used: set[str] | None = None) -> list[SegmentName]:
    """Names unique, and none in `used` (lowercase names already given): a repeated name goes to
    the larger segment; the others take their next unused label, else the name plus a
    distinctive tag, else plus the segment id."""
    used = set() if used is None else used
    out: list = [None] * len(results)
    for i in sorted(range(len(results)), key=lambda i: -profiles[i].size):
        name = results[i]
        if name.label.lower() in used:
            spare = next((o for o in options[i] if o.lower() not in used), None)
            own = profiles[i].top_tags + profiles[i].top_terms
            extra = next((t for t in own if t.lower() not in name.label.lower()), None)
            label = spare or (f"{name.label} ({extra})" if extra else name.label)
            if label.lower() in used:
                label = f"{label} #{profiles[i].segment_id}"
            name = _named(profiles[i], label, name.description, name.named_by)
        used.add(name.label.lower())
        out[i] = name
    return out
