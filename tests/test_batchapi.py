"""The OpenAI Batch API path (``insights batch``), against the reference server's ``/v1/files`` and ``/v1/batches``.

The promises: a batch round trip writes the output a synchronous run writes, from exactly the requests (and
cache keys) that run sends; killing the process between submit and collect loses nothing and pays nothing
twice; failed requests, expired and cancelled batches end with every document in the output or the errors
file. Polling runs on a fake clock (or ``--poll 0``): the reference server advances a batch one state per
retrieve, whatever the time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import REPO, SEEDS, SHARED_CORPUS, FakeClock

import insights
from insights import batchapi, cli
from insights.batchstore import BatchStore
from insights.cache import Cache
from insights.client import BatchAPI, ModelClient
from insights.extract import chunks_for
from insights.output import OutputWriter, read_jsonl
from insights.pricing import cost, load_prices
from insights.testing.batches import BatchPlan
from insights.testing.server import FaultPlan, ReferenceServer

KEY = "sk-test-batch-0123456789"
SEED_IDS = sorted(p.stem for p in SEEDS.glob("*.txt"))


# ------------------------------------------------------------------------------------------- helpers
def settings_for(srv: ReferenceServer, cache: Path, **overrides: Any) -> insights.Settings:
    return insights.resolve_settings(env={}, base_url=srv.url, api_key=KEY, cache_path=cache, **overrides)


def small_doc(i: int) -> str:
    return (
        f"# Pilot report {i}\n\n[[country:Testland]]\n[[year:{2000 + i}]]\n\n## Learnings\n\n"
        f"The district office in pilot {i} could not release funds before the end of the fiscal quarter.\n"
        f"Volunteers from ward {i} kept the sensor network running long after the grant had ended.\n"
    )


def small_docs(n: int) -> list[insights.Document]:
    return [insights.parse_document(small_doc(i), doc_id=f"pilot{i:03d}") for i in range(n)]


def canon(lines: Iterable[dict[str, Any]]) -> Counter[str]:
    return Counter(json.dumps(x, sort_keys=True, ensure_ascii=False) for x in lines)


class Out:
    """The three files of one ``-o`` output."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.documents = out.with_name(out.stem + ".documents.jsonl")
        self.errors = out.with_name(out.stem + ".errors.jsonl")

    def lines(self) -> Counter[str]:
        return canon(read_jsonl(self.out))

    def ledger(self) -> dict[str, dict[str, Any]]:
        return {
            x["document_id"]: {"counts": x["counts"], "rejected": x["rejected"]} for x in read_jsonl(self.documents)
        }

    def error_records(self) -> dict[str, dict[str, Any]]:
        return {x["document_id"]: {k: v for k, v in x.items() if k != "time"} for x in read_jsonl(self.errors)}


def sync_run(
    docs: list[insights.Document], out: Path, plan: FaultPlan | None = None, server: ReferenceServer | None = None
) -> tuple[Out, list[Any]]:
    """A synchronous run with its own cache (on its own server unless given one): the reference. Returns its
    files and the bodies it sent."""
    with contextlib.nullcontext(server) if server else ReferenceServer(plan=plan) as srv:
        assert srv is not None
        with ModelClient(settings_for(srv, out.parent / "sync.db"), sleep=FakeClock()) as client:
            with OutputWriter(out) as writer:
                writer.resume(docs, client.model, "-", overwrite=False)
                for outcome in insights.extract_many(docs, client=client, concurrency=4):
                    if outcome.result is not None:
                        writer.write(outcome.document, outcome.result)
                    else:
                        writer.write_error(outcome.document, outcome.error)  # type: ignore[arg-type]
        return Out(out), [r["body"] for r in srv.requests]


