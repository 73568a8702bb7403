"""The OpenAI Batch API: the requests a run would send, sent as batches at half the price and without the
rate limits, collected hours or days later, and the run finished from the cache.

Flow
----
**submit** runs the normal extraction of every document not yet in the output in *capture mode*: an offline
twin of the client whose cache misses record the request's cache key and the exact bytes the SDK would POST
(:meth:`~insights.client.ModelClient.request_body`) instead of sending them. Every chunk of a chunked document
is asked. So the batch holds exactly the requests, and the answers land under exactly the cache keys, of a
synchronous run. Requests answered in the cache or riding in a live job are left out (nothing is paid twice);
the rest are split into input files within :class:`Limits`, and each file is uploaded and becomes one batch.
Each job and the key of each of its lines are stored (:mod:`insights.batchstore`) *before* the upload; the
batch carries the job's id as metadata, so a process killed between creating a batch and storing its id
loses nothing: the next command finds the batch in the endpoint's list (:func:`recover`).

**status** refreshes the jobs of this endpoint from the API.

**collect** refreshes the jobs and harvests every finished one (completed, expired, cancelled, failed): each
answer in its output file is stored in the cache exactly as a synchronous call stores it
(:meth:`~insights.client.ModelClient.store_batch_answer`; a cut-off, filtered or refused answer is not
stored) and logged at batch prices. Then the normal pipeline runs over the documents, offline from the cache,
and writes ``OUT.jsonl`` and its sidecars as ``insights extract`` does (grounding, ledger, errors). An answer
that needs a re-ask misses the cache on the re-ask: that request goes into a follow-up batch, or with
``sync_reasks`` is sent at once. With ``wait``, collect polls with a backoff and repeats until every document
is in the output or the errors file.

Failures
--------
A request in the error file with a transient status (408, 409, 429, 5xx), one without an answer in a
completed batch, and the unfinished part of an **expired** batch are resubmitted by collect, up to
:data:`MAX_SUBMISSIONS` submissions of a request in all. A request rejected (other 4xx), an answer cut off,
filtered or refused, and the unfinished part of a **cancelled** or **failed** batch are recorded as an error of
their document; ``batch submit`` sends them again on request. An answered document whose pipeline fails is
recorded as an error and its answers are removed from the cache, as a synchronous run removes them.

Input line (a contract)
-----------------------
``{"custom_id": "<first 32 hex digits of the cache key's digest>", "method": "POST", "url": "/v1/chat/completions",
"body": <the bytes a synchronous run POSTs, verbatim>}``; the url is ``/chat/completions`` for Azure OpenAI
hosts (``*.openai.azure.com``, ``*.cognitiveservices.azure.com``), whose v1 API names it so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .batch import extract_many
from .batchstore import TERMINAL, BatchStore, Job, RequestRow, Settled
from .client import BatchAPI, CallLedger, ModelClient
from .documents import Document
from .errors import CacheMiss, ConfigError, ModelError, OutputRejected
from .extract import _ground_chunk, chunks_for, extract
from .grounding import Grounder
from .output import OutputWriter
from .schema import DocumentInsights

MAX_REQUESTS_PER_FILE = 50_000
"""OpenAI's limit on the requests in one batch input file."""
MAX_FILE_BYTES = 200_000_000
"""OpenAI's limit on the size of one batch input file (200 MB)."""
MAX_SUBMISSIONS = 3
"""How often collect sends a request that got no answer, in all, before its document is an error."""
POLL_START_S, POLL_MAX_S = 30.0, 600.0
"""``collect --wait`` polls after this many seconds, doubling up to the maximum."""
_RETRYABLE_CODES = frozenset({"rate_limit_exceeded", "server_error", "timeout"})
_UNRUN_CODES = frozenset({"batch_expired", "batch_cancelled", "batch_failed"})


@dataclass(frozen=True)
class Limits:
    """How large one batch input file may be."""

    requests: int = MAX_REQUESTS_PER_FILE
    bytes: int = MAX_FILE_BYTES


