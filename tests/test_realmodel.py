"""``insights extract`` against a real model, in each supported mode (marker ``realmodel``).

The model is SmolLM2-135M-Instruct (Q4_1), served by llama.cpp's Python server on loopback. Run these
tests with ``python scripts/realmodel.py``, which installs and starts the server and sets
``INSIGHTS_REALMODEL_URL``; without that variable they are skipped, and the default run deselects them.

A 135M-parameter model writes real, messy output: quotes it made up, JSON cut off at ``max_tokens``,
categories outside the taxonomy, raw newlines in strings. These tests assert what must hold whatever it
writes — never a quality figure:

* the command ends with exit code 0 or 1 (some documents failed), with no traceback;
* every document is in the output's ledger or in the errors file, never both, never neither, and every
  error record and every rejected insight carries a reason;
* every emitted evidence span indexes its quote in the document's text;
* the spend is accounted: every finished document's provenance has its calls and tokens, and the run's
  summary line adds them up.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import SEEDS

import insights
from insights import cli
from insights.grounding import normalize
from insights.output import sidecar

URL = os.environ.get("INSIGHTS_REALMODEL_URL", "")
MODEL = os.environ.get("INSIGHTS_REALMODEL_MODEL", "smollm2-135m-instruct-q4_1")
#: Small answers keep a CPU-only run short: a cut-off answer is one of the failures under test.
MAX_TOKENS = 512
#: Chunks well inside the server's 8192-token context, prompt and answer included.
CHUNK_CHARS = 6_000

pytestmark = [
    pytest.mark.realmodel,
    pytest.mark.skipif(not URL, reason="no real model: `python scripts/realmodel.py` serves one and runs these"),
]


def _extract_parser() -> Any:
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    return sub.choices["extract"]  # type: ignore[index]


def extract_options() -> set[str]:
    """The options ``insights extract`` has in this version of the library."""
    return {s for action in _extract_parser()._actions for s in action.option_strings}


def modes() -> list[str]:
    """The structured-output modes to run: every choice of ``--mode`` (tools only where there is none)."""
    mode = next((a for a in _extract_parser()._actions if "--mode" in a.option_strings), None)
    return list(mode.choices) if mode is not None and mode.choices else ["tools"]


def extract_argv(
    mode: str, base_url: str, model: str, *, reasks: int = 1, chunk_chars: int | None = CHUNK_CHARS
) -> list[str]:
    """The options of a realmodel run (also used to record the cassettes of ``test_realmodel_replay``)."""
    options = extract_options()
    argv = ["--base-url", base_url, "--model", model, "--no-cache", "--concurrency", "1", "--timeout", "1800",
            "--max-retries", "0", "--reasks", str(reasks), "-q"]  # fmt: skip
    if chunk_chars:
        argv += ["--chunk-chars", str(chunk_chars)]
    if "--mode" in options:
        argv += ["--mode", mode]
    if "--max-tokens" in options:
        argv += ["--max-tokens", str(MAX_TOKENS)]
    return argv


@dataclass
class Run:
    """One ``insights extract`` process over the seeds."""

    mode: str
    code: int
    stderr: str
    out: Path
    documents: list[insights.Document]

    @property
    def ledger(self) -> list[dict[str, Any]]:
        return _lines(sidecar(self.out, "documents"))

    @property
    def errors(self) -> list[dict[str, Any]]:
        return _lines(sidecar(self.out, "errors"))

    @property
    def records(self) -> list[dict[str, Any]]:
        return _lines(self.out)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


@pytest.fixture(scope="module", params=modes())
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    mode = request.param
    work = tmp_path_factory.mktemp(f"realmodel-{mode}")
    out = work / "out.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "INSIGHTS_"))}
    env["XDG_CACHE_HOME"] = str(work / "cache")
    argv = [sys.executable, "-m", "insights.cli", "extract", str(SEEDS), "-o", str(out)]
    argv += extract_argv(mode, URL, MODEL)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=4 * 3600)
    sys.stderr.write(f"\n[{mode}] {done.stderr.strip().splitlines()[-3:] if done.stderr.strip() else ''}\n")
    return Run(mode, done.returncode, done.stderr, out, insights.load_corpus(SEEDS))


def test_the_run_ends_cleanly(run: Run) -> None:
    assert run.code in (0, 1), run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert re.search(r"^done \d+, failed \d+", run.stderr, re.M), run.stderr[-3000:]
    assert (run.code == 1) == bool(run.errors)


def test_every_document_is_in_the_output_or_the_errors_file_with_a_reason(run: Run) -> None:
    done = [line["document_id"] for line in run.ledger]
    failed = [line["document_id"] for line in run.errors]
    assert sorted(done + failed) == sorted(d.id for d in run.documents), (done, failed)
    for error in run.errors:
        assert error["error_type"] and len(error["message"]) > 10, error
        assert "Traceback" not in error["message"]
    for line in run.ledger:
        for rejected in line["rejected"]:
            assert rejected["kind"] in insights.schema.KINDS and rejected["reason"].strip(), rejected
    assert {r["document_id"] for r in run.records} <= set(done)


def test_every_emitted_span_indexes_its_quote(run: Run) -> None:
    by_id = {d.id: d for d in run.documents}
    for record in run.records:
        text = by_id[record["document_id"]].text
        assert record["evidence"], record
        for e in record["evidence"]:
            located = text[e["start"] : e["end"]]
            assert 0 <= e["start"] < e["end"] <= len(text)
            if e["match"] == "exact":
                assert located == e["quote"]
            elif e["match"] == "normalized":
                assert normalize(located) == normalize(e["quote"]).strip(" \"'.,;:") or located == e["quote"]
            else:
                assert e["match"] == "fuzzy" and e["score"] >= 90, e


def test_spend_is_accounted(run: Run) -> None:
    summary = re.search(r"tokens in ([\d,]+) out ([\d,]+)", run.stderr)
    assert summary, run.stderr[-2000:]
    usage = [line["provenance"]["usage"] for line in run.ledger]
    for u in usage:
        assert u["calls"] >= 1 and u["cached_calls"] == 0 and u["input_tokens"] > 0, u
    # A failed document's error record carries what its calls spent (where the library records it).
    usage += [e["usage"] for e in run.errors if e.get("usage")]
    assert int(summary.group(1).replace(",", "")) == sum(u["input_tokens"] for u in usage)
    assert int(summary.group(2).replace(",", "")) == sum(u["output_tokens"] for u in usage)
    for line in run.ledger:
        assert line["model"] == MODEL and line["provenance"]["model"] == MODEL