def batch_run(
    srv: ReferenceServer,
    docs: list[insights.Document],
    out: Path,
    *,
    submit: bool = True,
    limits: batchapi.Limits | None = None,
    **collect: Any,
) -> tuple[Out, batchapi.CollectReport]:
    """``submit`` then ``collect`` (waiting, on a fake clock unless told otherwise) through the library."""
    limits = limits or batchapi.Limits()
    collect.setdefault("wait", True)
    collect.setdefault("sleep", FakeClock())
    with ModelClient(settings_for(srv, out.parent / "batch.db"), sleep=FakeClock()) as client:
        if submit:
            batchapi.submit(docs, client, limits=limits)
        with OutputWriter(out) as writer:
            done = writer.resume(docs, client.model, insights.prompts.load_prompts().version, overwrite=False)
            todo = [d for d in docs if d.id not in done]
            report = batchapi.collect(todo, writer, client, limits=limits, **collect)
    return Out(out), report


def cache_rows(path: Path) -> dict[str, str]:
    with Cache(path) as cache:
        return dict(cache.query(lambda c: c.execute("SELECT key, response FROM responses").fetchall()))


def batch_requests(srv: ReferenceServer) -> list[dict[str, Any]]:
    return [r for r in srv.requests if r.get("batch")]


@pytest.fixture
def srv() -> Iterator[ReferenceServer]:
    server = ReferenceServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def seeds() -> list[insights.Document]:
    return insights.load_corpus([SEEDS])


# ================================================================================ 1. the round trip
def test_round_trip_writes_the_synchronous_output_from_the_same_requests_and_keys(tmp_path, seeds):
    # The first answer for one seed quotes words that are not in it: a re-ask, sent as a follow-up batch.
    # One server for both runs: its address is part of every cache key.
    with ReferenceServer(plan=FaultPlan(script={seeds[0].id: ["hallucinate"]})) as srv:
        ref, sync_bodies = sync_run(seeds, tmp_path / "sync" / "out.jsonl", server=srv)
        srv.reset()
        out, report = batch_run(srv, seeds, tmp_path / "batch" / "out.jsonl")
        sent = srv.requests
    assert out.lines() == ref.lines() and sum(out.lines().values()) > 40  # equal in content
    assert out.ledger() == ref.ledger() and sorted(out.ledger()) == SEED_IDS
    assert out.error_records() == {}
    # Exactly the bodies a synchronous run POSTs (the re-ask included), each once, all through batches.
    assert all(r.get("batch") for r in sent)
    assert Counter(json.dumps(b) for b in (r["body"] for r in sent)) == Counter(json.dumps(b) for b in sync_bodies)
    # ...and the answers stored under the same keys, byte for byte.
    assert cache_rows(tmp_path / "batch" / "batch.db") == cache_rows(tmp_path / "sync" / "sync.db")
    assert report.followup_requests == 1 and report.followup_jobs == 1 and report.done == 5
    assert report.harvest.answers == 6 and report.harvest.jobs == 2 and report.waiting == 0


def test_batch_input_lines_carry_the_exact_bytes_of_a_synchronous_request(tmp_path, srv, seeds):
    _, sync_bodies = sync_run(seeds[:2], tmp_path / "sync" / "out.jsonl")
    with ModelClient(settings_for(srv, tmp_path / "b.db")) as client:
        report = batchapi.submit(seeds[:2], client)
    lines = [json.loads(x) for x in srv.batches.contents[report.jobs[0].input_file_id].splitlines()]
    assert [x["url"] for x in lines] == ["/v1/chat/completions"] * 2 and {x["method"] for x in lines} == {"POST"}
    assert sorted(map(json.dumps, (x["body"] for x in lines))) == sorted(map(json.dumps, sync_bodies))
    with Cache(tmp_path / "b.db") as cache:
        rows = BatchStore(cache).requests(report.jobs[0].job)
    assert {r.custom_id: r.key[3:35] for r in rows} == {x["custom_id"]: x["custom_id"] for x in lines}
    assert {r.document_id for r in rows} == {d.id for d in seeds[:2]}


