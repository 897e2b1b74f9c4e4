"""What naming reads of the users (`NamingCorpus`) and of each segment (`SegmentProfile`).

A segment's profile holds what sets it apart from the other users of its level: tags and
phrases ranked by share × log lift (a c-TF-IDF, as Clio's contrastive naming does), each with
its topical verdict (`topical.py`), evidence quotes, its nearest segments and its place in the
tree. Profiles are immutable: the names ranked for one (`ranking.py`) come back as a new profile
(`with_options`), never written into it.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tagger.schemas import TaggedUser, UserDocument
from tagger.stages.canon import STOPWORDS, canonical, surface_phrases, used_as_verbs, vocabulary
from tagger.stages.naming.candidates import NameOption
from tagger.stages.naming.describe import whole_quote
from tagger.stages.naming.topical import (PhraseUse, capitalised_shares, expected_share, is_noun_phrase, judge,
                                          used_as_adjectives)
from tagger.stages.naming.wording import longer_forms, plurals, spellings, written

VERB_SAMPLE = 20_000
# A word the data capitalises in at least this share of its mid-sentence uses is kept as a
# proper noun candidate (NamingCorpus.capitalised).
PROPER = 0.5
_WORD = re.compile(r"[A-Za-z]+|[\u3400-\u9fff]{2}")


def _terms(text: str, known: set[str]) -> list[str]:
    """The text's distinct phrases in canonical form (Chinese: jieba words, not bigrams). These
    are also the lexical space's input (stages/lexical.py): changing them moves users."""
    return list({canonical(p, known) for p in surface_phrases(text) if p not in STOPWORDS})


def _length(text: str) -> int:
    """Words in the text (Chinese: pairs of characters, about a word each)."""
    return len(_WORD.findall(text))


