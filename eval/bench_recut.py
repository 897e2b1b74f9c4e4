"""`tagger recut` at scale: wall time and peak memory of re-cutting a finished run of N synthetic users.

    .venv/bin/python eval/bench_recut.py --users 100000

Builds the run once with `tagger segment` (fake engine, hash embedder: the users are
eval/bench_scale.py's synthetic ones, topic-structured pseudo-words), then times `tagger recut`
to fewer and to more leaves than the consensus found, each in its own process (so its peak
memory is its own), with the naming cache warm as on a second recut and cold as on the first.
Results: eval/results/bench_recut_<users>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results"
sys.path.insert(0, str(ROOT))


def build_run(users: int, folder: Path, seed: int) -> dict:
    import pandas as pd

    from eval.bench_scale import synthetic_users
    from tagger.config import make_config
    from tagger.run.segment import segment

    _, documents, _ = synthetic_users(users, seed)
    frame = pd.DataFrame({"user_id": [d.user_id for d in documents], "text": [d.comments[0] for d in documents]})
    start = time.perf_counter()
    result = segment(frame, make_config(engine="fake", embedder="hash", seed=seed), out=folder, force=True)
    return {"segment_s": round(time.perf_counter() - start, 1), "leaves": result.summary.counts.segments,
            "timings_s": result.summary.timings_s}


def time_recut(folder: Path, n_segments: int, out: Path) -> dict:
    """One recut in a child process: its wall time and the highest RSS seen every 20 ms."""
    import psutil

    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "tagger", "recut", str(folder), "--segments", str(n_segments),
                              "--out", str(out), "--force", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    peak, proc = 0, psutil.Process(child.pid)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                peak = max(peak, proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stdout, stderr = child.communicate()
    stop.set()
    if child.returncode:
        raise SystemExit(f"recut failed: {stderr.strip()[-500:]}")
    summary = json.loads((out / "run.json").read_text())
    return {"segments_asked": n_segments, "wall_s": round(time.perf_counter() - start, 1),
            "recut_s": summary["recut"]["wall_time_s"], "peak_rss_mb": round(peak / 2**20),
            "per_level": summary["tree"]["per_level"], "names_cached": summary["recut"]["cache"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eval/bench_recut.py", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("TAGGER_HOME", str(Path(tmp) / "home"))
        run = Path(tmp) / "run"
        built = build_run(args.users, run, args.seed)
        leaves = built["leaves"]
        recuts = []
        for n in (max(2, leaves // 2), leaves + max(2, leaves // 2), max(2, leaves // 2)):
            recuts.append(time_recut(run, n, Path(tmp) / f"recut-{n}"))
            print(f"recut to {n}: {recuts[-1]}", file=sys.stderr, flush=True)
        folder_mb = sum(f.stat().st_size for f in (run / "model" / "recut").iterdir()) / 2**20
    record = {"users": args.users, "build": built, "recut_data_mb": round(folder_mb, 1), "recuts": recuts,
              "cpus": os.cpu_count()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"bench_recut_{args.users}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [f"# tagger recut, {args.users} synthetic users ({os.cpu_count()} CPUs)", "",
             f"Run built by `tagger segment` in {built['segment_s']} s ({leaves} leaves); recut data "
             f"{record['recut_data_mb']} MB.", "", "| leaves asked | levels | wall (s) | recut's own (s) | peak RSS (MB) |"
             " names cached / new |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['segments_asked']} | {' + '.join(map(str, r['per_level']))} | {r['wall_s']} | {r['recut_s']} | "
              f"{r['peak_rss_mb']} | {r['names_cached']['hits']} / {r['names_cached']['misses']} |" for r in recuts]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
