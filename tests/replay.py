"""Answers of the real embedded model, recorded once and replayed in tests.

`ReplayEngine` answers a request from tests/data/<name>.jsonl.gz, keyed by its messages and
schema; a request that was not recorded gets an error answer and is counted in `misses`, so a
test can tell stale recordings (an edited prompt) from a real failure. Re-record with

    TAGGER_HOME=… python -m tests.replay

which runs the same samples through the real vLLM engine (a few minutes on 2 cores).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tagger.llm.base import Completion

DATA = Path(__file__).resolve().parent / "data"
DEMO_SAMPLES = "demo-samples"
SAMPLE_SEEDS = (1, 2)
SAMPLE_SHARE = 0.9


def request_key(chat, schema) -> str:
    return hashlib.sha256(json.dumps([chat, schema], sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def demo_sample(seed: int) -> pd.DataFrame:
    """A seeded 90 % user sample of the demo file (all comments of the users kept)."""
    from tagger.paths import demo_file

    frame = pd.read_csv(demo_file(), dtype={"user_id": str})
    users = frame["user_id"].unique()
    keep = np.random.default_rng(seed).choice(users, round(len(users) * SAMPLE_SHARE), replace=False)
    return frame[frame["user_id"].isin(keep)]


class ReplayEngine:
    def __init__(self, name: str, model_id: str = "replay"):
        self.model_id = model_id
        with gzip.open(DATA / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
            self.answers = {row["key"]: row["answer"] for row in map(json.loads, f)}
        self.misses = 0
        self.tagging_misses = 0

    def generate(self, chats, *, schemas, params):
        out = []
        for chat, schema in zip(chats, schemas, strict=True):
            answer = self.answers.get(request_key(chat, schema))
            self.misses += answer is None
            self.tagging_misses += answer is None and "tags" in schema.get("properties", {})
            out.append(Completion.model_validate(answer) if answer else Completion(text="", error="not recorded"))
        return out

    def close(self) -> None:
        pass


class RecordingEngine:
    """Passes every request to `inner` and keeps its answers."""

    def __init__(self, inner):
        self.inner, self.model_id, self.rows = inner, inner.model_id, {}

    def generate(self, chats, *, schemas, params):
        # A request already answered (the same user's tagging in the run with items) is not
        # asked again: greedy decoding would give the same answer.
        keys = [request_key(chat, schema) for chat, schema in zip(chats, schemas, strict=True)]
        ask = [i for i, key in enumerate(keys) if key not in self.rows]
        answers = {i: Completion.model_validate(self.rows[key]) for i, key in enumerate(keys) if key in self.rows}
        if ask:
            fresh = self.inner.generate([chats[i] for i in ask], schemas=[schemas[i] for i in ask], params=params)
            for i, answer in zip(ask, fresh, strict=True):
                answers[i] = answer
                if not answer.error:
                    self.rows[keys[i]] = answer.model_dump()
        return [answers[i] for i in range(len(chats))]

    def close(self) -> None:
        self.inner.close()


def record(out: Path = DATA / f"{DEMO_SAMPLES}.jsonl.gz") -> None:
    from tagger.config import make_config
    from tagger.llm.base import create_engine
    from tagger.llm.models import resolve_model
    from tagger.run.segment import segment

    engine = RecordingEngine(create_engine("vllm", model=resolve_model("embedded"), seed=0))
    try:
        for seed in SAMPLE_SEEDS:
            # cache off: every request reaches the engine, so every answer is recorded; with the
            # item titles the segments, and so the naming requests, differ
            for item_col in (None, "product"):
                segment(demo_sample(seed), make_config(engine="vllm", embedder="minilm", cache=False, item_col=item_col),
                        engine=engine, report=False)
    finally:
        engine.close()
    with gzip.open(out, "wt", encoding="utf-8") as f:
        for key, answer in sorted(engine.rows.items()):
            f.write(json.dumps({"key": key, "answer": answer}, ensure_ascii=False) + "\n")
    print(f"{len(engine.rows)} answers → {out}", file=sys.stderr)


if __name__ == "__main__":
    record()
