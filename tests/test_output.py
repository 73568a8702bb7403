"""The JSONL writer and reader, and resuming after a kill: every document exactly once."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SEEDS

import insights
from insights.output import OutputWriter, read_jsonl, read_records, sidecar
from insights.schema import Barrier, DocumentInsights, Evidence, Provenance

MODEL, PROMPT = "m", "p1"


def docs() -> list[insights.Document]:
    return insights.load_corpus(SEEDS)[:3]


def result_for(doc: insights.Document, n: int = 2, model: str = MODEL) -> DocumentInsights:
    quote = doc.text.split("\n")[0][:30]
    ev = Evidence(quote=quote, start=0, end=len(quote), match="exact", section="")
    barriers = [Barrier(statement=f"b{i}", evidence=[ev], category="other", level="individual") for i in range(n)]
    return DocumentInsights(document_id=doc.id, title=doc.title, barriers=barriers,
                            provenance=Provenance(model=model, prompt_version=PROMPT))  # fmt: skip


def write_all(out: Path, documents: list[insights.Document], **kw: object) -> set[str]:
    with OutputWriter(out) as writer:
        done = writer.resume(documents, MODEL, PROMPT, overwrite=bool(kw.get("overwrite")))
        for doc in documents:
            if doc.id not in done:
                writer.write(doc, result_for(doc))
    return done


def test_sidecar_names() -> None:
    assert sidecar(Path("a/out.jsonl"), "errors") == Path("a/out.errors.jsonl")
    assert sidecar(Path("out"), "documents") == Path("out.documents.jsonl")


def test_lines_round_trip_with_identity_fields(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    write_all(out, docs())
    records = list(read_records(out))
    assert len(records) == 6
    first = records[0]
    doc = docs()[0]
    assert (first.document_id, first.kind, first.title, first.model, first.prompt_version) == (
        doc.id,
        "barrier",
        doc.title,
        MODEL,
        PROMPT,
    )
    assert first.type == doc.meta("type") and first.country == doc.meta("country")
    assert first.year == (int(doc.meta("year")) if doc.meta("year").isdigit() else None)
    assert set(first.metadata) == set(doc.metadata) and first.metadata["country"] == doc.metadata["country"]
    assert "@" not in json.dumps(first.metadata)  # focal points' e-mails are redacted
    assert first.insight_id.startswith("ins_") and len(first.insight_id) == 24
    assert first.content_hash == doc.content_hash
    assert json.loads(out.read_text().splitlines()[0])["category"] == "other"
    ledger = list(read_jsonl(sidecar(out, "documents")))
    assert [d["document_id"] for d in ledger] == [d.id for d in docs()]
    assert ledger[0]["counts"]["barrier"] == 2


def test_rerun_skips_finished_documents(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    write_all(out, docs())
    done = write_all(out, docs())
    assert done == {d.id for d in docs()}
    assert len(out.read_text().splitlines()) == 6


def test_torn_lines_and_unledgered_documents_are_redone_once(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    documents = docs()
    write_all(out, documents[:2])
    # A kill after the third document's insight lines but before its ledger line, mid-way through a line:
    third = documents[2]
    line = json.dumps({"document_id": third.id, "kind": "barrier", "content_hash": third.content_hash,
                       "model": MODEL, "prompt_version": PROMPT})  # fmt: skip
    with open(out, "a") as fp:
        fp.write(line + "\n" + line[:25])
    with open(sidecar(out, "documents"), "a") as fp:
        fp.write('{"document_id": "torn')
    done = write_all(out, documents)
    assert done == {documents[0].id, documents[1].id}
    ids = [json.loads(x)["document_id"] for x in out.read_text().splitlines()]
    assert sorted(ids) == sorted([d.id for d in documents for _ in range(2)])
    ledger = [d["document_id"] for d in read_jsonl(sidecar(out, "documents"))]
    assert sorted(ledger) == sorted(d.id for d in documents)


def test_changed_model_or_content_redoes_the_document(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    documents = docs()
    write_all(out, documents)
    with OutputWriter(out) as writer:
        done = writer.resume(documents, "other-model", PROMPT, overwrite=False)
    assert done == set()
    assert out.read_text() == ""  # stale results of these documents are gone


def test_documents_not_in_this_run_are_kept(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    documents = docs()
    write_all(out, documents)
    done = write_all(out, documents[:1])
    assert done == {documents[0].id}
    assert len(out.read_text().splitlines()) == 6


def test_overwrite_starts_over(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    write_all(out, docs())
    assert write_all(out, docs(), overwrite=True) == set()
    assert len(out.read_text().splitlines()) == 6


def test_error_records_say_why(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    doc = docs()[0]
    with OutputWriter(out) as writer:
        writer.start_errors()
        writer.write_error(doc, insights.TransportError("HTTP 503", attempts=5, status=503, last_output="{"))
    [record] = read_jsonl(sidecar(out, "errors"))
    assert record["document_id"] == doc.id and record["path"] == doc.path
    assert (record["error_type"], record["attempts"], record["status"], record["retryable"]) == (
        "TransportError",
        5,
        503,
        True,
    )
    assert record["last_output"] == "{"
