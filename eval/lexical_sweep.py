"""How much the users' own phrases (tagger.stages.lexical) add, from saved runs: no tagging, no
embedding. Each run folder's saved vectors give the encoder's part (its first `semantic_dims`
columns) and its naming corpus the phrases; the sweep joins them at each weight and number of
dimensions, clusters with the run's defaults and scores the leaves against the data's labels.
Each setting is scored over three seeds (the SVD's and the clustering's).

    python -m eval.lexical_sweep RUN=DATA.csv [RUN=DATA.csv ...] [--name lexical-sweep]

Writes eval/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from eval.metrics import cluster_scores, true_segments
from tagger.lifecycle.recut_data import load_recut_data
from tagger.lifecycle.segment_model import load_model
from tagger.stages.clustering import Segmenter
from tagger.stages.lexical import LexicalSpace, semantic_part

RESULTS = Path(__file__).parent / "results"
GRID = [(0.0, 0), (0.5, 30), (0.7, 20), (0.7, 30), (0.7, 50), (1.0, 30), (1.5, 30)]
SEEDS = (0, 1, 2)


def users_truth(user_ids: Sequence, data: Path) -> np.ndarray:
    """Each user's true group (the data README's rule) in the order of `user_ids`; NaN where absent."""
    return true_segments(pd.read_csv(data, dtype={"user_id": str})).reindex(pd.Index(user_ids).astype(str)).to_numpy()


class SavedRun(NamedTuple):
    """What a sweep reads of a run folder: the encoder's part of each user's vector, their
    phrases, which users have a vector, and each user's true group."""

    semantic: np.ndarray
    phrases: list[list[str]]
    items: bool
    usable: np.ndarray
    truth: np.ndarray

    @classmethod
    def load(cls, run: Path, data: Path) -> SavedRun:
        users = pd.read_parquet(run / "users.parquet")
        model, recut = load_model(run), load_recut_data(run, len(users))
        truth = users_truth(users["user_id"], data)
        items = bool(json.loads((run / "run.json").read_text())["config"].get("item_col"))
        return cls(semantic_part(recut.vectors, model.semantic_dims), recut.corpus.phrases(items), items,
                   recut.assigned_by != "unsegmented", truth)

    def vectors(self, weight: float, dims: int, seed: int) -> np.ndarray:
        """The user vectors with the phrase space at `weight` and `dims` (weight 0: the encoder's only)."""
        if not weight:
            return self.semantic
        space = LexicalSpace.fit([self.phrases[i] for i in np.flatnonzero(self.usable)], dims=dims, weight=weight,
                                 seed=seed, items=self.items)
        return space.join(self.semantic, self.phrases)

    def scores(self, vectors: np.ndarray, seed: int, **params) -> dict:
        labels = Segmenter(seed=seed, **params).fit(vectors, self.usable).labels_
        return cluster_scores(labels[self.usable], self.truth[self.usable])


def mean_scores(scores: list[dict]) -> dict:
    return {**{k: round(float(np.mean([s[k] for s in scores])), 3) for k in ("nmi", "ari", "segments")},
            "nmi_min": round(min(s["nmi"] for s in scores), 3)}


def sweep(run: Path, data: Path, *, grid=GRID, seeds=SEEDS) -> list[dict]:
    saved = SavedRun.load(run, data)
    rows = []
    for weight, dims in grid:
        scores = [saved.scores(saved.vectors(weight, dims, seed), seed) for seed in seeds]
        rows.append({"weight": weight, "dims": dims, **mean_scores(scores)})
        print(run.name, rows[-1], flush=True)
    return rows


def markdown(results: dict[str, list[dict]]) -> str:
    return score_table(results, ["weight", "dims"], lambda row: [str(row["weight"]), str(row["dims"] or "—")])


def score_table(results: dict[str, list[dict]], heads: Sequence[str], cells: Callable[[dict], Sequence[str]]) -> str:
    """One row per setting (`cells` of a set's row), one NMI / ARI (segments) column per set."""
    lines = ["| " + " | ".join([*heads, *(f"{name} NMI / ARI (segments)" for name in results)]) + " |",
             "|" + "---|" * (len(heads) + len(results))]
    for i, first in enumerate(next(iter(results.values()))):
        scores = [f"{rows[i]['nmi']:.3f} / {rows[i]['ari']:.3f} ({rows[i]['segments']:.1f})" for rows in results.values()]
        lines.append("| " + " | ".join([*cells(first), *scores]) + " |")
    return "\n".join(lines) + "\n"


def pairs_parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The command line of a script over saved runs: RUN=DATA pairs and --name."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("pairs", nargs="+", metavar="RUN=DATA", help="a run folder and the labelled data it was made from")
    parser.add_argument("--name", default=name, help=f"results file name [{name}]")
    return parser


def each_pair(pairs: Sequence[str]) -> Iterator[tuple[str, Path, Path]]:
    """(the set's name: its data file's folder, the run folder, the data file) per RUN=DATA."""
    for pair in pairs:
        run, _, data = pair.partition("=")
        yield Path(data).parent.name or Path(run).name, Path(run), Path(data)


def write_results(folder: Path, name: str, results: dict, table: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / f"{name}.md").write_text(table, encoding="utf-8")
    print(table)


def main(argv: list[str] | None = None) -> int:
    args = pairs_parser(__doc__, "lexical-sweep").parse_args(argv)
    results = {name: sweep(run, data) for name, run, data in each_pair(args.pairs)}
    write_results(RESULTS, args.name, results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
