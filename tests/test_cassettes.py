"""The real openai + instructor HTTP path, replayed from cassettes (issue: offline tests).

Each test drives :func:`insights.extract` through ``openai.OpenAI`` and instructor exactly as a live run
does; vcrpy answers from ``cassettes/``. The cassettes were recorded from the project's reference server
(answers written by people reading the seeds, see ``evals/seeds``) — what these tests prove is the
library's behaviour around the model (parsing, re-asking, grounding, retries), not a model's quality.
Re-record: ``python tests/record.py``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import (
    ANNOTATIONS,
    CASSETTES,
    LIVE_BASE_URL,
    LIVE_KEY,
    RECORDING,
    REPLAY_KEY,
    SEEDS,
    FakeClock,
    ReplayMiss,
    replaying,
)

import insights
from insights.errors import AuthError
from insights.grounding import normalize
from insights.testing.server import HALLUCINATED_QUOTE, FaultPlan, ReferenceServer

SEED_IDS = sorted(p.name for p in SEEDS.iterdir())
FAULT_DOC = "003_6107789977ede02a"


def recorded_from() -> dict[str, Any]:
    """What the cassettes were recorded from (written by tests/record.py)."""
    path = CASSETTES / "RECORDED.json"
    return json.loads(path.read_text()) if path.exists() else {"source": "reference-server", "model": "gpt-4o-mini"}


@contextlib.contextmanager
def endpoint(plan: FaultPlan | None = None, *, live_ok: bool = False) -> Iterator[tuple[str, str, Any]]:
    """Where requests go: nowhere when replaying (vcr answers), else a reference server or the live API."""
    if not RECORDING:
        yield "http://127.0.0.1:9/v1", REPLAY_KEY, None  # nothing listens there: vcr must answer
    elif live_ok and LIVE_KEY:
        yield LIVE_BASE_URL or "https://api.openai.com/v1", LIVE_KEY, None
    else:
        with ReferenceServer(ANNOTATIONS, plan=plan) as server:
            yield server.url, REPLAY_KEY, server


def client_for(url: str, key: str, clock: FakeClock, **settings: Any) -> insights.ModelClient:
    model = recorded_from()["model"]
    options = insights.resolve_settings(env={}, base_url=url, api_key=key, model=model, no_cache=True, **settings)
    return insights.ModelClient(options, sleep=clock)


def fault_run(actions: list[str], name: str, clock: FakeClock, **settings: Any) -> tuple[Any, Any, Any]:
    """Extract the fault document while the server plays ``actions``; return (doc, result, cassette)."""
    doc = insights.load_document(SEEDS / f"{FAULT_DOC}.txt")
    plan = FaultPlan(script={FAULT_DOC: actions}, retry_after=3)
    with endpoint(plan) as (url, key, _), replaying(f"faults/{name}.yaml") as cassette:
        result = insights.extract(doc, client=client_for(url, key, clock, **settings))
    return doc, result, cassette


def requests_made(cassette: Any) -> int:
    return len(cassette.requests) if RECORDING else cassette.play_count


def annotation(doc_id: str) -> dict[str, list[dict[str, Any]]]:
    return json.loads((ANNOTATIONS / f"{doc_id}.json").read_text())["extraction"]


def assert_grounded(doc: insights.Document, result: insights.DocumentInsights) -> None:
    for insight in result.insights():
        assert insight.evidence, insight
        for e in insight.evidence:
            located = doc.text[e.start : e.end]
            if e.match == "exact":
                assert located == e.quote
            elif e.match == "normalized":
                assert normalize(located) == normalize(e.quote).strip(" \"'.,;:")
            else:
                assert e.score >= 90
            assert e.section == doc.section_at(e.start)


@pytest.mark.parametrize("name", SEED_IDS)
def test_seed_end_to_end(name: str, fake_clock: FakeClock) -> None:
    doc = insights.load_document(SEEDS / name)
    with endpoint(live_ok=True) as (url, key, _), replaying(f"seeds/{doc.id}.yaml") as cassette:
        result = insights.extract(doc, client=client_for(url, key, fake_clock))
    assert requests_made(cassette) == 1
    assert result.document_id == doc.id and result.title == doc.title
    assert result.provenance.prompt_version == insights.prompts.load_prompts().version
    assert result.provenance.usage.calls == 1 and result.provenance.usage.input_tokens > 0
    assert_grounded(doc, result)
    if recorded_from()["source"] != "reference-server":
        return  # a live model's answers: only the invariants above hold
    expected = annotation(doc.id)
    kinds = {"barriers": result.barriers, "enablers": result.enablers, "champions": result.champions,
             "failed_experiments": result.failed_experiments}  # fmt: skip
    for field, got in kinds.items():
        assert [i.statement for i in got] == [a["statement"] for a in expected[field]], field
        for insight, ref in zip(got, expected[field], strict=True):
            assert [e.quote for e in insight.evidence] == sorted(ref["quotes"], key=lambda q: doc.text.find(q))
    assert result.rejected == []


def test_hallucinated_quote_is_reasked_then_fixed(fake_clock: FakeClock) -> None:
    doc, result, cassette = fault_run(["hallucinate", "ok"], "hallucinate_then_fixed", fake_clock)
    assert requests_made(cassette) == 2
    reask = json.loads(cassette.requests[1].body)["messages"]
    feedback = " ".join(str(m.get("content") or "") for m in reask[2:])
    assert "is not in the document" in feedback and HALLUCINATED_QUOTE in feedback
    assert result.rejected == []
    assert len(result.barriers) == len(annotation(FAULT_DOC)["barriers"])
    assert_grounded(doc, result)


def test_hallucination_that_persists_lands_in_rejected(fake_clock: FakeClock) -> None:
    doc, result, cassette = fault_run(["hallucinate"] * 3, "hallucinate_always", fake_clock, reasks=2)
    assert requests_made(cassette) == 3
    assert len(result.rejected) == 1
    rejected = result.rejected[0]
    assert rejected.kind == "barrier" and "not found" in rejected.reason and HALLUCINATED_QUOTE in rejected.reason
    assert HALLUCINATED_QUOTE in rejected.draft["quotes"]
    assert len(result.barriers) == len(annotation(FAULT_DOC)["barriers"]) - 1
    assert all(HALLUCINATED_QUOTE not in e.quote for i in result.insights() for e in i.evidence)
    assert_grounded(doc, result)


def test_malformed_json_is_reasked(fake_clock: FakeClock) -> None:
    _, result, cassette = fault_run(["malformed", "ok"], "malformed_then_ok", fake_clock)
    assert requests_made(cassette) == 2
    assert len(result.enablers) == len(annotation(FAULT_DOC)["enablers"])
    assert fake_clock.sleeps == []  # a re-ask is not a transport retry


@pytest.mark.parametrize(
    ("status", "cassette_name"), [("429", "rate_limited_then_ok"), ("500", "server_error_then_ok")]
)
def test_transport_error_then_success(status: str, cassette_name: str, fake_clock: FakeClock) -> None:
    _, result, cassette = fault_run([status, "ok"], cassette_name, fake_clock)
    assert requests_made(cassette) == 2
    assert len(fake_clock.sleeps) == 1
    if status == "429":
        assert fake_clock.sleeps == [3.0]  # Retry-After honoured
    else:
        assert 0.25 <= fake_clock.sleeps[0] <= 0.5  # first backoff step, with jitter
    assert len(result.champions) == len(annotation(FAULT_DOC)["champions"])


def test_unauthorized_fails_at_once(fake_clock: FakeClock) -> None:
    doc = insights.load_document(SEEDS / f"{FAULT_DOC}.txt")
    plan = FaultPlan(script={FAULT_DOC: ["401"]})
    with endpoint(plan) as (url, key, _), replaying("faults/unauthorized.yaml") as cassette:
        with pytest.raises(AuthError) as raised:
            insights.extract(doc, client=client_for(url, key, fake_clock))
    assert requests_made(cassette) == 1
    assert fake_clock.sleeps == []
    assert raised.value.status == 401 and raised.value.fatal and raised.value.attempts == 1


@pytest.mark.skipif(RECORDING, reason="checks replay behaviour")
def test_changed_prompt_fails_loudly(monkeypatch: pytest.MonkeyPatch, fake_clock: FakeClock) -> None:
    doc = insights.load_document(SEEDS / f"{FAULT_DOC}.txt")
    prompts = insights.prompts.load_prompts()
    changed = type(prompts)(system=prompts.system + "\nBe brief.", user=prompts.user, version=prompts.version)
    monkeypatch.setattr(insights.prompts, "load_prompts", lambda: changed)
    with pytest.raises(ReplayMiss, match="python tests/record.py"):
        with replaying(f"seeds/{FAULT_DOC}.yaml"):
            insights.extract(doc, client=client_for("http://127.0.0.1:9/v1", REPLAY_KEY, fake_clock))


def test_cassettes_hold_no_secrets() -> None:
    import re

    files = [p for p in CASSETTES.rglob("*") if p.is_file()]
    assert len([p for p in files if p.suffix == ".yaml"]) >= len(SEED_IDS) + 6
    secret = re.compile(r"sk-[A-Za-z0-9_-]{16,}|authorization|openai-organization|openai-project|set-cookie", re.I)
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not secret.search(text), f"{path.name} holds a secret-looking string"
