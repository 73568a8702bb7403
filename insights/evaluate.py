"""Score an output file against reference annotations (``evals/seeds`` is the start of such a set).

A predicted insight matches a reference insight of the same kind in the same document when one of its
evidence passages overlaps one of the reference quotes (located in ``Document.text``) by at least half
of the shorter of the two. Matching is one-to-one, greedy, in order of overlap. Per kind this gives
precision (matched / predicted), recall (matched / reference) and F1, and for matched barriers and
enablers how often ``category`` and ``level`` agree.

This measures a model (with the prompts) against people's reading of the same documents. Scores of the
recorded reference answers are 1.0 by construction and say nothing about any model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .documents import Document
from .grounding import Grounder
from .output import read_jsonl
from .schema import DRAFT_FIELDS, KINDS, Kind

Span = tuple[int, int]


@dataclass
class KindScore:
    """Counts for one kind of insight."""

    predicted: int = 0
    reference: int = 0
    matched: int = 0
    same_category: int = 0
    same_level: int = 0

    @property
    def precision(self) -> float:
        return self.matched / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.matched / self.reference if self.reference else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class Score:
    """Scores per kind and over all kinds."""

    kinds: dict[str, KindScore] = field(default_factory=lambda: {k: KindScore() for k in KINDS})
    documents: int = 0

    @property
    def total(self) -> KindScore:
        """All kinds together."""
        t = KindScore()
        for s in self.kinds.values():
            t.predicted += s.predicted
            t.reference += s.reference
            t.matched += s.matched
            t.same_category += s.same_category
            t.same_level += s.same_level
        return t


def load_annotations(directory: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Read every ``*.json`` file of ``directory`` into ``{document_id: extraction}``.

    A file holds one ``{"document_id": ..., "extraction": {...}}`` object or a list of them. A document id
    annotated twice is an error (it would make the answers depend on file order).
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"annotations directory not found: {root}")
    found: dict[str, dict[str, Any]] = {}
    origin: dict[str, Path] = {}
    for path in sorted(root.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for entry in data if isinstance(data, list) else [data]:
            if not isinstance(entry, dict) or "document_id" not in entry:
                raise ValueError(f"{path}: expected an object with document_id and extraction")
            doc_id = str(entry["document_id"])
            extraction = entry.get("extraction") or {}
            if not isinstance(extraction, dict):
                raise ValueError(f"{path}: extraction of {doc_id!r} is not an object")
            if doc_id in found:
                raise ValueError(f"document {doc_id!r} is annotated in both {origin[doc_id]} and {path}")
            found[doc_id] = extraction
            origin[doc_id] = path
    return found


def _overlap(a: Span, b: Span) -> bool:
    shared = min(a[1], b[1]) - max(a[0], b[0])
    return shared > 0 and shared >= 0.5 * min(a[1] - a[0], b[1] - b[0])


def _reference_spans(grounder: Grounder, item: dict[str, Any]) -> list[Span]:
    hits = (grounder.locate(quote) for quote in item.get("quotes", []))
    return [(hit.start, hit.end) for hit in hits if hit is not None]


def score(
    records: Iterable[dict[str, Any]],
    annotations: dict[str, dict[str, Any]],
    documents: Iterable[Document],
) -> Score:
    """Score output ``records`` (lines of ``OUT.jsonl``) against ``annotations`` for ``documents``.

    Only documents that are both annotated and among ``documents`` count.
    """
    by_id = {d.id: d for d in documents if d.id in annotations}
    predicted: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        if record.get("document_id") in by_id:
            predicted.setdefault((record["document_id"], record["kind"]), []).append(record)
    result = Score(documents=len(by_id))
    for doc_id, document in by_id.items():
        grounder = Grounder(document.text)
        for kind in KINDS:
            refs = annotations[doc_id].get(DRAFT_FIELDS[kind], [])
            preds = predicted.get((doc_id, kind), [])
            _score_kind(result.kinds[kind], kind, grounder, refs, preds)
    return result


def _score_kind(
    counts: KindScore, kind: Kind, grounder: Grounder, refs: list[dict[str, Any]], preds: list[dict[str, Any]]
) -> None:
    counts.predicted += len(preds)
    counts.reference += len(refs)
    ref_spans = [_reference_spans(grounder, r) for r in refs]
    pairs = []
    for i, pred in enumerate(preds):
        spans = [(e["start"], e["end"]) for e in pred.get("evidence", [])]
        for j, rspans in enumerate(ref_spans):
            shared = sum(1 for a in spans for b in rspans if _overlap(a, b))
            if shared:
                pairs.append((shared, i, j))
    used_p: set[int] = set()
    used_r: set[int] = set()
    for _, i, j in sorted(pairs, reverse=True):
        if i in used_p or j in used_r:
            continue
        used_p.add(i)
        used_r.add(j)
        counts.matched += 1
        if kind in ("barrier", "enabler"):
            counts.same_category += int(preds[i].get("category") == refs[j].get("category"))
            counts.same_level += int(preds[i].get("level") == refs[j].get("level"))


def score_file(
    output: str | os.PathLike[str], annotations_dir: str | os.PathLike[str], documents: Iterable[Document]
) -> Score:
    """Score an ``OUT.jsonl`` file against a folder of annotations."""
    return score(read_jsonl(output), load_annotations(annotations_dir), documents)
