"""The tables of ``insights export``: one definition of every table, key and column description.

:data:`TABLES` is used by every export format (:mod:`insights.export`), by the ``readme`` table
(:func:`readme_rows`) and by ``insights schema export-TABLE`` (:func:`table_json_schema`). Columns may be
added, never renamed. Keys: ``insights.insight_id``; ``evidence (insight_id, n)``; ``documents.document_id``;
``rejected (document_id, n)``; ``tags (document_id, key, n)``; ``readme (table_name, column_name)``. Every
``document_id`` refers to ``documents``, ``evidence.insight_id`` to ``insights``.

:data:`THEME_TABLES` (rows from :mod:`insights.theme_tables`) are exported only with a themes file:
``themes.theme_id``; ``theme_members (theme_id, insight_id)``; ``champions.entity_id``;
``champion_aliases (entity_id, alias)``; ``champion_mentions (entity_id, insight_id)``. Their
``theme_id``/``entity_id`` refer to ``themes``/``champions``, their ``insight_id`` to ``insights``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

ColumnType = Literal["text", "integer", "real"]


@dataclass(frozen=True)
class Column:
    """One column: its name, SQL type, description; ``json`` marks JSON text."""

    name: str
    type: ColumnType
    description: str
    nullable: bool = True
    json: bool = False


@dataclass(frozen=True)
class Table:
    """One table: columns, primary key, foreign keys ``(column, table, column)``, full-text columns."""

    name: str
    description: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[tuple[str, str, str], ...] = ()
    search: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        """The column names, in order."""
        return [c.name for c in self.columns]


def _c(name: str, type_: ColumnType, description: str, *, nullable: bool = True, json: bool = False) -> Column:
    return Column(name, type_, description, nullable, json)


_DOC = "The document's id (documents.document_id)."
_KIND_ONLY = "; null for other kinds."
TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "insights",
            "One row per line of OUT.jsonl: an insight, its first quote and the document's metadata.",
            (
                _c("insight_id", "text", "Stable id of the insight (recipe in insights/ids.py).", nullable=False),
                _c("document_id", "text", _DOC, nullable=False),
                _c("kind", "text", "barrier, enabler, champion or failed_experiment.", nullable=False),
                _c("statement", "text", "The insight in one sentence, in the model's words.", nullable=False),
                _c("category", "text", "Barrier/enabler category (one shared taxonomy)" + _KIND_ONLY),
                _c("level", "text", "Barrier/enabler level (individual, organizational...)" + _KIND_ONLY),
                _c("name", "text", "Champion's or failed experiment's name" + _KIND_ONLY),
                _c("champion_type", "text", "Champion: person, organization or team" + _KIND_ONLY),
                _c("affiliation", "text", "Champion's organization, if stated" + _KIND_ONLY),
                _c("sector", "text", "Champion's sector" + _KIND_ONLY),
                _c("contribution", "text", "What the champion did" + _KIND_ONLY),
                _c("what_was_tried", "text", "Failed experiment: what was tried" + _KIND_ONLY),
                _c("why_it_failed", "text", "Failed experiment: why it failed" + _KIND_ONLY),
                _c("lesson", "text", "Failed experiment: the lesson drawn, if stated" + _KIND_ONLY),
                _c("quote", "text", "The first evidence quote (all of them are in the evidence table)."),
                _c("start", "integer", "Offset of the first quote's passage in the document text."),
                _c("end", "integer", "End offset (exclusive) of the first quote's passage."),
                _c("match", "text", "How the first quote was found: exact, normalized or fuzzy."),
                _c("section", "text", "The section or question the first quote falls in."),
                _c("evidence_count", "integer", "How many evidence passages the insight has.", nullable=False),
                _c("title", "text", "The document's title."),
                _c("type", "text", "The document's type tag (learningplan, experiment, blog...)."),
                _c("year", "integer", "The document's year tag, when it is a whole number."),
                _c("country", "text", "The document's first country tag."),
                _c("source", "text", "The document's path relative to the run's input, when the output has it."),
                _c("metadata", "text", 'Every tag of the document as JSON: {"key": ["value", ...]}.', json=True),
                _c("content_hash", "text", "SHA-256 of the document's title, text and metadata."),
                _c("model", "text", "The model that answered."),
                _c("prompt_version", "text", "Hash of the prompt files the answer was asked with."),
                _c("line", "integer", "The line of OUT.jsonl this row comes from (from 1).", nullable=False),
                _c(
                    "review",
                    "text",
                    "The review decision applied: accept or edit (null: not reviewed; rejected "
                    "insights are left out). See insights review.",
                ),
                _c("reviewer", "text", "Who made that decision."),
            ),
            ("insight_id",),
            (("document_id", "documents", "document_id"),),
            ("statement", "quote"),
        ),
        Table(
            "evidence",
            "One row per evidence passage of an insight; document text[start:end] is the located passage.",
            (
                _c("insight_id", "text", "The insight it supports (insights.insight_id).", nullable=False),
                _c("n", "integer", "Its position among the insight's evidence, from 1.", nullable=False),
                _c("document_id", "text", _DOC, nullable=False),
                _c("quote", "text", "The quote.", nullable=False),
                _c("start", "integer", "Offset of the located passage in the document text.", nullable=False),
                _c("end", "integer", "End offset of the located passage, exclusive.", nullable=False),
                _c("match", "text", "How it was found: exact, normalized or fuzzy.", nullable=False),
                _c("score", "real", "Similarity of quote and passage, 0-100 (100 unless fuzzy)."),
                _c("section", "text", "The section or question the passage falls in."),
                _c("model_quote", "text", "The quote in the model's own words, when the output records it."),
            ),
            ("insight_id", "n"),
            (("insight_id", "insights", "insight_id"), ("document_id", "documents", "document_id")),
            ("quote",),
        ),
        Table(
            "documents",
            "One row per finished document (OUT.documents.jsonl): counts, rejected count, usage.",
            (
                _c(
                    "document_id",
                    "text",
                    "The document's id: file name without extension, or record id.",
                    nullable=False,
                ),
                _c("title", "text", "The document's title."),
                _c("path", "text", "The file it was read from."),
                _c("source", "text", "Its path relative to the run's input, when the output has it."),
                _c("content_hash", "text", "SHA-256 of the document's title, text and metadata."),
                _c("model", "text", "The model that answered."),
                _c("prompt_version", "text", "Hash of the prompt files the answer was asked with."),
                _c("insights", "integer", "Rows of the insights table for this document.", nullable=False),
                _c("barriers", "integer", "Barriers kept."),
                _c("enablers", "integer", "Enablers kept."),
                _c("champions", "integer", "Champions kept."),
                _c("failed_experiments", "integer", "Failed experiments kept."),
                _c("rejected", "integer", "Insights proposed and not kept (rows of the rejected table)."),
                _c("chunks", "integer", "Chunks the document was split into."),
                _c("calls", "integer", "Model calls made, re-asks and chunks included."),
                _c("cached_calls", "integer", "Of those, calls answered from the cache."),
                _c("input_tokens", "integer", "Input tokens spent."),
                _c("output_tokens", "integer", "Output tokens spent."),
                _c("cost_usd", "real", "Estimated cost in US dollars (null: no price for the model)."),
                _c("latency_s", "real", "Seconds spent on the model calls."),
                _c("extracted_at", "text", "When the result was made (UTC, ISO 8601)."),
                _c("library_version", "text", "Version of insights that made it."),
                _c("schema_version", "text", "Version of the record shapes."),
            ),
            ("document_id",),
        ),
        Table(
            "rejected",
            "One row per insight the model proposed that the library did not keep, with the reason.",
            (
                _c("document_id", "text", _DOC, nullable=False),
                _c("n", "integer", "Its position in the document's rejected list, from 1.", nullable=False),
                _c("kind", "text", "The kind of insight proposed."),
                _c("reason", "text", "Why it was not kept."),
                _c("statement", "text", "The proposed statement."),
                _c("draft", "text", "The insight as the model returned it, as JSON.", json=True),
            ),
            ("document_id", "n"),
            (("document_id", "documents", "document_id"),),
        ),
        Table(
            "tags",
            "One row per [[key:value]] tag value of each document that has insights (for faceting).",
            (
                _c("document_id", "text", _DOC, nullable=False),
                _c("key", "text", "The tag key, e.g. country, sdgs, thematic_areas.", nullable=False),
                _c("n", "integer", "The value's position among the key's values, from 1.", nullable=False),
                _c("value", "text", "The value (e-mail addresses redacted).", nullable=False),
            ),
            ("document_id", "key", "n"),
            (("document_id", "documents", "document_id"),),
        ),
        Table(
            "readme",
            "What each table and column holds (column_name empty: the table itself).",
            (
                _c("table_name", "text", "The table.", nullable=False),
                _c("column_name", "text", "The column, or empty for the table itself.", nullable=False),
                _c("type", "text", "text, integer or real; JSON text is marked json.", nullable=False),
                _c("description", "text", "What it holds.", nullable=False),
            ),
            ("table_name", "column_name"),
        ),
    )
}

_TALLY = " (value (count); ...), counted over the members."
_THEME = "The theme (themes.theme_id)."
_ENTITY = "The champion entity (champions.entity_id)."
_INSIGHT = "The insight (insights.insight_id)."
#: The tables of ``insights themes``' output, exported beside the others when a themes file is read.
THEME_TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "themes",
            "One row per recurring theme (insights themes): members of one kind and category from several documents.",
            (
                _c("theme_id", "text", "Stable id of the theme: a digest of its kind and member ids.", nullable=False),
                _c("kind", "text", "barrier, enabler or failed_experiment.", nullable=False),
                _c("label", "text", "Short label: terms the members share, or a model's label.", nullable=False),
                _c("description", "text", "What the theme's members have in common (counts only, offline)."),
                _c("label_source", "text", "offline, model or offline-fallback."),
                _c("n_members", "integer", "Member insights (rows of theme_members).", nullable=False),
                _c("n_documents", "integer", "Distinct documents of the members (at least 2).", nullable=False),
                _c("n_countries", "integer", "Distinct countries of the members' documents.", nullable=False),
                _c("n_years", "integer", "Distinct years of the members' documents.", nullable=False),
                _c("countries", "text", "Countries" + _TALLY),
                _c("years", "text", "Years" + _TALLY),
                _c("types", "text", "Document types" + _TALLY),
                _c("categories", "text", "Categories" + _TALLY),
                _c("levels", "text", "Levels" + _TALLY),
                _c("terms", "text", "Shared terms (term (members using it); ...)."),
                _c("min_pair_similarity", "real", "The lowest cosine similarity between two members."),
                _c("vectors", "text", "The sentence vectors used: wordllama or tfidf."),
                _c("representatives", "text", "The ids of the members shown first (most central), '; '-joined."),
            ),
            ("theme_id",),
            search=("label", "description"),
        ),
        Table(
            "theme_members",
            "One row per (theme, member insight), with the member's document, statement and first passage.",
            (
                _c("theme_id", "text", _THEME, nullable=False),
                _c("insight_id", "text", _INSIGHT, nullable=False),
                _c("document_id", "text", _DOC, nullable=False),
                _c("representative", "integer", "1 if the member is a representative, else 0.", nullable=False),
                _c("statement", "text", "The member's statement."),
                _c("category", "text", "The member's category (barriers and enablers)."),
                _c("level", "text", "The member's level (barriers and enablers)."),
                _c("country", "text", "The document's first country tag."),
                _c("year", "integer", "The document's year tag."),
                _c("type", "text", "The document's type tag."),
                _c("title", "text", "The document's title."),
                _c("quote", "text", "The member's first evidence quote."),
                _c("start", "integer", "Offset of the first quote's passage in the document text."),
                _c("end", "integer", "End offset (exclusive) of the first quote's passage."),
            ),
            ("theme_id", "insight_id"),
            (
                ("theme_id", "themes", "theme_id"),
                ("insight_id", "insights", "insight_id"),
                ("document_id", "documents", "document_id"),
            ),
        ),
        Table(
            "champions",
            "One row per champion entity: a person, organisation or team resolved across documents.",
            (
                _c("entity_id", "text", "Stable id of the entity: a digest of its mentions' ids.", nullable=False),
                _c("name", "text", "The name shown (the most mentioned), or a pseudonym.", nullable=False),
                _c("acronym", "text", "The acronym its mentions declare, if any."),
                _c("champion_type", "text", "person, organization or team.", nullable=False),
                _c("n_mentions", "integer", "Its champion insights (rows of champion_mentions).", nullable=False),
                _c("n_documents", "integer", "Distinct documents that name it.", nullable=False),
                _c("n_countries", "integer", "Distinct countries of those documents.", nullable=False),
                _c("countries", "text", "Countries (value (count); ...), counted over the mentions."),
                _c("sectors", "text", "Sectors (value (count); ...), counted over the mentions."),
                _c("affiliations", "text", "Affiliations (value (count); ...), counted over the mentions."),
                _c("aliases", "text", "Every way it is written, '; '-joined (rows of champion_aliases)."),
                _c("documents", "text", "The ids of the documents that name it, '; '-joined."),
                _c("merges", "text", "The merges that joined its aliases: 'merge_id rule; ...'."),
                _c("pseudonymised", "integer", "1 if a person's names became a pseudonym, else 0.", nullable=False),
            ),
            ("entity_id",),
            search=("name", "aliases"),
        ),
        Table(
            "champion_aliases",
            "One row per way a champion entity is written, with its mentions and documents.",
            (
                _c("entity_id", "text", _ENTITY, nullable=False),
                _c("alias", "text", "The name as written (or a numbered pseudonym).", nullable=False),
                _c("mentions", "integer", "Champion insights that write it so.", nullable=False),
                _c("documents", "text", "The ids of the documents that write it so, '; '-joined."),
            ),
            ("entity_id", "alias"),
            (("entity_id", "champions", "entity_id"),),
        ),
        Table(
            "champion_mentions",
            "One row per champion insight resolved into an entity: the link from champions to insights.",
            (
                _c("entity_id", "text", _ENTITY, nullable=False),
                _c("insight_id", "text", _INSIGHT, nullable=False),
                _c("document_id", "text", _DOC, nullable=False),
                _c("country", "text", "The document's first country tag."),
                _c("name", "text", "The name as this mention writes it (or the pseudonym)."),
                _c("contribution", "text", "What the champion did, as this mention says."),
                _c("statement", "text", "The champion insight's statement."),
                _c("quote", "text", "The mention's first evidence quote."),
                _c("start", "integer", "Offset of the first quote's passage in the document text."),
                _c("end", "integer", "End offset (exclusive) of the first quote's passage."),
                _c("redacted", "integer", "1 if person names were replaced in its texts, else 0.", nullable=False),
            ),
            ("entity_id", "insight_id"),
            (
                ("entity_id", "champions", "entity_id"),
                ("insight_id", "insights", "insight_id"),
                ("document_id", "documents", "document_id"),
            ),
        ),
    )
}
TABLES.update(THEME_TABLES)


def readme_rows(names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The ``readme`` table: one row per table (empty ``column_name``) and per column; of the tables
    ``names`` only, when given."""
    rows = []
    for table in TABLES.values() if names is None else [TABLES[n] for n in names]:
        keys = f" Primary key: {', '.join(table.primary_key)}."
        rows.append({"table_name": table.name, "column_name": "", "type": "table",
                     "description": table.description + keys})  # fmt: skip
        for c in table.columns:
            kind = f"{c.type}{' (json)' if c.json else ''}{'' if c.nullable else ', never null'}"
            rows.append({"table_name": table.name, "column_name": c.name, "type": kind, "description": c.description})
    return rows


def table_json_schema(name: str) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one row of table ``name``, as :func:`build_tables` makes it."""
    table = TABLES[name]
    types = {"text": "string", "integer": "integer", "real": "number"}
    properties = {
        c.name: {"type": [types[c.type], "null"] if c.nullable else types[c.type], "description": c.description}
        for c in table.columns
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{name} table row",
        "description": f"{table.description} Primary key: {', '.join(table.primary_key)}. In CSV every value "
        "is text and null is an empty cell.",
        "type": "object",
        "properties": properties,
        "required": table.names,
        "additionalProperties": False,
    }
