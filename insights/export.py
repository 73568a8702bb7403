"""Flat tables from a run's output: CSV, Parquet, SQLite (for Datasette and sqlite-utils), or pandas.

Contract
--------
:func:`build_tables` reads ``OUT.jsonl`` and its ledger ``OUT.documents.jsonl`` (see :mod:`insights.output`)
and returns plain row dicts for the tables below, whose columns, keys and descriptions are defined
once in :mod:`insights.tables`. Ids are the output's own (:mod:`insights.ids`), so rows join across
tables and across exports of the same results.

==============  ==========================  ===========================================================
table           primary key                 one row per
==============  ==========================  ===========================================================
``insights``    ``insight_id``              line of ``OUT.jsonl``: the insight, its first quote with
                                            offsets, its evidence count and the document's metadata
``evidence``    ``insight_id``, ``n``       evidence span (``n`` from 1, in the line's order)
``documents``   ``document_id``             finished document (ledger line): counts, rejected, usage
``rejected``    ``document_id``, ``n``      insight the model proposed and the library did not keep
``tags``        ``document_id, key, n``     ``[[key:value]]`` tag value of a document with insights
``readme``      ``table_name, column_name`` column of the tables exported, described (``""``: the table)
==============  ==========================  ===========================================================

Themes and champions (``insights themes``) add five tables when a themes file is read: by default
``OUT.themes.jsonl`` beside the output when it exists (what ``insights themes OUT.jsonl`` writes), or the
file named by ``themes=`` (``--themes``), with its ``THEMES.champions.jsonl``; ``themes=False``
(``--no-themes``) reads none. They are read through their models (:func:`insights.theme_tables.load_themes`);
a theme or entity naming an insight that is not exported is left out whole and named in the notes.

======================  ==========================  ===================================================
``themes``              ``theme_id``                recurring theme: label, counts, tallies (FTS5 on
                                                    label and description)
``theme_members``       ``theme_id, insight_id``    member insight of a theme, with its first quote
``champions``           ``entity_id``               champion entity resolved across documents
``champion_aliases``    ``entity_id, alias``        way an entity is written, with its documents
``champion_mentions``   ``entity_id, insight_id``   champion insight resolved into an entity
======================  ==========================  ===================================================

``theme_members.theme_id`` refers to ``themes``, ``champion_*.entity_id`` to ``champions``, and their
``insight_id`` and ``document_id`` to ``insights`` and ``documents``. Booleans are 0 or 1.

Every ``document_id`` refers to ``documents``; ``evidence.insight_id`` to ``insights``. A document is in
the export when its ledger line is (as for resuming): insight lines without a matching ledger line
(an unfinished run) are left out and counted in :attr:`Tables.notes`. Without a ledger file (output
written to standard output), ``documents`` is made from the lines. Torn or invalid JSON lines are
skipped as the run itself skips them. A line repeating an ``insight_id`` already exported (identical
documents under two names share ids, see :mod:`insights.ids`) is left out and named in the notes.

Review: unless ``raw``, the decisions of ``OUT.decisions.jsonl`` (:mod:`insights.decisions`) are applied:
an insight rejected in review is left out (counted in the notes), an edited one has its edited fields
and evidence, and ``insights.review`` says ``accept`` or ``edit`` (null: not reviewed) with the
``reviewer``.

Metadata: ``insights.metadata`` is JSON text of every tag of the document (``{"key": [values]}``),
beside the ``title``, ``type``, ``year`` and ``country`` columns; ``tags`` has one row per value, for
faceting (the ledger holds no tags, so a document without insights has no tags). JSON columns
(``insights.metadata``, ``rejected.draft``) are JSON text in every format. Offsets:
``Document.text[start:end]`` of the loaded document is the located passage, as in the output.

Formats: ``csv`` and ``parquet`` write one file per table (``TABLE.csv``/``TABLE.parquet``) into a
folder; ``sqlite`` one file with primary and foreign keys, indexes on the foreign keys and FTS5
full-text search on ``insights(statement, quote)`` and ``evidence(quote)``. CSV is UTF-8 with a header
row, null as an empty cell. Everything is written beside its target and renamed into place, so a
failure leaves no partial file. Parquet needs the ``parquet`` extra (pyarrow); :func:`to_dataframe`
the ``pandas`` extra.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._optional import require
from .decisions import reviewed_lines
from .errors import ConfigError, OutputError
from .ids import line_insight_id
from .output import ResultKey, sidecar
from .tables import TABLES, Table, readme_rows
from .theme_tables import ThemeFiles, champion_tables, load_themes, theme_tables

if TYPE_CHECKING:  # pragma: no cover
    import pandas

Format = Literal["csv", "parquet", "sqlite"]
FORMATS: tuple[Format, ...] = ("csv", "parquet", "sqlite")
_KIND_FIELDS = ("category", "level", "name", "champion_type", "affiliation", "sector", "contribution",
                "what_was_tried", "why_it_failed", "lesson")  # fmt: skip


@dataclass
class Tables:
    """The rows of every table (in :data:`TABLES` order) and notes on what was left out."""

    rows: dict[str, list[dict[str, Any]]]
    notes: list[str] = field(default_factory=list)
    themes: Path | None = None  # the themes file read, if any

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        return {name: len(rows) for name, rows in self.rows.items()}


# ---------------------------------------------------------------------------------------------- reading
def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of every JSON object line; torn or invalid lines are skipped."""
    try:
        with open(path, encoding="utf-8") as fp:
            for number, text in enumerate(fp, start=1):
                try:
                    value = json.loads(text)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    yield number, value
    except FileNotFoundError:
        raise OutputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"{path}: cannot read: {exc}") from exc


