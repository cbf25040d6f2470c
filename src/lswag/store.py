"""The result store: every proxy score lswag computes in a run, in one SQLite file; all of lswag's SQL.

One row per (space, architecture, proxy, settings): the value or the failure reason, the
seconds it cost and the process's peak memory. Rows are committed the moment they are
computed, so a run killed at any point loses nothing it finished, and a rerun skips what is
there. Standard-library ``sqlite3`` in WAL mode; only the process that opened the store writes
to it (parallel workers hand their results back to it).

What invalidates a stored score: ``settings``, the row's key, holds everything that changes a
score, as canonical JSON, so a changed setting is a new row, never an overwrite. The engine
writes, for each proxy::

    {<the run's settings: data, batch_size, seed, image_size, gradient_draws, init, and build,
      device, memory_format where they apply>, "options": <the proxy's options>,
     "implementation": <lswag.proxies.get(proxy).version>}

``implementation`` is the version of the proxy's code, bumped when a change to it changes its
values: a new lswag release reuses every stored score, a new implementation of a proxy none of
that proxy's.

Schemas, in ``PRAGMA user_version`` (0 in a schema-1 store, which predates it). A store of an
older schema is upgraded in place, in one transaction, when it is opened (:data:`UPGRADES`):

1. lswag 0.2.x: the settings held ``"lswag": <package version>`` instead of ``implementation``,
   so every release invalidated every stored score.
2. ``implementation`` replaces ``lswag``. Rows of lswag 0.2.x become implementation 1 (the
   version of every proxy as of 0.2.0); rows of any other version (``0.0.0+unknown``, a source
   tree that was not installed) ran code of unknown implementation: they keep their settings,
   which no run asks for any more (:meth:`Store.unreachable`).
"""
from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from lswag.errors import LswagError
from lswag.proxies import Failure

FORMAT = "lswag-store"

_TABLES = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE results (
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
    )""",
)

#: the package versions whose proxies are implementation 1 (lswag 0.2.x, the only release before schema 2)
_IMPLEMENTATION_1 = re.compile(r"0\.2\.\d+")


def settings_id(settings: dict[str, Any]) -> str:
    """A short stable id of a settings dict (canonical JSON, SHA-256)."""
    return hashlib.sha256(canonical(settings).encode()).hexdigest()[:16]


def canonical(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), default=list)


def _implementation_for_version(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2: ``"lswag": 0.2.x`` becomes ``"implementation": 1``; other versions stay as they are."""
    for old_id, text in db.execute("SELECT DISTINCT settings_id, settings FROM results").fetchall():
        settings = json.loads(text)
        if not _IMPLEMENTATION_1.fullmatch(str(settings.get("lswag"))):
            continue
        del settings["lswag"]
        settings["implementation"] = 1
        # OR IGNORE: a row whose new key is already taken (two 0.2 versions scored it) keeps its old one
        db.execute("UPDATE OR IGNORE results SET settings_id=?, settings=? WHERE settings_id=?",
                   (settings_id(settings), canonical(settings), old_id))


#: ``UPGRADES[n - 1]`` takes a store of schema n to schema n + 1
UPGRADES: tuple[Callable[[sqlite3.Connection], None], ...] = (_implementation_for_version,)
#: architectures looked up per query (SQLite's limit on bound parameters is 999 in older builds)
LOOKUP_CHUNK = 500
SCHEMA = len(UPGRADES) + 1


@dataclass(frozen=True)
class StoredResult:
    arch: str
    proxy: str
    value: float | Failure
    seconds: float
    peak_memory_mb: float | None


