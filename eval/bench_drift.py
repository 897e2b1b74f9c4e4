"""Does `tagger drift` report only real change, and do `--like` runs keep their segments' ids?
Measured on saved runs (real engine), no tagging or embedding: each sample run re-fits its own
phrase space and clustering on the saved users' vectors, as `tagger segment` would on those users
(with `--candidates-from` the same users get the same tags), and is written as a run folder that
`tagger drift` reads.

Per set, `--pairs` pairs of seeded 90 % user samples A and B:

- **null**: OLD = A, NEW = B, the same people: drift should report no segment moved, new or vanished;
- **vanished**: NEW = B without one true group G (5–15 % share; one the full run holds in a
  segment of its own): the OLD segment holding most of G (when G makes most of it) should be
  reported vanished;
- **new**: OLD = A without a held-back group H, NEW = B (H included): the NEW segment holding most
  of H (when H makes most of it) should be reported new;
- **moved**: NEW = B with users of other groups dropped (at random) until the share of a group S
  (5-15 %, held apart) rises by 5 points: the OLD segment holding most of S should be reported moved;
- **like**: NEW = B segmented `--like` OLD = A: of the users in both samples whose NEW segment
  continues an OLD one, the share that keeps their segment's id and name.

    python -m eval.bench_drift RUN=DATA [RUN=DATA ...] [--pairs 10] [--name bench_drift] [--results DIR]

RUN is a `tagger segment` run of DATA (real engine). Writes eval/results/<name>.{json,md}.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from eval.lexical_sweep import RESULTS, each_pair, pairs_parser, users_truth, write_results
from tagger.config import RunConfig
from tagger.lifecycle.drift import drift
from tagger.lifecycle.like import continue_run
from tagger.lifecycle.recut_data import load_recut_data, save_recut_data
from tagger.lifecycle.segment_model import MODEL_DIR, build_model, load_model, save_model
from tagger.pipeline import segmenter_for
from tagger.schemas import Segment
from tagger.stages.lexical import LexicalSpace, semantic_part
from tagger.stages.naming import NamingCorpus

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

    def isolated_groups(self, low: float, high: float) -> list[str]:
        """Groups with a share in [low, high] that the full run holds apart: in a segment they make
        at least PURE of (removing a group from a segment it shares with a near neighbour, such as
        Amazon's All_Beauty with Beauty_and_Personal_Care, leaves a smaller segment, not none)."""
        truth = pd.Series(self.truth[self.usable])
        shares = truth.value_counts(normalize=True)
        out = []
        for group, share in shares.sort_index().items():
            if not low <= share <= high:
                continue
            leaves = pd.Series(self.labels[self.usable])
            majority = [s for s in leaves.unique() if (truth[leaves == s] == group).mean() >= PURE]
            if majority:
                out.append(str(group))
        return out


def corpus_rows(corpus: NamingCorpus, rows: np.ndarray) -> NamingCorpus:
    return NamingCorpus([corpus.terms[i] for i in rows], [corpus.items[i] for i in rows],
                        [corpus.item_terms[i] for i in rows], corpus.verbs)


def sample_run(saved: Saved, rows: np.ndarray, folder: Path, seed: int):
    """A run folder of the users `rows` (indices into `saved`): its own phrase space and clustering."""
    config = saved.config.model_copy(update={"seed": seed})
    rows = np.sort(rows)
    corpus, semantic, usable = corpus_rows(saved.corpus, rows), saved.semantic[rows], saved.usable[rows]
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
    pd.DataFrame({"user_id": saved.user_ids[rows], "segment_id": segmentation.labels_,
                  "assigned_by": segmentation.assigned_by_}).to_parquet(folder / "users.parquet", index=False)
    assert k == sum(s.level == 0 for s in segments)
    return SimpleNamespace(vectors=vectors, lexical=space, corpus=corpus, segmentation=segmentation, segments=segments,
                           profiles=[], ids={}, encoder=SimpleNamespace(name=saved.embedder, encode=None),
                           config=config, rows=rows)


def majority_segments(saved: Saved, rows: np.ndarray, folder: Path, group: str) -> set[int]:
    """The run's leaf (in FOLDER) holding most of `group`'s users, when the group makes most of it
    (a group the run holds apart); else none."""
    users = pd.read_parquet(folder / "users.parquet")
    truth = pd.Series(saved.truth[np.sort(rows)])
    leaves = users["segment_id"]
    held = leaves[(truth == group) & (leaves >= 0)]
    if held.empty:
        return set()
    top = int(held.value_counts().index[0])
    return {top} if (truth[leaves == top] == group).mean() > 0.5 else set()


def changes(report: dict) -> dict:
    return {"moved": len(report["moved"]), "new": len(report["new"]), "vanished": len(report["vanished"])}


def like_rate(saved: Saved, old: Path, new) -> dict:
    """Of the users in both samples whose NEW leaf continues an OLD leaf: the share keeping its id and name."""
    carried = continue_run(new, old)
    old_users = pd.read_parquet(old / "users.parquet").set_index("user_id")["segment_id"]
    old_names = {int(s["segment_id"]): s["name"] for s in json.loads((old / MODEL_DIR / "segments.json").read_text())}
    new_ids = pd.Series([new.ids.get(int(x), -1) if x >= 0 else -1 for x in new.segmentation.labels_],
                        index=saved.user_ids[new.rows])
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
    everyone = np.arange(n)
    isolated = saved.isolated_groups(*GROUP_SHARE)
    print(f"{name}: {n} users; groups held apart (5-15 %): {isolated}", flush=True)
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
        row = {"pair": k, "null": changes(drift(old, new)),
               "null_parents": changes(drift(old, new).get("parents", {"moved": [], "new": [], "vanished": []}))}
        row["like"] = like_rate(saved, old, runs["new"])
        group = isolated[k % len(isolated)] if isolated else None
        if group is not None:
            without = make("new-without", b[saved.truth[b] != group], 2 * k + 1)
            report = drift(old, without)
            expected = majority_segments(saved, a, old, group)
            found = {v["segment_id"] for v in report["vanished"]}
            row["vanished"] = {"group": group, "expected": sorted(expected), "reported": sorted(found),
                               "found": bool(expected) and expected <= found, "other": changes(report)}
            held = isolated[(k + 1) % len(isolated)]
            old_without = make("old-without", a[saved.truth[a] != held], 2 * k)
            report = drift(old_without, new)
            wanted = majority_segments(saved, b, new, held)
            reported = {s["segment_id"] for s in report["new"]}
            row["new"] = {"group": held, "expected": sorted(wanted), "reported": sorted(reported),
                          "found": bool(wanted & reported), "other": changes(report)}
        if isolated:
            group = isolated[(k + 2) % len(isolated)]
            members, others = b[saved.truth[b] == group], b[saved.truth[b] != group]
            share = len(members) / len(b)
            # m / (n - r) >= share + SHIFT
            drop = int(np.ceil(len(b) - len(members) / (share + SHIFT)))
            keep = np.concatenate([members, np.random.default_rng(3000 + k).choice(others, len(others) - drop,
                                                                                 replace=False)])
            report = drift(old, make("new-shifted", keep, 2 * k + 1))
            expected = majority_segments(saved, a, old, group)
            moved = {m for m in report["moved"]}
            row["moved"] = {"group": group, "share": round(share, 4),
                            "new_share": round(float((saved.truth[keep] == group).mean()), 4),
                            "expected": sorted(expected), "reported": sorted(moved),
                            "found": bool(expected) and expected <= moved, "other": changes(report)}
        row["seconds"] = round(time.perf_counter() - started, 1)
        print(name, json.dumps(row), flush=True)
        rows.append(row)
    return {"users": n, "groups": isolated, "pairs": rows,
            "summary": summarise(rows)}


def summarise(rows: list[dict]) -> dict:
    def found(key):
        done = [r[key]["found"] for r in rows if key in r]
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
        results = {name: bench_set(name, run, data, args.sample_pairs, Path(work))
                   for name, run, data in each_pair(args.pairs)}
    write_results(args.results, args.name, results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
