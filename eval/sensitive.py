"""`python -m eval.sensitive`: are the segments about sensitive topics flagged, and only those?

A labeled file (`user_id`, `text`, `category`) and eval/sensitive_groups.toml, which says which
of its groups are sensitive (newsgroups-dev: the religion, politics, guns and medicine posters),
or a finished run folder without labels (the demo: how many of its shopping segments are flagged):

    python -m eval.sensitive ../shared/data/newsgroups-dev/posts.csv --engine cached
    python -m eval.sensitive ../shared/data/newsgroups-dev/posts.csv --run runs/newsgroups   # a run of that file
    python -m eval.sensitive --run runs/demo

A leaf segment is sensitive when its members' majority group is. Reported: the share of
sensitive segments flagged (target 100 %), the non-sensitive segments flagged, and per segment
its majority group, name and flag. Results go to --out as <name>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

import pandas as pd

GROUPS = Path(__file__).resolve().parent / "sensitive_groups.toml"


def judge_run(segments: pd.DataFrame, users: pd.DataFrame, truth: pd.Series | None, sensitive: dict[str, str]) -> dict:
    """Per segment (leaves, then parents): majority group, whether it is sensitive, the flag."""
    rows = []
    for seg in segments.itertuples():
        members = users[users["segment_id"] == seg.segment_id]["user_id"] if seg.level == 0 else \
            users[users["parent_id"] == seg.segment_id]["user_id"]
        majority = ""
        if truth is not None and len(members):
            majority = str(truth.reindex(members.astype(str)).dropna().value_counts().idxmax())
        rows.append({"segment_id": int(seg.segment_id), "level": int(seg.level), "size": int(seg.size),
                     "name": seg.name, "majority": majority, "expected": sensitive.get(majority, ""),
                     "flagged": getattr(seg, "sensitive", "") or ""})
    leaves = [r for r in rows if r["level"] == 0]
    expected = [r for r in leaves if r["expected"]]
    other = [r for r in leaves if not r["expected"]]
    return {"segments": rows,
            "sensitive_leaves": len(expected), "sensitive_flagged": sum(bool(r["flagged"]) for r in expected),
            "other_leaves": len(other), "other_flagged": sum(bool(r["flagged"]) for r in other),
            "recall": round(sum(bool(r["flagged"]) for r in expected) / len(expected), 4) if expected else None}


def markdown(name: str, result: dict) -> str:
    lines = [f"### {name}", "",
             f"sensitive leaves flagged: {result['sensitive_flagged']} of {result['sensitive_leaves']}; "
             f"other leaves flagged: {result['other_flagged']} of {result['other_leaves']}", "",
             "| id | level | size | name | majority group | sensitive group | flagged |", "|---|---|---|---|---|---|---|"]
    for r in result["segments"]:
        lines.append(f"| {r['segment_id']} | {r['level']} | {r['size']} | {r['name']} | {r['majority'] or '-'} | "
                     f"{r['expected'] or '-'} | {r['flagged'] or '-'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.sensitive", description=__doc__.splitlines()[0])
    p.add_argument("file", nargs="?", type=Path, help="labeled CSV (user_id, text, category)")
    p.add_argument("--run", type=Path, help="a finished run folder to judge instead (no labels: flags only)")
    p.add_argument("--engine", default="vllm", choices=("vllm", "cached", "fake"))
    p.add_argument("--embedder", default="auto")
    p.add_argument("--groups", type=Path, default=GROUPS, help="which groups are sensitive [eval/sensitive_groups.toml]")
    p.add_argument("--out", type=Path, default=Path("/tmp/sensitive-eval"))
    p.add_argument("--name", default="sensitive")
    args = p.parse_args(argv)
    if args.file is None and args.run is None:
        print("error: pass a labeled FILE, a --run RUN, or both (a run of that file)", file=sys.stderr)
        return 2
    table = tomllib.loads(args.groups.read_text(encoding="utf-8"))
    if args.run is not None:
        from eval.metrics import true_segments

        segments = pd.read_parquet(args.run / "segments.parquet")
        users = pd.read_parquet(args.run / "users.parquet")
        name, truth, sensitive = args.run.name, None, {}
        if args.file is not None:
            truth = true_segments(pd.read_csv(args.file, dtype={"user_id": str}))
            name = args.file.resolve().parent.name
            sensitive = table.get(name, {})
    else:
        from eval.harness import CacheOnlyEngine
        from eval.metrics import true_segments
        from tagger.config import make_config
        from tagger.llm.base import create_engine
        from tagger.llm.models import resolve_model
        from tagger.run.segment import segment

        frame = pd.read_csv(args.file, dtype={"user_id": str})
        name = args.file.resolve().parent.name
        sensitive = table.get(name, {})
        truth = true_segments(frame)
        model = resolve_model("embedded") if args.engine != "fake" else "fake"
        engine = CacheOnlyEngine(str(model)) if args.engine == "cached" else create_engine(args.engine, model=model)
        config = make_config(engine="vllm" if args.engine == "cached" else args.engine, embedder=args.embedder,
                             item_col="product" if "product" in frame else None)
        try:
            result = segment(frame[["user_id", "text", *(["product"] if "product" in frame else [])]], config,
                             engine=engine)
        finally:
            engine.close()
        segments, users = result.segments, result.users
    judged = judge_run(segments, users, truth, sensitive)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(judged, indent=1, ensure_ascii=False))
    text = markdown(name, judged)
    (args.out / f"{args.name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
