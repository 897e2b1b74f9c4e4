"""The names a segment may take, as immutable options.

Two sources: the taxonomy's audience names (`stages/taxonomy.py`, chosen in `ranking.py`), and
names built here from the segment's own topical phrases with a role noun ("dog owners";
`prompts/data/roles.toml`). A sensitive segment's names say what its members write about, never
who they are: "christianity discussion", not "christianity followers" (`topic_label`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tagger.prompts import data_file
from tagger.stages.naming.settings import DEFAULT_AUDIENCE
from tagger.stages.naming.wording import name_form

MAX_OPTIONS = 8
MAX_LABEL_CHARS = 40
# Sources of an option.
TAXONOMY, PHRASE = "taxonomy", "phrase"


@dataclass(frozen=True)
class NameOption:
    """One name a segment may take: its label, its score on the ranking's one scale, where it
    came from (`taxonomy` or `phrase`), what it is about ("dog" for "dog owners", the node's own
    name for a taxonomy name) and, for a taxonomy name, its node."""

    label: str
    score: float = 0.0
    source: str = PHRASE
    head: str = ""
    iab_id: str = ""
    iab_path: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "score": self.score, "source": self.source, "head": self.head,
                "iab_id": self.iab_id, "iab_path": self.iab_path}


@cache
def _roles(override: str | Path | None = None) -> dict:
    return data_file("roles.toml", override)


def role_table(language: str, prompts: str | Path | None, audience: str) -> tuple[dict, list[str]]:
    """roles.toml's role nouns by head word, and the default roles for this audience."""
    table = _roles(prompts).get("zh" if language == "zh" else "en", {})
    default = table.get("default", {})
    if isinstance(default, Mapping):
        default = default.get(audience, default.get(DEFAULT_AUDIENCE, []))
    return table.get("roles", {}), list(default)


def own_roles(phrase: str, roles: Mapping[str, Sequence[str]], language: str) -> list[str]:
    head = phrase.split()[-1]
    return [role for role, heads in roles.items()
            if head in heads or (language == "zh" and any(phrase.endswith(h) for h in heads))]


def product_phrases(phrases: Sequence[str], language: str = "en", prompts: str | Path | None = None) -> list[str]:
    """A Chinese segment's phrases that name a product with a role noun of its own ("手机" →
    "手机用户"): a phone segment's first tags are its features ("短信", "铃声"), whose names with
    the default role ("短信买家") miss the product."""
    if language != "zh":
        return []
    roles, _ = role_table(language, prompts, DEFAULT_AUDIENCE)
    products = set(_roles(prompts).get("zh", {}).get("products", []))
    roles = {role: heads for role, heads in roles.items() if role in products}
    return [p for p in dict.fromkeys(phrases) if own_roles(p, roles, language)][:2]


def built_options(tags: Sequence[str], terms: Sequence[str], language: str = "en",
                  prompts: str | Path | None = None, audience: str = DEFAULT_AUDIENCE,
                  sensitive: bool = False, wordings: Mapping[str, str] | None = None) -> list[NameOption]:
    """Names built from a segment's topical phrases (tags first: the model chose them as
    interests; its terms only fill in when it has fewer than two tags), each with a role noun,
    or as a topic of discussion when the segment is `sensitive`; each phrase as the members write
    it (`wordings`: "Nintendo Switch fans", "screen protector fans", "FBI discussion")."""
    wordings = wordings or {}
    phrases = list(dict.fromkeys([*tags[:3], *terms[:3]]))
    phrases = phrases[:3] if len(tags) >= 2 else phrases[:2]
    products = product_phrases([*tags, *terms], language, prompts)
    roles, default = role_table(language, prompts, audience)
    options: dict[str, str] = {}
    for phrase in [*products, *(p for p in phrases if p not in products)]:
        shown = name_form(wordings.get(phrase, phrase), phrase)
        if sensitive:
            options.setdefault(topic_label(shown, language, prompts), phrase)
            continue
        head = shown.split()[-1].lower()
        for role in own_roles(shown.lower(), roles, language) or default:
            if language == "zh":
                option = f"{shown}{role}"
            elif role.startswith(head[:4]):  # "garden" + "gardeners": "gardeners", not "garden gardeners"
                option = " ".join([*shown.split()[:-1], role])
            else:
                option = f"{shown} {role}"
            options.setdefault(option, phrase)
    return [NameOption(label, source=PHRASE, head=phrase) for label, phrase in options.items()
            if len(label) <= MAX_LABEL_CHARS][:MAX_OPTIONS]


def topic_label(topic: str, language: str = "en", prompts: str | Path | None = None) -> str:
    """A sensitive topic as a subject of discussion ("christianity discussion", "FBI discussion",
    "枪支话题"), by prompts/data/sensitive.toml's `name` rule; the topic as given."""
    rules = data_file("sensitive.toml", prompts).get("names", {})
    rule = rules.get("zh" if language == "zh" else "en", "{topic}话题" if language == "zh" else "{topic} discussion")
    return rule.format(topic=topic)
