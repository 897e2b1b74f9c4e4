"""How the taxonomy's grounding thresholds were chosen (stages/naming.py GROUNDING, GROUNDING_TEXT).

    python -m eval ../shared/data/newsgroups-dev/posts.csv ../shared/data/amazon-2023/reviews.csv  # caches the answers
    python -m eval.calibrate_naming ../shared/data/newsgroups-dev/posts.csv ../shared/data/amazon-2023/reviews.csv

Each English dev set is segmented as `python -m eval` does (only cached LLM answers). For every
segment and every taxonomy node whose name and meaning point at it (positive margins, the other
half of the rule), the node counts as *related* when the strict judge (eval/groups.toml) puts
the node's audience name at the segment's majority group. For each threshold on the node's best
cosine to the segment's phrases (and, for the second table, or to its centroid) the table gives
how many nodes would be offered, the share of them related (precision), the share of related
nodes offered (recall) and F1; the thresholds are the F1 peak. A third table tries a rule not
adopted: a phrase grounds a node only when the centroid is also within a lower cosine of it.
Written to eval/results/naming-calibration.md.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from eval.harness import RESULTS, CachedEncoder, CacheOnlyEngine
from eval.metrics import _equivalents, _pool, _sections, _dataset, load_groups, true_segments


def pairs(path: Path, engine) -> list[tuple[float, float, bool]]:
    """(best cosine to a phrase, cosine to the centroid, related) per pointing (segment, node)."""
    import tagger.pipeline as pipeline
    from tagger.config import make_config
    from tagger.paths import tagger_home
    from tagger.run.segment import segment
    from tagger.stages.embedding import create_encoder
    from tagger.stages.taxonomy import load_taxonomy
    from tagger.vectors import unit_rows

    frame = pd.read_csv(path, dtype={"user_id": str})
    config = make_config(engine="vllm", item_col="product" if "product" in frame else None)
    columns = ["user_id", "text"] + ([config.item_col] if config.item_col else [])
    encoder = CachedEncoder(create_encoder(config.embedder, frame["text"].astype(str).tolist()),
                            tagger_home() / "eval-embeddings")
    seen: dict = {}
    ranked = pipeline.rank_options

    def capture(profiles, centroids, *args, **kwargs):
        if not seen:  # the leaves: levels above are ranked after them, with ids shifted on return
            seen.update(profiles=profiles, centroids=centroids)
        return ranked(profiles, centroids, *args, **kwargs)

    pipeline.rank_options = capture
    try:
        result = segment(frame[columns], config, engine=engine, encoder=encoder)
    finally:
        pipeline.rank_options = ranked
    labels = result.users["segment_id"].to_numpy()
    truth = true_segments(frame).loc[result.users["user_id"]].to_numpy()
    groups = load_groups()
    dataset = _dataset(_sections(groups), set(truth.tolist()))
    texts, owners = _pool(groups, dataset)
    same = _equivalents(groups[dataset], groups.get("same_across", []))
    topics = load_taxonomy("iab")
    names, meanings, nodes = (unit_rows(np.asarray(encoder.encode([getattr(t, f) for t in topics]), np.float32))
                              for f in ("name", "meaning", "grounds"))
    nearest = np.argmax(names @ unit_rows(np.asarray(encoder.encode(texts), np.float32)).T, axis=1)
    centroids = unit_rows(np.asarray(seen["centroids"], np.float32))
    out = []
    for p in seen["profiles"]:
        s = p.segment_id
        phrases = list(dict.fromkeys([*p.nouns(p.top_tags)[:6], *p.nouns(p.top_terms)[:6]]))
        if not phrases:
            continue
        to_phrase = (nodes @ unit_rows(np.asarray(encoder.encode(phrases), np.float32)).T).max(axis=1)
        to_centroid = nodes @ centroids[s]

        def margin(vectors):
            sims = vectors @ centroids.T
            return sims[:, s] - np.delete(sims, s, axis=1).max(axis=1)

        majority = Counter(truth[labels == s]).most_common(1)[0][0]
        for i in np.flatnonzero((margin(names) > 0) & (margin(meanings) > 0)):
            out.append((float(to_phrase[i]), float(to_centroid[i]), owners[nearest[i]] in same.get(majority, {majority})))
    encoder.save()
    return out


def table(rows: np.ndarray, rule) -> list[str]:
    related = rows[:, 2] == 1
    lines = ["| threshold | offered | precision | recall | F1 |", "|---|---|---|---|---|"]
    for label, offered in rule(rows):
        hits = int((offered & related).sum())
        precision, recall = hits / max(int(offered.sum()), 1), hits / max(int(related.sum()), 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-9)
        lines.append(f"| {label} | {int(offered.sum())} | {precision:.2f} | {recall:.2f} | {f1:.2f} |")
    return lines


def main(argv: list[str]) -> int:
    from tagger.llm.models import resolve_model

    engine = CacheOnlyEngine(str(resolve_model("embedded")))
    rows = np.array([r for path in argv for r in pairs(Path(path), engine)], dtype=float)
    phrase = table(rows, lambda r: [(f"phrase ≥ {t:.2f}", r[:, 0] >= t) for t in np.arange(0.2, 0.71, 0.05)])
    either = table(rows, lambda r: [(f"phrase ≥ 0.45 or centroid ≥ {t:.2f}", (r[:, 0] >= 0.45) | (r[:, 1] >= t))
                                    for t in (0.3, 0.35, 0.4, 0.45, 0.5)])
    backed = table(rows, lambda r: [(f"(phrase ≥ 0.45 and centroid ≥ {t:.2f}) or centroid ≥ 0.40",
                                     ((r[:, 0] >= 0.45) & (r[:, 1] >= t)) | (r[:, 1] >= 0.4))
                                    for t in (0.0, 0.3, 0.33, 0.35, 0.38, 0.4)])
    text = "\n".join([f"# Taxonomy grounding calibration ({len(rows)} pointing segment × node pairs, "
                      f"{rows[:, 2].mean():.0%} related; {', '.join(argv)})", "",
                      "Node's best cosine to one of the segment's phrases:", "", *phrase, "",
                      "... or its cosine to the segment's centroid (members' mean text):", "", *either, "",
                      "... where a phrase alone must also have the members' text not far from the node "
                      "(one word such as \"card\" matches card games and greeting cards):", "", *backed, ""])
    (RESULTS / "naming-calibration.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
