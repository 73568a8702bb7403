"""Scoring an output file against the reference annotations."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ANNOTATIONS, CASSETTES, REPO, SEEDS

import insights
from insights import cli
from insights.evaluate import (
    ANNOTATION_SETS,
    agreement,
    annotation_dirs,
    cohen_kappa,
    compare,
    percentile_interval,
    score,
    score_file,
)
from insights.output import sidecar
from insights.testing.server import ReferenceServer


@pytest.fixture(scope="module")
def replayed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference answers replayed into an output file with its ledger."""
    out = tmp_path_factory.mktemp("eval") / "out.jsonl"
    argv = ["extract", str(SEEDS), "-o", str(out), "--replay", str(CASSETTES / "seeds-replay.jsonl"), "-q"]
    assert cli.main(argv) == 0
    return out


@pytest.fixture(scope="module")
def replayed(replayed_run: Path) -> list[dict]:
    return [json.loads(line) for line in replayed_run.read_text().splitlines()]


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


# ---------------------------------------------------------------------------------- agreement and rates
def test_cohen_kappa_of_a_textbook_table() -> None:
    # 50 items: both say a 20 times, both b 15, a/b 5, b/a 10 → p_o 0.7, p_e 0.5, κ 0.4.
    pairs = [("a", "a")] * 20 + [("a", "b")] * 5 + [("b", "a")] * 10 + [("b", "b")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)
    assert agreement(pairs) == pytest.approx(0.7)
    assert cohen_kappa([("a", "a")] * 3) is None  # one label on both sides: κ undefined
    assert cohen_kappa([]) is None and agreement([]) is None
    assert cohen_kappa([("a", "b"), ("b", "a")]) == pytest.approx(-1.0)


def test_the_reference_answers_agree_fully_and_are_verbatim(replayed_run: Path) -> None:
    result = score_file(replayed_run, ANNOTATIONS, insights.load_corpus(SEEDS))
    m = result.metrics()
    assert result.ledger and result.not_done == []
    for name in ("barrier", "enabler", "all"):
        assert m[f"{name}.category_kappa"] == 1.0 and m[f"{name}.level_kappa"] == 1.0
    assert m["verbatim_rate"] == 1.0 and m["grounding_rate"] == 1.0 and m["rejected_rate"] == 0.0
    assert m["all.f1"] == 1.0 and "champion.category_kappa" not in m


def test_kappa_falls_when_categories_are_changed(replayed: list[dict]) -> None:
    changed = [dict(r, category="other") if r["kind"] == "enabler" else r for r in replayed]
    result = score(changed, annotations(), insights.load_corpus(SEEDS))
    pairs = result.kinds["enabler"].categories
    assert len(pairs) == 25 and {p for p, _ in pairs} == {"other"}
    m = result.metrics()
    assert m["enabler.category_agreement"] == pytest.approx(sum(r == "other" for _, r in pairs) / 25)
    assert m["enabler.category_kappa"] == pytest.approx(0.0)  # a rater that always says "other" agrees by chance
    assert m["enabler.level_kappa"] == 1.0 and m["barrier.category_kappa"] == 1.0
    assert m["grounding_rate"] is None  # no ledger given


def test_inexact_evidence_lowers_the_verbatim_rate(replayed: list[dict]) -> None:
    evidence = sum(len(r["evidence"]) for r in replayed)
    fuzzy = [dict(r, evidence=[dict(e, match="fuzzy") for e in r["evidence"]]) for r in replayed[:10]]
    result = score([*fuzzy, *replayed[10:]], annotations(), insights.load_corpus(SEEDS))
    lowered = sum(len(r["evidence"]) for r in fuzzy)
    assert result.metrics()["verbatim_rate"] == pytest.approx((evidence - lowered) / evidence)


