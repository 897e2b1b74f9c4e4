"""Candidate interest phrases taken from a user's own comments (words and two-word phrases,
Chinese words; one canonical form per concept; ranked by tf-idf over all users). In grounded
mode the tag schema of each request is an enum of that user's candidates, so the model can
only pick phrases the user wrote.

Phrases that say nothing about what a user is interested in ("shipping", "months",
"packaging") are found from the data, not from a list: users are first grouped roughly by
what they write, and a common phrase whose users spread over those groups as the users
themselves do (a G-test finds no concentration) is a stop phrase for this run.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from tagger.stages.canon import canonical, surface_phrases, vocabulary

# Fewer users than this give groups too coarse to tell "everywhere" from "in some groups".
MIN_USERS = 50
# A phrase is tested only when this many users (and this share of them) write it: below that a
# test has no power, and a rare phrase is never "spread evenly" anyway.
MIN_TESTED_USERS = 5
MIN_TESTED_SHARE = 0.02
# The lift variance of a phrase written in a share f of equal groups, evenly there, is 1/f - 1:
# 0.5 means "in two thirds of the groups or more": everywhere.
MIN_LIFT_VARIANCE = 1.0
SAMPLE = 4000
NEW_PHRASE_USERS = 3


class CandidateExtractor:
    """Fit document frequencies and stop phrases on all users, then list each user's top phrases."""

    def __init__(self, per_user: int = 20, seed: int = 0):
        self.per_user = per_user
        self.seed = seed

    def fit(self, texts: Sequence[str]) -> CandidateExtractor:
        self.n_ = len(texts)
        self.known_ = vocabulary(texts)
        self.df_ = Counter()
        sample = []  # the stop-phrase test sees the first SAMPLE users: enough, and bounded
        for i, text in enumerate(texts):
            phrases = set(self.phrases(text))
            self.df_.update(phrases)
            if i < SAMPLE:
                sample.append(phrases)
        self.stop_ = even_phrases(sample, seed=self.seed)
        return self

    def update(self, texts: Sequence[str]) -> CandidateExtractor:
        """Apply a saved run's statistics to new data: the phrases it counted keep their counts
        and the stop list stays, so a returning user gets the candidates (the prompt, and the
        cached answer) they had; a phrase it did not count (new, or written by one user then)
        is counted in `texts`."""
        new: Counter = Counter()
        for text in texts:
            new.update(p for p in set(self.phrases(text)) if p not in self.df_)
        self.df_.update({p: c for p, c in new.items() if c >= NEW_PHRASE_USERS})
        return self

    def phrases(self, text: str) -> list[str]:
        """The text's phrases in canonical form (with repeats), as candidates are counted."""
        known = getattr(self, "known_", None) or {p for p in self.df_ if " " not in p}
        return [canonical(p, known) for p in surface_phrases(text)]

    def surfaces(self, text: str) -> dict[str, str]:
        """Canonical phrase → the first form this text writes it in (for verbatim quotes)."""
        out: dict[str, str] = {}
        for surface, canon in zip(surface_phrases(text), self.phrases(text), strict=True):
            out.setdefault(canon, surface)
        return out

    def candidates(self, text: str) -> list[str]:
        stop = getattr(self, "stop_", frozenset())
        counts = Counter(p for p in self.phrases(text) if p not in stop)
        scored = []
        for phrase, tf in counts.items():
            df = self.df_.get(phrase, 1)
            # Phrases no other user wrote cannot bring users together; keep them, but last.
            shared = 1.0 if df >= 2 or self.n_ < 5 else 0.3
            scored.append((tf * math.log1p(self.n_ / df) * shared * (1.3 if " " in phrase else 1.0), phrase))
        scored.sort(key=lambda s: (-s[0], s[1]))
        return [phrase for _, phrase in scored[: self.per_user]]


def even_phrases(phrase_sets: Sequence[set[str]], *, seed: int = 0) -> frozenset[str]:
    """Common phrases whose users are spread over rough topic groups as evenly as all users are."""
    n = len(phrase_sets)
    df = Counter(p for phrases in phrase_sets for p in phrases)
    least = max(MIN_TESTED_USERS, math.ceil(MIN_TESTED_SHARE * n))
    tested = sorted(p for p, c in df.items() if c >= least)
    groups = _rough_groups(phrase_sets, df, seed)
    if groups is None or not tested:
        return frozenset()
    k = int(groups.max()) + 1
    share = np.bincount(groups, minlength=k) / n
    index = {p: j for j, p in enumerate(tested)}
    counts = np.zeros((len(tested), k))
    for i, phrases in enumerate(phrase_sets):
        for p in phrases & index.keys():
            counts[index[p], groups[i]] += 1
    # Lift of a phrase in group g = its users' share there / all users' share there. Its
    # variance over the groups is ~(k-1)/df for users picked at random, so that much is taken off.
    lift = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) / share
    spread = (share * (lift - 1.0) ** 2).sum(axis=1)
    stop = {p for p, s in zip(tested, spread, strict=True) if s < MIN_LIFT_VARIANCE}
    return frozenset(stop)


def _rough_groups(phrase_sets: Sequence[set[str]], df: Counter, seed: int) -> np.ndarray | None:
    """k-means on tf-idf of a sample of users (k = sqrt(n)/2): topic groups good enough to test
    whether a phrase gathers in some of them."""
    from scipy import sparse
    from sklearn.cluster import KMeans
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import normalize

    sets = list(phrase_sets)
    n = len(sets)
    k = max(2, round(math.sqrt(n) / 2))
    vocab = {p: j for j, p in enumerate(sorted(p for p, c in df.items() if c >= 2))}
    if n < MIN_USERS or len(vocab) < k:
        return None
    cols = [vocab[p] for s in sets for p in sorted(s) if p in vocab]
    rows = [i for i, s in enumerate(sets) for p in sorted(s) if p in vocab]
    idf = np.log1p(len(phrase_sets) / np.array([df[p] for p in vocab], float))
    matrix = normalize(sparse.csr_matrix((idf[cols], (rows, cols)), shape=(n, len(vocab))))
    dims = min(50, len(vocab) - 1, n - 1)
    # The groups decide the stop list, so every prompt: they must not move with the machine, and
    # thread count and CPU change BLAS summation orders. One thread, and the coordinates rounded
    # to 1e-6 before k-means, leave the last-bit noise of the BLAS no say.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        reduced = np.round(normalize(TruncatedSVD(dims, random_state=seed).fit_transform(matrix)), 6)
        return KMeans(k, n_init=4, random_state=seed).fit_predict(reduced)
