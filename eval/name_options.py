"""What naming could score with the options it offers, from saved runs: the strict judge
(eval/metrics.py, eval/groups.toml) on every name each leaf was offered, not only the one it took.
No engine; the run's own encoder.

    python -m eval.name_options RUN=DATA.csv [RUN=DATA.csv ...] [--name name-options]

Per set: the judge on the names taken, on each leaf's first-ranked option, and on the best of its
offered options (a perfect choice among them: the ceiling of choosing, below which a miss is the
ranking's and above which it is the options' or the leaves'). Per leaf: which options the judge
accepts. Writes eval/results/<name>.{json,md}.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from eval.lexical_sweep import RESULTS, each_pair, pairs_parser, users_truth, write_results
from eval.metrics import strict_option_judgements


def judge_run(run: Path, data: Path, encoder=None, groups: dict | None = None) -> dict | None:
    """The judge's figures for one run folder's leaves; None where the strict judge does not apply."""
    if encoder is None:
        from tagger.stages.embedding import create_encoder

        encoder = create_encoder(json.loads((run / "run.json").read_text())["embedder"])
    users = pd.read_parquet(run / "users.parquet")
    truth = users_truth(users["user_id"], data)
    leaves = pd.read_parquet(run / "segments.parquet").query("level == 0").set_index("segment_id")
    profiles = {p["segment_id"]: p for p in json.loads((run / "segment_profiles.json").read_text())}
    labels = users["segment_id"].to_numpy()
    keep = np.isin(labels, leaves.index) & pd.notna(truth)
    labels, truth = labels[keep], truth[keep]
    # The name taken goes first whether or not it is among the options (a fallback name is not).
    options = {s: list(dict.fromkeys([leaves.loc[s, "name"], *profiles.get(s, {}).get("options", [])]))
               for s in leaves.index}
    judged = strict_option_judgements(labels, truth, options, encoder, groups)
    if judged is None:
        return None
    first = {s: profiles.get(s, {}).get("options", [None])[:1] for s in judged}
    rows, taken, ranked, best = [], 0, 0, 0
    for s, accepted in judged.items():
        size = int((labels == s).sum())
        ok = dict(zip(options[s], accepted, strict=True))
        taken += size * ok[options[s][0]]
        ranked += size * bool(first[s] and ok.get(first[s][0], False))
        best += size * any(accepted)
        rows.append({"segment_id": int(s), "name": options[s][0], "users": size, "accepted": ok[options[s][0]],
                     "accepted_options": [o for o in options[s] if ok[o]], "options": len(options[s])})
    users_n = max(len(labels), 1)
    return {"taken": round(taken / users_n, 3), "first_ranked": round(ranked / users_n, 3),
            "best_offered": round(best / users_n, 3), "leaves": rows}


def markdown(results: dict[str, dict]) -> str:
    lines = ["| set | names taken | first-ranked options | best offered option |", "|---|---|---|---|"]
    lines += [f"| {name} | {r['taken']:.3f} | {r['first_ranked']:.3f} | {r['best_offered']:.3f} |"
              for name, r in results.items()]
    for name, r in results.items():
        lines += ["", f"### {name}", "", "| leaf | users | name taken | judged | options the judge accepts |",
                  "|---|---|---|---|---|"]
        lines += [f"| {row['segment_id']} | {row['users']} | {row['name']} | {'yes' if row['accepted'] else 'no'} | "
                  f"{', '.join(row['accepted_options']) or '— (none of ' + str(row['options']) + ')'} |"
                  for row in r["leaves"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = pairs_parser(__doc__, "name-options").parse_args(argv)
    results = {}
    for name, run, data in each_pair(args.pairs):
        results[name] = judge_run(run, data)
        if results[name] is None:
            raise SystemExit(f"name_options: the strict judge has no groups for {data} (eval/groups.toml); "
                             "pass a dev set it describes")
    write_results(RESULTS, args.name, results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
