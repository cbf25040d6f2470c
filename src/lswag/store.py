"""The result store: every proxy score lswag computes in a run, in one SQLite file.

One row per (space, architecture, proxy, settings): the value or the failure reason, the
seconds it cost and the process's peak memory. Rows are committed the moment they are
computed, so a run killed at any point loses nothing it finished, and a rerun skips what is
there. ``settings`` holds everything that changes a score (data, batch size, seed, gradient
draws, the proxy's options, the lswag version) as canonical JSON, so a changed setting is a new
row, never an overwrite. Standard-library ``sqlite3`` in WAL mode; only the process that opened
the store writes to it (parallel workers hand their results back to it).
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from lswag.errors import LswagError
from lswag.proxies import Failure

FORMAT = "lswag-store"
SCHEMA = 1

_CREATE = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    space TEXT NOT NULL,
    arch TEXT NOT NULL,
    proxy TEXT NOT NULL,
    settings_id TEXT NOT NULL,
    settings TEXT NOT NULL,
    value REAL,
    failure TEXT,
    seconds REAL NOT NULL,
    peak_memory_mb REAL,
    created REAL NOT NULL,
    PRIMARY KEY (space, arch, proxy, settings_id)
);
"""


def settings_id(settings: dict[str, Any]) -> str:
    """A short stable id of a settings dict (canonical JSON, SHA-256)."""
    return hashlib.sha256(canonical(settings).encode()).hexdigest()[:16]


def canonical(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), default=list)


@dataclass(frozen=True)
class StoredResult:
    arch: str
    proxy: str
    value: float | Failure
    seconds: float
    peak_memory_mb: float | None


class Store:
    """An lswag result store for one search space; ``Store(path, space)`` creates or opens it."""

    def __init__(self, path: str | Path, space: str):
        self.path = Path(path)
        self.space = space
        if self.path.exists() and not self.path.is_file():
            raise LswagError(f"store {self.path} is not a file")
        try:
            self._db = sqlite3.connect(self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._check_or_initialise()
        except sqlite3.DatabaseError as error:
            raise LswagError(f"{self.path} is not an lswag store (SQLite says: {error})") from None

    def _check_or_initialise(self) -> None:
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            with self._db:
                self._db.executescript(_CREATE)
                self._db.executemany("INSERT INTO meta VALUES (?, ?)",
                                     [("format", FORMAT), ("schema", str(SCHEMA)), ("space", self.space)])
            return
        meta = dict(self._db.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
        if meta.get("format") != FORMAT:
            raise LswagError(f"{self.path} is an SQLite file but not an lswag store; choose another --store")
        if meta.get("schema") != str(SCHEMA):
            raise LswagError(f"store {self.path} has schema {meta.get('schema')}, this lswag reads schema {SCHEMA}")
        if meta.get("space") != self.space:
            raise LswagError(f"store {self.path} holds space {meta.get('space')!r}, not {self.space!r}; "
                             "choose another --store")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def done(self, proxy: str, settings: dict[str, Any]) -> set[str]:
        """The architectures that already have a result for ``proxy`` under ``settings``."""
        rows = self._db.execute("SELECT arch FROM results WHERE space=? AND proxy=? AND settings_id=?",
                                (self.space, proxy, settings_id(settings)))
        return {row[0] for row in rows}

    def add(self, arch: str, results: Iterable[tuple[str, dict[str, Any], float | Failure, float]],
            peak_memory_mb: float | None = None) -> None:
        """Commit one architecture's results, each ``(proxy, settings, value or Failure, seconds)``."""
        now = time.time()
        rows = []
        for proxy, settings, value, seconds in results:
            failed = isinstance(value, Failure)
            rows.append((self.space, arch, proxy, settings_id(settings), canonical(settings),
                         None if failed else float(value), value.reason if failed else None,
                         float(seconds), peak_memory_mb, now))
        with self._db:  # one transaction: an architecture's results land together or not at all
            self._db.executemany("INSERT OR IGNORE INTO results VALUES (?,?,?,?,?,?,?,?,?,?)", rows)

    def results(self, proxy: str, settings: dict[str, Any]) -> dict[str, StoredResult]:
        """``{arch: result}`` for ``proxy`` under ``settings``."""
        rows = self._db.execute(
            "SELECT arch, value, failure, seconds, peak_memory_mb FROM results "
            "WHERE space=? AND proxy=? AND settings_id=?", (self.space, proxy, settings_id(settings)))
        out = {}
        for arch, value, failure, seconds, peak in rows:
            stored = Failure(failure) if failure is not None else value
            out[arch] = StoredResult(arch, proxy, stored, seconds, peak)
        return out

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
