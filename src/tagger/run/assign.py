"""`tagger assign`: tag new users with a finished run's engine, prompt and settings and place
them in its segments (the rule: `tagger.lifecycle.assign`), without re-clustering. Segments a
person edited (`tagger edit`) are the ones the saved model holds, so new users land in them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tagger import prompts as prompt_files
from tagger.config import RunConfig
from tagger.errors import ConfigError, ModelError
from tagger.lifecycle.assign import NONE_NAME, training_agreement
from tagger.lifecycle.segment_model import SegmentModel, check_embedder, current_names, load_model, run_segments
from tagger.llm.base import Engine, GenerationParams
from tagger.llm.models import prompt_counter
from tagger.llm.structured import CallStats
from tagger.pipeline import comment_counts, load_documents, user_table
from tagger.privacy import exclude_sensitive
from tagger.progress import Reporter
from tagger.run.context import RunContext, run_config
from tagger.run.folder import check_destination
from tagger.schemas import NO_SEGMENT, TaggedUser
from tagger.stages.clustering import Placement
from tagger.stages.data import has_usable_text
from tagger.stages.embedding import Encoder, create_encoder, text_vectors, user_vectors
from tagger.stages.excerpts import PromptFiller
from tagger.stages.naming import NamingCorpus
from tagger.stages.tagging import TAG_MODES, TagOptions, tag_users
from tagger.stages.vector_store import StoredEncoder
from tagger.vectors import unit_rows


@dataclass
class AssignResult:
    users: pd.DataFrame
    tagged_users: list[TaggedUser]
    summary: dict[str, Any]
    out: Path | None = None


def assign(run_dir: Path, source: Path | pd.DataFrame, *, out: Path | None = None, force: bool = False,
           reporter: Reporter | None = None, engine: Engine | None = None, encoder: Encoder | None = None,
           llm: bool = False, **overrides) -> AssignResult:
    """Place the users in `source` in the run's segments: by default with the run's distilled
    placer, from their text alone and with no LLM; with `llm`, tagged with the run's engine, model,
    prompt and parameters first and placed by their full vectors. Users also in the training run
    are compared with their original segment (`summary["agreement"]`)."""
    reporter = reporter or Reporter()
    started = time.perf_counter()
    run_dir = Path(run_dir)
    if out is not None:
        check_destination(Path(out), force)
    model, config, template = _saved_run(run_dir, overrides, llm)
    with reporter.stage("load"):
        documents, load_stats = load_documents(source, config)
    with RunContext(config, reporter, out=out, force=force, engine=engine) as ctx:
        with reporter.stage("embedder check"):
            encoder = encoder or create_encoder(overrides.get("embedder") or model.manifest.embedder)
            check_embedder(model, encoder)
        if llm:
            tagged = _tag(documents, config, template, model, ctx)
            ctx.close_engine()
            placement, confidence = _place_tagged(model, documents, tagged, encoder, config, reporter)
        else:
            tagged = [TaggedUser(user_id=d.user_id, status="unread") for d in documents]
            placement, confidence = _place_distilled(model, documents, encoder, config, ctx)
        names = {**model.names, **current_names(run_dir, model)}
        users = user_table(documents, tagged, placement, names, NONE_NAME, parent_of=model.parent_of(),
                           confidence=confidence)
        users = exclude_sensitive(users, run_segments(run_dir), config.sensitive)
        summary = _summary(run_dir, model, load_stats, tagged, users, names, placement, ctx)
        summary["llm"] = llm
        summary["wall_time_s"] = round(time.perf_counter() - started, 3)
        result = AssignResult(users, tagged, summary)
        if ctx.folder is not None:
            ctx.folder.write_table("users", users)
            ctx.folder.write_jsonl("tags.jsonl", [u.model_dump() for u in tagged])
            ctx.folder.write_json("assign.json", summary)
            result.out = ctx.commit()
    return result


def _place_tagged(model: SegmentModel, documents, tagged, encoder: Encoder, config: RunConfig,
                  reporter: Reporter) -> tuple[Placement, None]:
    """The saved segmentation's rule (tagger.lifecycle.assign) on the users' full vectors (tags and text)."""
    with reporter.stage("placing"):
        vectors, has_vector, _ = user_vectors(tagged, documents, encoder, tag_weight=config.tag_weight,
                                              whole_document=config.whole_document, item_weight=config.item_weight)
        if model.lexical is not None:
            corpus = NamingCorpus.from_documents(documents, tagged, known=model.extractor().known_)
            vectors = model.vectors_for(vectors, corpus)
        return model.place(vectors, has_vector, config.assign_noise), None


def _place_distilled(model: SegmentModel, documents, encoder: Encoder, config: RunConfig,
                     ctx: RunContext) -> tuple[Placement, np.ndarray]:
    """The distilled placer on the users' LLM-free vectors: (placement by segment id, confidence;
    NaN for a user with no usable text, who stays unsegmented)."""
    n = len(documents)
    with ctx.reporter.stage("placing", total=sum(len(d.comments) for d in documents)) as advance:
        stored = StoredEncoder.around(encoder, ctx.vector_store) if ctx.vector_store is not None else encoder
        text = text_vectors(documents, stored, whole_document=config.whole_document, item_weight=config.item_weight,
                            on_chunk=advance)
        corpus = NamingCorpus.from_documents(documents, known=model.extractor().known_) if model.lexical else None
        features = model.vectors_for(text, corpus)
        del text
        if features.shape[1] != model.placer.features:
            raise ModelError(f"the run's placer reads {model.placer.features} dimensions, these users' vectors "
                             f"have {features.shape[1]}; rerun `tagger segment`")
        has = np.fromiter((has_usable_text(d.text) for d in documents), bool, n)
        rows = np.flatnonzero(has)
        labels, strengths = np.full(n, NO_SEGMENT, np.int64), np.zeros(n)
        how, confidence = np.full(n, "unsegmented", dtype=object), np.full(n, np.nan, np.float32)
        labels[rows], confidence[rows] = model.placer.place(features[rows])
        centroids = unit_rows(np.asarray(model.centroids, np.float32))
        strengths[rows] = np.clip(np.einsum("ij,ij->i", features[rows], centroids[labels[rows]]), 0, 1)
        how[rows] = "distilled"
    # the placer's classes are the model's own rows; a person sees segment ids
    return Placement(model.ids_of(labels), strengths, how), confidence


def _sizes(users: pd.DataFrame, column: str, names: dict[int, str]) -> dict[str, int]:
    """Users per node id in `column` (leaf or parent), by name, in id order; -1 (none) left out."""
    ids = users[column][users[column] >= 0]
    return {names.get(int(k), str(k)): int(v) for k, v in ids.value_counts().sort_index().items()}


def _saved_run(run_dir: Path, overrides: dict[str, Any], llm: bool = True):
    """The run's model, settings and tag prompt, refusing a prompt edited since the run (with `llm`)
    and, without it, a model that holds no distilled placer."""
    model = load_model(run_dir)
    if not llm and model.placer is None:
        raise ModelError(f"the segment model of {run_dir} holds no distilled placer (saved by an older tagger, or "
                         "made with --tag-weight 1); pass --llm to tag the users, or rerun `tagger segment`")
    config = run_config(run_dir, **overrides)
    if overrides.get("max_users") is None:  # the run's --max-users was about its own file
        config = config.model_copy(update={"max_users": None})
    template = prompt_files.load(TAG_MODES[config.tag_mode], config.prompts)
    saved_sha = model.manifest.prompts.get(template.name)
    if llm and saved_sha and saved_sha != template.sha256:
        raise ConfigError(f"the tag prompt '{template.name}' changed since the run (sha256 {saved_sha[:12]} -> "
                          f"{template.sha256[:12]}); restore it or rerun `tagger segment`")
    return model, config, template


def _tag(documents, config: RunConfig, template, model: SegmentModel, ctx: RunContext) -> list[TaggedUser]:
    engine = ctx.engine
    saved_model = model.manifest.model
    if saved_model and getattr(engine, "model_id", saved_model) != saved_model:
        raise ModelError(f"the run was tagged by model '{saved_model}', this engine runs "
                         f"'{getattr(engine, 'model_id', '?')}'; assign with --model {saved_model}")
    params = GenerationParams(max_tokens=config.max_tokens, temperature=config.temperature, seed=config.seed)
    with ctx.reporter.stage("tagging", total=len(documents)) as advance:
        options = TagOptions(params, mode=config.tag_mode, batch_size=config.batch_size, extractor=model.extractor(),
                             filler=PromptFiller(prompt_counter(config.engine, ctx.model), config.doc_tokens))
        return tag_users(documents, engine, template, options, cache=ctx.cache, stats=CallStats(), on_batch=advance)


def _summary(run_dir: Path, model: SegmentModel, load_stats, tagged, users: pd.DataFrame, names: dict[int, str],
             placement: Placement, ctx: RunContext) -> dict[str, Any]:
    config, labels = ctx.config, placement.labels
    return {
        "run": str(run_dir),
        "model": model.manifest.model,
        "embedder": model.manifest.embedder,
        "counts": {"rows": load_stats.rows, **load_stats.row_reasons(),
                   **comment_counts(config, load_stats, tagged),
                   "users": len(users), "tagged": sum(u.status == "tagged" for u in tagged),
                   "unread": sum(u.status == "unread" for u in tagged),
                   "placed": int((labels >= 0).sum()), "none": int((labels < 0).sum()),
                   "by": {k: int(v) for k, v in pd.Series(placement.assigned_by).value_counts().items()}},
        "segment_sizes": _sizes(users, "segment_id", names),
        # {} for a flat run: its leaves have no parents
        "parent_sizes": _sizes(users, "parent_id", names),
        "agreement": training_agreement(_training_users(run_dir), users),
        "cache": {"enabled": config.cache, "hits": ctx.cache.hits, "misses": ctx.cache.misses},
        "timings_s": dict(ctx.reporter.timings),
    }


def _training_users(run_dir: Path) -> pd.DataFrame | None:
    """The training run's users (id, segment, how assigned, and parent when it has one)."""
    import pyarrow.parquet as pq

    path = Path(run_dir) / "users.parquet"
    if not path.exists():
        return None
    columns = ["user_id", "segment_id", "assigned_by"]
    # runs written before segment trees have no parent_id column
    columns += ["parent_id"] if "parent_id" in pq.read_schema(path).names else []
    return pd.read_parquet(path, columns=columns)
