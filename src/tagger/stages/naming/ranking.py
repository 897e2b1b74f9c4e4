"""Every name a segment may take, ranked on one scale in the encoder's space.

Candidates are the taxonomy's audience names and the names built from the segment's topical
phrases (`candidates.py`). A name's score is how near it is to its segment's centroid (it says
what the members write) plus how much nearer that is than to the nearest other segment's (it
points at this segment, so no two segments share a name). A taxonomy name is offered only when
it and its meaning (the node with its path) point at the segment (positive margins) and its node
is close to the segment in absolute terms: within GROUNDING of one of the segment's topical
phrases or GROUNDING_TEXT of its centroid. Nearest is not enough: the encoder's nearest topic of
a segment about keys and algorithms can be "grocery shopping".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tagger.stages.naming.candidates import MAX_OPTIONS, TAXONOMY, NameOption, built_options, product_phrases, topic_label
from tagger.stages.naming.profile import SegmentProfile
from tagger.stages.naming.settings import NamingSettings
from tagger.stages.naming.topical import is_noun_phrase
from tagger.stages.taxonomy import Topic
from tagger.text import HAN_CHAR
from tagger.vectors import unit_rows

# A taxonomy node must be this close (cosine) to one of the segment's own topical phrases ...
GROUNDING = 0.45
# ... or this close to the segment's centroid (a garden segment's own phrases, "bulb", "hose",
# are each too narrow for "Gardening"). Calibrated on the dev sets' segments (docs/decisions.md).
GROUNDING_TEXT = 0.40
GROUNDING_PHRASES = 6
# How much better a taxonomy node must score than its parent to be offered instead of it.
SPECIFIC = 0.1
# A name speaks for the members who write what it is about (a parent's name must speak for half
# its members, tree.py): each option's score moves by this weight times (that share − ½). The share
# is its phrase's for a built name, and for a taxonomy name that of the members who write any of
# the topical phrases that ground it (within GROUNDING): members write "pitcher" and "inning", not
# always "baseball". newsgroups-dev's Mac leaf took "computer peripherals followers" (grounded by
# "vga", 20 % of members) over "mac fans" (86 %) without it (eval/README.md).
COVERAGE_WEIGHT = 0.2
# Added to the score of a Chinese name built from the segment's phrases, twice for one built on a
# product with its own role noun: in Chinese those rank first ("洗发水买家" over "护发用户").
PRODUCT_FIRST = 1.0


def level_topics(topics: Sequence[Topic], language: str, level: int) -> list[Topic]:
    """The taxonomy names a level may take, in the run's language: a parent is a broad interest,
    the taxonomy's first two tiers ("Sports", "Sports > Baseball")."""
    own = [t for t in topics if bool(HAN_CHAR.search(t.name)) == (language == "zh")]
    return own if level == 0 else [t for t in own if t.tier <= 2]


def grounding_phrases(profile: SegmentProfile, language: str) -> list[str]:
    """The phrases that ground a taxonomy name: its topical tags and terms, the first few of each."""
    return list(dict.fromkeys([*profile.topical(profile.top_tags, language)[:GROUNDING_PHRASES],
                               *profile.topical(profile.top_terms, language)[:GROUNDING_PHRASES]]))


