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


# ------------------------------------------------------------------ long documents inside the window
LONG_SEED = "004_578e9dd3e6ef0cec"  # 10 chunks at chunk_chars=2000, chunk_overlap=200
CHUNKED = {"chunk_chars": 2000, "chunk_overlap": 200}


def long_doc() -> insights.Document:
    return insights.load_document(SEEDS / f"{LONG_SEED}.txt")


def comparable(result: insights.DocumentInsights | None) -> dict[str, Any]:
    assert result is not None
    return result.model_dump(exclude={"provenance": {"latency_s", "extracted_at"}})


def test_chunks_of_a_long_document_share_the_window_with_short_ones() -> None:
    # One short document, the 10-chunk one, six more short ones, 8 in flight: the window holds chunk
    # calls, so the first 8 requests held at once are the short document and seven chunks of the long one.
    long = long_doc()
    docs = [*make_docs(1), long, *make_docs(7)[1:]]
    outcomes: list[insights.Outcome] = []
    with ReferenceServer(ANNOTATIONS) as srv:
        srv.hold()
        runner = threading.Thread(
            target=lambda: outcomes.extend(insights.extract_many(docs, concurrency=8, client=client(srv, **CHUNKED)))
        )
        runner.start()
        try:
            assert srv.wait_held(8, count=8), "the window never filled"
            held = sorted((r["doc_id"], r["part"]) for r in srv.requests)
            assert held == sorted([("doc000", 1)] + [(long.id, part) for part in range(1, 8)])
            assert all(r["parts"] == 10 for r in srv.requests if r["doc_id"] == long.id)
            for step in range(1, 9):  # each answer makes room for exactly one more request
                srv.release(1)
                assert srv.wait_held(8, count=8 + step), f"step {step}: no new request while seven were held"
        finally:
            srv.release()
            runner.join(timeout=120)
        assert srv.count == 10 + 7
    assert len(outcomes) == 8 and all(o.ok for o in outcomes)
    [got] = [o for o in outcomes if o.document.id == long.id]
    assert got.result is not None and got.result.provenance.chunks == 10
    assert got.result.provenance.usage.calls == 10

    # The same document with its chunks one after another (the single-document API): the same result,
    # the same insights in the same order, whatever order the chunks came back in.
    with ReferenceServer(ANNOTATIONS) as srv:
        sequential = insights.extract(long, client=client(srv, **CHUNKED))
        order = [r["part"] for r in srv.requests]
    assert order == list(range(1, 11))
    assert comparable(got.result) == comparable(sequential)
    assert len(sequential.insights()) >= 10  # a comparison with content in it


def test_a_long_document_is_yielded_only_after_its_last_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunk 3 of the long document waits until the test has seen every short document finish. Its other
    # chunks finish meanwhile (they share the window), yet the document comes out only after chunk 3.
    long = long_doc()
    docs = [long, *make_docs(5)]
    shorts_done = threading.Event()
    original = insights.ModelClient._openai_create

    def slow_part3(self: insights.ModelClient, request: dict[str, Any]) -> object:
        if f"Document ID: {long.id}" in str(request["messages"]) and "Part: 3 of 10" in str(request["messages"]):
            assert shorts_done.wait(120), "the short documents waited for the long one"
        return original(self, request)

    monkeypatch.setattr(insights.ModelClient, "_openai_create", slow_part3)
    order: list[str] = []
    with ReferenceServer(ANNOTATIONS) as srv:
        for outcome in insights.extract_many(docs, concurrency=4, client=client(srv, **CHUNKED)):
            assert outcome.ok, outcome.error
            order.append(outcome.document.id)
            if len(order) == 5:
                assert long.id not in order
                parts = sorted(r["part"] for r in srv.requests if r["doc_id"] == long.id)
                assert parts == [1, 2, *range(4, 11)]  # every other chunk was asked while chunk 3 waited
                shorts_done.set()
    assert order[-1] == long.id and len(order) == 6


def test_one_failing_chunk_fails_its_document_and_discards_its_cached_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunk 3 of the long document is sent under another document id, which the server rejects (400).
    long = long_doc()
    docs = [long, *make_docs(3)]
    original = insights.ModelClient._openai_create

    def reject_part3(self: insights.ModelClient, request: dict[str, Any]) -> object:
        if f"Document ID: {long.id}" in str(request["messages"]) and "Part: 3 of 10" in str(request["messages"]):
            messages = [dict(m) for m in request["messages"]]
            for m in messages:
                if isinstance(m.get("content"), str):
                    m["content"] = m["content"].replace(f"Document ID: {long.id}", "Document ID: broken")
            request = {**request, "messages": messages}
        return original(self, request)

    monkeypatch.setattr(insights.ModelClient, "_openai_create", reject_part3)
    settings = insights.resolve_settings(
        env={}, base_url="", api_key="sk-test", cache_path=tmp_path / "c.db", **CHUNKED
    )
    with ReferenceServer(ANNOTATIONS, plan=FaultPlan(script={"broken": ["400"] * 10})) as srv:
        settings = settings.with_(base_url=srv.url)
        with insights.ModelClient(settings, sleep=FakeClock()) as c:
            outcomes = {o.document.id: o for o in insights.extract_many(docs, concurrency=4, client=c)}
            asked = [r for r in srv.requests if r["doc_id"] in (long.id, "broken")]
            calls = c.cache.calls(long.id)
            assert [i for i, o in outcomes.items() if not o.ok] == [long.id]
            error = outcomes[long.id].error
            assert isinstance(error, insights.RequestRejected) and error.status == 400
            assert error.usage is not None and error.usage.calls == len(asked) - 1  # a 400 logs no call
            # Every other chunk's answer was stored while it ran, and discarded with its document.
            assert calls and all(c.cache.get(call["key"]) is None for call in calls)
            assert c.cache.stats().entries == 3  # the three short documents' answers only


def test_a_fatal_error_ends_a_long_document_cut_short_with_its_spend(monkeypatch: pytest.MonkeyPatch) -> None:
    # The short document's 401 stops the run while the long one's first chunk is in flight (it waits
    # until the test has seen the 401): no chunk is asked after the stop, and the long document comes
    # out failed with the fatal error and what it spent.
    long = long_doc()
    docs = [*make_docs(1), long, *make_docs(4)[1:]]
    stopped = threading.Event()
    original = insights.ModelClient._openai_create

    def wait_for_the_stop(self: insights.ModelClient, request: dict[str, Any]) -> object:
        if f"Document ID: {long.id}" in str(request["messages"]):
            assert stopped.wait(120), "the 401 never came out"
        return original(self, request)

    monkeypatch.setattr(insights.ModelClient, "_openai_create", wait_for_the_stop)
    seen: list[insights.Outcome] = []
    with ReferenceServer(ANNOTATIONS, plan=FaultPlan(script={"doc000": ["401"] * 10})) as srv:
        with pytest.raises(insights.AuthError):
            for outcome in insights.extract_many(docs, concurrency=2, client=client(srv, **CHUNKED)):
                seen.append(outcome)
                stopped.set()
        asked = [r["part"] for r in srv.requests if r["doc_id"] == long.id]
    assert [o.document.id for o in seen] == ["doc000", long.id]
    cut = seen[1].error
    assert isinstance(cut, insights.AuthError) and cut.fatal and cut is not seen[0].error
    assert asked == [1] and cut.usage is not None and cut.usage.calls == 1
