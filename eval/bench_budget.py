"""The agreement curve: LLM budget (`--llm-users`) against agreement with the run that reads everyone,
against quality.

    python eval/bench_budget.py ../shared/data/newsgroups-dev/posts.csv \
        ../shared/data/amazon-2023/reviews.csv ../shared/data/zh-shopping/reviews.csv \
        --budgets 0.1 0.25 0.5 0.75 --engine cached

Per file: the run that tags everyone (`--llm-users all`), the same with another seed (how far two
full runs agree at all: the ceiling of any agreement below), and one run per budget (a share of
the users). For each budgeted run: ARI of its segments with the full run's; NMI and ARI against
the truth (`category`, scoring only); the placer agreement the run printed (cross-validated on the
read sample); and the agreement measured on the users it placed: each distilled user's full
vector (their tags from the cache, as the full run read them) joined to the segment nearest it,
against the segment the placer gave them. `--engine cached` answers only from TAGGER_HOME's cache
of an earlier real run (`python -m eval ... --engine vllm`): sampled users' tags are cache hits,
and names the cache lacks fall back to the segments' phrases (names do not enter these scores).
Writes eval/results/<--name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from eval.harness import CacheOnlyEngine, CachedEncoder, dataset_names  # noqa: E402
from eval.metrics import true_segments  # noqa: E402


def one_run(frame: pd.DataFrame, config, engine, encoder):
    """The pipeline's own objects for one run (no folder): documents, tags, segments, placer."""
    from tagger.pipeline import Prepared, documents_from_frame, run_pipeline
    from tagger.progress import Reporter
    from tagger.run.context import RunContext

    documents, load_stats = documents_from_frame(frame, config)
    with RunContext(config, Reporter(), engine=engine) as ctx:
        started = time.perf_counter()
        run = run_pipeline(documents, load_stats, config, Prepared.from_config(config), ctx, encoder)
        run.seconds = time.perf_counter() - started
    return run


def measured_agreement(budgeted, full, encoder) -> float | None:
    """Share of the distilled users whose full vector (tags as the full run read them, text and
    phrases) is nearest the centroid of the segment the placer gave them."""
    from tagger.stages.embedding import blend_tags, text_vectors
    from tagger.vectors import unit_rows

    config, seg = budgeted.config, budgeted.segmentation
    rows = np.flatnonzero(seg.assigned_by_ == "distilled")
    if not len(rows):
        return None
    documents = [budgeted.documents[i] for i in rows]
    tagged = [full.tagged[i] for i in rows]  # the same users in the same order (same loader)
    text = text_vectors(documents, encoder, whole_document=config.whole_document, item_weight=config.item_weight)
    vectors, has, _ = blend_tags(tagged, documents, text, encoder, tag_weight=config.tag_weight)
    if budgeted.lexical is not None:
        phrases = budgeted.corpus.phrases(budgeted.lexical.items)
        vectors = budgeted.lexical.join(vectors, [phrases[i] for i in rows])
    nearest = np.argmax(unit_rows(vectors) @ np.asarray(seg.centroids_, np.float32).T, axis=1)
    return float((nearest[has] == seg.labels_[rows][has]).mean())


def scores(labels: np.ndarray, truth: np.ndarray, reference: np.ndarray | None = None) -> dict:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    out = {"nmi": round(float(normalized_mutual_info_score(truth, labels)), 4),
           "ari": round(float(adjusted_rand_score(truth, labels)), 4), "segments": int(labels.max()) + 1}
    if reference is not None:
        out["ari_to_full"] = round(float(adjusted_rand_score(reference, labels)), 4)
    return out


