"""The evidence report: one self-contained, static HTML file of a run (``insights report``).

:func:`build_report` reads a run (``OUT.jsonl``, its ledger ``OUT.documents.jsonl`` and its errors file)
and the documents' text, :func:`render_report` turns it into HTML, :func:`write_report` does both and
writes the file atomically. The file needs no server, no network and no library: it opens from
``file://`` and can be sent by e-mail. Jinja2 (the ``report`` extra) renders
``insights/templates/report.html``; ``insights/static/report.css`` and ``report.js`` are inlined.

What is in the file
-------------------
* The **overview** is rendered here, in Python: counts by kind, by category and level, by country, year,
  document type and SDG (the ``sdgs`` tag; an insight counts once for each SDG of its document), as
  inline SVG bar charts (:mod:`insights.charts`) with a table under each. Every bar links to the
  insight list filtered on it.
* ``<script type="text/plain" id="insights-index">``: base64 of gzip of the JSON **index**, decoded once
  at load (``DecompressionStream``)::

      {"title", "source",
       "sections": [label, ...],               # evidence section labels, referred to by position
       "docs": [{"id", "title", "type", "year", "country", "sdgs": [...], "path",
                 "status": "ok" | "changed" | "missing", "chars", "rejected": [{"kind", "reason",
                 "label", "quotes": [...]}]}, ...],
       "insights": [{"d": doc position, "id": insight_id, "k": kind, "c": category, "l": level,
                     "s": statement, "f": {other field: value},
                     "e": [[start, end, match, score, section position, quote, model_quote], ...]}, ...]}

  ``start``/``end`` are the record's offsets into ``Document.text`` (code points). ``quote`` is null
  when the document's text is in the file and ``text[start:end]`` equals it; otherwise it is the
  record's quote (a changed or missing document, or a quote that is not the located passage).
  ``model_quote`` (the model's own words, when the record has them) is null unless it differs from
  the passage.
* ``<script type="text/plain" id="insights-texts">``: one line per document, in index order: empty, or
  base64 of gzip of ``{"parts": [[start, end, text], ...], "marks": [[part, u16start, u16end, insight
  position, evidence position], ...]}``. ``parts`` are the passages of ``Document.text`` that are shown
  (``text[start:end]``, code points): by default the paragraphs holding evidence (only the sentences
  around it in a long paragraph) and the heading or question above each (see :func:`shown_parts`),
  or the whole text (``full_text``). ``marks`` give each evidence span in UTF-16
  code units inside its part (what JavaScript strings index), so astral characters (emoji) before a
  span do not shift it. A line is decoded only when its document is opened.

A document's text is embedded only when its ``content_hash`` equals the one recorded in the run;
otherwise the document is marked ``changed`` (or ``missing`` when no file has it) and its quotes are
shown without highlights. All text from the run or the documents is data: Jinja2 autoescapes it and
the script inserts it as text nodes, never as HTML.

* With a themes file (``insights themes``' output; ``themes=``, by default ``OUT.themes.jsonl`` when it
  exists), the index also holds the themes and champion entities, as positions of their member insights
  (:mod:`insights.report_themes`), for the pages ``#themes``, ``#theme/ID`` and ``#champions``
  (``insights/static/report_themes.js``, inlined only then).

Adding a page: a server-rendered one is a ``<section class="page" id="page-NAME">`` in the template
with a tab in ``PAGES``; one drawn from the index is a function registered in ``report.js``'s
``PAGES``. Either is reached at ``#NAME``.
"""

from __future__ import annotations

import base64
import bisect
import gzip
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_args

from ._optional import require
from .charts import CHART_WIDTH, LABEL_WIDTH, NONE, insights_href, make_chart, natural_key
from .decisions import reviewed_lines
from .documents import Document, iter_corpus
from .errors import DocumentError, OutputError
from .ids import line_insight_id
from .output import read_jsonl, sidecar, write_atomically
from .report_themes import filter_options as theme_filter_options
from .report_themes import pack_themes, theme_pages
from .schema import KINDS, Category, Level
from .theme_tables import ThemeFiles, load_themes