def batch_url(endpoint: str) -> str:
    """The ``url`` of a chat line (and the batch's ``endpoint``) for an endpoint host."""
    host = endpoint.split(":")[0].lower()
    azure = host.endswith((".openai.azure.com", ".cognitiveservices.azure.com"))
    return "/chat/completions" if azure else "/v1/chat/completions"


@dataclass(frozen=True)
class Request:
    """One captured request: its cache key, its document and the exact body a synchronous run POSTs."""

    key: str
    document_id: str
    body: bytes

    @property
    def custom_id(self) -> str:
        return self.key.rpartition(":")[2][:32]

    @property
    def reask(self) -> bool:
        """Whether it re-asks (carries an earlier answer): the first request of a chunk does not."""
        messages = json.loads(self.body).get("messages") or []
        return any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages)

    def line(self, url: str) -> bytes:
        head = json.dumps({"custom_id": self.custom_id, "method": "POST", "url": url}, separators=(",", ":"))
        return head[:-1].encode() + b',"body":' + self.body + b"}\n"


class Capture:
    """Capture mode: an offline twin of ``client`` (same settings, cache and endpoint) whose cache misses
    are recorded as :class:`Request` values and never sent."""

    def __init__(self, client: ModelClient) -> None:
        self.client = ModelClient(client.settings.with_(offline=True), cache=client.cache)
        self.client.endpoint = client.endpoint
        self.client.on_miss = self._miss
        self._seen: dict[str, Request] = {}

    def _miss(self, key: str, body: bytes, document_id: str) -> None:
        self._seen.setdefault(key, Request(key, document_id, body))

    @staticmethod
    @contextlib.contextmanager
    def quiet() -> Iterator[None]:
        """Keep instructor from logging each expected miss at ERROR while capturing."""
        logger = logging.getLogger("instructor")
        level = logger.level
        logger.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            logger.setLevel(level)

    def probe(self, document: Document) -> DocumentInsights | list[Request]:
        """The document's result if the cache answers every request it makes, else the requests it misses.

        Raises:
            ModelError: the cached answers make the document fail (as the same answers would synchronously).
        """
        self._seen = {}
        with self.quiet():
            try:
                return extract(document, client=self.client)
            except CacheMiss:
                pass
            chunks = chunks_for(document, self.client.settings)
            if len(chunks) > 1:  # the first miss ended that run: ask every chunk for its own
                grounder, ledger = Grounder(document.text), CallLedger(document_id=document.id)
                for chunk in chunks:
                    with contextlib.suppress(CacheMiss):
                        _ground_chunk(self.client, document, chunk, grounder, ledger)
        return list(self._seen.values())

    def close(self) -> None:
        self.client.close()


def split(requests: Sequence[Request], limits: Limits, url: str) -> Iterator[list[Request]]:
    """The requests in input files of at most ``limits.requests`` lines and ``limits.bytes`` bytes, in order
    (a line larger than the byte limit goes alone, and the endpoint will refuse it)."""
    part: list[Request] = []
    size = 0
    for request in requests:
        n = len(request.line(url))
        if part and (len(part) >= limits.requests or size + n > limits.bytes):
            yield part
            part, size = [], 0
        part.append(request)
        size += n
    if part:
        yield part


def send(api: BatchAPI, store: BatchStore, requests: Sequence[Request], *, limits: Limits = Limits()) -> list[Job]:
    """Stage, upload and create one batch per input file; return the jobs created.

    A failure leaves the job staged; the next command finds out whether its batch exists (:func:`recover`).
    """
    client = api.client
    url = batch_url(client.endpoint)
    made: list[str] = []
    for part in split(requests, limits, url):
        job = "job_" + secrets.token_hex(8)
        lines = [(r.custom_id, r.key, r.document_id) for r in part]
        store.stage(job, endpoint=client.endpoint, model=client.model, requests=lines)
        file_id = api.upload(f"insights-{job}.jsonl", b"".join(r.line(url) for r in part))
        store.uploaded(job, file_id)
        store.created(job, api.create(file_id, endpoint=url, metadata={"insights_job": job}))
        made.append(job)
    return [j for j in store.jobs(client.endpoint) if j.job in made]


