"""The saved segment model: everything needed to place a new user in a run's segments.

Written by `segment` into `RUN/model/` as plain arrays (`.npy`) and JSON, which survive library
upgrades; the fitted HDBSCAN object is also pickled with prediction data, but only as an extra
that `load_clusterer` refuses when the library versions differ. Placement itself
(`tagger.lifecycle.assign`) needs only the portable files:

| file | what |
|---|---|
| `manifest.json` | `ModelManifest` (lifecycle/manifest.py): format version, embedder id, tag weight and mode, model id, prompt hashes, package versions, file list |
| `embedder_fingerprint.npy` | the embedder's vectors of a few fixed texts: a changed embedder is refused |
| `pca_components.npy`, `pca_mean.npy` | the PCA the clusterer saw (absent when there was no reduction) |
| `centroids.npy` | unit segment centroids in the full embedding space, row = segment id |
| `user_mean.npy` | mean user vector (drift compares centroids relative to it) |
| `members_reduced.npy`, `members_label.npy` | reduced vectors and labels of the users the clustering placed itself (not noise) |
| `members_radius.npy` | per member, the distance to its nearest fellow member (how close a new user must come) |
| `member_centroids.npy` | centroids of the clustered users alone: noise joined the nearest of these in training |
| `segments.json` | per leaf segment, in the order of the rows above: its id (what users and tables show), name, size, radius (loosest member link), strength floor, parent id, the fields a person set |
| `parents.json`, `parent_centroids.npy` | the segments above the leaves (id, name, size, level, parent id) and their unit centroids |
| `lexical_vocabulary.json`, `lexical_idf.npy`, `lexical_components.npy` | the users' phrase space (`tagger.stages.lexical`), whose dimensions follow the encoder's in every vector above; absent with `lexical_weight = 0` |
| `recut/` | what `tagger recut` re-cuts from without the comments (`tagger.lifecycle.recut_data`) |
| `document_frequencies.json` | the candidate extractor's training document frequencies (phrases held by >= 2 users) |
| `singulars.json` | the singulars training merged plurals into ("shampoos" → "shampoo"), so placement merges them alike |
| `placer.json`, `placer_weights.npy`, `placer_bias.npy` | the placer distilled from the LLM-read users (`tagger.stages.placer`): places a user from their text alone (`tagger assign` without `--llm`) |
| `placer_train_rows.npy`, `placer_train_features.npy`, `placer_train_weights.npy` | what it was fitted on (float16 features), so `tagger recut` fits it to the new segments |
| `clusterer.pkl` | the fitted HDBSCAN with prediction data (optional, version-locked) |
| `edits.jsonl` | the hand edits the segments hold (`tagger edit`; the run's own `edits.jsonl` must match it) |

Rows of the arrays are the model's own numbering (0..k-1, as the clustering made them); the ids a
person sees are each segment's `segment_id` in segments.json: the same numbers for a fresh run,
an earlier run's for segments that continue it (`segment --like`), and lasting ids after edits.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagger.errors import ModelError
from tagger.lifecycle.manifest import (FORMAT_VERSION, CandidateStats, ClustererInfo, LexicalInfo, ModelManifest,
                                       PlacerInfo, from_saved)
from tagger.pipeline import package_versions
from tagger.schemas import NO_SEGMENT
from tagger.stages.candidates import CandidateExtractor
from tagger.stages.canon import singular
from tagger.stages.clustering import Placement, Segmenter
from tagger.stages.embedding import FINGERPRINT_TEXTS, embedder_fingerprint
from tagger.stages.lexical import LexicalSpace, semantic_part
from tagger.stages.placer import FILES as PLACER_FILES
from tagger.stages.placer import TRAIN_FILES, DistilledPlacer, TrainingSet
from tagger.vectors import unit_rows

MODEL_DIR = "model"
EDITS_FILE = "edits.jsonl"
# Phrases held by one user score exactly as unseen ones (df defaults to 1), so dropping them
# loses nothing; the cap only bounds the file for very large runs.
MAX_DF_PHRASES = 300_000
FINGERPRINT_MIN_COSINE = 0.999
PICKLE_PACKAGES = ("hdbscan", "scikit-learn", "numpy")


def _unit(x: np.ndarray) -> np.ndarray:
    return unit_rows(np.asarray(x, np.float32))


@dataclass
class SegmentModel:
    """Arrays and settings of a saved model; `reduce()` maps full-space unit vectors to the
    space HDBSCAN clustered."""

    centroids: np.ndarray
    members_reduced: np.ndarray
    members_label: np.ndarray
    segments: list[dict[str, Any]]
    manifest: ModelManifest
    members_radius: np.ndarray | None = None
    member_centroids: np.ndarray | None = None
    pca_components: np.ndarray | None = None
    pca_mean: np.ndarray | None = None
    user_mean: np.ndarray | None = None
    document_frequencies: dict[str, int] = field(default_factory=dict)
    singulars: list[str] = field(default_factory=list)
    path: Path | None = None
    # The segments above the leaves (schemas.Segment's level and parent_id) and their unit centroids.
    parents: list[dict[str, Any]] = field(default_factory=list)
    parent_centroids: np.ndarray | None = None
    lexical: LexicalSpace | None = None
    embedder_fingerprint: list[list[float]] = field(default_factory=list)
    edits: list[dict[str, Any]] = field(default_factory=list)  # tagger.lifecycle.edits records, in order
    # Places a user from their text alone (None: a model saved before placers, or --tag-weight 1).
    placer: DistilledPlacer | None = None
    training: TrainingSet | None = None

    @property
    def semantic_dims(self) -> int:
        """The encoder's columns at the front of every vector (the rest: the lexical space's)."""
        return int(np.asarray(self.centroids).shape[1]) - (self.lexical.dims if self.lexical is not None else 0)

    def semantic_centroids(self, centroids: np.ndarray) -> np.ndarray:
        return semantic_part(centroids, self.semantic_dims)

    def semantic_user_mean(self) -> np.ndarray:
        """The mean of the users' encoder vectors: a joined vector scales its encoder part by
        1 / sqrt(1 + weight²), undone here (exact for users who wrote a phrase of the space)."""
        mean = np.asarray(self.user_mean, np.float32)
        if self.lexical is None:
            return mean
        return mean[: self.semantic_dims] * float(np.sqrt(1 + self.lexical.weight**2))

    def vectors_for(self, semantic: np.ndarray, corpus) -> np.ndarray:
        """New users' vectors as the model's segments are: the encoder's, joined with the saved
        phrase space's projection of their `corpus` phrases (NamingCorpus) when the run had one."""
        return semantic if self.lexical is None else self.lexical.join(semantic, corpus.phrases(self.lexical.items))

    @property
    def leaf_ids(self) -> np.ndarray:
        """Each row's segment id (the id users and tables show)."""
        return np.array([int(s["segment_id"]) for s in self.segments], np.int64)

    def ids_of(self, rows: np.ndarray) -> np.ndarray:
        """Rows of this model's arrays → segment ids; NO_SEGMENT stays."""
        rows = np.asarray(rows, np.int64)
        ids = self.leaf_ids
        return np.where(rows >= 0, ids[np.maximum(rows, 0)] if len(ids) else NO_SEGMENT, NO_SEGMENT)

    def place(self, vectors: np.ndarray, usable: np.ndarray | None = None,
              assign_noise: bool | None = None) -> Placement:
        """The saved segmentation's placement of `vectors` (tagger.lifecycle.assign's rule), by segment id."""
        placed = self.segmenter(assign_noise).place(vectors, usable)
        return Placement(self.ids_of(placed.labels), placed.strengths, placed.assigned_by)

    def parent_of(self) -> dict[int, int]:
        """Every segment's parent id, leaves and parents alike; -1 at the top."""
        return {int(s["segment_id"]): int(s.get("parent_id", -1)) for s in [*self.segments, *self.parents]}

    def level_of(self, level: int, leaf_labels: np.ndarray) -> np.ndarray:
        """The ids at `level` (0 = the leaves themselves) of users in the given leaves; -1 stays -1."""
        parent_of = self.parent_of()
        labels = np.asarray(leaf_labels, np.int64)
        for _ in range(level):
            labels = np.array([parent_of.get(int(x), -1) if x >= 0 else -1 for x in labels], np.int64)
        return labels

    @property
    def levels(self) -> int:
        return 1 + max((int(p["level"]) for p in self.parents), default=0)

    def segmenter(self, assign_noise: bool | None = None) -> Segmenter:
        """The fitted segmentation this model saved, ready to `place` new users (rows, not ids)."""
        noise = self.manifest.assign_noise if assign_noise is None else assign_noise
        segmenter = Segmenter(assign_noise=bool(noise))
        segmenter.centroids_ = _unit(self.centroids)
        segmenter.pca_components_, segmenter.pca_mean_ = self.pca_components, self.pca_mean
        segmenter.members_reduced_, segmenter.members_label_ = self.members_reduced, self.members_label
        segmenter.members_radius_, segmenter.member_centroids_ = self.members_radius, self.member_centroids
        segmenter.strength_floor_ = np.array([s["strength_floor"] for s in self.segments])
        segmenter.user_mean_ = self.user_mean
        return segmenter

    def extractor(self) -> CandidateExtractor:
        """A candidate extractor with the training document frequencies, so a user seen in
        training gets exactly the candidates (and so the prompt and cached answer) it had."""
        stats = self.manifest.candidates
        extractor = CandidateExtractor(per_user=stats.per_user)
        extractor.n_ = stats.n_documents
        from collections import Counter

        extractor.df_ = Counter(self.document_frequencies)
        extractor.stop_ = frozenset(stats.stop_phrases)
        # The frequencies alone miss a singular written by one user only: that user's plurals
        # would then stay plural, and their candidates differ from training.
        extractor.known_ = {p for p in self.document_frequencies if " " not in p} | set(self.singulars)
        return extractor

    @property
    def names(self) -> dict[int, str]:
        """Every segment's saved name, leaves and parents."""
        return {s["segment_id"]: s["name"] for s in [*self.segments, *self.parents]}


