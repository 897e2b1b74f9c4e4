"""Tagging throughput per vLLM-CPU thread setting: tagger vs the raw engine, side by side.

    TAGGER_HOME=... VLLM_CPU_KVCACHE_SPACE=1 python eval/bench_throughput.py --users 96 --rounds 2

vLLM-CPU reads its thread settings (VLLM_CPU_NUM_OF_RESERVED_CPU, VLLM_CPU_OMP_THREADS_BIND)
when its engine starts, so every setting runs in its own child process with its own engine.
The settings are interleaved and their order alternates between rounds (A B C, C B A, ...)
so that the load of a shared machine falls on all of them alike. Each child measures, on
the same users and the same prompts (recorded from `tag_users` itself):

1. raw (cold): one `LLM.chat(all prompts, per-request SamplingParams)`; also warms the grammar
   compiler, which caches per schema, so the later runs are not charged for it;
2. tagger (paced): `tag_users` through `VLLMEngine` with engine calls of ~30 s (structured.Pacer),
   so progress and the answer cache move per call; answer cache off;
3. tagger, one call: the same with the whole batch in one engine call, as the CLI runs it;
4. raw (warm): the first run again, the fair reference for tagger.

The prefix cache is reset before each run. Results: eval/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "eval" / "results"
DATA = ROOT / "eval" / "data" / "amazon-sample.csv"
THREAD_VARIABLES = ("VLLM_CPU_NUM_OF_RESERVED_CPU", "VLLM_CPU_OMP_THREADS_BIND")
# name → (what it means, the thread variables set for it; the others are unset)
SETTINGS = {
    "reserve1": ("vLLM default: auto binding, 1 core reserved for the scheduler",
                 {"VLLM_CPU_NUM_OF_RESERVED_CPU": "1", "VLLM_CPU_OMP_THREADS_BIND": "auto"}),
    "reserve0": ("auto binding on all cores (VLLM_CPU_NUM_OF_RESERVED_CPU=0)",
                 {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_CPU_OMP_THREADS_BIND": "auto"}),
    "bind-all": ("explicit binding to every core (VLLM_CPU_OMP_THREADS_BIND=0-N)",
                 {"VLLM_CPU_OMP_THREADS_BIND": f"0-{(os.cpu_count() or 1) - 1}"}),
    "nobind": ("no binding: OpenMP's own thread count, threads free to move",
               {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}),
}


def load_users(source: Path, n: int):
    from tagger.stages.data import Columns, build_documents, read_table

    columns = Columns(time="timestamp_ms")
    return build_documents(read_table(source, columns), columns)[:n]


def prompt_filler(model: str, budget: int = 384):
    """tagger's prompt filling at the run's default budget, counting with the model's tokenizer."""
    from tagger.llm.models import token_counter
    from tagger.stages.excerpts import PromptFiller

    return PromptFiller(token_counter(model), budget)


def record_prompts(documents, template, params, filler):
    """The chats and schemas of tagger's main pass, captured from tag_users itself."""
    from tagger.cache import ResultCache
    from tagger.llm.fake import FakeEngine
    from tagger.stages.tagging import TagOptions, tag_users

    recorder = FakeEngine()
    captured = {}
    original = recorder.generate

    def generate(chats, *, schemas, params):
        captured.setdefault("chats", list(chats))
        captured.setdefault("schemas", list(schemas))
        return original(chats, schemas=schemas, params=params)

    recorder.generate = generate
    tag_users(documents, recorder, template,
              TagOptions(params, batch_size=len(documents), call_seconds=None, filler=filler), cache=ResultCache(None))
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


def tagger_run(documents, engine, template, params, name: str, **options) -> dict:
    from tagger.cache import ResultCache
    from tagger.llm.structured import CallStats
    from tagger.stages.tagging import TagOptions, tag_users

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
    progress: list[int] = []
    t0 = time.perf_counter()
    tagged = tag_users(documents, engine, template, TagOptions(params, batch_size=256, **options),
                       cache=ResultCache(None), stats=stats, on_batch=progress.append)
    wall = time.perf_counter() - t0
    engine.generate = original
    return summarise(name, len(documents), wall, stats.prompt_tokens, stats.output_tokens,
                     engine_time_s=round(inside["s"], 2), python_overhead_s=round(wall - inside["s"], 2),
                     engine_calls=stats.engine_calls, retried=stats.retried, failed=stats.failed,
                     tagged=sum(u.status == "tagged" for u in tagged), progress_steps=progress)


