"""What of a user's comments goes into the tagging prompt: the most telling part, within a token budget.

Everything a user wrote is embedded and yields candidate phrases; only the prompt is bounded,
because prefill is what tagging costs. The rule that fills it:

1. the newest comment comes first, whole when it fits in half the budget, else its leading
   sentences that do;
2. then, from all of the user's comments, the sentence holding the most weight of the user's
   candidate phrases that the prompt does not hold yet (a candidate's weight is 1 / (1 + its
   rank), best first), again and again, skipping sentences that no longer fit, until no
   sentence adds a candidate or the budget is spent;
3. the excerpts are shown per comment, newest comment first, sentences in their own order,
   with " … " where a comment's sentences were skipped.

So a poster of ten posts is read through the sentences that carry what they write about most
distinctively, not through their newest one or two posts.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[。！？；])")
# A run-on "sentence" (no full stop in 2,000 characters) is cut into pieces of this many words,
# so that it can share a prompt with others.
MAX_SENTENCE_WORDS = 60
_CJK_PIECE = 120
GAP = " … "


@dataclass(frozen=True)
class Filled:
    lines: list[str]  # one line per comment that has an excerpt, newest first
    comments: int  # comments with at least one excerpt in the prompt


def sentences(text: str) -> list[str]:
    """The text's sentences, long ones cut into pieces of at most MAX_SENTENCE_WORDS words."""
    out = []
    for sentence in _SENTENCE.split(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        words = sentence.split(" ")
        if len(words) > MAX_SENTENCE_WORDS:
            out += [" ".join(words[i : i + MAX_SENTENCE_WORDS]) for i in range(0, len(words), MAX_SENTENCE_WORDS)]
        elif len(sentence) > 2 * _CJK_PIECE and len(words) == 1:  # unspaced (Chinese) text
            out += [sentence[i : i + _CJK_PIECE] for i in range(0, len(sentence), _CJK_PIECE)]
        else:
            out.append(sentence)
    return out


Phrases = Callable[[str], list[str]]


class PromptFiller:
    """Fills one user's prompt by the rule above, counting tokens like the model's tokenizer."""

    def __init__(self, count_tokens: Callable[[Sequence[str]], list[int]], budget: int):
        self.count_tokens = count_tokens
        self.budget = budget

    def fill(self, comments: Sequence[str], candidates: Sequence[str], phrases: Phrases) -> Filled:
        """`candidates` best first; `phrases(text)` gives a text's phrases in the candidates' form."""
        split = [sentences(c) for c in comments]
        picked: set[tuple[int, int]] = set()
        left = self._head(split[0], picked) if split else self.budget
        weight = {c: 1.0 / (1 + rank) for rank, c in enumerate(candidates)}
        held = {p for (ci, si) in picked for p in phrases(split[ci][si])} & weight.keys()
        self._cover(split, weight, held, picked, left, phrases)
        return self._lines(split, picked)

    def _head(self, first: list[str], picked: set[tuple[int, int]]) -> int:
        """Put the newest comment's leading sentences in (at least a cut first one); the budget left."""
        half, left = self.budget // 2, self.budget
        for si, n in enumerate(self.count_tokens(first)):
            if n > half - (self.budget - left):
                break
            picked.add((0, si))
            left -= n
        if not picked and first:
            n = self.count_tokens(first[:1])[0]
            keep = max(1, int(len(first[0]) * half / max(n, 1) * 0.9))
            first[0] = first[0][:keep]
            picked.add((0, 0))
            left -= self.count_tokens(first[:1])[0]
        return left

    def _cover(self, split: list[list[str]], weight: dict[str, float], held: set[str],
               picked: set[tuple[int, int]], left: int, phrases: Phrases) -> None:
        """Greedy coverage of the candidates, lazily re-scored: a sentence's gain only falls as
        the prompt takes in more candidates, so a popped stale gain is recomputed and pushed back."""
        found = [(ci, si, set(phrases(s)) & weight.keys()) for ci, sents in enumerate(split)
                 for si, s in enumerate(sents) if (ci, si) not in picked]
        found = [f for f in found if f[2] - held]
        if not found or left <= 0:
            return
        tokens = self.count_tokens([split[ci][si] for ci, si, _ in found])
        heap = [(-sum(weight[p] for p in own - held), n, ci, si, k)
                for k, ((ci, si, own), n) in enumerate(zip(found, tokens, strict=True))]
        heapq.heapify(heap)
        while heap and left > 0:
            gain, n, ci, si, k = heapq.heappop(heap)
            fresh = -sum(weight[p] for p in found[k][2] - held)
            if fresh == 0:
                continue
            if fresh != gain:
                heapq.heappush(heap, (fresh, n, ci, si, k))
                continue
            if n > left:
                continue
            picked.add((ci, si))
            held |= found[k][2]
            left -= n

    @staticmethod
    def _lines(split: list[list[str]], picked: set[tuple[int, int]]) -> Filled:
        lines = []
        for ci, sents in enumerate(split):
            chosen = sorted(si for c, si in picked if c == ci)
            if not chosen:
                continue
            parts = [sents[chosen[0]]]
            for before, si in zip(chosen, chosen[1:]):
                parts.append((" " if si == before + 1 else GAP) + sents[si])
            lead = GAP.lstrip() if chosen[0] > 0 else ""
            lines.append(lead + "".join(parts) + (GAP.rstrip() if chosen[-1] < len(sents) - 1 else ""))
        return Filled(lines, len(lines))