def evaluate(path: Path, name: str, budgets: list[float], engine, engine_name: str, seed: int, log) -> dict:
    from tagger.config import make_config
    from tagger.paths import tagger_home
    from tagger.stages.embedding import create_encoder

    frame = pd.read_csv(path, dtype={"user_id": str})
    truth_by_user = true_segments(frame)
    item_col = "product" if "product" in frame else None
    columns = ["user_id", "text"] + ([item_col] if item_col else [])
    config = make_config(engine=engine_name, item_col=item_col, seed=seed, llm_users="all")
    encoder = CachedEncoder(create_encoder(config.embedder, frame["text"].astype(str).tolist()),
                            tagger_home() / "eval-embeddings")
    full = one_run(frame[columns], config, engine, encoder)
    truth = truth_by_user.loc[[d.user_id for d in full.documents]].to_numpy()
    reference = full.segmentation.labels_
    users = len(full.documents)
    rows = [{"budget": "all", "llm_users": users, **scores(reference, truth, reference),
             "printed_agreement": full.distilled.agreement.overall if full.distilled and full.distilled.agreement else None,
             "seconds": round(full.seconds, 1)}]
    log(f"  all ({users}): NMI {rows[0]['nmi']:.3f} ARI {rows[0]['ari']:.3f}, {rows[0]['segments']} segments")
    other = one_run(frame[columns], config.model_copy(update={"seed": seed + 1}), engine, encoder)
    rows.append({"budget": "all, seed+1", "llm_users": users,
                 **scores(other.segmentation.labels_, truth, reference), "seconds": round(other.seconds, 1)})
    log(f"  all, seed {seed + 1}: ARI to full {rows[-1]['ari_to_full']:.3f}")
    for share in budgets:
        n = max(1, round(share * users))
        run = one_run(frame[columns], config.model_copy(update={"llm_users": n}), engine, encoder)
        agreement = run.distilled.agreement if run.distilled else None
        row = {"budget": f"{share:.0%}", "llm_users": n, **scores(run.segmentation.labels_, truth, reference),
               "printed_agreement": round(agreement.overall, 4) if agreement else None,
               "printed_placed_estimate": round(agreement.placed, 4) if agreement and agreement.placed else None,
               "measured_agreement": measured_agreement(run, full, encoder),
               "distilled": int((run.segmentation.assigned_by_ == "distilled").sum()),
               "seconds": round(run.seconds, 1)}
        if row["measured_agreement"] is not None:
            row["measured_agreement"] = round(row["measured_agreement"], 4)
        rows.append(row)
        log(f"  {row['budget']} ({n}): ARI to full {row['ari_to_full']:.3f}, NMI {row['nmi']:.3f} ARI {row['ari']:.3f}, "
            f"agreement printed {row['printed_agreement']} ({row['printed_placed_estimate']} above the cut) "
            f"measured {row['measured_agreement']}")
    encoder.save()
    return {"dataset": str(path), "name": name, "users": users, "categories": len(set(truth.tolist())), "rows": rows}


def markdown(report: dict) -> str:
    lines = [f"# LLM budget: agreement with the full run, and quality ({report['machine']})", "",
             f"Command: `{report['command']}`", ""]
    for result in report["results"]:
        lines += [f"## {result['name']} ({result['users']} users, {result['categories']} categories)", "",
                  "| LLM reads | users | ARI to full run | NMI | ARI | segments | agreement printed (cross-validated) "
                  "| printed, users above the least-sure cut | measured on the distilled users | seconds |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in result["rows"]:
            lines.append(f"| {r['budget']} | {r['llm_users']} | {r['ari_to_full']:.3f} | {r['nmi']:.3f} | {r['ari']:.3f} "
                         f"| {r['segments']} | {_cell(r.get('printed_agreement'))} "
                         f"| {_cell(r.get('printed_placed_estimate'))} | {_cell(r.get('measured_agreement'))} "
                         f"| {r['seconds']} |")
        lines.append("")
    return "\n".join(lines)


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--budgets", type=float, nargs="+", default=[0.1, 0.25, 0.5, 0.75])
    p.add_argument("--engine", default="cached", choices=("cached", "vllm", "fake"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "eval" / "results")
    p.add_argument("--name", default="bench_budget")
    args = p.parse_args(argv)
    from tagger.llm.base import create_engine
    from tagger.llm.models import resolve_model

    if args.engine == "fake":
        engine, engine_name = create_engine("fake", model="fake"), "fake"
    elif args.engine == "cached":
        engine, engine_name = CacheOnlyEngine(str(resolve_model("embedded"))), "vllm"
    else:
        engine, engine_name = create_engine("vllm", model=resolve_model("embedded"), seed=args.seed), "vllm"
    try:
        results = []
        for path, name in zip(args.files, dataset_names(args.files), strict=True):
            print(f"{name} ({path}):", flush=True)
            results.append(evaluate(path, name, args.budgets, engine, engine_name, args.seed, print))
    finally:
        engine.close()
    report = {"command": " ".join(["python", "eval/bench_budget.py", *(argv or sys.argv[1:])]),
              "machine": f"{platform.machine()}, Python {platform.python_version()}", "engine": args.engine,
              "uncached_requests": getattr(engine, "misses", None), "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
