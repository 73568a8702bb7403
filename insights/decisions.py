"""Review decisions: an analyst's accept, reject and edit of each insight, kept across re-runs.

Machine coding is not published unreviewed. A reviewer (``insights review``, :mod:`insights.review`)
confirms, rejects or corrects each insight; those decisions are data, kept in a file of their own that
no run of ``insights extract`` writes, and applied wherever the output is read (export, report,
evaluate, themes) unless the model's output alone is asked for (``--raw``).

The decisions file
------------------
``OUT.decisions.jsonl`` beside ``OUT.jsonl`` (:func:`decisions_path`), one JSON line per decision,
appended, never rewritten::

    {"insight_id": "ins_…", "decision": "accept" | "reject" | "edit",
     "fields": {…},            # edit only: the changed fields (evidence as located evidence objects)
     "reviewer": "ana", "note": "", "at": "2025-01-31T09:12:03+00:00",
     "anchor": {"document_id": "…", "content_hash": "…", "kind": "barrier",
                "evidence": [[start, end, quote], …]},   # the insight as it was decided
     "supersedes": ["ins_…"]}  # decisions of this reviewer that were carried onto this insight

One writer at a time: :class:`DecisionLog` holds the lock ``OUT.decisions.jsonl.lock``
(:mod:`insights.lock`) while it is open. Each decision is written in one ``write`` and fsynced before
:meth:`DecisionLog.append` returns, so an acknowledged decision survives a kill or a power loss; a line
torn by a kill (never acknowledged) is skipped by readers and cut off by the next writer.
``insights extract`` (``--overwrite`` included) never opens this file.

The latest decision per insight and reviewer wins (file order); earlier ones stay in the file as
history. When several reviewers decided one insight, the output applies the latest of their
decisions (or one reviewer's only, with ``reviewer=``).

Across re-runs (:func:`resolve`)
--------------------------------
A decision applies to the insight of the same ``insight_id`` when the output has it (a cached re-run
gives the same ids, see :mod:`insights.ids`). Otherwise — the document or the answer changed — it is
**carried** to the insight of the same document and kind whose evidence covers the same passage: a
passage overlapping one of the anchor's by at least half of the shorter of the two (by offsets when the
document's content hash is unchanged, by the quotes' folded text when it changed). The best-covering
insight takes it; candidates are taken one to one, newest decision first, and an insight the reviewer
decided directly is never a candidate. A decision that cannot be placed is **stale**, with the reason:
its document is not in the output, no insight of its kind covers its passage, two insights cover it
equally, or it is an edit of the evidence whose document changed (its offsets no longer hold). Stale
decisions are listed (``insights review OUT.jsonl --status``), never applied to something else, never
dropped from the file: a later run that brings their insight back applies them again.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Literal, cast, get_args

from pydantic import ValidationError

from .documents import Document
from .errors import InsightsError, OutputError, OutputWriteError
from .grounding import Grounder, normalize
from .lock import OutputLock
from .output import _sync_folder, read_jsonl, sidecar
from .schema import KINDS, RECORD_TYPES, Evidence

__all__ = [
    "DECISIONS",
    "EDITABLE",
    "Decision",
    "DecisionLog",
    "EditError",
    "Placed",
    "Resolution",
    "Reviewed",
    "Stale",
    "apply_decisions",
    "decisions_path",
    "make_decision",
    "read_decisions",
    "resolve",
    "validate_edit",
]

DecisionKind = Literal["accept", "reject", "edit"]
DECISIONS: tuple[DecisionKind, ...] = get_args(DecisionKind)
#: The fields an edit may change, per kind (``kind`` and ``quotes`` may be changed too).
EDITABLE: dict[str, tuple[str, ...]] = {
    "barrier": ("statement", "category", "level"),
    "enabler": ("statement", "category", "level"),
    "champion": ("statement", "name", "champion_type", "affiliation", "sector", "contribution"),
    "failed_experiment": ("statement", "name", "what_was_tried", "why_it_failed", "lesson"),
}
_ALL_FIELDS = {f for names in EDITABLE.values() for f in names}


class EditError(InsightsError):
    """An edit that cannot be kept: an unknown field, a value the schema refuses, or a quote that is not
    in the document. The message says which."""


def decisions_path(out: str | os.PathLike[str]) -> Path:
    """``out.jsonl`` → ``out.decisions.jsonl``."""
    return sidecar(Path(out), "decisions")


# ------------------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class Anchor:
    """The insight a decision was made on: where its evidence was."""

    document_id: str
    content_hash: str
    kind: str
    evidence: tuple[tuple[int, int, str], ...]

    @classmethod
    def of(cls, line: Mapping[str, Any]) -> Anchor:
        evidence = tuple(
            (int(e.get("start", 0)), int(e.get("end", 0)), str(e.get("quote", "")))
            for e in line.get("evidence") or []
            if isinstance(e, dict)
        )
        return cls(
            str(line.get("document_id", "")), str(line.get("content_hash", "")), str(line.get("kind", "")), evidence
        )


@dataclass(frozen=True)
class Decision:
    """One line of the decisions file (``seq``: its position among the file's valid lines)."""

    insight_id: str
    decision: DecisionKind
    reviewer: str
    at: str
    anchor: Anchor
    fields: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    supersedes: tuple[str, ...] = ()
    seq: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to the file."""
        a = self.anchor
        out: dict[str, Any] = {"insight_id": self.insight_id, "decision": self.decision}
        if self.decision == "edit":
            out["fields"] = self.fields
        out.update(reviewer=self.reviewer, note=self.note, at=self.at)
        out["anchor"] = {
            "document_id": a.document_id,
            "content_hash": a.content_hash,
            "kind": a.kind,
            "evidence": [list(e) for e in a.evidence],
        }
        if self.supersedes:
            out["supersedes"] = list(self.supersedes)
        return out

    @classmethod
    def from_json(cls, value: Mapping[str, Any], seq: int = 0) -> Decision | None:
        """The decision a file line holds, or ``None`` for a line that is not one."""
        anchor = value.get("anchor")
        if (
            not isinstance(value.get("insight_id"), str)
            or value.get("decision") not in DECISIONS
            or not isinstance(value.get("reviewer"), str)
            or not isinstance(anchor, dict)
        ):
            return None
        fields = value.get("fields") if isinstance(value.get("fields"), dict) else {}
        try:
            evidence = tuple((int(s), int(e), str(q)) for s, e, q in anchor.get("evidence") or [])
        except (TypeError, ValueError):
            return None
        return cls(
            insight_id=value["insight_id"],
            decision=value["decision"],
            reviewer=value["reviewer"],
            at=str(value.get("at", "")),
            anchor=Anchor(
                str(anchor.get("document_id", "")),
                str(anchor.get("content_hash", "")),
                str(anchor.get("kind", "")),
                evidence,
            ),
            fields=dict(cast(dict[str, Any], fields)),
            note=str(value.get("note") or ""),
            supersedes=tuple(str(s) for s in value.get("supersedes") or [] if isinstance(s, str)),
            seq=seq,
        )


def make_decision(
    line: Mapping[str, Any],
    decision: str,
    reviewer: str,
    *,
    fields: Mapping[str, Any] | None = None,
    note: str = "",
    supersedes: Iterable[str] = (),
) -> Decision:
    """A decision on output ``line`` (edits: ``fields`` as :func:`validate_edit` returns them).

    Raises:
        EditError: an unknown decision, an empty reviewer name, or an edit without fields.
    """
    if decision not in DECISIONS:
        raise EditError(f"unknown decision {decision!r}: one of {', '.join(DECISIONS)}")
    reviewer = " ".join(str(reviewer).split())
    if not reviewer:
        raise EditError("a decision needs the reviewer's name")
    if decision == "edit" and not fields:
        raise EditError("an edit needs the fields it changes")
    return Decision(
        insight_id=str(line["insight_id"]),
        decision=decision,
        reviewer=reviewer,
        at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        anchor=Anchor.of(line),
        fields=dict(fields or {}) if decision == "edit" else {},
        note=str(note or "").strip(),
        supersedes=tuple(dict.fromkeys(supersedes)),
    )


def read_decisions(path: str | os.PathLike[str]) -> list[Decision]:
    """Every decision of a decisions file, in file order (a missing file has none; a torn or foreign
    line is skipped)."""
    found = (Decision.from_json(v) for v in read_jsonl(path))
    return [Decision(**{**d.__dict__, "seq": i}) for i, d in enumerate(x for x in found if x is not None)]


# -------------------------------------------------------------------------------------------------- edits
def validate_edit(line: Mapping[str, Any], changes: Mapping[str, Any], document: Document) -> dict[str, Any]:
    """Check an edit of output ``line`` and return the fields it changes, ready to store.

    ``changes`` may set ``kind``, the fields of :data:`EDITABLE` for the (new) kind, and ``quotes`` (a
    list of strings). Quotes are located in ``document`` by :class:`~insights.grounding.Grounder`, as the
    model's are: an edit never invents evidence. The result is validated against the record type of the
    kind (:data:`insights.schema.RECORD_TYPES`).

    Returns:
        The changed fields; ``evidence`` (when the quotes changed) as a list of located evidence objects.

    Raises:
        EditError: an unknown field, a value the schema refuses, a quote not in the document, a document
            that changed since the run, or an edit that changes nothing.
    """
    kind = str(changes.get("kind") or line.get("kind"))
    if kind not in KINDS:
        raise EditError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    unknown = sorted(set(changes) - set(EDITABLE[kind]) - {"kind", "quotes"})
    if unknown:
        raise EditError(f"a {kind.replace('_', ' ')} has no editable field {', '.join(map(repr, unknown))}")
    values: dict[str, Any] = {k: line[k] for k in EDITABLE[kind] if k in line}
    values.update({k: v.strip() if isinstance(v, str) else v for k, v in changes.items() if k in EDITABLE[kind]})
    evidence: list[Any] = list(line.get("evidence") or [])
    if "quotes" in changes:
        evidence = _locate(line, changes["quotes"], document)
    try:
        record = RECORD_TYPES[kind].model_validate({**values, "kind": kind, "evidence": evidence})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
        raise EditError(f"the edit does not fit the schema of a {kind.replace('_', ' ')}: {problems}") from None
    dumped = record.model_dump(mode="json")
    fields = {k: dumped[k] for k in EDITABLE[kind] if k in dumped and dumped[k] != line.get(k)}
    if kind != line.get("kind"):
        fields["kind"] = kind
    if "quotes" in changes and _spans(dumped["evidence"]) != _spans(line.get("evidence") or []):
        fields["evidence"] = dumped["evidence"]
    if not fields:
        raise EditError("the edit changes nothing (accept the insight instead)")
    return fields


def _spans(evidence: Iterable[Mapping[str, Any]]) -> list[tuple[int, int]]:
    return [(int(e.get("start", 0)), int(e.get("end", 0))) for e in evidence]


def _locate(line: Mapping[str, Any], quotes: Any, document: Document) -> list[dict[str, Any]]:
    if document.content_hash != line.get("content_hash"):
        raise EditError(
            f"document {document.id} changed since the run (another content hash): its quotes cannot be checked"
        )
    if not isinstance(quotes, list) or not all(isinstance(q, str) for q in quotes):
        raise EditError("quotes must be a list of strings")
    quotes = [" ".join(q.split()) for q in quotes if q.strip()]
    if not quotes:
        raise EditError("an insight needs at least one quote")
    grounder = Grounder(document.text)
    evidence = []
    for quote in quotes:
        hit = grounder.locate(quote)
        if hit is None:
            miss = grounder.miss(quote)
            where = f"; the document reads {miss.passage!r}" if miss.passage else ""
            raise EditError(f"an edit may not invent evidence: the quote {quote!r} {miss.reason}{where}")
        evidence.append(
            Evidence(
                quote=document.text[hit.start : hit.end],
                model_quote=quote,
                start=hit.start,
                end=hit.end,
                match=hit.match,
                score=hit.score,
                section=document.section_at(hit.start),
            ).model_dump(mode="json")
        )
    return evidence


# --------------------------------------------------------------------------------------------- resolving
@dataclass(frozen=True)
class Placed:
    """A decision placed on an insight of the output: its own (``carried`` false) or carried to it."""

    decision: Decision
    target: str
    carried: bool


@dataclass(frozen=True)
class Stale:
    """A decision that could not be placed on any insight of the output, and why."""

    decision: Decision
    reason: str


@dataclass
class Resolution:
    """Where every reviewer's latest decisions land in one output."""

    placed: dict[str, dict[str, Placed]] = field(default_factory=dict)  # insight id -> reviewer -> placed
    stale: list[Stale] = field(default_factory=list)
    superseded: int = 0  # carried decisions a newer decision of the same reviewer replaced

    @property
    def carried(self) -> list[Placed]:
        """The decisions carried to another insight, in file order."""
        found = [p for by in self.placed.values() for p in by.values() if p.carried]
        return sorted(found, key=lambda p: p.decision.seq)

    @property
    def reviewers(self) -> list[str]:
        """Everyone with a placed decision, sorted."""
        return sorted({r for by in self.placed.values() for r in by})

    def effective(self, insight_id: str, reviewer: str | None = None) -> Placed | None:
        """The decision that applies to an insight: the reviewer's, or the latest of everyone's."""
        by = self.placed.get(insight_id) or {}
        if reviewer is not None:
            return by.get(reviewer)
        return max(by.values(), key=lambda p: p.decision.seq, default=None)


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    shared = min(a[1], b[1]) - max(a[0], b[0])
    return shared if shared > 0 and shared >= 0.5 * min(a[1] - a[0], b[1] - b[0]) else 0


def _text_overlap(a: str, b: str) -> int:
    a, b = normalize(a), normalize(b)
    if not a or not b:
        return 0
    shared = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b)).size
    return shared if shared >= 0.5 * min(len(a), len(b)) else 0


