"""Stability of each level of the segment tree on finished runs, from their saved user vectors.

    .venv/bin/python eval/parent_stability.py RUN [RUN ...] --runs 10 [--counts 2,3,4] [--setting reduce_dims=24]
        [--name parent-stability]

For each run folder (made by `tagger segment`), refits the run's Segmenter on the vectors it
saved for `recut` and reruns it as `--stability` does (every setting but the seed, the run's
number of parents held, 90 % samples), twice: with parents as tagger cuts them now (groups of two
leaves or more) and with the plain average-linkage cut (`merge_groups`), where an outlying leaf
can be a parent on its own. `--counts`: instead, tagger's cut once per number of parents listed
(as `--parents P`). `--setting`: Segmenter parameters over the run's own, as in
eval/segmenter_sweep.py. Mean and minimum pairwise ARI per level. No engine, no encoder.
Results: eval/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results"


def level_stability(run_dir: Path, runs: int, plain: bool, count: int | None = None, setting: dict | None = None) -> dict:
    """Figures of one run folder; `count`: the number of parents asked (None: the run's own);
    `setting`: Segmenter parameters that replace the run's."""
    from tagger.config import RunConfig
    from tagger.lifecycle.recut_data import load_recut_data
    from tagger.lifecycle.stability import stability_for_run
    from tagger.pipeline import segmenter_for
    from tagger.run.load import load_run
    from tagger.stages import tree

    run = load_run(run_dir)
    data = load_recut_data(run.path, len(run.users))
    vectors = np.asarray(data.vectors, np.float32)[np.asarray(data.assigned_by) != "unsegmented"]
    saved = run.summary.config
    config = RunConfig(**{k: v for k, v in saved.items() if k in RunConfig.model_fields})
    if count:
        config = config.model_copy(update={"n_parents": count})
    grouped = tree.parent_groups
    if plain:
        tree.parent_groups = tree.merge_groups
    try:
        segmenter = segmenter_for(config).set_params(**(setting or {})).fit(vectors)
        summary, _ = stability_for_run(SimpleNamespace(stability=runs, seed=config.seed, stability_sample=0.9),
                                       vectors, segmenter.labels_, {}, segmenter)
    finally:
        tree.parent_groups = grouped
    levels = summary.get("levels", {"0": summary})
    return {"users": len(vectors), "parents": int(segmenter.tree_parents_[0].max()) + 1 if segmenter.tree_parents_ else 0,
            "leaves_per_run": summary["segments_per_run"],
            "levels": {k: {"mean_ari": v["mean_ari"], "min_ari": v["min_ari"]} for k, v in levels.items()}}


def _cell(levels: dict, level: str) -> str:
    return f"{levels[level]['mean_ari']:.3f} / {levels[level]['min_ari']:.3f}" if level in levels else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dirs", nargs="+", type=Path, help="run folders of `tagger segment`")
    parser.add_argument("--runs", type=int, default=10, help="runs in all, the main one included [10]")
    parser.add_argument("--counts", type=lambda text: [int(c) for c in text.split(",")],
                        help="numbers of parents to try, comma-separated, e.g. 2,3,4 [the run's own, cut both ways]")
    parser.add_argument("--setting", default="", help="Segmenter parameters, e.g. reduce_dims=24 [the run's own]")
    parser.add_argument("--name", default="parent-stability", help="results file name [parent-stability]")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # run as a script, eval/ is not a package on the path
    from eval.lexical_sweep import write_results
    from eval.segmenter_sweep import parse_setting

    setting = parse_setting(args.setting)
    rows = []
    for folder in args.runs_dirs:
        tries = [(False, c) for c in args.counts] if args.counts else [(False, None), (True, None)]
        for plain, count in tries:
            figures = level_stability(folder, args.runs, plain, count, setting)
            cut = "plain linkage" if plain else "two leaves or more" + (", asked" if count else "")
            rows.append({"run": folder.name, "parents_cut": cut, **({"setting": args.setting} if setting else {}),
                         **figures})
            print(json.dumps(rows[-1]), flush=True)
    lines = [f"# Stability per level ({args.runs} runs on 90 % samples, mean / min pairwise ARI)", "",
             "| run | users | parents | parents cut | leaves per run | leaves | parents |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        leaves, parents = (_cell(r["levels"], level) for level in ("0", "1"))
        run = f"{r['run']} ({r['setting']})" if r.get("setting") else r["run"]
        lines.append(f"| {run} | {r['users']} | {r['parents']} | {r['parents_cut']} | "
                     f"{min(r['leaves_per_run'])}–{max(r['leaves_per_run'])} | {leaves} | {parents} |")
    write_results(RESULTS, args.name, {"runs": args.runs, "sample": 0.9, "rows": rows}, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
