"""``insights export`` and ``insights.to_dataframe``: flat tables joined by ids, in CSV, Parquet and SQLite.

The run: the seeds, the test documents and (when ``../shared/corpus`` is present) 20 shared-corpus
documents, extracted by the real CLI against the loopback reference server, then extracted again from the
cache alone. Parquet, pandas and Datasette tests need their extras (installed by ``pip install .[dev]``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import REPO, SEEDS, SHARED_CORPUS

import insights
from insights import cli
from insights.errors import ConfigError, DocumentError, OutputError
from insights.export import Tables, build_tables, export, to_dataframe, write_sqlite
from insights.grounding import normalize
from insights.output import read_jsonl
from insights.tables import TABLES, THEME_TABLES
from insights.testing.server import ReferenceServer

KEY = "sk-test-FAKEKEY0123456789abcdef"
#: The tables of a run without a themes file (the theme tables are tested in test_report_themes.py).
CORE = {name: table for name, table in TABLES.items() if name not in THEME_TABLES}
TEST_DOCUMENTS = REPO / "tests" / "data" / "documents"


def _corpus(folder: Path, shared: int) -> Path:
    """Seeds, test documents and up to ``shared`` shared-corpus files, no two with the same content (the
    test documents are copies of shared ones under other names; see test_identical_documents...)."""
    folder.mkdir()
    for path in [*SEEDS.iterdir(), *TEST_DOCUMENTS.iterdir()]:
        shutil.copy(path, folder / path.name)
    seen = {d.content_hash for d in insights.load_corpus(folder)}
    picked = 0
    if SHARED_CORPUS.is_dir():
        for path in sorted(p for p in SHARED_CORPUS.iterdir() if p.is_file()):
            if picked == shared:
                break
            try:
                doc = insights.load_document(path)
            except DocumentError:
                continue
            if doc.content_hash not in seen and not (folder / path.name).exists():
                seen.add(doc.content_hash)
                shutil.copy(path, folder / path.name)
                picked += 1
    return folder


def _extract(folder: Path, out: Path, server: ReferenceServer, cache: Path) -> None:
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith(("OPENAI_", "INSIGHTS_"))]:
            env.delenv(name)
        env.setenv("OPENAI_BASE_URL", server.url)
        env.setenv("OPENAI_API_KEY", KEY)
        env.setenv("INSIGHTS_CACHE", str(cache))
        assert cli.main(["extract", str(folder), "-o", str(out), "-q"]) == 0


def _run(tmp: Path, shared: int) -> SimpleNamespace:
    folder = _corpus(tmp / "docs", shared)
    with ReferenceServer() as server:
        _extract(folder, tmp / "out.jsonl", server, tmp / "cache.db")
        asked = server.count
        _extract(folder, tmp / "again.jsonl", server, tmp / "cache.db")  # from the cache alone
        assert server.count == asked
    return SimpleNamespace(
        folder=folder,
        out=tmp / "out.jsonl",
        again=tmp / "again.jsonl",
        lines=list(read_jsonl(tmp / "out.jsonl")),
        ledger=list(read_jsonl(tmp / "out.documents.jsonl")),
        tables=build_tables(tmp / "out.jsonl"),
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    return _run(tmp_path_factory.mktemp("export"), shared=20)


@pytest.fixture(scope="module")
def db(run: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "export.db"
    assert cli.main(["export", str(run.out), "--to", "sqlite", str(path)]) == 0
    return path


def check_tables(run: SimpleNamespace) -> None:
    """The promises of the export over one run (shared by the default and the whole-corpus test)."""
    insights_rows, evidence = run.tables.rows["insights"], run.tables.rows["evidence"]
    # One row per output line, in order, with the line's id and first quote.
    assert len(insights_rows) == len(run.lines) > 0
    assert [r["insight_id"] for r in insights_rows] == [line["insight_id"] for line in run.lines]
    assert [r["line"] for r in insights_rows] == list(range(1, len(run.lines) + 1))
    for row, line in zip(insights_rows, run.lines, strict=True):
        assert (row["statement"], row["kind"], row["evidence_count"]) == (
            line["statement"], line["kind"], len(line["evidence"]),
        )  # fmt: skip
        assert (row["quote"], row["start"], row["end"]) == tuple(
            line["evidence"][0][k] for k in ("quote", "start", "end")
        )
        assert json.loads(row["metadata"]) == line["metadata"]
    # Every evidence row's offsets index its quote in the loaded document.
    assert len(evidence) == sum(len(line["evidence"]) for line in run.lines)
    paths = {d["document_id"]: d["path"] for d in run.tables.rows["documents"]}
    texts = {doc_id: insights.load_document(path).text for doc_id, path in paths.items()}
    matches = set()
    for row in evidence:
        passage = texts[row["document_id"]][row["start"] : row["end"]]
        matches.add(row["match"])
        if row["match"] == "exact" or row.get("model_quote") is not None:
            assert passage == row["quote"]
        else:
            assert normalize(passage).strip() and row["score"] >= 90
            assert row["match"] == "fuzzy" or normalize(row["quote"]).strip(" \"'.,;:") in normalize(passage)
    assert "exact" in matches
    # Documents: the ledger, with counts that agree with the other tables.
    documents = {d["document_id"]: d for d in run.tables.rows["documents"]}
    assert set(documents) == {d["document_id"] for d in run.ledger}
    for d in run.ledger:
        row = documents[d["document_id"]]
        kept = sum(d["counts"][k] for k in ("barrier", "enabler", "champion", "failed_experiment"))
        assert row["insights"] == kept == sum(1 for r in insights_rows if r["document_id"] == d["document_id"])
        assert row["rejected"] == len(d["rejected"]) == d["counts"]["rejected"]
    assert len(run.tables.rows["rejected"]) == sum(len(d["rejected"]) for d in run.ledger)
    # Ids are identical on a cached re-run (lines come in the order documents finish).
    again = build_tables(run.again).rows
    assert sorted(r["insight_id"] for r in again["insights"]) == sorted(r["insight_id"] for r in insights_rows)
    key = lambda r: (r["insight_id"], r["n"])  # noqa: E731
    assert sorted(again["evidence"], key=key) == sorted(evidence, key=key)


def test_tables_hold_every_line_and_every_span_joined_by_ids(run: SimpleNamespace) -> None:
    assert run.tables.notes == []
    check_tables(run)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_CORPUS.is_dir(), reason="shared corpus not present (../shared/corpus)")
def test_the_whole_shared_corpus(tmp_path: Path) -> None:
    whole = _run(tmp_path, shared=10_000)
    assert len(whole.ledger) > 250
    check_tables(whole)


def test_sqlite_has_keys_full_text_search_and_a_readme(run: SimpleNamespace, db: Path) -> None:
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        for name, table in CORE.items():
            info = con.execute(f'PRAGMA table_info("{name}")').fetchall()
            assert [c[1] for c in info] == table.names
            assert [c[1] for c in sorted(info, key=lambda c: c[5]) if c[5]] == list(table.primary_key)
            fks = {(f[3], f[2], f[4]) for f in con.execute(f'PRAGMA foreign_key_list("{name}")')}
            assert fks == set(table.foreign_keys)
            assert con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] == len(run.tables.rows[name])
        word = "buzzwords"  # in a seed's failed experiment: statement and quote
        hits = [r[0] for r in con.execute("SELECT statement FROM insights_fts WHERE insights_fts MATCH ?", (word,))]
        assert hits and all(word in h.lower() for h in hits)
        quotes = con.execute("SELECT quote FROM evidence_fts WHERE evidence_fts MATCH 'buzzwords'").fetchall()
        assert quotes and all("buzzwords" in q[0] for q in quotes)
        readme = {(t, c) for t, c in con.execute("SELECT table_name, column_name FROM readme")}
        assert readme == {(t.name, "") for t in CORE.values()} | {(t.name, c) for t in CORE.values() for c in t.names}
        joined = con.execute(
            "SELECT count(*) FROM evidence e JOIN insights i USING (insight_id) JOIN documents d "
            "ON d.document_id = i.document_id AND d.document_id = e.document_id"
        ).fetchone()[0]
        assert joined == len(run.tables.rows["evidence"])
    finally:
        con.close()


def test_csv_has_one_file_per_table_with_the_same_rows(run: SimpleNamespace, tmp_path: Path) -> None:
    result = export(run.out, "csv", tmp_path / "tables")
    assert result.rows == run.tables.counts()
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == sorted(f"{t}.csv" for t in CORE)
    for name, table in CORE.items():
        with open(tmp_path / "tables" / f"{name}.csv", encoding="utf-8", newline="") as fp:
            rows = list(csv.DictReader(fp))
        expected = [{c: "" if r[c] is None else str(r[c]) for c in table.names} for r in run.tables.rows[name]]
        assert rows == expected, name


def test_parquet_round_trips_with_types_and_descriptions(run: SimpleNamespace, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="the parquet extra (pyarrow) is not installed")
    export(run.out, "parquet", tmp_path / "pq")
    assert sorted(p.name for p in (tmp_path / "pq").iterdir()) == sorted(f"{t}.parquet" for t in CORE)
    for name, table in CORE.items():
        read = pq.read_table(tmp_path / "pq" / f"{name}.parquet")
        assert read.to_pylist() == run.tables.rows[name], name
        field = read.schema.field(table.columns[0].name)
        assert field.metadata[b"description"] == table.columns[0].description.encode()
    assert str(pq.read_table(tmp_path / "pq" / "insights.parquet").schema.field("year").type) == "int64"


def test_to_dataframe(run: SimpleNamespace) -> None:
    pytest.importorskip("pandas", reason="the pandas extra is not installed")
    frame = insights.to_dataframe(run.out)
    assert frame.shape == (len(run.lines), len(TABLES["insights"].columns))
    assert list(frame["insight_id"]) == [line["insight_id"] for line in run.lines]
    assert str(frame["year"].dtype) == "Int64" and str(frame["start"].dtype) == "Int64"
    evidence = to_dataframe(run.out, "evidence")
    assert len(evidence) == len(run.tables.rows["evidence"])
    with pytest.raises(ConfigError, match="unknown table 'nope'"):
        to_dataframe(run.out, "nope")


def test_missing_extras_name_the_extra(run: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    monkeypatch.setitem(sys.modules, "pandas", None)
    assert cli.main(["export", str(run.out), "--to", "parquet", str(tmp_path / "pq")]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "insights export --to parquet needs pyarrow" in err and "pip install 'grounded-insights[parquet]'" in err
    assert not (tmp_path / "pq").exists()
    with pytest.raises(ConfigError, match=r"insights.to_dataframe needs pandas.*grounded-insights\[pandas\]"):
        to_dataframe(run.out)


# ----------------------------------------------------------------------------------------- failures
def test_a_failed_export_leaves_the_previous_file_and_no_partial_one(
    run: SimpleNamespace, tmp_path: Path, db: Path
) -> None:
    target = tmp_path / "out.db"
    shutil.copy(db, target)
    before = target.read_bytes()
    rows = {name: list(rows) for name, rows in run.tables.rows.items()}
    rows["evidence"].append({**rows["evidence"][0], "insight_id": "ins_nothing", "n": 1})  # breaks a foreign key
    with pytest.raises(OutputError, match="FOREIGN KEY constraint failed") as err:
        write_sqlite(Tables(rows), target)
    assert str(target) in str(err.value)
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["out.db"]


def test_errors_name_the_file_and_the_cause(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["export", str(tmp_path / "none.jsonl"), "--to", "sqlite", str(tmp_path / "x.db")]) == 2
    assert f"{tmp_path / 'none.jsonl'}: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"document_id": "a", "kind": "barrier", "statement": "s", "evidence": []}\n{"id": 1}\n')
    assert cli.main(["export", str(bad), "--to", "csv", str(tmp_path / "csv")]) == 2
    assert f"{bad}: line 2 is not an insight line" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]
    (tmp_path / "file").write_text("x")
    assert cli.main(["export", str(tmp_path / "none.jsonl"), "--to", "csv", str(tmp_path / "file")]) == 2
    assert f"{tmp_path / 'file'}: exists and is not a folder" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path / "none.jsonl"), "--to", "sqlite", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err


def test_unfinished_documents_are_left_out_and_said(run: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    shutil.copy(run.out, out)
    shutil.copy(run.out.with_name("out.documents.jsonl"), tmp_path / "out.documents.jsonl")
    torn = json.dumps({**run.lines[0], "document_id": "killed", "insight_id": "ins_killed"})
    with open(out, "a", encoding="utf-8") as fp:
        fp.write(torn + "\n" + torn[:40])  # a document killed before its ledger line, then a torn line
    tables = build_tables(out)
    assert tables.counts() == run.tables.counts()
    assert len(tables.notes) == 1 and "1 line(s) of 1 document(s) have no line in" in tables.notes[0]


def test_without_a_ledger_documents_come_from_the_lines(run: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "stdout.jsonl"
    shutil.copy(run.out, out)
    tables = build_tables(out)
    assert "no ledger" in tables.notes[0]
    assert len(tables.rows["insights"]) == len(run.lines) and tables.rows["rejected"] == []
    documents = {d["document_id"]: d for d in tables.rows["documents"]}
    assert set(documents) == {line["document_id"] for line in run.lines}
    assert sum(d["insights"] for d in documents.values()) == len(run.lines)
    path = tmp_path / "x.db"
    export(out, "sqlite", path)
    assert sqlite3.connect(path).execute("PRAGMA foreign_key_check").fetchall() == []


def test_identical_documents_under_two_names_lose_no_line_silently(tmp_path: Path) -> None:
    """The id recipe (insights/ids.py) hashes content, not the document id: identical copies share ids.
    Each line is then a row or named in a note, and both documents are in the documents table."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("copy-a.md", "copy-b.md"):
        shutil.copy(TEST_DOCUMENTS / "angola_markets.md", folder / name)
    with ReferenceServer() as server:
        _extract(folder, tmp_path / "out.jsonl", server, tmp_path / "cache.db")
    lines = list(read_jsonl(tmp_path / "out.jsonl"))
    tables = build_tables(tmp_path / "out.jsonl")
    repeated = [n for n in tables.notes if "repeats insight" in n]
    assert len(lines) == 4 and len(tables.rows["insights"]) + len(repeated) == len(lines)
    assert {d["document_id"] for d in tables.rows["documents"]} == {"copy-a", "copy-b"}
    export(tmp_path / "out.jsonl", "sqlite", tmp_path / "x.db")


