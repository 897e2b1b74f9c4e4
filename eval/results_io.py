"""What the benchmarks over saved runs share: their command line (RUN=DATA pairs and --name),
each saved user's true group, and writing a result as `<name>.json` beside its `<name>.md` table."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from eval.metrics import true_segments

RESULTS = Path(__file__).resolve().parent / "results"


def users_truth(user_ids: Sequence, data: Path) -> np.ndarray:
    """Each user's true group (the data README's rule) in the order of `user_ids`; NaN where absent."""
    return true_segments(pd.read_csv(data, dtype={"user_id": str})).reindex(pd.Index(user_ids).astype(str)).to_numpy()


def pairs_parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The command line of a script over saved runs: RUN=DATA pairs and --name."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("pairs", nargs="+", metavar="RUN=DATA", help="a run folder and the labelled data it was made from")
    parser.add_argument("--name", default=name, help=f"results file name [{name}]")
    return parser


def write_results(folder: Path, name: str, results: dict, table: str) -> None:
    """Write `results` as FOLDER/NAME.json and `table` as FOLDER/NAME.md, and print the table."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / f"{name}.md").write_text(table, encoding="utf-8")
    print(table)
