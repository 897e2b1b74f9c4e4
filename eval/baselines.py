"""What a user would pick instead of tagger. Each baseline takes per-user inputs and returns
(labels with -1 for noise, {segment: name}). Seeds are fixed; nothing here sees the truth
except `k` for the true-k recipe, which is the point of that baseline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NO_NAMES: dict[int, str] = {}


def article_recipe(user_vectors: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, dict[int, str]]:
    """The design article: per-user embedding of raw comments → PCA(50) → KMeans(k)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    dims = min(50, user_vectors.shape[1], len(user_vectors) - 1)
    reduced = PCA(n_components=dims, random_state=seed).fit_transform(user_vectors)
    k = max(1, min(k, len(user_vectors)))
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(reduced), NO_NAMES


def hdbscan_raw(user_vectors: np.ndarray, min_cluster_size: int) -> tuple[np.ndarray, dict[int, str]]:
    """HDBSCAN straight on the comment embeddings (no tags, no reduction, noise stays noise)."""
    import hdbscan

    size = max(2, min(min_cluster_size, len(user_vectors) // 2))
    return hdbscan.HDBSCAN(min_cluster_size=size, core_dist_n_jobs=1).fit_predict(user_vectors), NO_NAMES


def bertopic(documents: Sequence[str], embeddings: np.ndarray, *, seed: int = 0,
             min_topic_size: int | None = None) -> dict[str, tuple]:
    """BERTopic (UMAP 5-d + HDBSCAN) on one document per user, without and with `reduce_outliers`
    (its default strategy) on the same fitted model.

    Only these differ from `BERTopic()`: the embeddings are given (computed with the same local
    encoder tagger uses, since no model hub is reachable: for English that is the
    all-MiniLM-L6-v2 BERTopic would load itself); UMAP gets `random_state` so runs repeat (its
    FAQ's advice); and `min_topic_size` when given. BERTopic passes `min_topic_size` on as its
    HDBSCAN's `min_cluster_size` (and HDBSCAN's `min_samples` follows it) only when no
    `hdbscan_model` is supplied, so it is set here the way a user would set it. Names are each
    topic's top four c-TF-IDF words. Returns {"topics" | "reduce-outliers": (labels, names, seconds)}.
    """
    import time

    from bertopic import BERTopic
    from umap import UMAP

    start = time.perf_counter()
    umap_model = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", low_memory=False,
                      random_state=seed)
    sizing = {} if min_topic_size is None else {"min_topic_size": min_topic_size}
    model = BERTopic(umap_model=umap_model, calculate_probabilities=False, **sizing)
    docs = list(documents)
    topics, _ = model.fit_transform(docs, embeddings=embeddings)
    names = {}
    for topic in set(topics):
        if topic >= 0:
            names[topic] = " ".join(w for w, _ in (model.get_topic(topic) or [])[:4] if w)
    fitted = time.perf_counter() - start
    out = {"topics": (np.asarray(topics, int), names, fitted)}
    start = time.perf_counter()
    reduced = model.reduce_outliers(docs, topics) if -1 in topics and len(set(topics)) > 1 else topics
    out["reduce-outliers"] = (np.asarray(reduced, int), names, fitted + time.perf_counter() - start)
    return out
