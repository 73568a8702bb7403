"""``insights review``: a local web page where an analyst accepts, rejects or edits each insight.

:class:`ReviewSession` holds a run (read as the report reads it: :func:`insights.report.build_report`,
whole texts) and its decisions; :meth:`ReviewSession.decide` checks a decision (an edit against the
schema, its quotes located in the document) and appends it durably to ``OUT.decisions.jsonl``
(:mod:`insights.decisions`) before it returns. :func:`create_app` puts a Starlette app (the ``review``
extra) in front of it and :class:`ReviewServer` serves it with uvicorn.

The page (``templates/review.html``, ``static/review.js``; the document text with its evidence is drawn
by ``static/highlight.js``, shared with the report) shows one insight at a time beside its document, or a
filtered list; ``a`` accepts, ``r`` rejects, ``e`` edits, ``j``/``k`` (or the arrows) move on and back.

HTTP interface (JSON)::

    GET  /                          the page (the session token is in <meta name="review-token">)
    GET  /static/<asset>            highlight.js, review.js, report.css, review.css
    GET  /api/state?reviewer=NAME   {"title", "schema", "docs", "insights", "progress", "stale", ...}
    GET  /api/doc/<n>?reviewer=NAME {"parts", "marks", "chars"} of document n (insights.report.mark_text)
    POST /api/decision              {"insight_id", "decision", "reviewer", "note", "fields"}, header
                                    X-Review-Token → {"insight", "progress"}; 422 {"error"} when refused

Local only: the server binds a loopback address (127.0.0.1 by default; others are refused). Every request
must name this server in ``Host`` (no DNS rebinding); a request whose ``Origin`` is another origin, or
whose ``Sec-Fetch-Site`` is not same-origin, is refused with 403, and so is a POST without the token
of this session, which only the page knows. Pages cannot be framed (``X-Frame-Options: DENY``) and the
page's Content-Security-Policy allows its own scripts only.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
import socket
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from ._optional import require
from .decisions import (
    EDITABLE,
    Decision,
    DecisionLog,
    EditError,
    Resolution,
    apply_edit,
    decisions_path,
    make_decision,
    read_decisions,
    resolve,
    validate_edit,
)
from .errors import ConfigError
from .report import build_report, mark_text
from .schema import KINDS, RECORD_TYPES

__all__ = ["ReviewServer", "ReviewSession", "create_app", "edit_schema", "status_text"]

ASSETS = {
    "highlight.js": "text/javascript",
    "review.js": "text/javascript",
    "report.css": "text/css",
    "review.css": "text/css",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PURPOSE = "insights review"


def edit_schema() -> dict[str, list[dict[str, Any]]]:
    """The edit form of each kind: ``[{"name", "choices": [...] | null, "required"}]`` from the records'
    JSON Schema, so the form offers exactly what validation accepts."""
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        schema = RECORD_TYPES[kind].model_json_schema()
        props, required = schema["properties"], set(schema.get("required", []))
        fields = []
        for name in EDITABLE[kind]:
            prop = props[name]
            ref = prop.get("$ref", "")
            enum = prop.get("enum") or (schema.get("$defs", {}).get(ref.rsplit("/", 1)[-1], {}).get("enum"))
            fields.append({"name": name, "choices": enum, "required": name in required})
        out[kind] = fields
    return out


class ReviewSession:
    """A run under review: its insights, documents and decisions; the one writer of its decisions file.

    Args:
        out: the run's ``OUT.jsonl``.
        paths: where the documents are (default: the paths recorded in the run's ledger).
        decisions: the decisions file (default ``OUT.decisions.jsonl``).
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        paths: Sequence[str | os.PathLike[str]] = (),
        *,
        decisions: str | os.PathLike[str] | None = None,
    ) -> None:
        self.out = Path(out)
        self.decisions_path = Path(decisions) if decisions else decisions_path(out)
        self.report = build_report(self.out, paths, full_text=True, raw=True)
        self.docs = self.report.documents
        self.lines: list[dict[str, Any]] = []
        self.doc_of: list[int] = []
        self.first: list[int] = []  # position of each document's first insight
        for d, doc in enumerate(self.docs):
            self.first.append(len(self.lines))
            doc.insights = [x for x in doc.insights if isinstance(x.get("insight_id"), str) and x["insight_id"]]
            self.lines.extend(doc.insights)
            self.doc_of.extend([d] * len(doc.insights))
        self.position = {x["insight_id"]: i for i, x in enumerate(self.lines)}
        self.decisions: list[Decision] = read_decisions(self.decisions_path)
        self.resolution: Resolution = resolve(self.lines, self.decisions)
        self.log = DecisionLog(self.decisions_path)
        self._mutex = threading.Lock()

    def open(self) -> ReviewSession:
        """Take the decisions file (one writer at a time; see :class:`~insights.decisions.DecisionLog`)."""
        self.log.open()
        self.decisions = read_decisions(self.decisions_path)  # as the lock holder sees it
        self.resolution = resolve(self.lines, self.decisions)
        return self

    def close(self) -> None:
        self.log.close()

    def __enter__(self) -> ReviewSession:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------- deciding
    def decide(
        self, insight_id: str, decision: str, reviewer: str, *, fields: dict[str, Any] | None = None, note: str = ""
    ) -> Decision:
        """Check a decision and append it to the decisions file (fsynced) before returning it.

        ``fields`` (edits) are the new values, as the edit form sends them (``quotes``: a list of
        strings); only those that differ from the model's output are stored.

        Raises:
            EditError: no such insight, an unknown decision, no reviewer, or an edit that does not fit
                the schema or quotes what the document does not say.
            OutputWriteError: the disk refused (nothing was recorded).
        """
        with self._mutex:
            if insight_id not in self.position:
                raise EditError(f"no insight {insight_id!r} in {self.out.name}")
            i = self.position[insight_id]
            line, doc = self.lines[i], self.docs[self.doc_of[i]]
            stored = None
            if decision == "edit":
                if doc.document is None:
                    raise EditError(
                        f"the text of document {doc.id} is not available ({doc.status}): give its "
                        "PATH to insights review to edit its insights"
                    )
                stored = validate_edit(line, fields or {}, doc.document)
            reviewer = " ".join(str(reviewer).split())
            carried = [
                p.decision.insight_id
                for p in (self.resolution.placed.get(insight_id) or {}).values()
                if p.carried and p.decision.reviewer == reviewer
            ]
            made = make_decision(line, decision, reviewer, fields=stored, note=note, supersedes=carried)
            self.log.append(made)
            made = replace(made, seq=len(self.decisions))
            self.decisions.append(made)
            self.resolution = resolve(self.lines, self.decisions)
            return made

    # ------------------------------------------------------------------------------------------- views
    def entry(self, i: int, reviewer: str) -> dict[str, Any]:
        """One insight as the page shows it: the reviewer's edit applied, with the model's fields beside."""
        line = self.lines[i]
        placed = self.resolution.effective(line["insight_id"], reviewer)
        shown = apply_edit(line, placed.decision.fields) if placed and placed.decision.decision == "edit" else line
        kind = str(shown["kind"])
        others = sum(1 for r in self.resolution.placed.get(line["insight_id"], {}) if r != reviewer)
        review = None
        if placed is not None:
            d = placed.decision
            review = {
                "decision": d.decision,
                "note": d.note,
                "at": d.at,
                "carried": placed.carried,
                "from": d.insight_id if placed.carried else None,
            }
        return {
            "id": line["insight_id"],
            "d": self.doc_of[i],
            "k": kind,
            "s": shown.get("statement", ""),
            "f": {k: shown.get(k, "") for k in EDITABLE[kind]},
            "model": {
                "k": line["kind"],
                **{k: line.get(k, "") for k in EDITABLE[str(line["kind"])]},
                "quotes": [e.get("quote", "") for e in line.get("evidence") or []],
            },
            "e": [
                [e.get(k, "") for k in ("start", "end", "match", "score", "section", "quote")]
                for e in shown.get("evidence") or []
            ],
            "r": review,
            "others": others,
        }

    def progress(self, reviewer: str) -> dict[str, Any]:
        """Reviewed / total, by kind, and this reviewer's decisions by type (carried and stale counted)."""
        total = Counter(str(x["kind"]) for x in self.lines)
        done, decided = Counter[str](), Counter[str]()
        for x in self.lines:
            placed = self.resolution.effective(x["insight_id"], reviewer)
            if placed is not None:
                done[str(x["kind"])] += 1
                decided[placed.decision.decision] += 1
                decided["carried"] += placed.carried
        return {
            "reviewed": sum(done.values()),
            "total": len(self.lines),
            "by_kind": {k: [done[k], total[k]] for k in KINDS if total[k]},
            "accept": decided["accept"],
            "reject": decided["reject"],
            "edit": decided["edit"],
            "carried": decided["carried"],
            "stale": sum(1 for s in self.resolution.stale if s.decision.reviewer == reviewer),
        }

    def state(self, reviewer: str) -> dict[str, Any]:
        """Everything the page needs to start (documents' texts come one at a time: :meth:`doc_payload`)."""
        return {
            "title": self.report.title,
            "output": self.out.name,
            "decisions": self.decisions_path.name,
            "schema": edit_schema(),
            "kinds": list(KINDS),
            "docs": [{"id": d.id, "title": d.title, "status": d.status} for d in self.docs],
            "insights": [self.entry(i, reviewer) for i in range(len(self.lines))],
            "progress": self.progress(reviewer),
            "stale": [
                {"insight_id": s.decision.insight_id, "decision": s.decision.decision, "reason": s.reason}
                for s in self.resolution.stale
                if s.decision.reviewer == reviewer
            ],
        }

    def doc_payload(self, d: int, reviewer: str) -> dict[str, Any]:
        """Document ``d``'s whole text and the marks of its insights' evidence as the reviewer sees them."""
        doc = self.docs[d]
        if doc.document is None:
            return {"parts": [], "marks": [], "chars": 0, "status": doc.status}
        first = self.first[d]
        evidence = [self._evidence(first + i, reviewer) for i in range(len(doc.insights))]
        payload = mark_text(doc.document.text, evidence, first, full_text=True)
        return {**payload, "chars": len(doc.document.text), "status": doc.status}

    def _evidence(self, i: int, reviewer: str) -> list[Any]:
        line = self.lines[i]
        placed = self.resolution.effective(line["insight_id"], reviewer)
        if placed and placed.decision.decision == "edit" and "evidence" in placed.decision.fields:
            return list(placed.decision.fields["evidence"])
        return list(line.get("evidence") or [])


