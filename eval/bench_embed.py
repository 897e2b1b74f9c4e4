"""The embedding stage reading every comment: texts/s and peak memory as users grow.

    .venv/bin/python eval/bench_embed.py --users 10000 100000 --comments 10 --embedder hash
    .venv/bin/python eval/bench_embed.py --users 10000 --comments 10 --embedder minilm

Synthetic users get `--comments` comments each of 8-400 pseudo-words (a tenth longer than the
encoder's window, so pieces are exercised). Each size runs `comment_means` (the stage tagger runs)
in its own subprocess, with a sampler thread reading the process RSS every 20 ms: the peak minus
the RSS once the documents are built is what the stage itself holds, which must stay flat in the
number of comments (users' rows plus one chunk). Results: eval/results/bench_embed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import SYLLABLES, PeakSampler  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results"


def synthetic_documents(users: int, comments: int, seed: int = 0):
    from tagger.schemas import UserDocument

    rng = np.random.default_rng(seed)
    words = np.array(list(dict.fromkeys("".join(rng.choice(SYLLABLES, 3)) for _ in range(20_000))))
    documents = []
    for u in range(users):
        lengths = np.where(rng.random(comments) < 0.1, rng.integers(200, 400, comments), rng.integers(8, 40, comments))
        texts = [" ".join(words[rng.integers(0, len(words), n)]) for n in lengths]
        documents.append(UserDocument(user_id=f"u{u:07d}", comments=texts, n_comments=comments))
    return documents


def run_one(users: int, comments: int, embedder: str) -> dict:
    from tagger.stages.embedding import EmbedStats, comment_means, create_encoder

    encoder = create_encoder(embedder)
    encoder.encode(["warm up"])
    documents = synthetic_documents(users, comments)
    sampler = PeakSampler()
    before = sampler.reset()
    stats = EmbedStats()
    started = time.perf_counter()
    vectors = comment_means(documents, encoder, stats=stats)
    seconds = time.perf_counter() - started
    sampler.stop()
    return {"users": users, "comments": stats.comments, "pieces": stats.pieces, "embedder": embedder,
            "seconds": round(seconds, 1), "comments_per_s": round(stats.comments / seconds, 1),
            "pieces_per_s": round(stats.pieces / seconds, 1), "rss_before_mb": round(before / 2**20),
            "peak_mb": round(sampler.peak / 2**20), "stage_mb": round((sampler.peak - before) / 2**20),
            "vectors_mb": round(vectors.nbytes / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--comments", type=int, default=10)
    parser.add_argument("--embedder", default="hash")
    parser.add_argument("--name", default="bench_embed")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.users[0], args.comments, args.embedder)))
        return
    rows = []
    for users in args.users:
        out = subprocess.run([sys.executable, __file__, "--one", "--users", str(users), "--comments",
                              str(args.comments), "--embedder", args.embedder], capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                                           "rows": rows}, indent=2) + "\n")
    lines = ["| embedder | users | comments | pieces | s | comments/s | pieces/s | RSS before (MB) | peak (MB) | stage (MB) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['embedder']} | {r['users']:,} | {r['comments']:,} | {r['pieces']:,} | {r['seconds']} | "
              f"{r['comments_per_s']:,} | {r['pieces_per_s']:,} | {r['rss_before_mb']:,} | {r['peak_mb']:,} | "
              f"{r['stage_mb']:,} |" for r in rows]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
