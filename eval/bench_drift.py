"""Does `tagger drift` report only real change, and do `--like` runs keep their segments' ids?
Measured on saved runs (real engine), no tagging or embedding: each sample run re-fits its own
phrase space and clustering on the saved users' vectors, as `tagger segment` would on those users
(with `--candidates-from` the same users get the same tags), and is written as a run folder that
`tagger drift` reads.

Per set, `--pairs` pairs of seeded 90 % user samples A and B:

- **null**: OLD = A, NEW = B, the same people: drift should report no segment moved, new or vanished;
- **vanished**: NEW = B without one true group G (5–15 % share, one OLD holds apart: the OLD
  segment holding most of G is at least PURE G): that segment should be reported vanished;
- **new**: OLD = A without a held-back group H (5–15 %, one NEW holds apart): the NEW segment
  holding most of H should be reported new;
- **moved**: NEW = B plus copies of users of a group S (5–15 %, held apart by OLD; new ids, the
  same vectors and phrases: more people like them) until S's share rises by 5 points: the OLD
  segment holding most of S should be reported moved;
- **like**: NEW = B segmented `--like` OLD = A: of the users in both samples whose NEW segment
  continues an OLD one, the share that keeps their segment's id and name.

    python -m eval.bench_drift RUN=DATA [RUN=DATA ...] [--pairs 10] [--name bench_drift] [--results DIR]

RUN is a `tagger segment` run of DATA (real engine). Writes eval/results/<name>.{json,md}.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # so `python eval/bench_drift.py` finds the eval package, as `python -m eval.bench_drift` does

from eval.results_io import RESULTS, pairs_parser, users_truth, write_results  # noqa: E402
from tagger.config import RunConfig  # noqa: E402
from tagger.lifecycle.drift import drift  # noqa: E402
from tagger.lifecycle.like import continue_run  # noqa: E402
from tagger.lifecycle.recut_data import load_recut_data, save_recut_data  # noqa: E402
from tagger.lifecycle.segment_model import MODEL_DIR, build_model, load_model, save_model  # noqa: E402
from tagger.pipeline import segmenter_for  # noqa: E402
from tagger.schemas import Segment  # noqa: E402
from tagger.stages.lexical import LexicalSpace, semantic_part  # noqa: E402
from tagger.stages.naming import NamingCorpus  # noqa: E402

SAMPLE = 0.9
GROUP_SHARE = (0.05, 0.15)
PURE = 0.75
SHIFT = 0.05


@dataclass
class Saved:
    """A saved run as the benchmark samples it."""

    user_ids: np.ndarray
    semantic: np.ndarray
    corpus: NamingCorpus
    usable: np.ndarray
    truth: np.ndarray
    labels: np.ndarray  # the full run's leaves
    config: RunConfig
    embedder: str

    @classmethod
    def load(cls, run: Path, data: Path) -> Saved:
        users = pd.read_parquet(run / "users.parquet")
        model, recut = load_model(run), load_recut_data(run, len(users))
        config = RunConfig(**{k: v for k, v in json.loads((run / "run.json").read_text())["config"].items()
                              if k in RunConfig.model_fields})
        return cls(users["user_id"].astype(str).to_numpy(), semantic_part(recut.vectors, model.semantic_dims),
                   recut.corpus, recut.assigned_by != "unsegmented", users_truth(users["user_id"], data),
                   users["segment_id"].to_numpy(), config, str(model.manifest.embedder))

    def held_apart(self, rows: np.ndarray, folder: Path) -> list[str]:
        """Groups with a 5-15 % share of the users `rows` that the run in FOLDER holds apart: the
        segment holding most of the group is at least PURE the group (a group sharing a segment
        with a near neighbour, such as Amazon's All_Beauty with Beauty_and_Personal_Care, leaves a
        smaller segment when it goes, not none)."""
        return sorted(g for g in pd.Series(self.truth[rows]).value_counts(normalize=True).loc[
            lambda s: (s >= GROUP_SHARE[0]) & (s <= GROUP_SHARE[1])].index if majority_segments(self, rows, folder, g))


def corpus_rows(corpus: NamingCorpus, rows: np.ndarray) -> NamingCorpus:
    return NamingCorpus([corpus.terms[i] for i in rows], [corpus.items[i] for i in rows],
                        [corpus.item_terms[i] for i in rows], corpus.verbs)


def sample_run(saved: Saved, rows: np.ndarray, folder: Path, seed: int):
    """A run folder of the users `rows` (indices into `saved`): its own phrase space and clustering."""
    config = saved.config.model_copy(update={"seed": seed})
    rows = np.sort(rows)
    corpus, semantic, usable = corpus_rows(saved.corpus, rows), saved.semantic[rows], saved.usable[rows]
    # a row given more than once is a copy: another user who wrote the same
    copy = pd.Series(rows).groupby(rows).cumcount().to_numpy()
    user_ids = np.array([u if c == 0 else f"{u}~copy{c}" for u, c in zip(saved.user_ids[rows], copy, strict=True)])
    items = bool(config.item_col and config.item_weight)
    space = LexicalSpace.fit([p for p, ok in zip(corpus.phrases(items), usable, strict=True) if ok],
                             dims=config.lexical_dims, weight=config.lexical_weight, seed=seed, items=items) \
        if config.lexical_weight else None
    vectors = space.join(semantic, corpus.phrases(items)) if space is not None else semantic
    segmentation = segmenter_for(config).fit(vectors, usable)
    k = len(segmentation.centroids_)
    segments, base = [], 0
    for level in range(len(segmentation.tree_parents_) + 1):
        labels, centroids, _ = segmentation.level_centroids(vectors, level)
        up = segmentation.tree_parents_[level] if level < len(segmentation.tree_parents_) else None
        for row in range(len(centroids)):
            segments.append(Segment(segment_id=base + row, name=f"segment {base + row}", description="",
                                    size=int((labels == row).sum()), top_tags=[], level=level,
                                    parent_id=base + len(centroids) + int(up[row]) if up is not None else -1))
        base += len(centroids)
    parents = [{"segment_id": s.segment_id, "name": s.name, "size": s.size, "level": s.level, "parent_id": s.parent_id}
               for s in segments if s.level > 0]
    centroids = [segmentation.level_centroids(vectors, level)[1] for level in range(1, len(segmentation.tree_parents_) + 1)]
    model = build_model(segmentation, names={s.segment_id: s.name for s in segments}, extractor=None,
                        manifest={"embedder": saved.embedder}, parents=parents,
                        parent_centroids=np.vstack(centroids) if centroids else None, lexical=space)
    save_model(model, folder / MODEL_DIR)
    save_recut_data(folder / MODEL_DIR, segmentation, vectors, corpus)
    pd.DataFrame({"user_id": user_ids, "segment_id": segmentation.labels_,
                  "assigned_by": segmentation.assigned_by_}).to_parquet(folder / "users.parquet", index=False)
    assert k == sum(s.level == 0 for s in segments)
    return SimpleNamespace(user_ids=user_ids, vectors=vectors, lexical=space, corpus=corpus, segmentation=segmentation, segments=segments,
                           profiles=[], ids={}, encoder=SimpleNamespace(name=saved.embedder, encode=None),
                           config=config, rows=rows)


def majority_segments(saved: Saved, rows: np.ndarray, folder: Path, group: str) -> set[int]:
    """The run's leaf (in FOLDER, made of the users `rows`) holding most of `group`'s users, when it
    is at least PURE the group (a group the run holds apart); else none."""
    users = pd.read_parquet(folder / "users.parquet")
    truth = pd.Series(saved.truth[np.sort(rows)])
    if (truth == group).sum() == 0:
        return set()
    leaves = users["segment_id"]
    held = leaves[(truth == group) & (leaves >= 0)]
    if held.empty:
        return set()
    top = int(held.value_counts().index[0])
    return {top} if (truth[leaves == top] == group).mean() >= PURE else set()


def changes(report: dict) -> dict:
    return {"moved": len(report["moved"]), "new": len(report["new"]), "vanished": len(report["vanished"])}


def like_rate(saved: Saved, old: Path, new) -> dict:
    """Of the users in both samples whose NEW leaf continues an OLD leaf: the share keeping its id and name."""
    carried = continue_run(new, old)
    old_users = pd.read_parquet(old / "users.parquet").set_index("user_id")["segment_id"]
    old_names = {int(s["segment_id"]): s["name"] for s in json.loads((old / MODEL_DIR / "segments.json").read_text())}
    new_ids = pd.Series([new.ids.get(int(x), -1) if x >= 0 else -1 for x in new.segmentation.labels_],
                        index=new.user_ids)
    new_names = {s.segment_id: s.name for s in new.segments}
    matched = {m.segment_id for m in carried.lineage.matched if m.level == 0}
    both = new_ids.index.intersection(old_users.index)
    kept = [u for u in both if new_ids[u] in matched]
    same = [u for u in kept if new_ids[u] == old_users[u] and new_names[new_ids[u]] == old_names.get(int(old_users[u]))]
    leaves = sum(s.level == 0 for s in new.segments)
    return {"users": len(kept), "same": len(same), "shared_users": len(both), "matched_leaves": len(matched),
            "new_leaves": leaves}


def bench_set(name: str, run: Path, data: Path, pairs: int, work: Path) -> dict:
    saved = Saved.load(run, data)
    n = len(saved.user_ids)
    print(f"{name}: {n} users", flush=True)
    rows = []
    for k in range(pairs):
        started = time.perf_counter()
        a = np.random.default_rng(1000 + k).choice(n, round(n * SAMPLE), replace=False)
        b = np.random.default_rng(2000 + k).choice(n, round(n * SAMPLE), replace=False)
        folder = work / name / str(k)
        runs = {}

        def make(key, users, seed):
            runs[key] = sample_run(saved, users, folder / key, seed)
            return folder / key

        old, new = make("old", a, 2 * k), make("new", b, 2 * k + 1)
        report = drift(old, new)
        row = {"pair": k, "null": changes(report),
               "null_parents": changes(report.get("parents", {"moved": [], "new": [], "vanished": []}))}
        row["like"] = like_rate(saved, old, runs["new"])
        apart_old, apart_new = saved.held_apart(a, old), saved.held_apart(b, new)
        row["held_apart"] = {"old": apart_old, "new": apart_new}
        if apart_old:
            group = apart_old[k % len(apart_old)]
            report = drift(old, make("new-without", b[saved.truth[b] != group], 2 * k + 1))
            expected = majority_segments(saved, a, old, group)
            found = {v["segment_id"] for v in report["vanished"]}
            row["vanished"] = {"group": group, "expected": sorted(expected), "reported": sorted(found),
                               "found": expected <= found, "other": changes(report)}
            group = apart_old[(k + 1) % len(apart_old)]
            members = b[saved.truth[b] == group]
            share = len(members) / len(b)
            copies = int(np.ceil(SHIFT * len(b) / (1 - share - SHIFT)))  # (m + c) / (n + c) = share + SHIFT
            shifted = np.concatenate([b, np.random.default_rng(3000 + k).choice(members, copies)])
            report = drift(old, make("new-shifted", shifted, 2 * k + 1))
            expected = majority_segments(saved, a, old, group)
            moved = set(report["moved"])
            row["moved"] = {"group": group, "share": round(share, 4),
                            "new_share": round(float((saved.truth[shifted] == group).mean()), 4),
                            "expected": sorted(expected), "reported": sorted(moved),
                            "found": expected <= moved, "other": changes(report)}
        if apart_new:
            held = apart_new[k % len(apart_new)]
            report = drift(make("old-without", a[saved.truth[a] != held], 2 * k), new)
            wanted = majority_segments(saved, b, new, held)
            reported = {s["segment_id"] for s in report["new"]}
            row["new"] = {"group": held, "expected": sorted(wanted), "reported": sorted(reported),
                          "found": wanted <= reported, "other": changes(report)}
        row["seconds"] = round(time.perf_counter() - started, 1)
        print(name, json.dumps(row, ensure_ascii=False), flush=True)
        rows.append(row)
    return {"users": n, "pairs": rows, "summary": summarise(rows)}


def summarise(rows: list[dict]) -> dict:
    def found(key):
        done = [r[key]["found"] for r in rows if key in r]  # pairs where the run held a group apart
        return f"{sum(done)}/{len(done)}"

    like = [r["like"] for r in rows]
    return {
        "null_pairs_clean": f"{sum(not any(r['null'].values()) for r in rows)}/{len(rows)}",
        "null_changes": {k: sum(r["null"][k] for r in rows) for k in ("moved", "new", "vanished")},
        "null_parent_changes": {k: sum(r["null_parents"][k] for r in rows) for k in ("moved", "new", "vanished")},
        "vanished_found": found("vanished"), "new_found": found("new"), "moved_found": found("moved"),
        "like_same": round(sum(x["same"] for x in like) / max(sum(x["users"] for x in like), 1), 4),
        "like_users": f"{sum(x['users'] for x in like)}/{sum(x['shared_users'] for x in like)}",
        "like_leaves": f"{sum(x['matched_leaves'] for x in like)}/{sum(x['new_leaves'] for x in like)}",
    }


def markdown(results: dict) -> str:
    lines = ["| set | users | null pairs with no change | false moved / new / vanished (leaves; parents) | "
             "vanished found | new found | moved found | --like: same id and name (users in matched leaves; leaves matched) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        s = result["summary"]
        null, parents = s["null_changes"], s["null_parent_changes"]
        lines.append(f"| {name} | {result['users']} | {s['null_pairs_clean']} | {null['moved']} / {null['new']} / "
                     f"{null['vanished']}; {parents['moved']} / {parents['new']} / {parents['vanished']} | "
                     f"{s['vanished_found']} | {s['new_found']} | {s['moved_found']} | "
                     f"{s['like_same']:.1%} ({s['like_users']}; {s['like_leaves']}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = pairs_parser(__doc__, "bench_drift")
    parser.add_argument("--pairs", type=int, default=10, dest="sample_pairs", help="sample pairs per set [10]")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder to write the results into [eval/results]")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as work:
        # sets are named by their run folders (the demo's data file sits in eval/data)
        results = {Path(run).name: bench_set(Path(run).name, Path(run), Path(data), args.sample_pairs, Path(work))
                   for run, _, data in (pair.partition("=") for pair in args.pairs)}
    write_results(args.results, args.name, results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
