"""``insights schema NAME``: one valid JSON Schema per output file, every field described, real output valid."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import CASSETTES, SEEDS

from insights import cli
from insights.export import build_tables
from insights.formats import SCHEMAS, json_schema
from insights.output import read_jsonl
from insights.tables import TABLES

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (in the test extra) is not installed")
REPLAY = CASSETTES / "seeds-replay.jsonl"


def printed(name: str | None, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert cli.main(["schema", *([name] if name else [])]) == 0
    schema: dict[str, Any] = json.loads(capsys.readouterr().out)
    return schema


def validator(name: str) -> Any:
    return jsonschema.Draft202012Validator(json_schema(name), format_checker=jsonschema.FormatChecker())


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A replayed run over the seeds, and an offline run with an empty cache (five error lines)."""
    folder = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith(("OPENAI_", "INSIGHTS_"))]:
            env.delenv(name)
        assert cli.main(["extract", str(SEEDS), "-o", str(folder / "out.jsonl"), "--replay", str(REPLAY), "-q"]) == 0
        failed = ["extract", str(SEEDS), "-o", str(folder / "failed.jsonl"), "--offline", "-q"]
        assert cli.main([*failed, "--cache", str(folder / "empty.db")]) == cli.EXIT_FAILED
    return folder


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_each_name_prints_one_valid_draft_2020_12_schema(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    schema = printed(name, capsys)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] and schema["description"]


def test_the_default_is_the_insight_line(capsys: pytest.CaptureFixture[str]) -> None:
    schema = printed(None, capsys)
    assert schema == json_schema("insight")
    lines = {ref["$ref"].split("/")[-1] for ref in schema["oneOf"]}
    assert lines == {"BarrierLine", "EnablerLine", "ChampionLine", "FailedExperimentLine"}
    barrier = schema["$defs"]["BarrierLine"]["properties"]
    assert {"document_id", "insight_id", "kind", "statement", "evidence", "category", "level", "title", "year",
            "country", "metadata", "content_hash", "model", "prompt_version"} <= set(barrier)  # fmt: skip
    assert barrier["kind"]["const"] == "barrier" and "Evidence" in schema["$defs"]


def test_an_unknown_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["schema", "output_lines"])
    assert done.value.code == 2 and "invalid choice" in capsys.readouterr().err


def _properties(node: Any, where: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        for name, prop in (node.get("properties") or {}).items():
            found.append((f"{where}.{name}", prop))
        for key, value in node.items():
            found += _properties(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _properties(value, f"{where}[{i}]")
    return found


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_every_field_is_described(name: str) -> None:
    properties = _properties(json_schema(name))
    assert len(properties) >= 4
    undescribed = [where for where, prop in properties if not str(prop.get("description", "")).strip()]
    assert undescribed == []


def test_every_export_table_has_a_schema_with_one_property_per_column() -> None:
    for name, table in TABLES.items():
        schema = json_schema(f"export-{name}")
        assert list(schema["properties"]) == table.names and schema["required"] == table.names


# ------------------------------------------------------------------------------ validating real output
def test_real_insight_lines_validate(run: Path) -> None:
    lines = list(read_jsonl(run / "out.jsonl"))
    assert len(lines) == 61 and {line["kind"] for line in lines} == {"barrier", "enabler", "champion",
                                                                    "failed_experiment"}  # fmt: skip
    check = validator("insight")
    assert [list(check.iter_errors(line)) for line in lines] == [[]] * len(lines)


def test_real_ledger_and_error_lines_validate(run: Path) -> None:
    ledger = list(read_jsonl(run / "out.documents.jsonl"))
    errors = list(read_jsonl(run / "failed.errors.jsonl"))
    assert len(ledger) == 5 and len(errors) == 5
    assert [list(validator("ledger").iter_errors(x)) for x in ledger] == [[]] * 5
    assert [list(validator("errors").iter_errors(x)) for x in errors] == [[]] * 5


def test_real_export_rows_validate(run: Path) -> None:
    tables = build_tables(run / "out.jsonl")
    for name, rows in tables.rows.items():
        check = validator(f"export-{name}")
        assert [e.message for row in rows for e in check.iter_errors(row)] == [], name
    assert tables.counts()["insights"] == 61 and tables.counts()["evidence"] > 61


def test_the_schemas_can_fail(run: Path) -> None:
    line = next(iter(read_jsonl(run / "out.jsonl")))
    check = validator("insight")
    broken = [
        {k: v for k, v in line.items() if k != "statement"},  # a required field missing
        {**line, "kind": "opinion"},  # no such kind
        {**line, "evidence": [{**line["evidence"][0], "start": -1}]},  # a negative offset
        {**line, "year": "2022"},  # year is an integer or null
    ]
    assert all(list(check.iter_errors(b)) for b in broken)
    ledger = next(iter(read_jsonl(run / "out.documents.jsonl")))
    assert list(validator("ledger").iter_errors({**ledger, "counts": {"barrier": "two"}}))
    row = build_tables(run / "out.jsonl").rows["evidence"][0]
    assert list(validator("export-evidence").iter_errors({**row, "start": None}))  # never null