def cover(anchor: Anchor, line: Mapping[str, Any]) -> float:
    """The share of the anchor's passages that ``line``'s evidence covers, 0 to 1 (0: none of them)."""
    evidence = [e for e in line.get("evidence") or [] if isinstance(e, dict)]
    same_text = anchor.content_hash == line.get("content_hash")
    total = 0.0
    for start, end, quote in anchor.evidence:
        if same_text:
            best = max((_overlap((start, end), (int(e["start"]), int(e["end"]))) for e in evidence), default=0)
            total += min(1.0, best / max(1, end - start))
        else:
            best = max((_text_overlap(quote, str(e.get("quote", ""))) for e in evidence), default=0)
            total += min(1.0, best / max(1, len(normalize(quote))))
    return total / max(1, len(anchor.evidence))


def resolve(lines: Sequence[Mapping[str, Any]], decisions: Sequence[Decision]) -> Resolution:
    """Place every reviewer's latest decisions on the insights of ``lines`` (see the module docstring)."""
    by_id = {str(x.get("insight_id")): x for x in lines if x.get("insight_id")}
    by_doc_kind: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for x in by_id.values():
        by_doc_kind.setdefault((str(x.get("document_id")), str(x.get("kind"))), []).append(x)
    documents = {str(x.get("document_id")) for x in by_id.values()}
    result = Resolution()
    reviewers: dict[str, dict[str, Decision]] = {}
    for d in decisions:
        reviewers.setdefault(d.reviewer, {})[d.insight_id] = d  # later lines win
    for reviewer, latest in reviewers.items():
        replaced = {s for d in latest.values() for s in d.supersedes if latest.get(s, d).seq < d.seq}
        direct = {i for i in latest if i in by_id}
        for i in direct:
            result.placed.setdefault(i, {})[reviewer] = Placed(latest[i], i, carried=False)
        taken = set(direct)
        pending = sorted((d for i, d in latest.items() if i not in by_id), key=lambda d: -d.seq)
        for d in pending:
            if d.insight_id in replaced:
                result.superseded += 1
                continue
            target, reason = _place(d, by_doc_kind, documents, taken, by_id)
            if target is None:
                result.stale.append(Stale(d, reason))
            else:
                taken.add(target)
                result.placed.setdefault(target, {})[reviewer] = Placed(d, target, carried=True)
    result.stale.sort(key=lambda s: s.decision.seq)
    return result