def thread_binding() -> dict[str, list[str]]:
    """CPU lists the engine's processes' threads may run on: which cores the setting really used."""
    from tagger.llm.vllm_engine import _descendants

    seen: dict[str, list[str]] = {}
    for pid in _descendants(os.getpid()):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            lists = [(task / "status").read_text().split("Cpus_allowed_list:")[1].split()[0]
                     for task in Path(f"/proc/{pid}/task").iterdir()]
        except (OSError, IndexError):
            continue
        counts = {cpus: lists.count(cpus) for cpus in sorted(set(lists))}
        seen[f"{name} ({pid})"] = [f"{n} threads on cpus {cpus}" for cpus, n in counts.items()]
    return seen


def worker(args) -> dict:
    """One setting: its own engine (the thread variables come from the parent), four runs."""
    from tagger import prompts
    from tagger.stages.candidates import CandidateExtractor
    from tagger.llm.base import GenerationParams
    from tagger.llm.models import resolve_model
    from tagger.llm.vllm_engine import VLLMEngine

    model = resolve_model("embedded")
    documents = load_users(args.data, args.users)
    filler = prompt_filler(model)
    template = prompts.load("tag")
    params = GenerationParams(max_tokens=args.max_tokens)
    # Users without a single candidate phrase send no request: leave them out of every run.
    extractor = CandidateExtractor().fit([d.text for d in documents])
    documents = [d for d in documents if extractor.candidates(d.text)]
    chats, schemas = record_prompts(documents, template, params, filler)
    assert len(chats) == len(documents), "every benchmarked user must send exactly one request"

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    engine = VLLMEngine(model, engine_options={"enable_prefix_caching": True})
    engine_start = time.perf_counter() - t0
    binding = thread_binding()
    sampling = sampling_params(schemas, params)
    runs = [raw_run(engine._llm, chats, sampling, "raw (cold grammar cache)")]
    if not args.raw_only:
        pair = [lambda: tagger_run(documents, engine, template, params, "tagger", call_seconds=30.0, filler=filler),
                lambda: tagger_run(documents, engine, template, params, "tagger, one call", call_seconds=None,
                                          filler=filler)]
        # Alternate which goes first, so neither always meets the same moment of machine load.
        runs += [run() for run in (pair if args.round % 2 else pair[::-1])]
    if args.round <= args.warm_raw_rounds:
        runs.append(raw_run(engine._llm, chats, sampling, "raw (warm)"))
    engine.close()
    return {"setting": args.worker, "env": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
            "engine_env": engine.options.get("env"), "threads": binding, "engine_start_s": round(engine_start, 1),
            "load_avg_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)], "users": len(documents), "runs": runs}


def run_setting(args, name: str, round_no: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env.update(SETTINGS[name][1])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, __file__, "--worker", name, "--round", str(round_no), "--result", str(out),
                   "--data", str(args.data),
                   "--users", str(args.users), "--max-tokens", str(args.max_tokens),
                   "--warm-raw-rounds", str(args.warm_raw_rounds)] + (["--raw-only"] if args.raw_only else [])
        print(f"== round {round_no}, setting {name}: {SETTINGS[name][1]}", flush=True)
        subprocess.run(command, env=env, check=True)
        result = json.loads(out.read_text())
    result["round"] = round_no
    return result


def summary(results: list[dict]) -> list[dict]:
    rows = []
    base = None
    for name in [n for n in SETTINGS if any(r["setting"] == n for r in results)]:  # vLLM's default first
        mine = [r for r in results if r["setting"] == name]

        def median(run: str) -> float | None:
            values = [x["users_per_s"] for r in mine for x in r["runs"] if x["run"] == run]
            return round(statistics.median(values), 3) if values else None

        row = {"setting": name, "meaning": SETTINGS[name][0], "rounds": len(mine),
               "raw_users_per_s": median("raw (warm)"), "tagger_users_per_s": median("tagger"),
               "tagger_one_call_users_per_s": median("tagger, one call")}
        per_round = lambda a, b: [x[a] / x[b] for x in ({y["run"]: y["users_per_s"] for y in r["runs"]} for r in mine)
                                  if a in x and b in x]
        if per_round("tagger, one call", "raw (warm)"):
            row["tagger_over_raw"] = round(statistics.median(per_round("tagger, one call", "raw (warm)")), 3)
        if per_round("tagger", "tagger, one call"):
            row["paced_calls_cost"] = round(1 - statistics.median(per_round("tagger", "tagger, one call")), 3)
        key = "tagger_one_call_users_per_s" if row["tagger_one_call_users_per_s"] else "raw_users_per_s"
        base = base or row[key]
        row["speedup_vs_first"] = round(row[key] / base, 2)
        rows.append(row)
    return rows


def markdown(report: dict) -> str:
    lines = [f"# Tagging throughput per vLLM-CPU thread setting ({report['machine']})", "",
             f"Command: `{report['command']}`  ",
             f"Model: {report['model']} (vLLM-CPU {report['vllm']}), {report['users']} users from {report['data']}, "
             f"prefix caching on, answer cache off. Order of the child runs (each its own engine): "
             f"{', '.join(report['order'])}. Timed on a machine shared with other jobs: compare the settings "
             f"within this run, not with other runs.", "",
             "| setting | meaning | rounds | raw (warm) users/s | tagger, one call (CLI) users/s | tagger, paced 30 s users/s | tagger one call / raw | paced calls cost | speed-up |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["summary"]:
        cost = f"{100 * r['paced_calls_cost']:.1f} %" if "paced_calls_cost" in r else "-"
        lines.append(f"| {r['setting']} | {r['meaning']} | {r['rounds']} | {r['raw_users_per_s']} | "
                     f"{r['tagger_one_call_users_per_s'] or '-'} | {r['tagger_users_per_s'] or '-'} | "
                     f"{r.get('tagger_over_raw', '-')} | {cost} | {r['speedup_vs_first']}x |")
    lines += ["", "Medians over rounds; tagger / raw and the cost of paced calls are medians of per-round ratios; "
              "speed-up is tagger (one call) users/s over vLLM's default setting. Run \"tagger\" below is the paced one.", *([""] + report["notes"] if report.get("notes") else []), "",
              "## Every run", "", "| round | setting | run | wall s | users/s | engine calls | progress steps | load avg 1 min (start, end) |",
              "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        for x in r["runs"]:
            lines.append(f"| {r['round']} | {r['setting']} | {x['run']} | {x['wall_s']} | {x['users_per_s']} | "
                         f"{x.get('engine_calls', 1)} | {len(x.get('progress_steps', [])) or '-'} | {r['load_avg_1m']} |")
    lines += ["", "## Threads of the engine processes (from /proc, after the engine started)", ""]
    for r in report["results"]:
        if r["round"] == 1:
            lines.append(f"- {r['setting']}: " + "; ".join(f"{p}: {', '.join(v)}" for p, v in r["threads"].items()))
    lines += ["", "No GPU is lent to this task: GPU throughput is not measured here."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="comments file (CSV with the sample's columns)")
    parser.add_argument("--users", type=int, default=96)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--settings", default="reserve1,reserve0,nobind",
                        help=f"comma-separated, from: {', '.join(SETTINGS)}; the first is the reference")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--order", help="explicit comma-separated order of child runs, e.g. A,B,C,B,A (overrides --settings/--rounds)")
    parser.add_argument("--raw-only", action="store_true", help="only the raw runs")
    parser.add_argument("--warm-raw-rounds", type=int, default=99, help="run raw (warm) only in a setting's first N rounds (time budget)")
    parser.add_argument("--note", action="append", default=[], help="a line added under the summary (repeatable)")
    parser.add_argument("--name", default="bench_throughput", help="results file stem under eval/results")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        args.result.write_text(json.dumps(worker(args)))
        return
    names = args.order.split(",") if args.order else [
        n for r in range(args.rounds) for n in (args.settings.split(",")[:: 1 if r % 2 == 0 else -1])]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting(s) {unknown}; choose from {list(SETTINGS)}")
    order = [(names[: k + 1].count(n), n) for k, n in enumerate(names)]  # (round of that setting, setting)
    results = []
    for round_no, name in order:
        results.append(run_setting(args, name, round_no))
        write_report(args, order, results)  # after every child: a cut-short run still leaves its figures
    print(markdown(json.loads((RESULTS / args.name).with_suffix(".json").read_text())))


def write_report(args, order, results) -> None:
    import vllm

    from tagger.llm.models import resolve_model

    data = args.data.resolve()
    report = {"command": "python eval/bench_throughput.py " + " ".join(sys.argv[1:]),
              "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, shared with other jobs",
              "model": Path(resolve_model("embedded")).name, "vllm": getattr(vllm, "__version__", "?"),
              "users": results[0]["users"],
              "data": str(data.relative_to(ROOT)) if data.is_relative_to(ROOT) else str(data),
              "order": [f"{n}" for _, n in order], "notes": args.note, "summary": summary(results), "results": results}
    stem = RESULTS / args.name
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))


if __name__ == "__main__":
    main()
