"""Many documents at once: a sliding window of concurrent extractions, optional rate limits.

:func:`extract_many` keeps up to ``concurrency`` documents in flight and starts the next one the moment
any finishes — there are no batch barriers, so one slow request never holds back the rest. Each outcome
is yielded as its document finishes (in completion order). A document that fails yields an outcome
with its error and the run goes on, except for errors marked ``fatal`` (a wrong key, a 403, an
exhausted quota): then nothing new starts, the documents still in flight are finished and yielded, and
the fatal error is raised — every further request would fail the same way.

Requests-per-minute and tokens-per-minute limits are enforced by :class:`RateLimiter` before every
network request (cache hits are free and not limited).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import Settings, resolve_settings
from .documents import Document
from .extract import extract
from .schema import DocumentInsights

if TYPE_CHECKING:  # the client (openai, instructor) is imported when a model is first called
    from .client import ModelClient

DEFAULT_CONCURRENCY = 8


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
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
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
        documents: the documents (consumed lazily, ``concurrency`` ahead at most).
        concurrency: documents in flight at once.
        client: a shared :class:`~insights.client.ModelClient`; built from ``settings`` when omitted.
        settings: used to build the client.
        rpm, tpm: optional requests-per-minute and tokens-per-minute limits.

    Yields:
        An :class:`Outcome` per document, in completion order.

    Raises:
        ModelError: a ``fatal`` error (auth, quota): raised after the in-flight documents are yielded.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    from .client import ModelClient

    owned = client is None
    client = client or ModelClient(settings or resolve_settings())
    if rpm or tpm:
        client.before_request = RateLimiter(rpm, tpm).acquire
    tasks: queue.SimpleQueue[Document | None] = queue.SimpleQueue()
    results: queue.SimpleQueue[Outcome] = queue.SimpleQueue()

    def work() -> None:
        while (document := tasks.get()) is not None:
            try:
                results.put(Outcome(document, result=extract(document, client=client)))
            except Exception as exc:  # every failure becomes that document's outcome
                results.put(Outcome(document, error=exc))

    # Daemon threads: an interrupted run exits at once instead of waiting for the requests in flight
    # (their documents have no result yet; only this thread writes, and a resumed run redoes them).
    workers = [threading.Thread(target=work, name=f"insights-{i}", daemon=True) for i in range(concurrency)]
    for worker in workers:
        worker.start()
    source = iter(documents)
    fatal: BaseException | None = None
    in_flight = 0

    def refill() -> None:
        nonlocal in_flight
        while fatal is None and in_flight < concurrency:
            document = next(source, None)
            if document is None:
                return
            tasks.put(document)
            in_flight += 1

    try:
        refill()
        while in_flight:
            outcome = _next(results)
            in_flight -= 1
            if getattr(outcome.error, "fatal", False) and fatal is None:
                fatal = outcome.error
            yield outcome
            refill()
    finally:
        for _ in workers:
            tasks.put(None)
        if owned:
            client.close()
    if fatal is not None:
        raise fatal


def _next(results: queue.SimpleQueue[Outcome]) -> Outcome:
    # A timed wait, so that Ctrl-C reaches the main thread promptly on every platform.
    while True:
        try:
            return results.get(timeout=0.5)
        except queue.Empty:
            continue


@dataclass
class RunSummary:
    """Totals over a run's outcomes."""

    done: int = 0
    failed: int = 0
    from_cache: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, outcome: Outcome) -> None:
        """Count one outcome (a fatal error is not a failed document: the run stopped)."""
        if outcome.result is None:
            self.failed += int(not getattr(outcome.error, "fatal", False))
            return
        usage = outcome.result.provenance.usage
        self.done += 1
        self.from_cache += int(usage.calls > 0 and usage.cached_calls == usage.calls)
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cost_usd += usage.cost_usd or 0.0
