"""Which clustering settings move the scores, from saved runs: no tagging, no embedding. Each run's
saved vectors are joined with its phrase space at the run's own lexical weight and dimensions, then
clustered once per setting and seed; the leaves are scored against the data's labels.

    python -m eval.segmenter_sweep RUN=DATA.csv [RUN=DATA.csv ...] \
        --settings "" "reduce_dims=24" "resolution=1.5,neighbours=15" [--seeds 5] [--name segmenter-sweep]

A setting is `Segmenter` parameters as `name=value` pairs joined by commas ("" = the defaults).
Writes eval/results/<name>.{json,md}.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from eval.lexical_sweep import RESULTS, SavedRun, each_pair, mean_scores, pairs_parser, score_table, write_results
from tagger.stages.clustering import Segmenter


def parse_setting(text: str) -> dict:
    """'reduce_dims=24,consensus_base=hdbscan' → Segmenter keyword arguments, typed by its fields."""
    types = {f.name: f.type for f in fields(Segmenter)}
    params = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = pair.partition("=")
        if not sep or name not in types or name == "seed":
            raise SystemExit(f"segmenter_sweep: {pair!r} is not name=value of a Segmenter parameter other than seed "
                             f"(one of: {', '.join(n for n in types if n != 'seed')})")
        kind = str(types[name])
        if value.lower() == "none" and "None" in kind:
            params[name] = None
        elif kind.startswith("int"):
            params[name] = int(value)
        elif kind.startswith("float"):
            params[name] = float(value)
        elif kind.startswith("bool"):
            params[name] = value.lower() in ("1", "true", "yes")
        else:
            params[name] = value
    return params


def sweep(run: Path, data: Path, settings: dict[str, dict], seeds: range) -> list[dict]:
    """`settings`: each setting as written → its Segmenter parameters (parse_setting)."""
    saved = SavedRun.load(run, data)
    config = json.loads((run / "run.json").read_text())["config"]
    vectors = {seed: saved.vectors(config["lexical_weight"], config["lexical_dims"], seed) for seed in seeds}
    rows = []
    for setting, params in settings.items():
        scores = [saved.scores(vectors[seed], seed, **params) for seed in seeds]
        rows.append({"setting": setting or "defaults", **mean_scores(scores)})
        print(run.name, rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = pairs_parser(__doc__, "segmenter-sweep")
    parser.add_argument("--settings", nargs="+", default=[""], help="Segmenter parameters, e.g. 'reduce_dims=24'")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (the SVD's and the clustering's)")
    args = parser.parse_args(argv)
    # Parsed before any clustering: a typo fails at once, not after minutes of work.
    settings = {setting: parse_setting(setting) for setting in args.settings}
    results = {name: sweep(run, data, settings, range(args.seeds)) for name, run, data in each_pair(args.pairs)}
    write_results(RESULTS, args.name, results, score_table(results, ["setting"], lambda row: [row["setting"]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
