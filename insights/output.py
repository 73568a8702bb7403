"""The JSONL files a run writes, the matching reader, and resuming after a kill.

A run with ``-o OUT.jsonl`` writes three files (the two sidecars are named after the output):

``OUT.jsonl``            one line per kept insight: ``document_id``, ``insight_id`` (stable; recipe in
                         :mod:`insights.ids`), ``kind``, the insight's fields, ``evidence`` (quote: the
                         source slice ``text[start:end]``; model_quote: the model's words; start, end,
                         match, score, section), the document's ``title``, ``type``, ``year`` (an
                         integer, or null), first ``country``, every tag as ``metadata`` (lists of
                         values, e-mail addresses redacted), ``source`` (the file's path relative to the
                         input it was found under; see :mod:`insights.corpus`), and ``content_hash``,
                         ``model``, ``prompt_version``. See :class:`insights.schema.InsightRecord`.
``OUT.documents.jsonl``  one line per finished document: its ``counts``, ``rejected`` insights with
                         reasons, ``provenance``, ``block`` (where its lines are in ``OUT.jsonl``) and,
                         for a file holding one document, ``stamp`` (the file's size and modification
                         time). It is also the run's ledger: a document is done when its line is here.
                         The fields resuming reads, and their contract, are in :mod:`insights.ledger`.
``OUT.errors.jsonl``     one line per document (or unreadable file) whose latest attempt failed and that
                         is not done: ``document_id``, ``path``, ``source``, ``error_type``, ``message``,
                         ``attempts``, ``retryable``, ``status``, ``last_output`` (truncated), ``usage`` (tokens
                         and cost its calls spent), ``time``.

One run at a time: :meth:`OutputWriter.resume` first takes the lock ``OUT.jsonl.lock``
(:mod:`insights.lock`) and holds it until :meth:`OutputWriter.close`; a second run on the same output
stops at once with an :class:`~insights.errors.OutputError` naming the holder.

One model and prompt version per output: if the ledger holds results of another model or prompt version
than this run's, :meth:`~OutputWriter.resume` refuses (``OutputError``) before anything is changed or
asked; ``overwrite`` starts over instead. A document whose content changed is simply redone.

Crash safety: a document's insight lines are written in one ``write``; its ledger line is written only
once those lines are on disk (fsynced), and is fsynced too. Documents are *committed* in groups: with
``commit_interval`` 0 (the default) each document is committed before :meth:`~OutputWriter.write`
returns; with ``commit_interval`` T > 0 (the command line uses 0.25 s), a document is committed at once
if the previous commit is older than T, else with the next one that is, or when ``commit_max`` documents
wait, or at :meth:`~OutputWriter.commit` / :meth:`~OutputWriter.close`. A commit is one fsync of
``OUT.jsonl``, one ``write`` of the waiting ledger lines and one fsync of the ledger, so the ledger line
still comes only after its lines are durable. A kill loses the results not yet committed (at most
``commit_max`` documents, finished within T of each other): they are redone, from the cache. If a write
or a commit fails (a full disk, an I/O error), both files are cut back to the last commit and
:class:`~insights.errors.OutputWriteError` is raised: a document is in the ledger only if its lines are in
the output. Files that are rewritten (on resume, and the errors file at the end) are written to a
temporary file, fsynced, and renamed over the old one: a kill or a full disk at any moment leaves either
the old file or the new one, never an empty or half one.

Resume (unless ``overwrite``) costs O(ledger), not O(output): the ledger is read, and its ``block``
fields are checked against the output's size and last block (:meth:`insights.ledger.Ledger.check`). Bytes
after the last recorded block (lines of a document killed before its ledger line, a torn line) are cut
off, and so is a torn last ledger line. Superseded results (the latest ledger line for a document id wins;
an earlier one is the result of content since edited) are dropped with their lines when the output is
closed or resumed, by copying blocks, without parsing lines. Which documents are done is then asked per
document (:meth:`~OutputWriter.is_done`, :meth:`~OutputWriter.unchanged`), so the run's inputs can be
read lazily: the result of a document whose content changed stays until the document is redone (a run
stopped or limited before that keeps it). Given the documents up front, :meth:`~OutputWriter.resume`
also returns which are done and drops at once the results of those whose content changed.

Only when the check fails (files of an older version without ``block``, or damaged files) does resume
read every line, and repair: it keeps exactly one copy of the lines of each ledger document, drops lines
without a ledger line, and repairs what older versions could leave when two runs shared an output: a
ledger line repeated is kept once; a document whose lines appear several times over (identical copies) is
kept once; a document whose lines do not match its ledger line's counts (missing lines, or copies that
differ), or whose ledger line has a ``block`` hash its lines no longer have (altered in place), loses
both and is redone. It then rewrites both files with ``block`` fields, so the next resume is fast. So
each document's lines are there exactly once, as they were written.

The errors file is never emptied before its replacement is safely written: resume keeps the records of
documents that are not done, this run appends its own failures as they happen, and closing rewrites it
atomically with the latest record per document, without the documents done by then.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from .corpus import LoadFailure, picks_up
from .documents import Document, redact_emails
from .errors import DocumentError, InsightsError, ModelError, OutputError, OutputWriteError, scrub
from .ids import insight_id
from .ledger import Entry, FileStamp, Ledger, ResultKey, block_of, key_of
from .lock import OutputLock, lock_path
from .schema import DocumentInsights, InsightRecord

__all__ = ["OutputWriter", "ResultKey", "read_jsonl", "read_records", "sidecar"]

MAX_LAST_OUTPUT = 2_000
_KINDS = ("barrier", "enabler", "champion", "failed_experiment")


def sidecar(out: Path, name: str) -> Path:
    """``out.jsonl`` → ``out.<name>.jsonl``."""
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(f"{stem}.{name}.jsonl")


def result_key(document: Document, model: str, prompt_version: str) -> ResultKey:
    """The key under which a document's result is reused."""
    return (document.id, document.content_hash, prompt_version, model)


