"""Many documents at once: a sliding window of concurrent chunk calls, optional rate limits.

:func:`extract_many` keeps up to ``concurrency`` model calls in flight and starts the next one the moment
any finishes — there are no batch barriers, so one slow request never holds back the rest. The unit of
work in the window is a chunk, not a document: the chunks of a long document are handed out one after
another like any other call and run side by side (up to the whole window), with the next documents
filling the slots they leave. A document's result is assembled when its last chunk returns, its chunks
merged in chunk order (:class:`~insights.extract.PendingDocument`), so it is the result a sequential run
gives. Each outcome is yielded as its document finishes (in completion order). A document whose chunk
fails yields an outcome with that error once its chunks still in flight are back (its chunks not yet
asked are never asked, and what its calls stored in the cache is discarded), and the run goes on, except
for errors marked ``fatal`` (a wrong key, a 403, an exhausted quota, a model the endpoint does not serve):
then nothing new starts, the calls still in flight are finished and their documents yielded — a document
cut short before its last chunk fails with a copy of the fatal error carrying its own spend (its finished
chunks stay cached) — and the fatal error is raised: every further request would fail the same way. The
same happens when ``Settings.connection_failures`` documents in a row could not reach the endpoint
(:class:`~insights.errors.ConnectionFailed`): the run stops with
:class:`~insights.errors.EndpointUnreachable`, naming the endpoint, instead of failing every document.
When :func:`extract_many` builds its own client, it first asks the endpoint whether it serves the model
(:meth:`~insights.client.ModelClient.check`); a client passed in is used as it is.

Requests-per-minute and tokens-per-minute limits are enforced by :class:`RateLimiter` before every
network request (cache hits are free and not limited).
"""

from __future__ import annotations

import copy
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .config import Settings, resolve_settings
from .documents import Document
from .errors import ConnectionFailed, EndpointUnreachable, InsightsError, ModelError
from .extract import PendingDocument
from .schema import DocumentInsights

if TYPE_CHECKING:  # the client (openai, instructor) is imported when a model is first called
    from .client import ModelClient

DEFAULT_CONCURRENCY = 8
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """How one document ended: ``result`` when it succeeded, ``error`` when it did not."""

    document: Document
    result: DocumentInsights | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """Whether the document produced a result."""
        return self.error is None


