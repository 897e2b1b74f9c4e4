"""Which phrases are topics of a segment: the words that may head a name or fill a description.

A phrase is judged against two backgrounds, and every judgement is a `Verdict` with a rule a
person can read:

- **General language** (the maintained `wordfreq` package, English and Chinese): a phrase with no
  general-language frequency, with digits or shaped like an id is not a word ("videoid"); one as
  frequent as a function word names nothing ("the"); and members must use it well above the rate
  general language predicts for texts as long as theirs (`MIN_LIFT`).
- **The data's own segments**: a word used at similar rates by many segments of the level is
  generic here ("file" across six of ten forum segments), and so is one members use barely more
  than other users (`MIN_CONTRAST`). Frequency alone cannot tell "cream" from "baseball" (zipf
  4.62 and 4.54); how a word spreads over the data's segments can.

First names come from a maintained table (Faker's English person names, MIT) and count only
where the data writes the word capitalised (`FIRST_NAME_CAPITALISED`): "Jim" is a poster's name,
"rose" a flower. Only phrases whose last word can be a noun here may head a name: not a word the
data uses as a verb ("wait"), nor one the dictionary knows as an adjective and a noun that the data
uses as an adjective (`used_as_adjectives`: "very light", "heavy duty"; but "the lights").
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from tagger.stages.canon import chinese_noun, never_a_noun
from tagger.text import has_han

# A word at least this frequent in general language (zipf: log10 of uses per billion words) is a
# function word or near one ("the" 7.7, "people" 6.2, "good" 6.1; "free" 5.6 and "game" 5.4 are
# below): it names nothing.
FUNCTION_ZIPF = 6.0
# ... and so is one nearly as frequent that the dictionary of nouns, verbs and adjectives does not
# hold: a closed-class word ("among" 5.3, "although" 5.3, "etc" 5.0), where a brand is rarer
# ("google" 4.9, "nintendo" 4.1).
CLOSED_CLASS_ZIPF = 5.0
# Members must write a phrase at least this many times as often as general language predicts
# for texts of their length: "good" in long forum posts is near its general rate.
MIN_LIFT = 3.0
# ... and at least this many times as often as the level's other users.
MIN_CONTRAST = 2.0
# A segment using a word at this share of this segment's rate or more uses it "at a similar
# rate"; a word that half the level's segments (three at least) use so is generic here.
SIMILAR_RATE = 0.5
GENERIC_SEGMENTS = 0.5
MIN_GENERIC_SEGMENTS = 3
# A first name is written capitalised in the middle of a sentence; a common noun that is also a
# name ("rose", "mark", "bill") mostly is not.
FIRST_NAME_CAPITALISED = 0.9
# Ids and handles: underscores, or one run of letters longer than any English word in use.
_ID = re.compile(r"_|^\S{19,}$")


@dataclass(frozen=True)
class Verdict:
    """Whether `phrase` is a topic of its segment, and the rule that said so."""

    phrase: str
    topical: bool
    rule: str


@dataclass(frozen=True)
class PhraseUse:
    """How one phrase is used at one level of the segment tree: per segment, the share of its
    members who write it; the segment's own size; what general language predicts for them."""

    shares: np.ndarray  # per segment of the level
    sizes: np.ndarray
    expected: float  # share of this segment's members general language predicts would write it
    capitalised: float | None  # share of mid-sentence uses written capitalised (first-name candidates)