def test_rejected_insights_and_missing_documents_come_from_the_ledger(replayed_run: Path, tmp_path: Path) -> None:
    ledger = [json.loads(line) for line in sidecar(replayed_run, "documents").read_text().splitlines()]
    ledger[0]["rejected"] = [{"kind": "barrier", "draft": {}, "reason": "quote not found"}] * 3
    dropped = ledger.pop()["document_id"]
    out = tmp_path / "run.jsonl"
    out.write_text(replayed_run.read_text())
    sidecar(out, "documents").write_text("".join(json.dumps(x) + "\n" for x in ledger))
    result = score_file(out, ANNOTATIONS, insights.load_corpus(SEEDS))
    m = result.metrics()
    assert result.not_done == [dropped]
    assert m["grounding_rate"] == pytest.approx(61 / 64) and m["rejected_rate"] == pytest.approx(3 / 64)


# --------------------------------------------------------------------------------------------- intervals
def test_bootstrap_intervals_are_deterministic_and_hold_the_estimate(replayed: list[dict]) -> None:
    barriers = [r for r in replayed if r["kind"] == "barrier"]
    worse = [r for r in replayed if r not in barriers[:8]]
    result = score(worse, annotations(), insights.load_corpus(SEEDS))
    first, again = result.intervals(), result.intervals()
    assert first == again
    value, (low, high) = result.metrics()["barrier.recall"], first["barrier.recall"]
    assert value is not None and low <= value <= high and low < high <= 1.0
    assert first["enabler.recall"] == (1.0, 1.0)  # untouched: every resample scores 1


def test_percentile_interval() -> None:
    values = [float(i) for i in range(1001)]
    low, high = percentile_interval(values)  # type: ignore[misc]
    assert low == pytest.approx(25.0) and high == pytest.approx(975.0)
    assert percentile_interval([None, 2.0]) == (2.0, 2.0) and percentile_interval([None]) is None


def test_compare_gives_the_difference_with_a_paired_interval(replayed: list[dict]) -> None:
    docs = insights.load_corpus(SEEDS)
    barriers = [r for r in replayed if r["kind"] == "barrier"]
    a = score(replayed, annotations(), docs)
    b = score([r for r in replayed if r not in barriers[:8]], annotations(), docs)
    diffs = compare(a, b)
    recall = diffs["barrier.recall"]
    assert (recall.a, recall.b) == (1.0, pytest.approx(20 / 28)) and recall.diff == pytest.approx(-8 / 28)
    assert recall.interval is not None and recall.interval[0] < 0 and recall.interval[1] <= 0
    assert diffs["enabler.f1"].diff == 0 and diffs["enabler.f1"].interval == (0.0, 0.0)
    with pytest.raises(ValueError, match="same documents"):
        compare(a, score(replayed, annotations(), docs[:3]))


