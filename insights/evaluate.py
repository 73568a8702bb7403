"""Score an output file against reference annotations, with 95 % intervals; compare two runs.

Annotations
-----------
An annotation file holds one ``{"document_id": ..., "extraction": {...}}`` object or a list of them;
``extraction`` has the shape of the ``Extraction`` tool (``evals/README.md``). The sets the project
writes (``evals/seeds``, ``evals/corpus``) ship as the package data ``insights.eval_files``, so
:func:`annotation_dirs` finds them in an installed wheel as in a source checkout.

Matching
--------
A predicted insight matches a reference insight of the same kind in the same document when one of its
evidence passages overlaps one of the reference quotes (located in ``Document.text``) by at least half
of the shorter of the two. Matching is one-to-one, greedy, in order of overlap.

Metrics (the keys of :meth:`Score.metrics` and of ``insights evaluate --json``)
-------------------------------------------------------------------------------
``<kind>.precision`` / ``.recall`` / ``.f1``
    for each kind and ``all``: matched / predicted, matched / reference, their harmonic mean, summed
    over documents (micro-average). ``None`` when undefined (nothing predicted, nothing to find).
``<kind>.category_agreement`` / ``.category_kappa`` / ``.level_agreement`` / ``.level_kappa``
    for ``barrier``, ``enabler`` and ``all`` (both together), on matched pairs: the share of equal
    labels, and Cohen's κ = (p_o − p_e) / (1 − p_e), p_e from the two sides' label frequencies.
    ``None`` with no matched pair, or when p_e = 1 (both sides used one label only).
``verbatim_rate``
    the share of kept evidence passages that are the model's quote exactly (``match == "exact"``).
``grounding_rate`` / ``rejected_rate``
    kept / (kept + rejected) insights and its complement, from the run's ledger (``OUT.documents.jsonl``,
    where rejected insights are listed with their reason). ``None`` without a ledger.

Documents count when they are both annotated and among the documents given. A scored document with no
line in the ledger (it failed, or was not run) counts as predicting nothing.

Intervals
---------
A percentile bootstrap over documents: ``resamples`` (1,000) draws of the scored documents with
replacement from ``random.Random(seed)`` (seed 0), every metric recomputed on each draw; the interval is
the 2.5th to 97.5th percentile of the defined values. Same input, same interval. :func:`compare` scores
two runs on the same documents and draws the same documents for both, which gives an interval for each
difference B − A (a paired bootstrap).

This measures a model (with the prompts) against people's reading of the same documents. Scores of the
recorded reference answers are 1.0 by construction and say nothing about any model.
"""

from __future__ import annotations

import json
import os
import random
import statistics
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .documents import Document
from .grounding import Grounder
from .output import read_jsonl, sidecar
from .schema import DRAFT_FIELDS, KINDS, Kind

Span = tuple[int, int]
Interval = tuple[float, float]
Metrics = dict[str, float | None]

#: The annotation sets shipped with the package, folders of ``evals/`` in the repository.
ANNOTATION_SETS = ("seeds", "corpus")
RESAMPLES = 1_000
SEED = 0
CONFIDENCE = 0.95
LABELLED: tuple[Kind, ...] = ("barrier", "enabler")


# ------------------------------------------------------------------------------------------ annotations
def annotation_dirs() -> list[Path]:
    """The shipped annotation folders that hold annotation files (``evals/seeds``, ``evals/corpus``)."""
    root: Any
    try:
        root = resources.files("insights.eval_files")
    except ModuleNotFoundError:  # a source checkout that was not installed: evals/ beside insights/
        root = Path(__file__).resolve().parent.parent / "evals"
    found = []
    for name in ANNOTATION_SETS:
        folder = Path(str(root.joinpath(name)))
        if folder.is_dir() and any(folder.glob("*.json")):
            found.append(folder)
    return found


