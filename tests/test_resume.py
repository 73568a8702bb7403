"""Resume in time independent of the output, group commit, and a streaming start (issue 12, items 3 and 5).

A finished run is resumed from its ledger (block offsets, file stamps) without parsing the output or
reading unchanged inputs; damaged files still take the slow repair path. Group commit keeps the ledger
line behind its lines' fsync, and every crash point leaves each document exactly once after a resume.
The command line reads documents as the window needs them and imports the model SDKs only to call a model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import test_faults as faults
from conftest import REPO, SEEDS
from test_faults import Out, run_cli, strict_jsonl
from test_nothing_lost import assert_each_document_once
from test_output import MODEL, PROMPT, result_for

import insights
from insights import corpus
from insights.corpus import CorpusReader, list_corpus
from insights.ledger import Ledger, file_stamp
from insights.output import OutputWriter, read_jsonl, sidecar
from insights.pending import Pending, Plan
from insights.testing.server import ReferenceServer

srv, cli_env, seed_dir, seeds = faults.srv, faults.cli_env, faults.seed_dir, faults.seeds


def small_docs(n: int) -> list[insights.Document]:
    return [insights.parse_document(f"# Report {i}\n\nThe lab ran pilot {i} with the city.", doc_id=f"d{i:02d}")
            for i in range(n)]  # fmt: skip


def stamped_result(doc: insights.Document) -> insights.DocumentInsights:
    """A result as this library version makes it (a file stamp is trusted only under the same version)."""
    result = result_for(doc)
    return result.model_copy(
        update={"provenance": result.provenance.model_copy(update={"library_version": insights.__version__})}
    )


def finished(out: Path, documents: list[insights.Document], **writer: Any) -> None:
    with OutputWriter(out, **writer) as w:
        w.resume(None, MODEL, PROMPT, overwrite=False)
        for doc in documents:
            if not w.is_done(doc):
                w.write(doc, result_for(doc))


def lines_of(out: Path) -> Counter[str]:
    return Counter(x["document_id"] for x in read_jsonl(out))


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every file the corpus reader opens."""
    reads: list[str] = []
    real = corpus.read_file

    def read_file(path: Path, doc_id: str | None = None) -> Any:
        reads.append(Path(path).name)
        return real(path, doc_id)

    monkeypatch.setattr(corpus, "read_file", read_file)
    return reads


