"""The run folder: built in a hidden sibling folder and renamed into place only when complete,
so an interrupted or failed run never leaves a half-written output behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from tagger.errors import OutputError

RUN_MARKER = "run.json"


def check_destination(out: Path, force: bool) -> None:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file; pass a folder path to --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        what = "another run" if (out / RUN_MARKER).exists() else "other files"
        raise OutputError(f"{out} already holds {what}; pass --force to replace it or choose another --out")


class RunFolder:
    """Write files into `.NAME.partial-*`; `commit()` swaps it in for `out` atomically."""

    def __init__(self, out: Path, force: bool = False):
        self.out = Path(out)
        check_destination(self.out, force)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        for stale in self.out.parent.glob(f".{self.out.name}.partial-*"):
            pid = stale.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or not _alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.partial-", suffix=f"-{os.getpid()}", dir=self.out.parent))

    def path(self, name: str) -> Path:
        return self.tmp / name

    def write_json(self, name: str, data: Any) -> None:
        self.path(name).write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")

    def write_jsonl(self, name: str, rows: list[dict]) -> None:
        with self.path(name).open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    def write_table(self, stem: str, frame: pd.DataFrame) -> None:
        frame.to_parquet(self.path(f"{stem}.parquet"), index=False)
        flat = frame.copy()
        for column in flat.columns:
            if flat[column].map(lambda v: isinstance(v, list)).any():
                flat[column] = flat[column].map(lambda v: "; ".join(map(str, v)) if isinstance(v, list) else v)
        flat.to_csv(self.path(f"{stem}.csv"), index=False)

    def commit(self) -> Path:
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, old)
        try:
            os.replace(self.tmp, self.out)
        except OSError as exc:
            if old is not None:
                os.replace(old, self.out)
            raise OutputError(f"cannot move the finished run into {self.out} ({exc}); check permissions") from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out

    def abandon(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()
