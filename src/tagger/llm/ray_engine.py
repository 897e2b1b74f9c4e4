"""Tagging across machines: Ray Data shards the chats over a pool of engine replicas.

Each replica is a Ray Data actor (`map_batches` with a callable class) that holds one tagger
engine (`vllm` by default: one vLLM instance per GPU or CPU node; `openai` to fan out to
servers; `fake` for tests). Ray places the replicas on the cluster's nodes, streams batches to
whichever replica is free and retries a batch whose actor died. Answers come back to the
driver in request order, so caching, validation and retries stay in `run_structured`.

Every `generate` call runs one Ray Data job and so starts the replicas once: give tagging a
`batch_size` that covers all users (one main pass plus one retry pass).

Settings (keyword arguments, or environment variables for the CLI's `--engine ray`):
TAGGER_RAY_ADDRESS (e.g. `auto` on a cluster node; unset = a local cluster),
TAGGER_RAY_REPLICAS, TAGGER_RAY_GPUS_PER_REPLICA, TAGGER_RAY_CPUS_PER_REPLICA,
TAGGER_RAY_INNER (the engine each replica holds), TAGGER_RAY_BATCH (chats per replica call).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tagger.errors import ConfigError, ModelError
from tagger.llm.base import ENGINES, Completion, GenerationParams, Messages, settings_from


class _Replica:
    """One engine per Ray actor, built once and reused for every batch the actor receives."""

    def __init__(self, inner: str, options: dict[str, Any]):
        from tagger.llm.base import create_engine

        self.engine = create_engine(inner, **options)

    def __call__(self, batch: dict) -> dict:
        chats = [json.loads(c) for c in batch["chat"]]
        schemas = [json.loads(s) for s in batch["schema"]]
        params = GenerationParams.model_validate_json(str(batch["params"][0]))
        answers = self.engine.generate(chats, schemas=schemas, params=params)
        return {"index": batch["index"], "completion": [a.model_dump_json() for a in answers]}


def _env(name: str, default: Any, kind=str):
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a valid {kind.__name__}; fix or unset it") from None


@dataclass(frozen=True)
class RaySettings:
    """The keywords of `create_engine("ray", model=..., ...)`; None takes the TAGGER_RAY_* variable.

    seed, base_url and (for vllm) engine_options go to every replica's engine.
    """

    seed: int = 0
    base_url: str | None = None
    inner: str | None = None
    replicas: int | None = None
    address: str | None = None
    cpus_per_replica: float | None = None
    gpus_per_replica: float | None = None
    batch_size: int | None = None
    engine_options: dict[str, Any] | None = None
    object_store_mb: int = 256


class RayEngine:
    # Every call starts the replicas: tagging must not split a batch into paced calls.
    whole_batches = True

    def __init__(self, model: str, **options: Any):
        """`options`: the fields of RaySettings; others are ignored."""
        try:
            import ray
        except ImportError:
            raise ModelError("Ray is not installed; pip install 'tagger[dist]' (or choose --engine vllm)") from None
        settings = settings_from(RaySettings, options)
        self.inner = settings.inner or _env("TAGGER_RAY_INNER", "vllm")
        if self.inner not in ENGINES or self.inner == "ray":
            raise ConfigError(f"TAGGER_RAY_INNER must be one of: {', '.join(e for e in ENGINES if e != 'ray')}")
        self.replicas = settings.replicas or _env("TAGGER_RAY_REPLICAS", 1, int)
        cpus, gpus = settings.cpus_per_replica, settings.gpus_per_replica
        self.cpus = cpus if cpus is not None else _env("TAGGER_RAY_CPUS_PER_REPLICA", 1.0, float)
        self.gpus = gpus if gpus is not None else _env("TAGGER_RAY_GPUS_PER_REPLICA", 0.0, float)
        self.batch_size = settings.batch_size or _env("TAGGER_RAY_BATCH", 64, int)
        if self.replicas < 1 or self.batch_size < 1:
            raise ConfigError("Ray replicas and batch size must be >= 1")
        if self.inner == "vllm" and model == "embedded":
            # Local cluster: the converted model folder is on this machine. On a multi-node
            # cluster pass a hub id or a folder that every node has at the same path.
            from tagger.llm.models import resolve_model

            model = resolve_model(model)
        self.model_id = str(model)
        self._options = {"model": str(model), "seed": settings.seed, "base_url": settings.base_url}
        if self.inner == "vllm":
            self._options["engine_options"] = settings.engine_options
        address = settings.address or _env("TAGGER_RAY_ADDRESS", None)
        self._own_cluster = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                # A local cluster bounded to what this machine can spare.
                ray.init(num_cpus=max(1, int(round(self.cpus * self.replicas))), num_gpus=int(self.gpus * self.replicas),
                         object_store_memory=settings.object_store_mb * 2**20, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
                self._own_cluster = True
        self.options = {"inner": self.inner, "replicas": self.replicas, "cpus_per_replica": self.cpus,
                        "gpus_per_replica": self.gpus, "batch_size": self.batch_size,
                        "cluster": address or "local", "cluster_resources": ray.cluster_resources()}

    def generate(self, chats: Sequence[Messages], *, schemas: Sequence[dict[str, Any]], params: GenerationParams) -> list[Completion]:
        import ray.data

        if not chats:
            return []
        params_json = params.model_dump_json()
        rows = [{"index": i, "chat": json.dumps(chat, ensure_ascii=False), "schema": json.dumps(schema),
                 "params": params_json} for i, (chat, schema) in enumerate(zip(chats, schemas, strict=True))]
        # Blocks no larger than one replica batch, so every replica gets work from the start.
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), -(-len(rows) // self.batch_size))))
        answered = dataset.map_batches(
            _Replica, fn_constructor_kwargs={"inner": self.inner, "options": self._options},
            batch_size=self.batch_size, compute=ray.data.ActorPoolStrategy(size=min(self.replicas, len(rows))),
            num_cpus=self.cpus, num_gpus=self.gpus or None, batch_format="numpy",
        )
        try:
            out = answered.take_all()
        except Exception as exc:  # Ray wraps the replica's own error
            first = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"Ray tagging failed: {first}; check the replicas' engine and model") from None
        by_index = {int(r["index"]): Completion.model_validate_json(r["completion"]) for r in out}
        return [by_index.get(i) or Completion(text="", finish_reason="error", error="no answer from any replica")
                for i in range(len(chats))]

    def close(self) -> None:
        if self._own_cluster:
            import ray

            ray.shutdown()
            self._own_cluster = False
