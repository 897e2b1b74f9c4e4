"""Words and phrases of a comment, and one canonical form per concept.

English: words and two-word phrases; a plural becomes its singular only when the corpus also
holds the singular ("mics" → "mic", but "clothes" stays, as "clothe" is never written), so
no dictionary is needed and no invented word appears. Chinese: words from jieba's dictionary
segmenter (pure Python, ships its dictionary, no download), so "洗发水" stays one word instead
of the fragments "洗发" and "发水" that character bigrams gave.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable
from functools import cache

# Han only, not kana: these paths hand Chinese text to jieba, and any other text is read as English.
from tagger.text import han_runs, has_han

_WORD = re.compile(r"[a-z][a-z'-]*[a-z]|[a-z]")
_SPLIT = re.compile(r"[.!?;,:()\"\n]")

# The tokenizer's stop list. It shapes every user's candidate phrases (the tagging prompt) and
# phrase space (stages/lexical.py), so changing a word here moves users between segments; which
# phrases may name a segment is judged separately, against general-language frequencies and the
# data's own segments (stages/naming/topical.py), not by this list.
STOPWORDS = frozenset("""
a about above after again against all almost also although always am an and any anything are
around as at away back bad be because been before being below best better between big bit both
bought but buy buying by came can cannot could day days did do does doing done don't down each
easy else enough even ever every fine first for found from get gets getting give given go goes
going good got great had has have having he her here hers him his how however i i'd i'll i'm
i've if in instead into is isn't it it's its itself just keep kind know last least less like
liked little long look looked looking lot love loved loves made make makes many may me might
more most much must my myself need needed never new next nice no nor not nothing now of off
ok okay old on once one ones only or other others our out over own perfect pretty product
products purchase purchased put quality quite rather really received recommend right said same
say see seems seen she should since so some something still such sure take than thank thanks
that that's the their them then there these they thing things think this those though thought
through time times to too took tried try two under until up us use used using very want wanted
was wasn't way we well went were what when where which while who why will with without work
worked working works would wouldn't year years yet you your item items amazon star stars review
reviews price money worth order ordered arrived buy happy definitely highly great awesome
excellent exactly back gift using fits fit size color
""".split())

# Common Chinese function words and fillers (general, not taken from any data set).
ZH_STOPWORDS = frozenset("""
这个 那个 一个 一些 一下 一点 一直 一样 一般 我们 你们 他们 自己 什么 怎么 这样 那样 这么 那么
没有 不是 就是 还是 但是 可是 因为 所以 如果 虽然 而且 然后 不过 已经 可以 觉得 感觉 非常 比较
真的 有点 东西 还有 还要 只是 只有 时候 现在 以后 之前 以前 应该 可能 知道 问题 不错 很多 出来
起来 看到 之后 这次 这里 那里 其实 确实 根本 里面 上面 方面 特别 其他 时间 大家 完全 不能 不会
""".split())


def singular(word: str) -> str:
    """The regular singular a plural would have ("batteries" → "battery"); unchecked."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes", "zzes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "'s")):
        return word[:-1]
    return word


def canonical(phrase: str, known: Collection[str]) -> str:
    """One form per concept: each plural word → its singular when `known` holds that singular."""
    if has_han(phrase):
        return phrase
    out = []
    for word in phrase.split():
        one = singular(word)
        out.append(one if one != word and one in known else word)
    return " ".join(out)


@cache
def never_a_noun(word: str) -> bool:
    """True when the English dictionary knows `word` only as a verb, adjective or adverb
    ("install", "arrive", "expensive", "catching"), so "install fans" is no name. Words it does not
    know (brands, names: "nintendo", "velcro") are not judged. lemminflect's lemma tables ship in
    its wheel (no download), so this needs no part-of-speech model."""
    from lemminflect import getAllLemmas

    readings = getAllLemmas(word.lower())
    return bool(readings) and "NOUN" not in readings and "PROPN" not in readings


# The word before a use of a word that is both a noun and a verb tells which it is here:
# "can't wait", "to watch", "I feel" against "the bowl", "my watch". General English function
# words, not taken from any data set.
_VERB_BEFORE = frozenset("""i we you they he she it to will would can can't cannot could couldn't should
shouldn't must might may don't doesn't didn't won't not never""".split())
_NOUN_BEFORE = frozenset("""a an the my your his her its our their this that these those some any no each
every another of for with""".split())


def used_as_verbs(words: Collection[str], texts: Iterable[str]) -> set[str]:
    """The English `words` the texts use more often as verbs than as nouns, judged by the word
    before each use. On the demo: "wait" 12 verb uses / 0 noun uses, "watch" 24 / 5, "play" 28 / 1,
    but "bowl" 0 / 7, "case" 0 / 50, "sound" 5 / 31. A word without such a neighbour is not judged."""
    words = {w for w in words if not has_han(w)}
    verb: dict[str, int] = dict.fromkeys(words, 0)
    noun = dict(verb)
    if not words:
        return set()
    for text in texts:
        for sentence in _SPLIT.split(text.lower()):
            tokens = _WORD.findall(sentence)
            for before, word in zip(tokens, tokens[1:]):
                if word in verb:
                    if before in _VERB_BEFORE:
                        verb[word] += 1
                    elif before in _NOUN_BEFORE:
                        noun[word] += 1
    return {w for w in words if verb[w] > noun[w]}


@cache
def _jieba():
    """jieba, quiet (it prints its dictionary load time otherwise); imported on first Chinese text."""
    import jieba
    import jieba.posseg  # noqa: F401  (the part-of-speech cutter, for chinese_noun)

    jieba.setLogLevel(logging.WARNING)
    return jieba


def chinese_words(text: str) -> list[str]:
    """jieba words of two or more Chinese characters, function words excluded."""
    jieba = _jieba()
    words = []
    for run in han_runs(text):
        words += [w for w in jieba.lcut(run) if len(w) >= 2 and w not in ZH_STOPWORDS]
    return words


# jieba's part-of-speech flags of common nouns: n (noun), nz (other proper noun: products and
# brands, "洗发水", "蒙牛"), nw (new word), ng (noun morpheme), r (pronoun: jieba files "本书",
# "this book", there). Verbs ("安装", install), adjectives, and names of places, persons and
# organisations ("京东", the retailer, is filed as a place) name nobody's interest.
_ZH_NOUN_FLAGS = frozenset({"n", "nz", "nw", "ng", "r"})


@cache
def chinese_noun(phrase: str) -> bool:
    """True when jieba's dictionary files the phrase's last word as a common noun. Its flags ship
    in the wheel with the segmenter's dictionary (no model, no download)."""
    words = list(_jieba().posseg.cut(phrase))
    return bool(words) and words[-1].flag in _ZH_NOUN_FLAGS


def surface_phrases(text: str) -> list[str]:
    """Words (3+ letters) and consecutive two-word phrases, stopwords excluded; Chinese words."""
    out = chinese_words(text) if has_han(text) else []
    for sentence in _SPLIT.split(text.lower()):
        words = _WORD.findall(sentence)
        for i, word in enumerate(words):
            if word in STOPWORDS or len(word) < 3:
                continue
            out.append(word)
            if i + 1 < len(words) and words[i + 1] not in STOPWORDS and len(words[i + 1]) >= 3:
                out.append(f"{word} {words[i + 1]}")
    return out


def vocabulary(texts: Iterable[str]) -> set[str]:
    """Every single word the texts hold (the `known` set for `canonical`)."""
    return {w for text in texts for w in _WORD.findall(text.lower())}
