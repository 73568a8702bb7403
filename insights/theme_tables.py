"""Themes and champions as plain rows and page data, for the exports and the HTML report.

Export tables (one dict per row; lists joined with ``"; "``, tallies written ``value (count)``):

``themes``            one row per :class:`~insights.themes.Theme`
``theme_members``     one row per (theme, member insight), with the member's document, statement,
                      category, level, country, year, type and first evidence passage
``champions``         one row per :class:`~insights.champions.ChampionEntity`
``champion_aliases``  one row per (entity, alias): how it is written and in which documents

:func:`report_data` gives a themes page what it needs: the values to filter by (country, year, type)
and each theme with every member's evidence passages to highlight in its document.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .champions import ChampionEntity
from .themes import Count, Theme, as_dict, record_id


def _tally(counts: list[Count]) -> str:
    return "; ".join(f"{c.value} ({c.count})" for c in counts)


def theme_tables(found: Iterable[Theme], records: Iterable[Any] = ()) -> dict[str, list[dict[str, Any]]]:
    """Rows of the export tables ``themes`` and ``theme_members`` (plain dicts, one per row).

    ``themes``: one row per theme, lists joined with ``"; "`` and tallies as ``value (count)``.
    ``theme_members``: one row per (theme, member), with the member's document, statement, category,
    level, country, year, type and first evidence passage when ``records`` are given.
    """
    by_id = {record_id(r): r for r in map(as_dict, records)}
    themes_rows: list[dict[str, Any]] = []
    member_rows: list[dict[str, Any]] = []
    for t in found:
        themes_rows.append(
            {
                "theme_id": t.theme_id,
                "kind": t.kind,
                "label": t.label,
                "description": t.description,
                "label_source": t.label_source,
                "n_members": t.n_members,
                "n_documents": t.n_documents,
                "n_countries": t.n_countries,
                "n_years": t.n_years,
                "countries": _tally(t.countries),
                "years": _tally(t.years),
                "types": _tally(t.types),
                "categories": _tally(t.categories),
                "levels": _tally(t.levels),
                "terms": _tally(t.terms),
                "min_pair_similarity": t.min_pair_similarity,
                "vectors": t.vectors,
                "representatives": "; ".join(r.insight_id for r in t.representatives),
            }  # fmt: skip
        )
        shown = {r.insight_id for r in t.representatives}
        for iid in t.insight_ids:
            r = by_id.get(iid, {})
            ev = (r.get("evidence") or [{}])[0]
            member_rows.append(
                {
                    "theme_id": t.theme_id,
                    "insight_id": iid,
                    "document_id": r.get("document_id", ""),
                    "representative": iid in shown,
                    "statement": r.get("statement", ""),
                    "category": r.get("category", ""),
                    "level": r.get("level", ""),
                    "country": r.get("country", ""),
                    "year": r.get("year"),
                    "type": r.get("type", ""),
                    "title": r.get("title", ""),
                    "quote": ev.get("quote", ""),
                    "start": ev.get("start"),
                    "end": ev.get("end"),
                }  # fmt: skip
            )
    return {"themes": themes_rows, "theme_members": member_rows}


def report_data(found: Iterable[Theme], records: Iterable[Any]) -> dict[str, Any]:
    """What a themes page needs, as plain data: filter values and each theme with its members' evidence.

    Returns ``{"filters": {"country": [...], "year": [...], "type": [...]}, "themes": [...]}``; each theme
    is :class:`Theme` as a dict plus ``members``: every member's document id, title, country, year,
    type, statement and all evidence passages (quote, start, end, section) to highlight in the document.
    A page filters a theme by a value when any of its members has that value.
    """
    by_id = {record_id(r): r for r in map(as_dict, records)}
    out: list[dict[str, Any]] = []
    filters: dict[str, set[str]] = {"country": set(), "year": set(), "type": set()}
    for t in found:
        members = []
        for iid in t.insight_ids:
            r = by_id.get(iid)
            if r is None:
                continue
            for key in filters:
                if r.get(key) not in (None, ""):
                    filters[key].add(str(r[key]))
            members.append(
                {
                    "insight_id": iid,
                    "document_id": r.get("document_id", ""),
                    "title": r.get("title", ""),
                    "country": r.get("country", ""),
                    "year": r.get("year"),
                    "type": r.get("type", ""),
                    "statement": r.get("statement", ""),
                    "evidence": [{k: e.get(k) for k in ("quote", "start", "end", "section")} for e in r["evidence"]],
                }  # fmt: skip
            )
        out.append({**t.model_dump(mode="json"), "members": members})
    return {"filters": {k: sorted(v) for k, v in filters.items()}, "themes": out}


def champion_tables(entities: Iterable[ChampionEntity]) -> dict[str, list[dict[str, Any]]]:
    """Rows of the export tables ``champions`` and ``champion_aliases`` (plain dicts)."""
    rows: list[dict[str, Any]] = []
    alias_rows: list[dict[str, Any]] = []
    for e in entities:
        rows.append(
            {
                "entity_id": e.entity_id,
                "name": e.name,
                "acronym": e.acronym,
                "champion_type": e.champion_type,
                "n_mentions": e.n_mentions,
                "n_documents": e.n_documents,
                "n_countries": e.n_countries,
                "countries": _tally(e.countries),
                "sectors": _tally(e.sectors),
                "affiliations": _tally(e.affiliations),
                "aliases": "; ".join(a.alias for a in e.aliases),
                "documents": "; ".join(e.documents),
                "merges": "; ".join(f"{m.merge_id} {m.rule}" for m in e.merges),
                "pseudonymised": e.pseudonymised,
            }  # fmt: skip
        )
        for a in e.aliases:
            alias_rows.append(
                {
                    "entity_id": e.entity_id,
                    "alias": a.alias,
                    "mentions": a.mentions,
                    "documents": "; ".join(a.documents),
                }
            )
    return {"champions": rows, "champion_aliases": alias_rows}
