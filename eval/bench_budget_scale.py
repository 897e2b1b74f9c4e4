"""A budgeted run at scale: wall time and peak memory per stage, and `tagger assign` without the LLM.

    # 100k users end to end with the real engine, the LLM reading 2,000 of them
    python eval/bench_budget_scale.py run --users 100000 --llm-users 2000 --engine vllm --distinct
    # 1M users, every stage except tagging (the fake engine answers the sample at once)
    python eval/bench_budget_scale.py run --users 1000000 --llm-users 2000 --engine fake
    # 10k new users placed in a finished run by its distilled placer (no engine)
    python eval/bench_budget_scale.py assign --run /tmp/bench-budget/run-100000 --users 10000 --distinct

Each synthetic user carries the comments (and reviewed items) of one real dev-set user, drawn at
random with replacement (`--from`, by default newsgroups-dev and amazon-2023), so comments per user
and their lengths are real. Resampled, the same comment recurs in many users, and tagger embeds a
text once (its vector store, and one encoder call per distinct text): without `--distinct` that is
the figure measured. `--distinct` appends " #<user number>" to every comment of a user (digits are
no word for the candidate phrases or the phrase space), so every comment is a new text and the
encoder reads all of them: the cost of real data. The report says which it was.

The run is `tagger.run.segment.segment` in a child process (so its peak is its own) with a reporter
that records, per stage, its wall time and the highest memory seen while it ran: the resident
memory of the process and of its children (the vLLM engine's processes) together, sampled every
0.1 s. TAGGER_HOME is a fresh folder under `--work` unless `--home` is given, so the vector store
and the answer cache start empty. Writes eval/results/<--name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SOURCES = [DATA / "newsgroups-dev" / "posts.csv", DATA / "amazon-2023" / "reviews.csv"]


def build_input(users: int, sources: list[Path], seed: int, distinct: bool, path: Path, prefix: str = "u") -> dict:
    """A Parquet file of `users` users, each with every row (text, item) of one random source user.
    Built from index arrays (a million users hold ~10M rows): the texts are shared, not copied."""
    frames = []
    for source in sources:
        frame = pd.read_csv(source, dtype={"user_id": str})
        frame["user_id"] = source.parent.name + ":" + frame["user_id"]
        frame["product"] = frame["product"] if "product" in frame else None
        frames.append(frame[["user_id", "text", "product"]])
    pool = pd.concat(frames, ignore_index=True).sort_values("user_id", kind="stable", ignore_index=True)
    ids, starts, counts = np.unique(pool["user_id"].to_numpy(), return_index=True, return_counts=True)
    picks = np.random.default_rng(seed).integers(0, len(ids), users)
    per_user = counts[picks]
    owner = np.repeat(np.arange(users), per_user)
    # each output row's row in the pool: its source user's first row + its place among that user's rows
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    rows = np.repeat(starts[picks], per_user) + offset
    text = pool["text"].astype(str).to_numpy()[rows]
    if distinct:
        text = np.array([f"{t} #{u}" for t, u in zip(text, owner)], dtype=object)
    names = np.array([f"{prefix}{i:07d}" for i in range(users)], dtype=object)
    out = pd.DataFrame({"user_id": names[owner], "text": text, "product": pool["product"].to_numpy()[rows]})
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(path, index=False)
    return {"users": users, "rows": len(out), "source_users": len(ids), "distinct": distinct,
            "mb_of_text": round(float(out["text"].str.len().sum()) / 1e6, 1)}


class TreeSampler:
    """The highest resident memory of this process and its children, sampled every `every` s."""

    def __init__(self, every: float = 0.1):
        import psutil

        self._proc, self.every, self.peak = psutil.Process(), every, 0
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def rss(self) -> int:
        import psutil

        total = self._proc.memory_info().rss
        for child in self._proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.every)

    def reset(self) -> int:
        self.peak = self.rss()
        return self.peak

    def stop(self) -> None:
        self._stop.set()


def measuring_reporter(sampler: TreeSampler, stages: list[dict]):
    from tagger.progress import PlainReporter

    class Measuring(PlainReporter):
        """PlainReporter's lines, plus each stage's wall time and peak memory (a stage met twice,
        such as tagging the sample and then the least sure users, is listed twice)."""

        @contextmanager
        def stage(self, name: str, total: int | None = None):
            start_mb = sampler.reset() / 2**20
            started = time.perf_counter()
            with super().stage(name, total) as advance:
                yield advance
            stages.append({"stage": name, "wall_s": round(time.perf_counter() - started, 1),
                           "peak_mb": round(max(sampler.peak, sampler.rss()) / 2**20),
                           "start_mb": round(start_mb)})

    return Measuring()


def child_run(args) -> dict:
    sys.path.insert(0, str(ROOT / "src"))
    from tagger.config import make_config
    from tagger.run.segment import segment

    sampler, stages = TreeSampler(), []
    config = make_config(engine=args.engine, llm_users=args.llm_users, item_col="product", embedder=args.embedder,
                         seed=args.seed)
    reporter = measuring_reporter(sampler, stages)
    started = time.perf_counter()
    result = segment(args.input, config, out=args.out, force=True, reporter=reporter, report=False)
    wall = time.perf_counter() - started
    sampler.stop()
    summary = result.summary.model_dump(mode="json")
    return {"wall_s": round(wall, 1), "peak_mb": max(s["peak_mb"] for s in stages), "stages": stages,
            "counts": {k: summary["counts"][k] for k in ("users", "tagged", "failed", "unread", "distilled",
                                                          "segments", "comments_kept")},
            "llm": summary["llm"], "agreement": {k: summary["agreement"][k] for k in ("overall", "users", "low")}
            if summary.get("agreement") else None,
            "embedding": summary["embedding"], "cache": summary["cache"]}


def child_assign(args) -> dict:
    sys.path.insert(0, str(ROOT / "src"))
    from tagger.run.assign import assign

    sampler, stages = TreeSampler(), []
    reporter = measuring_reporter(sampler, stages)
    started = time.perf_counter()
    result = assign(args.run, args.input, out=args.out, force=True, reporter=reporter)
    wall = time.perf_counter() - started
    sampler.stop()
    counts = result.summary["counts"]
    return {"wall_s": round(wall, 1), "users_per_s": round(counts["users"] / wall, 1),
            "peak_mb": max(s["peak_mb"] for s in stages), "stages": stages, "engine_started":
            "engine start" in result.summary["timings_s"], "llm": result.summary["llm"],
            "counts": {k: counts[k] for k in ("users", "placed", "unread")}, "by": counts["by"]}


def spawn(mode: str, args, input_path: Path, out: Path, home: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--input", str(input_path), "--out-run", str(out),
           "--engine", args.engine, "--llm-users", str(args.llm_users), "--embedder", args.embedder,
           "--seed", str(args.seed), *(["--run", str(args.run)] if args.run else [])]
    env = os.environ | {"TAGGER_HOME": str(home), "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        return {"error": f"exit {proc.returncode}"}
    return json.loads(line[7:])


def markdown(report: dict) -> str:
    r = report["result"]
    lines = [f"# {report['title']} ({report['machine']})", "", f"Command: `{report['command']}`  ",
             f"Input: {report['input']['users']:,} users, {report['input']['rows']:,} comments "
             f"({report['input']['mb_of_text']} MB of text) resampled from {report['input']['source_users']} real "
             f"dev-set users; texts {'made distinct per user (every comment embedded)' if report['input']['distinct'] else 'repeated as resampled (a repeated text is embedded once)'}.",
             ""]
    if "error" in r:
        return "\n".join(lines + [f"Failed: {r['error']}", ""])
    lines += ["| stage | wall | peak memory (process + children) |", "|---|---|---|"]
    lines += [f"| {s['stage']} | {s['wall_s']} s | {s['peak_mb']:,} MB |" for s in r["stages"]]
    lines += [f"| **total** | **{r['wall_s']} s ({r['wall_s'] / 3600:.2f} h)** | **{r['peak_mb']:,} MB** |", ""]
    lines.append("```json\n" + json.dumps({k: v for k, v in r.items() if k != "stages"}, indent=1) + "\n```")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", nargs="?", choices=("run", "assign"), default="run")
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--llm-users", default="2000")
    p.add_argument("--engine", default="vllm", choices=("vllm", "fake"))
    p.add_argument("--embedder", default="auto")
    p.add_argument("--distinct", action="store_true", help="make every comment a new text (see the docstring)")
    p.add_argument("--from", dest="sources", type=Path, nargs="+", default=SOURCES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", type=Path, help="assign: the finished run to place users in")
    p.add_argument("--work", type=Path, default=Path("/tmp/bench-budget"))
    p.add_argument("--home", type=Path, help="TAGGER_HOME [a fresh folder under --work]")
    p.add_argument("--name", help="results file stem [bench_budget_<mode>_<users>]")
    p.add_argument("--results", type=Path, default=ROOT / "eval" / "results", help="folder for the results")
    p.add_argument("--child", choices=("run", "assign"))
    p.add_argument("--input", type=Path)
    p.add_argument("--out-run", dest="out", type=Path)
    args = p.parse_args()
    if args.child:
        result = child_run(args) if args.child == "run" else child_assign(args)
        print("RESULT " + json.dumps(result))
        return
    tag = f"{args.users // 1000}k" if args.users < 1_000_000 else f"{args.users // 1_000_000}m"
    suffix = "-distinct" if args.distinct else ""
    name = args.name or f"bench_budget_{args.mode}_{tag}{suffix}"
    input_path = args.work / f"{args.mode}-{args.users}{suffix}.parquet"
    built = build_input(args.users, args.sources, args.seed + (1 if args.mode == "assign" else 0), args.distinct,
                        input_path, prefix="u" if args.mode == "run" else "n")
    print(f"input: {built}", file=sys.stderr, flush=True)
    home = args.home or args.work / f"home-{name}"
    home.mkdir(parents=True, exist_ok=True)
    models = Path(os.environ.get("TAGGER_HOME", Path.home() / ".cache" / "tagger")) / "models"
    if not (home / "models").exists() and models.exists():
        (home / "models").symlink_to(models.resolve(), target_is_directory=True)  # the converted LLM, once
    out = args.work / (f"run-{args.users}{suffix}" if args.mode == "run" else f"assign-{args.users}{suffix}")
    result = spawn(args.mode, args, input_path, out, home)
    title = ("A budgeted run end to end" if args.mode == "run" else "`tagger assign` by the distilled placer")
    report = {"title": title, "command": " ".join(["python", "eval/bench_budget_scale.py", *sys.argv[1:]]),
              "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, shared with other jobs",
              "input": built, "result": result}
    results = args.results
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (results / f"{name}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