# ======================================================================= resume from the ledger (item 3)
def test_ledger_lines_say_where_each_documents_lines_are(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    documents = small_docs(3)
    finished(out, documents)
    data = out.read_bytes()
    ledger = list(read_jsonl(sidecar(out, "documents")))
    offset = 0
    for doc, line in zip(documents, ledger, strict=True):
        block = line["block"]
        assert block["offset"] == offset and block["length"] > 0
        lines = data[offset : offset + block["length"]].decode().splitlines()
        assert [json.loads(x)["document_id"] for x in lines] == [doc.id, doc.id]
        offset += block["length"]
    assert offset == len(data)
    assert Ledger.read(sidecar(out, "documents")).check(out).verdict == "ok"


def test_resume_does_not_read_the_output_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out.jsonl"
    documents = small_docs(4)
    finished(out, documents)
    before = out.read_bytes()
    opened: list[str] = []
    real_open = open

    def spy(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(os.path.basename(str(file)))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    with OutputWriter(out) as w:
        assert w.resume(None, MODEL, PROMPT, overwrite=False) == set()
        assert all(w.is_done(d) for d in documents)
    monkeypatch.undo()
    # The output was opened once, to hash its last block; the ledger once; nothing was rewritten.
    assert opened.count("out.jsonl") == 1 and opened.count("out.documents.jsonl") == 1
    assert out.read_bytes() == before


def test_a_tail_after_the_last_block_is_cut_and_its_document_redone(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    documents = small_docs(3)
    finished(out, documents[:2])
    committed = out.read_bytes()
    with open(out, "ab") as fp:  # a kill after the third document's lines, before its ledger line
        fp.write(b'{"document_id": "d02", "kind": "barrier"}\n{"document_id": "d02", "ki')
    with open(sidecar(out, "documents"), "ab") as fp:
        fp.write(b'{"document_id": "d02", "content_ha')
    with OutputWriter(out) as w:
        w.resume(None, MODEL, PROMPT, overwrite=False)
        assert out.read_bytes() == committed and not w.repairs
        assert [w.is_done(d) for d in documents] == [True, True, False]
        w.write(documents[2], result_for(documents[2]))
    assert lines_of(out) == Counter({d.id: 2 for d in documents})
    assert [x["document_id"] for x in strict_jsonl(sidecar(out, "documents"))] == [d.id for d in documents]


def test_an_output_shorter_than_the_ledger_says_takes_the_repair_path(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    documents = small_docs(3)
    finished(out, documents)
    first_line = out.read_bytes().split(b"\n")[0] + b"\n"
    out.write_bytes(out.read_bytes()[len(first_line) :])  # d00 lost one of its two lines
    with OutputWriter(out) as w:
        w.resume(None, MODEL, PROMPT, overwrite=False)
        assert [w.is_done(d) for d in documents] == [False, True, True]
        assert "d00" in " ".join(w.repairs)
        w.write(documents[0], result_for(documents[0]))
    assert lines_of(out) == Counter({d.id: 2 for d in documents})
    assert Ledger.read(sidecar(out, "documents")).check(out).verdict == "ok"  # rewritten with blocks


def test_an_older_ledger_without_blocks_is_read_once_and_rewritten_with_them(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    documents = small_docs(3)
    finished(out, documents)
    ledger = sidecar(out, "documents")
    old = [{k: v for k, v in x.items() if k not in ("block", "stamp")} for x in read_jsonl(ledger)]
    ledger.write_text("".join(json.dumps(x) + "\n" for x in old))
    lines = out.read_bytes()
    assert Ledger.read(ledger).check(out).verdict == "repair"
    with OutputWriter(out) as w:
        w.resume(None, MODEL, PROMPT, overwrite=False)
        assert all(w.is_done(d) for d in documents) and not w.repairs
    assert out.read_bytes() == lines
    assert [x["block"]["offset"] for x in read_jsonl(ledger)] == [0, len(lines) // 3, 2 * len(lines) // 3]
    assert Ledger.read(ledger).check(out).verdict == "ok"


def test_damage_inside_the_output_is_found_by_verify_not_by_the_fast_check(tmp_path: Path) -> None:
    """The documented trade-off: the fast check hashes the last block only; --verify hashes them all."""
    out = tmp_path / "out.jsonl"
    documents = small_docs(3)
    finished(out, documents)
    data = bytearray(out.read_bytes())
    where = data.index(b"b0")  # d00's first statement, same size
    data[where : where + 2] = b"XX"
    out.write_bytes(bytes(data))
    with OutputWriter(out) as w:
        w.resume(None, MODEL, PROMPT, overwrite=False)
        assert all(w.is_done(d) for d in documents)
    with OutputWriter(out) as w:
        w.resume(None, MODEL, PROMPT, overwrite=False, verify=True)
        assert [w.is_done(d) for d in documents] == [False, True, True]
        w.write(documents[0], result_for(documents[0]))
    assert b"XX" not in out.read_bytes() and lines_of(out) == Counter({d.id: 2 for d in documents})


def test_an_edited_document_redone_lazily_replaces_its_old_result_when_the_output_is_closed(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    documents = small_docs(3)
    finished(out, documents)
    edited = insights.parse_document("# Report 1\n\nThe lab ran pilot 1 with the whole city.", doc_id="d01")
    # Killed after the redo was committed, before the output was closed: both results are in the files.
    w = OutputWriter(out)
    w.resume(None, MODEL, PROMPT, overwrite=False)
    assert not w.is_done(edited)
    w.write(edited, result_for(edited, n=3))
    assert lines_of(out)["d01"] == 5
    w._lock.release()  # type: ignore[union-attr]  # what the kernel does when the process dies
    with OutputWriter(out) as w2:
        w2.resume(None, MODEL, PROMPT, overwrite=False)
        assert w2.is_done(edited) and not w2.is_done(documents[1])
    assert lines_of(out) == Counter({"d00": 2, "d01": 3, "d02": 2})
    assert {x["content_hash"] for x in read_jsonl(out) if x["document_id"] == "d01"} == {edited.content_hash}
    assert Ledger.read(sidecar(out, "documents")).check(out).verdict == "ok"
    # And when the run ends normally, closing drops the superseded result.
    again = insights.parse_document("# Report 1\n\nPilot 1 ran again.", doc_id="d01")
    finished(out, [again])
    assert lines_of(out) == Counter({"d00": 2, "d01": 2, "d02": 2})
    assert [x["document_id"] for x in strict_jsonl(sidecar(out, "documents"))] == ["d00", "d02", "d01"]


# ============================================================================== group commit (item 5)
class Recorder:
    """Records every os.write and os.fsync by file name, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log: list[tuple[str, str, bytes]] = []
        real_write, real_fsync = os.write, os.fsync

        def write(fd: int, data: Any) -> int:
            self.log.append(("write", self._name(fd), bytes(data)))
            return real_write(fd, data)

        def fsync(fd: int) -> None:
            self.log.append(("fsync", self._name(fd), b""))
            real_fsync(fd)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "fsync", fsync)

    @staticmethod
    def _name(fd: int) -> str:
        try:
            return os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # pragma: no cover - no /proc
            return str(fd)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names file descriptors through /proc")
def test_group_commit_fsyncs_once_per_group_and_each_ledger_line_after_its_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.jsonl"
    documents = small_docs(30)
    rec = Recorder(monkeypatch)
    # A commit interval no test run reaches: commits are due by count (10 waiting), the first at once.
    finished(out, documents, commit_interval=3600, commit_max=10)
    monkeypatch.undo()
    ledger_writes = [data for op, name, data in rec.log if op == "write" and name == "out.documents.jsonl"]
    assert [data.count(b"\n") for data in ledger_writes] == [1, 10, 10, 9]  # the last group at close
    fsyncs = [name for op, name, _ in rec.log if op == "fsync" and name in ("out.jsonl", "out.documents.jsonl")]
    assert len(fsyncs) == 8  # 2 per commit, not 2 per document
    # Every document's lines were written, then fsynced, before the ledger write that names it.
    synced: set[str] = set()
    written: set[str] = set()
    for op, name, data in rec.log:
        if name == "out.jsonl" and op == "write":
            written |= {json.loads(x)["document_id"] for x in data.splitlines()}
        elif name == "out.jsonl" and op == "fsync":
            synced |= written
        elif name == "out.documents.jsonl" and op == "write":
            assert {json.loads(x)["document_id"] for x in data.splitlines()} <= synced
    assert lines_of(out) == Counter({d.id: 2 for d in documents})


def crash_states(out_bytes: bytes, ledger_bytes: bytes) -> list[tuple[bytes, bytes]]:
    """Every (output, ledger) pair a kill can leave: both files are prefixes, and a ledger line is only
    started once the lines of its document are in the output. Cut points: every line end, and the middle
    of every line."""

    def cuts(data: bytes) -> list[int]:
        points, start = {0, len(data)}, 0
        for line in data.splitlines(keepends=True):
            points |= {start + len(line) // 2, start + len(line)}
            start += len(line)
        return sorted(points)

    ledger_lines = ledger_bytes.splitlines(keepends=True)
    needs, at = [], 0  # output bytes needed before ledger byte k may exist
    for line in ledger_lines:
        block = json.loads(line)["block"]
        needs.append((at, block["offset"] + block["length"]))
        at += len(line)
    states = []
    for y in cuts(ledger_bytes):
        need = max((end for start, end in needs if start < y), default=0)
        states += [(out_bytes[:x], ledger_bytes[:y]) for x in cuts(out_bytes) if x >= need]
    return states


def test_a_kill_at_any_point_leaves_each_document_exactly_once_after_resume(tmp_path: Path) -> None:
    documents = small_docs(6)
    ref = tmp_path / "ref.jsonl"
    finished(ref, documents, commit_interval=3600, commit_max=3)
    ref_ledger = sidecar(ref, "documents").read_bytes()
    states = crash_states(ref.read_bytes(), ref_ledger)
    assert len(states) > 100
    out = tmp_path / "run" / "out.jsonl"
    out.parent.mkdir()
    for out_bytes, ledger_bytes in states:
        out.write_bytes(out_bytes)
        sidecar(out, "documents").write_bytes(ledger_bytes)
        whole = {json.loads(x)["document_id"] for x in ledger_bytes.splitlines(keepends=True) if x.endswith(b"\n")}
        with OutputWriter(out, commit_interval=3600, commit_max=3) as w:
            w.resume(None, MODEL, PROMPT, overwrite=False)
            done = {d.id for d in documents if w.is_done(d)}
            assert done == whole, (len(out_bytes), len(ledger_bytes))  # nothing recorded is lost
            for doc in documents:
                if doc.id not in done:
                    w.write(doc, result_for(doc))
        assert out.read_bytes() == ref.read_bytes(), (len(out_bytes), len(ledger_bytes))
        ids = [x["document_id"] for x in strict_jsonl(sidecar(out, "documents"))]
        assert sorted(ids) == [d.id for d in documents]


# ============================================================================ stamps and lazy reading
def test_a_finished_run_resumes_without_reading_unchanged_inputs_or_asking(
    srv, cli_env, seed_dir, seeds, tmp_path, monkeypatch
):
    out = Out(tmp_path / "out.jsonl")
    assert run_cli(seed_dir, "-o", out.out) == 0
    stamps = {x["document_id"]: x["stamp"] for x in strict_jsonl(out.documents)}
    for d in seeds:
        size, mtime_ns = file_stamp(seed_dir / f"{d.id}.txt") or (-1, -1)
        assert stamps[d.id] == {"size": size, "mtime_ns": mtime_ns}
    reads = count_reads(monkeypatch)
    assert run_cli(seed_dir, "-o", out.out) == 0
    assert reads == [] and srv.count == 5

    # A file touched without a change is read and hashed, and not redone; an edited one is redone.
    touched, edited = sorted(seed_dir.iterdir())[:2]
    os.utime(touched, ns=(1, 1))
    edited.write_text(edited.read_text() + "\nOne more paragraph.\n")
    assert run_cli(seed_dir, "-o", out.out) == 0
    assert sorted(reads) == sorted([touched.name, edited.name])
    assert [r["doc_id"] for r in srv.requests[5:]] == [edited.stem]
    assert_each_document_once(out, [d.id for d in seeds])

    # The trade-off: same size, modification time put back: not noticed, unless --verify.
    reads.clear()
    text = touched.read_text()
    stamp = touched.stat()
    touched.write_text(text.replace("the", "teh", 1))
    os.utime(touched, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert run_cli(seed_dir, "-o", out.out) == 0
    assert reads == [touched.name]  # its stamp was stale (touched), so it is read: that case is noticed
    assert run_cli(seed_dir, "-o", out.out) == 0 and srv.count == 7
    reads.clear()
    touched.write_text(text.replace("the", "thE", 1))
    os.utime(touched, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert run_cli(seed_dir, "-o", out.out) == 0 and reads == [] and srv.count == 7
    assert run_cli(seed_dir, "-o", out.out, "--verify") == 0
    assert len(reads) == 5 and srv.count == 8
    assert_each_document_once(out, [d.id for d in seeds])


def test_pending_reads_a_file_only_when_the_next_document_is_asked_for(tmp_path, monkeypatch):
    folder = tmp_path / "docs"
    folder.mkdir()
    for path in sorted(SEEDS.glob("*.txt")):
        shutil.copy(path, folder / path.name)
    out = tmp_path / "out.jsonl"
    reads = count_reads(monkeypatch)
    with OutputWriter(out) as w:
        w.resume(None, MODEL, PROMPT, overwrite=False)
        pending = Pending(list_corpus(folder), w)
        assert pending.expected == 5 and reads == []
        stream = iter(pending)
        doc = next(stream)
        assert reads == [f"{doc.id}.txt"] and doc.source == f"{doc.id}.txt"
        w.write(doc, stamped_result(doc), stamp=pending.stamps.pop(doc.id))
        assert [d.id for d in stream] == [p.stem for p in sorted(folder.iterdir())][1:]
    reads.clear()
    with OutputWriter(out) as w:
        w.resume(None, MODEL, PROMPT, overwrite=False)
        plan = Plan(list_corpus(folder), w, limit=2)
        pending, documents = plan.documents()
        assert pending.expected == 4 and plan.total(pending) == 2  # the one done is known from its stamp
        assert len(list(documents)) == 2 and len(reads) == 2 and pending.skipped == 1


def test_listing_walks_folders_as_before_in_one_scandir_per_folder(tmp_path):
    """The walk that replaced os.walk + realpath per file lists the same files, in the same order, and a
    link to a file already listed is still read once."""
    root = tmp_path / "docs"
    for name in ("b.md", "a.md", "a/z.md", "a/.hidden.md", ".git/x.md", "a.b/c.md", "A/y.md", "a/b/c/d.md", "ab"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {name}\n\nThe lab ran a pilot.")
    (root / "link.md").symlink_to(root / "a" / "z.md")  # the same file again
    (root / "alias").symlink_to(root / "a", target_is_directory=True)  # not followed

    def before(folder: Path) -> list[Path]:
        found = []
        for dirpath, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [Path(dirpath, f) for f in files if not f.startswith(".")]
        unique = {os.path.realpath(p): p for p in sorted(found, key=lambda p: p.relative_to(folder).parts)[::-1]}
        return sorted(unique.values(), key=lambda p: p.relative_to(folder).parts)

    files = list_corpus(root)
    assert [f.path for f in files] == before(root)
    assert [f.source for f in files] == [p.relative_to(root).as_posix() for p in before(root)]
    assert "link.md" not in [f.source for f in files] and not any(f.source.startswith("alias/") for f in files)


def test_a_skipped_file_keeps_its_id_taken(tmp_path, monkeypatch):
    """A JSONL record with the id of a file skipped as done is refused, as if the file had been read."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nThe lab ran a pilot.")
    (folder / "b.jsonl").write_text(json.dumps({"id": "a", "text": "Another a."}) + "\n")
    reader = CorpusReader()
    files = list_corpus(folder)
    reader.skip(files[0])
    [failure] = list(reader.read(files[1]))
    assert "duplicate document id 'a'" in str(failure.error)  # type: ignore[union-attr]


def test_sample_is_seeded_and_in_input_order(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(12):
        (folder / f"r{i:02d}.md").write_text(f"# R{i}\n\nPilot {i} ran with the city.")
    files = list_corpus(folder)
    with OutputWriter(tmp_path / "out.jsonl") as w:
        w.resume(None, MODEL, PROMPT, overwrite=False)
        plan = Plan(files, w, sample=4, seed=7)
        ids = plan.chosen or []
        assert ids == Plan(files, w, sample=4, seed=7).chosen and ids != Plan(files, w, sample=4, seed=8).chosen
        assert ids == sorted(ids) and len(set(ids)) == 4
        for _ in range(2):  # a plan can be walked again
            pending, documents = plan.documents()
            assert [d.id for d in documents] == ids and plan.total(pending) == 4 and plan.skipped(pending) == 0


# ====================================================================== streaming start (item 5)
class FirstRequest(ReferenceServer):
    """Notes how many input files had been read when the first chat request arrived."""

    def __init__(self, annotations: Any, reads: list[str]) -> None:
        super().__init__(annotations)
        self.reads, self.reads_at_first = reads, -1

    def _chat(self, handler: Any, raw: bytes) -> None:
        if self.reads_at_first < 0:
            self.reads_at_first = len(self.reads)
        super()._chat(handler, raw)


def test_the_first_request_goes_out_before_the_corpus_is_read(tmp_path, monkeypatch):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(40):
        (folder / f"p{i:02d}.md").write_text(faults.small_doc(i))
    reads = count_reads(monkeypatch)
    server = FirstRequest({}, reads).start()
    try:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", faults.KEY)
        monkeypatch.setenv("INSIGHTS_CACHE", str(tmp_path / "cache.db"))
        assert run_cli(folder, "-o", tmp_path / "out.jsonl", "--concurrency", 2) == 0
    finally:
        server.stop()
    # The window holds two documents: the first request leaves with at most two files read of forty.
    assert 1 <= server.reads_at_first <= 2 and len(reads) == 40 and server.count == 40


def python(code: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "INSIGHTS_"))}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True)


SDKS = "print(sorted(m for m in ('openai', 'instructor') if m in sys.modules))"


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["extract", "--help"], ["estimate", str(SEEDS)], ["schema"]],
    ids=["help", "extract-help", "estimate", "schema"],
)
def test_commands_that_call_no_model_do_not_import_the_sdks(argv: list[str]) -> None:
    code = (
        f"import sys\nfrom insights.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n{SDKS}"
    )
    done = python(code, *argv)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr


def test_import_insights_does_not_import_the_sdks_and_names_resolve_on_use() -> None:
    done = python(f"import sys, insights\n{SDKS}\ninsights.ModelClient\n{SDKS}\nprint(insights.extract.__name__)")
    assert done.stdout.split("\n")[:3] == ["[]", "['instructor', 'openai']", "extract"], done.stderr


def test_a_finished_run_asks_nothing_but_the_model_check(srv, tmp_path, seed_dir):
    # The endpoint and model are checked before any file is created (insights.client.ModelClient.check),
    # so a run imports the SDKs even when every document is done; it sends no chat request.
    out = tmp_path / "out.jsonl"
    code = (
        "import sys\nfrom insights.cli import main\n"
        f"code = main(['extract', {str(seed_dir)!r}, '-o', {str(out)!r}, '-q'])\n{SDKS}\nprint(code)"
    )
    env_code = (
        f"import os\nos.environ['OPENAI_BASE_URL'] = {srv.url!r}\n"
        f"os.environ['INSIGHTS_CACHE'] = {str(tmp_path / 'c.db')!r}\n"
    )
    first_run = python(env_code + code)
    assert first_run.stdout.split()[-1] == "0", first_run.stderr
    second = python(env_code + code)
    assert second.stdout.split()[-1] == "0", second.stderr
    assert "skipped 5 (already in the output)" in second.stderr and srv.count == 5
