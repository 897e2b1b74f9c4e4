"""Typed records that cross stage boundaries: comments → user documents → tags → segments."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The segment id of a user in no segment (noise kept out, an outlier, or no vector at all).
NO_SEGMENT = -1
# How a user got their segment: the clustering itself, the nearest centroid, none (noise or
# outlier at placement), no vector to place (no tags and no usable text), or the placer distilled
# from the LLM-read users, from their text alone (a user the LLM did not read), or a person moved
# them (`tagger edit --move`).
AssignedBy = Literal["cluster", "nearest", "noise", "outlier", "unsegmented", "distilled", "person"]

MAX_TAGS = 4
MAX_TAG_CHARS = 32
MAX_EVIDENCE_CHARS = 80


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserDocument(Strict):
    """Everything one user wrote that tagger reads: cleaned comments, newest first (only the
    tagging prompt is cut to the LLM's token budget)."""

    user_id: str
    comments: list[str] = Field(min_length=1)
    items: list[str] = Field(default_factory=list)
    n_comments: int = Field(description="comments after dedupe, before the --max-comments-per-user cap")

    @property
    def text(self) -> str:
        return "\n".join(self.comments)


# --- what the LLM must emit (the JSON schema given to constrained decoding) -------------


class LLMTag(Strict):
    tag: str = Field(max_length=MAX_TAG_CHARS)
    evidence: str = Field(max_length=MAX_EVIDENCE_CHARS)


class LLMTagList(Strict):
    tags: list[LLMTag] = Field(max_length=MAX_TAGS)


class LLMTagChoice(Strict):
    """Grounded mode: tags picked from the user's candidate phrases (an enum per request)."""

    tags: list[str] = Field(max_length=MAX_TAGS)


class LLMSegmentName(Strict):
    label: str = Field(max_length=40)
    description: str = Field(max_length=200)


# --- validated results ------------------------------------------------------------------


class Tag(Strict):
    tag: str = Field(min_length=1, max_length=MAX_TAG_CHARS)
    evidence: str = Field(default="", description="verbatim span from the user's comments, or ''")

    @field_validator("tag")
    @classmethod
    def _normalise(cls, value: str) -> str:
        return " ".join(value.lower().split())


class TaggedUser(Strict):
    """One user's tags; `unread`: the LLM was not asked (a run with --llm-users below the users),
    so the user has no tags at all, never ones borrowed from their segment."""

    user_id: str
    status: str = Field(pattern="^(tagged|failed|unread)$")
    tags: list[Tag] = Field(default_factory=list)
    error: str = ""
    attempts: int = 1
    prompt_tokens: int = 0
    output_tokens: int = 0
    prompt_comments: int = Field(default=0, description="comments with an excerpt in the tagging prompt")


class Segment(Strict):
    segment_id: int
    name: str
    description: str
    size: int
    top_tags: list[str]
    top_items: list[str] = Field(default_factory=list)
    evidence: list[str] = Field(default_factory=list)
    named_by: str = Field(default="llm", pattern="^(llm|fallback|withheld|person)$")
    # The taxonomy node the name came from ("545", "Sports > Baseball"); "" for a name built
    # from the segment's own phrases.
    iab_id: str = ""
    iab_path: str = ""
    # Place in the segment tree: 0 for the leaf segments users belong to, 1 for their parents, ...;
    # the id of the segment one level up (NO_SEGMENT at the top).
    level: int = 0
    parent_id: int = NO_SEGMENT
    # The sensitive category the segment is about ("religion or belief"; prompts/data/sensitive.toml), "" for none.
    sensitive: str = ""
    # What a person set by hand (`tagger edit`): "name", "description", "members"; kept by
    # `rename`, `recut` and `segment --like`.
    set_by_person: list[str] = Field(default_factory=list)
