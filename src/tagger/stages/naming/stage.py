"""The naming stage, end to end: profile a level, check it for sensitive topics, rank its
names; then name the tree, leaves first, and describe each segment in one sentence.

Leaves are named first: they are what users belong to, and a parent named first took its best
child's name ("book readers" over the book leaf). No segment takes a name a level below took,
names are unique within a level, and a name the LLM chose that repeats a member's words verbatim
(text planted in a comment) gives way to the best-ranked name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from tagger.cache import ResultCache
from tagger.llm.base import Engine
from tagger.llm.structured import CallStats
from tagger.prompts import PromptTemplate
from tagger.schemas import NO_SEGMENT, TaggedUser, UserDocument
from tagger.stages.naming.candidates import NameOption
from tagger.stages.naming.describe import built_description, example_texts, llm_description, stems
from tagger.stages.naming.llm import NAME_VARIABLES, NamingRequest, ask, naming_request, quotes_users
from tagger.stages.naming.profile import NamingCorpus, SegmentProfile, profile_segments
from tagger.stages.naming.ranking import level_topics, rank_options
from tagger.stages.naming.sensitive import judge_sensitive, named_category, parent_category
from tagger.stages.naming.settings import NamingSettings
from tagger.stages.naming.tree import covering_options, shared_node_options


class SegmentName(NamedTuple):
    """A segment's name, its one-sentence description, who chose it, the taxonomy node it came
    from, and the sensitive category it is about ("" for none)."""

    label: str
    description: str
    named_by: str  # "llm" or "fallback"
    iab_id: str = ""
    iab_path: str = ""
    sensitive: str = ""


@dataclass(frozen=True)
class NamedTree:
    """Naming's result: one name per profile (None for a parent that was not made) and every
    kept segment's parent after that (a dissolved parent's children take its own parent)."""

    names: tuple[SegmentName | None, ...]
    parents: dict[int, int]

    def kept(self, profiles: Sequence[SegmentProfile]) -> list[tuple[SegmentProfile, SegmentName]]:
        return [(p, n) for p, n in zip(profiles, self.names, strict=True) if n is not None]


def profile_level(labels: np.ndarray, strengths: np.ndarray, centroids: np.ndarray, tagged: Sequence[TaggedUser],
                  corpus: NamingCorpus, encoder, settings: NamingSettings, *, level: int = 0,
                  documents: Sequence[UserDocument] = (), children: Sequence[tuple[int, int, str]] = ()
                  ) -> list[SegmentProfile]:
    """Profiles of one level's segments (0-based ids within the level), checked for sensitive
    topics and with their names ranked. `children`: (parent index, size, category) of the level
    below, so a parent most of whose members are in one sensitive category is flagged too."""
    profiles = profile_segments(labels, strengths, centroids, tagged, corpus, documents=documents,
                                language=settings.language)
    own = judge_sensitive(profiles, centroids[[p.segment_id for p in profiles]], encoder, settings.language,
                          settings.prompts)
    profiles = [replace(p, level=level, sensitive=label or parent_category(
        [(size, category) for parent, size, category in children if parent == p.segment_id]))
        for p, label in zip(profiles, own, strict=True)]
    topics = level_topics(settings.topics, settings.language, level)
    ranked = rank_options(profiles, centroids[[p.segment_id for p in profiles]], encoder, settings, topics)
    named = [named_category(p, settings.prompts) if not p.sensitive else "" for p in ranked]
    if not any(named):
        return ranked
    # a segment whose own names say it is about a sensitive topic is ranked again, as topics
    flagged = [replace(p, sensitive=label) if label else p for p, label in zip(profiles, named, strict=True)]
    return rank_options(flagged, centroids[[p.segment_id for p in profiles]], encoder, settings, topics)


def name_tree(profiles: Sequence[SegmentProfile], engine: Engine | None, template: PromptTemplate,
              settings: NamingSettings, *, cache: ResultCache | None = None, stats: CallStats | None = None,
              requests: list[NamingRequest] | None = None) -> NamedTree:
    """Names for the segments of every level, the leaves first (see the module's docstring).
    `requests` collects every request built, as sent (or as it would be sent, when cached)."""
    template.check_variables(NAME_VARIABLES)
    by_id = {p.segment_id: p for p in profiles}
    parents = {p.segment_id: p.parent_id for p in profiles}
    chosen: dict[int, NameOption] = {}
    names: dict[int, SegmentName | None] = {}
    taken: set[str] = set()
    for level in sorted({p.level for p in profiles}):
        own = [p for p in profiles if p.level == level]
        free: dict[int, list[NameOption]] = {}
        for p in own:
            children = [(by_id[c], chosen[c]) for c, parent in parents.items() if parent == p.segment_id and c in chosen]
            options = [o for o in p.options if o.label.lower() not in taken]
            if children:
                shared = shared_node_options(p, children, settings, taken)
                labels = {o.label for o in shared}
                options = [*shared, *(o for o in covering_options(replace(p, options=tuple(options)), children, settings)
                                      if o.label not in labels)]
                if not options:  # no name speaks for half its members: not made
                    names[p.segment_id] = None
                    for child, _ in children:
                        parents[child.segment_id] = p.parent_id
                    continue
            free[p.segment_id] = options
        named = _name_level([p for p in own if p.segment_id in free], free, engine, template, settings, cache=cache,
                            stats=stats, requests=requests, level=own)
        for p in own:
            if p.segment_id in named:
                name, option = named[p.segment_id]
                names[p.segment_id], chosen[p.segment_id] = name, option
                taken.add(name.label.lower())
    for sid, parent in list(parents.items()):  # a dissolved grandparent's children move up again
        while parent != NO_SEGMENT and names.get(parent, True) is None:
            parent = parents.get(parent, NO_SEGMENT)
        parents[sid] = parent
    kept = {sid: parent for sid, parent in parents.items() if names.get(sid) is not None}
    return NamedTree(tuple(names.get(p.segment_id) for p in profiles), kept)


def _name_level(own: Sequence[SegmentProfile], free: dict[int, list[NameOption]], engine: Engine | None,
                template: PromptTemplate, settings: NamingSettings, *, cache, stats, requests, level
                ) -> dict[int, tuple[SegmentName, NameOption]]:
    """One level's names, unique within it: the LLM's pick among each segment's close calls
    where it is asked, else its best-ranked option; and its description."""
    asked = [naming_request(p, free[p.segment_id], level, template, settings) for p in own if free[p.segment_id]]
    if requests is not None:
        requests.extend(asked)
    answers: dict[int, tuple[str, str]] = {}
    if engine is not None and asked and settings.use_llm:
        answers = ask(asked, engine, template, settings, lambda r, a: (a.label, a.description), cache=cache,
                      stats=stats)
    examples = example_texts(template)
    used: set[str] = set()
    out = {}
    for p in sorted(own, key=lambda p: (-p.size, p.segment_id)):
        options = free[p.segment_id]
        label, written = answers.get(p.segment_id, ("", ""))
        if label and quotes_users(label, list(p.quotes), list(p.top_tags)):
            label, written = "", ""  # a name quoting a member may be text planted in a comment
        by = "llm" if label else "fallback"
        option = next((o for o in options if o.label == label), None) or _first_free(options, used) \
            or NameOption(_unnamed(p, settings.language))
        if option.label.lower() in used:
            option = _first_free(options, used) or replace(option, label=f"{option.label} #{p.segment_id}")
            by = "fallback"
        used.add(option.label.lower())
        out[p.segment_id] = (SegmentName(option.label, describe(p, option, written, settings, examples), by,
                                         option.iab_id, option.iab_path, p.sensitive), option)
    return out


def _first_free(options: Sequence[NameOption], used: set[str]) -> NameOption | None:
    return next((o for o in options if o.label.lower() not in used), None)


def _unnamed(profile: SegmentProfile, language: str) -> str:
    return f"用户群 {profile.segment_id}" if language == "zh" else f"segment {profile.segment_id}"


def describe(profile: SegmentProfile, option: NameOption, written: str, settings: NamingSettings,
             examples: set[str] = frozenset()) -> str:
    """The LLM's sentence when it is usable and the segment is not sensitive (its stance words are
    never the members' own); else the sentence built from the segment's topical phrases."""
    subject = subject_of(option, profile, settings.language)
    if written and not profile.sensitive:
        shown = " ".join([*profile.top_tags, *profile.top_terms, *profile.quotes])
        kept = llm_description(written, shown=shown, label=option.label, subject=subject, example_texts=examples,
                               language=settings.language)
        if kept:
            return kept
    return built_description(described_topics(profile, subject, settings.language), settings.words(),
                             settings.language)


def described_topics(profile: SegmentProfile, subject: str, language: str) -> list[str]:
    """What a built description names: the subject, then the segment's other topical phrases that
    most members write, each as they write it ("screen protectors", "FBI") and none the same
    subject as one named before it."""
    topics = [profile.wording(subject)] if subject else []
    for phrase in sorted(profile.topical(language=language), key=lambda t: -profile.shares.get(t, 0.0)):
        wording = profile.wording(phrase)
        if not any(_same_subject(wording.lower(), t.lower(), language) for t in topics):
            topics.append(wording)
    return topics


def subject_of(option: NameOption, profile: SegmentProfile, language: str) -> str:
    """What a segment named `option` writes about: the option's head, else its first topical phrase."""
    if option.head:
        return option.head
    topical = profile.topical(language=language)
    return topical[0] if topical else ""


def _same_subject(phrase: str, subject: str, language: str) -> bool:
    if language == "zh":
        return phrase in subject or subject in phrase
    return bool(stems(phrase) & stems(subject))


def name_rule(profile: SegmentProfile, label: str, iab_path: str = "") -> str:
    """Why a segment's name is headed as it is: its taxonomy node, or the topical verdict on the
    phrase it was built from (the eval harness prints one per name)."""
    if iab_path:
        return f"taxonomy node: {iab_path}"
    option = next((o for o in profile.options if o.label == label), None)
    if option is None or not option.head:
        return "no option: named by its id"
    return profile.verdicts.get(option.head, f"no verdict on '{option.head}'")


def best_name(profile: SegmentProfile, settings: NamingSettings) -> SegmentName:
    """Named without the LLM: the best-ranked name (the eval harness's "tags only" names)."""
    option = profile.options[0] if profile.options else NameOption(_unnamed(profile, settings.language))
    return SegmentName(option.label, describe(profile, option, "", settings), "fallback", option.iab_id,
                       option.iab_path, profile.sensitive)