PAGES = [("overview", "Overview"), ("insights", "Insights"), ("rejected", "Rejected")]
#: Keys of an output line that are not the insight's own fields (shown elsewhere or not at all).
_IDENTITY = {"document_id", "insight_id", "kind", "statement", "evidence", "title", "type", "year", "country",
             "metadata", "content_hash", "model", "prompt_version", "category", "level", "source",
             "review"}  # fmt: skip
_HEADING = re.compile(r"(## |> )")
_BLOCK_GAP = re.compile(r"\n\n")
_SENTENCE_END = re.compile(r"[.!?…](?=\s)|\n")
#: Of a paragraph longer than this, a report shows the sentences within CONTEXT characters of a span.
LONG_PARAGRAPH, CONTEXT, MERGE_GAP = 1200, 300, 80


@dataclass
class ReportDocument:
    """One document of the run, with what the report knows of it."""

    id: str
    title: str = ""
    type: str = ""
    year: int | None = None
    country: str = ""
    sdgs: list[str] = field(default_factory=list)
    path: str = ""
    content_hash: str = ""
    status: str = "missing"  # ok | changed | missing
    insights: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    document: Document | None = None  # set when status is "ok"


@dataclass
class Report:
    """A run, ready to render: documents in id order, each with its insight lines."""

    title: str
    source: str
    documents: list[ReportDocument]
    errors: list[dict[str, Any]] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    prompt_versions: list[str] = field(default_factory=list)
    full_text: bool = False
    review: str = ""  # what the review decisions changed (insights.decisions.Reviewed.summary)
    left_out: int = 0  # insights rejected in review, not shown
    themes: ThemeFiles | None = None  # themes and champion entities, when a themes file was read

    @property
    def insights(self) -> list[tuple[ReportDocument, dict[str, Any]]]:
        return [(d, line) for d in self.documents for line in d.insights]


# ------------------------------------------------------------------------------------------------ reading
def build_report(
    out: str | os.PathLike[str],
    paths: Sequence[str | os.PathLike[str]] = (),
    *,
    full_text: bool = False,
    title: str | None = None,
    raw: bool = False,
    decisions: str | os.PathLike[str] | None = None,
    themes: str | os.PathLike[str] | bool = True,
) -> Report:
    """Read a run and its documents, with the review decisions applied (:mod:`insights.decisions`).

    Args:
        out: the run's ``OUT.jsonl``; ``OUT.documents.jsonl`` and ``OUT.errors.jsonl`` beside it are read
            when present.
        paths: where the documents are (files, folders, globs, as for ``insights extract``). Without
            them, each ledger line's ``path`` is tried, as given and then relative to ``out``'s folder.
        full_text: embed each document's whole text, not only the paragraphs around its evidence.
        title: the report's title (default: the output file's name).
        raw: the model's output alone, without the review decisions.
        decisions: the decisions file (default ``OUT.decisions.jsonl`` beside ``out``).
        themes: the output of ``insights themes`` to show (``True``: ``OUT.themes.jsonl`` if it exists;
            ``False``: none).

    Raises:
        OutputError: ``out`` does not exist or holds no line of a run; a themes file given is missing or
            holds a line that is not a theme.
        DocumentError: a path in ``paths`` does not exist.
    """
    out = Path(out)
    if not out.is_file():
        raise OutputError(f"{out}: no such output file")
    docs: dict[str, ReportDocument] = {}
    for line in read_jsonl(sidecar(out, "documents")):
        doc = docs.setdefault(str(line.get("document_id", "")), ReportDocument(str(line.get("document_id", ""))))
        doc.title = str(line.get("title") or doc.title)
        doc.path, doc.content_hash = str(line.get("path") or ""), str(line.get("content_hash") or "")
        doc.rejected = [r for r in line.get("rejected") or [] if isinstance(r, dict)]
    models, versions = Counter[str](), Counter[str]()
    lines = [x for x in read_jsonl(out) if isinstance(x.get("evidence"), list) and x.get("kind") in KINDS]
    reviewed = reviewed_lines(out, lines, raw=raw, decisions=decisions)
    for line in reviewed.lines:
        doc = docs.setdefault(str(line.get("document_id", "")), ReportDocument(str(line.get("document_id", ""))))
        doc.insights.append(line)
        doc.title = doc.title or str(line.get("title") or "")
        doc.type, doc.country = str(line.get("type") or ""), str(line.get("country") or "")
        doc.year = line["year"] if isinstance(line.get("year"), int) else None
        doc.sdgs = [str(s) for s in (line.get("metadata") or {}).get("sdgs") or []]
        doc.content_hash = doc.content_hash or str(line.get("content_hash") or "")
        models[str(line.get("model", ""))] += 1
        versions[str(line.get("prompt_version", ""))] += 1
    docs.pop("", None)
    if not docs:
        raise OutputError(f"{out}: no insight or document line of a run")
    _attach_texts(docs, out, paths)
    known = {line_insight_id(line) for doc in docs.values() for line in doc.insights}
    return Report(
        title=title or out.name,
        source=out.name,
        documents=[docs[k] for k in sorted(docs)],
        errors=list(read_jsonl(sidecar(out, "errors"))),
        models=[m for m, _ in models.most_common() if m],
        prompt_versions=[v for v, _ in versions.most_common() if v],
        full_text=full_text,
        review=reviewed.summary(),
        left_out=len(reviewed.left_out),
        themes=load_themes(out, themes, known),
    )


