"""A real model's messy output, replayed through the real openai + instructor path (default suite).

``cassettes/realmodel/<mode>.yaml`` holds the HTTP exchanges of ``insights extract`` over a few seeds with
SmolLM2-135M-Instruct (Q4_1) served by llama.cpp on loopback; ``cassettes/realmodel/RECORDED.json`` says
how they were recorded (the exact options, which documents finished and which failed, and why). Unlike
the reference server's recordings, these answers are what a weak model really wrote: made-up quotes,
answers cut off at ``max_tokens``, raw newlines. The tests replay them through ``insights extract`` in
this process and assert that

* the replayed run ends exactly as the recorded one (same documents finished, same failures);
* every document is in the ledger or the errors file, with a reason;
* every emitted span indexes its quote;
* every finished document's tokens are the sum of its recorded responses' usage.

Re-record (the prompt, schema or request options changed, so the replay misses) with one command:
``python scripts/realmodel.py --record`` (it installs and serves the model; see that script).
These recordings are never a quality figure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import CASSETTES, RECORDING, SEEDS, ReplayMiss, replaying
from test_realmodel import MODEL, URL, extract_argv, modes

import insights
from insights import cli
from insights.grounding import normalize
from insights.output import sidecar

HERE = CASSETTES / "realmodel"
META = HERE / "RECORDED.json"
#: The smallest seeds: the cassettes hold every request body (the whole prompt), so they stay small.
DOCUMENTS = ["003_6107789977ede02a", "000_e031a6a70dda01b9"]
REPLAY_URL = "http://127.0.0.1:9/v1"  # nothing listens there: vcr must answer
RERECORD = "re-record with `python scripts/realmodel.py --record`"
RECORD_NOW = RECORDING and bool(URL)


def recorded() -> dict[str, Any]:
    return json.loads(META.read_text(encoding="utf-8")) if META.exists() else {"modes": {}}


def recorded_modes() -> list[str]:
    if RECORD_NOW:  # llama.cpp answers response_format json_schema with HTTP 500: nothing worth keeping
        return [m for m in modes() if m != "json_schema"]
    return sorted(recorded()["modes"]) or ["missing"]


def _update_meta(mode: str, entry: dict[str, Any]) -> None:
    meta = recorded()
    meta.update(
        source=os.environ.get("INSIGHTS_REALMODEL_SOURCE", "a llama.cpp server on loopback"),
        model=MODEL,
        documents=DOCUMENTS,
        prompt_version=insights.prompts.load_prompts().version,
        insights_version=insights.__version__,
        command="python scripts/realmodel.py --record",
    )
    meta.setdefault("modes", {})[mode] = entry
    HERE.mkdir(parents=True, exist_ok=True)
    META.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


class Replayed:
    """One replayed (or, when recording, recorded) run and its files."""

    def __init__(self, mode: str, out: Path, code: int, cassette: Any) -> None:
        self.mode, self.out, self.code, self.cassette = mode, out, code, cassette
        self.ledger = _lines(sidecar(out, "documents"))
        self.errors = _lines(sidecar(out, "errors"))
        self.records = _lines(out)

    def outcome(self) -> dict[str, Any]:
        return {
            "done": sorted(line["document_id"] for line in self.ledger),
            "failed": {e["document_id"]: e["error_type"] for e in self.errors},
        }


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def replay(mode: str, out: Path) -> Replayed:
    """Run ``insights extract`` in this process against cassette ``realmodel/<mode>.yaml``.

    Raises:
        ReplayMiss: the run did not go as recorded (a request had no recorded answer).
    """
    entry = recorded()["modes"].get(mode, {})
    # Recorded without re-asks and without chunking: two calls, so re-recording takes minutes.
    options = extract_argv(mode, "", MODEL, reasks=0, chunk_chars=None)[2:] if RECORD_NOW else entry["options"]
    paths = [str(SEEDS / f"{doc}.txt") for doc in DOCUMENTS]
    argv = ["extract", *paths, "-o", str(out), "--base-url", URL if RECORD_NOW else REPLAY_URL, *options]
    with replaying(f"realmodel/{mode}.yaml") as cassette:
        code = cli.main(argv)
    run = Replayed(mode, out, code, cassette)
    if RECORD_NOW:
        _update_meta(mode, {"options": options, "requests": len(cassette.requests), **run.outcome()})
    elif cassette.play_count != len(cassette.responses) or run.outcome() != {k: entry[k] for k in ("done", "failed")}:
        raise ReplayMiss(
            f"the replay of cassettes/realmodel/{mode}.yaml did not go as recorded (played {cassette.play_count} "
            f"of {len(cassette.responses)} answers; {run.outcome()} instead of the recorded outcome): the prompt, "
            f"schema or request options changed since it was recorded; {RERECORD}"
        )
    return run


@pytest.fixture(scope="module", params=recorded_modes())
def replayed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    if request.param == "missing":
        pytest.fail(f"{META} is missing: {RERECORD}")
    return replay(request.param, tmp_path_factory.mktemp(f"realmodel-{request.param}") / "out.jsonl")


def test_the_replay_ends_as_recorded_and_every_document_has_an_outcome(replayed: Replayed) -> None:
    outcome = replayed.outcome()
    assert sorted([*outcome["done"], *outcome["failed"]]) == sorted(DOCUMENTS)
    assert replayed.code == (1 if outcome["failed"] else 0)
    for error in replayed.errors:
        assert error["error_type"] and len(error["message"]) > 10, error
    for line in replayed.ledger:
        for rejected in line["rejected"]:
            assert rejected["reason"].strip() and rejected["kind"] in insights.schema.KINDS, rejected


def test_every_replayed_span_indexes_its_quote(replayed: Replayed) -> None:
    texts = {doc: insights.load_document(SEEDS / f"{doc}.txt").text for doc in DOCUMENTS}
    for record in replayed.records:
        text = texts[record["document_id"]]
        assert record["evidence"]
        for e in record["evidence"]:
            located = text[e["start"] : e["end"]]
            if e["match"] == "exact":
                assert located == e["quote"]
            elif e["match"] == "normalized":
                assert normalize(located) == normalize(e["quote"]).strip(" \"'.,;:") or located == e["quote"]
            else:
                assert e["match"] == "fuzzy" and e["score"] >= 90


def test_tokens_are_the_sum_of_the_recorded_usage(replayed: Replayed) -> None:
    per_document: dict[str, list[int]] = {doc: [0, 0] for doc in DOCUMENTS}
    for request, response in zip(replayed.cassette.requests, replayed.cassette.responses, strict=True):
        if not request.path.endswith("/chat/completions"):
            continue  # the model check before the first document (GET /v1/models/{model}) spends nothing
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        doc = next(d for d in DOCUMENTS if d in body)
        usage = json.loads(response["body"]["string"]).get("usage") or {}
        per_document[doc][0] += usage.get("prompt_tokens", 0)
        per_document[doc][1] += usage.get("completion_tokens", 0)
    assert replayed.ledger or replayed.errors
    for line in replayed.ledger:
        usage = line["provenance"]["usage"]
        assert [usage["input_tokens"], usage["output_tokens"]] == per_document[line["document_id"]]
        assert usage["input_tokens"] > 0 and usage["calls"] >= 1 and usage["cached_calls"] == 0


@pytest.mark.skipif(RECORD_NOW, reason="recording")
def test_a_changed_prompt_misses_the_replay_and_says_how_to_re_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = insights.prompts.load_prompts()
    changed = type(prompts)(system=prompts.system + "\nBe brief.", user=prompts.user, version=prompts.version)
    monkeypatch.setattr(insights.prompts, "load_prompts", lambda: changed)
    with pytest.raises(ReplayMiss, match="python scripts/realmodel.py --record"):
        replay(recorded_modes()[0], tmp_path / "out.jsonl")
