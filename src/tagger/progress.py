"""Progress and stage timing, kept out of the pipeline's logic: the CLI shows bars, the API stays quiet."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Reporter:
    """Silent by default; records wall time per stage."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        start = time.perf_counter()
        try:
            yield self._bar(name, total)
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)
            self._done(name)

    def message(self, text: str) -> None:
        pass

    def _bar(self, name: str, total: int | None) -> Callable[[int], None]:
        return lambda n: None

    def _done(self, name: str) -> None:
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

    def _done(self, name: str) -> None:
        if name in self._tasks:
            self.progress.refresh()

    def close(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()