def judge(phrase: str, segment: int, use: PhraseUse, *, language: str = "en",
          verbs: frozenset[str] | set[str] = frozenset()) -> Verdict:
    """The verdict on `phrase` as a topic of `segment` (an index into `use.shares`)."""
    words = phrase.split() if language != "zh" else [phrase]
    for check in (_not_a_word, _function_word, _first_name):
        rule = check(phrase, words, use, language)
        if rule:
            return Verdict(phrase, False, f"not topical: {rule}")
    proper = use.capitalised is not None and use.capitalised >= FIRST_NAME_CAPITALISED  # "Kindle", a name
    if not proper and not is_noun_phrase(phrase, language, verbs):
        return Verdict(phrase, False, f"not topical: '{phrase}' is not a noun here (a verb or adjective)")
    own = float(use.shares[segment])
    others = _others_share(use, segment)
    k = len(use.shares)
    similar = int((use.shares >= SIMILAR_RATE * own).sum()) if own > 0 else k
    if k >= MIN_GENERIC_SEGMENTS and similar >= max(MIN_GENERIC_SEGMENTS, math.ceil(GENERIC_SEGMENTS * k)):
        return Verdict(phrase, False, f"not topical: '{phrase}' is generic (used across {similar} of {k} segments "
                                      "at similar rates)")
    contrast = own / others if others > 0 else math.inf
    if contrast < MIN_CONTRAST:
        return Verdict(phrase, False, f"not topical: '{phrase}' is generic (used by {own:.0%} of members and "
                                      f"{others:.0%} of other users)")
    lift = own / use.expected if use.expected > 0 else math.inf
    if lift < MIN_LIFT:
        return Verdict(phrase, False, f"not topical: '{phrase}' is common language (used by {own:.0%} of members, "
                                      f"{lift:.1f}x its general-language rate)")
    return Verdict(phrase, True, f"topical: '{phrase}' used by {own:.0%} of members, {_times(lift)} its "
                                 f"general-language rate, {_times(contrast)} other users")


def _times(x: float) -> str:
    return "far above" if math.isinf(x) else f"{x:.0f}x" if x >= 10 else f"{x:.1f}x"


def _others_share(use: PhraseUse, segment: int) -> float:
    rest = np.delete(np.arange(len(use.sizes)), segment)
    total = float(use.sizes[rest].sum())
    return float((use.shares[rest] * use.sizes[rest]).sum() / total) if total else 0.0


def _not_a_word(phrase: str, words: Sequence[str], use: PhraseUse, language: str) -> str:
    for word in words:
        if any(ch.isdigit() for ch in word):
            return f"'{phrase}' is not a word (contains digits)"
        if not has_han(word) and _ID.search(word):
            return f"'{phrase}' is not a word (looks like an id)"
        if zipf(word, language) == 0:
            return f"'{phrase}' is not a word (no general-language frequency)"
    return ""


def _function_word(phrase: str, words: Sequence[str], use: PhraseUse, language: str) -> str:
    if len(words) != 1:
        return ""
    z = zipf(phrase, language)
    if z >= FUNCTION_ZIPF or (language != "zh" and z >= CLOSED_CLASS_ZIPF and not _in_dictionary(phrase)):
        return f"'{phrase}' is a function word (zipf {z:.1f} in general language)"
    return ""


@cache
def _in_dictionary(word: str) -> bool:
    """True when the English dictionary (lemminflect's tables) knows the word as an open-class one."""
    from lemminflect import getAllLemmas

    return bool(getAllLemmas(word))


def _first_name(phrase: str, words: Sequence[str], use: PhraseUse, language: str) -> str:
    if language == "zh" or use.capitalised is None:
        return ""
    if any(w in first_names() for w in words) and use.capitalised >= FIRST_NAME_CAPITALISED:
        return f"'{phrase}' is a first name (capitalised in {use.capitalised:.0%} of uses)"
    return ""


def is_noun_phrase(phrase: str, language: str = "en", verbs: frozenset[str] | set[str] = frozenset()) -> bool:
    """A phrase can name a group of people when its last word can be a noun here."""
    if language == "zh" or has_han(phrase):
        return chinese_noun(phrase)
    head = phrase.split()[-1]
    return not (head in verbs or never_a_noun(head))


@cache
def zipf(phrase: str, language: str = "en") -> float:
    """General-language frequency (wordfreq's zipf scale: 0 = unknown, 7.7 = "the")."""
    return _wordfreq().zipf_frequency(phrase, "zh" if language == "zh" else "en")


@cache
def frequency(phrase: str, language: str = "en") -> float:
    """Uses per word of general language (wordfreq)."""
    return _wordfreq().word_frequency(phrase, "zh" if language == "zh" else "en")


def expected_share(phrase: str, lengths: Sequence[int], language: str = "en") -> float:
    """Share of texts of these `lengths` (in words) that general language predicts would hold
    `phrase` at least once: each word a draw at its general rate."""
    rate = frequency(phrase, language)
    if not len(lengths) or rate <= 0:
        return 0.0
    return float(np.mean(-np.expm1(-np.asarray(lengths, np.float64) * rate)))


@cache
def _wordfreq():
    import jieba  # wordfreq reads Chinese with jieba, which announces its dictionary load

    jieba.setLogLevel(logging.WARNING)
    import wordfreq

    return wordfreq


