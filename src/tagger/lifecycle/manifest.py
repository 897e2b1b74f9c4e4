"""`model/manifest.json`: what a saved segment model was built with, as one typed model.

Written by `segment_model.save_model` and read by `segment_model.load_model` only. Format 3 is
the first typed one; formats 1 (before the segment tree) and 2 wrote the same keys untyped and
load through `from_saved`. A new setting is one line here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tagger.errors import ModelError

FORMAT_VERSION = 3
# 1: before the segment tree (loads as a flat model); 2: untyped manifest; 3: typed, ids per segment, edits.
READABLE_VERSIONS = (1, 2, 3)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CandidateStats(Section):
    """The candidate extractor's training statistics (`SegmentModel.extractor`)."""

    per_user: int = 20
    n_documents: int = 0
    phrases: int = 0
    truncated: bool = False
    stop_phrases: list[str] = Field(default_factory=list)


class ClustererInfo(Section):
    file: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)
    error: str | None = None


class LexicalInfo(Section):
    weight: float
    dims: int
    phrases: int
    items: bool = True
    files: list[str] = Field(default_factory=list)


class PlacerInfo(Section):
    kind: str = "logistic regression"
    C: float = 1.0
    seed: int = 0
    classes: list[int] = Field(default_factory=list)
    features: int = 0
    files: list[str] = Field(default_factory=list)


class ModelManifest(Section):
    format_version: int = FORMAT_VERSION
    tagger_version: str | None = None
    model: str | None = None  # the LLM that tagged the run
    embedder: str | None = None
    embedder_dim: int | None = None
    tag_mode: str = "grounded"
    tag_weight: float = 0.3
    item_weight: float = 0.0
    assign_noise: bool = True
    prompts: dict[str, str] = Field(default_factory=dict)  # template name → sha256
    packages: dict[str, str] = Field(default_factory=dict)
    users: int = 0
    placement_space: str = "full"
    reducer: str | None = None
    candidates: CandidateStats = Field(default_factory=CandidateStats)
    files: list[str] = Field(default_factory=list)
    clusterer: ClustererInfo | None = None
    lexical: LexicalInfo | None = None
    placer: PlacerInfo | None = None  # the distilled placer (tagger.stages.placer), None before placers
    placer_agreement: float | None = None  # its cross-validated agreement with the full vectors
    edits: int = 0  # hand edits applied to the segments (model/edits.jsonl holds them)


def from_saved(data: Any, where: str) -> ModelManifest:
    """A manifest.json's content, of any readable format, as a ModelManifest."""
    if not isinstance(data, dict):
        raise ModelError(f"segment model in {where} has a manifest that is not an object; rerun `tagger segment`")
    version = data.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ModelError(f"segment model in {where} has format version {version}, this tagger reads "
                         f"{', '.join(map(str, READABLE_VERSIONS))}; rerun `tagger segment` or use the tagger "
                         "version that wrote it")
    if version < 3:  # untyped: keep what this model knows (the fingerprint is in its own file)
        data = {k: v for k, v in data.items() if k in ModelManifest.model_fields}
    try:
        return ModelManifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ModelError(f"segment model in {where} has a manifest this tagger cannot read "
                         f"({'.'.join(map(str, first['loc']))}: {first['msg']}); rerun `tagger segment`") from None
