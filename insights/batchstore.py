"""The Batch API's jobs and the request lines they carry, kept in the cache's SQLite file.

Everything ``insights batch status`` and ``collect`` need is here and at the endpoint, so they work after a
crash, a reboot or on another day. The tables (created by ``m002_batch_jobs`` in :mod:`insights.cache`):

``batch_jobs``, one row per input file sent as one batch:
    ``job`` (the local id, ``"job_"`` + 16 hex digits, sent as the batch's metadata ``insights_job`` so that a
    batch created by a process killed before it stored the batch's id is found again), ``batch_id`` (the
    endpoint's id; null while staged), ``input_file_id``, ``endpoint`` (host[:port], as in the cache key),
    ``model``, ``status`` (``staged`` until created, then the endpoint's: validating, in_progress,
    finalizing, completed, expired, cancelling, cancelled, failed), ``requests`` (lines in the file),
    ``completed``/``failed`` (the endpoint's request counts), ``output_file_id``, ``error_file_id``,
    ``errors`` (why the endpoint failed the batch), ``owner_pid`` (the submitting process), ``created_at``,
    ``updated_at``, ``collected`` (1 once its files are harvested).

``batch_requests``, one row per request line:
    ``job``, ``custom_id`` (the line's id: the first 32 hex digits of the cache key's digest), ``key`` (the
    cache key the answer is stored under), ``document_id``, ``state``, and for a request without a usable
    answer ``error_type`` (a :class:`~insights.errors.ModelError` class name), ``error``, ``status`` (HTTP)
    and ``retryable``.

A request's ``state`` goes ``staged`` → ``submitted`` → ``answered`` (stored in the cache), ``failed`` (in the
error file, or an answer that cannot be used) or ``unfinished`` (the batch ended without running it); an
answered request whose document then failed becomes ``discarded`` (its answer is removed from the cache, as a
synchronous run removes a failed document's answers). A request is **live** while ``staged`` or
``submitted``: it is never submitted again then.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .cache import Cache

LIVE = ("staged", "submitted")
TERMINAL = frozenset({"completed", "expired", "cancelled", "failed"})
"""Batch statuses after which nothing more happens to a batch."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Job:
    """One batch as the store knows it."""

    job: str
    batch_id: str | None
    input_file_id: str | None
    endpoint: str
    model: str
    status: str
    requests: int
    completed: int
    failed: int
    output_file_id: str | None
    error_file_id: str | None
    errors: str
    owner_pid: int
    created_at: str
    updated_at: str
    collected: bool


@dataclass(frozen=True)
class RequestRow:
    """One request line of a job, and what became of it."""

    job: str
    custom_id: str
    key: str
    document_id: str
    state: str
    error_type: str = ""
    error: str = ""
    status: int | None = None
    retryable: bool = False


@dataclass(frozen=True)
class Settled:
    """What became of one request line: ``answered``, ``failed`` or ``unfinished`` and, if not answered, why."""

    state: str
    error_type: str = ""
    error: str = ""
    status: int | None = None
    retryable: bool = False


_JOB_COLUMNS = (
    "job, batch_id, input_file_id, endpoint, model, status, requests, completed, failed, output_file_id, "
    "error_file_id, errors, owner_pid, created_at, updated_at, collected"
)
_REQUEST_COLUMNS = "job, custom_id, key, document_id, state, error_type, error, status, retryable"


def _job(row: tuple[Any, ...]) -> Job:
    values = dict(zip(_JOB_COLUMNS.split(", "), row, strict=True))
    return Job(**{**values, "collected": bool(values["collected"])})


def _request(row: tuple[Any, ...]) -> RequestRow:
    values = dict(zip(_REQUEST_COLUMNS.split(", "), row, strict=True))
    return RequestRow(**{**values, "retryable": bool(values["retryable"])})


def _batch_fields(batch: Mapping[str, Any]) -> tuple[Any, ...]:
    """The columns a batch object from the endpoint updates."""
    counts = batch.get("request_counts") or {}
    errors = (batch.get("errors") or {}).get("data") or []
    why = "; ".join(f"{e.get('code') or 'error'}: {e.get('message') or ''}" for e in errors if isinstance(e, dict))
    return (
        str(batch.get("status") or "unknown"),
        int(counts.get("completed") or 0),
        int(counts.get("failed") or 0),
        batch.get("output_file_id"),
        batch.get("error_file_id"),
        why,
        _now(),
    )