def load_annotations(*directories: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Read every ``*.json`` file of the ``directories`` into ``{document_id: extraction}``.

    A document id annotated twice, in one folder or across folders, is an error (it would make the
    answers depend on file order).
    """
    found: dict[str, dict[str, Any]] = {}
    origin: dict[str, Path] = {}
    for directory in directories:
        root = Path(directory)
        if not root.is_dir():
            raise FileNotFoundError(f"annotations directory not found: {root}")
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


# ----------------------------------------------------------------------------------------------- counts
@dataclass
class KindScore:
    """Counts for one kind of insight, and the (predicted, reference) labels of matched pairs."""

    predicted: int = 0
    reference: int = 0
    matched: int = 0
    categories: list[tuple[str, str]] = field(default_factory=list)
    levels: list[tuple[str, str]] = field(default_factory=list)

    @property
    def same_category(self) -> int:
        return sum(1 for p, r in self.categories if p == r)

    @property
    def same_level(self) -> int:
        return sum(1 for p, r in self.levels if p == r)

    @property
    def precision(self) -> float | None:
        return self.matched / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.matched / self.reference if self.reference else None

    @property
    def f1(self) -> float | None:
        if not self.matched:
            return 0.0 if self.predicted or self.reference else None
        p, r = self.matched / self.predicted, self.matched / self.reference
        return 2 * p * r / (p + r)

    def add(self, other: KindScore) -> None:
        """Add another count to this one."""
        self.predicted += other.predicted
        self.reference += other.reference
        self.matched += other.matched
        self.categories += other.categories
        self.levels += other.levels


@dataclass
class DocumentScore:
    """One document's counts: the unit the bootstrap resamples."""

    document_id: str
    kinds: dict[str, KindScore] = field(default_factory=lambda: {k: KindScore() for k in KINDS})
    evidence: int = 0
    verbatim: int = 0
    kept: int = 0
    rejected: int = 0
    done: bool = True  # False: the run's ledger has no line for it (it failed, or was not run)


def agreement(pairs: Sequence[tuple[str, str]]) -> float | None:
    """The share of pairs whose two labels are equal (``None`` without pairs)."""
    return sum(1 for a, b in pairs if a == b) / len(pairs) if pairs else None


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's κ of two raters' labels, given as pairs; ``None`` when undefined (no pairs, or p_e = 1)."""
    n = len(pairs)
    if not n:
        return None
    observed = sum(1 for a, b in pairs if a == b) / n
    left, right = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(left[label] * right[label] for label in left) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def metrics(documents: Sequence[DocumentScore], *, ledger: bool = True) -> Metrics:
    """Every metric (see the module docstring) over ``documents``; rates from a ledger only if ``ledger``."""
    kinds = {k: KindScore() for k in KINDS}
    for doc in documents:
        for k in KINDS:
            kinds[k].add(doc.kinds[k])
    total = KindScore()
    for k in KINDS:
        total.add(kinds[k])
    out: Metrics = {}
    for name, s in [*kinds.items(), ("all", total)]:
        out[f"{name}.precision"], out[f"{name}.recall"], out[f"{name}.f1"] = s.precision, s.recall, s.f1
    for name, s in [*((k, kinds[k]) for k in LABELLED), ("all", total)]:
        for label, pairs in (("category", s.categories), ("level", s.levels)):
            out[f"{name}.{label}_agreement"] = agreement(pairs)
            out[f"{name}.{label}_kappa"] = cohen_kappa(pairs)
    out["verbatim_rate"] = _ratio(sum(d.verbatim for d in documents), sum(d.evidence for d in documents))
    kept, rejected = sum(d.kept for d in documents), sum(d.rejected for d in documents)
    out["grounding_rate"] = _ratio(kept, kept + rejected) if ledger else None
    out["rejected_rate"] = _ratio(rejected, kept + rejected) if ledger else None
    return out


# ---------------------------------------------------------------------------------------------- scoring
@dataclass
class Score:
    """The per-document counts of one run, and what follows from them."""

    per_document: list[DocumentScore] = field(default_factory=list)
    ledger: bool = False  # the run's ledger was read (grounding and rejected rates are defined)

    @property
    def documents(self) -> int:
        return len(self.per_document)

    @property
    def not_done(self) -> list[str]:
        """Scored documents that have no line in the run's ledger (failed, or not run)."""
        return [d.document_id for d in self.per_document if not d.done]

    @property
    def kinds(self) -> dict[str, KindScore]:
        """Counts per kind, summed over documents."""
        kinds: dict[str, KindScore] = {k: KindScore() for k in KINDS}
        for doc in self.per_document:
            for k in KINDS:
                kinds[k].add(doc.kinds[k])
        return kinds

    @property
    def total(self) -> KindScore:
        """All kinds together."""
        t = KindScore()
        for s in self.kinds.values():
            t.add(s)
        return t

    def metrics(self) -> Metrics:
        """Every metric over all scored documents."""
        return metrics(self.per_document, ledger=self.ledger)

    def intervals(self, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Interval | None]:
        """95 % percentile-bootstrap intervals of every metric, over documents (deterministic)."""
        draws = [metrics(sample, ledger=self.ledger) for sample in _resamples(self.per_document, resamples, seed)]
        return {name: percentile_interval([d[name] for d in draws]) for name in self.metrics()}


def _resamples(items: Sequence[DocumentScore], resamples: int, seed: int) -> Iterable[list[DocumentScore]]:
    rng = random.Random(seed)
    n = len(items)
    for _ in range(resamples if n else 0):
        yield [items[rng.randrange(n)] for _ in range(n)]


def percentile_interval(values: Iterable[float | None], confidence: float = CONFIDENCE) -> Interval | None:
    """The central ``confidence`` range of the defined ``values`` (``None`` if none is defined)."""
    defined = sorted(v for v in values if v is not None)
    if len(defined) < 2:
        return (defined[0], defined[0]) if defined else None
    tail = (1.0 - confidence) / 2
    cuts = statistics.quantiles(defined, n=round(1 / tail), method="inclusive")
    return (cuts[0], cuts[-1])


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
    ledger: Iterable[dict[str, Any]] | None = None,
) -> Score:
    """Score output ``records`` (lines of ``OUT.jsonl``) against ``annotations`` for ``documents``.

    Only documents that are both annotated and among ``documents`` count, in the order given. ``ledger``
    (lines of ``OUT.documents.jsonl``) gives the rejected insights and which documents were done.
    """
    by_id = {d.id: d for d in documents if d.id in annotations}
    predicted: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        if record.get("document_id") in by_id:
            predicted.setdefault((record["document_id"], record["kind"]), []).append(record)
    finished = {str(line.get("document_id")): line for line in ledger} if ledger is not None else None
    result = Score(ledger=finished is not None)
    for doc_id, document in by_id.items():
        grounder = Grounder(document.text)
        doc = DocumentScore(doc_id)
        for kind in KINDS:
            refs = annotations[doc_id].get(DRAFT_FIELDS[kind], [])
            preds = predicted.get((doc_id, kind), [])
            _score_kind(doc.kinds[kind], kind, grounder, refs, preds)
            evidence = [e for p in preds for e in p.get("evidence", [])]
            doc.evidence += len(evidence)
            doc.verbatim += sum(1 for e in evidence if e.get("match") == "exact")
            doc.kept += len(preds)
        if finished is not None:
            line = finished.get(doc_id)
            doc.done = line is not None
            doc.rejected = len(line.get("rejected") or []) if line is not None else 0
        result.per_document.append(doc)
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
        if kind in LABELLED:
            counts.categories.append((str(preds[i].get("category")), str(refs[j].get("category"))))
            counts.levels.append((str(preds[i].get("level")), str(refs[j].get("level"))))


