"""One sentence on what a segment's members write about, and quotes that read as quotes.

A description is built from the segment's own topical noun phrases as its members write them
(wording.py: "screen protectors", "FBI"), in the audience's words (prompts/data/audience.toml:
"People whose comments are mostly about baseball, pitchers and home runs."): a sentence, never a
list. The LLM may write its own; it is kept only when it
is a complete sentence of at least `MIN_WORDS` words, not a list, about the name's subject, in
the segment's words, and states no belief or stance the members did not ("People who follow
atheism, who believe in god." says both). A sensitive segment always takes the built sentence.

Evidence quotes are whole sentences of the member's comment, or marked "…" where cut.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence

from tagger.prompts import PromptTemplate
from tagger.stages.canon import never_a_noun, singular
from tagger.text import HAN_CHAR

MIN_WORDS = 6
# A built description names the subject and at most two more of the segment's phrases: a fourth
# makes it a list ("heavy, small, hose and light").
MAX_TOPICS = 3
MAX_QUOTE_WORDS = 30
MAX_QUOTE_CHARS = 60  # Chinese
# At most this many of a description's own nouns may be new ("... provide food and treats to
# pets, but they have a different perspective on life." holds 3 of 5, two of them padding) ...
MAX_UNGROUNDED = 1
# ... and this share of them must come from the segment's name, phrases or quotes.
GROUNDED_SHARE = 0.6
_SENTENCE_END = tuple(".!?。！？")
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s*|\n+")
# Words that put a belief or a stance in members' mouths: a description says what they write
# about, never what they hold (general English, not from any data set).
_STANCE = re.compile(r"\b(believ\w*|support\w*|oppos\w*|against|hate\w*|pro-\w+|anti-\w+|homophob\w*|"
                     r"favou?r\w*|reject\w*|deny|denies)\b", re.IGNORECASE)
_FIRST_PERSON = re.compile(r"\b(i|i'm|i've|me|my|we|our)\b", re.IGNORECASE)
# ", but ..." after what a segment writes about is the small model's padding ("People who love
# food and drink, but they're not the only ones."); "but also" adds, so it stays.
_BUT = re.compile(r",\s*but\s+(?!also\b)", re.IGNORECASE)
# Words any description of a group may use; the rest must come from what was shown.
_GENERIC = frozenset("""customer customers people person users user buyers shoppers owners fans group members
who whose enjoy enjoys like likes love loves use uses buy buys interested interest interests products product
items item things their they them and also are is for with about into of the to in on at from that this
these those often mostly many most some all various different kinds types other others variety way ways range
write writes comments comment reviews review discuss discusses such""".split())


def built_description(topics: Sequence[str], words: dict[str, str], language: str = "en") -> str:
    """One sentence in the audience's words on what the segment's members write about: `topics`,
    its subject first, then its other most-written noun phrases as the members write them (up to
    MAX_TOPICS in all): "People whose comments are mostly about baseball, pitchers and home runs."
    No "such as": the other phrases are what members write beside the subject, not kinds of it."""
    topics = [t for t in dict.fromkeys(topics) if t][:MAX_TOPICS]
    lang = "zh" if language == "zh" else "en"
    if not topics:
        return words[f"{lang}_none"]
    last = "和" if lang == "zh" else " and "
    joined = ("、" if lang == "zh" else ", ").join(topics[:-1]) + last + topics[-1] if len(topics) > 1 else topics[0]
    return words[f"{lang}_about"].format(topics=joined)


def is_sentence(text: str, language: str = "en") -> bool:
    """A complete sentence of at least MIN_WORDS words (Chinese: characters), not a list."""
    text = " ".join(text.split())
    if not text.endswith(_SENTENCE_END):
        return False
    if language == "zh" or HAN_CHAR.search(text):
        return len(HAN_CHAR.findall(text)) >= MIN_WORDS and text.count("、") < 3
    return len(text.split()) >= MIN_WORDS and not is_list(text)


def is_list(text: str) -> bool:
    """Three or more short items in a row, joined by commas ("heavy, small, hose and light"); a
    subject with "and" in it ("sales and promotions, such as offer and condition") is no list."""
    items = [i.strip() for i in text.rstrip(".!? ").split(",")]
    short = [len(i.split()) <= 3 for i in items]
    return len(items) >= 3 and sum(short) >= 2


def llm_description(text: str, *, shown: str, label: str, subject: str, example_texts: set[str],
                    language: str = "en") -> str:
    """The model's sentence when it is a usable description of this segment; else ""."""
    description = " ".join(text.split())
    if language != "zh":
        description = _first_clause(description)
    if not is_sentence(description, language) or description.lower() in example_texts or repeats(description):
        return ""
    if language == "zh":
        return description if HAN_CHAR.search(description) and _shares_a_word(description, shown) else ""
    if _FIRST_PERSON.search(description) or _STANCE.search(description):
        return ""
    if subject and not (stems(subject) & stems(description)):
        return ""  # it must say what the name says the members write about
    if not _shares_a_word(description, shown) or not grounded(description, " ".join([label, shown])):
        return ""
    return description