def status_text(session: ReviewSession, reviewer: str | None = None) -> str:
    """What ``insights review OUT.jsonl --status`` prints: progress, and every carried and stale decision."""
    r = session.resolution
    out = [
        f"{session.out}: {len(session.lines)} insights in {len(session.docs)} documents; "
        f"{session.decisions_path.name}: {len(session.decisions)} decisions by "
        f"{len({d.reviewer for d in session.decisions})} reviewer(s)"
    ]
    for name in [reviewer] if reviewer else r.reviewers or []:
        p = session.progress(name)
        kinds = ", ".join(f"{k.replace('_', ' ')} {a}/{b}" for k, (a, b) in p["by_kind"].items())
        out.append(
            f"{name}: reviewed {p['reviewed']} / {p['total']} ({kinds}): {p['accept']} accepted, "
            f"{p['reject']} rejected, {p['edit']} edited; {p['carried']} carried, {p['stale']} stale"
        )
    carried = [c for c in r.carried if reviewer in (None, c.decision.reviewer)]
    stale = [s for s in r.stale if reviewer in (None, s.decision.reviewer)]
    out.append(f"carried ({len(carried)}):")
    out += [
        f"  {c.decision.insight_id} -> {c.target}  {c.decision.decision} by {c.decision.reviewer} "
        f"({c.decision.anchor.kind} in {c.decision.anchor.document_id})"
        for c in carried
    ]
    out.append(f"stale ({len(stale)}):")
    out += [
        f"  {s.decision.insight_id}  {s.decision.decision} by {s.decision.reviewer} "
        f"({s.decision.anchor.kind} in {s.decision.anchor.document_id}): {s.reason}"
        for s in stale
    ]
    if r.superseded:
        out.append(f"({r.superseded} carried decision(s) replaced by a newer decision of the same reviewer)")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- the app
