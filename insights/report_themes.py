"""The report's Themes and Champions pages: what its index holds of them, and the values to filter by.

When :func:`insights.report.build_report` reads a themes file (:func:`insights.theme_tables.load_themes`:
``OUT.themes.jsonl`` by default, and its ``THEMES.champions.jsonl``), :func:`pack_themes` adds to the
report's index (see :mod:`insights.report`)::

    "themes": [{"id": theme_id, "k": kind, "label", "desc": description, "src": label_source,
                "terms": [term, ...], "sim": min_pair_similarity,
                "m": [insight position, ...],        # every member, in the theme's order
                "r": [insight position, ...]}, ...], # the representatives
    "champions": [{"id": entity_id, "name", "acr": acronym, "t": champion_type, "ps": pseudonymised,
                   "a": [[alias, mentions, [document position, ...]], ...],
                   "m": [insight position, ...],     # every mention
                   "mg": [[rule, reason], ...]}, ...],
    "themes_file": file name, "champions_file": file name or ""

Members are positions in the index's ``insights``, which already hold each one's statement, document and
evidence, so a theme costs its label and a list of numbers. Nothing counted is stored: the pages
(``insights/static/report_themes.js``) recount members, documents, countries, years, types and the
dominant category and level from the members, over the members that match the filters.

Filters: ``kind`` (of the theme), and ``country``, ``year`` and ``type`` of the members' documents
(:data:`insights.charts.NONE` when the document has none). A theme or entity is listed when at least one
of its members matches, with the counts of the matching members. :func:`filter_options` gives each
value with the number of themes (entities) that have a member with it.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from .charts import NONE, natural_key
from .ids import line_insight_id

if TYPE_CHECKING:  # pragma: no cover
    from .report import Report, ReportDocument

#: Shared terms a theme shows (its label is made of the first ones).
TERMS = 6


def _positions(report: Report) -> dict[str, tuple[int, ReportDocument]]:
    """Each insight's id → (its position in the index, its document), as :func:`insights.report.pack_index`
    numbers them."""
    return {line_insight_id(line): (i, doc) for i, (doc, line) in enumerate(report.insights)}


def pack_themes(report: Report) -> dict[str, Any]:
    """What the index holds of the report's themes and champion entities (see the module docstring)."""
    found = report.themes
    if found is None:
        return {}
    pos = _positions(report)
    doc_pos = {doc.id: d for d, doc in enumerate(report.documents)}
    themes = [
        {
            "id": t.theme_id,
            "k": t.kind,
            "label": t.label,
            "desc": t.description,
            "src": t.label_source,
            "terms": [c.value for c in t.terms[:TERMS]],
            "sim": t.min_pair_similarity,
            "m": [pos[i][0] for i in t.insight_ids],
            "r": [pos[r.insight_id][0] for r in t.representatives],
        }  # fmt: skip
        for t in found.themes
    ]
    champions = [
        {
            "id": e.entity_id,
            "name": e.name,
            "acr": e.acronym,
            "t": e.champion_type,
            "ps": int(e.pseudonymised),
            "a": [[a.alias, a.mentions, [doc_pos[d] for d in a.documents if d in doc_pos]] for a in e.aliases],
            "m": [pos[i][0] for i in e.insight_ids],
            "mg": [[m.rule, m.reason] for m in e.merges],
        }  # fmt: skip
        for e in found.champions
    ]
    return {
        "themes": themes,
        "champions": champions,
        "themes_file": found.path.name,
        "champions_file": found.champions_path.name if found.champions_path else "",
    }


def theme_pages(report: Report) -> list[tuple[str, str]]:
    """The tabs to add to the report's: Themes with a themes file, Champions with its champions file."""
    found = report.themes
    if found is None:
        return []
    return [("themes", "Themes")] + ([("champions", "Champions")] if found.champions_path is not None else [])


def _values(doc: ReportDocument) -> dict[str, str]:
    return {"country": doc.country or NONE, "year": str(doc.year) if doc.year is not None else NONE,
            "type": doc.type or NONE}  # fmt: skip


def filter_options(report: Report) -> dict[str, dict[str, list[tuple[str, int]]]]:
    """The filters of the Themes and Champions pages: ``{"themes": {"kind": [(value, themes)], "country":
    ..., "year": ..., "type": ...}, "champions": {"country": ..., "year": ..., "type": ...}}``, each value
    with the number of themes (entities) having a member with it."""
    found = report.themes
    if found is None:
        return {"themes": {}, "champions": {}}
    pos = _positions(report)

    def options(groups: list[list[str]], kinds: list[str] | None) -> dict[str, list[tuple[str, int]]]:
        tally: dict[str, Counter[str]] = {"country": Counter(), "year": Counter(), "type": Counter()}
        for members in groups:
            seen = [_values(pos[i][1]) for i in members]
            for key, counter in tally.items():
                counter.update({v[key] for v in seen})
        out: dict[str, list[tuple[str, int]]] = {"kind": sorted(Counter(kinds).items())} if kinds is not None else {}
        out["country"] = sorted(tally["country"].items(), key=lambda kv: (-kv[1], kv[0]))
        out["year"] = sorted(tally["year"].items(), key=lambda kv: (kv[0] == NONE, natural_key(kv[0])))
        out["type"] = sorted(tally["type"].items(), key=lambda kv: (-kv[1], kv[0]))
        return out

    return {
        "themes": options([t.insight_ids for t in found.themes], [t.kind for t in found.themes]),
        "champions": options([e.insight_ids for e in found.champions], None),
    }