class RateLimiter:
    """Blocks callers so that at most ``rpm`` requests and ``tpm`` tokens start in any 60 s window.

    A continuous token bucket for each limit (capacity one minute's worth), shared by every worker.
    ``None`` means no limit; a limit must be a positive number (``ValueError`` otherwise).
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        for name, limit in (("rpm", rpm), ("tpm", tpm)):
            if limit is not None and not (math.isfinite(limit) and limit > 0):
                raise ValueError(f"{name} must be a positive number (or None for no limit), got {limit!r}")
        self.rpm, self.tpm = rpm, tpm
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        now = clock()
        self._requests = float(rpm or 0)
        self._tokens = float(tpm or 0)
        self._last = now

    def acquire(self, tokens: int = 0) -> None:
        """Wait until one request of ``tokens`` tokens may start."""
        if not self.rpm and not self.tpm:
            return
        while True:
            with self._lock:
                now = self._clock()
                elapsed, self._last = now - self._last, now
                if self.rpm:
                    self._requests = min(self.rpm, self._requests + elapsed * self.rpm / 60)
                if self.tpm:
                    self._tokens = min(self.tpm, self._tokens + elapsed * self.tpm / 60)
                need_tokens = min(tokens, self.tpm) if self.tpm else 0
                wait_r = 0.0 if not self.rpm or self._requests >= 1 else (1 - self._requests) * 60 / self.rpm
                wait_t = (
                    0.0 if not self.tpm or self._tokens >= need_tokens else (need_tokens - self._tokens) * 60 / self.tpm
                )
                if wait_r == 0 and wait_t == 0:
                    if self.rpm:
                        self._requests -= 1
                    if self.tpm:
                        self._tokens -= need_tokens
                    return
                delay = max(wait_r, wait_t)
            self._sleep(delay)


def extract_many(
    documents: Iterable[Document],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    client: ModelClient | None = None,
    settings: Settings | None = None,
    rpm: float | None = None,
    tpm: float | None = None,
) -> Iterator[Outcome]:
    """Extract from many documents concurrently, yielding each outcome as its document finishes.

    Args:
        documents: the documents (consumed lazily: the next one is read when a slot is free and every
            chunk of the one before has been handed out).
        concurrency: model calls (chunks) in flight at once.
        client: a shared :class:`~insights.client.ModelClient`; built from ``settings`` when omitted.
        settings: used to build the client.
        rpm, tpm: optional requests-per-minute and tokens-per-minute limits.

    Yields:
        An :class:`Outcome` per document, in completion order.

    Raises:
        ModelError: a ``fatal`` error (auth, quota, unknown model, an unreachable endpoint): raised after
            the in-flight documents are yielded.
        ValueError: ``concurrency`` below 1, or a limit that is not a positive number.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency!r}")
    limiter = RateLimiter(rpm, tpm) if rpm is not None or tpm is not None else None
    from .client import ModelClient

    owned = client is None
    client = client or ModelClient(settings or resolve_settings())
    if owned:
        try:
            client.check()
        except BaseException:
            client.close()
            raise
    if limiter is not None:
        client.before_request = limiter.acquire
    tasks: queue.SimpleQueue[tuple[_Job, int] | None] = queue.SimpleQueue()
    results: queue.SimpleQueue[tuple[_Job, BaseException | None]] = queue.SimpleQueue()

    def work() -> None:
        while (task := tasks.get()) is not None:
            job, index = task
            error: BaseException | None = None
            if job.error is None:  # a chunk of a document that already failed is not asked
                try:
                    job.pending.ground(client, index)
                except Exception as exc:  # every failure becomes its document's outcome
                    error = exc
            results.put((job, error))

    # Daemon threads: an interrupted run exits at once instead of waiting for the requests in flight
    # (their documents have no result yet; only this thread writes, and a resumed run redoes them).
    workers = [threading.Thread(target=work, name=f"insights-{i}", daemon=True) for i in range(concurrency)]
    for worker in workers:
        worker.start()
    source = iter(documents)
    fatal: BaseException | None = None
    in_flight = 0  # chunk calls handed to the workers and not yet back
    unreachable = 0  # documents in a row that could not reach the endpoint
    current: _Job | None = None  # the document whose chunks are being handed out
    open_jobs: dict[int, _Job] = {}  # documents started and not yet yielded

    def refill() -> None:
        nonlocal in_flight, current
        while fatal is None and in_flight < concurrency:
            if current is None or current.error is not None or current.sent == len(current.pending.chunks):
                document = next(source, None)
                if document is None:
                    return
                current = _Job(PendingDocument(document, client.settings))
                open_jobs[id(current)] = current
            tasks.put((current, current.sent))
            current.sent += 1
            in_flight += 1

    def finish(job: _Job) -> Outcome:
        del open_jobs[id(job)]
        if job.error is None and job.sent < len(job.pending.chunks):  # the run stopped before its last chunk
            job.error = _stopped(fatal)
            if isinstance(job.error, InsightsError):  # its finished chunks stay cached: they did not fail
                job.error.usage = job.pending.usage()
            return Outcome(job.pending.document, error=job.error)
        if job.error is not None:
            job.pending.fail(client, job.error)
            return Outcome(job.pending.document, error=job.error)
        try:
            return Outcome(job.pending.document, result=job.pending.assemble(client))
        except Exception as exc:  # assembly failed (a record that does not validate)
            job.pending.fail(client, exc)
            return Outcome(job.pending.document, error=exc)

    try:
        refill()
        while in_flight:
            job, error = _next(results)
            in_flight -= 1
            job.back += 1
            if error is not None and job.error is None:
                job.error = error
            cut_short = job.error is not None or fatal is not None
            settled = job.back == job.sent and (cut_short or job.sent == len(job.pending.chunks))
            if not settled:
                refill()
                continue
            outcome = finish(job)
            unreachable = unreachable + 1 if isinstance(outcome.error, ConnectionFailed) else 0
            if getattr(outcome.error, "fatal", False) and fatal is None:
                fatal = outcome.error
            elif unreachable == client.settings.connection_failures and fatal is None:
                fatal = EndpointUnreachable(
                    f"stopped after {unreachable} documents in a row failed to reach {client.base_url}; "
                    f"the last error: {outcome.error} Check that the server is running and that "
                    "OPENAI_BASE_URL or --base-url points at it, then run again.",
                    attempts=getattr(outcome.error, "attempts", 1),
                )
            yield outcome
            if fatal is not None:  # documents cut short with nothing left in flight end now
                for idle in [j for j in open_jobs.values() if j.back == j.sent]:
                    yield finish(idle)
            refill()
    finally:
        for _ in workers:
            tasks.put(None)
        if owned:
            client.close()
    if fatal is not None:
        raise fatal


@dataclass(eq=False)
class _Job:
    """A document in the window: how many of its chunks were handed out and how many came back.
    Only the main thread writes it; a worker reads ``error`` to skip the chunks of a failed document."""

    pending: PendingDocument
    sent: int = 0
    back: int = 0
    error: BaseException | None = None


def _stopped(fatal: BaseException | None) -> BaseException:
    """The error of a document the run stopped before its last chunk: a copy of the fatal error (its
    usage will be the document's own)."""
    assert fatal is not None
    try:
        return copy.copy(fatal)
    except Exception:  # noqa: BLE001 - an error that cannot be copied: a plain fatal error saying why
        return _Stopped(f"the run stopped before this document's last chunk: {fatal}")


class _Stopped(ModelError):
    fatal = True


def _next(results: queue.SimpleQueue[T]) -> T:
    # A timed wait, so that Ctrl-C reaches the main thread promptly on every platform.
    while True:
        try:
            return results.get(timeout=0.5)
        except queue.Empty:
            continue


@dataclass
class RunSummary:
    """Totals over a run's outcomes. ``unpriced`` counts documents that spent tokens on a model without
    a price: then ``cost_usd`` is not the run's cost, and it should be shown as unknown."""

    done: int = 0
    failed: int = 0
    from_cache: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0

    def add(self, outcome: Outcome) -> None:
        """Count one outcome (a fatal error is not a failed document: the run stopped). Tokens and cost
        count every call, failed documents' included: the totals equal the call log's."""
        if outcome.result is None:
            self.failed += int(not getattr(outcome.error, "fatal", False))
            spent = getattr(outcome.error, "usage", None)
            if spent is not None:
                self.input_tokens += spent.input_tokens
                self.output_tokens += spent.output_tokens
                self.cost_usd += spent.cost_usd or 0.0
            return
        usage = outcome.result.provenance.usage
        self.done += 1
        self.from_cache += int(usage.calls > 0 and usage.cached_calls == usage.calls)
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cost_usd += usage.cost_usd or 0.0
        self.unpriced += int(usage.cost_usd is None and usage.calls > usage.cached_calls)
