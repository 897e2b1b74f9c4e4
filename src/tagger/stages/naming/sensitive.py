"""Sensitive topics: which segments are about health, religion or belief, political opinions,
sexual orientation or sex life, racial or ethnic origin, trade-union membership (the GDPR's
special categories, Art. 9) or a topic of the IAB Content Taxonomy 3.1's "Sensitive Topics"
branch. The categories live in prompts/data/sensitive.toml, which a user may edit.

A segment is about a category when one of the category's anchors (the names of the taxonomy
nodes it covers, and its plain `about` lines) points at it, in the encoder's space (the anchor
is nearer its centroid than any other segment's), and is close to one of the segment's topical
phrases (`PHRASE_CLOSE`) or to what its members write on average, its centroid (`TEXT_CLOSE`), or when one of its two best-ranked names is a taxonomy node the
category covers ("christianity followers"). Every segment is checked, leaves and parents alike;
a parent most of whose members sit in segments of one sensitive category is about it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from tagger.errors import ConfigError
from tagger.prompts import data_file
from tagger.stages.naming.profile import SegmentProfile
from tagger.stages.taxonomy import every_node
from tagger.text import HAN_CHAR
from tagger.vectors import unit_rows

TABLE = "sensitive.toml"
# Calibrated on newsgroups-dev (its religion, politics, guns and medicine posters against its
# computing, sports and for-sale ones) and Amazon's and the demo's shopping segments
# (docs/decisions.md). The nodes are matched with their path ("Skin and Dermatology (Medical Health >
# Diseases and Conditions)"): the bare node matched a skin care shop's "skin" as closely as a
# Christian forum's "bible" matched "Christianity" (0.68 both).
PHRASE_CLOSE = 0.62
TEXT_CLOSE = 0.42
# How many of a segment's topical phrases are checked.
PHRASES = 6
MODES = ("flag", "exclude")


@dataclass(frozen=True)
class Category:
    """One sensitive category: its label ("religion or belief"), the taxonomy paths it covers
    and those under them it does not, and plain lines of what it is about."""

    key: str
    label: str
    paths: tuple[str, ...] = ()
    excepted: tuple[str, ...] = ()
    about: tuple[str, ...] = ()

    def covers(self, path: str) -> bool:
        """True when the taxonomy path lies under one of its paths and under none of its exceptions."""
        def under(p: str) -> bool:
            return f"{path} >".startswith(f"{p} >")
        return bool(path) and any(under(p) for p in self.paths) and not any(under(p) for p in self.excepted)


@cache
def categories(prompts: str | Path | None = None) -> tuple[Category, ...]:
    """prompts/data/sensitive.toml's categories (a prompts folder's own copy wins)."""
    table = data_file(TABLE, prompts).get("categories", {})
    out = []
    for key, entry in table.items():
        if not isinstance(entry, dict) or not entry.get("label"):
            raise ConfigError(f"{TABLE}: category '{key}' needs a label; see the shipped file for the layout")
        out.append(Category(key, str(entry["label"]), tuple(entry.get("iab", [])), tuple(entry.get("except", [])),
                            tuple(entry.get("about", []))))
    return tuple(out)


def category_of_path(path: str, prompts: str | Path | None = None) -> str:
    """The label of the sensitive category a taxonomy path lies under, or ""."""
    return next((c.label for c in categories(prompts) if c.covers(path)), "")


def _anchors(language: str, prompts: str | Path | None) -> tuple[list[str], list[str]]:
    """(texts, the label of each text's category) for the run's language."""
    nodes = every_node(prompts) if language != "zh" else ()
    texts, labels = [], []
    for category in categories(prompts):
        own = [n.meaning for n in nodes if category.covers(n.iab_path)]  # the node with its path
        own += [a for a in category.about if bool(HAN_CHAR.search(a)) == (language == "zh")]
        for text in dict.fromkeys(own):
            texts.append(text)
            labels.append(category.label)
    return texts, labels


@dataclass(frozen=True)
class SensitiveMatch:
    """Why a segment is flagged: the category, the anchor that matched, and how close it is to
    the segment's nearest topical phrase and to its centroid."""

    label: str = ""
    anchor: str = ""
    phrase: float = 0.0
    text: float = 0.0


def match_sensitive(profiles: Sequence[SegmentProfile], centroids: np.ndarray, encoder, language: str = "en",
                    prompts: str | Path | None = None) -> list[SensitiveMatch]:
    """Each profile's closest sensitive anchor among those that point at it (the anchor is nearer
    its centroid than any other segment's of the level), flagged (`label` set) when it is within
    PHRASE_CLOSE of one of its topical phrases or TEXT_CLOSE of its centroid."""
    texts, labels = _anchors(language, prompts)
    phrases = [p.topical(language=language)[:PHRASES] for p in profiles]
    wanted = list(dict.fromkeys(t for ph in phrases for t in ph))
    if not texts or not len(profiles) or not len(centroids):
        return [SensitiveMatch() for _ in profiles]
    vectors = unit_rows(np.asarray(encoder.encode([*texts, *wanted]), np.float32))
    anchors, row = vectors[: len(texts)], {t: len(texts) + i for i, t in enumerate(wanted)}
    to_centroids = anchors @ unit_rows(np.asarray(centroids, np.float32)).T  # anchors x segments
    nearest = to_centroids.argmax(axis=1)
    out = []
    for k, ph in enumerate(phrases):
        by_phrase = (vectors[[row[t] for t in ph]] @ anchors.T).max(axis=0) if ph else np.zeros(len(texts))
        text = to_centroids[:, k]
        pointing = nearest == k
        close = pointing & ((by_phrase >= PHRASE_CLOSE) | (text >= TEXT_CLOSE))
        best = int(np.argmax(np.where(pointing, np.maximum(by_phrase, text), -np.inf))) if pointing.any() else -1
        j = int(np.argmax(np.where(close, np.maximum(by_phrase, text), -np.inf))) if close.any() else best
        if j < 0:
            out.append(SensitiveMatch())
            continue
        out.append(SensitiveMatch(labels[j] if close.any() else "", texts[j], round(float(by_phrase[j]), 4),
                                  round(float(text[j]), 4)))
    return out


def judge_sensitive(profiles: Sequence[SegmentProfile], centroids: np.ndarray, encoder, language: str = "en",
                    prompts: str | Path | None = None) -> list[str]:
    """Each profile's sensitive category label, or "" (one per profile, `centroids` in order)."""
    return [m.label for m in match_sensitive(profiles, centroids, encoder, language, prompts)]


def named_category(profile: SegmentProfile, prompts: str | Path | None = None, top: int = 2) -> str:
    """The category of a taxonomy node among the profile's `top` ranked names, or "": a segment
    whose name could be "christianity followers" is about religion, whatever the anchors say."""
    return next((label for o in profile.options[:top] if o.iab_path
                 and (label := category_of_path(o.iab_path, prompts))), "")


def parent_category(children: Sequence[tuple[int, str]]) -> str:
    """The category of most of a parent's members: `children` as (size, category) pairs."""
    total = sum(size for size, _ in children)
    by: dict[str, int] = {}
    for size, label in children:
        if label:
            by[label] = by.get(label, 0) + size
    best = max(by, key=lambda k: (by[k], k), default="")
    return best if best and 2 * by[best] >= total else ""
