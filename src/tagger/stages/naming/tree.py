"""Parents that mean something: a parent is named by the deepest taxonomy node its children
share, or by a topic of its own that speaks for its members; else it is not made.

A name speaks for a parent when it speaks for at least COVERED of its members, judged on its
children as named: a child whose taxonomy node lies under the name's ("Sports" over "Sports >
Fishing Sports"), or whose name, first tags or topical phrases hold what the name is about
("book" for a child about "book, story, reading"). The encoder cannot judge this: every shopping
name is near every shopping segment. Where no name speaks for half its members, the parent is
dissolved and its children stand where it stood (at the top, for the parents of the leaves).
Never a list of its children's names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tagger.stages.naming.candidates import TAXONOMY, NameOption, topic_label
from tagger.stages.naming.describe import stem_forms, stems
from tagger.stages.naming.profile import SegmentProfile
from tagger.stages.naming.settings import NamingSettings

COVERED = 0.5
# Words any name of a group may hold; they say nothing of what it is about.
_ROLE_WORDS = frozenset("""fans followers users owners buyers shoppers lovers enthusiasts readers players
parents cooks gardeners travellers visitors learners goers celebrants discussion and of the""".split())


def shared_node_options(parent: SegmentProfile, children: Sequence[tuple[SegmentProfile, NameOption]],
                        settings: NamingSettings, taken: set[str]) -> list[NameOption]:
    """The deepest taxonomy node that two or more children named from the taxonomy share, where
    the children under it hold at least COVERED of the parent's members (deepest first, then the
    nodes above it), as options; none that a segment below already took."""
    total = sum(child.size for child, _ in children)
    weight: dict[str, int] = {}
    count: dict[str, int] = {}
    for child, name in children:
        tiers = name.iab_path.split(" > ") if name.iab_path else []
        for k in range(1, len(tiers) + 1):
            path = " > ".join(tiers[:k])
            weight[path] = weight.get(path, 0) + child.size
            count[path] = count.get(path, 0) + 1
    by_path = {t.iab_path: t for t in settings.topics if t.iab_path}
    # shared: two children at least, or a parent would be named after its largest child alone
    shared = sorted((p for p, w in weight.items() if w >= COVERED * total and count[p] >= 2 and p in by_path),
                    key=lambda p: (-p.count(" > "), -weight[p], p))
    options = []
    for path in shared:
        topic = by_path[path]
        tier = path.split(" > ")[-1]
        label = topic_label(tier.lower(), settings.language, settings.prompts) if parent.sensitive else topic.name
        if label.lower() not in taken:
            options.append(NameOption(label, round(weight[path] / max(total, 1), 6), TAXONOMY, tier.lower(),
                                      topic.iab_id, path))
    return options


def covering_options(parent: SegmentProfile, children: Sequence[tuple[SegmentProfile, NameOption]],
                     settings: NamingSettings) -> list[NameOption]:
    """The parent's own ranked options that speak for at least COVERED of its members, and for
    two children at least (else the parent is named after its largest child: "hair users" over
    a skin care leaf and a pet food leaf); none for a parent of one segment."""
    if len(children) < 2:  # a parent of one segment only repeats it ("guitar amplifier fans" over "guitar strings fans")
        return []
    total = sum(child.size for child, _ in children)
    kept = []
    for o in parent.options:
        spoken = [c for c, n in children if speaks_for(o, c, n, settings.language)]
        if len(spoken) >= 2 and sum(c.size for c in spoken) >= COVERED * max(total, 1):
            kept.append(o)
    return kept


def speaks_for(option: NameOption, child: SegmentProfile, name: NameOption, language: str) -> bool:
    """A parent's option speaks for a child named `name` (see the module's docstring)."""
    if option.iab_path and name.iab_path and f"{name.iab_path} >".startswith(f"{option.iab_path} >"):
        return True
    about = " ".join([name.label, *child.top_tags[:4], *child.topical(child.top_terms, language)[:4]])
    head = option.head or option.label
    if language == "zh":
        return head in about
    words = [w for w in re.findall(r"[a-z]{3,}", head.lower()) if w not in _ROLE_WORDS]
    return bool(words) and bool({s for w in words for s in stem_forms(w)} & stems(about))
