"""Candidate interest phrases taken from a user's own comments (words and two-word phrases,
ranked by tf-idf over all users). In grounded mode the tag schema of each request is an
enum of that user's candidates, so the model can only pick phrases the user wrote."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"[a-z][a-z'-]*[a-z]|[a-z]")
_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
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


def _phrases(text: str) -> list[str]:
    """Words (3+ letters) and consecutive two-word phrases, stopwords excluded; CJK bigrams."""
    out: list[str] = []
    for run in _CJK_RUN.findall(text):
        out += [run[i : i + 2] for i in range(len(run) - 1)]
    for sentence in re.split(r"[.!?;,:()\"\n]", text.lower()):
        words = _WORD.findall(sentence)
        for i, word in enumerate(words):
            if word in STOPWORDS or len(word) < 3:
                continue
            out.append(word)
            if i + 1 < len(words) and words[i + 1] not in STOPWORDS and len(words[i + 1]) >= 3:
                out.append(f"{word} {words[i + 1]}")
    return out


class CandidateExtractor:
    """Fit document frequencies on all users, then list each user's top phrases."""

    def __init__(self, per_user: int = 20):
        self.per_user = per_user

    def fit(self, texts: Sequence[str]) -> CandidateExtractor:
        self.n_ = len(texts)
        self.df_ = Counter(p for text in texts for p in set(_phrases(text)))
        return self

    def candidates(self, text: str) -> list[str]:
        counts = Counter(_phrases(text))
        scored = []
        for phrase, tf in counts.items():
            df = self.df_.get(phrase, 1)
            # Phrases no other user wrote cannot bring users together; keep them, but last.
            shared = 1.0 if df >= 2 or self.n_ < 5 else 0.3
            scored.append((tf * math.log1p(self.n_ / df) * shared * (1.3 if " " in phrase else 1.0), phrase))
        scored.sort(key=lambda s: (-s[0], s[1]))
        return [phrase for _, phrase in scored[: self.per_user]]