def _place(
    d: Decision,
    by_doc_kind: dict[tuple[str, str], list[Mapping[str, Any]]],
    documents: set[str],
    taken: set[str],
    by_id: dict[str, Mapping[str, Any]],
) -> tuple[str | None, str]:
    """``(the insight id to carry the decision to, "")``, or ``(None, why it is stale)``."""
    a = d.anchor
    if a.document_id not in documents:
        return None, f"document {a.document_id} is not in this output"
    scored = sorted(
        ((cover(a, x), str(x["insight_id"])) for x in by_doc_kind.get((a.document_id, a.kind), [])),
        key=lambda t: (-t[0], t[1]),
    )
    scored = [(s, i) for s, i in scored if s > 0]
    free = [(s, i) for s, i in scored if i not in taken]
    if not free:
        if scored:
            return (
                None,
                f"its passage is covered by {scored[0][1]}, which has a newer or direct decision of this reviewer",
            )
        return None, f"no {a.kind.replace('_', ' ')} of document {a.document_id} covers its passage any more"
    if len(free) > 1 and abs(free[0][0] - free[1][0]) < 1e-9:
        return None, f"two insights cover its passage equally ({free[0][1]}, {free[1][1]})"
    target = free[0][1]
    if d.decision == "edit" and "evidence" in d.fields and by_id[target].get("content_hash") != a.content_hash:
        return None, f"an edit of its evidence, and document {a.document_id} changed since (the offsets no longer hold)"
    return target, ""