def test_every_chunk_of_a_long_document_is_captured_in_one_submit(tmp_path, srv):
    text = "# A long report\n\n[[country:Testland]]\n\n" + "\n".join(
        small_doc(i).split("\n\n", 3)[-1] for i in range(40)
    )
    doc = insights.parse_document(text, doc_id="long001")
    settings = settings_for(srv, tmp_path / "b.db", chunk_chars=2_000)
    chunks = len(chunks_for(doc, settings))
    assert chunks >= 3
    with ModelClient(settings) as client:
        report = batchapi.submit([doc], client)
    assert report.requests == chunks and len(report.jobs) == 1  # every chunk, not only the first
    assert srv.requests == []  # nothing ran yet
    with ModelClient(settings, sleep=FakeClock()) as client, OutputWriter(tmp_path / "out.jsonl") as writer:
        writer.resume([doc], client.model, "-", overwrite=False)
        result = batchapi.collect([doc], writer, client, wait=True, sleep=FakeClock())
    assert result.done == 1 and result.followup_requests == 0  # one batch held them all
    assert sorted(r["part"] for r in batch_requests(srv)) == list(range(1, chunks + 1))


def test_splits_into_files_within_the_request_and_byte_limits(tmp_path, srv, seeds):
    biggest = max(len(json.dumps(r)) for r in [{"x": d.text} for d in seeds]) * 2 + 20_000
    srv.batches.plan = BatchPlan(max_requests=2, max_bytes=biggest * 2)  # the server refuses a larger file
    out, report = batch_run(srv, seeds, tmp_path / "out.jsonl", limits=batchapi.Limits(requests=2, bytes=biggest * 2))
    sizes = [len(srv.batches.contents[b.input_file_id].splitlines()) for b in srv.batches.batches.values()]
    assert sizes == [2, 2, 1] and report.harvest.jobs == 3
    assert sorted(out.ledger()) == SEED_IDS and out.error_records() == {}
    assert {b.status for b in srv.batches.batches.values()} == {"completed"}


def test_split_puts_an_oversized_line_alone():
    requests = [
        batchapi.Request(f"v1:{i:064x}", "d", b'{"x":"' + b"a" * n + b'"}') for i, n in enumerate((10, 500, 10))
    ]
    parts = list(batchapi.split(requests, batchapi.Limits(requests=10, bytes=300), "/v1/chat/completions"))
    assert [len(p) for p in parts] == [1, 1, 1]
    parts = list(batchapi.split(requests, batchapi.Limits(requests=2, bytes=10_000), "/v1/chat/completions"))
    assert [len(p) for p in parts] == [2, 1]


# ========================================================================= 2. nothing paid twice
def test_a_second_submit_while_a_job_is_live_submits_nothing(tmp_path, srv, seeds):
    with ModelClient(settings_for(srv, tmp_path / "batch.db")) as client:
        first = batchapi.submit(seeds, client)
        second = batchapi.submit(seeds, client)
    assert first.requests == 5 and len(first.jobs) == 1
    assert second.requests == 0 and second.live == 5 and second.jobs == []
    assert len(srv.batches.batches) == 1
    out, _ = batch_run(srv, seeds, tmp_path / "out.jsonl", submit=False)
    assert sorted(out.ledger()) == SEED_IDS
    with ModelClient(settings_for(srv, tmp_path / "batch.db")) as client:
        third = batchapi.submit(seeds, client)  # every answer is in the cache now
    assert third.requests == 0 and third.ready == 5 and len(srv.batches.batches) == 1
    assert len(batch_requests(srv)) == 5  # each request ran once


def test_status_after_a_restart_reads_the_jobs_from_the_store(tmp_path, srv, seeds):
    with ModelClient(settings_for(srv, tmp_path / "b.db")) as client:
        submitted = batchapi.submit(seeds, client).jobs[0]
    with ModelClient(settings_for(srv, tmp_path / "b.db")) as client:  # a new process would do the same
        jobs = batchapi.status(client)
    assert [(j.job, j.batch_id, j.status, j.requests) for j in jobs] == [
        (submitted.job, submitted.batch_id, "in_progress", 5)
    ]


