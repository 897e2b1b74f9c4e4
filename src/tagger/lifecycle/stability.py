"""How much the segments depend on chance: rerun clustering on the same user vectors with
other seeds, each on a seeded subsample of the users (as in bootstrap cluster-stability
checks), and compare.

- mean pairwise adjusted Rand index over all runs (the main run included), each pair
  compared on the users both runs saw;
- per segment of the main run, the best-match Jaccard of its members against the segments of
  each rerun, averaged over reruns; below `UNSTABLE_JACCARD` a segment is called unstable
  (Hennig's clusterboot reading: <= 0.5 "dissolved", >= 0.75 "stable");
- when the segments have parents, the same pairwise ARI for each level of the tree on its own:
  parents can hold while the leaves under them trade users, and the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from tagger.stages.clustering import Segmenter
from tagger.stages.tree import labels_at

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


def _resampled(vectors: np.ndarray, main: np.ndarray, fit: Callable[[np.ndarray, int], np.ndarray],
               seeds: list[int], sample: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every run's labels, one row per level over all users (-1 where a rerun did not see the user),
    and the mask of users each run saw; the main run (`main`) first."""
    n = main.shape[1]
    all_labels: list[np.ndarray] = [main]
    seen: list[np.ndarray] = [np.ones(n, bool)]
    for run_seed in seeds[1:]:
        rng = np.random.default_rng(run_seed)
        take = np.sort(rng.choice(n, max(2, int(round(n * sample))), replace=False)) if sample < 1 else np.arange(n)
        full = np.full(main.shape, -1)
        full[:, take] = np.asarray(fit(vectors[take], run_seed)).reshape(main.shape[0], len(take))
        mask = np.zeros(n, bool)
        mask[take] = True
        all_labels.append(full)
        seen.append(mask)
    return all_labels, seen


def _pairwise_ari(all_labels: list[np.ndarray], seen: list[np.ndarray]) -> list[float]:
    """Adjusted Rand index of every pair of runs, on the users both saw."""
    from sklearn.metrics import adjusted_rand_score

    out = []
    for a, b in combinations(range(len(all_labels)), 2):
        both = seen[a] & seen[b]
        out.append(float(adjusted_rand_score(all_labels[a][both], all_labels[b][both])))
    return out


def _ari_summary(all_labels: list[np.ndarray], seen: list[np.ndarray]) -> dict[str, Any]:
    pairwise = _pairwise_ari(all_labels, seen)
    return {
        "mean_ari": round(float(np.mean(pairwise)), 4) if pairwise else 1.0,
        "min_ari": round(float(np.min(pairwise)), 4) if pairwise else 1.0,
        "pairwise_ari": [round(x, 4) for x in pairwise],
        "segments_per_run": [len(np.unique(x[x >= 0])) for x in all_labels],
    }


def _segment_rows(labels: np.ndarray, all_labels: list[np.ndarray], seen: list[np.ndarray],
                  names: dict[int, str]) -> list[dict[str, Any]]:
    """Per segment of the main run: the best-match Jaccard against each rerun, mean and min."""
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
    return rows


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
    `labels` are the main run's (seed `seed`, all users). `runs` counts the main run.

    `labels` may also hold one row per level of a segment tree, leaves first (levels x users),
    with `fit` returning the same rows for its users: the summary then adds `levels`, the ARI
    figures of each level ("0" = leaves) by themselves. Per-segment figures are for leaves."""
    main = np.atleast_2d(np.asarray(labels))
    leaves = main[0]
    seeds = [seed + k for k in range(runs)]
    all_labels, seen = _resampled(vectors, main, fit, seeds, sample)
    per_level = [_ari_summary([x[level] for x in all_labels], seen) for level in range(main.shape[0])]
    rows = _segment_rows(leaves, [x[0] for x in all_labels], seen, names or {})
    table = pd.DataFrame(rows, columns=["segment_id", "segment_name", "size", "mean_jaccard", "min_jaccard", "stable"])
    leaf = per_level[0]
    summary = {
        "runs": len(all_labels),
        "seeds": seeds,
        "sample_fraction": sample,
        "segments_per_run": leaf["segments_per_run"],
        "mean_ari": leaf["mean_ari"],
        "min_ari": leaf["min_ari"],
        "pairwise_ari": leaf["pairwise_ari"],
        "unstable_below_jaccard": UNSTABLE_JACCARD,
        "segments": rows,
        "unstable": [r["segment_id"] for r in rows if not r["stable"]],
    }
    if len(per_level) > 1:
        summary["levels"] = {str(level): figures for level, figures in enumerate(per_level)}
    return summary, table


def tree_labels(segmenter: Segmenter, levels: int) -> np.ndarray:
    """A fitted Segmenter's labels at levels 0..`levels` (one row each). A fit whose tree stops
    lower (a rerun that found two leaves has no parents) repeats its top level: those are the
    coarsest groups it holds, the ones to compare with the main run's groups at that grain."""
    top = len(segmenter.tree_parents_)
    return np.vstack([segmenter.level_labels(min(level, top)) for level in range(levels + 1)])


def stability_for_run(config, vectors: np.ndarray, labels: np.ndarray, names: dict[int, str],
                      segmenter: Segmenter | None = None, ids: dict[int, int] | None = None):
    """Reruns the run's Segmenter, with every parameter it had but the seed (so the same
    `levels` and `n_segments`), `config.stability` times in all (main run included). When the
    run's segments have parents, each level is compared as well (summary key `levels`), and every
    rerun has the run's number of parents: the level is a cut of that size, and "about sqrt(leaves)"
    jumps from 3 to 4 parents when a rerun finds 13 leaves instead of 12. `labels` are the
    segmenter's own numbers; `ids` their segment ids (empty: the numbers), as `names` are keyed."""
    segmenter = segmenter or Segmenter()
    params = segmenter.get_params()
    params.pop("seed")
    tree = list(getattr(segmenter, "tree_parents_", []))
    if tree:
        params["n_parents"] = int(tree[0].max()) + 1
    # `labels` are the leaves of the users with a vector only, so the main run's upper levels
    # come from mapping them up its tree rather than from `level_labels` over every row.
    main = np.vstack([labels_at(labels, tree, level) for level in range(len(tree) + 1)])

    def fit(part: np.ndarray, seed: int) -> np.ndarray:
        return tree_labels(Segmenter(**params, seed=seed).fit(part), len(tree))

    ids = ids or {}
    summary, table = stability(vectors, main, fit, runs=config.stability, seed=config.seed,
                               sample=config.stability_sample, names={k: names.get(ids.get(k, k), f"segment {ids.get(k, k)}")
                                      for k in np.unique(labels[labels >= 0]).tolist()})
    if ids:
        for row in summary["segments"]:
            row["segment_id"] = ids.get(row["segment_id"], row["segment_id"])
        summary["unstable"] = [ids.get(s, s) for s in summary["unstable"]]
        table["segment_id"] = [ids.get(int(s), int(s)) for s in table["segment_id"]]
    return summary, table