def rank_options(profiles: Sequence[SegmentProfile], centroids: np.ndarray, encoder, settings: NamingSettings,
                 topics: Sequence[Topic] = ()) -> list[SegmentProfile]:
    """The profiles again, each with its `options`: the names it may take, best first, scored."""
    language, prompts = settings.language, settings.prompts
    built = [built_options(*_name_phrases(p, language, topical=True), language, prompts, settings.audience,
                           bool(p.sensitive), p.wordings) for p in profiles]
    # A segment none of whose words is a topic is named from its nouns, only when no taxonomy
    # name fits it either: a name of its own rather than "segment N".
    spare = [built_options(*_name_phrases(p, language, topical=False), language, prompts, settings.audience,
                           bool(p.sensitive), p.wordings) if not b else [] for p, b in zip(profiles, built, strict=True)]
    phrases = [grounding_phrases(p, language) for p in profiles]
    grounds = [t.grounds or t.meaning for t in topics]
    texts = list(dict.fromkeys([*(t.name for t in topics), *(t.meaning for t in topics), *grounds,
                                *(o.label for b in [*built, *spare] for o in b), *(t for ph in phrases for t in ph)]))
    if not texts or not len(centroids):
        return [p.with_options(b or s) for p, b, s in zip(profiles, built, spare, strict=True)]
    vectors = unit_rows(np.asarray(encoder.encode(texts), np.float32))
    row = {t: i for i, t in enumerate(texts)}
    to_segments = vectors @ unit_rows(np.asarray(centroids, np.float32)).T
    ranked = []
    for k, (p, b, ph, s) in enumerate(zip(profiles, built, phrases, spare, strict=True)):
        others = np.delete(to_segments, k, axis=1)
        margin = to_segments[:, k] - (others.max(axis=1) if others.shape[1] else 0.0)
        fit = to_segments[:, k] + margin
        scored: dict[str, NameOption] = {}
        if topics and ph:
            node = [row[g] for g in grounds]
            close = (vectors[node] @ vectors[[row[t] for t in ph]].T) >= GROUNDING  # nodes x phrases
            grounded = close.any(axis=1) | (to_segments[node, k] >= GROUNDING_TEXT)
            for j, topic in enumerate(topics):
                name, meaning = row[topic.name], row[topic.meaning]
                if margin[name] > 0 and margin[meaning] > 0 and grounded[j]:
                    # it speaks for the members who write any phrase that grounds it ("pitcher",
                    # "inning" for Baseball); a profile saved without shares moves no score
                    covered = p.share_of_any([t for t, near in zip(ph, close[j], strict=True) if near]) \
                        if p.shares else 0.5
                    score = float(fit[name]) + COVERAGE_WEIGHT * (covered - 0.5)
                    option = _taxonomy_option(topic, score, p, language, prompts)
                    if option.score > scored.get(option.label, NameOption("", -np.inf)).score:
                        scored[option.label] = option
        _prefer_parents(scored)
        products = product_phrases(p.topical(language=language), language, prompts)
        for option in b or ([] if scored else s):
            # Chinese segments are named by their own phrases before any taxonomy name, and by a
            # product with its own role noun ("手机用户") before any feature of it ("短信买家").
            first = any(option.head.startswith(x) for x in products)
            bonus = (1 + first) * PRODUCT_FIRST if language == "zh" else 0.0
            coverage = COVERAGE_WEIGHT * (p.shares.get(option.head, 0.5) - 0.5)
            scored.setdefault(option.label, NameOption(option.label,
                                                       round(float(fit[row[option.label]]) + coverage + bonus, 6),
                                                       option.source, option.head))
        best = sorted(scored.values(), key=lambda o: (-o.score, o.label))[:MAX_OPTIONS]
        ranked.append(p.with_options(best))
    return ranked


def _name_phrases(profile: SegmentProfile, language: str, topical: bool) -> tuple[list[str], list[str]]:
    """The tags and terms a name may be built on: its topical ones, or (`topical` False) its nouns."""
    if topical:
        # the phrases most members write first (a name speaks for them), ties in their rank order
        def by_share(phrases: list[str]) -> list[str]:
            return sorted(phrases, key=lambda t: -profile.shares.get(t, 0.0))

        return (by_share(profile.topical(profile.top_tags, language)),
                by_share(profile.topical(profile.top_terms, language)))
    verbs = frozenset(profile.verbs)
    return ([t for t in profile.top_tags if is_noun_phrase(t, language, verbs)],
            [t for t in profile.top_terms if is_noun_phrase(t, language, verbs)])


def _taxonomy_option(topic: Topic, score: float, profile: SegmentProfile, language: str, prompts) -> NameOption:
    tier = topic.iab_path.split(" > ")[-1] if topic.iab_path else topic.grounds or topic.name
    label = topic_label(tier.lower(), language, prompts) if profile.sensitive else topic.name
    return NameOption(label, round(score, 6), TAXONOMY, tier.lower(), topic.iab_id, topic.iab_path)


def _prefer_parents(scored: dict[str, NameOption]) -> None:
    """Drop a taxonomy name when a node above it is offered too and scores within SPECIFIC of it:
    a segment about music in general scores a dozen genres a little above "music fans"."""
    by_path = {o.iab_path: o for o in scored.values() if o.iab_path}
    for label, option in list(scored.items()):
        tiers = option.iab_path.split(" > ") if option.iab_path else []
        above = [by_path.get(" > ".join(tiers[:k])) for k in range(1, len(tiers))]
        if any(a is not None and option.score < a.score + SPECIFIC for a in above):
            del scored[label]