_KEY_FIELDS = ("document_id", "content_hash", "prompt_version", "model")


def _key(line: dict[str, Any]) -> ResultKey:
    document_id, content_hash, prompt_version, model = (str(line.get(k) or "") for k in _KEY_FIELDS)
    return document_id, content_hash, prompt_version, model


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _insight_rows(out: Path, number: int, line: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    evidence = line.get("evidence")
    if not all(isinstance(line.get(k), str) for k in ("document_id", "kind", "statement")) or not (
        isinstance(evidence, list) and all(isinstance(e, dict) for e in evidence)
    ):
        raise OutputError(
            f"{out}: line {number} is not an insight line (needs document_id, kind, statement and evidence)"
        )
    iid = line_insight_id(line)
    first = evidence[0] if evidence else {}
    row: dict[str, Any] = {
        "insight_id": iid,
        "document_id": line["document_id"],
        "kind": line.get("kind"),
        "statement": line["statement"],
        **{name: line.get(name) for name in _KIND_FIELDS},
        **{name: first.get(name) for name in ("quote", "start", "end", "match", "section")},
        "evidence_count": len(evidence),
        **{name: line.get(name) for name in ("title", "type", "year", "country", "source")},
        "metadata": _json(line.get("metadata")),
        **{name: line.get(name) for name in ("content_hash", "model", "prompt_version")},
        "line": number,
        "review": (line.get("review") or {}).get("decision"),
        "reviewer": (line.get("review") or {}).get("reviewer"),
    }
    spans = [
        {
            "insight_id": iid,
            "n": n,
            "document_id": line["document_id"],
            **{name: e.get(name) for name in ("quote", "start", "end", "match", "score", "section", "model_quote")},
        }
        for n, e in enumerate(evidence, start=1)
    ]
    return row, spans


def _document_row(ledger: dict[str, Any], insights: int) -> dict[str, Any]:
    counts = ledger.get("counts") or {}
    provenance = ledger.get("provenance") or {}
    usage = provenance.get("usage") or {}
    return {
        **{
            name: ledger.get(name)
            for name in ("document_id", "title", "path", "source", "content_hash", "model", "prompt_version")
        },
        "insights": insights,
        "barriers": counts.get("barrier"),
        "enablers": counts.get("enabler"),
        "champions": counts.get("champion"),
        "failed_experiments": counts.get("failed_experiment"),
        "rejected": counts.get("rejected"),
        "chunks": provenance.get("chunks"),
        **{name: usage.get(name) for name in ("calls", "cached_calls", "input_tokens", "output_tokens", "cost_usd")},
        **{name: provenance.get(name) for name in ("latency_s", "extracted_at", "library_version", "schema_version")},
    }


def build_tables(
    out: str | os.PathLike[str],
    documents: str | os.PathLike[str] | None = None,
    *,
    raw: bool = False,
    decisions: str | os.PathLike[str] | None = None,
    themes: str | os.PathLike[str] | bool = True,
) -> Tables:
    """Read a run's output and ledger into the rows of :data:`TABLES` (see the module docstring).

    Args:
        out: the ``OUT.jsonl`` of ``insights extract``.
        documents: its ledger; default ``OUT.documents.jsonl`` beside it.
        raw: the model's output alone; by default the review decisions (:mod:`insights.decisions`) are
            applied: insights rejected in review are left out (and counted in the notes), edited fields
            are used, and the ``review`` and ``reviewer`` columns say which were accepted or edited.
        decisions: the decisions file (default ``OUT.decisions.jsonl`` beside ``out``).
        themes: the themes file of ``insights themes`` (``True``: ``OUT.themes.jsonl`` if it exists;
            ``False``: none); its tables are added when one is read.

    Returns:
        The rows of every table, and notes on lines left out.

    Raises:
        OutputError: ``out`` is missing or unreadable, or holds a JSON line that is not an insight line; a
            themes file given is missing or holds a line that is not a theme.
    """
    out = Path(out)
    ledger_path = Path(documents) if documents else sidecar(out, "documents")
    lines = list(_lines(out))
    notes: list[str] = []
    ledger: dict[str, dict[str, Any]] = {}
    if ledger_path.exists():
        for _, entry in _lines(ledger_path):
            if isinstance(entry.get("document_id"), str):
                ledger[entry["document_id"]] = entry  # the last line of a document wins
        finished = {_key(entry) for entry in ledger.values()}
        kept = [(n, line) for n, line in lines if _key(line) in finished]
        if len(kept) < len(lines):
            left = {str(line.get("document_id")) for n, line in lines if _key(line) not in finished}
            notes.append(
                f"{len(lines) - len(kept)} line(s) of {len(left)} document(s) have no line in {ledger_path} "
                "(an unfinished run?) and were left out; run the same insights extract again to finish them"
            )
        lines = kept
    else:
        notes.append(f"no ledger {ledger_path}: the documents table is made from the output lines")
        for _, line in lines:
            ledger.setdefault(str(line.get("document_id")), {k: line.get(k) for k in (*_KEY_FIELDS, "title", "source")})
    reviewed = reviewed_lines(out, [{**line, "_line": n} for n, line in lines], raw=raw, decisions=decisions)
    lines = [(int(line.pop("_line")), line) for line in reviewed.lines]
    if reviewed.summary():
        notes.append(reviewed.summary())

    insights: list[dict[str, Any]] = []
    evidence: list[dict[str, Any]] = []
    per_document: dict[str, int] = {}
    tags: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for number, line in lines:
        row, spans = _insight_rows(out, number, line)
        if row["insight_id"] in seen:
            notes.append(f"{out}: line {number} repeats insight {row['insight_id']} and was left out")
            continue
        seen.add(row["insight_id"])
        insights.append(row)
        evidence.extend(spans)
        per_document[row["document_id"]] = per_document.get(row["document_id"], 0) + 1
        if isinstance(line.get("metadata"), dict):
            tags.setdefault(row["document_id"], line["metadata"])

    rejected = [
        {
            "document_id": document_id,
            "n": n,
            "kind": item.get("kind"),
            "reason": item.get("reason"),
            "statement": (item.get("draft") or {}).get("statement"),
            "draft": _json(item.get("draft")),
        }
        for document_id, entry in ledger.items()
        for n, item in enumerate(entry.get("rejected") or [], start=1)
        if isinstance(item, dict)
    ]
    tag_rows = [
        {"document_id": document_id, "key": key, "n": n, "value": str(value)}
        for document_id, metadata in tags.items()
        for key, values in metadata.items()
        for n, value in enumerate(values if isinstance(values, list) else [values], start=1)
    ]
    rows = {
        "insights": insights,
        "evidence": evidence,
        "documents": [_document_row(entry, per_document.get(d, 0)) for d, entry in ledger.items()],
        "rejected": rejected,
        "tags": tag_rows,
    }
    found = load_themes(out, themes, seen)
    if found is not None:
        rows.update(_theme_rows(found, [line for _, line in lines]))
        notes.extend(found.notes)
    rows["readme"] = readme_rows([*rows, "readme"])
    return Tables(rows, notes, found.path if found is not None else None)


def _theme_rows(found: ThemeFiles, lines: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The theme tables' rows (the champion tables only when a champions file was read); booleans as 0/1."""
    tables = theme_tables(found.themes, lines)
    if found.champions_path is not None:
        tables.update(champion_tables(found.champions))
    return {
        name: [{k: int(v) if isinstance(v, bool) else v for k, v in row.items()} for row in rows]
        for name, rows in tables.items()
    }


# ---------------------------------------------------------------------------------------------- writing
def _check_target(path: Path, *, folder: bool) -> None:
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder (csv and parquet write one file per table)")
    if not folder and path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name for the SQLite database")


@contextlib.contextmanager
def _staged(path: Path, *, folder: bool) -> Iterator[Path]:
    """A temporary file or folder beside ``path``, renamed onto it only if the block succeeds."""
    parent = path.parent if str(path.parent) else Path(".")
    _check_target(path, folder=folder)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc}") from exc
    try:
        target = tmp if folder else tmp / path.name
        yield target
        if folder and path.is_dir():
            for item in tmp.iterdir():
                os.replace(item, path / item.name)
        else:
            os.replace(target, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_csv(tables: Tables, folder: Path) -> None:
    """Write ``TABLE.csv`` for every table into ``folder`` (UTF-8, header row, null as empty)."""
    with _staged(folder, folder=True) as tmp:
        for name, rows in tables.rows.items():
            with open(tmp / f"{name}.csv", "w", encoding="utf-8", newline="") as fp:
                writer = csv.DictWriter(fp, fieldnames=TABLES[name].names, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)


def write_parquet(tables: Tables, folder: Path) -> None:
    """Write ``TABLE.parquet`` for every table into ``folder``; column descriptions go in field metadata."""
    pa = require("pyarrow", "parquet", purpose="insights export --to parquet")
    pq = require("pyarrow.parquet", "parquet", purpose="insights export --to parquet")
    types = {"text": pa.string(), "integer": pa.int64(), "real": pa.float64()}
    with _staged(folder, folder=True) as tmp:
        for name, rows in tables.rows.items():
            table = TABLES[name]
            schema = pa.schema(
                [
                    pa.field(c.name, types[c.type], c.nullable, metadata={"description": c.description})
                    for c in table.columns
                ],
                metadata={"description": table.description},
            )
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp / f"{name}.parquet")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def create_statements(table: Table) -> list[str]:
    """SQLite statements creating ``table``, its foreign-key indexes and its FTS5 index."""
    columns = [f"{_q(c.name)} {c.type.upper()}{'' if c.nullable else ' NOT NULL'}" for c in table.columns]
    columns.append(f"PRIMARY KEY ({', '.join(map(_q, table.primary_key))})")
    columns += [f"FOREIGN KEY ({_q(a)}) REFERENCES {_q(t)}({_q(b)})" for a, t, b in table.foreign_keys]
    statements = [f"CREATE TABLE {_q(table.name)} (\n  " + ",\n  ".join(columns) + "\n)"]
    for column, _, _ in table.foreign_keys:
        if column != table.primary_key[0]:
            index = _q(f"idx_{table.name}_{column}")
            statements.append(f"CREATE INDEX {index} ON {_q(table.name)}({_q(column)})")
    if table.search:
        fts = _q(f"{table.name}_fts")
        statements.append(
            f"CREATE VIRTUAL TABLE {fts} USING fts5({', '.join(map(_q, table.search))}, content={_q(table.name)})"
        )
        statements.append(f"INSERT INTO {fts}({fts}) VALUES('rebuild')")
    return statements


def write_sqlite(tables: Tables, path: Path) -> None:
    """Write one SQLite database: keys, indexes, FTS5 and the ``readme`` table (replaces ``path``)."""
    order = ["documents", *[name for name in tables.rows if name != "documents"]]  # referenced tables first
    with _staged(path, folder=False) as tmp:
        db = sqlite3.connect(tmp)
        try:
            db.execute("PRAGMA foreign_keys = ON")
            with db:
                for name in order:
                    table = TABLES[name]
                    marks = ", ".join("?" for _ in table.columns)
                    db.execute(create_statements(table)[0])
                    db.executemany(
                        f"INSERT INTO {_q(name)} VALUES ({marks})",
                        ([row.get(c) for c in table.names] for row in tables.rows[name]),
                    )
                    for statement in create_statements(table)[1:]:
                        db.execute(statement)
        except sqlite3.Error as exc:
            raise OutputError(f"{path}: cannot write the SQLite database: {exc}") from exc
        finally:
            db.close()


# ------------------------------------------------------------------------------------------- public API
@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote: the path, the format, rows per table and notes on lines left out."""

    path: Path
    format: Format
    rows: dict[str, int]
    notes: list[str]
    themes: Path | None = None


def export(
    out: str | os.PathLike[str],
    to: Format,
    path: str | os.PathLike[str],
    *,
    raw: bool = False,
    decisions: str | os.PathLike[str] | None = None,
    themes: str | os.PathLike[str] | bool = True,
) -> ExportResult:
    """Write the tables of a run's output as CSV files, Parquet files or one SQLite database.

    Args:
        out: the ``OUT.jsonl`` of ``insights extract`` (its ledger ``OUT.documents.jsonl`` is read too).
        to: ``"csv"`` or ``"parquet"`` (a folder with one file per table) or ``"sqlite"`` (one file).
        path: the folder or file to write; an existing one is replaced only once the new one is complete.
        raw, decisions: as for :func:`build_tables` (by default the review decisions are applied).
        themes: the themes file to add as tables (``True``: ``OUT.themes.jsonl`` if it exists; ``False``:
            none).

    Returns:
        What was written.

    Raises:
        ConfigError: an unknown format, or the extra a format needs is not installed (the message names it).
        OutputError: the output cannot be read, or the target cannot be written.
    """
    if to not in FORMATS:
        raise ConfigError(f"unknown export format {to!r}; choose one of {', '.join(FORMATS)}")
    target = Path(path)
    if to == "parquet":
        require("pyarrow.parquet", "parquet", purpose="insights export --to parquet")  # before reading anything
    _check_target(target, folder=to != "sqlite")
    tables = build_tables(out, raw=raw, decisions=decisions, themes=themes)
    {"csv": write_csv, "parquet": write_parquet, "sqlite": write_sqlite}[to](tables, target)
    return ExportResult(target, to, tables.counts(), tables.notes, tables.themes)


def to_dataframe(
    out: str | os.PathLike[str], table: str = "insights", *, themes: str | os.PathLike[str] | bool = True
) -> pandas.DataFrame:
    """One table of a run's output as a pandas DataFrame (needs the ``pandas`` extra).

    Args:
        out: the ``OUT.jsonl`` of ``insights extract``.
        table: ``insights`` (default), ``evidence``, ``documents``, ``rejected``, ``tags``, ``readme``, or
            one of the theme tables (``themes``, ``theme_members``, ``champions``, ``champion_aliases``,
            ``champion_mentions``), which need a themes file.
        themes: the themes file (``True``: ``OUT.themes.jsonl`` if it exists; ``False``: none).

    Returns:
        The table, with the columns of :data:`TABLES` (integers as nullable ``Int64``).

    Raises:
        ConfigError: pandas is not installed, ``table`` is unknown, or a theme table without a themes file.
        OutputError: the output cannot be read.
    """
    pd = require("pandas", "pandas", purpose="insights.to_dataframe")
    if table not in TABLES:
        raise ConfigError(f"unknown table {table!r}; choose one of {', '.join(TABLES)}")
    definition = TABLES[table]
    rows = build_tables(out, themes=themes).rows
    if table not in rows:
        raise ConfigError(f"table {table!r} needs a themes file: run insights themes {out} first, or name one")
    frame = pd.DataFrame.from_records(rows[table], columns=definition.names)
    for c in definition.columns:
        if c.type == "integer":
            frame[c.name] = frame[c.name].astype("Int64")
        elif c.type == "real":
            frame[c.name] = frame[c.name].astype("float64")
    return frame