# ---------------------------------------------------------------------------------------------- applying
@dataclass
class Reviewed:
    """Output lines with the decisions applied (see :func:`apply_decisions`)."""

    lines: list[dict[str, Any]]
    left_out: list[dict[str, Any]]
    resolution: Resolution

    def counts(self) -> Counter[str]:
        """``accept``, ``edit``, ``reject`` (left out), ``carried`` and ``stale`` decisions applied."""
        c = Counter[str]()
        for line in [*self.lines, *self.left_out]:
            review = line.get("review")
            if review:
                c[review["decision"]] += 1
                c["carried"] += bool(review.get("carried"))
        c["stale"] = len(self.resolution.stale)
        return c

    def summary(self) -> str:
        """One sentence: what the decisions changed (empty when there are none)."""
        c = self.counts()
        if not (c["accept"] or c["edit"] or c["reject"] or c["stale"]):
            return ""
        text = (
            f"review applied: {c['reject']} insight(s) rejected in review and left out, {c['edit']} edited, "
            f"{c['accept']} accepted"
        )
        if c["carried"]:
            text += f" ({c['carried']} decision(s) carried from an earlier run)"
        if c["stale"]:
            text += f"; {c['stale']} stale decision(s) could not be placed (insights review OUT.jsonl --status)"
        return text


