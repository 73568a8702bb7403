"""The concurrent engine: a sliding window, failure isolation, fatal stops, rate limits.

Concurrency is checked by what is in flight (the reference server holds requests until released),
never by how long anything takes.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import ANNOTATIONS, SEEDS, FakeClock

import insights
from insights.batch import RateLimiter
from insights.testing.server import FaultPlan, ReferenceServer


def make_docs(n: int) -> list[insights.Document]:
    base = "A plain sentence about public sector innovation and its many obstacles in practice."
    return [insights.parse_document(f"# Doc {i}\n\n{base} Number {i}.\n", doc_id=f"doc{i:03d}") for i in range(n)]


def client(srv: ReferenceServer, **kw: object) -> insights.ModelClient:
    settings = insights.resolve_settings(env={}, base_url=srv.url, api_key="sk-test", no_cache=True, **kw)  # type: ignore[arg-type]
    return insights.ModelClient(settings, sleep=FakeClock())


def test_sliding_window_keeps_the_window_full() -> None:
    # The server holds every request and lets them go one at a time. After each one, the next
    # document's request must arrive while the other seven are still held: a window that slides, never
    # more than 8 in flight and never waiting for a whole batch. Nothing here depends on timing.
    docs = make_docs(24)
    outcomes: list[insights.Outcome] = []
    with ReferenceServer({}) as srv:
        srv.hold()
        runner = threading.Thread(
            target=lambda: outcomes.extend(insights.extract_many(docs, concurrency=8, client=client(srv)))
        )
        runner.start()
        try:
            assert srv.wait_held(8, count=8), "the window never filled"
            for step in range(1, 17):
                srv.release(1)
                assert srv.wait_held(8, count=8 + step), f"step {step}: no new request while seven were held"
            assert srv.count == 24
        finally:
            srv.release()
            runner.join(timeout=120)
    assert len(outcomes) == 24 and all(o.ok for o in outcomes)
    assert {o.document.id for o in outcomes} == {f"doc{i:03d}" for i in range(24)}


def test_a_slow_document_does_not_hold_back_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    # doc000's request waits until the test has seen the other five documents finish; with batches
    # instead of a sliding window, they could not finish first, and the wait would fail.
    docs = make_docs(6)
    others_done = threading.Event()
    original = insights.ModelClient._openai_create

    def slow_doc000(self: insights.ModelClient, request: dict[str, Any]) -> object:
        if "Document ID: doc000" in str(request["messages"]):
            assert others_done.wait(120), "the other documents waited for doc000"
        return original(self, request)

    monkeypatch.setattr(insights.ModelClient, "_openai_create", slow_doc000)
    order: list[str] = []
    with ReferenceServer({}) as srv:
        for outcome in insights.extract_many(docs, concurrency=3, client=client(srv)):
            assert outcome.ok, outcome.error
            order.append(outcome.document.id)
            if len(order) == 5:
                others_done.set()
    assert order[-1] == "doc000"  # finished last although it started first
    assert sorted(order) == [d.id for d in docs]


def test_a_failing_document_is_isolated() -> None:
    docs = make_docs(5)
    with ReferenceServer({}, plan=FaultPlan(script={"doc002": ["500"] * 10})) as srv:
        outcomes = {
            o.document.id: o for o in insights.extract_many(docs, concurrency=2, client=client(srv, max_retries=2))
        }
    assert [i for i, o in outcomes.items() if not o.ok] == ["doc002"]
    error = outcomes["doc002"].error
    assert isinstance(error, insights.TransportError) and error.retryable and error.attempts == 3


@pytest.mark.parametrize(
    ("action", "error"),
    [("401", insights.AuthError), ("429_quota", insights.QuotaExceeded), ("403", insights.AuthError)],
)
def test_fatal_errors_stop_the_run(action: str, error: type) -> None:
    docs = make_docs(20)
    with ReferenceServer({}, plan=FaultPlan(script={"*": [action] * 100})) as srv:
        seen: list[insights.Outcome] = []
        with pytest.raises(error):
            for outcome in insights.extract_many(docs, concurrency=2, client=client(srv)):
                seen.append(outcome)
        assert srv.count <= 2  # what was in flight, no retries, nothing new started
    assert len(seen) <= 2


def test_rate_limiter_spaces_requests_with_a_fake_clock() -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    limiter = RateLimiter(rpm=60, clock=lambda: now[0], sleep=sleep)
    for _ in range(65):
        limiter.acquire()
    assert now[0] == pytest.approx(5.0, abs=0.01)  # a minute's burst of 60, then one a second

    now[0], sleeps[:] = 0.0, []
    limiter = RateLimiter(tpm=1200, clock=lambda: now[0], sleep=sleep)
    limiter.acquire(1200)
    limiter.acquire(600)
    assert now[0] == pytest.approx(30.0, abs=0.01)


def test_rate_limiter_is_thread_safe() -> None:
    # A stopped clock: no refill, so every one of the 4000 acquisitions must be counted exactly.
    limiter = RateLimiter(rpm=100_000, clock=lambda: 0.0)
    threads = [threading.Thread(target=lambda: [limiter.acquire() for _ in range(500)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert limiter._requests == 100_000 - 4000


def test_extract_many_over_seeds_matches_annotations(tmp_path: Path) -> None:
    with ReferenceServer(ANNOTATIONS) as srv:
        outcomes = list(insights.extract_many(insights.load_corpus(SEEDS), concurrency=4, client=client(srv)))
    assert sum(len(o.result.insights()) for o in outcomes if o.result) == 61
