"""The concurrent engine: a sliding window, failure isolation, fatal stops, rate limits."""

from __future__ import annotations

import threading
from pathlib import Path

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


def test_sliding_window_keeps_the_window_full(monkeypatch: pytest.MonkeyPatch) -> None:
    in_flight, peak, lock = 0, [], threading.Lock()
    original = insights.ModelClient._openai_create

    def counted(self: insights.ModelClient, request: dict) -> object:
        nonlocal in_flight
        with lock:
            in_flight += 1
            peak.append(in_flight)
        try:
            return original(self, request)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(insights.ModelClient, "_openai_create", counted)
    with ReferenceServer({}, latency=0.2) as srv:
        outcomes = list(insights.extract_many(make_docs(24), concurrency=8, client=client(srv)))
    assert len(outcomes) == 24 and all(o.ok for o in outcomes)
    assert {o.document.id for o in outcomes} == {f"doc{i:03d}" for i in range(24)}
    assert max(peak) == 8  # the window filled up, and never went past its size
    assert sum(1 for p in peak if p >= 7) >= 12  # and stayed nearly full: no waiting for a whole batch


def test_a_slow_document_does_not_hold_back_the_others() -> None:
    docs = make_docs(6)
    with ReferenceServer({}, plan=FaultPlan(script={"doc000": ["timeout"]}, timeout_s=1.0)) as srv:
        order = [o.document.id for o in insights.extract_many(docs, concurrency=3, client=client(srv, timeout=5.0))]
    assert order[-1] == "doc000"  # finished last although it started first
    assert len(order) == 6


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
    limiter = RateLimiter(rpm=100_000)
    threads = [threading.Thread(target=lambda: [limiter.acquire() for _ in range(500)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert limiter._requests == pytest.approx(100_000 - 4000, abs=50)


def test_extract_many_over_seeds_matches_annotations(tmp_path: Path) -> None:
    with ReferenceServer(ANNOTATIONS) as srv:
        outcomes = list(insights.extract_many(insights.load_corpus(SEEDS), concurrency=4, client=client(srv)))
    assert sum(len(o.result.insights()) for o in outcomes if o.result) == 61
