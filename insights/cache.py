"""The response cache and the call log, in one SQLite database file.

Two tables live in the file (and the Batch API's jobs, :mod:`insights.batchstore`):

* ``responses``: one row per distinct request, holding the raw ``chat.completion`` JSON the endpoint
  returned, the model, token counts, latency and when it was stored. Only successful answers are
  stored: the caller calls :meth:`Cache.put` after a call succeeded, never after a failure.
* ``calls``: an append-only log of every model call a run made (cache hit or not, failed or not), per
  document, with tokens, latency, estimated cost and status. :meth:`Cache.stats` summarises it.

Cache key (a contract)
----------------------
:func:`request_key` turns a mapping ``parts`` into::

    "v1:" + sha256(canonical_json(parts)).hexdigest()

    canonical_json(parts) = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

``v1`` is the version of this key format; it changes only if the recipe above changes. The caller
(``insights/client.py``) builds ``parts`` with **everything that can change the answer**, and nothing
else::

    {"endpoint":       endpoint host[:port], e.g. "api.openai.com" or "127.0.0.1:8000",
     "mode":           the instructor mode of Settings.mode: "tool_call" (tools),
                       "json_schema_mode" (json_schema) or "json_mode" (json),
     "prompt_version": hash of the prompt files,
     "schema_version": insights.schema.SCHEMA_VERSION,
     "request":        every argument of the chat.completions request except transport options
                       (timeout, extra headers): model, messages (system prompt, document text, re-ask
                       turns), tools, tool_choice, response_format, temperature, max_tokens,
                       seed}

Pydantic values inside ``request`` are serialised with ``model_dump(mode="json", exclude_none=True)``.
**Never the API key** (nor other secrets, nor per-run data such as timestamps or request ids).

Concurrency
-----------
One :class:`Cache` object may be shared by many threads: each thread gets its own connection.
Several processes may use the same file at once: the database is in WAL mode (readers never block
writers), each connection waits up to 30 s for a lock (``busy_timeout``), writes take the write lock
up front (``BEGIN IMMEDIATE``), and a ``database is locked`` error is retried a few times with a
small backoff before it becomes a :class:`~insights.errors.CacheError`.

Schema changes are named migration functions (``m001_initial``, ...) applied in order inside one
``BEGIN IMMEDIATE`` transaction and recorded in the ``_migrations`` table, so two processes opening
a fresh file at the same moment apply each migration exactly once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import sqlite3
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Mapping, TextIO, TypeVar

from .errors import CacheError, scrub

__all__ = [
    "KEY_VERSION",
    "MIGRATIONS",
    "Cache",
    "CacheStats",
    "CachedResponse",
    "CallRecord",
    "canonical_json",
    "request_key",
]

logger = logging.getLogger("insights.cache")

KEY_VERSION = "v1"
"""Version of the cache-key format; the prefix of every key made by :func:`request_key`."""

BUSY_TIMEOUT_S = 30.0
"""How long one SQLite statement waits for another connection's lock before giving up."""

LOCK_RETRIES = 5
"""Further attempts after ``database is locked`` (on top of the busy timeout), with backoff."""

_T = TypeVar("_T")


def canonical_json(parts: Mapping[str, Any], default: Callable[[Any], Any] | None = None) -> str:
    """The canonical JSON text of ``parts``: sorted keys, no spaces, non-ASCII kept as is.

    ``default`` turns values JSON cannot encode (e.g. pydantic models) into ones it can.
    """
    return json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=default)


def request_key(parts: Mapping[str, Any], default: Callable[[Any], Any] | None = None) -> str:
    """The cache key of a request: ``"v1:" + sha256(canonical_json(parts)).hexdigest()``.

    See the module docstring for what ``parts`` must (and must never) contain.

    Raises:
        TypeError: ``parts`` holds something that is not JSON-serialisable.
    """
    digest = hashlib.sha256(canonical_json(parts, default).encode("utf-8")).hexdigest()
    return f"{KEY_VERSION}:{digest}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class CachedResponse:
    """One stored answer."""

    key: str
    response: dict[str, Any]  # the raw chat.completion JSON as returned by the endpoint
    model: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    created_at: str  # ISO 8601 UTC


