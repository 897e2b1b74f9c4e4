"""What a command holds while it runs, opened and closed in one place: the LLM engine (started
on first use), the answer cache and the output folder. `segment`, `assign` and `rename` build it
from the same settings, so each starts its engine with the same options."""

from __future__ import annotations

import functools
from pathlib import Path

from tagger.cache import ResultCache
from tagger.config import RunConfig
from tagger.errors import ConfigError
from tagger.llm.base import Engine, create_engine
from tagger.llm.models import engine_model
from tagger.paths import tagger_home
from tagger.progress import Reporter
from tagger.run.folder import RunFolder
from tagger.stages.embedding import Encoder
from tagger.stages.vector_store import STORE_FILE, VectorStore
from tagger.summary import RunSummary, read_summary


class RunContext:
    """`with RunContext(config, reporter, out=...) as ctx:` — on leaving, an engine it started is
    closed and the cache too; on an error the half-written folder is removed."""

    def __init__(self, config: RunConfig, reporter: Reporter | None = None, *, out: Path | None = None,
                 force: bool = False, engine: Engine | None = None):
        self.config = config
        self.reporter = reporter or Reporter()
        self.folder = RunFolder(Path(out), force) if out is not None else None
        self.cache = ResultCache(tagger_home() / "cache.sqlite" if config.cache else None)
        # Vectors of candidate names (stages.embedding.CachedEncoder), counted apart from the answers.
        self.vector_cache = ResultCache(tagger_home() / "cache.sqlite" if config.cache else None)
        self._engine, self._own_engine = engine, engine is None

    @functools.cached_property
    def model(self) -> str:
        """What the engine loads (resolving 'embedded' converts it once: only when needed)."""
        return engine_model(self.config.engine, self.config.model)

    @functools.cached_property
    def vector_store(self) -> VectorStore | None:
        """Vectors of every text embedded, by encoder, opened on first use (None with --no-cache)."""
        return VectorStore(tagger_home() / STORE_FILE) if self.config.cache else None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self.reporter.stage("engine start"):
                config = self.config
                self._engine = create_engine(
                    config.engine, model=self.model, seed=config.seed, base_url=config.base_url,
                    concurrency=config.concurrency, timeout=config.request_timeout,
                    api_key=config.api_key.get_secret_value() if config.api_key else None)
        return self._engine

    def lazy_engine(self, model_id: str) -> Engine:
        """A stand-in that starts the engine on its first generate: a command whose answers are
        all cached (`rename` of an unchanged template) then starts none. `model_id` keys the cache."""
        return _LazyEngine(self, model_id)

    @property
    def started_engine(self) -> Engine | None:
        """The engine if one was started or given, without starting one."""
        return self._engine

    def close_engine(self) -> None:
        """Free the engine's memory as soon as no stage needs it (an engine passed in stays open)."""
        if self._own_engine and self._engine is not None:
            self._engine.close()
            self._engine = None

    def commit(self) -> Path | None:
        return self.folder.commit() if self.folder is not None else None

    def __enter__(self) -> RunContext:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            self.close_engine()
            self.cache.close()
            self.vector_cache.close()
            if self.__dict__.get("vector_store") is not None:
                self.vector_store.close()
        finally:
            if self.folder is not None:
                self.folder.abandon()  # after commit() the partial folder is gone already


def naming_encoder(model, encoder: Encoder | None, ctx: RunContext) -> Encoder:
    """The run's encoder (of its saved SegmentModel) for candidate names, loaded only if a name's
    vector is not cached: the cache is keyed by the fingerprint saved with the model, so it holds
    the same weights' vectors."""
    from tagger.lifecycle.segment_model import check_embedder
    from tagger.stages.embedding import CachedEncoder, create_encoder, encoder_identity

    name, fingerprint = model.manifest.embedder or "", model.embedder_fingerprint

    def load() -> Encoder:
        loaded = encoder or create_encoder(name)
        check_embedder(model, loaded)
        return loaded

    if not fingerprint:
        return load()
    return CachedEncoder(name, encoder_identity(name, fingerprint), load, ctx.vector_cache)


class _LazyEngine:
    def __init__(self, context: RunContext, model_id: str):
        self.context, self.model_id = context, model_id

    def generate(self, chats, *, schemas, params):
        return self.context.engine.generate(chats, schemas=schemas, params=params)

    def close(self) -> None:
        self.context.close_engine()


def run_config(run_dir: Path, summary: RunSummary | None = None, **overrides) -> RunConfig:
    """A finished run's own settings (run.json's, or `summary`'s), with the given non-None overrides."""
    summary = summary or read_summary(run_dir)
    values = dict(summary.config)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RunConfig(**values)
    except Exception as exc:  # pydantic ValidationError
        raise ConfigError(f"run.json of {run_dir} holds settings this tagger cannot read ({str(exc).splitlines()[0]}); "
                          "rerun `tagger segment`") from None
