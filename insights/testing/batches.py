"""The reference server's Files and Batches endpoints: the OpenAI Batch API, offline and deterministic.

A test double, like the server it belongs to (:mod:`insights.testing.server`), which routes ``/v1/files*`` and
``/v1/batches*`` here. Standard library only.

Endpoints (bodies and objects shaped as OpenAI's; also without ``/v1``)
-----------------------------------------------------------------------
``POST /v1/files``                multipart form with ``purpose`` and ``file`` → a file object (``file-<n>``)
``GET  /v1/files/{id}``           the file object
``GET  /v1/files/{id}/content``   the file's bytes
``POST /v1/batches``              JSON ``input_file_id``, ``endpoint``, ``completion_window`` (``24h``),
                                  ``metadata`` → a batch (``batch_<n>``), ``validating``
``GET  /v1/batches/{id}``         the batch; **every retrieve advances it one state** (below)
``POST /v1/batches/{id}/cancel``  the batch, ``cancelling``; the next retrieve makes it ``cancelled``
``GET  /v1/batches``              ``limit`` (default 20), ``after``: newest first, with ``has_more``
Unknown ids are 404, malformed requests 400, with OpenAI-style JSON errors.

Progress
--------
``validating`` → ``in_progress`` → ``finalizing`` → ``completed``, one state per retrieve. Leaving
``validating``, the input file is checked (JSONL of objects with a unique ``custom_id``, ``method`` POST, the
batch's ``url``, an object ``body``; at most :attr:`BatchPlan.max_requests` lines and
:attr:`BatchPlan.max_bytes` bytes); a bad file makes the batch ``failed`` with ``errors``. Leaving
``in_progress``, the lines run in file order, each answered exactly as ``POST /v1/chat/completions`` answers
the same body (the body serialised as the SDK does, so the answer's ids match a synchronous call's; the
server's fault plan applies and every line is recorded in ``ReferenceServer.requests`` with ``"batch": id``).
:class:`BatchPlan` adds the Batch API's own faults: a share of failed requests, expiry and partial runs.

Output file line: ``{"id": "batch_req_…", "custom_id", "response": {"status_code": 200, "request_id",
"body": <chat.completion>}, "error": null}``. Error file line: the same with the error's status and OpenAI
error body, or, for a line that never ran, ``"response": null, "error": {"code": "batch_expired" |
"batch_cancelled", "message"}``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:  # pragma: no cover
    from .server import ReferenceServer

__all__ = ["BatchPlan", "BatchService"]

_CHAT_URLS = frozenset({"/v1/chat/completions", "/chat/completions"})
_CREATED = 1_700_000_000


@dataclass
class BatchPlan:
    """The Batch API's faults.

    ``fail_rate``: exactly that share of a batch's lines (rounded), the lowest by ``sha256(seed, batch id, line
    number)``, fails with ``fail_status`` (in the error file). ``expire``: a batch expires when it leaves
    ``in_progress``, after only the first ``partial`` share of its lines ran (the rest are ``batch_expired`` in
    the error file); a cancelled batch also runs that share. ``max_requests``/``max_bytes``: the input file
    limits.
    """

    fail_rate: float = 0.0
    fail_status: int = 500
    expire: bool = False
    partial: float = 0.5
    seed: int = 0
    max_requests: int = 50_000
    max_bytes: int = 200_000_000

    def failing(self, batch_id: str, lines: int) -> set[int]:
        """The (0-based) lines of a batch of ``lines`` lines that fail (deterministic)."""

        def draw(line: int) -> bytes:
            return hashlib.sha256(f"{self.seed}\0{batch_id}\0{line}".encode()).digest()

        return set(sorted(range(lines), key=draw)[: round(lines * self.fail_rate)])


@dataclass
class _Batch:
    id: str
    input_file_id: str
    endpoint: str
    metadata: dict[str, Any]
    created_at: int
    status: str = "validating"
    errors: list[dict[str, Any]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    total: int = 0
    times: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        stamps = ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled")
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "expires_at": self.created_at + 86_400,
            **{f"{name}_at": self.times.get(name) for name in stamps},
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
        }


class BatchService:
    """The files and batches of one :class:`~insights.testing.server.ReferenceServer` (its ``batches``).

    ``plan`` may be replaced at any time. ``create_gate``: when set to an unset ``threading.Event``, a batch
    create registers the batch and then waits for the event before answering (a test kills its client there).
    """

    def __init__(self, owner: ReferenceServer, plan: BatchPlan | None = None) -> None:
        self.owner = owner
        self.plan = plan or BatchPlan()
        self.create_gate: threading.Event | None = None
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, _Batch] = {}
        self._lock = threading.RLock()
        self._clock = 0

    # ------------------------------------------------------------------------------------------ routing
    def handle(self, handler: BaseHTTPRequestHandler, method: str, raw: bytes) -> bool:
        """Answer a request under ``/v1/files`` or ``/v1/batches``; ``False`` for any other path."""
        url = urlsplit(handler.path)
        parts = [p for p in url.path.split("/") if p]
        if parts[:1] == ["v1"]:
            parts = parts[1:]
        if not parts or parts[0] not in ("files", "batches"):
            return False
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self._lock:
            status, payload = self._route(method, parts, query, raw, handler)
        gate = self.create_gate if (method, parts) == ("POST", ["batches"]) and status == 200 else None
        if gate is not None:
            gate.wait(60)
        body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
        kind = "application/octet-stream" if isinstance(payload, bytes) else "application/json"
        try:
            handler.send_response(status)
            handler.send_header("content-type", kind)
            handler.send_header("content-length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            handler.wfile.flush()
        except OSError:  # the client went away
            handler.close_connection = True
        return True

    def _route(
        self, method: str, parts: list[str], query: dict[str, str], raw: bytes, handler: BaseHTTPRequestHandler
    ) -> tuple[int, Any]:
        name, rest = parts[0], parts[1:]
        if name == "files":
            if method == "POST" and not rest:
                return self._upload(handler.headers.get("content-type", ""), raw)
            if method == "GET" and rest and rest[0] in self.files:
                if rest[1:] == ["content"]:
                    return 200, self.contents[rest[0]]
                if not rest[1:]:
                    return 200, self.files[rest[0]]
            return _error(404, f"No such File object: {rest[0] if rest else ''}")
        if method == "POST" and not rest:
            return self._create(raw)
        if method == "GET" and not rest:
            return self._list(query)
        batch = self.batches.get(rest[0]) if rest else None
        if batch is None:
            return _error(404, f"No batch found with id '{rest[0] if rest else ''}'.")
        if method == "GET" and len(rest) == 1:
            self._advance(batch)
            return 200, batch.to_json()
        if method == "POST" and rest[1:] == ["cancel"]:
            if batch.status in ("validating", "in_progress", "finalizing"):
                batch.status = "cancelling"
                batch.times["cancelling"] = self._tick()
            return 200, batch.to_json()
        return _error(404, "Unknown request URL")

    # ------------------------------------------------------------------------------------------- files
    def _upload(self, content_type: str, raw: bytes) -> tuple[int, Any]:
        message = BytesParser(policy=policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
        )
        fields: dict[str, tuple[str | None, bytes]] = {}
        if message.is_multipart():
            for part in message.walk():
                name = part.get_param("name", header="content-disposition")
                data = part.get_payload(decode=True)
                if name is not None and isinstance(data, bytes):
                    fields[str(name)] = (part.get_filename(), data)
        if "file" not in fields or fields.get("purpose", (None, b""))[1] != b"batch":
            return _error(400, "A multipart form with a 'file' and purpose 'batch' is required.")
        file_id = f"file-{len(self.files) + 1:06d}"
        self._store(file_id, fields["file"][0] or "upload.jsonl", fields["file"][1], "batch")
        return 200, self.files[file_id]

    def _store(self, file_id: str, filename: str, data: bytes, purpose: str) -> None:
        self.contents[file_id] = data
        self.files[file_id] = {
            "id": file_id, "object": "file", "bytes": len(data), "created_at": self._tick(),
            "filename": filename, "purpose": purpose, "status": "processed",
        }  # fmt: skip

    # ----------------------------------------------------------------------------------------- batches
    def _create(self, raw: bytes) -> tuple[int, Any]:
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict) or body.get("input_file_id") not in self.files:
            return _error(400, f"Invalid input_file_id: {body.get('input_file_id') if isinstance(body, dict) else ''}")
        if body.get("endpoint") not in _CHAT_URLS or body.get("completion_window") != "24h":
            return _error(400, "endpoint must be /v1/chat/completions and completion_window 24h")
        batch_id = f"batch_{len(self.batches) + 1:06d}"
        batch = _Batch(
            batch_id, body["input_file_id"], body["endpoint"], dict(body.get("metadata") or {}), self._tick()
        )
        self.batches[batch_id] = batch
        return 200, batch.to_json()

    def _list(self, query: dict[str, str]) -> tuple[int, Any]:
        newest = list(reversed(self.batches.values()))
        after = query.get("after")
        if after in self.batches:
            newest = newest[[b.id for b in newest].index(after) + 1 :]
        limit = int(query.get("limit") or 20)
        page = newest[:limit]
        return 200, {
            "object": "list", "data": [b.to_json() for b in page], "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None, "has_more": len(newest) > limit,
        }  # fmt: skip

    def _advance(self, batch: _Batch) -> None:
        if batch.status == "validating":
            lines = self._validate(batch)
            batch.status = "failed" if batch.errors else "in_progress"
            batch.times[batch.status] = self._tick()
            batch.total = len(lines)
        elif batch.status == "in_progress":
            expire = self.plan.expire
            self._run(batch, self.plan.partial if expire else 1.0, "batch_expired" if expire else "")
            batch.status = "expired" if expire else "finalizing"
            batch.times[batch.status] = self._tick()
        elif batch.status == "finalizing":
            batch.status = "completed"
            batch.times["completed"] = self._tick()
        elif batch.status == "cancelling":
            self._run(batch, self.plan.partial, "batch_cancelled")
            batch.status = "cancelled"
            batch.times["cancelled"] = self._tick()

    def _validate(self, batch: _Batch) -> list[dict[str, Any]]:
        data = self.contents[batch.input_file_id]
        lines: list[dict[str, Any]] = []
        problems: list[str] = []
        if len(data) > self.plan.max_bytes:
            problems.append(f"the input file is {len(data)} bytes; the limit is {self.plan.max_bytes}")
        seen: set[str] = set()
        for number, text in enumerate(data.splitlines(), start=1):
            try:
                line = json.loads(text)
            except ValueError:
                problems.append(f"line {number} is not JSON")
                continue
            ok = isinstance(line, dict) and isinstance(line.get("body"), dict) and line.get("method") == "POST"
            if not ok or line.get("url") != batch.endpoint or not isinstance(line.get("custom_id"), str):
                problems.append(f"line {number}: needs custom_id, method POST, url {batch.endpoint}, an object body")
            elif line["custom_id"] in seen:
                problems.append(f"line {number}: duplicate custom_id {line['custom_id']}")
            else:
                seen.add(line["custom_id"])
                lines.append(line)
        if len(lines) > self.plan.max_requests:
            problems.append(f"{len(lines)} requests; the limit is {self.plan.max_requests}")
        batch.errors = [{"code": "invalid_request", "message": p, "param": None, "line": None} for p in problems[:10]]
        return lines

    def _run(self, batch: _Batch, share: float, unrun: str) -> None:
        lines = [json.loads(t) for t in self.contents[batch.input_file_id].splitlines() if t.strip()]
        ran = len(lines) if share >= 1.0 else int(len(lines) * share)
        output: list[bytes] = []
        errors: list[bytes] = []
        failing = self.plan.failing(batch.id, len(lines))
        for index, line in enumerate(lines):
            custom_id = line["custom_id"]
            ident = "batch_req_" + hashlib.sha256(f"{batch.id}\0{custom_id}".encode()).hexdigest()[:24]
            if index >= ran:
                message = "This request could not be executed before the batch ended."
                record = {"id": ident, "custom_id": custom_id, "response": None,
                          "error": {"code": unrun, "message": message}}  # fmt: skip
                errors.append(_line(record))
                continue
            if index in failing:
                status, body = self.plan.fail_status, _error(self.plan.fail_status, "The server had an error.")[1]
            else:
                status, body = self._answer(line["body"], batch.id)
            response = {"status_code": status, "request_id": "req_" + ident[10:], "body": body}
            (output if status == 200 else errors).append(
                _line({"id": ident, "custom_id": custom_id, "response": response, "error": None})
            )
        batch.completed, batch.failed = len(output), len(errors)
        for name, chunk in (("output", output), ("error", errors)):
            if chunk:
                file_id = f"file-{len(self.files) + 1:06d}"
                self._store(file_id, f"{batch.id}_{name}.jsonl", b"".join(chunk), f"batch_{name}")
                setattr(batch, f"{name}_file_id", file_id)

    def _answer(self, body: dict[str, Any], batch_id: str) -> tuple[int, Any]:
        """What ``POST /v1/chat/completions`` answers to ``body`` (server internals, reused as they are)."""
        from .server import _ERRORS, FaultPlan, _dumps, _parse_request, _retry_after_text

        owner = self.owner
        raw = _dumps(body).encode()  # the SDK's serialisation: the same bytes a synchronous call sends
        request = _parse_request(body)
        with owner._lock:
            key = (request.doc_id, request.part)
            n = owner._counters.get(key, 0) + 1
            owner._counters[key] = n
            plan = owner._plan or FaultPlan()
            action = plan.action_for(request.doc_id, request.part, n)
            owner._records.append(
                {"doc_id": request.doc_id, "part": request.part, "parts": request.parts, "n": n,
                 "attempt": request.attempt, "action": action, "body": body, "headers": {}, "batch": batch_id}
            )  # fmt: skip
        if action == "reset":  # a dropped connection inside a batch is the provider's server error
            action = "500"
        if action in _ERRORS:
            status, message, kind, code, param = _ERRORS[action]
            text = message.format(
                model=request.model, tokens=128_000 + request.prompt_chars // 4, retry=_retry_after_text(1.0)
            )
            return status, {"error": {"message": text, "type": kind, "param": param, "code": code}}
        completion = owner._completion(request, body, action, hashlib.sha256(raw).hexdigest())
        return 200, json.loads(completion)

    def _tick(self) -> int:
        self._clock += 1
        return _CREATED + self._clock


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return status, {"error": {"message": message, "type": kind, "param": None, "code": None}}