class BatchStore:
    """The ``batch_jobs`` and ``batch_requests`` tables of one cache file (see the module docstring)."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    # ------------------------------------------------------------------------------------------ jobs
    def stage(self, job: str, *, endpoint: str, model: str, requests: Iterable[tuple[str, str, str]]) -> None:
        """Record a job and its ``(custom_id, key, document_id)`` lines before anything is uploaded."""
        rows = [(job, cid, key, doc, "staged") for cid, key, doc in requests]
        values = (job, endpoint, model, "staged", len(rows), os.getpid(), _now(), _now())

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO batch_jobs (job, endpoint, model, status, requests, owner_pid, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            conn.executemany(
                "INSERT INTO batch_requests (job, custom_id, key, document_id, state) VALUES (?, ?, ?, ?, ?)", rows
            )

        self.cache.transaction(write)

    def uploaded(self, job: str, input_file_id: str) -> None:
        """The job's input file is at the endpoint."""
        self.cache.transaction(
            lambda c: c.execute(
                "UPDATE batch_jobs SET input_file_id = ?, updated_at = ? WHERE job = ?", (input_file_id, _now(), job)
            )
        )

    def created(self, job: str, batch: Mapping[str, Any]) -> None:
        """The endpoint created the batch: store its id and state; the job's lines become ``submitted``."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE batch_jobs SET batch_id = ?, input_file_id = COALESCE(input_file_id, ?), status = ?, "
                "completed = ?, failed = ?, output_file_id = ?, error_file_id = ?, errors = ?, updated_at = ? "
                "WHERE job = ?",
                (str(batch["id"]), batch.get("input_file_id"), *_batch_fields(batch), job),
            )
            conn.execute("UPDATE batch_requests SET state = 'submitted' WHERE job = ? AND state = 'staged'", (job,))

        self.cache.transaction(write)

    def refresh(self, job: str, batch: Mapping[str, Any]) -> None:
        """Store a batch's latest state, as retrieved from the endpoint."""
        self.cache.transaction(
            lambda c: c.execute(
                "UPDATE batch_jobs SET status = ?, completed = ?, failed = ?, output_file_id = ?, error_file_id = ?, "
                "errors = ?, updated_at = ? WHERE job = ?",
                (*_batch_fields(batch), job),
            )
        )

    def drop(self, job: str) -> None:
        """Forget a staged job that never became a batch: its lines may be submitted again."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM batch_requests WHERE job = ?", (job,))
            conn.execute("DELETE FROM batch_jobs WHERE job = ?", (job,))

        self.cache.transaction(write)

    def settle(self, job: str, outcomes: Mapping[str, Settled], *, rest: Settled) -> None:
        """Record what became of each harvested line (by ``custom_id``); lines still ``submitted`` get
        ``rest``; the job is marked collected. One transaction: a crash leaves the job to harvest again."""
        values = [(o.state, o.error_type, o.error, o.status, int(o.retryable), job, cid) for cid, o in outcomes.items()]

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE batch_requests SET state = ?, error_type = ?, error = ?, status = ?, retryable = ? "
                "WHERE job = ? AND custom_id = ? AND state = 'submitted'",
                values,
            )
            conn.execute(
                "UPDATE batch_requests SET state = ?, error_type = ?, error = ?, status = ?, retryable = ? "
                "WHERE job = ? AND state = 'submitted'",
                (rest.state, rest.error_type, rest.error, rest.status, int(rest.retryable), job),
            )
            conn.execute("UPDATE batch_jobs SET collected = 1, updated_at = ? WHERE job = ?", (_now(), job))

        self.cache.transaction(write)

    def jobs(self, endpoint: str | None = None) -> list[Job]:
        """Every job (of one endpoint), oldest first."""
        query, args = f"SELECT {_JOB_COLUMNS} FROM batch_jobs", ()
        if endpoint is not None:
            query, args = query + " WHERE endpoint = ?", (endpoint,)  # type: ignore[assignment]
        rows = self.cache.query(lambda c: c.execute(query + " ORDER BY created_at, rowid", args).fetchall())
        return [_job(row) for row in rows]

    # -------------------------------------------------------------------------------------- requests
    def requests(self, job: str) -> list[RequestRow]:
        """The lines of one job, in file order."""
        rows = self.cache.query(
            lambda c: c.execute(
                f"SELECT {_REQUEST_COLUMNS} FROM batch_requests WHERE job = ? ORDER BY rowid", (job,)
            ).fetchall()
        )
        return [_request(row) for row in rows]

    def history(self, keys: Iterable[str]) -> dict[str, list[RequestRow]]:
        """Every submission of each key, oldest first (keys never submitted are absent)."""
        wanted = sorted(set(keys))
        found: dict[str, list[RequestRow]] = {}
        columns = ", ".join("r." + name for name in _REQUEST_COLUMNS.split(", "))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = (
                f"SELECT {columns} FROM batch_requests r JOIN batch_jobs j ON j.job = r.job "
                f"WHERE r.key IN ({', '.join('?' * len(chunk))}) ORDER BY j.created_at, j.rowid"
            )
            rows = self._select(query, chunk)
            for row in rows:
                found.setdefault(row[2], []).append(_request(row))
        return found

    def _select(self, query: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.cache.query(lambda c: c.execute(query, args).fetchall())
        return rows

    def live_keys(self) -> set[str]:
        """Keys of every request riding in a job that has not been harvested."""
        rows = self.cache.query(
            lambda c: c.execute("SELECT DISTINCT key FROM batch_requests WHERE state IN (?, ?)", LIVE).fetchall()
        )
        return {row[0] for row in rows}

    def discard(self, document_id: str, error: BaseException) -> list[str]:
        """Mark the answered lines of a document that failed as ``discarded``, with its error; return their keys
        (the caller removes those answers from the cache)."""
        why = (type(error).__name__, str(error)[:2000], getattr(error, "status", None))

        def write(conn: sqlite3.Connection) -> list[str]:
            keys = [
                row[0]
                for row in conn.execute(
                    "SELECT key FROM batch_requests WHERE document_id = ? AND state = 'answered'", (document_id,)
                )
            ]
            conn.execute(
                "UPDATE batch_requests SET state = 'discarded', error_type = ?, error = ?, status = ?, retryable = 0 "
                "WHERE document_id = ? AND state = 'answered'",
                (*why, document_id),
            )
            return keys

        return self.cache.transaction(write)

    def counts(self) -> dict[str, int]:
        """How many request lines are in each state."""
        rows = self.cache.query(
            lambda c: c.execute("SELECT state, COUNT(*) FROM batch_requests GROUP BY state").fetchall()
        )
        return {str(state): int(n) for state, n in rows}