def test_cli_status_lists_the_batches(tmp_path, srv, seeds, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("INSIGHTS_CACHE", str(tmp_path / "b.db"))
    assert cli.main(["batch", "submit", str(SEEDS), "-o", str(tmp_path / "out.jsonl")]) == 0
    assert cli.main(["batch", "status"]) == 0
    out = capsys.readouterr().out
    assert "batch_000001" in out and "in_progress" in out and "5 submitted" in out


# ================================================================================== 3. failures
def test_ten_percent_failed_requests_end_in_the_output_or_the_errors_file(tmp_path, srv, seeds):
    docs = seeds + small_docs(45)
    srv.plan = FaultPlan(script={d.id: ["hallucinate"] for d in docs[10:14]})  # and 4 re-asks
    srv.batches.plan = BatchPlan(fail_rate=0.1, seed=3)
    out, report = batch_run(srv, docs, tmp_path / "out.jsonl")
    done, failed = set(out.ledger()), set(out.error_records())
    assert done | failed == {d.id for d in docs} and not done & failed  # every document, exactly once
    # 5 of the 50 first requests failed and went out again with the 4 re-asks; 1 of those 9 failed, went again.
    assert report.harvest.failed == 6 and report.followup_requests == 10 and report.harvest.jobs == 3
    assert failed == set() and report.done == 50
    # Nothing paid twice: every request that ran, ran once, and each key was answered once.
    ran = Counter(json.dumps(r["body"]) for r in batch_requests(srv))
    with Cache(tmp_path / "batch.db") as cache:
        states = cache.query(lambda c: c.execute("SELECT key, state FROM batch_requests").fetchall())
    answered = Counter(k for k, s in states if s == "answered")
    assert max(ran.values()) == 1 and max(answered.values()) == 1 and sum(ran.values()) == len(answered)
    assert len(states) == len(answered) + report.harvest.failed
    # Done documents are exactly what a synchronous run writes for them.
    ref, _ = sync_run([d for d in docs if d.id in done], tmp_path / "sync" / "out.jsonl")
    assert out.lines() == ref.lines()


def test_requests_that_always_fail_are_sent_three_times_then_recorded(tmp_path, srv, seeds):
    srv.batches.plan = BatchPlan(fail_rate=1.0)
    out, report = batch_run(srv, seeds[:2], tmp_path / "out.jsonl")
    assert out.ledger() == {} and sorted(out.error_records()) == SEED_IDS[:2]
    for record in out.error_records().values():
        assert record["error_type"] == "TransportError" and record["retryable"] and record["attempts"] == 3
        assert "HTTP 500" in record["message"] and "3 submissions" in record["message"]
    assert len(batch_requests(srv)) == 0 and report.harvest.jobs == 3  # nothing ran, 3 batches tried


def test_an_expired_batch_is_harvested_and_the_rest_resubmitted(tmp_path, srv, seeds):
    ref, _ = sync_run(seeds, tmp_path / "sync" / "out.jsonl")
    srv.batches.plan = BatchPlan(expire=True, partial=0.4)
    out, report = batch_run(srv, seeds, tmp_path / "out.jsonl", wait=False)
    first = next(iter(srv.batches.batches.values()))
    assert first.status == "in_progress" and report.waiting == 5  # collect without --wait polled once
    out, report = batch_run(srv, seeds, tmp_path / "out.jsonl", submit=False, wait=False)  # → expired
    assert first.status == "expired" and report.harvest.answers == 2 and report.harvest.unfinished == 3
    assert len(out.ledger()) == 2 and report.followup_requests == 3 and report.waiting == 3
    srv.batches.plan = BatchPlan()
    out, report = batch_run(srv, seeds, tmp_path / "out.jsonl", submit=False)
    assert out.lines() == ref.lines() and out.error_records() == {}
    assert len(batch_requests(srv)) == 5  # the finished part was not asked again


def test_a_cancelled_batch_is_harvested_and_the_rest_recorded_as_errors(tmp_path, srv, seeds):
    ref, _ = sync_run(seeds, tmp_path / "sync" / "out.jsonl")
    with ModelClient(settings_for(srv, tmp_path / "batch.db")) as client:
        batchapi.submit(seeds, client)
        cancelled = batchapi.cancel(client)
    assert [j.status for j in cancelled] == ["cancelling"]
    out, report = batch_run(srv, seeds, tmp_path / "out.jsonl", submit=False)
    assert report.harvest.answers == 2 and len(out.ledger()) == 2 and len(out.error_records()) == 3
    for record in out.error_records().values():
        assert "cancelled" in record["message"] and "insights batch submit" in record["message"]
        assert not record["retryable"]
    # On request, submit sends the rest, and collect finishes the run.
    out, report = batch_run(srv, seeds, tmp_path / "out.jsonl")
    assert out.lines() == ref.lines() and out.error_records() == {} and len(batch_requests(srv)) == 5


def test_a_batch_the_endpoint_fails_records_its_documents_as_errors(tmp_path, srv, seeds):
    srv.batches.plan = BatchPlan(max_requests=2)  # the client's limit is larger: the endpoint refuses the file
    out, report = batch_run(srv, seeds, tmp_path / "out.jsonl")
    assert out.ledger() == {} and sorted(out.error_records()) == SEED_IDS
    assert all("5 requests; the limit is 2" in e["message"] for e in out.error_records().values())
    assert report.harvest.unfinished == 5 and report.followup_requests == 0


def test_a_cut_off_answer_is_not_cached_and_fails_its_document_as_synchronously(tmp_path, srv, seeds):
    plan = FaultPlan(script={seeds[1].id: ["length"]})
    ref, _ = sync_run(seeds, tmp_path / "sync" / "out.jsonl", plan)
    srv.plan = FaultPlan(script={seeds[1].id: ["length"]})
    out, report = batch_run(srv, seeds, tmp_path / "batch" / "out.jsonl")
    assert out.lines() == ref.lines() and out.ledger() == ref.ledger()
    (record,) = out.error_records().values()
    assert record["document_id"] == seeds[1].id and record["error_type"] == "OutputRejected"
    assert "cut off" in record["message"] and not record["retryable"]
    assert len(cache_rows(tmp_path / "batch" / "batch.db")) == 4  # never cached


def test_an_answer_that_fails_its_document_is_recorded_and_removed_from_the_cache(tmp_path, srv, seeds):
    srv.plan = FaultPlan(script={seeds[0].id: ["no_tool_call"] * 3})  # every attempt: prose, no tool call
    out, report = batch_run(srv, seeds, tmp_path / "out.jsonl")
    assert report.followup_requests == 2 and report.errors == 1  # two re-asks, then it fails
    (record,) = out.error_records().values()
    assert record["error_type"] == "InvalidOutput" and record["document_id"] == seeds[0].id
    with Cache(tmp_path / "batch.db") as cache:
        states = Counter(cache.query(lambda c: c.execute("SELECT state FROM batch_requests").fetchall()))
    assert states == Counter({("answered",): 4, ("discarded",): 3}) and len(cache_rows(tmp_path / "batch.db")) == 4
    # A later collect records it again without sending anything; submit sends it anew on request.
    before = len(batch_requests(srv))
    out, report = batch_run(srv, seeds, tmp_path / "out.jsonl", submit=False)
    assert list(out.error_records()) == [seeds[0].id] and len(batch_requests(srv)) == before
    out, report = batch_run(srv, seeds, tmp_path / "out.jsonl")
    assert out.error_records() == {} and sorted(out.ledger()) == SEED_IDS  # the script is used up: it passes


def test_sync_reasks_sends_the_reask_at_once(tmp_path, srv, seeds):
    srv.plan = FaultPlan(script={seeds[0].id: ["hallucinate"]})
    out, report = batch_run(srv, seeds, tmp_path / "out.jsonl", sync_reasks=True)
    assert report.followup_requests == 0 and report.sync_documents == 1 and report.done == 5
    direct = [r for r in srv.requests if not r.get("batch")]
    assert [(r["doc_id"], r["attempt"]) for r in direct] == [(seeds[0].id, 2)]  # only the re-ask, synchronously
    assert report.sync_cost_usd > 0


def test_collect_wait_backs_off_on_the_fake_clock(tmp_path, srv, seeds):
    clock = FakeClock()
    out, report = batch_run(srv, seeds[:1], tmp_path / "out.jsonl", poll=10.0, sleep=clock)
    assert clock.sleeps == [10.0, 20.0] and report.polls == 2  # in_progress, finalizing, completed
    srv.plan = FaultPlan(script={"*": ["hallucinate"]})
    clock = FakeClock()
    out, report = batch_run(srv, seeds[1:2], tmp_path / "out2.jsonl", poll=400.0, sleep=clock)
    # Capped at 10 minutes; back to the first wait after a harvest (the follow-up batch starts validating).
    assert clock.sleeps == [400.0, 600.0, 400.0, 600.0, 600.0]


# ============================================================================ 4. crash and restart
def _cli_env(srv: ReferenceServer, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "INSIGHTS_"))}
    env.update(PYTHONPATH=str(REPO), OPENAI_BASE_URL=srv.url, OPENAI_API_KEY=KEY, INSIGHTS_CACHE=str(cache))
    return env