def _first_clause(description: str) -> str:
    head = _BUT.split(description, maxsplit=1)[0].rstrip(" ,;:")
    return head + "." if head != description and len(head.split()) >= 3 else description


def grounded(description: str, shown: str) -> bool:
    """Most of a description's own nouns (not the generic words) appear in what the model was
    shown; words that are never nouns ("healthy") only qualify them and are not judged."""
    words = {w for w in re.findall(r"[a-z]{3,}", description.lower()) if w not in _GENERIC and not never_a_noun(w)}
    known = stems(shown)
    missing = sum(not (stem_forms(w) & known) for w in words)
    return bool(words) and missing <= MAX_UNGROUNDED and len(words) - missing >= GROUNDED_SHARE * len(words)


def example_texts(template: PromptTemplate) -> set[str]:
    """Labels and descriptions of the template's few-shot answers, lowercased."""
    texts = set()
    for _, answer in template.examples:
        try:
            data = json.loads(answer)
        except json.JSONDecodeError:
            continue
        texts |= {" ".join(str(v).lower().split()) for v in data.values() if isinstance(v, str)}
    return texts


def repeats(text: str, n: int = 3) -> bool:
    """A decoding loop: some run of `n` words twice ("People who love Nintendo Switch, and love
    Nintendo Switch fans.")."""
    words = re.findall(r"\w+", text.lower())
    return max(Counter(tuple(words[i: i + n]) for i in range(len(words) - n + 1)).values(), default=0) >= 2


def stem_forms(word: str) -> set[str]:
    """A word's first four letters, as written and of its regular singular ("toys" meets "toy")."""
    return {word[:4], singular(word)[:4]}


def stems(text: str) -> set[str]:
    if HAN_CHAR.search(text):
        return {c for c in text if HAN_CHAR.match(c)}
    return {s for w in re.findall(r"[a-z]{3,}", text.lower()) for s in stem_forms(w)}


def _shares_a_word(text: str, shown: str) -> bool:
    return bool(stems(text) & stems(shown))


def whole_quote(evidence: str, comments: Sequence[str] = ()) -> str:
    """The sentence of `comments` that holds `evidence`, whole when it is short enough; else the
    evidence with "…" wherever it starts or ends inside a sentence."""
    evidence = " ".join(evidence.split())
    for comment in comments:
        flat = " ".join(comment.split())
        at = flat.find(evidence)
        if at < 0:
            continue
        start = 0
        for piece in _SENTENCE.split(flat):
            begin = flat.find(piece, start)
            start = begin + len(piece)
            if piece and begin <= at < begin + len(piece):
                if at + len(evidence) <= begin + len(piece) + 1 and _short(piece):
                    return piece.strip()
                break
        return _elided(evidence, starts=flat.startswith(evidence) or _after_sentence_end(flat, at))
    return _elided(evidence, starts=False)


def _short(sentence: str) -> bool:
    if HAN_CHAR.search(sentence):
        return len(sentence) <= MAX_QUOTE_CHARS
    return len(sentence.split()) <= MAX_QUOTE_WORDS


def _after_sentence_end(text: str, at: int) -> bool:
    before = text[:at].rstrip()
    return not before or before.endswith(_SENTENCE_END)


def _elided(evidence: str, *, starts: bool) -> str:
    if not evidence:
        return evidence
    head = "" if starts else "…"
    tail = "" if evidence.endswith(_SENTENCE_END) else "…"
    return f"{head}{evidence}{tail}"