def score_file(
    output: str | os.PathLike[str],
    annotations: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    documents: Iterable[Document],
    *,
    lines: Iterable[dict[str, Any]] | None = None,
) -> Score:
    """Score an ``OUT.jsonl`` file (with its ledger ``OUT.documents.jsonl`` when there is one) against one
    or several folders of annotations; ``lines`` replaces the file's own lines (e.g. with review decisions
    applied, :func:`insights.decisions.reviewed_lines`)."""
    folders = [annotations] if isinstance(annotations, (str, os.PathLike)) else list(annotations)
    ledger_path = sidecar(Path(output), "documents")
    ledger = list(read_jsonl(ledger_path)) if ledger_path.exists() else None
    found = read_jsonl(output) if lines is None else lines
    return score(found, load_annotations(*folders), documents, ledger)


# ------------------------------------------------------------------------------------------- comparison
@dataclass(frozen=True)
class Difference:
    """One metric of two runs: A, B, B − A and the paired-bootstrap interval of B − A."""

    a: float | None
    b: float | None
    diff: float | None
    interval: Interval | None


def compare(a: Score, b: Score, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Difference]:
    """Every metric of runs ``a`` and ``b`` scored on the same documents, with B − A and its interval.

    Raises:
        ValueError: the two scores are not over the same documents.
    """
    ids_a = [d.document_id for d in a.per_document]
    if ids_a != [d.document_id for d in b.per_document]:
        raise ValueError("the two runs were not scored on the same documents")
    pairs = [(x, y) for x, y in zip(a.per_document, b.per_document, strict=True)]
    rng = random.Random(seed)
    n = len(pairs)
    draws: list[Metrics] = []
    for _ in range(resamples if n else 0):
        sample = [pairs[rng.randrange(n)] for _ in range(n)]
        ma = metrics([x for x, _ in sample], ledger=a.ledger)
        mb = metrics([y for _, y in sample], ledger=b.ledger)
        draws.append({k: _minus(mb[k], ma[k]) for k in ma})
    full_a, full_b = a.metrics(), b.metrics()
    return {
        name: Difference(
            full_a[name], full_b[name], _minus(full_b[name], full_a[name]), percentile_interval(d[name] for d in draws)
        )
        for name in full_a
    }


def _minus(b: float | None, a: float | None) -> float | None:
    return None if a is None or b is None else b - a


def report(result: Score, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Any]:
    """A JSON-ready report of one run: counts, metrics with intervals, and how the intervals were made."""
    values, intervals = result.metrics(), result.intervals(resamples, seed)
    return {
        "documents": result.documents,
        "not_done": result.not_done,
        "counts": {
            name: {"predicted": k.predicted, "reference": k.reference, "matched": k.matched}
            for name, k in [*result.kinds.items(), ("all", result.total)]
        },
        "metrics": {
            name: {"value": values[name], "interval": list(iv) if (iv := intervals[name]) else None} for name in values
        },
        "bootstrap": {"resamples": resamples, "seed": seed, "confidence": CONFIDENCE, "unit": "document"},
    }
