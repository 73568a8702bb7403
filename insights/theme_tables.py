"""Themes and champions as plain rows and page data, for the exports and the HTML report.

Export tables (one dict per row; lists joined with ``"; "``, tallies written ``value (count)``):

``themes``            one row per :class:`~insights.themes.Theme`
``theme_members``     one row per (theme, member insight), with the member's document, statement,
                      category, level, country, year, type and first evidence passage
``champions``         one row per :class:`~insights.champions.ChampionEntity`
``champion_aliases``  one row per (entity, alias): how it is written and in which documents
``champion_mentions`` one row per (entity, champion insight): the mention's document, name as written,
                      contribution and first evidence passage

:func:`report_data` gives a themes page what it needs: the values to filter by (country, year, type)
and each theme with every member's evidence passages to highlight in its document.

Reading them back (``insights export``, ``insights report``)
-------------------------------------------------------------
:func:`load_themes` reads the file ``insights themes`` wrote (``THEMES.jsonl``, by default
``OUT.themes.jsonl`` beside the output) and its ``THEMES.champions.jsonl`` through the models
:class:`~insights.themes.Theme` and :class:`~insights.champions.ChampionEntity`. A theme or entity that
names an insight not in the output being exported or reported (the file was made from another run) is
left out whole, and counted in :attr:`ThemeFiles.notes`, so every member of what is kept exists.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .champions import ChampionEntity
from .errors import OutputError
from .output import sidecar
from .themes import Count, Theme, as_dict, record_id

_Model = TypeVar("_Model", bound=BaseModel)


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
    """Rows of the export tables ``champions``, ``champion_aliases`` and ``champion_mentions`` (plain dicts)."""
    rows: list[dict[str, Any]] = []
    alias_rows: list[dict[str, Any]] = []
    mention_rows: list[dict[str, Any]] = []
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
        for c in e.contributions:
            mention_rows.append(
                {
                    "entity_id": e.entity_id,
                    "insight_id": c.insight_id,
                    "document_id": c.document_id,
                    "country": c.country,
                    "name": c.name,
                    "contribution": c.contribution,
                    "statement": c.statement,
                    "quote": c.quote,
                    "start": c.start,
                    "end": c.end,
                    "redacted": c.redacted,
                }  # fmt: skip
            )
    return {"champions": rows, "champion_aliases": alias_rows, "champion_mentions": mention_rows}


# ---------------------------------------------------------------------------------------------- reading
@dataclass
class ThemeFiles:
    """Themes and champion entities read back for an output (see :func:`load_themes`)."""

    path: Path
    themes: list[Theme] = field(default_factory=list)
    champions: list[ChampionEntity] = field(default_factory=list)
    champions_path: Path | None = None
    notes: list[str] = field(default_factory=list)


def _read_models(path: Path, model: type[_Model]) -> list[_Model]:
    out: list[_Model] = []
    try:
        with open(path, encoding="utf-8") as fp:
            for number, text in enumerate(fp, start=1):
                if not text.strip():
                    continue
                try:
                    out.append(model.model_validate(json.loads(text)))
                except (ValueError, ValidationError) as exc:
                    what = "theme" if model is Theme else "champion entity"
                    raise OutputError(f"{path}: line {number} is not a {what} line ({exc})".split("\n")[0]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"{path}: cannot read: {exc}") from exc
    return out


def load_themes(
    out: str | os.PathLike[str], themes: str | os.PathLike[str] | bool, known: Iterable[str]
) -> ThemeFiles | None:
    """The themes and champion entities to show beside output ``out``, or ``None``.

    Args:
        out: the run's ``OUT.jsonl``.
        themes: ``True``: ``OUT.themes.jsonl`` (the default file of ``insights themes OUT.jsonl``) when it
            exists; a path: that file (it must exist); ``False``: none.
        known: the ``insight_id`` of every insight of the output; themes and entities naming another are
            left out and counted in the notes.

    Raises:
        OutputError: a file given does not exist, or holds a line that is not a theme (entity).
    """
    if themes is False:
        return None
    path = sidecar(Path(out), "themes") if themes is True else Path(themes)
    if not path.is_file():
        if themes is True:
            return None
        raise OutputError(f"{path}: no such themes file (insights themes {out} writes {sidecar(Path(out), 'themes')})")
    files = ThemeFiles(path, _read_models(path, Theme))
    champions_path = sidecar(path, "champions")
    if champions_path.is_file():
        files.champions_path, files.champions = champions_path, _read_models(champions_path, ChampionEntity)
    ids = set(known)
    kept_themes = [t for t in files.themes if ids.issuperset(t.insight_ids)]
    kept_entities = [e for e in files.champions if ids.issuperset(e.insight_ids)]
    for what, before, after, where in (
        ("themes", files.themes, kept_themes, path),
        ("champion entities", files.champions, kept_entities, champions_path),
    ):
        if len(after) < len(before):
            files.notes.append(
                f"{len(before) - len(after)} of {len(before)} {what} in {where} name insights that are not in {out} "
                f"(made from another run?) and were left out; run insights themes {out} again"
            )
    files.themes, files.champions = kept_themes, kept_entities
    return files