def _attach_texts(docs: dict[str, ReportDocument], out: Path, paths: Sequence[str | os.PathLike[str]]) -> None:
    """Give each document its text when a file has it with the recorded content hash."""
    found: dict[str, Document] = {}
    skipped: list[DocumentError] = []
    if paths:  # a path that does not exist raises DocumentError; an unreadable file is skipped
        sources: list[list[str | os.PathLike[str]]] = [list(paths)]
    else:
        ledger_paths = sorted({d.path for d in docs.values() if d.path})
        sources = [[p if Path(p).exists() else out.parent / p] for p in ledger_paths]
        sources = [s for s in sources if Path(s[0]).exists()]
    for source in sources:
        for document in iter_corpus(source, on_error=skipped.append):
            if document.id in docs:
                found.setdefault(document.id, document)
    for doc in docs.values():
        if doc.id not in found:
            continue
        document = found[doc.id]
        meta = document.metadata
        doc.title = doc.title or document.title
        doc.path = doc.path or (document.path or "")
        if not doc.insights:  # no line carried these: take them from the document itself
            year = document.meta("year").strip()
            doc.type, doc.country = document.meta("type"), document.meta("country")
            doc.year, doc.sdgs = (int(year) if year.isdigit() else None), list(meta.get("sdgs", []))
        same = not doc.content_hash or doc.content_hash == document.content_hash
        doc.status, doc.document = ("ok", document) if same else ("changed", None)


# ------------------------------------------------------------------------------------------------ packing
def _pack(value: Any) -> str:
    """base64 of gzip of compact JSON (deterministic: no time stamp in the gzip header)."""
    raw = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")


def _blocks(text: str) -> list[tuple[int, int]]:
    """The paragraphs of a document's text (blocks between blank lines), as (start, end)."""
    out, pos = [], 0
    for gap in _BLOCK_GAP.finditer(text):
        out.append((pos, gap.start()))
        pos = gap.end()
    out.append((pos, len(text)))
    return out


