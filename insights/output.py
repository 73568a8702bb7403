"""The JSONL files a run writes, the matching reader, and resuming after a kill.

A run with ``-o OUT.jsonl`` writes three files (the two sidecars are named after the output):

``OUT.jsonl``            one line per kept insight: ``document_id``, ``insight_id`` (stable; recipe in
                         :mod:`insights.ids`), ``kind``, the insight's fields, ``evidence`` (quote, start,
                         end, match, score, section), the document's ``title``, ``type``, ``year`` (an
                         integer, or null), first ``country``, every tag as ``metadata`` (lists of
                         values, e-mail addresses redacted), and ``content_hash``, ``model``,
                         ``prompt_version``. See :class:`insights.schema.InsightRecord`.
``OUT.documents.jsonl``  one line per finished document: its counts, ``rejected`` insights with reasons,
                         and ``provenance``. It is also the run's ledger: a document is done when its
                         line is here.
``OUT.errors.jsonl``     one line per document that failed in the latest run: ``document_id``, ``path``,
                         ``error_type``, ``message``, ``attempts``, ``retryable``, ``status``,
                         ``last_output`` (truncated), ``usage`` (tokens and cost its calls spent).

Crash safety: a document's insight lines are written in one ``write``, flushed and fsynced, and only
then its ledger line. On the next run (unless ``overwrite``) :meth:`OutputWriter.resume` keeps exactly
the lines of documents in the ledger whose content hash, prompt version and model are unchanged, drops
everything else (a torn last line, lines of a document killed before its ledger line, stale results
of an edited document), and reports those documents as done so they are skipped. A document therefore
appears exactly once however often a run is killed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from .documents import Document, redact_emails
from .errors import InsightsError, ModelError, OutputError
from .ids import insight_id
from .schema import DocumentInsights, InsightRecord

#: What makes a finished result reusable: (document id, content hash, prompt version, model).
ResultKey = tuple[str, str, str, str]
MAX_LAST_OUTPUT = 2_000


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
        "content_hash": document.content_hash,
        "model": result.provenance.model,
        "prompt_version": result.provenance.prompt_version,
    }
    lines = []
    for insight in result.insights():
        fields = insight.model_dump(mode="json")
        kind = fields.pop("kind")
        spans = [(e.start, e.end) for e in insight.evidence]
        iid = insight_id(document.content_hash, kind, insight.statement, spans)
        lines.append({"document_id": result.document_id, "insight_id": iid, "kind": kind, **fields, **identity})
    return lines


def document_record(document: Document, result: DocumentInsights) -> dict[str, Any]:
    """The ledger line for one finished document."""
    return {
        "document_id": result.document_id,
        "title": document.title,
        "path": document.path,
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


def error_record(document: Document | None, error: BaseException, *, document_id: str = "") -> dict[str, Any]:
    """The errors-file line for one failed document."""
    model_error = error if isinstance(error, ModelError) else None
    last = getattr(model_error, "last_output", None)
    return {
        "document_id": document.id if document else document_id,
        "path": document.path if document else None,
        "error_type": type(error).__name__,
        "message": str(error),
        "attempts": getattr(model_error, "attempts", 1),
        "status": getattr(model_error, "status", None),
        "retryable": bool(getattr(error, "retryable", not isinstance(error, InsightsError))),
        "last_output": last[:MAX_LAST_OUTPUT] if isinstance(last, str) else None,
        "usage": usage.model_dump(mode="json") if (usage := getattr(error, "usage", None)) is not None else None,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every JSON object line of a file, skipping a torn or invalid line (as a kill leaves)."""
    try:
        with open(path, encoding="utf-8") as fp:
            for line in fp:
                try:
                    value = json.loads(line)
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


def _key_of(line: dict[str, Any]) -> ResultKey:
    return (
        str(line.get("document_id", "")),
        str(line.get("content_hash", "")),
        str(line.get("prompt_version", "")),
        str(line.get("model", "")),
    )