def apply_edit(line: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """``line`` with an edit's fields in place (a change of kind drops the old kind's own fields)."""
    out = dict(line)
    kind = str(fields.get("kind") or line.get("kind"))
    if kind != line.get("kind"):
        for name in _ALL_FIELDS - set(EDITABLE.get(kind, ())) - {"statement"}:
            out.pop(name, None)
    out.update(fields)
    return out


def apply_decisions(
    lines: Iterable[Mapping[str, Any]], decisions: Sequence[Decision], *, reviewer: str | None = None
) -> Reviewed:
    """Apply review decisions to output lines: what export, report, evaluate and themes read.

    Rejected insights are left out (:attr:`Reviewed.left_out`), edited ones carry the edited fields, and
    every decided line gets a ``review`` object: ``{"decision": "accept" | "edit" | "reject", "reviewer",
    "at", "note", "carried": bool, "from": the insight id decided, when carried}``. Its ``insight_id``
    stays the model's, so lines still join with the raw output and the decisions.

    Args:
        lines: the lines of ``OUT.jsonl`` (dicts with ``insight_id``).
        decisions: :func:`read_decisions` of the decisions file.
        reviewer: apply only this reviewer's decisions (default: the latest decision of anyone).
    """
    copies = [dict(x) for x in lines]
    resolution = resolve(copies, decisions)
    kept, left_out = [], []
    for line in copies:
        placed = resolution.effective(str(line.get("insight_id", "")), reviewer)
        if placed is None:
            kept.append(line)
            continue
        d = placed.decision
        review = {"decision": d.decision, "reviewer": d.reviewer, "at": d.at, "note": d.note, "carried": placed.carried}
        if placed.carried:
            review["from"] = d.insight_id
        if d.decision == "reject":
            left_out.append({**line, "review": review})
        elif d.decision == "edit":
            kept.append({**apply_edit(line, d.fields), "review": review})
        else:
            kept.append({**line, "review": review})
    return Reviewed(kept, left_out, resolution)


def reviewed_lines(
    out: str | os.PathLike[str],
    lines: Iterable[Mapping[str, Any]],
    *,
    raw: bool = False,
    decisions: str | os.PathLike[str] | None = None,
    reviewer: str | None = None,
) -> Reviewed:
    """:func:`apply_decisions` with the decisions file of ``out`` (or ``decisions``); ``raw``: none."""
    found = [] if raw else read_decisions(decisions or decisions_path(out))
    return apply_decisions(lines, found, reviewer=reviewer)


# ------------------------------------------------------------------------------------------------ writing
class DecisionLog:
    """The one writer of a decisions file (see the module docstring). ``open``, ``append``, ``close``, or
    ``with``. Thread-safe: appends from several threads are written one after the other.

    Attributes:
        repaired: whether opening cut off a torn last line (a write interrupted by a kill).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = OutputLock(self.path)
        self._fd: int | None = None
        self._mutex = threading.Lock()
        self.repaired = False

    def open(self) -> DecisionLog:
        """Take the lock and open the file for appending (cutting a torn last line).

        Raises:
            OutputError: another process holds the file (the message names it), or it cannot be opened.
        """
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            self._lock.release()
            raise OutputError(f"{self.path}: cannot open: {exc.strerror or exc}") from exc
        try:
            size = os.fstat(fd).st_size
            if size:
                data = self.path.read_bytes()
                cut = data.rfind(b"\n") + 1
                if cut < size:
                    os.ftruncate(fd, cut)
                    os.fsync(fd)
                    self.repaired = True
            if created:
                _sync_folder(self.path.parent)
        except OSError as exc:
            os.close(fd)
            self._lock.release()
            raise OutputError(f"{self.path}: cannot repair: {exc.strerror or exc}") from exc
        self._fd = fd
        return self

    def append(self, decision: Decision) -> None:
        """Write one decision and fsync; when this returns, the decision is on disk.

        Raises:
            OutputWriteError: the disk refused (the file is cut back to where it was).
        """
        data = (json.dumps(decision.to_json(), ensure_ascii=False) + "\n").encode("utf-8")
        with self._mutex:
            if self._fd is None:
                raise OutputError(f"{self.path}: open the decision log before appending")
            start = os.lseek(self._fd, 0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
                os.fsync(self._fd)
            except OSError as exc:
                try:
                    os.ftruncate(self._fd, start)
                except OSError:
                    pass
                raise OutputWriteError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        """Close the file and release the lock (safe to call twice)."""
        with self._mutex:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        self._lock.release()

    def __enter__(self) -> DecisionLog:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
