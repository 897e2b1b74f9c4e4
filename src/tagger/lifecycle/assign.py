"""Place users in a finished run's segments without re-clustering.

Rule (the same for a new user and for a user seen in training):
0. a user with no tags and no usable text (`tagger.stages.data.has_usable_text`) gets no vector and
   is `unsegmented` (segment -1, empty name, a reason), as in `tagger segment`;
1. reduce the user's vector with the saved PCA; among the 10 users HDBSCAN clustered that are
   nearest to it, take the nearest one that the user is at least as close to as that
   member's own nearest fellow member; the user joins its segment (`cluster`) — a training member is at distance 0 from
   itself, so it always gets its original segment;
2. otherwise the user is noise: with the run's default `assign_noise`, it joins the segment
   whose clustered members' centroid is most similar (`nearest`, as training placed its noise
   users), else it stays in no segment (`noise`);
3. strength is the cosine to the segment's centroid (as in training); a user whose strength
   is below the weakest training member of that segment fits it worse than anyone did and
   gets segment "none" (`outlier`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tagger import prompts as prompt_files
from tagger.cache import ResultCache
from tagger.config import RunConfig
from tagger.stages.embedding import Encoder, create_encoder, user_vectors
from tagger.errors import ConfigError, ModelError
from tagger.llm.base import Engine, GenerationParams, create_engine
from tagger.llm.structured import CallStats
from tagger.run.folder import RunFolder, check_destination, users_frame
from tagger.paths import tagger_home
from tagger.progress import Reporter
from tagger.schemas import TaggedUser
from tagger.lifecycle.segment_model import SegmentModel, check_embedder, current_names, load_model
from tagger.stages.excerpts import PromptFiller
from tagger.stages.tagging import TAG_MODES, tag_users
from tagger.vectors import unit_rows

NONE = -1
NONE_NAME = "none"
# Recomputed vectors can differ from the training ones in the last float bits.
TOLERANCE = 1e-4
# Members looked at per user (a tree query); the first that reaches the user decides.
NEIGHBOURS = 10


def place(model: SegmentModel, vectors: np.ndarray, *, assign_noise: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(segment ids with -1 for none, strengths 0..1, how: cluster/nearest/noise/outlier)."""
    vectors = unit_rows(np.asarray(vectors, np.float32))
    n = len(vectors)
    labels = np.full(n, NONE, np.int64)
    how = np.full(n, "noise", dtype=object)
    if n == 0 or len(model.centroids) == 0:
        return labels, np.zeros(n), how
    floor = np.array([s["strength_floor"] for s in model.segments])
    if len(model.members_label):
        from sklearn.neighbors import NearestNeighbors

        k = min(NEIGHBOURS, len(model.members_label))
        distances, index = NearestNeighbors(n_neighbors=k).fit(model.members_reduced).kneighbors(model.reduce(vectors))
        # the nearest of the k nearest members whose own nearest-fellow distance reaches the user
        reach = distances <= model.members_radius[index] + TOLERANCE
        first = reach.argmax(axis=1)
        inside = reach.any(axis=1)
        labels[inside] = model.members_label[index[inside, first[inside]]]
        how[inside] = "cluster"
    similarity = vectors @ model.centroids.T
    noise = labels == NONE
    if assign_noise and noise.any():
        labels[noise] = (vectors[noise] @ model.member_centroids.T).argmax(axis=1)
        how[noise] = "nearest"
    placed = labels >= 0
    strengths = np.zeros(n)
    strengths[placed] = np.clip(similarity[placed, labels[placed]], 0, 1)
    outlier = placed & (strengths < floor[np.maximum(labels, 0)] - TOLERANCE)
    labels[outlier], how[outlier] = NONE, "outlier"
    return labels, strengths, how


@dataclass
class AssignResult:
    users: pd.DataFrame
    tagged_users: list[TaggedUser]
    summary: dict[str, Any]
    out: Path | None = None


def run_config(run_dir: Path, **overrides) -> RunConfig:
    """The run's own settings (from run.json), with the given non-None overrides."""
    path = Path(run_dir) / "run.json"
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a tagger run folder (no run.json); pass the --out folder of `tagger segment`")
    values = json.loads(path.read_text(encoding="utf-8"))["config"]
    values.setdefault("item_weight", 0.0)  # runs made before item titles joined the vectors
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RunConfig(**values)
    except Exception as exc:  # pydantic ValidationError
        raise ConfigError(f"run.json of {run_dir} holds settings this tagger cannot read ({str(exc).splitlines()[0]}); "
                          "rerun `tagger segment`") from None


