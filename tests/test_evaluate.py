"""Scoring an output file against the reference annotations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ANNOTATIONS, CASSETTES, SEEDS

import insights
from insights import cli
from insights.evaluate import score


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("eval") / "out.jsonl"
    argv = ["extract", str(SEEDS), "-o", str(out), "--replay", str(CASSETTES / "seeds-replay.jsonl"), "-q"]
    assert cli.main(argv) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def annotations() -> dict:
    return {
        json.loads(p.read_text())["document_id"]: json.loads(p.read_text())["extraction"]
        for p in ANNOTATIONS.glob("*.json")
    }


def test_the_reference_answers_score_one(replayed: list[dict]) -> None:
    result = score(replayed, annotations(), insights.load_corpus(SEEDS))
    total = result.total
    assert result.documents == 5
    assert (total.predicted, total.reference, total.matched) == (61, 61, 61)
    assert result.kinds["barrier"].same_category == result.kinds["barrier"].matched == 28


def test_missing_and_invented_insights_lower_recall_and_precision(replayed: list[dict]) -> None:
    barriers = [r for r in replayed if r["kind"] == "barrier"]
    kept = [r for r in replayed if r not in barriers[:8]]  # drop 8 true barriers
    invented = dict(barriers[0], evidence=[dict(barriers[0]["evidence"][0], start=0, end=40)])  # a passage no one cited
    result = score([*kept, invented], annotations(), insights.load_corpus(SEEDS))
    b = result.kinds["barrier"]
    assert (b.predicted, b.reference, b.matched) == (21, 28, 20)
    assert b.precision == pytest.approx(20 / 21) and b.recall == pytest.approx(20 / 28)
    assert result.kinds["enabler"].f1 == 1.0


def test_wrong_category_is_counted(replayed: list[dict]) -> None:
    changed = [dict(r, category="other") if r["kind"] == "enabler" else r for r in replayed]
    result = score(changed, annotations(), insights.load_corpus(SEEDS))
    e = result.kinds["enabler"]
    assert e.matched == 25 and e.same_category == sum(
        1 for r in replayed if r["kind"] == "enabler" and r["category"] == "other"
    )


def test_cli_prints_the_table(replayed: list[dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in replayed))
    assert cli.main(["evaluate", str(out), str(SEEDS), "--annotations", str(ANNOTATIONS)]) == 0
    text = capsys.readouterr().out
    assert "5 annotated document(s)" in text
    assert any(line.split()[:4] == ["all", "61", "61", "61"] for line in text.splitlines())