def build_model(segmenter: Segmenter, *, names: dict[int, str], extractor: CandidateExtractor | None,
                manifest: ModelManifest | dict[str, Any], parents: list[dict[str, Any]] | None = None,
                parent_centroids: np.ndarray | None = None, lexical: LexicalSpace | None = None,
                ids: dict[int, int] | None = None, person: dict[int, list[str]] | None = None,
                fingerprint: list[list[float]] | None = None, leaf_parents: dict[int, int] | None = None,
                placer: DistilledPlacer | None = None, training: TrainingSet | None = None) -> SegmentModel:
    """The saved form of a fitted Segmenter (its users with a vector); `parents` the segments
    above its leaves, as in `SegmentModel.parents`. `ids` gives the segment id of each of the
    segmenter's own numbers (leaves 0..k-1, parents after them; missing: the number itself),
    `names` and `person` (the fields a person set) are by those ids; `leaf_parents` each leaf's
    parent by segment id, as named (naming leaves out a parent no name speaks for; default: the
    segmenter's tree). `placer` and `training`: the distilled placer and what it was fitted on."""
    ids, person = ids or {}, person or {}
    parents = parents or []
    parent_of = tree_parent_ids(segmenter)
    reducer = segmenter.reducer_
    manifest = manifest if isinstance(manifest, ModelManifest) else ModelManifest.model_validate(manifest)
    manifest = manifest.model_copy(update={
        "placement_space": "pca" if segmenter.pca_components_ is not None else "full",
        "reducer": type(reducer).__name__ if reducer is not None else None})
    members_label = segmenter.members_label_
    usable = segmenter.assigned_by_ != "unsegmented"
    labels = segmenter.labels_[usable]
    # The floor is the weakest of the users placed by their full vectors: a distilled user's vector
    # lacks the tags, so its cosine to a centroid is lower by construction.
    full = usable & (segmenter.assigned_by_ != "distilled")
    full_labels, strengths = segmenter.labels_[full], segmenter.strengths_[full]
    segments = []
    for row in range(len(segmenter.centroids_)):
        own, mine, floor = members_label == row, labels == row, full_labels == row
        sid = ids.get(row, row)
        parent = parent_of.get(row, -1) if leaf_parents is None else leaf_parents.get(sid, -1)
        segments.append({
            "segment_id": sid,
            "name": names.get(sid, f"segment {sid}"),
            "size": int(mine.sum()),
            "members": int(own.sum()),
            "radius": float(segmenter.members_radius_[own].max()) if own.any() else 0.0,
            "strength_floor": float(strengths[floor].min()) if floor.any() else 1.0,
            "parent_id": -1 if parent < 0 else parent if leaf_parents is not None else ids.get(parent, parent),
            **({"set_by_person": list(person[sid])} if person.get(sid) else {}),
        })
    model = SegmentModel(centroids=_unit(segmenter.centroids_), members_reduced=segmenter.members_reduced_,
                         members_label=members_label, segments=segments, manifest=manifest,
                         members_radius=segmenter.members_radius_, member_centroids=segmenter.member_centroids_,
                         pca_components=segmenter.pca_components_, pca_mean=segmenter.pca_mean_,
                         user_mean=segmenter.user_mean_, parents=parents,
                         parent_centroids=_unit(parent_centroids) if parent_centroids is not None and len(parents) else None,
                         lexical=lexical, embedder_fingerprint=list(fingerprint or []), placer=placer,
                         training=training)
    _add_candidates(model, extractor)
    return model


