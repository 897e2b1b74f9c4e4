"""How the members write a segment's phrases, so names and descriptions read as a person writes.

Naming judges phrases in one canonical form (lower case, singular, one or two words); a person
reads them as the data writes them:

- **Spelling**: a word the data mostly writes capitalised or in capitals mid-sentence keeps that
  form ("FBI", "Nintendo"; `spellings`).
- **Number**: a noun the data mostly writes in the plural is plural in a description ("screen
  protectors", "dogs"; `plurals`), singular in a name ("screen protector fans").
- **Length**: a word most of whose writers in the segment write it inside one two-word phrase is
  that phrase ("protector" → "screen protector", "switch" → "nintendo switch"; `longer_forms`).
English only: Chinese words have no case or number, and jieba's words are whole already.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping

from tagger.stages.canon import singular
from tagger.stages.naming.topical import mid_sentence_words
from tagger.text import has_han

# The data writes a word in one form in at least this share of its mid-sentence uses.
MOSTLY = 0.5
# A two-word phrase stands for one of its words when at least this share of the segment's
# members who write the word write the phrase (and two members at least).
LONGER = 0.5
_WORDS = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]")


def spellings(texts: Iterable[str], words: Collection[str]) -> dict[str, str]:
    """For each of `words` (lower case) the data mostly writes in another case mid-sentence, that
    form ("fbi" → "FBI", "kindle" → "Kindle"); a sentence's first word says nothing."""
    forms: dict[str, Counter] = {}
    for word in mid_sentence_words(texts, words, _WORDS):
        forms.setdefault(word.lower(), Counter())[word] += 1
    out = {}
    for low, seen in forms.items():
        form, count = seen.most_common(1)[0]
        if form != low and count >= MOSTLY * sum(seen.values()):
            out[low] = form
    return out


def plurals(texts: Iterable[str], words: Collection[str]) -> dict[str, str]:
    """For each of `words` (singular, lower case) the data writes more often in the plural than
    in the singular, its plural as written ("protector" → "protectors")."""
    words = {w for w in words if " " not in w and not has_han(w)}
    one: Counter = Counter()
    many: dict[str, Counter] = {}
    for text in texts:
        for token in _WORDS.findall(text.lower()):
            if token in words:
                one[token] += 1
                continue
            base = singular(token)
            if base != token and base in words:
                many.setdefault(base, Counter())[token] += 1
    return {w: seen.most_common(1)[0][0] for w, seen in many.items() if sum(seen.values()) > one[w]}


def longer_forms(phrases: Iterable[str], writers: Mapping[str, int], noun: Callable[[str], bool]) -> dict[str, str]:
    """For each single-word phrase, the two-word phrase holding it that at least LONGER of its
    writers write (`writers`: phrase → members of the segment who write it), when that phrase is
    a noun phrase (`noun`); the most written one."""
    holding: dict[str, list[str]] = {}
    for phrase, count in writers.items():
        words = phrase.split()
        if len(words) == 2 and count >= 2:
            for word in set(words):
                holding.setdefault(word, []).append(phrase)
    out = {}
    for phrase in phrases:
        if " " in phrase or phrase not in holding or not writers.get(phrase):
            continue
        best = max(holding[phrase], key=lambda p: (writers[p], p))
        if writers[best] >= LONGER * writers[phrase] and noun(best):
            out[phrase] = best
    return out


def written(phrase: str, spelled: Mapping[str, str], plural: Mapping[str, str] | None = None) -> str:
    """`phrase` as the data writes it: each word in its usual case (`spelled`), the last in the
    plural when `plural` holds it."""
    words = phrase.split()
    out = [spelled.get(w, w) for w in words]
    if plural and words and words[-1] in plural:
        last, form = words[-1], plural[words[-1]]
        out[-1] = out[-1] + form[len(last):] if form.startswith(last) else form
    return " ".join(out)


def name_form(wording: str, phrase: str) -> str:
    """A description's wording of `phrase` as a name's modifier: its last word singular again
    ("screen protectors" → "screen protector"), in the case the wording has."""
    words, head = wording.split(), phrase.split()[-1]
    if words and words[-1].lower() != head and singular(words[-1].lower()) == head:
        last = words[-1]
        words[-1] = last[: len(head)] if last[: len(head)].lower() == head else head
    return " ".join(words)