@dataclass
class OutputWriter:
    """Appends results to ``out`` and its sidecars; see the module docstring for the guarantees.

    ``out`` may be ``None`` to write insight lines to ``stream`` instead (no resume, no sidecars unless
    ``errors`` is given).
    """

    out: Path | None
    errors: Path | None = None
    documents: Path | None = None
    stream: IO[str] | None = None

    def __post_init__(self) -> None:
        if self.out is not None:
            self.out = Path(self.out)
            self.errors = Path(self.errors) if self.errors else sidecar(self.out, "errors")
            self.documents = Path(self.documents) if self.documents else sidecar(self.out, "documents")
        self._files: dict[str, IO[str]] = {}

    # ----------------------------------------------------------------------------------------- resume
    def resume(self, documents: Iterable[Document], model: str, prompt_version: str, *, overwrite: bool) -> set[str]:
        """Prepare the files for a run and return the ids of documents already done.

        Args:
            documents: the run's inputs.
            model, prompt_version: what this run would produce results with.
            overwrite: start over, emptying every file.
        """
        if self.out is None:
            return set()
        assert self.documents is not None
        for path in (self.out, self.documents, self.errors):
            if path is not None and path.parent and not path.parent.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
        wanted = {d.id: result_key(d, model, prompt_version) for d in documents}
        if overwrite:
            for path in (self.out, self.documents):
                self._rewrite(path, [])
            return set()
        ledger: dict[ResultKey, dict[str, Any]] = {}
        for line in read_jsonl(self.documents):
            key = _key_of(line)
            # A finished result stays unless this run has the same document with other content/prompt/model.
            if key[0] not in wanted or wanted[key[0]] == key:
                ledger.setdefault(key, line)
        keep_lines = [line for line in read_jsonl(self.out) if _key_of(line) in ledger]
        self._rewrite_if_changed(self.out, keep_lines)
        self._rewrite_if_changed(self.documents, list(ledger.values()))
        return {key[0] for key in ledger if key[0] in wanted}

    def _rewrite_if_changed(self, path: Path, lines: list[dict[str, Any]]) -> None:
        body = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        try:
            current = path.read_text(encoding="utf-8") if path.exists() else ""
        except (OSError, UnicodeDecodeError) as exc:
            raise OutputError(f"{path}: cannot read: {exc}") from exc
        if current != body or not path.exists():  # an empty run still leaves an (empty) output
            self._rewrite(path, lines, body)

    def _rewrite(self, path: Path, lines: list[dict[str, Any]], body: str | None = None) -> None:
        body = body if body is not None else "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fp:
                fp.write(body)
                fp.flush()
                os.fsync(fp.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write: {exc}") from exc

    # ----------------------------------------------------------------------------------------- writes
    def _file(self, name: str, path: Path | None, mode: str = "a") -> IO[str] | None:
        if path is None:
            return None
        if name not in self._files:
            try:
                self._files[name] = open(path, mode, encoding="utf-8")
            except OSError as exc:
                raise OutputError(f"{path}: cannot open for writing: {exc}") from exc
        return self._files[name]

    @staticmethod
    def _append(fp: IO[str], lines: list[dict[str, Any]], *, sync: bool) -> None:
        if not lines:
            return
        try:
            fp.write("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
            fp.flush()
            if sync:
                os.fsync(fp.fileno())
        except OSError as exc:
            raise OutputError(f"{getattr(fp, 'name', 'output')}: cannot write: {exc}") from exc

    def start_errors(self) -> None:
        """Empty the errors file: it lists the failures of the latest run only."""
        if self.errors is not None:
            self._file("errors", self.errors, "w")

    def write(self, document: Document, result: DocumentInsights) -> int:
        """Write one document's insight lines, then its ledger line; return the number of insight lines."""
        lines = insight_records(document, result)
        if self.out is None:
            if self.stream is not None:
                self._append(self.stream, lines, sync=False)
            return len(lines)
        out = self._file("out", self.out)
        ledger = self._file("documents", self.documents)
        assert out is not None and ledger is not None
        self._append(out, lines, sync=True)
        self._append(ledger, [document_record(document, result)], sync=True)
        return len(lines)

    def write_error(self, document: Document | None, error: BaseException, *, document_id: str = "") -> None:
        """Record one failed document in the errors file."""
        fp = self._file("errors", self.errors)
        if fp is not None:
            self._append(fp, [error_record(document, error, document_id=document_id)], sync=True)

    def close(self) -> None:
        """Close every file."""
        for fp in self._files.values():
            fp.close()
        self._files.clear()

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
