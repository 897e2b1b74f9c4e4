"""One validated settings model for a run, built from CLI options, the API, or a TOML file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from tagger.errors import ConfigError

# The names tagger.llm.base.ENGINES registers (tests/test_config.py checks that they agree).
EngineName = Literal["vllm", "openai", "fake", "ray"]
TagMode = Literal["grounded", "free"]
# The periods tagger.lifecycle.over_time.PERIODS maps to pandas frequencies.
Period = Literal["day", "week", "month", "quarter", "year"]
# What becomes of segments about a sensitive topic (prompts/data/sensitive.toml): flagged, or
# their members left unsegmented (for ad use).
SensitiveMode = Literal["flag", "exclude"]


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # input
    user_col: str = "user_id"
    text_col: str = "text"
    time_col: str | None = None
    item_col: str | None = None
    encoding: str = "utf-8"
    max_users: int | None = Field(default=None, ge=1, description="take the first N users by id")
    max_comments_per_user: int | None = Field(default=None, ge=1, description="read only each user's newest N comments")
    keep_quotes: bool = Field(default=False, description="keep text quoted from others ('>' lines, 'X writes:')")
    # model
    engine: EngineName = "vllm"
    tag_mode: TagMode = Field(default="grounded",
                              description="grounded: pick from the user's own phrases; free: write tags + quotes")
    model: str = "embedded"
    base_url: str | None = None
    # --engine openai: requests in flight, seconds per request; the key never reaches run.json
    concurrency: int = Field(default=8, ge=1, le=256)
    request_timeout: float = Field(default=120.0, gt=0)
    api_key: SecretStr | None = Field(default=None, exclude=True)
    prompts: Path | None = None
    # A previous run whose phrase statistics build this run's candidate lists, so that they do not move between runs
    candidates_from: Path | None = None
    # An earlier run whose segments this run's continue: matched segments keep its ids, names and edits
    like: Path | None = Field(default=None, description="earlier run whose segment ids and names carry over")
    doc_tokens: int = Field(default=384, ge=16, le=32_000,
                            description="token budget of the excerpts of one user's comments in the tagging prompt")
    max_tokens: int = Field(default=160, ge=16, le=4096, description="output budget of one tag answer")
    batch_size: int = Field(default=256, ge=1)
    # Engine calls of about this many seconds, each cached as it returns: a kill loses at most one
    # call's answers (one whole batch of 256 users was ~200 s on this CPU). 0: one call per batch.
    call_seconds: float = Field(default=30.0, ge=0.0, description="seconds of tagging per engine call, each "
                                "cached as it returns (0 = one call per batch)")
    # How many users the LLM reads: "auto" reads everyone up to tagger.stages.sampling.AUTO_LLM_USERS
    # and that many of a larger input; the rest are placed by a placer distilled from them.
    llm_users: int | Literal["all", "auto"] = Field(default="auto", description="users the LLM reads: N, all, "
                                                    "or auto (everyone up to a size, then a sample)")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    seed: int = 0
    cache: bool = True
    # features and clustering
    embedder: str = "auto"
    # Canonical tags with data-driven stop phrases add to what the comments say: some tag weight
    # beats none on both dev sets (figures: docs/decisions.md).
    tag_weight: float = Field(default=0.3, ge=0.0, le=1.0)
    whole_document: bool = Field(default=True,
                                 description="add the embedding of the user's whole document to the comment mean")
    # With --item-col: the share of the item titles' embedding in the text side of a user's
    # vector. What a user reviewed says as much about their interests as what they wrote; 0.5
    # keeps most of the gain of higher weights with steadier segments (figures: docs/decisions.md).
    item_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    # The users' own phrases (an LSA of them) beside the encoder's vector: groups that write in the
    # same register but with other words come apart (figures: docs/decisions.md).
    lexical_weight: float = Field(default=0.7, ge=0.0, le=4.0,
                                  description="weight of the users' own phrases beside the encoder (0 = off)")
    lexical_dims: int = Field(default=30, ge=2, le=500, description="dimensions of the users' phrase space")
    min_segment_size: int | None = Field(default=None, ge=2)
    reduce_dims: int = Field(default=16, ge=0)
    # 1: larger values (HDBSCAN's own default ties it to the segment size) call many users noise
    # and found the dev sets' groups worse (docs/decisions.md); noise users join a segment anyway.
    min_samples: int | None = Field(default=1, ge=1, description="HDBSCAN min_samples; None: half the min segment size")
    assign_noise: bool = True
    # Fits on 80 % resamples (each on 14 of the 16 dimensions), one majority cut, k-means steps:
    # reruns on other samples give the same segments far more often than one fit does. 100: with
    # fewer, a pair's co-association rests on too few shared resamples (~32 of 50, ±0.09 at the
    # 0.5 cut) for two seeds to agree (figures: docs/decisions.md).
    consensus: int = Field(default=100, ge=0, le=200, description="fits whose co-association is cut once (0 = one HDBSCAN fit)")
    # Louvain: steadier across reruns than HDBSCAN fits, with the same fit to the dev sets'
    # groups (figures: docs/decisions.md).
    consensus_base: Literal["louvain", "hdbscan"] = Field(default="louvain", description="what each consensus fit is")
    # The grain: exactly this many leaf segments where the data allows (None: what the consensus
    # finds), and the levels of the segment tree (1: flat; 2: about sqrt(leaves) parents above them).
    n_segments: int | None = Field(default=None, ge=1, description="leaf segments asked for (None: automatic)")
    n_parents: int | None = Field(default=None, ge=2, description="parents of the leaves asked for (None: about sqrt(leaves))")
    levels: int = Field(default=2, ge=1, le=3, description="levels of the segment tree (1 = flat)")
    # lasting segments
    stability: int = Field(default=0, ge=0, le=50, description="rerun clustering with N seeds and report ARI (0 = off)")
    stability_sample: float = Field(default=0.9, gt=0.0, le=1.0, description="share of users each stability rerun sees")
    period: Period = Field(default="month", description="with time_col: segment shares per period")
    # naming
    taxonomy: str = Field(default="iab", description="names' vocabulary: iab, none, or a .tsv/.toml file")
    audience: str = Field(default="people", description="who the users are in names and descriptions "
                                                        "(a table of prompts/data/audience.toml: people, customers, ...)")
    # privacy
    sensitive: SensitiveMode = Field(default="flag", description="segments about a sensitive topic (health, religion, "
                                     "politics ...): flag them, or exclude their members (left unsegmented, for ad use)")
    redact_pii: bool = False
    k_anonymity: int = Field(default=1, ge=1, description="segments smaller than this are not named")

    @field_validator("llm_users", mode="before")
    @classmethod
    def _llm_users(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("all", "auto"):
            return value.strip().lower()
        try:
            number = int(str(value).strip()) if not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or number < 1:
            raise ValueError(f"must be a number of users (at least 1), all or auto, not {value!r}")
        return number

    # Before the Literal check, so an unknown name gets this message rather than pydantic's.
    @field_validator("engine", mode="before")
    @classmethod
    def _known_engine(cls, value: object) -> object:
        from tagger.llm.base import ENGINES

        if isinstance(value, str) and value not in ENGINES:
            raise ValueError(f"unknown engine '{value}', choose one of: {', '.join(ENGINES)}")
        return value


def load_config_file(path: Path) -> dict:
    """Settings from a TOML file (keys as in RunConfig); CLI options given explicitly win."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}; check --config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc}); fix it") from None


def make_config(**values) -> RunConfig:
    try:
        return RunConfig(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "config"
        raise ConfigError(f"invalid setting {where}: {first['msg']}; see tagger segment --help") from None