def insight_records(document: Document, result: DocumentInsights) -> list[dict[str, Any]]:
    """The output lines for one document's result, as JSON-ready dicts."""
    year = document.meta("year").strip()
    identity = {
        "document_id": result.document_id,
        "title": document.title,
        "type": document.meta("type"),
        "year": int(year) if year.isdigit() else None,
        "country": document.meta("country"),
        "metadata": {k: [redact_emails(v) for v in values] for k, values in document.metadata.items()},
        "source": document.source,
        "content_hash": document.content_hash,
        "model": result.provenance.model,
        "prompt_version": result.provenance.prompt_version,
    }
    lines = []
    for insight in result.insights():
        fields = insight.model_dump(mode="json")
        kind = fields.pop("kind")
        spans = [(e.start, e.end) for e in insight.evidence]
        iid = insight_id(result.document_id, document.content_hash, kind, insight.statement, spans)
        lines.append({"document_id": result.document_id, "insight_id": iid, "kind": kind, **fields, **identity})
    return lines


def document_record(document: Document, result: DocumentInsights) -> dict[str, Any]:
    """The ledger line for one finished document."""
    return {
        "document_id": result.document_id,
        "title": document.title,
        "path": document.path,
        "source": document.source,
        "content_hash": document.content_hash,
        "model": result.provenance.model,
        "prompt_version": result.provenance.prompt_version,
        "counts": {
            "barrier": len(result.barriers),
            "enabler": len(result.enablers),
            "champion": len(result.champions),
            "failed_experiment": len(result.failed_experiments),
            "rejected": len(result.rejected),
        },
        "rejected": [r.model_dump(mode="json") for r in result.rejected],
        "provenance": result.provenance.model_dump(mode="json"),
    }


