"""The naming stage's settings, built in one place from a run's config.

`segment`, `rename`, `recut` and `prompts render` all call `NamingSettings.from_config`, so the
same run is named the same way whichever command names it: the same generation parameters, the
same rule on when the LLM is asked, the same audience, taxonomy and sensitive-topic table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tagger.config import RunConfig
from tagger.errors import ConfigError
from tagger.llm.base import GenerationParams
from tagger.prompts import data_file
from tagger.stages.taxonomy import Topic, load_taxonomy

# Output budget of one naming answer: a short label and a one-sentence description under a schema.
NAMING_MAX_TOKENS = 120
# Who the people in a segment are, in prompts/data/audience.toml: the data need not be reviews.
DEFAULT_AUDIENCE = "people"
# The model shipped inside a PyPI package (tagger.llm.models): English-first.
EMBEDDED_MODEL = "embedded"


@dataclass(frozen=True)
class NamingSettings:
    """Everything naming needs besides the profiles, the engine and the template.

    `use_llm` is False where the model is known to name worse than the ranking: the embedded
    135M model's Chinese names matched their segments far worse than the segments' own phrases
    (docs/decisions.md), so a Chinese run with it takes its best-ranked names."""

    params: GenerationParams
    language: str = "en"
    use_llm: bool = True
    audience: str = DEFAULT_AUDIENCE
    prompts: Path | None = None
    # Segments smaller than this are not named, and a parent never names them (--k-anonymity).
    k_anonymity: int = 1
    # The taxonomy's audience names (stages/taxonomy.py); () names from the segments' phrases only.
    topics: tuple[Topic, ...] = field(default=(), repr=False)
    # "flag": sensitive segments are marked; "exclude": their members are left unsegmented.
    sensitive: str = "flag"

    @classmethod
    def from_config(cls, config: RunConfig, *, language: str, model: str | None = None) -> NamingSettings:
        """The one constructor. `language` is the run's ("en" or "zh", from its text); `model`
        the LLM the run named with (default: the config's)."""
        params = GenerationParams(max_tokens=NAMING_MAX_TOKENS, temperature=config.temperature, seed=config.seed)
        model = config.model if model is None else model
        audience_words(config.audience, config.prompts)  # an unknown audience fails here, first
        return cls(params=params, language=language, use_llm=not (language == "zh" and model == EMBEDDED_MODEL),
                   audience=config.audience, prompts=config.prompts, k_anonymity=config.k_anonymity,
                   topics=tuple(load_taxonomy(config.taxonomy, config.prompts)),
                   sensitive=getattr(config, "sensitive", "flag"))

    def words(self) -> dict[str, str]:
        return audience_words(self.audience, self.prompts)


@cache
def audience_words(audience: str = DEFAULT_AUDIENCE, override: str | Path | None = None) -> dict[str, str]:
    """The words naming uses for the people in a segment (prompts/data/audience.toml)."""
    table = data_file("audience.toml", override)
    if audience not in table:
        raise ConfigError(f"unknown audience '{audience}'; choose one of: {', '.join(table) or 'none defined'} "
                          "(prompts/data/audience.toml)")
    return {str(k): str(v) for k, v in table[audience].items()}