def _alive_elsewhere(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but is not ours to signal
        return True
    return True


def recover(api: BatchAPI, store: BatchStore) -> None:
    """Settle jobs left staged by a process that died: created at the endpoint (found by their metadata)
    → recorded; never created → forgotten, so their requests can be sent again."""
    staged = [j for j in store.jobs(api.client.endpoint) if j.status == "staged" and not _alive_elsewhere(j.owner_pid)]
    if not staged:
        return
    listed = {str((b.get("metadata") or {}).get("insights_job")): b for b in api.list()}
    for job in staged:
        batch = listed.get(job.job)
        if batch is not None:
            store.created(job.job, batch)
        else:
            store.drop(job.job)


def refresh(api: BatchAPI, store: BatchStore) -> list[Job]:
    """Recover, then retrieve every job of this endpoint still running; return all its jobs."""
    recover(api, store)
    for job in store.jobs(api.client.endpoint):
        if job.batch_id and job.status not in TERMINAL:
            store.refresh(job.job, api.retrieve(job.batch_id))
    return store.jobs(api.client.endpoint)


# ------------------------------------------------------------------------------------------------ harvest
@dataclass
class Harvest:
    """What harvesting finished jobs stored."""

    jobs: int = 0
    answers: int = 0
    failed: int = 0
    unfinished: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0


def _jsonl(data: bytes) -> Iterator[dict[str, Any]]:
    for raw in data.splitlines():
        with contextlib.suppress(ValueError):
            value = json.loads(raw)
            if isinstance(value, dict):
                yield value


def _failure(line: dict[str, Any]) -> Settled:
    response = line.get("response")
    response = response if isinstance(response, dict) else {}
    status = response.get("status_code")
    body = response.get("body")
    error = line.get("error") or (body.get("error") if isinstance(body, dict) else None) or {}
    error = error if isinstance(error, dict) else {"message": str(error)}
    code = str(error.get("code") or error.get("type") or "")
    message = " ".join(f"HTTP {status or '-'} {code}: {error.get('message') or ''}".split())
    transient = isinstance(status, int) and (status in (408, 409, 429) or status >= 500)
    retryable = code in _RETRYABLE_CODES or (transient and code != "insufficient_quota")
    kind = "TransportError" if retryable else "OutputRejected" if "content" in code else "RequestRejected"
    return Settled("failed", kind, message, status if isinstance(status, int) else None, retryable)


def _rest(job: Job) -> Settled:
    """What became of the lines a finished batch has no line for."""
    if job.status == "expired":
        return Settled("unfinished", "TransportError", "the batch expired before this request ran", None, True)
    if job.status == "completed":
        return Settled("unfinished", "TransportError", "the completed batch has no line for this request", None, True)
    why = f"the batch was {job.status} before this request ran" + (f" ({job.errors})" if job.errors else "")
    return Settled("unfinished", "RequestRejected", why + "; `insights batch submit` sends it again", None, False)


def harvest(api: BatchAPI, store: BatchStore, job: Job, into: Harvest) -> None:
    """Store the answers of one finished job in the cache and record what became of each of its lines."""
    rows = {r.custom_id: r for r in store.requests(job.job) if r.state == "submitted"}
    client = api.client if api.client.model == job.model else api.client.for_model(job.model)
    outcomes: dict[str, Settled] = {}
    for file_id in (job.output_file_id, job.error_file_id):
        for line in _jsonl(api.content(file_id)) if file_id else ():
            row = rows.get(str(line.get("custom_id")))
            if row is None or row.custom_id in outcomes:
                continue
            outcomes[row.custom_id] = _settle(client, job, row, line, into)
    states = Counter(o.state for o in outcomes.values())
    into.jobs += 1
    into.failed += states["failed"]
    into.unfinished += len(rows) - states["answered"] - states["failed"]
    store.settle(job.job, outcomes, rest=_rest(job))


def _settle(client: ModelClient, job: Job, row: RequestRow, line: dict[str, Any], into: Harvest) -> Settled:
    response = line.get("response")
    error = line.get("error")
    if response is None and isinstance(error, dict) and error.get("code") in _UNRUN_CODES:
        return _rest(job)  # listed in the error file, but never run: the batch's fate decides
    if isinstance(response, dict) and response.get("status_code") == 200 and isinstance(response.get("body"), dict):
        try:
            tin, tout, price = client.store_batch_answer(row.key, response["body"], row.document_id)
        except OutputRejected as exc:  # cut off, filtered, refused: not stored, as synchronously
            return Settled("failed", "OutputRejected", str(exc), 200, False)
        except ValueError as exc:
            return Settled("failed", "TransportError", str(exc)[:500], 200, True)
        into.answers += 1
        into.input_tokens += tin
        into.output_tokens += tout
        into.cost_usd = None if price is None or into.cost_usd is None else into.cost_usd + price
        return Settled("answered")
    return _failure(line)


# ------------------------------------------------------------------------------------------------- submit
@dataclass
class SubmitReport:
    """What :func:`submit` did."""

    documents: int = 0
    ready: int = 0  # answered in full by the cache already: collect writes them
    live: int = 0  # requests already riding in a live job
    requests: int = 0  # requests submitted now
    jobs: list[Job] = field(default_factory=list)


def _endpoint(client: ModelClient) -> tuple[BatchStore, BatchAPI]:
    if client.cache is None:
        raise ConfigError("the Batch API needs the cache (jobs and answers are kept there): drop --no-cache")
    return BatchStore(client.cache), BatchAPI(client)


def submit(documents: Iterable[Document], client: ModelClient, *, limits: Limits = Limits()) -> SubmitReport:
    """Submit, as batches, the requests a synchronous run of ``client`` would send for ``documents``."""
    store, api = _endpoint(client)
    capture, report = Capture(client), SubmitReport()
    try:
        recover(api, store)
        live = store.live_keys()
        wanted: dict[str, Request] = {}
        for document in documents:
            report.documents += 1
            try:
                outcome = capture.probe(document)
            except ModelError:  # the cached answers fail it: collect records why
                outcome = None
            if not isinstance(outcome, list):
                report.ready += 1
                continue
            for request in outcome:
                if request.key in live:
                    report.live += 1
                else:
                    wanted.setdefault(request.key, request)
        report.requests = len(wanted)
        report.jobs = send(api, store, list(wanted.values()), limits=limits)
    finally:
        capture.close()
    return report


# ------------------------------------------------------------------------------------------------ collect
@dataclass
class CollectReport:
    """What :func:`collect` did, over all its passes."""

    harvest: Harvest = field(default_factory=Harvest)
    done: int = 0
    errors: int = 0
    waiting: int = 0  # documents still waiting on a live batch
    followup_requests: int = 0
    followup_jobs: int = 0
    sync_documents: int = 0
    sync_cost_usd: float = 0.0
    polls: int = 0


def _blocked(history: list[RequestRow]) -> ModelError | None:
    """The error a request's document ends with, or ``None`` if the request may be sent (again)."""
    if not history or history[-1].state == "answered":
        return None  # never sent, or its answer left the cache: send it
    last, n = history[-1], len(history)
    if last.retryable and n < MAX_SUBMISSIONS:
        return None
    kind = getattr(errors, last.error_type, None)
    kind = kind if isinstance(kind, type) and issubclass(kind, ModelError) else errors.RequestRejected
    where = f" (batch request, {n} submission{'s' if n > 1 else ''})"
    return kind(last.error + where, attempts=n, status=last.status)


def _finish(
    documents: list[Document],
    capture: Capture,
    api: BatchAPI,
    store: BatchStore,
    writer: OutputWriter,
    report: CollectReport,
    *,
    limits: Limits,
    sync_reasks: bool,
    concurrency: int,
) -> list[Document]:
    """One pass of the pipeline over ``documents``; return those still waiting on a batch."""
    live = store.live_keys()
    waiting: list[Document] = []
    followups: dict[str, Request] = {}
    sync: list[Document] = []
    for document in documents:
        try:
            outcome = capture.probe(document)
        except ModelError as exc:  # recorded; its answers leave the cache, as a synchronous run's would
            writer.write_error(document, exc)
            report.errors += 1
            for key in store.discard(document.id, exc):
                store.cache.delete(key)
            continue
        if isinstance(outcome, DocumentInsights):
            writer.write(document, outcome)
            report.done += 1
            continue
        history = store.history(r.key for r in outcome if r.key not in live)
        blocked = [e for r in outcome if r.key not in live and (e := _blocked(history.get(r.key, []))) is not None]
        if blocked:
            writer.write_error(document, blocked[0])
            report.errors += 1
        elif sync_reasks and all(r.key not in live and r.reask for r in outcome):
            sync.append(document)
        else:
            waiting.append(document)
            followups.update((r.key, r) for r in outcome if r.key not in live)
    for finished in extract_many(sync, concurrency=concurrency, client=api.client) if sync else ():
        report.sync_documents += 1
        if finished.result is not None:
            writer.write(finished.document, finished.result)
            report.done += 1
            report.sync_cost_usd += finished.result.provenance.usage.cost_usd or 0.0
        elif finished.error is not None:
            writer.write_error(finished.document, finished.error)
            report.errors += 1
    if followups:
        jobs = send(api, store, list(followups.values()), limits=limits)
        report.followup_requests += len(followups)
        report.followup_jobs += len(jobs)
    return waiting


def collect(
    documents: Sequence[Document],
    writer: OutputWriter,
    client: ModelClient,
    *,
    wait: bool = False,
    poll: float = POLL_START_S,
    sleep: Callable[[float], None] = time.sleep,
    sync_reasks: bool = False,
    limits: Limits = Limits(),
    concurrency: int = 8,
    say: Callable[[str], None] = lambda message: None,
) -> CollectReport:
    """Harvest finished batches and finish ``documents`` (those not yet in ``writer``'s output) from the cache.

    Args:
        documents: the documents to finish.
        writer: where results and errors go (already resumed, errors file started).
        client: the online client: the Batch API's endpoint, and the synchronous one for ``sync_reasks``.
        wait: poll until no document waits on a batch (``sleep(poll)``, doubling to :data:`POLL_MAX_S`).
        sync_reasks: send re-asks at once instead of in a follow-up batch.
        limits: of follow-up input files.
        say: receives one line per harvested job.
    """
    store, api = _endpoint(client)
    capture = Capture(client)
    report, todo, delay, first = CollectReport(), list(documents), poll, True
    try:
        while True:
            finished = [j for j in refresh(api, store) if j.status in TERMINAL and not j.collected]
            for job in finished:
                before = report.harvest.answers
                harvest(api, store, job, report.harvest)
                say(f"harvested {job.batch_id} ({job.status}): {report.harvest.answers - before} answers")
            if finished or first:
                todo = _finish(
                    todo, capture, api, store, writer, report,
                    limits=limits, sync_reasks=sync_reasks, concurrency=concurrency,
                )  # fmt: skip
                first = False
                delay = poll
            if not wait or not todo:
                break
            report.polls += 1
            sleep(delay)
            delay = min(max(delay, 1e-3) * 2, POLL_MAX_S)
    finally:
        capture.close()
    report.waiting = len(todo)
    return report


def cancel(client: ModelClient, batch_ids: Sequence[str] = ()) -> list[Job]:
    """Ask the endpoint to cancel the given batches (default: every running one of this endpoint).
    ``collect`` then harvests what they finished; their unfinished requests are recorded as errors."""
    store, api = _endpoint(client)
    jobs = refresh(api, store)
    chosen = [j for j in jobs if j.batch_id and j.status not in TERMINAL and (not batch_ids or j.batch_id in batch_ids)]
    for job in chosen:
        store.refresh(job.job, api.cancel(str(job.batch_id)))
    return [j for j in store.jobs(client.endpoint) if j.job in {c.job for c in chosen}]


def status(client: ModelClient) -> list[Job]:
    """Every job of this endpoint, refreshed from the API."""
    store, api = _endpoint(client)
    return refresh(api, store)
