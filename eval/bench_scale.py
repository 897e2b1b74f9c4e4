"""Non-LLM stages at scale: wall time and peak memory per stage on synthetic tagged users.

    .venv/bin/python eval/bench_scale.py --sizes 10000 100000 1000000 --ari-at 100000 \
        --comments-from ../shared/data/amazon-2023/reviews.csv

Each size runs in its own subprocess, so peak memory is that size's alone. Within it, a
sampler thread reads the process RSS every 20 ms and each stage reports the highest value seen
while it ran (and the RSS it started from). Synthetic users get 1-4 tags from a topic-structured
vocabulary (pseudo-words, so nothing resembles the real categories) and one short comment made
of their tags' evidence. Vectors are tags only (tag_weight=1): the per-user cost of comment
embeddings is measured separately on real comments (`--comment-sample`) and extrapolated.
Results: eval/results/bench_scale.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results"
TAIL_SHARE, TAIL_POOL = 0.1, 10_000
SYLLABLES = ["ka", "lo", "mi", "ru", "te", "so", "va", "ni", "po", "da", "ze", "fu", "gi", "ba", "xe", "yo"]


class PeakSampler:
    def __init__(self, every: float = 0.02):
        import psutil

        self._proc = psutil.Process()
        self.every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        return self._proc.memory_info().rss

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.every)

    def reset(self) -> int:
        now = self.rss()
        self.peak = now
        return now

    def stop(self) -> None:
        self._stop.set()


def _word(rng: np.random.Generator, n: int) -> str:
    return "".join(rng.choice(SYLLABLES, n))


def synthetic_vocabulary(seed: int, topics: int = 60, per_topic: int = 80) -> tuple[list[str], list[list[str]]]:
    """Topic words; each topic's tags are 'topicword modifier' or a lone topic-specific word."""
    rng = np.random.default_rng(seed)
    heads = list(dict.fromkeys(_word(rng, 3) for _ in range(topics * 3)))[:topics]
    vocab = []
    for head in heads:
        mods = list(dict.fromkeys(_word(rng, 2) for _ in range(per_topic * 3)))[:per_topic]
        vocab.append([head] + [f"{head} {m}" for m in mods[: per_topic // 2]] + mods[per_topic // 2 :])
    return heads, vocab


def synthetic_users(n: int, seed: int = 0):
    """(TaggedUser list, UserDocument list): each user mostly in one topic, a third touch a second."""
    from tagger.schemas import Tag, TaggedUser, UserDocument

    rng = np.random.default_rng(seed)
    heads, vocab = synthetic_vocabulary(seed)
    topic_weights = rng.dirichlet(np.full(len(heads), 2.0))
    main = rng.choice(len(heads), n, p=topic_weights)
    second = np.where(rng.random(n) < 0.33, rng.choice(len(heads), n, p=topic_weights), main)
    counts = rng.integers(1, 5, n)
    zipf = 1.0 / np.arange(1, len(vocab[0]) + 1)
    zipf /= zipf.sum()
    picks = rng.choice(len(vocab[0]), (n, 4), p=zipf)
    tail = [f"{_word(rng, 2)} {_word(rng, 3)}" for _ in range(TAIL_POOL)]
    tail_draw, tail_pick = rng.random((n, 4)), rng.integers(0, TAIL_POOL, (n, 4))
    tagged, documents = [], []
    for i in range(n):
        tags = {}
        for j in range(int(counts[i])):
            topic = main[i] if j < 2 else second[i]
            # a long tail of rarer tags, as real phrases have: distinct tags grow with n, then saturate
            word = vocab[topic][picks[i, j]] if tail_draw[i, j] >= TAIL_SHARE else tail[tail_pick[i, j]]
            tags.setdefault(word, Tag(tag=word, evidence=f"my {word} again"))
        uid = f"u{i:07d}"
        tagged.append(TaggedUser(user_id=uid, status="tagged", tags=list(tags.values())))
        documents.append(UserDocument(user_id=uid, comments=["I got " + " and ".join(tags) + " for home"], n_comments=1))
    return tagged, documents, main


def run_one(n: int, embedder: str, out_dir: Path, seed: int, consensus: int = 0, stability_runs: int = 0) -> dict:
    from tagger.schemas import NO_SEGMENT as NOISE
    from tagger.stages.clustering import Segmenter
    from tagger.stages.embedding import create_encoder, user_vectors
    from tagger.stages.naming import profile_segments
    from tagger.run.folder import RunFolder
    import pandas as pd

    from tagger.pipeline import user_table
    from tagger.stages.clustering import Placement
    from tagger.schemas import Segment

    sampler = PeakSampler()
    stages: dict[str, dict] = {}

    @contextmanager
    def stage(name: str):
        start_rss = sampler.reset()
        t0 = time.perf_counter()
        yield
        wall = time.perf_counter() - t0
        peak = max(sampler.peak, sampler.rss())
        stages[name] = {"wall_s": round(wall, 2), "peak_rss_mb": round(peak / 2**20), "start_rss_mb": round(start_rss / 2**20)}
        print(f"  n={n:>8} {name:<16} {wall:8.2f} s  peak {peak / 2**20:7.0f} MB", file=sys.stderr, flush=True)

    with stage("build users"):
        tagged, documents, _ = synthetic_users(n, seed)
    encoder = create_encoder(embedder)
    distinct = len({t.tag for u in tagged for t in u.tags})

    timing: dict[str, float] = {}

    class TimedSegmenter(Segmenter):
        def _reduce(self, vectors):
            t0 = time.perf_counter()
            reduced = super()._reduce(vectors)
            timing["reduce_s"] = time.perf_counter() - t0
            timing["reduce_peak_mb"] = max(sampler.peak, sampler.rss()) / 2**20
            return reduced

    class TimedEncoder:
        name = encoder.name

        def encode(self, texts):
            t0 = time.perf_counter()
            out = encoder.encode(texts)
            timing["embed_s"] = timing.get("embed_s", 0.0) + time.perf_counter() - t0
            return out

    with stage("user vectors"):
        vectors, has, tag_vectors = user_vectors(tagged, documents, TimedEncoder(), tag_weight=1.0)
    # Split the stage: the encoder's own time is 'embed distinct tags', the rest is vector building.
    both = stages.pop("user vectors")
    stages["embed tags"] = {**both, "wall_s": round(timing["embed_s"], 2)}
    stages["user vectors"] = {**both, "wall_s": round(both["wall_s"] - timing["embed_s"], 2)}
    with stage("cluster"):
        seg = TimedSegmenter(seed=seed, consensus=consensus).fit(vectors[has])
    if stability_runs >= 2:
        from tagger.lifecycle.stability import stability

        def refit(part, run_seed):
            return Segmenter(seed=run_seed, consensus=consensus).fit(part).labels_

        with stage("stability"):
            stability_summary, _ = stability(vectors[has], seg.labels_, refit, runs=stability_runs, seed=seed)
    labels = np.full(n, NOISE)
    labels[has] = seg.labels_
    strengths = np.zeros(n)
    strengths[has] = seg.strengths_
    assigned = np.full(n, "unsegmented", dtype=object)
    assigned[has] = seg.assigned_by_
    with stage("name input"):
        profiles = profile_segments(labels, strengths, seg.centroids_, tagged, documents)
    with stage("write"):
        segments = [Segment(segment_id=p.segment_id, name=f"segment {p.segment_id}", description="", size=p.size,
                            top_tags=p.top_tags, evidence=p.quotes, named_by="fallback") for p in profiles]
        users_table = user_table(documents, tagged, Placement(labels, strengths, assigned),
                                 {s.segment_id: s.name for s in segments}, "unsegmented")
        segments_table = pd.DataFrame([s.model_dump() for s in segments])
        folder = RunFolder(out_dir / f"run-{n}", force=True)
        folder.write_table("users", users_table)
        folder.write_table("segments", segments_table)
        folder.write_jsonl("tags.jsonl", [u.model_dump() for u in tagged])
        folder.commit()
    sampler.stop()
    return {
        "users": n, "distinct_tags": distinct, "segments": len(profiles),
        "min_segment_size": seg.min_segment_size_, "final_min_segment_size": seg.final_min_segment_size_,
        "fit_users": min(n, seg.max_consensus_users if consensus else seg.max_fit_users), "consensus": consensus,
        **({"stability_mean_ari": stability_summary["mean_ari"], "stability_runs": stability_runs} if stability_runs >= 2 else {}), "users_in_clusters": int((assigned == "cluster").sum()),
        "reduce_s_within_cluster": round(timing.get("reduce_s", 0.0), 2),
        "stages": stages, "total_s": round(sum(s["wall_s"] for s in stages.values()), 1),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values()),
    }


def ari_sample_vs_full(n: int, embedder: str, seed: int) -> dict:
    """Same vectors, same settings: fit on a 50k seeded sample + approximate_predict vs fit on all."""
    from sklearn.metrics import adjusted_rand_score

    from tagger.stages.clustering import Segmenter
    from tagger.stages.embedding import create_encoder, user_vectors

    tagged, documents, topic = synthetic_users(n, seed)
    vectors, has, _ = user_vectors(tagged, documents, create_encoder(embedder), tag_weight=1.0)
    vectors = vectors[has]
    out = {"users": n}
    fits = {}
    for name, cap in (("sample_fit", 50_000), ("full_fit", 10**9)):
        t0 = time.perf_counter()
        seg = Segmenter(seed=seed, consensus=0, max_fit_users=cap).fit(vectors)
        fits[name] = seg
        out[name] = {"wall_s": round(time.perf_counter() - t0, 1), "segments": int(seg.labels_.max() + 1),
                     "in_clusters": int((seg.assigned_by_ == "cluster").sum()),
                     "min_cluster_size_used": seg.final_min_segment_size_}
        print(f"  ARI run {name}: {out[name]}", file=sys.stderr, flush=True)
    a, b = fits["sample_fit"], fits["full_fit"]
    out["ari_final_labels"] = round(adjusted_rand_score(a.labels_, b.labels_), 4)
    both = (a.assigned_by_ == "cluster") & (b.assigned_by_ == "cluster")
    out["ari_on_users_clustered_by_both"] = round(adjusted_rand_score(a.labels_[both], b.labels_[both]), 4)
    out["users_clustered_by_both"] = int(both.sum())
    out["ari_sample_fit_vs_generating_topic"] = round(adjusted_rand_score(topic[has], a.labels_), 4)
    out["ari_full_fit_vs_generating_topic"] = round(adjusted_rand_score(topic[has], b.labels_), 4)
    return out


def comment_embedding_cost(embedder: str, sample: int, path: Path) -> dict:
    """Per-user cost of tag_weight<1: embedding every kept comment of real users."""
    from tagger.stages.data import Columns, build_documents, read_table
    from tagger.stages.embedding import create_encoder, encode_in_chunks

    docs = build_documents(read_table(path, Columns()), Columns())[:sample]
    comments = [c for d in docs for c in d.comments]
    encoder = create_encoder(embedder)
    encoder.encode(comments[:8])
    t0 = time.perf_counter()
    encode_in_chunks(encoder, comments)
    wall = time.perf_counter() - t0
    per_user = wall / len(docs)
    return {"file": f"{path.parent.name}/{path.name}", "users": len(docs), "comments": len(comments),
            "wall_s": round(wall, 2), "ms_per_user": round(per_user * 1000, 1), "comments_per_s": round(len(comments) / wall, 1),
            "extrapolated_1m_users_h_on_this_cpu": round(per_user * 1e6 / 3600, 1)}


def child(args) -> None:
    out_dir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        if args.what == "scale":
            result = run_one(args.n, args.embedder, out_dir, args.seed, args.consensus, args.stability)
        elif args.what == "ari":
            result = ari_sample_vs_full(args.n, args.embedder, args.seed)
        else:
            result = comment_embedding_cost(args.embedder, args.n, args.comments_from)
        import resource

        result["ru_maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    finally:
        import shutil

        shutil.rmtree(out_dir, ignore_errors=True)
    print("RESULT " + json.dumps(result))


def spawn(what: str, n: int, args) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--n", str(n), "--embedder", args.embedder, "--seed", str(args.seed),
           "--comments-from", str(args.comments_from),
           "--consensus", str(args.consensus), "--stability", str(args.stability)]
    print(f"[{what} n={n}]", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        return {"users": n, "error": f"exit {proc.returncode}", "process_wall_s": round(time.perf_counter() - t0, 1)}
    result = json.loads(line[7:])
    result["process_wall_s"] = round(time.perf_counter() - t0, 1)
    return result


def markdown(report: dict) -> str:
    runs = [r for r in report["scale"] if "stages" in r]
    names = list(runs[0]["stages"]) if runs else []
    lines = [f"# Non-LLM stages at scale ({report['machine']})", "",
             f"Command: `{report['command']}`  ", f"Embedder: {report['embedder']}; tags-only vectors (tag_weight=1).", "",
             "Wall time (s) / peak RSS of the process during the stage (MB):", "",
             "| stage | " + " | ".join(f"{r['users']:,} users" for r in runs) + " |",
             "|---|" + "---|" * len(runs)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{r['stages'][name]['wall_s']} s / {r['stages'][name]['peak_rss_mb']} MB" for r in runs) + " |")
    lines.append("| **total** | " + " | ".join(f"**{r['total_s']} s / {r['peak_rss_mb']} MB**" for r in runs) + " |")
    lines.append("| distinct tags | " + " | ".join(f"{r['distinct_tags']:,}" for r in runs) + " |")
    lines.append("| segments | " + " | ".join(str(r["segments"]) for r in runs) + " |")
    lines.append("| consensus fits | " + " | ".join(str(r.get("consensus", 0)) for r in runs) + " |")
    if any("stability_mean_ari" in r for r in runs):
        lines.append("| stability mean ARI | " + " | ".join(str(r.get("stability_mean_ari", "")) for r in runs) + " |")
    lines.append("| HDBSCAN fit on | " + " | ".join(f"{r['fit_users']:,}" for r in runs) + " |")
    lines.append("| reduce (PCA) inside cluster | " + " | ".join(f"{r['reduce_s_within_cluster']} s" for r in runs) + " |")
    if len(runs) >= 2:
        a, b = runs[0], runs[-1]
        lines += ["", f"Growth {a['users']:,} → {b['users']:,} users (×{b['users'] // a['users']}): total time ×"
                  f"{b['total_s'] / max(a['total_s'], 1e-9):.1f}, peak memory ×{b['peak_rss_mb'] / max(a['peak_rss_mb'], 1):.1f}."]
    if report.get("ari"):
        r = report["ari"]
        lines += ["", f"## HDBSCAN sample-fit (50k + approximate_predict) vs full fit, {r['users']:,} users", "",
                  "| | wall | segments | users in clusters |", "|---|---|---|---|",
                  *(f"| {k} | {r[k]['wall_s']} s | {r[k]['segments']} | {r[k]['in_clusters']:,} |" for k in ("sample_fit", "full_fit")), "",
                  f"ARI between the two (final labels, noise assigned to nearest): **{r['ari_final_labels']}**; "
                  f"on the {r['users_clustered_by_both']:,} users both put in a cluster: {r['ari_on_users_clustered_by_both']}. "
                  f"ARI vs the synthetic generating topic: sample-fit {r['ari_sample_fit_vs_generating_topic']}, "
                  f"full fit {r['ari_full_fit_vs_generating_topic']}."]
    if report.get("comments"):
        c = report["comments"]
        lines += ["", f"## Comment embeddings (tag_weight < 1), real comments ({c.get('file', 'Amazon dev set')})", "",
                  f"{c['comments']} comments of {c['users']} users in {c['wall_s']} s: {c['ms_per_user']} ms per user "
                  f"({c['comments_per_s']} comments/s) → about {c['extrapolated_1m_users_h_on_this_cpu']} h for 1M users on "
                  "this CPU (extrapolated, linear; a GPU or more cores divide it)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--ari-at", type=int, default=100_000, help="0 to skip")
    parser.add_argument("--comment-sample", type=int, default=200, help="real users whose comments are embedded; 0 to skip")
    parser.add_argument("--comments-from", type=Path, default=ROOT / "eval" / "data" / "amazon-sample.csv",
                        help="labeled CSV whose real comments are embedded, e.g. ../shared/data/amazon-2023/reviews.csv "
                             "[eval/data/amazon-sample.csv]")
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_scale")
    parser.add_argument("--consensus", type=int, help="Segmenter consensus fits [the pipeline default]")
    parser.add_argument("--stability", type=int, default=0, help="also time N stability runs (90 %% samples) per size; 0 to skip")
    parser.add_argument("--child", choices=["scale", "ari", "comments"])
    parser.add_argument("--n", type=int)
    args = parser.parse_args()
    if args.consensus is None:
        sys.path.insert(0, str(ROOT / "src"))
        from tagger.config import RunConfig

        args.consensus = RunConfig().consensus
    if args.child:
        sys.path.insert(0, str(ROOT / "src"))
        child(argparse.Namespace(what=args.child, n=args.n, embedder=args.embedder, seed=args.seed,
                                 comments_from=args.comments_from,
                                 consensus=args.consensus, stability=args.stability))
        return
    report = {"command": " ".join(["python", "eval/bench_scale.py", *sys.argv[1:]]), "embedder": args.embedder,
              "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, shared with other jobs",
              "scale": [spawn("scale", n, args) for n in args.sizes]}
    if args.ari_at:
        report["ari"] = spawn("ari", args.ari_at, args)
    if args.comment_sample:
        report["comments"] = spawn("comments", args.comment_sample, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