class Killed(BaseException):
    """Stands in for SIGKILL inside the process: nothing after it runs, no handler catches it."""


@pytest.mark.parametrize("where", ["upload", "create", "created"])
def test_a_crash_during_submit_loses_nothing_and_pays_nothing_twice(tmp_path, srv, seeds, monkeypatch, where):
    """Killed after the upload, during the create call, or after the batch exists but before its id is stored."""
    ref, _ = sync_run(seeds, tmp_path / "sync" / "out.jsonl")
    target = {"upload": (BatchStore, "uploaded"), "create": (BatchAPI, "create"), "created": (BatchStore, "created")}

    def die(*args: Any, **kwargs: Any) -> Any:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(*target[where], die)
        with ModelClient(settings_for(srv, tmp_path / "batch.db")) as client, pytest.raises(Killed):
            batchapi.submit(seeds, client)
    with Cache(tmp_path / "batch.db") as cache:
        (staged,) = BatchStore(cache).jobs()
    assert staged.status == "staged" and staged.batch_id is None
    assert len(srv.batches.batches) == (1 if where == "created" else 0)
    out, report = batch_run(srv, seeds, tmp_path / "out.jsonl")  # submit again, then collect
    assert out.lines() == ref.lines() and sorted(out.ledger()) == SEED_IDS and out.error_records() == {}
    assert len(srv.batches.batches) == 1 and len(batch_requests(srv)) == 5  # found again, or never made: once


