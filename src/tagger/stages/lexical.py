"""The users' own words beside the encoder's reading of them: a small latent semantic (LSA)
space of the phrases each user wrote, appended to the user vector the clustering sees.

A sentence encoder averages what a user wrote into one direction, and two groups that write in
the same register sit close in it (graphics programmers and X Window programmers; computer
parts and things for sale); the words they use ("xterm", "motif" against "jpeg", "bitmap") tell
them apart. Figures behind the weight and the dimensions: docs/decisions.md.

The space: tf-idf of each user's distinct canonical phrases (the naming corpus's terms and the
phrases of their items), over phrases that at least `MIN_USERS` users wrote, reduced by a truncated
SVD to `dims` unit-length dimensions. The user vector becomes `unit([semantic, weight * lexical])`;
its first `semantic_dims` columns keep the encoder's direction (a user's semantic and lexical
parts are each unit, so that slice of a mean is the mean of the semantic vectors, scaled; exact
when every user wrote a phrase of the space, else nearly), which
naming compares with names and drift compares across runs: lexical dimensions of two runs are two
different bases.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagger.errors import ModelError
from tagger.vectors import unit_rows

MIN_USERS = 2  # a phrase one user wrote cannot bring two users together
MAX_VOCABULARY = 100_000  # the most widely used phrases; bounds the saved space at any scale
FIT_SAMPLE = 100_000  # users the SVD is fitted on; the rest are only projected
_CHUNK = 100_000
FILES = ("lexical_vocabulary.json", "lexical_idf.npy", "lexical_components.npy")


@dataclass
class LexicalSpace:
    vocabulary: list[str]
    idf: np.ndarray  # (phrases,) float32
    components: np.ndarray  # (dims, phrases) float32
    weight: float
    items: bool = True  # the phrases of users' items count too (off where --item-weight 0 leaves items out)

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, terms: Sequence[Sequence[str]], *, dims: int, weight: float, seed: int = 0,
            items: bool = True) -> LexicalSpace | None:
        """The space of these users' phrases; None when there is too little to span one (fewer
        than three users or phrases shared by two of them)."""
        from sklearn.decomposition import TruncatedSVD

        frequencies = Counter(t for phrases in terms for t in set(phrases))
        shared = sorted(((c, t) for t, c in frequencies.items() if c >= MIN_USERS),
                        key=lambda ct: (-ct[0], ct[1]))[:MAX_VOCABULARY]
        rank = min(dims, len(shared) - 1, len(terms) - 1)
        if rank < 1:
            return None
        vocabulary = [t for _, t in shared]
        n = len(terms)
        # scikit-learn's smooth idf, so a phrase every user wrote still counts a little
        idf = np.array([math.log((1 + n) / (1 + c)) + 1 for c, _ in shared], np.float32)
        space = cls(vocabulary, idf, np.zeros((0, len(vocabulary)), np.float32), float(weight), items)
        rows = np.arange(n)
        if n > FIT_SAMPLE:
            rows = np.sort(np.random.default_rng(seed).choice(n, FIT_SAMPLE, replace=False))
        matrix = space._tfidf([terms[i] for i in rows])
        with np.errstate(divide="ignore", invalid="ignore"):  # its variance ratio of a degenerate sample
            svd = TruncatedSVD(rank, algorithm="randomized", n_iter=7, random_state=seed).fit(matrix)
        space.components = svd.components_.astype(np.float32)
        return space

    def _tfidf(self, terms: Sequence[Sequence[str]]):
        from scipy import sparse

        index = getattr(self, "_index", None)
        if index is None:
            index = self._index = {t: i for i, t in enumerate(self.vocabulary)}
        columns, pointers, values = [], [0], []
        for phrases in terms:
            counts = Counter(index[t] for t in phrases if t in index)
            columns.extend(counts)
            values.extend(1.0 + math.log(c) for c in counts.values())
            pointers.append(len(columns))
        matrix = sparse.csr_matrix((np.asarray(values, np.float32), np.asarray(columns, np.int64),
                                    np.asarray(pointers, np.int64)), shape=(len(terms), len(self.vocabulary)))
        matrix = matrix.multiply(self.idf[None, :]).tocsr()
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        return sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix

    def transform(self, terms: Sequence[Sequence[str]]) -> np.ndarray:
        """(users, dims) unit rows; zeros for a user who wrote none of the space's phrases."""
        parts = [np.asarray(self._tfidf(terms[s : s + _CHUNK]) @ self.components.T, np.float32)
                 for s in range(0, len(terms), _CHUNK)]
        return unit_rows(np.vstack(parts)) if parts else np.zeros((0, self.dims), np.float32)

    def join(self, semantic: np.ndarray, terms: Sequence[Sequence[str]]) -> np.ndarray:
        """`unit([semantic, weight * lexical])` per user; a zero semantic row (no vector) stays zero."""
        semantic = np.asarray(semantic, np.float32)
        joined = np.hstack([semantic, self.weight * self.transform(terms)])
        joined[~semantic.any(axis=1)] = 0
        # in place: at a million users each copy of the vectors is ~1.7 GB
        joined /= np.maximum(np.sqrt(np.einsum("ij,ij->i", joined, joined)), 1e-12)[:, None]
        return joined

    def save(self, folder: Path) -> dict:
        """Write the space into `folder`; returns what the manifest records of it."""
        folder = Path(folder)
        (folder / FILES[0]).write_text(json.dumps(self.vocabulary, ensure_ascii=False) + "\n", encoding="utf-8")
        np.save(folder / FILES[1], self.idf.astype(np.float32), allow_pickle=False)
        np.save(folder / FILES[2], self.components.astype(np.float32), allow_pickle=False)
        return {"weight": self.weight, "dims": self.dims, "phrases": len(self.vocabulary), "items": self.items,
                "files": list(FILES)}

    @classmethod
    def load(cls, folder: Path, info: dict) -> LexicalSpace:
        folder = Path(folder)
        try:
            vocabulary = json.loads((folder / FILES[0]).read_text(encoding="utf-8"))
            idf = np.load(folder / FILES[1], allow_pickle=False)
            components = np.load(folder / FILES[2], allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ModelError(f"the lexical space in {folder} is incomplete ({type(exc).__name__}); "
                             "rerun `tagger segment`") from None
        if not len(vocabulary) == len(idf) == components.shape[1]:
            raise ModelError(f"the lexical space in {folder} does not add up ({len(vocabulary)} phrases, "
                             f"{components.shape[1]} columns); rerun `tagger segment`")
        return cls(list(map(str, vocabulary)), idf.astype(np.float32), components.astype(np.float32),
                   float(info["weight"]), bool(info.get("items", True)))


def semantic_part(matrix: np.ndarray, dims: int | None) -> np.ndarray:
    """The encoder's columns of user vectors or centroids (`dims` None: all), unit rows."""
    matrix = np.asarray(matrix, np.float32)
    if dims is None or matrix.ndim != 2 or dims >= matrix.shape[1]:
        return matrix
    return unit_rows(matrix[:, :dims])