def test_cli_export_replaces_an_existing_database(run: SimpleNamespace, tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(b"old")
    assert cli.main(["export", str(run.out), str(path), "--to", "sqlite"]) == 0  # PATH before or after --to
    assert f"wrote {path} (sqlite): insights {len(run.lines)}" in capsys.readouterr().err
    assert sqlite3.connect(path).execute("SELECT count(*) FROM insights").fetchone()[0] == len(run.lines)


# ---------------------------------------------------------------------------------------- Datasette
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_sqlite_file_opens_in_datasette(run: SimpleNamespace, db: Path) -> None:
    pytest.importorskip("datasette", reason="the datasette extra is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "datasette", "serve", str(db), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy

    def get(path: str) -> Any:
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return json.load(response)

    try:
        for _ in range(600):  # bounded readiness poll: the server answers or has died
            if proc.poll() is not None:
                pytest.fail(f"datasette exited: {proc.stdout.read().decode() if proc.stdout else ''}")
            try:
                rows = get("/export/insights.json?_shape=array&_size=max")
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("datasette never answered")
        assert [r["insight_id"] for r in rows] == sorted(line["insight_id"] for line in run.lines)
        assert {r["statement"] for r in rows} == {line["statement"] for line in run.lines}
        found = get("/export/insights.json?_shape=array&" + urllib.parse.urlencode({"_search": "buzzwords"}))
        assert found and all("buzzwords" in (r["statement"] + r["quote"]).lower() for r in found)
        labelled = get("/export/evidence.json?_shape=array&_labels=on&_size=5")
        assert labelled and all(isinstance(r["insight_id"], dict) and r["insight_id"]["value"] for r in labelled)
        readme = get("/export/readme.json?_shape=array&table_name=evidence&column_name=start")
        assert readme[0]["description"].startswith("Offset of the located passage")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_export_help_names_the_formats_and_the_tables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert done.value.code == 0 and "usage: insights export" in text and "--to {csv,parquet,sqlite}" in text
    assert all(name in text for name in TABLES) and "Datasette" in text


# ------------------------------------------------------------------------------ themes and champions
@pytest.fixture(scope="module")
def themed(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    from test_report_themes import make_themes_run

    made = make_themes_run(tmp_path_factory.mktemp("export-themes"))
    made.tables = build_tables(made.out)  # OUT.themes.jsonl beside it is read by default
    return made


def test_theme_tables_hold_every_theme_member_entity_alias_and_mention(themed: SimpleNamespace) -> None:
    rows = themed.tables.rows
    assert themed.tables.notes == [] and themed.tables.themes == themed.themes_path
    assert set(rows) == set(TABLES)
    assert [r["theme_id"] for r in rows["themes"]] == [t.theme_id for t in themed.themes]
    members = Counter(r["theme_id"] for r in rows["theme_members"])
    for t, row in zip(themed.themes, rows["themes"], strict=True):
        assert members[t.theme_id] == t.n_members == row["n_members"]
    assert {(r["theme_id"], r["insight_id"]) for r in rows["theme_members"]} == {
        (t.theme_id, i) for t in themed.themes for i in t.insight_ids
    }
    lines = {line["insight_id"]: line for line in themed.lines}
    for r in rows["theme_members"]:
        line = lines[r["insight_id"]]  # every member is an insight of the output
        assert (r["document_id"], r["statement"], r["quote"], r["start"], r["end"]) == (
            line["document_id"], line["statement"], *(line["evidence"][0][k] for k in ("quote", "start", "end")),
        )  # fmt: skip
        assert themed.texts[r["document_id"]][r["start"] : r["end"]] == r["quote"]
        assert type(r["representative"]) is int and r["representative"] in (0, 1)
    assert sum(r["representative"] for r in rows["theme_members"]) == sum(len(t.representatives) for t in themed.themes)
    assert [r["entity_id"] for r in rows["champions"]] == [e.entity_id for e in themed.entities]
    assert len(rows["champion_aliases"]) == sum(len(e.aliases) for e in themed.entities)
    mentions = Counter(r["entity_id"] for r in rows["champion_mentions"])
    assert all(mentions[e.entity_id] == e.n_mentions == len(e.insight_ids) for e in themed.entities)
    assert all(lines[r["insight_id"]]["kind"] == "champion" for r in rows["champion_mentions"])


def test_theme_tables_in_sqlite_have_keys_that_hold_and_full_text_search(
    themed: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "themes.db"
    assert cli.main(["export", str(themed.out), "--to", "sqlite", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"themes: {themed.themes_path}" in err and f"themes {len(themed.themes)}, theme_members" in err
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        for name, table in TABLES.items():
            info = con.execute(f'PRAGMA table_info("{name}")').fetchall()
            assert [c[1] for c in info] == table.names
            assert [c[1] for c in sorted(info, key=lambda c: c[5]) if c[5]] == list(table.primary_key)
            fks = {(f[3], f[2], f[4]) for f in con.execute(f'PRAGMA foreign_key_list("{name}")')}
            assert fks == set(table.foreign_keys)
            assert con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] == len(themed.tables.rows[name])
        orphans = con.execute(
            "SELECT count(*) FROM theme_members m LEFT JOIN insights i USING (insight_id) WHERE i.insight_id IS NULL"
        ).fetchone()[0]
        assert orphans == 0
        joined = con.execute(
            "SELECT count(*) FROM theme_members m JOIN themes t USING (theme_id) JOIN insights i USING (insight_id) "
            "WHERE i.kind = t.kind AND i.document_id = m.document_id"
        ).fetchone()[0]
        assert joined == sum(t.n_members for t in themed.themes)
        label = themed.themes[0].label.split(",")[0]
        hits = con.execute("SELECT label FROM themes_fts WHERE themes_fts MATCH ?", (f'"{label}"',)).fetchall()
        assert hits and all(label.lower() in (h[0] or "").lower() for h in hits)
        named = con.execute("SELECT count(*) FROM champions_fts WHERE champions_fts MATCH 'NIC'").fetchone()[0]
        assert named >= 1
        readme = {(t, c) for t, c in con.execute("SELECT table_name, column_name FROM readme")}
        assert readme == {(t.name, c) for t in TABLES.values() for c in ["", *t.names]}
    finally:
        con.close()


def test_theme_tables_in_csv_and_parquet(themed: SimpleNamespace, tmp_path: Path) -> None:
    result = export(themed.out, "csv", tmp_path / "csv")
    assert result.rows == themed.tables.counts() and result.themes == themed.themes_path
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == sorted(f"{t}.csv" for t in TABLES)
    for name in THEME_TABLES:
        with open(tmp_path / "csv" / f"{name}.csv", encoding="utf-8", newline="") as fp:
            rows = list(csv.DictReader(fp))
        columns = TABLES[name].names
        expected = [{c: "" if r[c] is None else str(r[c]) for c in columns} for r in themed.tables.rows[name]]
        assert rows == expected and rows, name
    pq = pytest.importorskip("pyarrow.parquet", reason="the parquet extra (pyarrow) is not installed")
    export(themed.out, "parquet", tmp_path / "pq")
    for name in THEME_TABLES:
        assert pq.read_table(tmp_path / "pq" / f"{name}.parquet").to_pylist() == themed.tables.rows[name], name


def test_theme_tables_from_another_file_none_or_a_stale_one(themed: SimpleNamespace, tmp_path: Path) -> None:
    assert set(build_tables(themed.out, themes=False).rows) == set(CORE)
    other = tmp_path / "other.jsonl"  # no other.champions.jsonl: no champion tables
    first = themed.themes[0].model_dump(mode="json")
    stale = dict(first, theme_id="thm_stale", insight_ids=["ins_not_in_the_output"])
    other.write_text(
        "".join(json.dumps(x) + "\n" for x in [stale, *(t.model_dump(mode="json") for t in themed.themes)])
    )
    tables = build_tables(themed.out, themes=other)
    assert set(tables.rows) == set(CORE) | {"themes", "theme_members"}
    assert [r["theme_id"] for r in tables.rows["themes"]] == [t.theme_id for t in themed.themes]
    assert len(tables.notes) == 1
    assert f"1 of {len(themed.themes) + 1} themes in {other} name insights" in tables.notes[0]
    export(themed.out, "sqlite", tmp_path / "x.db", themes=other)
    assert sqlite3.connect(tmp_path / "x.db").execute("PRAGMA foreign_key_check").fetchall() == []
    with pytest.raises(OutputError, match="no such themes file"):
        build_tables(themed.out, themes=tmp_path / "none.jsonl")
    pytest.importorskip("pandas", reason="the pandas extra is not installed")
    frame = to_dataframe(themed.out, "theme_members")
    assert len(frame) == sum(t.n_members for t in themed.themes) and str(frame["year"].dtype) == "Int64"
    with pytest.raises(ConfigError, match="table 'themes' needs a themes file"):
        to_dataframe(themed.out, "themes", themes=False)