@pytest.mark.slow
def test_killing_submit_after_the_batch_was_created_loses_nothing_and_pays_nothing_twice(tmp_path, srv, seeds):
    ref, _ = sync_run(seeds, tmp_path / "sync" / "out.jsonl")
    env = _cli_env(srv, tmp_path / "cache.db")
    out = tmp_path / "run" / "out.jsonl"
    command = [sys.executable, "-m", "insights.cli", "batch"]
    srv.batches.create_gate = gate = threading.Event()  # the batch exists; its id never reaches the client
    proc = subprocess.Popen([*command, "submit", str(SEEDS), "-o", str(out)], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not srv.batches.batches and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.batches.batches, "submit never created its batch"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        gate.set()
    assert proc.returncode == -signal.SIGKILL
    with Cache(tmp_path / "cache.db") as cache:
        (staged,) = BatchStore(cache).jobs()
    assert staged.status == "staged" and staged.batch_id is None and staged.input_file_id is not None

    srv.batches.create_gate = None
    collect = subprocess.run(
        [*command, "collect", str(SEEDS), "-o", str(out), "--wait", "--poll", "0"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert collect.returncode == 0, collect.stderr[-2000:]
    run = Out(out)
    assert run.lines() == ref.lines() and sorted(run.ledger()) == SEED_IDS and run.error_records() == {}
    assert len(srv.batches.batches) == 1 and len(batch_requests(srv)) == 5  # found again, not sent again
    assert "cost at batch prices $" in collect.stderr


@pytest.mark.slow
def test_a_fresh_process_collects_what_another_submitted(tmp_path, srv, seeds):
    ref, _ = sync_run(seeds, tmp_path / "sync" / "out.jsonl")
    env = _cli_env(srv, tmp_path / "cache.db")
    out = tmp_path / "run" / "out.jsonl"
    command = [sys.executable, "-m", "insights.cli", "batch"]
    submit = subprocess.run([*command, "submit", str(SEEDS), "-o", str(out)], env=env, capture_output=True, text=True)
    assert submit.returncode == 0, submit.stderr[-2000:]
    assert "5 request(s) sent in 1 batch(es)" in submit.stderr
    first = subprocess.run([*command, "collect", str(SEEDS), "-o", str(out)], env=env, capture_output=True, text=True)
    assert first.returncode == 0 and "5 document(s) wait on running batches" in first.stderr
    final = subprocess.run(
        [*command, "collect", str(SEEDS), "-o", str(out), "--wait", "--poll", "0"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert final.returncode == 0, final.stderr[-2000:]
    assert Out(out).lines() == ref.lines() and len(batch_requests(srv)) == 5


# ==================================================================================== 5. the CLI
def test_cli_round_trip_reports_batch_prices(tmp_path, srv, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("INSIGHTS_CACHE", str(tmp_path / "b.db"))
    out = str(tmp_path / "out.jsonl")
    assert cli.main(["batch", "submit", str(SEEDS), "-o", out]) == 0
    assert cli.main(["batch", "collect", str(SEEDS), "-o", out, "--wait", "--poll", "0"]) == 0
    err = capsys.readouterr().err
    h = re_search(r"tokens in ([\d,]+) out ([\d,]+); cost at batch prices \$([\d.]+) \(synchronously \$([\d.]+)\)", err)
    tin, tout = (int(x.replace(",", "")) for x in h[:2])
    prices = load_prices(None)
    assert float(h[2]) == pytest.approx(cost("gpt-4o-mini", tin, tout, prices, batch=True), abs=1e-4)
    assert float(h[2]) == pytest.approx(float(h[3]) / 2, abs=1e-4) and tin > 10_000
    assert "done 5, failed 0" in err
    with Cache(tmp_path / "b.db") as cache:
        stats = cache.stats()
    assert stats.cost_spent_usd == pytest.approx(float(h[2]), abs=1e-4)  # the call log holds the batch price
    assert stats.calls == 5 and stats.hits == 0  # one entry per answer; reading it back is not a call


def re_search(pattern: str, text: str) -> tuple[str, ...]:
    import re

    match = re.search(pattern, text)
    assert match, text
    return match.groups()


def test_batch_help_explains_the_flow(capsys):
    with pytest.raises(SystemExit):
        cli.main(["batch", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("submit", "status", "collect", "--wait", "re-ask", "follow-up batch", "cache", "reboot", "twice"):
        assert phrase in text


def test_estimate_prints_the_cost_synchronously_and_by_batch(capsys):
    assert cli.main(["estimate", str(SEEDS), "--model", "gpt-4o-mini"]) == 0
    out = capsys.readouterr().out
    sync = float(re_search(r"estimated cost +\$([\d.]+)", out)[0])
    batch = float(re_search(r"estimated cost \(batch\) +\$([\d.]+) with `insights batch`", out)[0])
    assert batch == pytest.approx(sync / 2, abs=1e-4) and sync > 0


def test_batch_prices_are_half_for_openai_models_and_never_guessed(tmp_path):
    prices = load_prices(None)
    for model in ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5-mini"):
        assert cost(model, 1_000_000, 200_000, prices, batch=True) == pytest.approx(
            cost(model, 1_000_000, 200_000, prices) / 2  # type: ignore[operator]
        )
    file = tmp_path / "prices.json"
    file.write_text(json.dumps({"mine": {"input": 1, "output": 2}, "half": {"input": 1, "output": 2, "batch_input": 0.4,
                                "batch_output": 0.8}}))  # fmt: skip
    prices = load_prices(file)
    assert cost("mine", 10, 10, prices, batch=True) is None  # no batch price given: unknown, not guessed
    assert cost("half", 1_000_000, 1_000_000, prices, batch=True) == pytest.approx(1.2)


def test_azure_hosts_get_the_v1_api_path_and_the_server_accepts_it(tmp_path, srv, seeds, monkeypatch):
    assert batchapi.batch_url("my-resource.openai.azure.com") == "/chat/completions"
    assert batchapi.batch_url("my-resource.cognitiveservices.azure.com:443") == "/chat/completions"
    assert batchapi.batch_url("api.openai.com") == "/v1/chat/completions"
    monkeypatch.setattr(batchapi, "batch_url", lambda endpoint: "/chat/completions")
    out, report = batch_run(srv, seeds[:2], tmp_path / "out.jsonl")
    assert report.done == 2 and {b.endpoint for b in srv.batches.batches.values()} == {"/chat/completions"}


# ====================================================================== 6. the reference server
def test_reference_server_batches_progress_list_cancel_and_404(srv):
    sdk = openai.OpenAI(api_key=KEY, base_url=srv.url, max_retries=0)
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": [{"role": "user", "content": "Document ID: x\n"}]}}  # fmt: skip
    data = (json.dumps(line) + "\n").encode() + b"\r\n\xc3\xa9 stays\n"
    uploaded = sdk.files.create(file=("in.jsonl", data), purpose="batch")
    assert sdk.files.content(uploaded.id).content == data and uploaded.bytes == len(data)
    good = sdk.files.create(file=("in.jsonl", (json.dumps(line) + "\n").encode()), purpose="batch")
    batch = sdk.batches.create(input_file_id=good.id, endpoint="/v1/chat/completions", completion_window="24h",
                               metadata={"insights_job": "job_1"})  # fmt: skip
    states = [batch.status] + [sdk.batches.retrieve(batch.id).status for _ in range(4)]
    assert states == ["validating", "in_progress", "finalizing", "completed", "completed"]
    done = sdk.batches.retrieve(batch.id)
    assert done.request_counts.completed == 1 and done.error_file_id is None
    (answer,) = [json.loads(x) for x in sdk.files.content(done.output_file_id).content.splitlines()]
    assert answer["custom_id"] == "a" and answer["response"]["body"]["object"] == "chat.completion"
    bad = sdk.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert sdk.batches.retrieve(bad.id).status == "failed"
    other = sdk.batches.create(input_file_id=good.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert sdk.batches.cancel(other.id).status == "cancelling" and sdk.batches.retrieve(other.id).status == "cancelled"
    listed = [b.id for b in sdk.batches.list(limit=2)]  # auto-paginates, newest first
    assert listed == [other.id, bad.id, batch.id]
    with ModelClient(insights.resolve_settings(env={}, base_url=srv.url, no_cache=True)) as client:
        found = BatchAPI(client).list(limit=1)  # page by page
    assert [b["id"] for b in found] == listed and found[-1]["metadata"] == {"insights_job": "job_1"}
    with pytest.raises(openai.NotFoundError):
        sdk.batches.retrieve("batch_missing")
    with pytest.raises(openai.BadRequestError):
        sdk.batches.create(input_file_id="file-none", endpoint="/v1/chat/completions", completion_window="24h")


# ========================================================================= 7. the shared corpus
@pytest.mark.slow
def test_corpus_round_trip_equals_the_synchronous_run(tmp_path):
    if not SHARED_CORPUS.is_dir():
        pytest.skip("the shared corpus is not beside the repository")
    docs = insights.load_corpus([SHARED_CORPUS])
    plan = FaultPlan(rates={"hallucinate": 0.1}, seed=7)
    ref, sync_bodies = sync_run(docs, tmp_path / "sync" / "out.jsonl", plan)
    with ReferenceServer(plan=FaultPlan(rates={"hallucinate": 0.1}, seed=7)) as srv:
        srv.batches.plan = BatchPlan(max_requests=100)
        out, report = batch_run(srv, docs, tmp_path / "batch" / "out.jsonl", limits=batchapi.Limits(requests=100))
        sent = [r["body"] for r in srv.requests]
    assert out.lines() == ref.lines() and out.ledger() == ref.ledger() and out.error_records() == ref.error_records()
    assert len(out.ledger()) == len(docs) and report.followup_requests > 0
    assert Counter(map(json.dumps, sent)) == Counter(map(json.dumps, sync_bodies))
