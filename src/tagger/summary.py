"""`run.json`: what a run was made from and what became of every row, as one typed model.

Written in one place (`write_summary`) and read in one place (`read_summary`); `pipeline.run_summary`
builds it, `tagger.run` commands (`recut`, `rename`, `edit`, `segment --like`) set their own
section. Each section is a small model: a new figure is one line in its section, a new section one
line in `RunSummary` (optional sections default to None and are left out of the file).

Format versions: 1 is the first typed one. A run.json without `format_version` was written by
tagger before it (the same keys, untyped) and is read through `_from_untyped`; a version above
`FORMAT_VERSION` stops with a one-line error that names the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tagger.errors import InputError

FORMAT_VERSION = 1
SUMMARY_FILE = "run.json"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class PromptRef(Section):
    path: str
    sha256: str


class Counts(Section):
    """Every input row's fate (`rows` = the sum of the *_rows counts, duplicates and comments
    kept), what became of the kept comments, and of the users."""

    rows: int = 0
    missing_user_id_rows: int = 0
    empty_text_rows: int = 0
    quoted_only_rows: int = 0
    duplicate_comments: int = 0
    beyond_max_users_rows: int = 0
    beyond_max_comments_rows: int = 0
    comments_kept: int = 0
    comments_embedded: int = 0
    comments_in_prompt: int = 0
    comments_not_in_prompt: int = 0
    quoted_pieces_dropped: int = 0
    signatures_dropped: int = 0
    comments_cut_at_max_chars: int = 0
    users_beyond_max_users: int = 0
    rows_without_time: int = 0
    users: int = 0
    tagged: int = 0
    failed: int = 0
    failure_reasons: dict[str, int] = Field(default_factory=dict)
    retried: int = 0
    segments: int = 0
    parent_segments: int = 0
    users_in_clusters: int = 0
    noise_assigned_to_nearest: int = 0
    unsegmented: int = 0
    unsegmented_no_content: int = 0
    segments_named_by_llm: int = 0
    unread: int = 0  # users the LLM did not read (--llm-users): their tags.jsonl status is "unread"
    distilled: int = 0  # users the distilled placer placed


class Tree(Section):
    levels: int = 1
    per_level: list[int] = Field(default_factory=list)
    # parents the cut made that no name speaks for in both children: dissolved (stages.naming.tree)
    parents_not_named: int = 0
    segments_asked: int | None = None
    parents_asked: int | None = None
    note: str = ""


class Tokens(Section):
    prompt_per_user: float = 0.0
    output_per_user: float = 0.0
    naming_prompt: int = 0
    naming_output: int = 0


class CacheUse(Section):
    enabled: bool = True
    hits: int = 0
    misses: int = 0


class Embedding(Section):
    comments: int = 0
    pieces: int = 0
    seconds: float = 0.0
    comments_per_s: float = 0.0
    pieces_per_s: float = 0.0
    store: StoreUse | None = None  # the comment-vector store: texts found embedded, texts embedded now


class StoreUse(Section):
    hits: int = 0
    misses: int = 0


class LLMBudget(Section):
    """How many users the LLM read (`--llm-users`, stages.sampling): the first sample covering
    every pre-group, the reserve spent on the users the placer was least sure of, and the calls."""

    users: int = 0
    llm_users: int = 0
    sample: int = 0
    reserve: int = 0
    read: int = 0
    setting: int | str = "auto"
    tag_answers_cached: int = 0
    tag_requests_sent: int = 0
    engine_calls: int = 0


class SegmentAgreement(Section):
    segment_id: int
    name: str = ""
    users: int
    agreement: float


class Agreement(Section):
    """How often the distilled placer (stages.placer) puts a read user where the full vectors put
    them, cross-validated on the read users; `placed_estimate` on those it was sure enough to place."""

    overall: float
    users: int
    folds: int
    warn_below: float
    low: bool
    placed_estimate: float | None = None
    per_segment: list[SegmentAgreement] = Field(default_factory=list)


class ModelRef(Section):
    path: str
    format_version: int


class SegmentStability(Section):
    segment_id: int
    segment_name: str
    size: int
    mean_jaccard: float
    min_jaccard: float
    stable: bool


class LevelStability(Section):
    mean_ari: float
    min_ari: float
    pairwise_ari: list[float]
    segments_per_run: list[int]


class Stability(Section):
    runs: int
    seeds: list[int]
    sample_fraction: float
    segments_per_run: list[int]
    mean_ari: float
    min_ari: float
    pairwise_ari: list[float]
    unstable_below_jaccard: float
    segments: list[SegmentStability]
    unstable: list[int]
    levels: dict[str, LevelStability] | None = None  # per tree level, "0" = leaves; None for a flat run


class Trend(Section):
    segment_id: int
    segment_name: str
    share_early: float
    share_late: float
    change: float


class OverTime(Section):
    period: str
    periods: int
    first: str | None = None
    last: str | None = None
    split_at: str | None = None
    growing: list[Trend] = Field(default_factory=list)
    shrinking: list[Trend] = Field(default_factory=list)


class Renamed(Section):
    at: str
    cache: CacheUse
    wall_time_s: float
    kept_person_names: list[int] = Field(default_factory=list)  # ids whose name a person set: not renamed


class Recut(Section):
    at: str
    from_run: str = Field(alias="from")
    cache: CacheUse
    wall_time_s: float
    dropped: list[str] = Field(default_factory=list)


class LineageMatch(Section):
    """A segment of this run that continues one of the earlier run's: it took that one's id and name."""

    segment_id: int
    name: str
    level: int = 0
    was_id: int  # this run's own number for it before it took the earlier id
    size: int
    overlap: float  # share of its members the earlier run's model places in the earlier segment
    jaccard: float  # those members against everyone placed there
    centroid_similarity: float  # centred cosine of the two centroids, encoder part


class LineageSegment(Section):
    segment_id: int
    name: str
    size: int
    level: int = 0


class Lineage(Section):
    """`tagger segment --like OLD`: how this run's segments continue OLD's."""

    like: str
    matched: list[LineageMatch] = Field(default_factory=list)
    new: list[LineageSegment] = Field(default_factory=list)
    vanished: list[LineageSegment] = Field(default_factory=list)  # OLD's segments with no match here


class EditsApplied(Section):
    """Hand edits the run holds (`edits.jsonl`), and those that no longer apply after a recut or
    a `--like` carry, with why."""

    file: str = "edits.jsonl"
    applied: int = 0
    not_applying: list[dict[str, Any]] = Field(default_factory=list)


class RunSummary(Section):
    format_version: int = FORMAT_VERSION
    tagger_version: str
    config: dict[str, Any]  # RunConfig's fields (the key never written); `run_config` validates them
    model: str
    engine_options: dict[str, Any] = Field(default_factory=dict)
    embedder: str
    language: str = "en"
    prompts: dict[str, PromptRef] = Field(default_factory=dict)
    packages: dict[str, str] = Field(default_factory=dict)
    python: str = ""
    counts: Counts = Field(default_factory=Counts)
    tree: Tree = Field(default_factory=Tree)
    tokens: Tokens = Field(default_factory=Tokens)
    cache: CacheUse = Field(default_factory=CacheUse)
    timings_s: dict[str, float] = Field(default_factory=dict)
    wall_time_s: float = 0.0
    embedding: Embedding | None = None
    segment_model: ModelRef | None = None
    stability: Stability | None = None
    over_time: OverTime | None = None
    renamed: Renamed | None = None
    recut: Recut | None = None
    lineage: Lineage | None = None
    edits: EditsApplied | None = None
    llm: LLMBudget | None = None
    agreement: Agreement | None = None  # None where nothing was distilled (--tag-weight 1, one segment)

    def to_json(self) -> str:
        # what is None is left out (a run without --stability has no "stability" key) and reads
        # back as None; the settings keep theirs (`config` is a plain dict)
        return json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True), indent=2,
                          ensure_ascii=False) + "\n"


def write_summary(folder: Path, summary: RunSummary) -> Path:
    """Write `summary` as FOLDER/run.json (the folder is a run being built aside)."""
    path = Path(folder) / SUMMARY_FILE
    path.write_text(summary.to_json(), encoding="utf-8")
    return path


def read_summary(run_dir: Path) -> RunSummary:
    """RUN_DIR/run.json as a RunSummary; one-line InputErrors say what to do when it cannot be read."""
    path = Path(run_dir) / SUMMARY_FILE
    if not path.exists():
        raise InputError(f"{run_dir} is not a tagger run folder (no {SUMMARY_FILE}); "
                         "pass the --out folder of `tagger segment`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); rerun `tagger segment` to rewrite the run") from None
    return summary_from_dict(data, run_dir)


def summary_from_dict(data: Any, where: Path | str = "run.json") -> RunSummary:
    if not isinstance(data, dict):
        raise InputError(f"run.json of {where} is not an object; rerun `tagger segment` to rewrite the run")
    version = data.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise InputError(f"run.json of {where} has format version {version}, this tagger reads up to "
                         f"{FORMAT_VERSION}; upgrade tagger or rerun `tagger segment` with this one")
    try:
        return RunSummary.model_validate(data if version is not None else _from_untyped(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where_in = ".".join(map(str, first["loc"]))
        raise InputError(f"run.json of {where} holds what this tagger cannot read ({where_in}: {first['msg']}); "
                         "rerun `tagger segment` to rewrite the run") from None


def _from_untyped(data: dict[str, Any]) -> dict[str, Any]:
    """A run.json written before format versions: the same sections, keys this model has not
    kept dropped (nothing reads them), and settings a run of that time did not record filled in."""
    known = RunSummary.model_fields
    out = {k: v for k, v in data.items() if k in known or k in ("from",)}
    out["format_version"] = FORMAT_VERSION
    out.setdefault("tagger_version", "unknown")
    out.setdefault("model", str(data.get("config", {}).get("model", "unknown")))
    out.setdefault("embedder", str(data.get("config", {}).get("embedder", "unknown")))
    out["config"] = {"item_weight": 0.0, **out.get("config", {})}  # one without it embedded no item titles
    counts = out.get("counts")
    if isinstance(counts, dict):
        out["counts"] = {k: v for k, v in counts.items() if k in Counts.model_fields}
    return out