def shown_parts(text: str, spans: Iterable[tuple[int, int]], *, full_text: bool = False) -> list[tuple[int, int]]:
    """The passages of ``text`` a report shows, as sorted, disjoint (start, end).

    Each paragraph (block between blank lines) that a span touches is shown with the heading or question
    above it; of a paragraph longer than :data:`LONG_PARAGRAPH`, only the sentences within
    :data:`CONTEXT` characters of the span. Passages less than :data:`MERGE_GAP` apart are joined, so a
    span is always inside one passage.
    """
    if full_text:
        return [(0, len(text))]
    blocks = _blocks(text)
    starts = [b[0] for b in blocks]
    windows: list[tuple[int, int]] = []
    for start, end in spans:
        first = bisect.bisect_right(starts, start) - 1
        last = bisect.bisect_right(starts, max(start, end - 1)) - 1
        heading = next((j for j in range(first, -1, -1) if _HEADING.match(text, blocks[j][0])), None)
        windows.append((start, end))  # itself, should it begin or end between two paragraphs
        if heading is not None:
            windows.append(blocks[heading])
        for b_start, b_end in blocks[first : last + 1]:
            if b_end - b_start <= LONG_PARAGRAPH:
                windows.append((b_start, b_end))
                continue
            inner_start, inner_end = max(b_start, start), min(b_end, end)
            a, b = max(b_start, start - CONTEXT), min(b_end, end + CONTEXT)
            cut = _SENTENCE_END.search(text, a, inner_start) if a > b_start else None
            ends = list(_SENTENCE_END.finditer(text, inner_end, b)) if b < b_end else []
            windows.append((cut.end() if cut else a, ends[-1].end() if ends else b))
    parts: list[tuple[int, int]] = []
    for window in sorted(windows):
        if parts and window[0] <= parts[-1][1] + MERGE_GAP:
            parts[-1] = (parts[-1][0], max(parts[-1][1], window[1]))
        else:
            parts.append(window)
    return parts


def _utf16(s: str) -> int:
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


def text_payload(doc: ReportDocument, first: int, *, full_text: bool = False) -> dict[str, Any]:
    """The shown passages of a document and its evidence marks (``first``: the position of its first
    insight in the index)."""
    assert doc.document is not None
    return mark_text(doc.document.text, [line["evidence"] for line in doc.insights], first, full_text=full_text)


def mark_text(
    text: str, evidence: Sequence[Sequence[Any]], first: int = 0, *, full_text: bool = False
) -> dict[str, Any]:
    """``{"parts", "marks"}`` of a document's text (the format of the module docstring), shared by the
    report and the review page (:mod:`insights.review`); ``static/highlight.js`` draws it.

    Args:
        text: the document's text.
        evidence: the evidence list of each of the document's insights, in their order.
        first: the position of the first of those insights in the page's list (marks refer to it).
        full_text: one part, the whole text (otherwise :func:`shown_parts`).
    """
    spans = [(e["start"], e["end"]) for items in evidence for e in items if _valid(e, text)]
    parts = shown_parts(text, spans, full_text=full_text)
    marks = []
    for i, items in enumerate(evidence):
        for j, e in enumerate(items):
            if not _valid(e, text) or e["start"] == e["end"]:
                continue
            p = next(k for k, (s, t) in enumerate(parts) if s <= e["start"] and e["end"] <= t)
            base = parts[p][0]
            u_start = _utf16(text[base : e["start"]])
            marks.append([p, u_start, u_start + _utf16(text[e["start"] : e["end"]]), first + i, j])
    return {"parts": [[s, t, text[s:t]] for s, t in parts], "marks": marks}


def _valid(e: Any, text: str) -> bool:
    start, end = e.get("start"), e.get("end")
    return isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= len(text)