def assign(
    run_dir: Path,
    source: Path | pd.DataFrame,
    *,
    out: Path | None = None,
    force: bool = False,
    reporter: Reporter | None = None,
    engine: Engine | None = None,
    encoder: Encoder | None = None,
    **overrides,
) -> AssignResult:
    """Tag the users in `source` with the run's engine, model, prompt and parameters, and place
    them in the run's segments. Users also in the training run are compared with their
    original segment (`summary["agreement"]`)."""
    from tagger.pipeline import comment_counts, engine_model, load_documents, prompt_counter

    reporter = reporter or Reporter()
    started = time.perf_counter()
    run_dir = Path(run_dir)
    if out is not None:
        check_destination(Path(out), force)
    model = load_model(run_dir)
    config = run_config(run_dir, **overrides)
    if overrides.get("max_users") is None:  # the run's --max-users was about its own file
        config = config.model_copy(update={"max_users": None})
    template = prompt_files.load(TAG_MODES[config.tag_mode], config.prompts)
    saved_sha = (model.manifest.get("prompts") or {}).get(template.name)
    if saved_sha and saved_sha != template.sha256:
        raise ConfigError(f"the tag prompt '{template.name}' changed since the run (sha256 {saved_sha[:12]} -> "
                          f"{template.sha256[:12]}); restore it or rerun `tagger segment`")
    with reporter.stage("load"):
        documents, load_stats = load_documents(source, config)
    model_id = engine_model(config)
    folder = RunFolder(Path(out), force) if out is not None else None
    cache = ResultCache(tagger_home() / "cache.sqlite" if config.cache else None)
    own_engine = engine is None
    stats = CallStats()
    try:
        with reporter.stage("embedder check"):
            encoder = encoder or create_encoder(overrides.get("embedder") or model.manifest["embedder"])
            check_embedder(model, encoder)
        if engine is None:
            with reporter.stage("engine start"):
                engine = create_engine(config.engine, model=model_id, seed=config.seed, base_url=config.base_url,
                                       concurrency=config.concurrency, timeout=config.request_timeout,
                                       api_key=config.api_key.get_secret_value() if config.api_key else None)
        saved_model = model.manifest.get("model")
        if saved_model and getattr(engine, "model_id", saved_model) != saved_model:
            raise ModelError(f"the run was tagged by model '{saved_model}', this engine runs "
                             f"'{getattr(engine, 'model_id', '?')}'; assign with --model {saved_model}")
        params = GenerationParams(max_tokens=config.max_tokens, temperature=config.temperature, seed=config.seed)
        with reporter.stage("tagging", total=len(documents)) as advance:
            tagged = tag_users(documents, engine, template, params=params, cache=cache, mode=config.tag_mode,
                               batch_size=config.batch_size, on_batch=advance, stats=stats,
                               extractor=model.extractor(),
                               filler=PromptFiller(prompt_counter(config, model_id), config.doc_tokens))
    finally:
        if own_engine and engine is not None:
            engine.close()
        cache.close()

    with reporter.stage("placing"):
        vectors, has_vector, _ = user_vectors(tagged, documents, encoder, tag_weight=config.tag_weight,
                                              whole_document=config.whole_document, item_weight=config.item_weight)
        labels = np.full(len(documents), NONE, np.int64)
        strengths = np.zeros(len(documents))
        how = np.full(len(documents), "unsegmented", dtype=object)
        rows = np.flatnonzero(has_vector)
        labels[rows], strengths[rows], how[rows] = place(model, vectors[rows], assign_noise=config.assign_noise)

    names = current_names(run_dir, model)
    users = users_frame(documents, tagged, labels, strengths, how, names, has_vector, NONE_NAME)
    placed = users[users["segment_id"] != NONE]
    summary = {
        "run": str(run_dir),
        "model": model.manifest.get("model"),
        "embedder": model.manifest.get("embedder"),
        "counts": {"rows": load_stats.rows, **load_stats.row_reasons(),
                   **comment_counts(config, load_stats, tagged),
                   "users": len(documents), "tagged": sum(u.status == "tagged" for u in tagged),
                   "placed": int((labels >= 0).sum()), "none": int((labels < 0).sum()),
                   "by": {k: int(v) for k, v in pd.Series(how).value_counts().items()}},
        "segment_sizes": {names.get(int(k), str(k)): int(v)
                          for k, v in placed["segment_id"].value_counts().sort_index().items()},
        "agreement": training_agreement(run_dir, users),
        "cache": {"enabled": config.cache, "hits": cache.hits, "misses": cache.misses},
        "timings_s": dict(reporter.timings),
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
    result = AssignResult(users, tagged, summary)
    if folder is not None:
        try:
            folder.write_table("users", users)
            folder.write_jsonl("tags.jsonl", [u.model_dump() for u in tagged])
            folder.write_json("assign.json", summary)
            result.out = folder.commit()
        except BaseException:
            folder.abandon()
            raise
    return result


def training_agreement(run_dir: Path, users: pd.DataFrame) -> dict[str, Any] | None:
    """Share of users that were in the training run and got their original segment back,
    overall and split by how training assigned them (cluster = HDBSCAN member, nearest = noise)."""
    path = Path(run_dir) / "users.parquet"
    if not path.exists():
        return None
    training = pd.read_parquet(path, columns=["user_id", "segment_id", "assigned_by"])
    both = users.merge(training, on="user_id", suffixes=("", "_training"))
    if both.empty:
        return None
    same = both["segment_id"] == both["segment_id_training"]
    out: dict[str, Any] = {"users": len(both), "same_segment": round(float(same.mean()), 4)}
    for kind, group in both.groupby("assigned_by_training"):
        agree = group["segment_id"] == group["segment_id_training"]
        out[str(kind)] = {"users": len(group), "same_segment": round(float(agree.mean()), 4)}
    return out