@cache
def first_names() -> frozenset[str]:
    """Lower-cased English first names from Faker's person providers (a maintained, MIT table)."""
    import importlib

    names: set[str] = set()
    for locale in ("en", "en_US", "en_GB", "en_IE", "en_NZ"):
        try:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        except ImportError:  # Faker missing: no word is judged a first name
            continue
        for attr in ("first_names", "first_names_male", "first_names_female"):
            table = getattr(provider, attr, ())
            names |= {n.lower() for n in (table.keys() if isinstance(table, Mapping) else table)}
    return frozenset(names)


_SENTENCES = re.compile(r"[.!?\n]+")
_WORDS = re.compile(r"[A-Za-z][a-z]+")


def mid_sentence_words(texts: Iterable[str], words: Collection[str], pattern: re.Pattern = _WORDS) -> Iterable[str]:
    """Every use of one of `words` (lower case) the texts write after a sentence's first word, in
    the case written (a sentence's first word is capitalised whatever it is, so says nothing)."""
    for text in texts:
        for sentence in _SENTENCES.split(text):
            for word in pattern.findall(sentence)[1:]:
                if word.lower() in words:
                    yield word


def capitalised_shares(texts: Sequence[str], words: set[str]) -> dict[str, float]:
    """For each of `words` (lower case) the data writes mid-sentence, the share of those uses
    written with a capital."""
    upper: dict[str, int] = {}
    total: dict[str, int] = {}
    for word in mid_sentence_words(texts, words):
        low = word.lower()
        total[low] = total.get(low, 0) + 1
        upper[low] = upper.get(low, 0) + word[0].isupper()
    return {w: round(upper[w] / total[w], 4) for w in total}


# Around a word that is both an adjective and a noun, what tells which the data uses: degree words,
# adverbs and linking verbs come before adjectives ("very light", "particularly heavy", "is small"),
# and an adjective qualifies the word after it ("light weight", "heavy duty"); a noun ends its
# phrase, before a function word or the clause's end ("the light is", "led lights."), or takes a
# plural ("lights"). General English, not from any data set.
_ADJECTIVE_BEFORE = frozenset("""very too so quite pretty really extremely super fairly rather most least how as not
bit is are was were be been being feel feels felt look looks looked seem seems seemed stay stays
stayed become becomes became remain remains""".split())
_FUNCTION_AFTER = frozenset("""of for to in on at by with from into about over under above below through across
along around behind between inside outside near off out up down after before during since until like per
without within against and or but nor is are was were be been has have had will would can could should
that which who when where than as if so it i you he she we they""".split())
_TOKEN = re.compile(r"[a-z][a-z'-]*[a-z]|[a-z]")
_CLAUSE = re.compile(r"[.!?;,:()\"\n]")


def used_as_adjectives(words: Collection[str], texts: Iterable[str]) -> set[str]:
    """The English `words` the dictionary knows as both adjective and noun that the texts use
    more often as adjectives, before a content word ("light weight") or after a degree word, an
    adverb or a linking verb ("very light", "is light"), than as the end of a noun phrase ("the
    light.", "led lights"). A word that is only an adjective is never a noun anyway
    (`canon.never_a_noun`)."""
    judged = {w for w in words if " " not in w and not has_han(w) and _adjective_and_noun(w)}
    if not judged:
        return set()
    plural_of = {plural: w for w in judged for plural in (w + "s", w + "es")}
    adjective = dict.fromkeys(judged, 0)
    noun = dict(adjective)
    for text in texts:
        for clause in _CLAUSE.split(text.lower()):
            tokens = _TOKEN.findall(clause)
            for k, token in enumerate(tokens):
                if token in plural_of:
                    noun[plural_of[token]] += 1
                    continue
                if token not in adjective:
                    continue
                before = tokens[k - 1] if k else ""
                after = tokens[k + 1] if k + 1 < len(tokens) else ""
                if before in _ADJECTIVE_BEFORE or before.endswith("ly") or (after and after not in _FUNCTION_AFTER):
                    adjective[token] += 1
                else:  # it ends its phrase: "the light.", "led light for"
                    noun[token] += 1
    return {w for w in judged if adjective[w] > noun[w]}


@cache
def _adjective_and_noun(word: str) -> bool:
    from lemminflect import getAllLemmas

    readings = getAllLemmas(word)
    return "ADJ" in readings and "NOUN" in readings
