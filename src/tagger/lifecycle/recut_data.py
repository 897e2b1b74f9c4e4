"""What `tagger recut` cuts and names from, saved in `RUN/model/recut/` by `tagger segment`.

| file | what |
|---|---|
| `vectors.npy` | every user's vector (float16, rows as in users.parquet; zeros for a user without one) |
| `found.npy` | the leaves the consensus found, before `--segments` merged or split them |
| `assigned_by.json` | how each user was placed (the clustering itself, the nearest segment, the distilled placer) |
| `fitted.npy` | the users the segments were fitted on (all with a vector, or the LLM-read sample of `--llm-users`); the others are placed again after a cut |
| `corpus.parquet` | per user, what naming reads of their text: phrases, items, item phrases, length in words |
| `meta.json` | format version, users, dimensions, minimum segment size, words the data uses as verbs, how often it capitalises first names |

float16 halves the vectors' size (768 bytes per user at 384 dimensions): naming and the cut
need their directions, not their last bits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tagger.errors import ModelError
from tagger.stages.clustering import Segmenter
from tagger.stages.naming import NamingCorpus

RECUT_DIR = "recut"
RECUT_FORMAT = 1


@dataclass
class RecutData:
    vectors: np.ndarray
    found: np.ndarray
    assigned_by: np.ndarray
    corpus: NamingCorpus
    min_segment_size: int
    fitted: np.ndarray  # bool per user: the segments were fitted on them


def save_recut_data(folder: Path, segmenter: Segmenter, vectors: np.ndarray, corpus: NamingCorpus) -> None:
    """Write the recut data of a fitted segmentation (rows = the run's users) into `folder`."""
    folder = Path(folder) / RECUT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    usable = np.asarray(segmenter.assigned_by_) != "unsegmented"
    stored = np.zeros(np.shape(vectors), np.float16)
    for start in range(0, len(stored), 100_000):  # in chunks: no float32 copy of every user's vector
        part = slice(start, start + 100_000)
        stored[part] = np.where(usable[part, None], np.asarray(vectors[part], np.float32), 0)
    np.save(folder / "vectors.npy", stored, allow_pickle=False)
    np.save(folder / "found.npy", np.asarray(segmenter.auto_labels_, np.int64), allow_pickle=False)
    (folder / "assigned_by.json").write_text(json.dumps(list(map(str, segmenter.assigned_by_))) + "\n", encoding="utf-8")
    columns = {"terms": corpus.terms, "items": corpus.items, "item_terms": corpus.item_terms}
    if len(corpus.lengths) == len(corpus.terms):
        columns["lengths"] = corpus.lengths
    pd.DataFrame(columns).to_parquet(folder / "corpus.parquet", index=False)
    np.save(folder / "fitted.npy", np.asarray(getattr(segmenter, "fitted_", usable), bool), allow_pickle=False)
    pd.DataFrame({"terms": corpus.terms, "items": corpus.items, "item_terms": corpus.item_terms}).to_parquet(
        folder / "corpus.parquet", index=False)
    meta = {"format": RECUT_FORMAT, "users": int(len(stored)), "dims": int(stored.shape[1]) if stored.ndim == 2 else 0,
            "min_segment_size": int(segmenter.min_segment_size_), "verbs": sorted(corpus.verbs),
            "capitalised": dict(sorted(corpus.capitalised.items())), "adjectives": sorted(corpus.adjectives),
            "spellings": dict(sorted(corpus.spellings.items())), "plurals": dict(sorted(corpus.plurals.items()))}
    (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False) + "\n", encoding="utf-8")


def load_recut_data(run_dir: Path, users: int) -> RecutData:
    """The recut data of RUN_DIR, checked against its `users` rows; one-line errors say the fix."""
    folder = Path(run_dir) / "model" / RECUT_DIR
    if not (folder / "meta.json").exists():
        raise ModelError(f"{run_dir} holds no recut data (model/{RECUT_DIR}/); it was made by an older tagger: "
                         "rerun `tagger segment` once, then recut it as often as you like")
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != RECUT_FORMAT:
            raise ModelError(f"recut data in {run_dir} has format {meta.get('format')}, this tagger reads "
                             f"{RECUT_FORMAT}; rerun `tagger segment`")
        vectors = np.load(folder / "vectors.npy", allow_pickle=False)
        found = np.load(folder / "found.npy", allow_pickle=False)
        assigned_by = np.array(json.loads((folder / "assigned_by.json").read_text(encoding="utf-8")), dtype=object)
        frame = pd.read_parquet(folder / "corpus.parquet")
        # a run saved before budgets fitted every user with a vector
        fitted = (np.load(folder / "fitted.npy", allow_pickle=False) if (folder / "fitted.npy").exists()
                  else assigned_by != "unsegmented")
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"recut data in {run_dir} is incomplete ({type(exc).__name__}: {exc}); "
                         "rerun `tagger segment`") from None
    if not len(vectors) == len(found) == len(assigned_by) == len(frame) == users:
        raise ModelError(f"recut data in {run_dir} holds {len(vectors)} users, its users table {users}; "
                         "the folder was edited: rerun `tagger segment`")
    lists = {c: [[str(x) for x in v] for v in frame[c]] for c in ("terms", "items", "item_terms")}
    # Recut data saved before lengths and capitalisation judge topicality without them.
    lengths = [int(x) for x in frame["lengths"]] if "lengths" in frame else []
    corpus = NamingCorpus(lists["terms"], lists["items"], lists["item_terms"], frozenset(meta.get("verbs", [])),
                          lengths, dict(meta.get("capitalised", {})), frozenset(meta.get("adjectives", [])),
                          dict(meta.get("spellings", {})), dict(meta.get("plurals", {})))
    return RecutData(vectors.astype(np.float32), found.astype(np.int64), assigned_by, corpus,
                     int(meta["min_segment_size"]), np.asarray(fitted, bool))
