"""From one document to its grounded insights: prompt → model call → located evidence → records.

One structured call per document, or per chunk of a long one (:class:`PendingDocument`: chunks may be
grounded concurrently, and are merged in chunk order once all are back). The model's quotes are located by
:mod:`insights.grounding` inside validation, so an ungrounded answer is re-asked.

When a call ends without a valid answer — past the re-ask bound (``InvalidOutput``), or a re-ask that was
cut off, refused or did not fit the context (``OutputRejected``, ``RequestRejected``) — every earlier answer
of that call that parses (JSON read with ``strict=False``) is grounded leniently, and the one with the most
located insights is used (on a tie, the latest): re-asks of a small model often get worse, and its first
answer may be its best. Every insight of that answer whose quotes are not all in the document is listed in
``DocumentInsights.rejected`` with the reason — never kept without offsets, never silently dropped. No
answer parses: the document fails with the call's error. Transport, auth and quota errors never fall back
(running again may do better).

A failed document's error carries ``usage``: what its calls spent, failed attempts included.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from . import __version__
from .chunking import Chunk, split
from .config import Settings, resolve_settings
from .documents import Document, redact_emails
from .errors import InsightsError, InvalidOutput, OutputRejected, RequestRejected
from .grounding import GroundedDraft, GroundedExtraction, Grounder, GroundingContext, grounding, normalize
from .prompts import load_prompts, one_line, render_messages
from .schema import (
    RECORD_TYPES,
    DocumentInsights,
    Provenance,
    Rejected,
    Usage,
)

log = logging.getLogger("insights.extract")

if TYPE_CHECKING:  # the client (openai, instructor) is imported when a model is first called
    from .client import CallLedger, ModelClient


def chunks_for(document: Document, settings: Settings) -> list[Chunk]:
    """The spans of ``document.text`` that will be sent, one call each."""
    return split(document.text, settings.chunk_chars, settings.chunk_overlap)


def messages_for(document: Document, chunk: Chunk) -> list[dict[str, str]]:
    """The chat messages for one chunk of a document.

    Only the chunk's text goes inside the data block; the id, title and tags are each reduced to one
    safe line (:func:`~insights.prompts.one_line`), then e-mail addresses are redacted from them
    (metadata keeps the focal points' addresses; nothing sent to the model may carry one).
    """

    def field(value: str) -> str:
        return redact_emails(one_line(value))

    return render_messages(
        document_id=field(document.id),
        title=field(document.title),
        text=document.text[chunk.start : chunk.end],
        doc_type=field(document.meta("type")),
        year=field(document.meta("year")),
        country=field(document.meta("country")),
        part=chunk.part,
        parts=chunk.parts,
    )


def _ground_chunk(
    client: ModelClient, document: Document, chunk: Chunk, grounder: Grounder, ledger: CallLedger
) -> list[GroundedDraft]:
    context = GroundingContext(grounder, document.section_at, chunk.start, chunk.end)
    prompt_version = load_prompts().version
    try:
        with grounding(context):
            answer = client.complete(
                GroundedExtraction,
                messages_for(document, chunk),
                document_id=document.id,
                prompt_version=prompt_version,
                ledger=ledger,
            )
        return answer.grounded
    except (InvalidOutput, OutputRejected, RequestRejected) as exc:
        best = best_answer(exc.outputs, context)
        if best is None:
            raise
        log.warning("%s: no valid answer (%s); keeping the best earlier answer that parses", document.id, exc)
        return best


def best_answer(outputs: Sequence[str], context: GroundingContext) -> list[GroundedDraft] | None:
    """Of the raw answers ``outputs`` (oldest first), the grounded drafts of the one that parses with the
    most located insights (on a tie, the latest); ``None`` if none parses. Grounding is lenient: an
    insight with a quote not in the document comes back with ``evidence=None`` and its reason."""
    context.strict = False
    best: list[GroundedDraft] | None = None
    located = -1
    for text in outputs:
        try:
            data = json.loads(text, strict=False)
            parsed = GroundedExtraction.model_validate(data, context={"grounding": context})
        except ValueError:  # not JSON, or not the schema (ValidationError is a ValueError)
            continue
        count = sum(g.evidence is not None for g in parsed.grounded)
        if count >= located:
            best, located = parsed.grounded, count
    return best


def _merge(grounded: Iterable[GroundedDraft]) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """Kept insights (each once) and rejected ones.

    The same insight twice — same kind and identity (category, or name) and the same statement or a
    shared passage — is kept once with the union of its evidence. Overlapping chunks make the model see
    a passage twice; distinct insights citing one sentence (three barriers in one list) stay distinct
    because their identities differ.
    """
    kept: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    groups: dict[tuple[str, str], list[tuple[str, set[tuple[int, int]], dict[str, Any]]]] = {}
    for g in grounded:
        if g.evidence is None:
            rejected.append(Rejected(kind=g.kind, draft=g.draft, reason=g.reason))
            continue
        item = {"kind": g.kind, **{k: v for k, v in g.draft.items() if k != "quotes"}, "evidence": list(g.evidence)}
        identity = "name" if g.kind in ("champion", "failed_experiment") else "category"
        group = groups.setdefault((g.kind, normalize(str(item.get(identity, "")))), [])
        statement, spans = normalize(item["statement"]), {(e.start, e.end) for e in g.evidence}
        twin = next((entry for entry in group if entry[0] == statement or entry[1] & spans), None)
        if twin is None:
            group.append((statement, spans, item))
            kept.append(item)
            continue
        twin[2]["evidence"].extend(e for e in item["evidence"] if (e.start, e.end) not in twin[1])
        twin[1].update(spans)
    for item in kept:
        item["evidence"].sort(key=lambda e: e.start)
    return kept, rejected


def _records(kept: list[dict[str, Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"barrier": [], "enabler": [], "champion": [], "failed_experiment": []}
    for item in kept:
        out[item["kind"]].append(RECORD_TYPES[item["kind"]].model_validate(item))
    return out


def extract(
    document: Document,
    *,
    model: str | None = None,
    client: Any = None,
    settings: Settings | None = None,
) -> DocumentInsights:
    """Extract the barriers, enablers, champions and failed experiments stated in one document.

    Args:
        document: a loaded :class:`~insights.documents.Document`.
        model: the model to ask (default: ``settings.model``, i.e. ``INSIGHTS_MODEL`` or gpt-4o-mini).
        client: an :class:`~insights.client.ModelClient`, or an ``openai.OpenAI`` to wrap; built from
            ``settings`` when omitted (and closed again afterwards).
        settings: resolved settings (:func:`~insights.config.resolve_settings` when omitted).

    Returns:
        :class:`~insights.schema.DocumentInsights` with every kept insight's evidence located in
        ``document.text``, the rejected ones with their reasons, and provenance.

    Raises:
        ModelError: the model call failed (a subclass says how; ``retryable`` says whether to try later).
        CacheMiss: offline mode and the answer is not cached.
        ConfigError: no key and no endpoint.
    """
    from .client import ModelClient

    owned = client is None or not isinstance(client, ModelClient)
    if client is None:
        client = ModelClient(settings or resolve_settings(model=model))
    elif not isinstance(client, ModelClient):
        client = ModelClient(settings or resolve_settings(model=model), openai_client=client)
    if model and model != client.model:
        client = client.for_model(model)
    try:
        return _extract(client, document)
    finally:
        if owned:
            client.close()


def _extract(client: ModelClient, document: Document) -> DocumentInsights:
    pending = PendingDocument(document, client.settings)
    for index in range(len(pending.chunks)):
        try:
            pending.ground(client, index)
        except BaseException as exc:
            pending.fail(client, exc)
            raise
    return pending.assemble(client)


class PendingDocument:
    """A document on its way: its chunks are grounded one call each (in any order, on any thread), and
    its result is assembled once every chunk is back.

    This is the unit :func:`insights.batch.extract_many` schedules chunk by chunk, so that the chunks of a
    long document run side by side. Each chunk's call has its own :class:`~insights.client.CallLedger`
    (only the thread running that chunk writes it), summed into the document's usage. Assembly merges the
    chunks' drafts in chunk order, whatever order they came back in, so the result is the one a
    sequential run gives.
    """

    def __init__(self, document: Document, settings: Settings) -> None:
        from .client import CallLedger

        self.document = document
        self.chunks = chunks_for(document, settings)
        self.started = time.perf_counter()
        self._grounder = Grounder(document.text)
        self._drafts: list[list[GroundedDraft] | None] = [None] * len(self.chunks)
        self._ledgers: list[CallLedger] = [CallLedger(document_id=document.id) for _ in self.chunks]

    def ground(self, client: ModelClient, index: int) -> None:
        """Ask for chunk ``index`` (from 0) and keep its grounded drafts. Raises what the call raised."""
        chunk = self.chunks[index]
        self._drafts[index] = _ground_chunk(client, self.document, chunk, self._grounder, self._ledgers[index])

    def usage(self) -> Usage:
        """What every call of this document spent so far, failed attempts included."""
        return _usage(self._ledgers)

    def fail(self, client: ModelClient, exc: BaseException) -> None:
        """The document failed with ``exc``: discard what its calls stored in the cache (a failure must not
        be replayed) and, for an :class:`~insights.errors.InsightsError`, record the spend on ``exc.usage``.
        Call it only once no chunk of the document is still running."""
        for ledger in self._ledgers:
            client.discard(ledger)
        if isinstance(exc, InsightsError):
            exc.usage = self.usage()

    def assemble(self, client: ModelClient) -> DocumentInsights:
        """The document's result, once every chunk has been grounded: drafts merged in chunk order."""
        missing = [i + 1 for i, drafts in enumerate(self._drafts) if drafts is None]
        if missing:
            raise RuntimeError(f"{self.document.id}: chunks {missing} have not been grounded")
        kept, rejected = _merge(g for drafts in self._drafts for g in drafts or ())
        records = _records(kept)
        provenance = Provenance(
            model=client.model,
            prompt_version=load_prompts().version,
            library_version=__version__,
            content_hash=self.document.content_hash,
            chunks=len(self.chunks),
            usage=self.usage(),
            latency_s=round(time.perf_counter() - self.started, 4),
            extracted_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        return DocumentInsights(
            document_id=self.document.id,
            title=self.document.title,
            barriers=records["barrier"],
            enablers=records["enabler"],
            champions=records["champion"],
            failed_experiments=records["failed_experiment"],
            rejected=rejected,
            provenance=provenance,
        )


def _usage(ledgers: Sequence[CallLedger]) -> Usage:
    costs = [ledger.cost_usd for ledger in ledgers if ledger.cost_usd is not None]
    return Usage(
        input_tokens=sum(ledger.input_tokens for ledger in ledgers),
        output_tokens=sum(ledger.output_tokens for ledger in ledgers),
        calls=sum(ledger.calls for ledger in ledgers),
        cached_calls=sum(ledger.cached_calls for ledger in ledgers),
        cost_usd=sum(costs) if costs else None,
    )