# ------------------------------------------------------------------------------------ command and package
def test_cli_json_report(replayed_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["evaluate", str(replayed_run), str(SEEDS), "--annotations", str(ANNOTATIONS), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["documents"] == 5 and data["counts"]["all"] == {"predicted": 61, "reference": 61, "matched": 61}
    assert data["metrics"]["barrier.category_kappa"] == {"value": 1.0, "interval": [1.0, 1.0]}
    assert data["bootstrap"] == {"resamples": 1000, "seed": 0, "confidence": 0.95, "unit": "document"}


def test_cli_compare(replayed_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = replayed_run.read_text().splitlines(keepends=True)
    worse = tmp_path / "b.jsonl"
    worse.write_text("".join(line for line in lines if '"kind": "champion"' not in line))
    argv = ["evaluate", "--compare", str(replayed_run), str(worse), str(SEEDS), "--annotations", str(ANNOTATIONS)]
    assert cli.main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["champion.recall"]["a"] == 1.0 and data["champion.recall"]["b"] == 0.0
    assert data["champion.recall"]["diff"] == -1.0 and data["champion.precision"]["b"] is None
    assert cli.main(argv) == 0
    rows = [line.split()[:4] for line in capsys.readouterr().out.splitlines()]
    assert ["champion.recall", "1.000", "0.000", "-1.000"] in rows


def test_cli_needs_an_output_and_documents(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["evaluate"]) == 2
    assert "needs OUT.jsonl and the documents" in capsys.readouterr().err


def test_default_annotations_are_the_shipped_sets(
    replayed_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = annotation_dirs()
    in_repo = [name for name in ANNOTATION_SETS if list((ANNOTATIONS.parent / name).glob("*.json"))]
    assert [d.name for d in shipped] == in_repo
    for folder in shipped:  # the same files, whether installed from a wheel or from this checkout
        expected = sorted(p.name for p in (ANNOTATIONS.parent / folder.name).glob("*.json"))
        assert sorted(p.name for p in folder.glob("*.json")) == expected
    monkeypatch.chdir(tmp_path)  # no evals/ folder here: the default must not depend on the directory
    assert cli.main(["evaluate", str(replayed_run), str(SEEDS)]) == 0
    assert "5 annotated document(s)" in capsys.readouterr().out


@pytest.mark.slow
def test_annotations_ship_in_the_wheel(tmp_path: Path) -> None:
    """Built and installed as a wheel (not editable), `insights evaluate` finds the annotation sets."""
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(REPO)], check=True)
    wheel = next(wheels.glob("grounded_insights-*.whl"))  # the distribution name (pyproject.toml)
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    probe = "import insights.evaluate as e; print('\\n'.join(str(d) for d in e.annotation_dirs()))"
    env = {"PATH": "", "PYTHONPATH": str(target), "HOME": str(tmp_path)}
    found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    dirs = [Path(line) for line in found.stdout.split()]
    assert dirs and all(d.is_relative_to(target) for d in dirs)
    for d in dirs:
        assert sorted(p.name for p in d.glob("*.json")) == sorted(
            p.name for p in (ANNOTATIONS.parent / d.name).glob("*.json")
        )


# -------------------------------------------------------------------------------- scripts/score_model.py
def _score_model() -> Any:
    spec = importlib.util.spec_from_file_location("score_model", REPO / "scripts" / "score_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_score_model_refuses_the_reference_servers_answers(tmp_path: Path) -> None:
    score_model = _score_model()
    argv = ["--model", "gpt-4o-mini", "--results", str(tmp_path), "--documents", str(SEEDS)]
    with ReferenceServer(ANNOTATIONS) as server:
        assert score_model.main([*argv, "--base-url", server.url]) == 2
    assert not (tmp_path / "gpt-4o-mini.json").exists()
    assert (tmp_path / "gpt-4o-mini.output.jsonl").exists()  # the run is kept, the score is not written
    with pytest.raises(SystemExit) as refused:
        score_model.main([*argv, "--", "--replay", str(CASSETTES / "seeds-replay.jsonl")])
    assert refused.value.code == 2


def test_score_model_writes_the_scores_and_the_spend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    score_model = _score_model()
    monkeypatch.setattr(score_model, "not_live", lambda cache, ledger: [])  # stand in for a live endpoint
    argv = ["--model", "org/model:1", "--results", str(tmp_path), "--documents", str(SEEDS)]
    with ReferenceServer(ANNOTATIONS) as server:
        assert score_model.main([*argv, "--base-url", server.url, "--", "--concurrency", "2"]) == 0
    result = json.loads((tmp_path / "org_model_1.json").read_text())
    assert result["model"] == "org/model:1" and result["endpoint"].startswith("127.0.0.1:")
    assert result["documents"] == {"given": 5, "scored": 5, "finished": 5, "failed": 0}
    assert result["spend"]["calls"] == 5 and result["spend"]["tokens"] > 0
    assert result["spend"]["cost_usd"] is None and result["spend"]["cost_note"] == "no price for this model"
    assert result["scores"]["counts"]["all"]["reference"] == 61
    assert result["scores"]["metrics"]["all.f1"]["interval"] is not None
    assert result["prompt_version"] == insights.prompts.load_prompts().version
