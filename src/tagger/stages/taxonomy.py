"""The vocabulary segments are named in: a taxonomy of interests, rendered as audience names.

By default the IAB Tech Lab's Content Taxonomy 3.1 (prompts/data/iab-content-taxonomy-3.1.tsv,
CC BY 3.0): the ad industry targets audiences by its IDs, so a segment named from a node keeps
the node's ID and path. Each node becomes an audience name by its Tier 1 branch's rule
(prompts/data/taxonomy.toml: "Sports" → "{name} fans", so Baseball → "baseball fans"), and is
judged by its meaning, the node with its path ("Baseball (Sports)"), so "Windows" under
Operating Systems is not read as the windows of a house. A user's own taxonomy is a TSV in the
same layout or a TOML of `name = meaning`; `none` names from the segments' phrases alone.
"""

from __future__ import annotations

import csv
import io
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tagger.errors import ConfigError
from tagger.prompts import data_file, data_path

SHIPPED = "iab-content-taxonomy-3.1.tsv"
RULES = "taxonomy.toml"
OFF = "none"
BUILT_IN = "iab"
_HEADER = ("Unique ID", "Parent", "Name")


@dataclass(frozen=True)
class Topic:
    """One name a segment may take from the taxonomy."""

    name: str  # the audience name offered: "baseball fans"
    meaning: str  # what is embedded to place it among the segments: "Baseball (Sports)"
    # what must be close to one of a segment's own phrases: the node alone ("Baseball"), as its
    # path ("... (Entertainment > Music)") would ground any music genre in a word like "album"
    grounds: str = ""
    iab_id: str = ""  # the node's ID, "" for a TOML entry
    iab_path: str = ""  # "Sports > Baseball"
    tier: int = 1


def load_taxonomy(spec: str | Path | None, prompts: str | Path | None = None) -> tuple[Topic, ...]:
    """`iab` (the shipped file, or a prompts folder's own copy), `none`, or a .tsv/.toml path."""
    if spec is None or str(spec) == BUILT_IN:
        return _load(str(_shipped(prompts)), str(prompts or ""))
    if str(spec) == OFF:
        return ()
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(f"taxonomy file not found: {path}; pass a .tsv in the IAB layout, a .toml of "
                          f"name = meaning, '{BUILT_IN}' or '{OFF}' to --taxonomy")
    return _load(str(path.resolve()), str(prompts or ""))


def _shipped(prompts: str | Path | None) -> Path:
    path = data_path(SHIPPED, prompts)
    if path is not None:
        return path
    raise ConfigError(f"the shipped taxonomy {SHIPPED} is missing from the prompts folder; reinstall tagger "
                      f"or pass --taxonomy {OFF}")


@cache
def _load(path: str, prompts: str) -> tuple[Topic, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; save it as UTF-8 or pass --taxonomy {OFF}") from None
    if path.endswith(".toml"):
        return _from_toml(path, text)
    return _from_tsv(path, text, _rules(prompts or None))


def _from_toml(path: str, text: str) -> tuple[Topic, ...]:
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix it or pass --taxonomy {OFF}") from None
    table = table.get("names", table)
    if not table or not all(isinstance(v, str) for v in table.values()):
        raise ConfigError(f"{path}: write one `name = \"meaning\"` line per audience name "
                          "(e.g. \"dog owners\" = \"dogs, dog food and leashes\")")
    return tuple(Topic(name=str(n).strip().lower(), meaning=f"{n} ({about})" if about else str(n),
                       grounds=str(about or n)) for n, about in table.items())


def _from_tsv(path: str, text: str, rules: dict) -> tuple[Topic, ...]:
    rows = list(csv.reader(io.StringIO(text.replace("\r\n", "\n")), delimiter="\t"))
    start = next((i for i, row in enumerate(rows[:5]) if tuple(c.strip() for c in row[:3]) == _HEADER), None)
    if start is None:
        raise ConfigError(f"{path} has no 'Unique ID, Parent, Name, Tier 1…' header (the IAB Content Taxonomy "
                          f"layout); fix it, or pass a .toml of name = meaning, or --taxonomy {OFF}")
    skip, branches = set(rules.get("skip", [])), rules.get("branches", {})
    default = rules.get("default", "{name} followers")
    topics = []
    for row in rows[start + 1:]:
        tiers = [c.strip() for c in row[3:7] if c.strip()]
        if len(row) < 4 or not row[0].strip() or not tiers \
                or any(" > ".join(tiers[:k]) in skip for k in range(1, len(tiers) + 1)):
            continue
        name = row[2].strip() or tiers[-1]
        meaning = f"{name} ({' > '.join(tiers[:-1])})" if len(tiers) > 1 else name
        topics.append(Topic(name=render(name, branches.get(tiers[0], default)), meaning=meaning, grounds=name,
                            iab_id=row[0].strip(), iab_path=" > ".join(tiers), tier=len(tiers)))
    return tuple(topics)


def render(name: str, rule: str) -> str:
    """A node's audience name by its branch's rule: "Dogs" with "{singular} owners" → "dog owners";
    a role that repeats the name's last word replaces it ("Shopping" → "shoppers")."""
    words = name.lower().split()
    text = rule.format(name=" ".join(words), singular=" ".join([*words[:-1], _singular(words[-1])])).split()
    if len(text) > len(words) and text[len(words)][:4] == words[-1][:4]:
        del text[len(words) - 1]
    return " ".join(text)


def _singular(word: str) -> str:
    """The dictionary's singular, unless the plural is a noun of its own ("sports", "glasses")."""
    from lemminflect import getAllLemmas

    lemmas = getAllLemmas(word).get("NOUN", ())
    return word if not lemmas or word in lemmas else lemmas[0]


@cache
def _rules(prompts: str | None) -> dict:
    return data_file(RULES, prompts)


def every_node(prompts: str | Path | None = None) -> tuple[Topic, ...]:
    """Every node of the shipped taxonomy, the branches naming skips included (the sensitive-topic
    check reads the "Sensitive Topics" branch)."""
    path = str(_shipped(prompts))
    return _every_node(path)


@cache
def _every_node(path: str) -> tuple[Topic, ...]:
    return _from_tsv(path, Path(path).read_text(encoding="utf-8-sig"), {"skip": []})