def tree_parent_ids(segmenter: Segmenter) -> dict[int, int]:
    """Leaf row → parent number, with parents numbered after the leaves (as the segments table does)."""
    tree = getattr(segmenter, "tree_parents_", [])
    if not tree:
        return {}
    k = len(segmenter.centroids_)
    return {leaf: k + int(parent) for leaf, parent in enumerate(tree[0])}


def _add_candidates(model: SegmentModel, extractor: CandidateExtractor | None) -> None:
    if extractor is not None:
        kept = sorted(((p, c) for p, c in extractor.df_.items() if c >= 2), key=lambda pc: (-pc[1], pc[0]))
        model.document_frequencies = dict(kept[:MAX_DF_PHRASES])
        known = getattr(extractor, "known_", None) or set()
        model.singulars = sorted({one for word in known if (one := singular(word)) != word and one in known})
        model.manifest.candidates = CandidateStats(per_user=extractor.per_user, n_documents=extractor.n_,
                                                   phrases=len(model.document_frequencies),
                                                   truncated=len(kept) > MAX_DF_PHRASES,
                                                   stop_phrases=sorted(getattr(extractor, "stop_", ())))
    else:
        model.manifest.candidates = CandidateStats()


def save_model(model: SegmentModel, folder: Path, clusterer: Any = None) -> None:
    """Write the model into `folder` (created); `clusterer` is pickled as an optional extra."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"centroids.npy": model.centroids, "members_reduced.npy": model.members_reduced,
             "members_label.npy": model.members_label, "members_radius.npy": model.members_radius,
             "member_centroids.npy": model.member_centroids}
    if model.pca_components is not None:
        files |= {"pca_components.npy": model.pca_components, "pca_mean.npy": model.pca_mean}
    if model.user_mean is not None:
        files["user_mean.npy"] = np.asarray(model.user_mean, np.float32)
    if model.parent_centroids is not None:
        files["parent_centroids.npy"] = np.asarray(model.parent_centroids, np.float32)
    if model.embedder_fingerprint:
        files["embedder_fingerprint.npy"] = np.asarray(model.embedder_fingerprint, np.float32)
    texts = {"parents.json": json.dumps(model.parents, indent=1, ensure_ascii=False) + "\n",
             "segments.json": json.dumps(model.segments, indent=1, ensure_ascii=False) + "\n",
             "document_frequencies.json": json.dumps(model.document_frequencies, ensure_ascii=False,
                                                     separators=(",", ":")) + "\n",
             "singulars.json": json.dumps(model.singulars, ensure_ascii=False) + "\n"}
    if model.edits:
        texts[EDITS_FILE] = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in model.edits)
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    for name, array in files.items():
        np.save(folder / name, array, allow_pickle=False)
    manifest = model.manifest.model_copy(update={"format_version": FORMAT_VERSION, "files": sorted([*files, *texts]),
                                                 "edits": len(model.edits)})
    if clusterer is not None:
        try:
            if getattr(clusterer, "prediction_data_", None) is None:
                clusterer.generate_prediction_data()
            (folder / "clusterer.pkl").write_bytes(pickle.dumps(clusterer, protocol=pickle.HIGHEST_PROTOCOL))
            manifest.clusterer = ClustererInfo(file="clusterer.pkl", packages=package_versions(PICKLE_PACKAGES))
        except Exception as exc:  # the pickle is an extra; placement never needs it
            manifest.clusterer = ClustererInfo(error=f"{type(exc).__name__}: {exc}"[:200])
    manifest.lexical = LexicalInfo(**model.lexical.save(folder)) if model.lexical is not None else None
    if model.placer is not None:
        manifest.placer = PlacerInfo(**model.placer.save(folder), files=[*PLACER_FILES])
        if model.training is not None:
            model.training.save(folder)
            manifest.placer.files += [*TRAIN_FILES]
    (folder / "manifest.json").write_text(manifest.model_dump_json(indent=1, exclude_none=True) + "\n", encoding="utf-8")


def load_model(run_dir: Path) -> SegmentModel:
    """Load RUN_DIR/model; a missing model or another format version stops with one line."""
    folder = Path(run_dir) / MODEL_DIR
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise ModelError(f"{run_dir} has no saved segment model ({MODEL_DIR}/manifest.json); "
                         "rerun `tagger segment` with this version of tagger to create one")
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{manifest_path} is not valid JSON ({exc}); rerun `tagger segment`") from None
    manifest = from_saved(data, str(run_dir))
    try:
        arrays = {name: np.load(folder / name, allow_pickle=False) for name in manifest.files if name.endswith(".npy")}
        segments = json.loads((folder / "segments.json").read_text(encoding="utf-8"))
        frequencies = json.loads((folder / "document_frequencies.json").read_text(encoding="utf-8"))
        singulars = json.loads((folder / "singulars.json").read_text(encoding="utf-8"))
        parents = json.loads((folder / "parents.json").read_text(encoding="utf-8")) if manifest.format_version >= 2 else []
        edits_path = folder / EDITS_FILE
        edits = [json.loads(line) for line in edits_path.read_text(encoding="utf-8").splitlines() if line.strip()] \
            if EDITS_FILE in manifest.files else []
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"segment model in {run_dir} is incomplete ({type(exc).__name__}: {exc}); "
                         "rerun `tagger segment`") from None
    fingerprint = arrays["embedder_fingerprint.npy"].tolist() if "embedder_fingerprint.npy" in arrays else []
    lexical = LexicalSpace.load(folder, manifest.lexical.model_dump()) if manifest.lexical else None
    placer = DistilledPlacer.load(folder) if manifest.placer else None
    training = TrainingSet.load(folder) if placer is not None else None
    return SegmentModel(centroids=arrays["centroids.npy"], members_reduced=arrays["members_reduced.npy"],
                        members_label=arrays["members_label.npy"], segments=segments, manifest=manifest,
                        members_radius=arrays["members_radius.npy"], member_centroids=arrays["member_centroids.npy"],
                        pca_components=arrays.get("pca_components.npy"), pca_mean=arrays.get("pca_mean.npy"),
                        user_mean=arrays.get("user_mean.npy"), document_frequencies=frequencies, singulars=singulars,
                        path=folder, parents=parents, parent_centroids=arrays.get("parent_centroids.npy"),
                        lexical=lexical, embedder_fingerprint=fingerprint, edits=edits, placer=placer,
                        training=training)


def check_embedder(model: SegmentModel, encoder) -> None:
    """Refuse an encoder other than the one the model was built with (name, or same name
    but different vectors, e.g. after an upgrade changed the weights)."""
    want = model.manifest.embedder
    if getattr(encoder, "name", None) != want:
        raise ModelError(f"the segment model was built with embedder '{want}', not '{getattr(encoder, 'name', '?')}'; "
                         f"assign with --embedder {want}")
    stored = np.asarray(model.embedder_fingerprint or [], np.float32)
    if stored.size:
        now = encoder.encode(list(FINGERPRINT_TEXTS))
        if now.shape != stored.shape or float((_unit(now) * _unit(stored)).sum(axis=1).min()) < FINGERPRINT_MIN_COSINE:
            raise ModelError(f"embedder '{want}' now gives different vectors than when the model was saved "
                             "(library or weights changed); rerun `tagger segment` to rebuild the model")


def load_clusterer(model: SegmentModel):
    """The pickled HDBSCAN, only when hdbscan, scikit-learn and numpy are the saved versions."""
    info = model.manifest.clusterer or ClustererInfo()
    if not info.file or model.path is None:
        raise ModelError("this segment model holds no pickled clusterer; placement uses the portable files")
    saved, now = info.packages, package_versions(PICKLE_PACKAGES)
    changed = [f"{k} {saved.get(k)} -> {now.get(k)}" for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    if changed:
        raise ModelError(f"pickled clusterer was saved with other library versions ({', '.join(changed)}); "
                         "use the portable placement or rerun `tagger segment`")
    return pickle.loads((model.path / info.file).read_bytes())


def model_for_run(segmenter: Segmenter, *, summary, config, names: dict[int, str],
                  extractor: CandidateExtractor | None, encoder, tree: tuple[list[dict[str, Any]], np.ndarray | None] = ([], None),
                  lexical: LexicalSpace | None = None, ids: dict[int, int] | None = None,
                  person: dict[int, list[str]] | None = None, leaf_parents: dict[int, int] | None = None,
                  distilled=None) -> SegmentModel:
    """A run's fitted segmentation, settings and summary (RunSummary) → the SegmentModel to save;
    `tree`: the segments above the leaves and their centroids; `ids`: the segments' ids by the
    segmenter's own numbers (`build_model`)."""
    centroids = np.asarray(segmenter.centroids_)
    manifest = ModelManifest(
        tagger_version=summary.tagger_version,
        model=summary.model,
        embedder=summary.embedder,
        embedder_dim=int(centroids.shape[1]) - (lexical.dims if lexical is not None else 0) if centroids.ndim == 2 else None,
        tag_mode=config.tag_mode,
        tag_weight=config.tag_weight,
        item_weight=config.item_weight if config.item_col else 0.0,
        assign_noise=config.assign_noise,
        prompts={name: p.sha256 for name, p in summary.prompts.items()},
        packages=summary.packages,
        users=int((segmenter.assigned_by_ != "unsegmented").sum()),
        placer_agreement=round(distilled.agreement.overall, 4) if distilled is not None
        and distilled.agreement is not None else None,
    )
    return build_model(segmenter, names=names, extractor=extractor, manifest=manifest, parents=tree[0],
                       parent_centroids=tree[1], lexical=lexical, ids=ids, person=person,
                       fingerprint=embedder_fingerprint(encoder) if encoder is not None else [],
                       leaf_parents=leaf_parents, placer=distilled.placer if distilled is not None else None,
                       training=distilled.training if distilled is not None else None)


def run_segments(run_dir: Path) -> Any:
    """The run's segments table as it is now (id, parent and sensitive flag); empty when absent."""
    import pandas as pd

    table = Path(run_dir) / "segments.parquet"
    if not table.exists():
        return pd.DataFrame(columns=["segment_id", "parent_id", "sensitive"])
    frame = pd.read_parquet(table)
    for column, empty in (("parent_id", -1), ("sensitive", "")):
        if column not in frame:
            frame[column] = empty
    return frame[["segment_id", "parent_id", "sensitive"]]


def current_names(run_dir: Path, model: SegmentModel) -> dict[int, str]:
    """Segment names as the run shows them now (`tagger rename` rewrites segments.parquet,
    not the model), falling back to the names saved with the model."""
    names = dict(model.names)
    table = Path(run_dir) / "segments.parquet"
    if table.exists():
        import pandas as pd

        frame = pd.read_parquet(table, columns=["segment_id", "name"])
        names.update({int(i): str(n) for i, n in zip(frame["segment_id"], frame["name"], strict=True)})
    return names