def error_record(
    document: Document | None, error: BaseException, *, document_id: str = "", source: str | None = None
) -> dict[str, Any]:
    """The errors-file line for one failed document (or, with ``document=None``, an unreadable file)."""
    model_error = error if isinstance(error, ModelError) else None
    last = getattr(model_error, "last_output", None)
    path = document.path if document else (error.path if isinstance(error, DocumentError) else None)
    return {
        "document_id": document.id if document else document_id,
        "path": path,
        "source": document.source if document else source,
        "error_type": type(error).__name__,
        "message": scrub(str(error)),
        "attempts": getattr(model_error, "attempts", 1),
        "status": getattr(model_error, "status", None),
        "retryable": bool(getattr(error, "retryable", not isinstance(error, InsightsError))),
        "last_output": scrub(last)[:MAX_LAST_OUTPUT] if isinstance(last, str) else None,
        "usage": usage.model_dump(mode="json") if (usage := getattr(error, "usage", None)) is not None else None,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every JSON object line of a file, skipping a torn or invalid line (as a kill leaves)."""
    try:
        with open(path, "rb") as fp:
            for line in fp:
                try:
                    value = json.loads(line)  # a line torn inside a UTF-8 character fails here too
                except ValueError:
                    continue
                if isinstance(value, dict):
                    yield value
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"{path}: cannot read: {exc}") from exc


def read_records(path: str | os.PathLike[str]) -> Iterator[InsightRecord]:
    """The insight lines of an output file as :class:`~insights.schema.InsightRecord` (round-trips
    what :class:`OutputWriter` writes)."""
    for value in read_jsonl(path):
        yield InsightRecord.model_validate(value)


def _expected_lines(ledger_line: dict[str, Any]) -> int | None:
    """How many insight lines a ledger line says its document has (``None``: it does not say)."""
    counts = ledger_line.get("counts")
    if not isinstance(counts, dict) or not all(isinstance(counts.get(k), int) for k in _KINDS):
        return None
    return sum(int(counts[k]) for k in _KINDS)


def _one_copy(lines: list[dict[str, Any]], copies: int) -> list[dict[str, Any]] | None:
    """``lines`` without repeats if they are ``copies`` identical copies of one set, else ``None``."""
    canon = [json.dumps(x, sort_keys=True, ensure_ascii=False) for x in lines]
    wanted = Counter(canon)
    if any(n % copies for n in wanted.values()):
        return None
    left = {k: n // copies for k, n in wanted.items()}
    kept = []
    for line, key in zip(lines, canon, strict=True):
        if left[key]:
            left[key] -= 1
            kept.append(line)
    return kept


def _dumps(lines: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines).encode("utf-8")


def _why(exc: OSError) -> str:
    return f"{exc.strerror or exc} (errno {exc.errno})" if exc.errno else str(exc)


def _error_key(record: dict[str, Any]) -> tuple[str, str]:
    return (str(record.get("document_id", "")), str(record.get("path", "")))


@dataclass
class OutputWriter:
    """Appends results to ``out`` and its sidecars; see the module docstring for the guarantees.

    Call :meth:`resume` first (it takes the lock and prepares the files), then :meth:`write`,
    :meth:`write_error` and :meth:`write_failure` per document, and :meth:`close` at the end (``with``
    does it).

    ``out`` may be ``None`` to write insight lines to ``stream`` instead (no resume, no ledger; the
    errors file, if ``errors`` is given, is locked and kept as described).

    Args:
        commit_interval: seconds; 0 commits each document in :meth:`write`, more groups commits (see the
            module docstring).
        commit_max: documents that may wait for a commit.

    Attributes:
        repairs: what :meth:`resume` repaired, one sentence each (empty when nothing was wrong).
        saved: documents committed by this writer.
    """

    out: Path | None
    errors: Path | None = None
    documents: Path | None = None
    stream: IO[str] | None = None
    commit_interval: float = 0.0
    commit_max: int = 64
    repairs: list[str] = field(default_factory=list, init=False)
    saved: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.out is not None:
            self.out = Path(self.out)
            self.errors = Path(self.errors) if self.errors else sidecar(self.out, "errors")
            self.documents = Path(self.documents) if self.documents else sidecar(self.out, "documents")
        elif self.errors is not None:
            self.errors = Path(self.errors)
        self._fds: dict[Path, int] = {}
        self._lock: OutputLock | None = None
        self._written: set[tuple[str, str]] = set()
        self._started = False  # resume() succeeded: close() may compact the errors file
        self._ledger = Ledger()
        self._run: tuple[str, str] = ("", "")  # (model, prompt version)
        self._waiting: list[tuple[Entry, tuple[str, str], bytes]] = []  # written, not yet committed
        self._committed = 0  # the output's size at the last commit
        self._last_commit = -float("inf")
        self._superseded = False

    def files(self) -> list[Path]:
        """Every file this writer may create: the output, its sidecars, the lock and temporary files."""
        main = [p for p in (self.out, self.documents, self.errors) if p is not None]
        extra = [p.with_name(p.name + ".tmp") for p in main]
        target = self.out or self.errors
        return main + extra + ([lock_path(target)] if target is not None else [])

    def refuse_unsafe_paths(self, inputs: Iterable[str | os.PathLike[str]]) -> None:
        """Refuse, before any file is created, paths under which records would be lost.

        Args:
            inputs: the run's inputs (files, folders, globs), as given to :func:`insights.corpus.scan_corpus`.

        Raises:
            OutputError: the errors file is the output or one of its sidecars (each run would overwrite
                the other's records), or a file of this writer would be read as a document by a rerun
                (inside an input folder, matched by an input glob, or an input file itself).
        """
        if self.errors is not None and self.out is not None:
            errors = os.path.realpath(self.errors)
            assert self.documents is not None
            mine = (self.out, self.documents)
            reviews = sidecar(self.out, "decisions")  # insights.decisions: a review's decisions, never a run's
            for other in [*mine, lock_path(self.out), *(p.with_name(p.name + ".tmp") for p in mine), reviews]:
                if os.path.realpath(other) == errors:
                    raise OutputError(
                        f"--errors {self.errors} is the same file as {other}, which the run also writes: "
                        f"give the errors file its own name (by default it is {sidecar(self.out, 'errors')})"
                    )
        for path in self.files():
            found = picks_up(inputs, path)
            if found is not None:
                raise OutputError(
                    f"{path} would be read as input: it is under the input {found!r}, so a rerun would take "
                    "the output for a document. Write the output outside the input folders (or name the "
                    "inputs more narrowly)."
                )

    # ----------------------------------------------------------------------------------------- resume
    def resume(
        self,
        documents: Iterable[Document] | None,
        model: str,
        prompt_version: str,
        *,
        overwrite: bool,
        verify: bool = False,
    ) -> set[str]:
        """Lock the output, prepare the files for a run, and return the ids of documents already done.

        Args:
            documents: the run's inputs; or ``None`` to ask :meth:`is_done` / :meth:`unchanged` per
                document later (their inputs need not be read up front; the result is then empty).
            model, prompt_version: what this run would produce results with.
            overwrite: start over, emptying every file.
            verify: check every line's bytes against the ledger (reads the whole output once).

        Raises:
            OutputError: another run holds the output; or the output holds results of another model or
                prompt version (and not ``overwrite``).
            OutputWriteError: a file could not be rewritten (the old one is left as it was).
        """
        self._run = (model, prompt_version)
        done = self._resume(documents, model, prompt_version, overwrite=overwrite, verify=verify)
        if self.out is not None:
            self._committed = _size(self.out)
        self._started = True
        return done

    def is_done(self, document: Document) -> bool:
        """Whether ``document``, as it is now, has a result in the output (after :meth:`resume`)."""
        return self._ledger.done(document, *self._run)

    def unchanged(self, document_id: str, path: str, stamp: FileStamp | None) -> bool:
        """Whether the one-document file ``path`` is done without reading it: its latest result came from
        that path when it had this ``stamp`` (see :mod:`insights.ledger` for the trade-off)."""
        return self._ledger.unchanged(document_id, path, stamp, *self._run)

    def _resume(
        self, documents: Iterable[Document] | None, model: str, prompt_version: str, *, overwrite: bool, verify: bool
    ) -> set[str]:
        target = self.out or self.errors
        if target is None:
            return set()
        for path in (self.out, self.documents, self.errors):
            if path is not None and not path.parent.exists():
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise OutputWriteError(f"{path.parent}: cannot create the folder: {_why(exc)}") from exc
        self._lock = OutputLock(target)
        self._lock.acquire()
        if self.out is None:
            return set()
        assert self.documents is not None and self.errors is not None
        if overwrite:
            for path in (self.out, self.documents, self.errors):
                self._rewrite(path, [])
            return set()
        ledger = Ledger.read(self.documents)
        self._refuse_other_results(ledger, model, prompt_version)
        wanted = None if documents is None else {d.id: result_key(d, model, prompt_version) for d in documents}
        check = ledger.check(self.out, verify=verify)
        if check.verdict == "repair":
            ledger = self._repair_files(wanted)
        else:
            if ledger.torn:
                _truncate(self.documents, ledger.size)
            if check.verdict == "tail":
                _truncate(self.out, check.end)
            stale = {e.document_id for e in ledger if wanted and wanted.get(e.document_id, e.key) != e.key}
            if stale or ledger.superseded():
                ledger = self._compact(stale)
            for path in (self.out, self.documents):
                if not path.exists():  # an empty run still leaves (empty) files
                    self._rewrite(path, [])
        self._ledger = ledger
        done = ledger.ids()
        previous = self._latest_errors()
        self._rewrite_if_changed(self.errors, [r for r in previous if str(r.get("document_id", "")) not in done])
        return {i for i in wanted if i in done} if wanted else set()

    def _refuse_other_results(self, ledger: Ledger, model: str, prompt_version: str) -> None:
        others = Counter((e.key[3], e.key[2]) for e in ledger if e.key[2:] != (prompt_version, model))
        if not others:
            return
        (old_model, old_prompt), _ = others.most_common(1)[0]
        raise OutputError(
            f"{self.out} holds results of model {old_model!r} with prompt version {old_prompt!r} "
            f"({sum(others.values())} document(s)); this run uses model {model!r} with prompt version "
            f"{prompt_version!r}. One output holds one model's results: run again with --overwrite to replace "
            "them, or write to another -o."
        )

    def _compact(self, stale: set[str]) -> Ledger:
        """Drop superseded results and those of ``stale`` documents, copying the other blocks as they are."""
        assert self.out is not None and self.documents is not None
        lines = list(read_jsonl(self.documents))  # a torn last line was cut off before
        latest = {key_of(line)[0]: i for i, line in enumerate(lines)}
        kept = [line for i, line in enumerate(lines) if latest[key_of(line)[0]] == i and key_of(line)[0] not in stale]
        tmp = self.out.with_name(self.out.name + ".tmp")
        ledger = Ledger()
        try:
            with open(self.out, "rb") as src, open(tmp, "wb") as dst:
                for line in kept:
                    block = line["block"]
                    src.seek(block["offset"])
                    data = src.read(block["length"])
                    line["block"] = block_of(dst.tell(), data)
                    dst.write(data)
                    ledger.add(Entry.of(line))
                dst.flush()
                os.fsync(dst.fileno())
        except FileNotFoundError:
            pass
        except OSError as exc:
            _unlink(tmp)
            raise OutputWriteError(f"cannot write {self.out}: {_why(exc)}") from exc
        # The output first: a kill between the two renames leaves a ledger that says more than the output
        # holds, which the next resume repairs on its slow path.
        _replace(tmp, self.out)
        self._rewrite(self.documents, kept)
        return ledger

    def _repair_files(self, wanted: dict[str, ResultKey] | None) -> Ledger:
        """The slow path: read every line, keep each finished document's lines once, rewrite both files."""
        assert self.out is not None and self.documents is not None
        lines_in = list(read_jsonl(self.documents))
        latest = {key_of(line)[0]: key_of(line) for line in lines_in}
        ledger: dict[ResultKey, dict[str, Any]] = {}
        repeated = 0
        for line in lines_in:
            key = key_of(line)
            if latest[key[0]] != key or (wanted and key[0] in wanted and wanted[key[0]] != key):
                continue  # superseded, or the result of content this run has edited
            repeated += key in ledger
            ledger.setdefault(key, line)
        lines: dict[ResultKey, list[dict[str, Any]]] = {}
        for line in read_jsonl(self.out):
            if key_of(line) in ledger:
                lines.setdefault(key_of(line), []).append(line)
        kept = self._repair(ledger, lines)
        if repeated:
            self.repairs.append(f"{repeated} repeated ledger line(s) kept once")
        body, index = bytearray(), Ledger()
        for key, entry in ledger.items():
            data = _dumps(kept.get(key, []))
            entry["block"] = block_of(len(body), data)
            body += data
            index.add(Entry.of(entry))
        self._rewrite_if_changed(self.out, [], bytes(body))
        self._rewrite_if_changed(self.documents, list(ledger.values()))
        return index

    def _repair(
        self, ledger: dict[ResultKey, dict[str, Any]], lines: dict[ResultKey, list[dict[str, Any]]]
    ) -> dict[ResultKey, list[dict[str, Any]]]:
        """Each ledger entry's lines exactly once; entries whose lines cannot be made to match are removed."""
        kept: dict[ResultKey, list[dict[str, Any]]] = {}
        doubled, redone = [], []
        for key, entry in list(ledger.items()):
            found = lines.get(key, [])
            n = _expected_lines(entry)
            single = found if n is None or len(found) == n else None
            if single is None and n and found and len(found) % n == 0:
                single = _one_copy(found, len(found) // n)
                doubled += [key[0]] if single is not None else []
            digest = (Entry.of(entry).block or (0, 0, ""))[2]
            if single is not None and digest and hashlib.sha256(_dumps(single)).hexdigest() != digest:
                single = None  # not the lines that were written (the ledger line recorded their hash)
            if single is not None:
                kept[key] = single
            else:
                del ledger[key]
                redone.append(key[0])
        doubled = [d for d in doubled if d not in redone]
        if doubled:
            self.repairs.append(f"{len(doubled)} document(s) whose lines were there several times kept once")
        if redone:
            self.repairs.append(
                f"{len(redone)} document(s) whose lines did not match the ledger (missing, altered, or differing "
                f"copies) dropped and to be redone: {', '.join(redone[:5])}{' ...' if len(redone) > 5 else ''}"
            )
        return kept

    def _latest_errors(self) -> list[dict[str, Any]]:
        """The errors file's records, the latest one per document (and path), in order of first failure."""
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        if self.errors is not None:
            for record in read_jsonl(self.errors):
                latest[_error_key(record)] = record
        return list(latest.values())

    def _rewrite_if_changed(self, path: Path, lines: list[dict[str, Any]], body: bytes | None = None) -> None:
        body = body if body is not None else _dumps(lines)
        try:
            current = path.read_bytes() if path.exists() else None
        except OSError as exc:
            raise OutputError(f"{path}: cannot read: {_why(exc)}") from exc
        if current != body:  # an empty run still leaves an (empty) output
            self._rewrite(path, lines, body)

    def _rewrite(self, path: Path, lines: list[dict[str, Any]], body: bytes | None = None) -> None:
        """Replace ``path`` atomically: a temporary file, fsynced, renamed over it."""
        body = body if body is not None else _dumps(lines)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as fp:
                fp.write(body)
                fp.flush()
                os.fsync(fp.fileno())
        except OSError as exc:
            _unlink(tmp)
            raise OutputWriteError(f"cannot write {path}: {_why(exc)}") from exc
        _replace(tmp, path)

    # ----------------------------------------------------------------------------------------- writes
    def _fd(self, path: Path) -> int:
        if path not in self._fds:
            if self._lock is None or not self._lock.held:
                raise OutputError(f"{path}: call resume() before writing (it takes the output's lock)")
            try:
                self._fds[path] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputWriteError(f"cannot open {path} for writing: {_why(exc)}") from exc
        return self._fds[path]

    def _append(self, path: Path, data: bytes, *, sync: bool = True) -> int:
        """Append ``data`` (and fsync); on failure cut the file back and raise. Returns the old size."""
        fd = self._fd(path)
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        except OSError as exc:
            _cut(fd, start)
            raise OutputWriteError(f"cannot write {path}: {_why(exc)}") from exc
        return start

    def write(self, document: Document, result: DocumentInsights, *, stamp: FileStamp | None = None) -> int:
        """Write one document's insight lines, and its ledger line once they are durable; return the
        number of insight lines.

        Args:
            document, result: the document and its result.
            stamp: the document's file as :func:`insights.ledger.file_stamp` saw it before it was read, for
                a file that holds this one document only (lets a resumed run skip reading it).

        Raises:
            OutputWriteError: the disk refused; neither file keeps any part of this document, nor of the
                documents written since the last commit.
        """
        lines = insight_records(document, result)
        if self.out is None:
            if self.stream is not None and lines:
                self.stream.write(_dumps(lines).decode("utf-8"))
                self.stream.flush()
            self._written.add((document.id, str(document.path)))
            return len(lines)
        data = _dumps(lines)
        try:
            start = self._append(self.out, data, sync=False)
        except OutputWriteError:
            try:
                self.commit()  # the documents written before this one are whole: keep them
            except OutputWriteError:
                pass
            raise
        record = document_record(document, result)
        record["block"] = block_of(start, data)
        if stamp is not None:
            record["stamp"] = {"size": stamp[0], "mtime_ns": stamp[1]}
        previous = self._ledger.latest(document.id)
        self._superseded |= previous is not None and previous.key != key_of(record)
        self._waiting.append((Entry.of(record), (document.id, str(document.path)), _dumps([record])))
        due = self.commit_interval <= 0 or len(self._waiting) >= self.commit_max
        if due or time.monotonic() - self._last_commit >= self.commit_interval:
            self.commit()
        return len(lines)

    def commit(self) -> None:
        """Make the documents written so far durable and record them in the ledger (see the module
        docstring); nothing to do if none is waiting.

        Raises:
            OutputWriteError: the disk refused; both files are cut back to the previous commit, and the
                waiting documents are not recorded (a rerun redoes them).
        """
        if not self._waiting or self.out is None:
            return
        assert self.documents is not None
        waiting, self._waiting = self._waiting, []
        try:
            try:
                os.fsync(self._fd(self.out))
            except OSError as exc:
                raise OutputWriteError(f"cannot write {self.out}: {_why(exc)}") from exc
            self._append(self.documents, b"".join(line for _, _, line in waiting))
        except OutputWriteError:
            _cut(self._fd(self.out), self._committed)
            raise
        self._committed = os.lseek(self._fd(self.out), 0, os.SEEK_END)
        self._last_commit = time.monotonic()
        for entry, written, _ in waiting:
            self._ledger.add(entry)
            self._written.add(written)
        self.saved += len(waiting)

    def write_error(self, document: Document | None, error: BaseException, *, document_id: str = "") -> None:
        """Record one failed document in the errors file."""
        if self.errors is not None:
            self._append(self.errors, _dumps([error_record(document, error, document_id=document_id)]))

    def write_failure(self, failure: LoadFailure) -> None:
        """Record one file that could not be read in the errors file."""
        if self.errors is not None:
            record = error_record(None, failure.error, document_id=failure.document_id, source=failure.source)
            self._append(self.errors, _dumps([record]))

    def close(self) -> None:
        """Commit what waits, drop superseded results, close every file, compact the errors file, and
        release the lock.

        The errors file is rewritten (atomically) with the latest record per document, without the
        documents written by this run. If that fails (a full disk), it is left as it was: still valid,
        and compacted by the next run; so are superseded results.

        Raises:
            OutputWriteError: the last commit failed (everything else is still done).
        """
        failed: OutputWriteError | None = None
        try:
            self.commit()
        except OutputWriteError as exc:
            failed = exc
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        try:
            if self._started and self._superseded and failed is None:
                self._ledger = self._compact(set())
            if self._started and self.errors is not None and self.errors.exists():
                done = self._written
                records = [r for r in self._latest_errors() if _error_key(r) not in done]
                self._rewrite_if_changed(self.errors, records)
        except OutputError:
            pass
        finally:
            self._started = self._superseded = False
            if self._lock is not None:
                self._lock.release()
        if failed is not None:
            raise failed

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _replace(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        raise OutputWriteError(f"cannot write {path}: {_why(exc)}") from exc
    _sync_folder(path.parent)


def _truncate(path: Path, size: int) -> None:
    """Cut bytes off the end of a file (a torn line, lines of a document never recorded)."""
    try:
        with open(path, "r+b") as fp:
            fp.truncate(size)
            fp.flush()
            os.fsync(fp.fileno())
    except OSError as exc:
        raise OutputWriteError(f"cannot write {path}: {_why(exc)}") from exc


def _cut(fd: int, size: int) -> None:
    """Truncate back to ``size`` (what a failed append had added); best effort, it needs no space."""
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass


def write_atomically(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` as a whole: a temporary file beside it, fsynced, then renamed into place, so
    a reader (or a crash) sees the old file or the new one, never a part. Used for every file written in one
    go (themes, gold annotations, the report).

    Raises:
        OutputError: the file cannot be written; no temporary file is left behind.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
            fp.flush()
            os.fsync(fp.fileno())
        os.chmod(tmp, mode)  # mkstemp makes it private; these files are meant to be read and shared
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise OutputError(f"{path}: cannot write: {exc}") from exc
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make a rename durable (POSIX); not possible, nor needed, on Windows."""
    if sys.platform == "win32":  # pragma: no cover
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