def _asset(name: str) -> str:
    return resources.files("insights").joinpath("static", name).read_text(encoding="utf-8")


def create_app(session: ReviewSession, *, token: str, hosts: Sequence[str], reviewer: str = "") -> Any:
    """The Starlette app of a review session.

    Args:
        session: the (opened) session.
        token: the secret a POST must carry in ``X-Review-Token``.
        hosts: the ``Host`` values that name this server (e.g. ``127.0.0.1:8765``, ``localhost:8765``).
        reviewer: the name the page starts with.
    """
    require("starlette", "review", purpose=PURPOSE)
    jinja2 = require("jinja2", "review", purpose=PURPOSE)
    applications = require("starlette.applications", "review", purpose=PURPOSE)
    responses = require("starlette.responses", "review", purpose=PURPOSE)
    routing = require("starlette.routing", "review", purpose=PURPOSE)
    concurrency = require("starlette.concurrency", "review", purpose=PURPOSE)
    env = jinja2.Environment(loader=jinja2.PackageLoader("insights", "templates"), autoescape=True)
    page = env.get_template("review.html")
    headers = {
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
    }
    allowed_hosts = set(hosts)
    refused = Counter[str]()

    def refusal(request: Any, *, post: bool = False) -> Any:
        why = None
        host = request.headers.get("host", "")
        origin = request.headers.get("origin")
        fetch_site = request.headers.get("sec-fetch-site")
        if host not in allowed_hosts:
            why = f"this server answers to {sorted(allowed_hosts)[0]} only"
        elif origin is not None and origin != f"http://{host}":
            why = "cross-origin request refused"
        elif fetch_site is not None and fetch_site not in ("same-origin", "none"):
            why = "cross-site request refused"
        elif post and not hmac.compare_digest(request.headers.get("x-review-token", ""), token):
            why = "missing or wrong session token (reload the page)"
        if why is None:
            return None
        refused[why] += 1
        return responses.JSONResponse({"error": why}, status_code=403, headers=headers)

    def who(request: Any) -> str:
        return " ".join(str(request.query_params.get("reviewer", "")).split())

    async def index(request: Any) -> Any:
        if (no := refusal(request)) is not None:
            return no
        html = page.render(title=session.report.title, token=token, reviewer=reviewer, output=session.out.name)
        return responses.HTMLResponse(html, headers={**headers, "Content-Security-Policy": CSP})

    async def static(request: Any) -> Any:
        if (no := refusal(request)) is not None:
            return no
        name = request.path_params["name"]
        if name not in ASSETS:
            return responses.JSONResponse({"error": "not found"}, status_code=404, headers=headers)
        return responses.Response(_asset(name), media_type=ASSETS[name], headers=headers)

    async def state(request: Any) -> Any:
        if (no := refusal(request)) is not None:
            return no
        data = await concurrency.run_in_threadpool(session.state, who(request))
        return responses.JSONResponse(data, headers=headers)

    async def doc(request: Any) -> Any:
        if (no := refusal(request)) is not None:
            return no
        d = request.path_params["d"]
        if not 0 <= d < len(session.docs):
            return responses.JSONResponse({"error": "no such document"}, status_code=404, headers=headers)
        data = await concurrency.run_in_threadpool(session.doc_payload, d, who(request))
        return responses.JSONResponse(data, headers=headers)

    async def decision(request: Any) -> Any:
        if (no := refusal(request, post=True)) is not None:
            return no
        try:
            body = json.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            return responses.JSONResponse({"error": "the body must be a JSON object"}, status_code=400, headers=headers)
        fields = body.get("fields") if isinstance(body.get("fields"), dict) else None

        def decide() -> dict[str, Any]:
            made = session.decide(
                str(body.get("insight_id", "")),
                str(body.get("decision", "")),
                str(body.get("reviewer", "")),
                fields=fields,
                note=str(body.get("note") or ""),
            )
            i = session.position[made.insight_id]
            return {"insight": session.entry(i, made.reviewer), "progress": session.progress(made.reviewer)}

        try:
            data = await concurrency.run_in_threadpool(decide)
        except EditError as exc:
            return responses.JSONResponse({"error": str(exc)}, status_code=422, headers=headers)
        return responses.JSONResponse(data, headers=headers)

    routes = [
        routing.Route("/", index),
        routing.Route("/static/{name}", static),
        routing.Route("/api/state", state),
        routing.Route("/api/doc/{d:int}", doc),
        routing.Route("/api/decision", decision, methods=["POST"]),
    ]
    app = applications.Starlette(routes=routes)
    app.state.refused = refused
    return app


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ReviewServer:
    """Serves a review session on loopback with uvicorn, in a thread (``start``/``stop``, or ``with``).

    The socket is bound and listening before :meth:`start` returns, so :attr:`url` can be opened at once.

    Args:
        session: the session (opened by :meth:`start` if it is not yet).
        host: a loopback address (default 127.0.0.1); anything else is refused.
        port: the port (0: any free one).
        reviewer: the name the page starts with.
    """

    def __init__(self, session: ReviewSession, host: str = "127.0.0.1", port: int = 0, *, reviewer: str = "") -> None:
        if not _loopback(host):
            raise ConfigError(f"insights review serves on loopback only (127.0.0.1, ::1, localhost), not {host!r}")
        self.session = session
        self.token = secrets.token_urlsafe(24)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        names = {shown, "localhost", "127.0.0.1"} if host in ("127.0.0.1", "localhost") else {shown}
        self.app = create_app(
            session, token=self.token, hosts=[f"{n}:{self.port}" for n in sorted(names)], reviewer=reviewer
        )
        uvicorn = require("uvicorn", "review", purpose=PURPOSE)
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C)."""
        self.session.open()
        try:
            self._server.run(sockets=[self.sock])
        finally:
            self.session.close()
            self.sock.close()

    def start(self) -> ReviewServer:
        """Serve in a background thread."""
        self.session.open()
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the decisions file."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
        self.session.close()
        self.sock.close()

    def __enter__(self) -> ReviewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