@dataclass(frozen=True)
class CallRecord:
    """One model call, for the call log.

    For a cache hit (``cached=True``) give the tokens and ``cost_usd`` the stored answer cost when it
    was first made: :meth:`Cache.stats` sums them as tokens and money *saved*.
    """

    document_id: str
    model: str
    key: str
    cached: bool
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float | None = None
    status: str = "ok"  # "ok" or an error class name
    error: str = ""


@dataclass(frozen=True)
class CacheStats:
    """A summary of the cache file and its call log."""

    path: str
    size_bytes: int
    entries: int
    calls: int
    hits: int
    misses: int
    hit_rate: float
    tokens_saved: int
    cost_saved_usd: float
    tokens_spent: int
    cost_spent_usd: float


# --------------------------------------------------------------------------------------------------
# Migrations: append new ones to MIGRATIONS; never edit one that has shipped.


def m001_initial(conn: sqlite3.Connection) -> None:
    """The response cache, the call log and its per-document index."""
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS responses (
            key           TEXT PRIMARY KEY,
            response      TEXT NOT NULL,
            model         TEXT NOT NULL,
            input_tokens  INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            latency_s     REAL NOT NULL,
            created_at    TEXT NOT NULL
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS calls (
            id            INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at    TEXT NOT NULL,
            document_id   TEXT NOT NULL,
            model         TEXT NOT NULL,
            key           TEXT NOT NULL,
            cached        INTEGER NOT NULL,
            input_tokens  INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            latency_s     REAL NOT NULL DEFAULT 0,
            cost_usd      REAL,
            status        TEXT NOT NULL DEFAULT 'ok',
            error         TEXT NOT NULL DEFAULT ''
        )
        """
    )
    conn.execute("CREATE INDEX IF NOT EXISTS calls_document_id ON calls (document_id)")


def m002_batch_jobs(conn: sqlite3.Connection) -> None:
    """The Batch API's jobs and the requests each carries (see :mod:`insights.batchstore`)."""
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS batch_jobs (
            job            TEXT PRIMARY KEY,
            batch_id       TEXT,
            input_file_id  TEXT,
            endpoint       TEXT NOT NULL,
            model          TEXT NOT NULL,
            status         TEXT NOT NULL,
            requests       INTEGER NOT NULL,
            completed      INTEGER NOT NULL DEFAULT 0,
            failed         INTEGER NOT NULL DEFAULT 0,
            output_file_id TEXT,
            error_file_id  TEXT,
            errors         TEXT NOT NULL DEFAULT '',
            owner_pid      INTEGER NOT NULL,
            created_at     TEXT NOT NULL,
            updated_at     TEXT NOT NULL,
            collected      INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS batch_requests (
            job         TEXT NOT NULL,
            custom_id   TEXT NOT NULL,
            key         TEXT NOT NULL,
            document_id TEXT NOT NULL,
            state       TEXT NOT NULL,
            error_type  TEXT NOT NULL DEFAULT '',
            error       TEXT NOT NULL DEFAULT '',
            status      INTEGER,
            retryable   INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (job, custom_id)
        )
        """
    )
    conn.execute("CREATE INDEX IF NOT EXISTS batch_requests_key ON batch_requests (key)")
    conn.execute("CREATE INDEX IF NOT EXISTS batch_requests_document ON batch_requests (document_id)")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (m001_initial, m002_batch_jobs)
"""Every migration, in the order it is applied; each is recorded by its function name."""


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply the migrations not yet recorded in ``_migrations``, all in one write transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
        for migration in MIGRATIONS:
            if migration.__name__ not in done:
                migration(conn)
                conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (migration.__name__, _now()))
                logger.debug("applied migration %s", migration.__name__)
        unknown = done - {m.__name__ for m in MIGRATIONS}
        if unknown:
            logger.warning("cache database has migrations this version does not know: %s", sorted(unknown))
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:  # pragma: no cover - the connection is already broken
            pass


def _is_locked(error: sqlite3.Error) -> bool:
    text = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


# --------------------------------------------------------------------------------------------------
# Validation of stored rows and imported lines: bad data is a miss, never an exception.


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entry(
    key: Any, response: Any, model: Any, input_tokens: Any, output_tokens: Any, latency_s: Any, created_at: Any
) -> CachedResponse:
    """A :class:`CachedResponse` from loosely typed values; ``ValueError`` if any has the wrong type.

    ``response`` may be the JSON text (a stored row) or the decoded object (an imported line).
    """
    if isinstance(response, str):
        try:
            response = json.loads(response)
        except json.JSONDecodeError as e:
            raise ValueError(f"response is not valid JSON: {e}") from None
    problems = []
    if not isinstance(key, str) or not key:
        problems.append("key")
    if not isinstance(response, dict):
        problems.append("response")
    if not isinstance(model, str):
        problems.append("model")
    if not _is_int(input_tokens) or input_tokens < 0:
        problems.append("input_tokens")
    if not _is_int(output_tokens) or output_tokens < 0:
        problems.append("output_tokens")
    if not (_is_int(latency_s) or isinstance(latency_s, float)) or not math.isfinite(latency_s):
        problems.append("latency_s")
    if not isinstance(created_at, str):
        problems.append("created_at")
    if problems:
        raise ValueError(f"wrong type or value for {', '.join(problems)}")
    return CachedResponse(
        key=key,
        response=response,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_s=float(latency_s),
        created_at=created_at,
    )


_ENTRY_COLUMNS = "key, response, model, input_tokens, output_tokens, latency_s, created_at"
_CALL_COLUMNS = (
    "created_at, document_id, model, key, cached, input_tokens, output_tokens, latency_s, cost_usd, status, error"
)


class Cache:
    """The response cache and call log in one SQLite file. Thread-safe; safe across processes.

    Use it as a context manager, or call :meth:`close` when done::

        with Cache(path) as cache:
            hit = cache.get(key)

    Every SQLite failure (read-only file or directory, disk full, not a database, locked for too
    long) is raised as :class:`~insights.errors.CacheError` naming the file, with the SQLite or OS
    error on ``__cause__``. Bad *data* in the file is never raised: a corrupt row is a miss.
    """

    path: Path

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open (creating it and its parent directories if needed) and migrate the cache at ``path``.

        Raises:
            CacheError: the file cannot be created, opened, migrated or written.
        """
        self.path = Path(path).expanduser()
        self._local = threading.local()
        self._lock = threading.Lock()
        # (thread, connection) for every connection opened, so close() can close them all and
        # connections of finished threads can be closed when a new one is opened.
        self._conns: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
        self._pid = os.getpid()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CacheError(f"cannot create the cache directory for {self.path}: {e}") from e
        try:
            self._run(_migrate)
        except BaseException:
            self.close()
            raise

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,  # autocommit; write transactions are explicit BEGIN IMMEDIATE
                check_same_thread=False,  # only its own thread uses it, but close() may run elsewhere
            )
        except sqlite3.Error as e:
            raise CacheError(f"cannot open the cache {self.path}: {e}") from e
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            for attempt in range(LOCK_RETRIES + 1):
                try:
                    conn.execute("PRAGMA journal_mode = WAL").fetchall()
                    break
                except sqlite3.OperationalError as e:
                    if not _is_locked(e) or attempt == LOCK_RETRIES:
                        raise
                    self._backoff(attempt)
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as e:
            conn.close()
            raise CacheError(f"cannot open the cache {self.path}: {e}") from e
        return conn

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        if self._closed:
            raise CacheError(f"the cache {self.path} is closed")
        if os.getpid() != self._pid:
            # Forked: the parent's connections must not be used (nor closed) here.
            with self._lock:
                if os.getpid() != self._pid:
                    self._local = threading.local()
                    self._conns = []
                    self._pid = os.getpid()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            with self._lock:
                if self._closed:
                    conn.close()
                    raise CacheError(f"the cache {self.path} is closed")
                alive = []
                for ref, other in self._conns:
                    thread = ref()
                    if thread is None or not thread.is_alive():
                        other.close()
                    else:
                        alive.append((ref, other))
                alive.append((weakref.ref(threading.current_thread()), conn))
                self._conns = alive
            self._local.conn = conn
        return conn

    @staticmethod
    def _backoff(attempt: int) -> None:
        time.sleep(0.05 * (2**attempt) * (0.5 + random.random()))

    def _run(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``operation`` on this thread's connection, retrying ``database is locked``."""
        for attempt in range(LOCK_RETRIES + 1):
            conn = self._conn()
            try:
                return operation(conn)
            except sqlite3.Error as e:
                _rollback(conn)
                if _is_locked(e) and attempt < LOCK_RETRIES:
                    logger.debug("cache %s is locked, retrying (%d)", self.path, attempt + 1)
                    self._backoff(attempt)
                    continue
                raise CacheError(f"cache {self.path}: {e}") from e
        raise AssertionError("unreachable")  # pragma: no cover

    def _write(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``operation`` in a write transaction (taking the write lock up front)."""

        def transaction(conn: sqlite3.Connection) -> _T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = operation(conn)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            return result

        return self._run(transaction)

    def query(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run a read on this thread's connection (``database is locked`` retried; errors as ``CacheError``).

        For modules that keep their own tables in this file (:mod:`insights.batchstore`).
        """
        return self._run(operation)

    def transaction(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``operation`` in one write transaction: all of it is stored, or none."""
        return self._write(operation)

    # -- the response cache ---------------------------------------------------------------------

    def get(self, key: str) -> CachedResponse | None:
        """The stored answer for ``key``, or ``None``.

        A corrupt row (undecodable JSON, wrong types) counts as a miss: a warning is logged on the
        ``insights.cache`` logger and the row is deleted if possible.

        Raises:
            CacheError: the database itself cannot be read.
        """
        row = self._run(
            lambda conn: conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM responses WHERE key = ?", (key,)).fetchone()
        )
        if row is None:
            return None
        try:
            return _entry(*row)
        except (ValueError, TypeError, RecursionError) as e:
            logger.warning("cache %s: dropping corrupt entry %s: %s", self.path, key, e)
            try:
                self._write(lambda conn: conn.execute("DELETE FROM responses WHERE key = ?", (key,)))
            except CacheError as delete_error:
                logger.warning("cache %s: could not delete corrupt entry %s: %s", self.path, key, delete_error)
            return None

    def put(
        self,
        key: str,
        *,
        response: dict[str, Any],
        model: str,
        input_tokens: int,
        output_tokens: int,
        latency_s: float,
    ) -> None:
        """Store (or replace) the answer for ``key``. Call it only for successful answers.

        Raises:
            TypeError: ``response`` is not JSON-serialisable.
            CacheError: the database cannot be written.
        """
        text = json.dumps(response, ensure_ascii=False)
        values = (key, text, model, int(input_tokens), int(output_tokens), float(latency_s), _now())
        self._write(
            lambda conn: conn.execute(
                f"INSERT OR REPLACE INTO responses ({_ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", values
            )
        )

    def delete(self, key: str) -> bool:
        """Remove the answer stored for ``key`` (a failed document's); return whether there was one."""
        return bool(self._write(lambda conn: conn.execute("DELETE FROM responses WHERE key = ?", (key,)).rowcount))

    def clear(self, log: bool = False) -> int:
        """Delete every cached answer (and the call log too if ``log``); return the answers removed.

        The file is then compacted (``VACUUM``); if another connection prevents that, a warning is
        logged and the space is reused later.
        """

        def delete(conn: sqlite3.Connection) -> int:
            removed = conn.execute("DELETE FROM responses").rowcount
            if log:
                conn.execute("DELETE FROM calls")
            return removed

        removed = self._write(delete)
        try:
            self._run(lambda conn: conn.execute("VACUUM"))
            self._run(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())
        except CacheError as e:
            logger.warning("cache %s: could not compact: %s", self.path, e)
        return removed

    def export(self, fp: TextIO) -> int:
        """Write every readable cached answer to ``fp`` as JSON lines; return how many.

        Each line is ``{"key", "response", "model", "input_tokens", "output_tokens", "latency_s",
        "created_at"}`` with ``response`` as a JSON object. Corrupt rows are skipped with a warning.
        """
        rows = self._run(
            lambda conn: conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM responses ORDER BY created_at, key").fetchall()
        )
        count = 0
        for row in rows:
            try:
                entry = _entry(*row)
            except (ValueError, TypeError, RecursionError) as e:
                logger.warning("cache %s: not exporting corrupt entry %s: %s", self.path, row[0], e)
                continue
            line = {
                "key": entry.key,
                "response": entry.response,
                "model": entry.model,
                "input_tokens": entry.input_tokens,
                "output_tokens": entry.output_tokens,
                "latency_s": entry.latency_s,
                "created_at": entry.created_at,
            }
            fp.write(json.dumps(line, ensure_ascii=False) + "\n")
            count += 1
        return count

    def import_(self, fp: TextIO) -> int:
        """Read JSON lines written by :meth:`export` into the cache; return how many were imported.

        Existing entries with the same key are replaced; ``created_at`` is kept from the file. Blank
        lines are ignored; a line that is not a valid entry is skipped with a warning.
        """
        batch: list[tuple[Any, ...]] = []
        count = 0

        def flush() -> None:
            nonlocal count
            if batch:
                rows = list(batch)
                self._write(
                    lambda conn: conn.executemany(
                        f"INSERT OR REPLACE INTO responses ({_ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                )
                count += len(rows)
                batch.clear()

        for number, line in enumerate(fp, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                entry = _entry(*(data.get(name) for name in _ENTRY_COLUMNS.split(", ")))
            except (ValueError, TypeError, RecursionError) as e:
                logger.warning("cache import: skipping line %d: %s", number, e)
                continue
            batch.append(
                (
                    entry.key,
                    json.dumps(entry.response, ensure_ascii=False),
                    entry.model,
                    entry.input_tokens,
                    entry.output_tokens,
                    entry.latency_s,
                    entry.created_at,
                )
            )
            if len(batch) >= 500:
                flush()
        flush()
        return count

    # -- the call log ---------------------------------------------------------------------------

    def log_call(self, record: CallRecord) -> None:
        """Append one call to the log."""
        values = (
            _now(),
            record.document_id,
            record.model,
            record.key,
            1 if record.cached else 0,
            int(record.input_tokens),
            int(record.output_tokens),
            float(record.latency_s),
            None if record.cost_usd is None else float(record.cost_usd),
            record.status,
            scrub(record.error),  # an endpoint may echo the key in its error body
        )
        self._write(
            lambda conn: conn.execute(
                f"INSERT INTO calls ({_CALL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values
            )
        )

    def calls(self, document_id: str | None = None) -> list[dict[str, Any]]:
        """The call log, oldest first (newest last), optionally for one document only.

        Each dict has ``created_at`` plus the :class:`CallRecord` fields (``cached`` as a bool).
        """
        query = f"SELECT {_CALL_COLUMNS} FROM calls"
        args: tuple[Any, ...] = ()
        if document_id is not None:
            query += " WHERE document_id = ?"
            args = (document_id,)
        query += " ORDER BY id"
        rows = self._run(lambda conn: conn.execute(query, args).fetchall())
        names = _CALL_COLUMNS.split(", ")
        out = []
        for row in rows:
            item = dict(zip(names, row, strict=True))
            item["cached"] = bool(item["cached"])
            out.append(item)
        return out

    def stats(self) -> CacheStats:
        """Sizes and savings.

        ``hits`` are the cached calls in the log and ``misses`` all the others; ``tokens_saved`` and
        ``cost_saved_usd`` sum the cached calls, ``tokens_spent`` and ``cost_spent_usd`` every
        non-cached call (a rejected answer, e.g. one cut off, cost its tokens too; a failed request
        logs none). Unknown costs count as 0.
        """

        def query(conn: sqlite3.Connection) -> tuple[int, tuple[Any, ...]]:
            entries = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
            sums = conn.execute(
                """
                SELECT
                    COUNT(*),
                    COALESCE(SUM(cached != 0), 0),
                    COALESCE(SUM(CASE WHEN cached != 0 THEN input_tokens + output_tokens END), 0),
                    COALESCE(SUM(CASE WHEN cached != 0 THEN cost_usd END), 0.0),
                    COALESCE(SUM(CASE WHEN cached = 0 THEN input_tokens + output_tokens END), 0),
                    COALESCE(SUM(CASE WHEN cached = 0 THEN cost_usd END), 0.0)
                FROM calls
                """
            ).fetchone()
            return entries, sums

        entries, (calls, hits, tokens_saved, cost_saved, tokens_spent, cost_spent) = self._run(query)
        return CacheStats(
            path=str(self.path),
            size_bytes=self._size(),
            entries=int(entries),
            calls=int(calls),
            hits=int(hits),
            misses=int(calls - hits),
            hit_rate=hits / calls if calls else 0.0,
            tokens_saved=int(tokens_saved),
            cost_saved_usd=float(cost_saved),
            tokens_spent=int(tokens_spent),
            cost_spent_usd=float(cost_spent),
        )

    def _size(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(f"{self.path}{suffix}")
            except OSError:
                pass
        return total

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection (of every thread). Further use raises :class:`CacheError`."""
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for _, conn in conns:
            try:
                conn.close()
            except sqlite3.Error as e:  # pragma: no cover
                logger.debug("cache %s: error closing a connection: %s", self.path, e)
        self._local = threading.local()

    def __enter__(self) -> Cache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Cache({str(self.path)!r})"
