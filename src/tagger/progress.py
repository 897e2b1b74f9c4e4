"""Progress and stage timing, kept out of the pipeline's logic: the CLI shows bars, the API stays quiet."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


class Reporter:
    """Silent by default; records wall time per stage."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        start = time.perf_counter()
        ok = False
        try:
            yield self._bar(name, total)
            ok = True
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)
            self._done(name, ok)

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass

    def _bar(self, name: str, total: int | None) -> Callable[[int], None]:
        return lambda n: None

    def _done(self, name: str, ok: bool) -> None:
        pass


class RichReporter(Reporter):
    """Progress bars on stderr for the stages that take time (tagging, embedding)."""

    ANNOUNCED = {"engine start", "embedding"}  # slow stages without a count

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=False)
        self._tasks: dict[str, int] = {}

    def message(self, text: str) -> None:
        self.console.print(text)

    def _bar(self, name: str, total: int | None) -> Callable[[int], None]:
        if total is None:
            if name in self.ANNOUNCED:
                self.console.print(f"[dim]{name}…[/dim]")
            return lambda n: None
        if not self.progress.live.is_started:
            self.progress.start()
        task = self.progress.add_task(name, total=total)
        self._tasks[name] = task
        return lambda n: self.progress.advance(task, n)

    def _done(self, name: str, ok: bool) -> None:
        if name in self._tasks:
            self.progress.refresh()

    def close(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()


class PlainReporter(Reporter):
    """Plain lines for logs, CI and captured output, where bars never draw.

    One line per stage when it ends (and when it starts, for the slow ones), so a failed stage
    leaves only the error line. In counted stages, a line with done/total, rate and ETA
    whenever work advances (at most one per `min_gap_s`, and always the last), and from a
    background ticker at least every `every_s` while nothing advances, so one long engine call
    still shows that the run is alive.
    """

    UNITS = {"tagging": "users", "embedding": "texts"}
    ANNOUNCED = {"engine start"}

    def __init__(self, stream: TextIO | None = None, *, clock: Callable[[], float] = time.monotonic,
                 every_s: float = 30.0, min_gap_s: float = 5.0, ticker: bool = True) -> None:
        super().__init__()
        self.stream = stream if stream is not None else sys.stderr
        self.clock, self.every_s, self.min_gap_s = clock, every_s, min_gap_s
        self.began = clock()
        self._lock = threading.Lock()
        self._stages: dict[str, dict] = {}
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, daemon=True) if ticker else None

    def message(self, text: str) -> None:
        with self._lock:
            self._line(text)

    def tick(self) -> None:
        """Write a progress line for each counted stage silent for `every_s`."""
        with self._lock:
            for stage in self._stages.values():
                if stage["total"] is not None and self.clock() - stage["last"] >= self.every_s:
                    self._progress_line(stage)

    def close(self) -> None:
        self._stop.set()

    def _bar(self, name: str, total: int | None) -> Callable[[int], None]:
        now = self.clock()
        stage = {"name": name, "total": total, "done": 0, "started": now, "last": now, "ended": False}
        with self._lock:
            self._stages[name] = stage
            if total is not None:
                self._line(f"{name}: {total} {self.UNITS.get(name, 'items')}…")
            elif name in self.ANNOUNCED:
                self._line(f"{name}…")
        if total is None:
            return lambda n: None
        if self._ticker is not None and not self._ticker.is_alive():
            self._ticker.start()

        def advance(n: int) -> None:
            with self._lock:
                stage["done"] += n
                if stage["done"] >= stage["total"] or self.clock() - stage["last"] >= self.min_gap_s:
                    self._progress_line(stage)

        return advance

    def _done(self, name: str, ok: bool) -> None:
        with self._lock:
            stage = self._stages.pop(name, None)
            if stage is None or not ok or stage["ended"]:
                return
            if stage["total"] is None:
                self._line(f"{name}: done in {_clock(self.clock() - stage['started'])}")
            else:
                stage["total"] = stage["done"]  # whatever the count said, the stage is over
                self._progress_line(stage)

    def _progress_line(self, stage: dict) -> None:
        now = self.clock()
        stage["last"] = now
        done, total, elapsed = stage["done"], stage["total"], now - stage["started"]
        unit = self.UNITS.get(stage["name"], "items")
        rate = done / elapsed if elapsed > 0 else 0.0
        if done >= total:
            stage["ended"] = True
            tail = f"done in {_clock(elapsed)}"
        else:
            tail = f"ETA {_clock((total - done) / rate)}" if rate > 0 else "ETA unknown"
        percent = 100 * done // total if total else 100
        self._line(f"{stage['name']}: {done}/{total} {unit} ({percent}%), {rate:.2f} {unit}/s, {tail}")

    def _line(self, text: str) -> None:
        # callers hold the lock: the ticker thread writes too
        self.stream.write(f"[{_clock(self.clock() - self.began)}] {text}\n")
        self.stream.flush()

    def _tick_loop(self) -> None:
        while not self._stop.wait(1.0):
            self.tick()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def make_reporter(*, quiet: bool = False, stream: TextIO | None = None) -> Reporter:
    """What the CLI shows: nothing with --quiet, bars on a terminal, plain lines anywhere else."""
    stream = stream if stream is not None else sys.stderr
    if quiet:
        return Reporter()
    if stream.isatty():
        return RichReporter()
    return PlainReporter(stream)