def pack_index(report: Report) -> tuple[str, list[str]]:
    """The packed index and the packed text lines of every document (see the module docstring)."""
    sections: dict[str, int] = {}
    docs: list[dict[str, Any]] = []
    insights: list[dict[str, Any]] = []
    texts: list[str] = []
    for d, doc in enumerate(report.documents):
        text = doc.document.text if doc.document is not None else None
        docs.append({
            "id": doc.id, "title": doc.title, "type": doc.type, "year": doc.year, "country": doc.country,
            "sdgs": doc.sdgs, "path": doc.path, "status": doc.status, "chars": len(text or ""),
            "rejected": [_rejected(r) for r in doc.rejected],
        })  # fmt: skip
        texts.append(_pack(text_payload(doc, len(insights), full_text=report.full_text)) if text is not None else "")
        for line in doc.insights:
            evidence = []
            for e in line["evidence"]:
                quote = e.get("quote")
                located = text[e["start"] : e["end"]] if text is not None and _valid(e, text) else None
                section = sections.setdefault(str(e.get("section") or ""), len(sections))
                quote = None if located == quote else quote
                words = e.get("model_quote")
                words = words if words and words != (located if quote is None else quote) else None
                evidence.append([e.get("start"), e.get("end"), e.get("match"), e.get("score"), section, quote,
                                 words])  # fmt: skip
            insights.append({
                "d": d, "id": line.get("insight_id", ""), "k": line["kind"], "c": line.get("category", ""),
                "l": line.get("level", ""), "s": line.get("statement", ""), "e": evidence,
                "f": {**{k: v if isinstance(v, str) else json.dumps(v) for k, v in line.items() if k not in _IDENTITY},
                      **review_note(line)},
            })  # fmt: skip
    index = {"title": report.title, "source": report.source, "sections": list(sections), "docs": docs,
             "insights": insights, **pack_themes(report)}  # fmt: skip
    return _pack(index), texts


def review_note(line: dict[str, Any]) -> dict[str, str]:
    """``{"reviewed": "accepted by ana (carried from ins_…)"}`` for a line with a review decision."""
    review = line.get("review")
    if not isinstance(review, dict):
        return {}
    text = f"{'edited' if review.get('decision') == 'edit' else 'accepted'} by {review.get('reviewer', '?')}"
    if review.get("from"):
        text += f" (carried from {review['from']})"
    if review.get("note"):
        text += f": {review['note']}"
    return {"reviewed": text}


def _rejected(r: dict[str, Any]) -> dict[str, Any]:
    draft: dict[str, Any] = r["draft"] if isinstance(r.get("draft"), dict) else {}
    quotes = draft["quotes"] if isinstance(draft.get("quotes"), list) else []
    label = draft.get("statement") or draft.get("name") or ""
    return {"kind": r.get("kind", ""), "reason": r.get("reason", ""), "label": str(label), "quotes": quotes}


def overview(report: Report) -> dict[str, Any]:
    """Everything the overview page shows: totals, charts and the kind × category × level table."""
    rows = report.insights
    by_kind = Counter[str](str(line["kind"]) for _, line in rows)
    graded = [line for _, line in rows if line["kind"] in ("barrier", "enabler")]
    levels = list(get_args(Level))
    categories = list(get_args(Category))
    categories += sorted({str(line.get("category")) for line in graded} - set(categories))
    table = Counter((line.get("category"), line["kind"], line.get("level")) for line in graded)
    year = [(line["kind"], [str(doc.year)] if doc.year is not None else []) for doc, line in rows]
    charts = [
        make_chart("kind", "Insights by kind", "kind", [(line["kind"], [line["kind"]]) for _, line in rows],
                   order=KINDS, stacked=False),
        make_chart("category", "Barriers and enablers by category", "category",
                   [(line["kind"], [str(line.get("category"))]) for line in graded], kinds=("barrier", "enabler")),
        make_chart("level", "Barriers and enablers by level", "level",
                   [(line["kind"], [str(line.get("level"))]) for line in graded], kinds=("barrier", "enabler"),
                   note="Level after De Vries, Bekkers & Tummers (2016)."),
        make_chart("country", "Insights by country", "country",
                   [(line["kind"], [doc.country] if doc.country else []) for doc, line in rows],
                   note="The document's first country tag."),
        make_chart("year", "Insights by year", "year", year, order="label"),
        make_chart("type", "Insights by document type", "type",
                   [(line["kind"], [doc.type] if doc.type else []) for doc, line in rows]),
        make_chart("sdg", "Insights by SDG", "sdg", [(line["kind"], doc.sdgs) for doc, line in rows],
                   order="label", note="An insight counts once for each SDG tag of its document."),
    ]  # fmt: skip
    status = Counter(d.status for d in report.documents)
    return {
        "documents": len(report.documents),
        "insights": len(rows),
        "by_kind": {k: by_kind.get(k, 0) for k in KINDS},
        "rejected": sum(len(d.rejected) for d in report.documents),
        "failed": len(report.errors),
        "status": {k: status.get(k, 0) for k in ("ok", "changed", "missing")},
        "charts": charts,
        "levels": levels,
        "table": [(c, {(k, lv): table.get((c, k, lv), 0) for k in ("barrier", "enabler") for lv in levels})
                  for c in categories if any(table.get((c, k, lv)) for k in ("barrier", "enabler") for lv in levels)],
        "href": insights_href,
    }  # fmt: skip


