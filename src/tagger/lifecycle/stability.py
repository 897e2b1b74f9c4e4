"""How much the segments depend on chance: rerun clustering on the same user vectors with
other seeds, each on a seeded subsample of the users (as in bootstrap cluster-stability
checks), and compare.

- mean pairwise adjusted Rand index over all runs (the main run included), each pair
  compared on the users both runs saw;
- per segment of the main run, the best-match Jaccard of its members against the segments of
  each rerun, averaged over reruns; below `UNSTABLE_JACCARD` a segment is called unstable
  (Hennig's clusterboot reading: <= 0.5 "dissolved", >= 0.75 "stable").
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from typing import Any

import numpy as np

from tagger.stages.clustering import Segmenter
import pandas as pd

UNSTABLE_JACCARD = 0.6


def best_match_jaccard(labels: np.ndarray, other: np.ndarray) -> dict[int, float]:
    """For each segment in `labels` (>= 0), the highest Jaccard with any segment of `other`
    (same users, same order; -1 counts as no segment)."""
    out = {}
    for sid in np.unique(labels[labels >= 0]):
        mine = labels == sid
        best = 0.0
        for oid in np.unique(other[mine & (other >= 0)]):
            theirs = other == oid
            best = max(best, float((mine & theirs).sum() / (mine | theirs).sum()))
        out[int(sid)] = best
    return out


def stability(
    vectors: np.ndarray,
    labels: np.ndarray,
    fit: Callable[[np.ndarray, int], np.ndarray],
    *,
    runs: int,
    seed: int = 0,
    sample: float = 0.9,
    names: dict[int, str] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """(summary for run.json, per-segment table). `fit(vectors, seed) -> labels` reclusters;
    `labels` are the main run's (seed `seed`, all users). `runs` counts the main run."""
    from sklearn.metrics import adjusted_rand_score

    n = len(vectors)
    names = names or {}
    all_labels: list[np.ndarray] = [np.asarray(labels)]
    seen: list[np.ndarray] = [np.ones(n, bool)]
    seeds = [seed + k for k in range(runs)]
    for run_seed in seeds[1:]:
        rng = np.random.default_rng(run_seed)
        take = np.sort(rng.choice(n, max(2, int(round(n * sample))), replace=False)) if sample < 1 else np.arange(n)
        full = np.full(n, -1)
        full[take] = fit(vectors[take], run_seed)
        mask = np.zeros(n, bool)
        mask[take] = True
        all_labels.append(full)
        seen.append(mask)

    pairwise = []
    for a, b in combinations(range(len(all_labels)), 2):
        both = seen[a] & seen[b]
        pairwise.append(float(adjusted_rand_score(all_labels[a][both], all_labels[b][both])))

    per_segment: dict[int, list[float]] = {int(s): [] for s in np.unique(labels[labels >= 0])}
    for other, mask in zip(all_labels[1:], seen[1:], strict=True):
        for sid, value in best_match_jaccard(np.where(mask, labels, -1), np.where(mask, other, -1)).items():
            per_segment[sid].append(value)
    rows = []
    for sid, values in per_segment.items():
        mean = float(np.mean(values)) if values else 1.0
        rows.append({"segment_id": sid, "segment_name": names.get(sid, f"segment {sid}"),
                     "size": int((labels == sid).sum()), "mean_jaccard": round(mean, 4),
                     "min_jaccard": round(float(np.min(values)) if values else 1.0, 4),
                     "stable": bool(mean >= UNSTABLE_JACCARD)})
    table = pd.DataFrame(rows, columns=["segment_id", "segment_name", "size", "mean_jaccard", "min_jaccard", "stable"])
    summary = {
        "runs": len(all_labels),
        "seeds": seeds,
        "sample_fraction": sample,
        "segments_per_run": [int(len(np.unique(x[x >= 0]))) for x in all_labels],
        "mean_ari": round(float(np.mean(pairwise)), 4) if pairwise else 1.0,
        "min_ari": round(float(np.min(pairwise)), 4) if pairwise else 1.0,
        "pairwise_ari": [round(x, 4) for x in pairwise],
        "unstable_below_jaccard": UNSTABLE_JACCARD,
        "segments": rows,
        "unstable": [r["segment_id"] for r in rows if not r["stable"]],
    }
    return summary, table


def stability_for_run(config, vectors: np.ndarray, labels: np.ndarray, names: dict[int, str],
                      segmenter: Segmenter | None = None):
    """Reruns the run's Segmenter, with every parameter it had but the seed, `config.stability`
    times in all (main run included)."""
    params = (segmenter or Segmenter()).get_params()
    params.pop("seed")

    def fit(part: np.ndarray, seed: int) -> np.ndarray:
        return Segmenter(**params, seed=seed).fit(part).labels_

    return stability(vectors, labels, fit, runs=config.stability, seed=config.seed,
                     sample=config.stability_sample, names=names)
