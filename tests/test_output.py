"""The JSONL writer and reader, and resuming after a kill: every document exactly once."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SEEDS

import insights
from insights.errors import OutputError, OutputWriteError
from insights.lock import OutputLock, lock_path
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


def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")


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


def test_changed_content_redoes_the_document(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    documents = docs()
    write_all(out, documents)
    edited = dataclasses.replace(documents[0], text=documents[0].text + "\nOne more line.")
    with OutputWriter(out) as writer:
        done = writer.resume([edited, *documents[1:]], MODEL, PROMPT, overwrite=False)
    assert done == {d.id for d in documents[1:]}
    assert {x["document_id"] for x in read_jsonl(out)} == done  # the stale result of the edited one is gone


@pytest.mark.parametrize(("model", "prompt"), [("other-model", PROMPT), (MODEL, "p2")])
def test_another_model_or_prompt_version_is_refused_naming_overwrite(tmp_path: Path, model: str, prompt: str) -> None:
    out = tmp_path / "out.jsonl"
    documents = docs()
    write_all(out, documents)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with OutputWriter(out) as writer, pytest.raises(OutputError) as info:
        writer.resume(documents, model, prompt, overwrite=False)
    message = str(info.value)
    assert f"model {MODEL!r} with prompt version {PROMPT!r}" in message and "(3 document(s))" in message
    assert "--overwrite" in message and "another -o" in message
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing changed, lock released
    with OutputWriter(out) as writer:
        assert writer.resume(documents, model, prompt, overwrite=True) == set()
    assert out.read_text() == ""


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
        writer.resume([doc], MODEL, PROMPT, overwrite=False)
        writer.write_error(doc, insights.TransportError("HTTP 503", attempts=5, status=503, last_output="{"))
    [record] = read_jsonl(sidecar(out, "errors"))
    assert record["document_id"] == doc.id and record["path"] == doc.path and record["source"] == doc.source
    assert (record["error_type"], record["attempts"], record["status"], record["retryable"]) == (
        "TransportError",
        5,
        503,
        True,
    )
    assert record["last_output"] == "{"


# ----------------------------------------------------------------------------- one run per output (#8.1)
def test_a_second_writer_on_the_same_output_is_refused_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    documents = docs()
    with OutputWriter(out) as first:
        first.resume(documents, MODEL, PROMPT, overwrite=False)
        holder = json.loads(lock_path(out).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname() and holder["started"]
        with OutputWriter(out) as second, pytest.raises(OutputError) as info:
            second.resume(documents, MODEL, PROMPT, overwrite=False)
        message = str(info.value)
        assert f"process {os.getpid()} on {socket.gethostname()}" in message and holder["command"] in message
        assert "another -o" in message
        first.write(documents[0], result_for(documents[0]))
    assert not lock_path(out).exists()  # released and removed
    assert write_all(out, documents) == {documents[0].id}  # and the next run gets it


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from insights.lock import OutputLock; "
         "OutputLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(600)", str(out)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(OutputError, match=f"process {holder.pid} "):
            OutputLock(out).acquire()
    finally:
        holder.kill()
        holder.wait()
    assert lock_path(out).exists()  # left behind by the killed holder, with its name in it
    assert write_all(out, docs()) == set()  # the kernel released the lock with the process
    assert len(out.read_text().splitlines()) == 6


def test_resume_repairs_what_two_runs_on_one_output_left(tmp_path: Path) -> None:
    """Files as two concurrent runs of an older version left them: a document written twice, one whose
    lines went to a file the other run replaced (ledger line, no lines), one written twice differently."""
    out = tmp_path / "out.jsonl"
    twice, no_lines, differing = docs()
    write_all(out, [twice, no_lines, differing])
    lines = list(read_jsonl(out))
    ledger = list(read_jsonl(sidecar(out, "documents")))
    by_doc = {d.id: [x for x in lines if x["document_id"] == d.id] for d in (twice, no_lines, differing)}
    changed = [{**x, "statement": x["statement"] + " (second run)"} for x in by_doc[differing.id]]
    kept_lines = by_doc[twice.id] + by_doc[differing.id] + by_doc[twice.id] + changed
    write_jsonl(out, kept_lines)
    write_jsonl(sidecar(out, "documents"), ledger + [ledger[0], ledger[2]])

    with OutputWriter(out) as writer:
        done = writer.resume([twice, no_lines, differing], MODEL, PROMPT, overwrite=False)
        assert done == {twice.id}
        assert len(writer.repairs) == 3 and no_lines.id in writer.repairs[1] and differing.id in writer.repairs[1]
        for doc in (no_lines, differing):
            writer.write(doc, result_for(doc))
    ids = Counter(x["document_id"] for x in read_jsonl(out))
    assert ids == Counter({twice.id: 2, no_lines.id: 2, differing.id: 2})  # each document's lines once
    assert list(read_jsonl(out))[:2] == by_doc[twice.id]
    assert Counter(x["document_id"] for x in read_jsonl(sidecar(out, "documents"))) == Counter(ids.keys())


# ------------------------------------------------------------------------- records are never emptied (#8.2)
def test_the_errors_file_keeps_failures_until_they_are_redone(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    a, b, c = docs()
    errors = sidecar(out, "errors")
    with OutputWriter(out) as writer:
        writer.resume([a, b, c], MODEL, PROMPT, overwrite=False)
        writer.write(a, result_for(a))
        writer.write_error(b, insights.TransportError("HTTP 503", attempts=5, status=503))
        writer.write_error(c, insights.TransportError("HTTP 500", attempts=5, status=500))
    # A rerun killed right after it started (no close): both failures are still recorded.
    killed = OutputWriter(out)
    assert killed.resume([a, b, c], MODEL, PROMPT, overwrite=False) == {a.id}
    assert [r["document_id"] for r in read_jsonl(errors)] == [b.id, c.id]
    killed._lock.release()  # type: ignore[union-attr]  # what the kernel does when the process dies
    # b fails again (one record, the latest), c succeeds (its record goes), a is skipped.
    with OutputWriter(out) as writer:
        writer.resume([a, b, c], MODEL, PROMPT, overwrite=False)
        writer.write_error(b, insights.InvalidOutput("still bad", attempts=3))
        writer.write(c, result_for(c))
        assert [r["document_id"] for r in read_jsonl(errors)] == [b.id, c.id, b.id]  # appended as they come
    [record] = read_jsonl(errors)
    assert (record["document_id"], record["error_type"]) == (b.id, "InvalidOutput")


@pytest.mark.parametrize("failing", ["output", "ledger"])
def test_a_disk_error_cuts_both_files_back_so_the_ledger_matches_the_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    out = tmp_path / "out.jsonl"
    a, b, c = docs()
    with OutputWriter(out) as writer:
        writer.resume([a, b, c], MODEL, PROMPT, overwrite=False)
        writer.write(a, result_for(a))
        before = (out.read_bytes(), sidecar(out, "documents").read_bytes())
        real_fsync, calls = os.fsync, []

        def fsync(fd: int) -> None:
            calls.append(fd)
            if len(calls) == (1 if failing == "output" else 2):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        with pytest.raises(OutputWriteError) as info:
            writer.write(b, result_for(b))
        monkeypatch.setattr(os, "fsync", real_fsync)
        assert "No space left on device" in str(info.value)
        assert str(out if failing == "output" else sidecar(out, "documents")) in str(info.value)
        assert (out.read_bytes(), sidecar(out, "documents").read_bytes()) == before
    assert write_all(out, [a, b, c]) == {a.id}
    assert Counter(x["document_id"] for x in read_jsonl(out)) == Counter({a.id: 2, b.id: 2, c.id: 2})


@pytest.mark.parametrize(
    ("output", "errors", "inputs", "why"),
    [
        ("out.jsonl", "out.jsonl", ["docs"], "same file as"),
        ("out.jsonl", "out.documents.jsonl", ["docs"], "same file as"),
        ("out.jsonl", "out.decisions.jsonl", ["docs"], "same file as"),  # a review's decisions
        ("docs/out.jsonl", None, ["docs"], "under the input 'docs'"),
        ("docs/sub/out.jsonl", None, ["docs/**/*.jsonl"], "under the input 'docs/**/*.jsonl'"),
        ("out.jsonl", "docs/errors.jsonl", ["docs"], "under the input 'docs'"),
        ("docs/a.md", None, ["docs/a.md"], "under the input 'docs/a.md'"),
        ("runs/out.jsonl", None, ["*"], "under the input '*'"),
    ],
)
def test_paths_that_would_lose_records_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str, errors: str | None, inputs: list[str], why: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.md").write_text("# A\n\nbody")
    writer = OutputWriter(Path(output), errors=Path(errors) if errors else None)
    with pytest.raises(OutputError, match=re.escape(why)):
        writer.refuse_unsafe_paths(inputs)


@pytest.mark.parametrize(
    ("output", "inputs"),
    [
        ("out.jsonl", ["docs"]),
        ("docs/.out.jsonl", ["docs"]),
        ("docs/sub/out.jsonl", ["docs/*.md"]),
        ("o.jsonl", ["*.md"]),
    ],
)
def test_paths_the_inputs_do_not_read_are_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str, inputs: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.md").write_text("# A\n\nbody")
    OutputWriter(Path(output)).refuse_unsafe_paths(inputs)


def test_write_atomically_replaces_whole_files_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    from insights.output import write_atomically

    target = tmp_path / "themes.jsonl"
    write_atomically(target, b"old\n")
    write_atomically(target, b"new\n")
    assert target.read_bytes() == b"new\n" and [p.name for p in tmp_path.iterdir()] == ["themes.jsonl"]
    with pytest.raises(OutputError, match="cannot write"):
        write_atomically(tmp_path / "missing" / "x.jsonl", b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["themes.jsonl"]