def filter_options(report: Report) -> dict[str, list[tuple[str, int]]]:
    """The values of each filter of the insight list, with their counts."""
    rows = report.insights

    def tally(values: Iterable[str], order: str = "count") -> list[tuple[str, int]]:
        c = Counter(values)
        if order == "label":
            return sorted(c.items(), key=lambda kv: (kv[0] == NONE, natural_key(kv[0])))
        return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))

    return {
        "kind": [(k, n) for k, n in tally(line["kind"] for _, line in rows) if n],
        "category": tally(str(line.get("category")) for _, line in rows if line.get("category")),
        "level": tally(str(line.get("level")) for _, line in rows if line.get("level")),
        "country": tally(doc.country or NONE for doc, _ in rows),
        "year": tally((str(doc.year) if doc.year is not None else NONE for doc, _ in rows), "label"),
        "type": tally(doc.type or NONE for doc, _ in rows),
        "sdg": tally((s for doc, _ in rows for s in doc.sdgs or [NONE]), "label"),
    }


# ---------------------------------------------------------------------------------------------- rendering
def _asset(name: str) -> str:
    text = resources.files("insights").joinpath("static", name).read_text(encoding="utf-8")
    if re.search(r"</(script|style)", text, re.IGNORECASE):
        raise ValueError(f"static/{name} must not contain a closing script or style tag")
    return text


def render_report(report: Report) -> str:
    """The report as one HTML string."""
    jinja2 = require("jinja2", "report", purpose="insights report")
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("insights", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    index, texts = pack_index(report)
    markup = jinja2.utils.markupsafe.Markup
    themed = report.themes is not None
    return str(
        env.get_template("report.html").render(
            report=report,
            pages=PAGES + theme_pages(report),
            overview=overview(report),
            filters=filter_options(report),
            theme_filters=theme_filter_options(report),
            css=markup(_asset("report.css")),
            js=markup(
                (_asset("report_themes.js") + "\n" if themed else "")
                + _asset("highlight.js")
                + "\n"
                + _asset("report.js")
            ),
            index=markup(index),  # base64: nothing to escape
            texts=markup("\n".join(texts)),
            chart_width=CHART_WIDTH,
            label_width=LABEL_WIDTH,
            kinds=KINDS,
        )
    )


@dataclass
class ReportStats:
    """What :func:`write_report` wrote."""

    path: Path
    bytes: int
    documents: int
    insights: int
    missing: int
    changed: int
    review: str = ""
    notes: list[str] = field(default_factory=list)


def write_report(
    out: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    paths: Sequence[str | os.PathLike[str]] = (),
    *,
    full_text: bool = False,
    title: str | None = None,
    raw: bool = False,
    decisions: str | os.PathLike[str] | None = None,
    themes: str | os.PathLike[str] | bool = True,
) -> ReportStats:
    """Build the report of run ``out`` and write it to ``dest`` (a temporary file, then renamed); ``raw``,
    ``decisions`` and ``themes`` as for :func:`build_report`."""
    report = build_report(out, paths, full_text=full_text, title=title, raw=raw, decisions=decisions, themes=themes)
    html = render_report(report).encode("utf-8")
    dest = Path(dest)
    write_atomically(dest, html)
    status = Counter(d.status for d in report.documents)
    return ReportStats(dest, len(html), len(report.documents), len(report.insights), status["missing"],
                       status["changed"], report.review, report.themes.notes if report.themes else [])  # fmt: skip