class Store:
    """An lswag result store for one search space.

    ``Store(path, space)`` creates or opens the store of ``space``; ``Store(path)`` opens an
    existing store of whichever space it holds (:attr:`space`). Either upgrades an older schema.
    """

    def __init__(self, path: str | Path, space: str | None = None):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise LswagError(f"store {self.path} is not a file")
        if space is None and not self.path.is_file():
            raise LswagError(f"store {self.path} not found; give the path of an lswag bench store")
        if not self.path.exists():   # a new store, e.g. runs/x.sqlite on a fresh checkout: its folders too
            self.path.parent.mkdir(parents=True, exist_ok=True)
        #: what opening did to an older store, one line for the user; None when nothing was upgraded
        self.upgrade_note: str | None = None
        try:
            self._db = sqlite3.connect(self.path)
        except sqlite3.DatabaseError as error:
            raise LswagError(f"cannot open store {self.path} (SQLite says: {error})") from None
        try:
            self.space = self._open(space)
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise LswagError(f"{self.path} is not an lswag store (SQLite says: {error})") from None
        except BaseException:
            self._db.close()
            raise

    def _open(self, space: str | None) -> str:
        """Check, create or upgrade the store; the space it holds. Nothing is written to a file that is
        neither an lswag store nor empty, so a foreign database is refused as it was found."""
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            if space is None:
                raise LswagError(f"{self.path} holds no lswag store; give the path of an lswag bench store")
            self._db.execute("PRAGMA journal_mode=WAL")
            with self._transaction():
                for statement in _TABLES:
                    self._db.execute(statement)
                self._db.executemany("INSERT INTO meta VALUES (?, ?)", [("format", FORMAT), ("space", space)])
                self._set_schema(SCHEMA)
            return space
        meta = dict(self._db.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
        if meta.get("format") != FORMAT:
            raise LswagError(f"{self.path} is an SQLite file but not an lswag store; choose another --store")
        schema = self._schema()
        if schema > SCHEMA:
            raise LswagError(f"store {self.path} was written by a newer lswag (schema {schema}); upgrade lswag")
        if space is not None and meta.get("space") != space:
            raise LswagError(f"store {self.path} holds space {meta.get('space')!r}, not {space!r}; "
                             "choose another --store")
        self._db.execute("PRAGMA journal_mode=WAL")
        if schema < SCHEMA:
            self._upgrade()
        return meta["space"]

    def _schema(self) -> int:
        # 0: a schema-1 store, written before the schema moved to user_version
        return self._db.execute("PRAGMA user_version").fetchone()[0] or 1

    def _set_schema(self, schema: int) -> None:
        self._db.execute(f"PRAGMA user_version = {int(schema)}")
        # kept in step for lswag 0.2.x, which reads it and refuses a store of another schema by its number
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(schema),))

    def _upgrade(self) -> None:
        try:
            with self._transaction():
                old = self._schema()   # read again inside the transaction: another process may have upgraded it
                if old >= SCHEMA:
                    return
                for upgrade in UPGRADES[old - 1:]:
                    upgrade(self._db)
                self._set_schema(SCHEMA)
        except sqlite3.DatabaseError as error:   # a read-only file, say: not a foreign one, as __init__ would say
            raise LswagError(f"cannot upgrade store {self.path} to schema {SCHEMA} (SQLite says: {error}); "
                             "make it writable") from None
        kept = self.unreachable()
        self.upgrade_note = (f"upgraded store {self.path} from schema {old} to {SCHEMA}"
                             + (f"; {kept} results of an lswag other than 0.2.x (proxy implementations "
                                "unknown) are kept but will not be reused" if kept else ""))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction holding the write lock from its start (IMMEDIATE): nothing changes what it read."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.rollback()
            raise
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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

    def results(self, proxy: str, settings: dict[str, Any],
                archs: Iterable[str] | None = None) -> dict[str, StoredResult]:
        """``{arch: result}`` for ``proxy`` under ``settings``, of every architecture or only of ``archs``
        (looked up by the primary key, so that a search asking for a few candidates at a time does not
        read the whole table each time); a failure's value is its :class:`Failure`."""
        query = ("SELECT arch, value, failure, seconds, peak_memory_mb FROM results "
                 "WHERE space=? AND proxy=? AND settings_id=?")
        key = (self.space, proxy, settings_id(settings))
        if archs is None:
            rows = list(self._db.execute(query, key))
        else:
            wanted, rows = list(dict.fromkeys(archs)), []
            for start in range(0, len(wanted), LOOKUP_CHUNK):
                chunk = wanted[start:start + LOOKUP_CHUNK]
                rows += self._db.execute(f"{query} AND arch IN ({','.join('?' * len(chunk))})", (*key, *chunk))
        out = {}
        for arch, value, failure, seconds, peak in rows:
            stored = Failure(failure) if failure is not None else value
            out[arch] = StoredResult(arch, proxy, stored, seconds, peak)
        return out

    def settings_in_use(self) -> dict[str, list[dict[str, Any]]]:
        """``{proxy: [settings, ...]}``: every settings each proxy has results under, by proxy and canonical JSON."""
        out: dict[str, list[dict[str, Any]]] = {}
        for proxy, settings in self._db.execute(
                "SELECT DISTINCT proxy, settings FROM results WHERE space=? ORDER BY proxy, settings",
                (self.space,)):
            out.setdefault(proxy, []).append(json.loads(settings))
        return out

    def unreachable(self) -> int:
        """How many results keep a pre-schema-2 key (``"lswag": version`` of a version other than 0.2.x,
        so of unknown proxy implementations): stored, readable, never reused by a run."""
        rows = self._db.execute("SELECT settings, COUNT(*) FROM results GROUP BY settings_id, settings")
        return sum(count for settings, count in rows if "lswag" in json.loads(settings))

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
