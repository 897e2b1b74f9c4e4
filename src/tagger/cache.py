"""A durable, content-addressed cache of LLM answers (SQLite, WAL), written as answers arrive.

The key hashes everything that decides an answer: model, the exact rendered messages (so the
template's content and the user's document), sampling parameters and the JSON schema. An
edited prompt therefore misses; an unchanged rerun or a resumed run hits.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tagger.errors import OutputError


def cache_key(model: str, messages: Any, params: Any, schema: Any) -> str:
    blob = json.dumps([model, messages, params, schema], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResultCache:
    """`get_many` / `put_many`; counts hits and misses for run.json."""

    def __init__(self, path: Path | None):
        self.path = path
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=60, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        except sqlite3.Error as exc:
            raise OutputError(f"cannot open the cache {path} ({exc}); set TAGGER_HOME to a writable folder or pass --no-cache") from None

    def get_many(self, keys: Sequence[str]) -> dict[str, dict]:
        if self._db is None:
            self.misses += len(keys)
            return {}
        found: dict[str, dict] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for key, value in self._db.execute(f"SELECT key, value FROM answers WHERE key IN ({marks})", chunk):
                    found[key] = json.loads(value)
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def put_many(self, items: Iterable[tuple[str, dict]]) -> None:
        if self._db is None:
            return
        rows = [(key, json.dumps(value, ensure_ascii=False)) for key, value in items]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?)", rows)
            self._db.execute("COMMIT")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
