"""From one document to its grounded insights: prompt → model call → located evidence → records.

One structured call per document, or per chunk of a long one. The model's quotes are located by
:mod:`insights.grounding` inside validation, so an ungrounded answer is re-asked; after the re-ask bound
the last answer is read leniently and every insight whose quotes are not all in the document is listed
in ``DocumentInsights.rejected`` with the reason — never kept without offsets, never silently dropped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from . import __version__
from .chunking import Chunk, split
from .config import Settings, resolve_settings
from .documents import Document, redact_emails
from .errors import InvalidOutput
from .grounding import GroundedDraft, GroundedExtraction, Grounder, GroundingContext, grounding, normalize
from .prompts import load_prompts, one_line, render_messages
from .schema import (
    RECORD_TYPES,
    DocumentInsights,
    Provenance,
    Rejected,
    Usage,
)

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
    except InvalidOutput as exc:
        # Past the re-ask bound: if the last answer parses, keep what is grounded and reject the rest.
        if exc.last_output is None:
            raise
        context.strict = False
        try:
            lenient = GroundedExtraction.model_validate_json(exc.last_output, context={"grounding": context})
        except ValidationError:
            raise exc from None
        return lenient.grounded


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
    from .client import CallLedger

    started = time.perf_counter()
    chunks = chunks_for(document, client.settings)
    grounder = Grounder(document.text)
    ledger = CallLedger(document_id=document.id)
    grounded: list[GroundedDraft] = []
    try:
        for chunk in chunks:
            grounded.extend(_ground_chunk(client, document, chunk, grounder, ledger))
    except BaseException:
        client.discard(ledger)
        raise
    kept, rejected = _merge(grounded)
    records = _records(kept)
    provenance = Provenance(
        model=client.model,
        prompt_version=load_prompts().version,
        library_version=__version__,
        content_hash=document.content_hash,
        chunks=len(chunks),
        usage=Usage(
            input_tokens=ledger.input_tokens,
            output_tokens=ledger.output_tokens,
            calls=ledger.calls,
            cached_calls=ledger.cached_calls,
            cost_usd=ledger.cost_usd,
        ),
        latency_s=round(time.perf_counter() - started, 4),
        extracted_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return DocumentInsights(
        document_id=document.id,
        title=document.title,
        barriers=records["barrier"],
        enablers=records["enabler"],
        champions=records["champion"],
        failed_experiments=records["failed_experiment"],
        rejected=rejected,
        provenance=provenance,
    )