@dataclass(frozen=True)
class NamingCorpus:
    """What naming reads of the users' text, one entry per user: their distinct phrases in
    canonical form, their distinct items and the phrases of those, their text's length in words;
    and, for the data, the words it uses as verbs, those it uses as adjectives, those it mostly
    capitalises (proper nouns), and how it writes words (`wording.py`: "FBI", "protectors").
    Computed once per run and saved with it, so `tagger recut` names new segments without the
    comments."""

    terms: list[list[str]]
    items: list[list[str]]
    item_terms: list[list[str]]
    verbs: frozenset[str]
    lengths: list[int] = field(default_factory=list)
    capitalised: Mapping[str, float] = field(default_factory=dict)
    adjectives: frozenset[str] = frozenset()
    spellings: Mapping[str, str] = field(default_factory=dict)
    plurals: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_documents(cls, documents: Sequence[UserDocument], tagged_users: Sequence[TaggedUser] = (),
                       known: Collection[str] = ()) -> NamingCorpus:
        """`known`: singulars a saved run knew, so new users' plurals merge as that run's did."""
        known = vocabulary(d.text for d in documents) | set(known)
        # One string object per distinct phrase (sys.intern): a forum poster holds ~330 phrases,
        # most of them shared, and a copy of each per user cost ~2.4 GB at 100k users.
        terms = [[sys.intern(t) for t in _terms(d.text, known)] for d in documents]
        items = [list(dict.fromkeys(d.items)) for d in documents]
        item_terms = [[sys.intern(t) for t in _terms(" . ".join(d.items), known)] if d.items else []
                      for d in documents]
        heads = {p.split()[-1] for phrases in [*terms, *item_terms] for p in phrases}
        heads |= {t.tag.split()[-1] for u in tagged_users for t in u.tags}
        # Judged on at most VERB_SAMPLE documents (evenly spread): at a million users the counts are
        # settled long before the end and a full pass would cost as much as the profiles themselves.
        sample = [d.text for d in documents[::max(1, len(documents) // VERB_SAMPLE)]]
        # Kept for the words the data mostly capitalises: proper nouns ("Kindle", "Jim"), the rest say nothing.
        proper = {w: s for w, s in capitalised_shares(sample, heads).items() if s >= PROPER}
        words = {w for phrases in [*terms, *item_terms] for p in phrases for w in p.split()} | heads
        return cls(terms, items, item_terms, frozenset(used_as_verbs(heads, sample)),
                   [_length(d.text) for d in documents], proper, frozenset(used_as_adjectives(heads, sample)),
                   spellings(sample, words), plurals(sample, heads))

    @property
    def not_nouns(self) -> frozenset[str]:
        """Words the data uses as verbs or as adjectives: never the head of a name."""
        return self.verbs | self.adjectives

    def phrases(self, items: bool = True) -> list[list[str]]:
        """Per user, the phrases they wrote and (`items`) those of their items: the lexical space's input."""
        if not items:
            return [list(t) for t in self.terms]
        return [[*t, *i] for t, i in zip(self.terms, self.item_terms, strict=True)]


@dataclass(frozen=True)
class SegmentProfile:
    """One segment as naming sees it. `verdicts`: its phrases' topical verdicts (phrase → the
    rule's text, "topical: …" or "not topical: …"); `options`: the names it may take, best first
    (empty until ranked); `sensitive`: the sensitive category it is about, or ""; `verbs`: its
    phrases' last words the data uses as verbs or adjectives, not nouns."""

    segment_id: int
    size: int
    top_tags: tuple[str, ...]
    top_terms: tuple[str, ...]
    quotes: tuple[str, ...] = ()
    neighbours: tuple[int, ...] = ()
    verbs: tuple[str, ...] = ()
    level: int = 0
    parent_id: int = -1
    verdicts: Mapping[str, str] = field(default_factory=dict)
    options: tuple[NameOption, ...] = ()
    sensitive: str = ""
    # Share of its members who write each of its phrases (or hold it as a tag or an item's word).
    shares: Mapping[str, float] = field(default_factory=dict)
    # Which of its phrases (bit k: `phrases()[k]`) each member writes, as (bits, members) pairs:
    # how many write any of several phrases (`share_of_any`).
    co_use: tuple[tuple[int, int], ...] = ()
    # Its phrases as its members write them, where that differs (wording.py): "FBI",
    # "screen protectors" for "protector".
    wordings: Mapping[str, str] = field(default_factory=dict)

    def topical(self, phrases: Sequence[str] | None = None, language: str = "en") -> list[str]:
        """Of `phrases` (default: its tags, then its terms), those that are topics of the segment.
        A phrase judged by no verdict (a profile saved before verdicts) needs only to be a noun."""
        phrases = self.phrases() if phrases is None else phrases
        verbs = frozenset(self.verbs)
        return [p for p in phrases if self.verdicts.get(p, "topical").startswith("topical")
                and (p in self.verdicts or is_noun_phrase(p, language, verbs))]

    def phrases(self) -> list[str]:
        return list(dict.fromkeys([*self.top_tags, *self.top_terms]))

    def verdict(self, phrase: str) -> str:
        return self.verdicts.get(phrase, "")

    def share_of_any(self, phrases: Collection[str]) -> float:
        """Share of its members who write at least one of `phrases` (a profile saved without
        `co_use`: the largest of their shares)."""
        if not self.co_use:
            return max((self.shares.get(p, 0.0) for p in phrases), default=0.0)
        bits = sum(1 << k for k, p in enumerate(self.phrases()) if p in phrases)
        return sum(count for used, count in self.co_use if used & bits) / max(self.size, 1)

    def wording(self, phrase: str) -> str:
        """`phrase` as its members write it, in a sentence ("screen protectors", "FBI")."""
        return self.wordings.get(phrase, phrase)

    def with_options(self, options: Sequence[NameOption]) -> SegmentProfile:
        return replace(self, options=tuple(options))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (segment_profiles.json)."""
        return {"segment_id": self.segment_id, "size": self.size, "top_tags": list(self.top_tags),
                "top_terms": list(self.top_terms), "quotes": list(self.quotes), "neighbours": list(self.neighbours),
                "verbs": list(self.verbs), "level": self.level, "parent_id": self.parent_id,
                "verdicts": dict(self.verdicts), "options": [o.to_dict() for o in self.options],
                "sensitive": self.sensitive, "shares": dict(self.shares), "co_use": [list(c) for c in self.co_use],
                "wordings": dict(self.wordings)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentProfile:
        """Read back `to_dict`'s form; a profile saved before options were records (parallel lists
        of options, scores, sources and heads) reads as the same options."""
        data = dict(data)
        options = data.pop("options", [])
        scores, sources, heads = data.pop("scores", []), data.pop("sources", {}), data.pop("heads", {})
        ranked = []
        for k, o in enumerate(options):
            if isinstance(o, Mapping):
                ranked.append(NameOption(**o))
                continue
            node = sources.get(o, {})
            ranked.append(NameOption(o, float(scores[k]) if k < len(scores) else 0.0,
                                     "taxonomy" if node else "phrase", heads.get(o, ""),
                                     node.get("iab_id", ""), node.get("iab_path", "")))
        tuples = {k: tuple(data.get(k, ())) for k in ("top_tags", "top_terms", "quotes", "neighbours", "verbs")}
        tuples["co_use"] = tuple((int(bits), int(count)) for bits, count in data.get("co_use", ()))
        return cls(**{**data, **tuples, "options": tuple(ranked)})

    def withheld(self) -> SegmentProfile:
        """Only its id, size, place and neighbours: a segment under the k-anonymity floor."""
        return SegmentProfile(self.segment_id, self.size, (), (), (), self.neighbours, level=self.level,
                              parent_id=self.parent_id)


def characteristic(counts_in: Counter, size: int, counts_all: Counter, n_all: int, top: int,
                   min_count: int = 2) -> list[str]:
    """Rank by share in the segment × log lift over everyone (a c-TF-IDF); ties by name."""
    def score(item: str) -> float:
        share = counts_in[item] / size
        lift = share / (counts_all[item] / n_all)
        return share * math.log1p(lift)

    ranked = sorted((t for t, c in counts_in.items() if c >= min_count or size < 4), key=lambda t: (-score(t), t))
    return ranked[:top]


def profile_segments(
    labels: np.ndarray, strengths: np.ndarray, centroids: np.ndarray,
    tagged_users: Sequence[TaggedUser], corpus: NamingCorpus | Sequence[UserDocument],
    *, documents: Sequence[UserDocument] = (), language: str = "en", top: int = 8, quotes: int = 4,
) -> list[SegmentProfile]:
    """One profile per segment of `labels`; `corpus` is the run's NamingCorpus (or its documents).
    `documents` (when at hand) give evidence quotes as whole sentences."""
    if not isinstance(corpus, NamingCorpus):
        documents = documents or corpus
        corpus = NamingCorpus.from_documents(corpus, tagged_users)
    n = len(tagged_users)
    tags_all: Counter = Counter(t for u in tagged_users for t in {x.tag for x in u.tags})
    terms_all: Counter = Counter(t for terms in corpus.terms for t in terms)
    items_all: Counter = Counter(i for items in corpus.items for i in items)
    items_words: Counter = Counter(t for terms in corpus.item_terms for t in terms)
    similarity = centroids @ centroids.T if len(centroids) else np.zeros((0, 0))
    ids = range(int(labels.max()) + 1 if len(labels) else 0)
    members = {seg: np.flatnonzero(labels == seg) for seg in ids}
    members = {seg: m for seg, m in members.items() if len(m)}
    tops: dict[int, tuple[list[str], list[str]]] = {}
    longer: dict[int, dict[str, str]] = {}
    not_nouns = corpus.not_nouns
    for seg, own in members.items():
        tags_in = Counter(t for i in own for t in {x.tag for x in tagged_users[i].tags})
        terms_in = Counter(t for i in own for t in corpus.terms[i])
        top_tags = characteristic(tags_in, len(own), tags_all, n, top)
        # Members that share no tag still share words, or at least items: every segment gets
        # something of its own to be named from.
        top_terms = (characteristic(terms_in, len(own), terms_all, n, top)
                     or characteristic(terms_in, len(own), terms_all, n, top, min_count=1)
                     or characteristic(Counter(i for m in own for i in corpus.items[m]), len(own), items_all, n, top,
                                       min_count=1))
        if not any(is_noun_phrase(p, language, not_nouns) for p in [*top_tags, *top_terms]):
            # Nothing its members write can name people ("can't wait" is what a whole small segment
            # may share): the words of their items can ("print magazine").
            top_terms = list(dict.fromkeys([*top_terms, *characteristic(
                Counter(t for i in own for t in corpus.item_terms[i]), len(own), items_words, n, top)]))
        tops[seg] = (top_tags, top_terms)
        if language != "zh":
            longer[seg] = longer_forms([*top_tags, *top_terms], terms_in,
                                       lambda p: is_noun_phrase(p, language, not_nouns))
    verdicts, shares, co_use = _verdicts(tops, members, tagged_users, corpus, language)
    by_user = {d.user_id: d.comments for d in documents}
    profiles = []
    for seg, own in members.items():
        top_tags, top_terms = tops[seg]
        order = tuple(int(j) for j in np.argsort(-similarity[seg]) if j != seg)[:2]
        heads = {p.split()[-1] for p in [*top_tags, *top_terms]}
        picked = _quotes(own, strengths, tagged_users, top_tags, quotes, by_user)
        wordings = {p: written(longer.get(seg, {}).get(p, p), corpus.spellings, corpus.plurals)
                    for p in dict.fromkeys([*top_tags, *top_terms])}
        profiles.append(SegmentProfile(seg, len(own), tuple(top_tags), tuple(top_terms), tuple(picked), order,
                                       tuple(sorted(heads & not_nouns)), verdicts=verdicts[seg], shares=shares[seg],
                                       co_use=co_use[seg], wordings={p: w for p, w in wordings.items() if w != p}))
    return profiles


def _verdicts(tops: Mapping[int, tuple[list[str], list[str]]], members: Mapping[int, np.ndarray],
              tagged_users: Sequence[TaggedUser], corpus: NamingCorpus, language: str
              ) -> tuple[dict[int, dict[str, str]], dict[int, dict[str, float]], dict[int, tuple[tuple[int, int], ...]]]:
    """Each segment's phrases judged against general language and the level's other segments,
    the share of its members who write each, and which of them each member writes (co-use)."""
    wanted = {p for tags, terms in tops.values() for p in [*tags, *terms]}
    segments = list(members)
    column = {seg: k for k, seg in enumerate(segments)}
    counts = {p: np.zeros(len(segments)) for p in wanted}
    co_use: dict[int, tuple[tuple[int, int], ...]] = {}
    for seg, own in members.items():
        bit = {p: 1 << k for k, p in enumerate(dict.fromkeys([*tops[seg][0], *tops[seg][1]]))}
        patterns: Counter = Counter()
        for i in own:
            used = (set(corpus.terms[i]) | set(corpus.item_terms[i]) | {t.tag for t in tagged_users[i].tags}) & wanted
            for p in used:
                counts[p][column[seg]] += 1
            patterns[sum(bit.get(p, 0) for p in used)] += 1
        co_use[seg] = tuple(sorted(patterns.items()))
    sizes = np.array([len(members[s]) for s in segments], np.float64)
    lengths = np.asarray(corpus.lengths, np.int64) if len(corpus.lengths) == len(tagged_users) else None
    out: dict[int, dict[str, str]] = {}
    shares: dict[int, dict[str, float]] = {}
    for seg, (tags, terms) in tops.items():
        own_lengths = lengths[members[seg]] if lengths is not None else ()
        judged = {}
        shares[seg] = {p: round(float(counts[p][column[seg]] / sizes[column[seg]]), 4) for p in dict.fromkeys([*tags, *terms])}
        for p in dict.fromkeys([*tags, *terms]):
            word = p.split()[0] if len(p.split()) == 1 else None
            use = PhraseUse(counts[p] / sizes, sizes, expected_share(p, own_lengths, language) if lengths is not None
                            else 0.0, corpus.capitalised.get(word) if word else _capitalised(p, corpus))
            judged[p] = judge(p, column[seg], use, language=language, verbs=corpus.not_nouns).rule
        out[seg] = judged
    return out, shares, co_use


def _capitalised(phrase: str, corpus: NamingCorpus) -> float | None:
    shares = [corpus.capitalised[w] for w in phrase.split() if w in corpus.capitalised]
    return max(shares) if shares else None


def _quotes(members: np.ndarray, strengths: np.ndarray, tagged_users: Sequence[TaggedUser], top_tags: list[str],
            quotes: int, comments: Mapping[str, Sequence[str]]) -> list[str]:
    """Evidence of the segment's top tags from its strongest members, one per member, as whole
    sentences of their comments (or elided with "…")."""
    best = members[np.argsort(-strengths[members], kind="stable")]
    picked, seen = [], set()
    for i in best:
        user = tagged_users[i]
        for tag in user.tags:
            if tag.tag in top_tags and tag.evidence and tag.evidence not in seen:
                picked.append(whole_quote(tag.evidence, comments.get(user.user_id, ())))
                seen.add(tag.evidence)
                break
        if len(picked) >= quotes:
            break
    return picked

