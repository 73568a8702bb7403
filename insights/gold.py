"""Reviewed insights back into evaluation: gold annotations, and agreement between reviewers.

``insights review OUT.jsonl --export-gold DIR`` (:func:`export_gold`) writes one reference annotation per
document **every insight of which has a review decision**, in the format of ``evals/`` (see
``evals/README.md``): ``DIR/<document_id>.json`` holding ``{"document_id", "annotator", "notes",
"extraction": {"barriers", "enablers", "champions", "failed_experiments"}}`` with the accepted and edited
insights (edited fields used; rejected ones left out) as the drafts the model fills in: statement,
1 to 3 ``quotes`` and the kind's fields. A quote is the located passage ``Document.text[start:end]``
(the first line of it at least 12 characters long, when the passage runs over several lines), so it is
verbatim in the document. Partly reviewed documents are not written (a gold annotation must be
complete, or every insight not yet reviewed would count against the next model); they are listed.
Each file is checked by :func:`check_annotation` (the rules of ``tests/test_annotations.py``) before it
is written. ``insights evaluate RUN.jsonl DOCS --annotations DIR`` then scores any run against them.

:func:`agreement` gives, for every two reviewers of the same insights, Cohen's kappa on keeping
(accept or edit) against rejecting, and on the final category of the barriers and enablers both kept.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .decisions import EDITABLE, Decision, Reviewed, apply_decisions, resolve
from .documents import Document
from .errors import OutputError
from .evaluate import cohen_kappa as evaluate_kappa
from .output import write_atomically
from .schema import DRAFT_FIELDS, KINDS, Extraction

__all__ = ["Agreement", "GoldResult", "agreement", "check_annotation", "cohen_kappa", "export_gold", "gold_item"]

MAX_QUOTES, MIN_QUOTE = 3, 12


# ------------------------------------------------------------------------------------------------- gold
@dataclass
class GoldResult:
    """What :func:`export_gold` wrote and what it left out, and why."""

    written: list[Path] = field(default_factory=list)
    items: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (document id, reason)


def _quotes(line: Mapping[str, Any], text: str) -> list[str]:
    quotes: list[str] = []
    for e in line.get("evidence") or []:
        start, end = int(e.get("start", 0)), int(e.get("end", 0))
        passage = text[start:end] if 0 <= start <= end <= len(text) else ""
        piece = next((p.strip() for p in passage.split("\n") if len(p.strip()) >= MIN_QUOTE), "")
        if piece and piece not in quotes:
            quotes.append(piece)
    return quotes[:MAX_QUOTES]


def gold_item(line: Mapping[str, Any], text: str) -> dict[str, Any] | None:
    """The draft of one reviewed output line (``None``: none of its passages makes a quote)."""
    quotes = _quotes(line, text)
    if not quotes:
        return None
    fields = {k: line[k] for k in EDITABLE[str(line["kind"])] if k in line}
    return {**fields, "quotes": quotes}


def check_annotation(data: Mapping[str, Any], document: Document) -> list[str]:
    """What is wrong with an annotation of ``document`` (empty: nothing), by the rules the reference
    annotations are held to (``tests/test_annotations.py``)."""
    problems = []
    try:
        extraction = Extraction.model_validate(data.get("extraction"))
    except ValidationError as exc:
        return [f"the extraction does not fit the schema: {exc.errors()[0]['msg']}"]
    if set(data.get("extraction") or {}) != set(DRAFT_FIELDS.values()):
        problems.append("the extraction must have exactly barriers, enablers, champions and failed_experiments")
    if data.get("document_id") != document.id:
        problems.append(f"document_id {data.get('document_id')!r} is not the document's id {document.id!r}")
    if not str(data.get("notes") or "").strip() or not str(data.get("annotator") or "").strip():
        problems.append("notes and annotator must be given")
    items = [*extraction.barriers, *extraction.enablers, *extraction.champions, *extraction.failed_experiments]
    for item in items:
        if not 1 <= len(item.quotes) <= MAX_QUOTES or not item.statement.strip():
            problems.append(f"{item.statement!r}: needs a statement and 1 to {MAX_QUOTES} quotes")
        for quote in item.quotes:
            if quote not in document.text or "\n" in quote or len(quote) < MIN_QUOTE:
                problems.append(f"quote {quote!r} is not one verbatim line of {MIN_QUOTE}+ characters")
    return problems


def export_gold(
    out: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    decisions: Sequence[Decision],
    paths: Sequence[str | os.PathLike[str]] = (),
    *,
    reviewer: str | None = None,
) -> GoldResult:
    """Write the fully reviewed documents of run ``out`` as reference annotations into ``dest``.

    Args:
        out: the run's ``OUT.jsonl``.
        dest: the folder to write ``<document_id>.json`` files into (created; other files are left alone).
        decisions: the review decisions (:func:`insights.decisions.read_decisions`).
        paths: where the documents are (default: the paths recorded in the run's ledger).
        reviewer: only this reviewer's decisions (default: the latest decision of anyone).

    Raises:
        OutputError: ``out`` cannot be read or ``dest`` cannot be written.
    """
    from .report import build_report  # the run and its documents' texts, read as the report reads them

    report = build_report(out, paths, raw=True)
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{dest}: cannot create: {exc}") from exc
    result = GoldResult()
    everything = apply_decisions([x for d in report.documents for x in d.insights], decisions, reviewer=reviewer)
    kept: dict[str, list[dict[str, Any]]] = {}
    left_out: dict[str, list[dict[str, Any]]] = {}
    for x in everything.lines:
        kept.setdefault(str(x["document_id"]), []).append(x)
    for x in everything.left_out:
        left_out.setdefault(str(x["document_id"]), []).append(x)
    for doc in report.documents:
        decided = Reviewed(kept.get(doc.id, []), left_out.get(doc.id, []), everything.resolution)
        undecided = sum(1 for x in [*decided.lines, *decided.left_out] if not x.get("review"))
        if not doc.insights or undecided:
            if doc.insights and undecided < len(doc.insights):
                result.skipped.append((doc.id, f"{undecided} of {len(doc.insights)} insights not reviewed yet"))
            continue
        if doc.document is None:
            result.skipped.append((doc.id, f"its text was not found or changed since the run ({doc.status})"))
            continue
        if "/" in doc.id or "\\" in doc.id or doc.id.startswith("."):
            result.skipped.append((doc.id, "its id is not a file name (annotation files are named by the id)"))
            continue
        extraction: dict[str, list[dict[str, Any]]] = {DRAFT_FIELDS[k]: [] for k in KINDS}
        for line in decided.lines:
            item = gold_item(line, doc.document.text)
            if item is None:
                result.skipped.append((doc.id, f"insight {line.get('insight_id')}: no passage makes a quote"))
                continue
            extraction[DRAFT_FIELDS[line["kind"]]].append(item)
        counts = decided.counts()
        who = reviewer or ", ".join(sorted({str(x["review"]["reviewer"]) for x in [*decided.lines, *decided.left_out]}))
        data = {
            "document_id": doc.id,
            "annotator": f"review by {who} (insights review of {Path(out).name})",
            "notes": f"Exported by insights review --export-gold: {counts['accept']} accepted and {counts['edit']} "
            f"edited insights of the model's output; {counts['reject']} rejected in review and left out.",
            "source": {"output": Path(out).name, "models": report.models, "prompt_versions": report.prompt_versions},
            "extraction": extraction,
        }
        problems = check_annotation(data, doc.document)
        if problems:
            result.skipped.append((doc.id, "; ".join(problems)))
            continue
        result.written.append(_write_json(dest / f"{doc.id}.json", data))
        result.items += sum(len(v) for v in extraction.values())
    return result


def _write_json(path: Path, data: Mapping[str, Any]) -> Path:
    write_atomically(path, (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    return path


# -------------------------------------------------------------------------------------------- agreement
def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters' labels of the same items, as :func:`insights.evaluate.cohen_kappa` computes
    it (``None``: no items, or chance agreement is certain because both gave every item one label)."""
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    return evaluate_kappa(list(zip(a, b, strict=True)))


@dataclass(frozen=True)
class Agreement:
    """Two reviewers' agreement over the insights both decided."""

    reviewers: tuple[str, str]
    n: int  # insights both decided
    same: int  # both kept (accept or edit) or both rejected
    kappa: float | None
    n_category: int  # barriers and enablers both kept
    same_category: int
    kappa_category: float | None


def agreement(lines: Iterable[Mapping[str, Any]], decisions: Sequence[Decision]) -> list[Agreement]:
    """Cohen's kappa for every two reviewers (keep/reject, and the category of barriers and enablers)."""
    lines = list(lines)
    by_id = {str(x.get("insight_id")): x for x in lines}
    resolution = resolve(lines, decisions)
    out = []
    for a, b in combinations(resolution.reviewers, 2):
        keep_a, keep_b, cat_a, cat_b = [], [], [], []
        for insight_id, by in sorted(resolution.placed.items()):
            if a not in by or b not in by:
                continue
            da, db = by[a].decision, by[b].decision
            keep_a.append(da.decision != "reject")
            keep_b.append(db.decision != "reject")
            line = by_id[insight_id]
            if da.decision != "reject" and db.decision != "reject" and line.get("kind") in ("barrier", "enabler"):
                cat_a.append(str(da.fields.get("category", line.get("category"))))
                cat_b.append(str(db.fields.get("category", line.get("category"))))
        out.append(
            Agreement(
                (a, b),
                len(keep_a),
                sum(x == y for x, y in zip(keep_a, keep_b, strict=True)),
                cohen_kappa(keep_a, keep_b),
                len(cat_a),
                sum(x == y for x, y in zip(cat_a, cat_b, strict=True)),
                cohen_kappa(cat_a, cat_b),
            )
        )
    return out
