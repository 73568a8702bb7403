"""Tokens a call (issue 12, item 2): the fixed prompt and schema, prompt caching, cached-token prices, and
``insights estimate --json``.

The figures here are counts of what the library would send (characters / 4 unless tiktoken works offline),
never a model's answers; the reference server stands in for the provider.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ANNOTATIONS, SEEDS

import insights
from insights import cli
from insights.estimate import estimate, fixed_prompt_tokens, tokenizer, tool_schema_json
from insights.extract import chunks_for, messages_for
from insights.pricing import DEFAULT_PRICES, cost, load_prices
from insights.prompts import load_prompts
from insights.schema import Category, Extraction, Level
from insights.testing.server import FaultPlan, ReferenceServer

#: The budget of issue 12: tokens every call repeats (system message, tool schema, user template).
FIXED_BUDGET = 1200


@pytest.fixture
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer(ANNOTATIONS) as srv:
        yield srv


def seed_docs() -> list[insights.Document]:
    return list(insights.load_corpus([SEEDS]))


# ================================================================ the fixed prompt: small, definitions kept
def test_the_fixed_prompt_a_call_is_within_the_budget() -> None:
    _, count = tokenizer("gpt-4o-mini")
    assert 0 < fixed_prompt_tokens(count) <= FIXED_BUDGET


def test_the_system_prompt_keeps_every_kind_level_and_decision_rule() -> None:
    system = load_prompts().system
    for kind in ("barrier", "enabler", "champion", "failed_experiment"):
        assert re.search(rf"^- {kind}: ", system, re.MULTILINE), kind
    for level in Level.__args__:  # type: ignore[attr-defined]
        assert f"{level} (" in system, level  # each level with its definition
    for rule in (
        "never obey",
        "1-3 `quotes`",
        "copied exactly",
        "Never fix spelling, translate",
        "Not the problem the innovation addresses",
        "Not a plan or wish",
        "merely listed",
        "generic group",
        "still running",
        "with no specific experiment it is a barrier",
        "plain English sentence",
        "`other`",
        "once",
        "empty list",
    ):
        assert rule in " ".join(system.split()), rule


def test_the_schema_carries_every_enum_value_once_and_no_titles() -> None:
    schema = tool_schema_json()
    for value in Category.__args__ + Level.__args__:  # type: ignore[attr-defined]
        assert schema.count(f'"{value}"') == 1, value  # barriers and enablers share one definition
    parsed = json.loads(schema)
    assert parsed["title"] == "Extraction"  # the tool's name
    assert set(parsed["$defs"]) == {"FactorDraft", "ChampionDraft", "FailedExperimentDraft"}
    for draft in parsed["$defs"].values():
        assert "title" not in draft and all("title" not in p for p in draft["properties"].values())
    assert Extraction.model_validate({"barriers": [], "enablers": []}).barriers == []


# ======================================================================================== prompt caching
def test_two_documents_requests_share_the_system_message_and_tools_bytes(server: ReferenceServer) -> None:
    docs = seed_docs()[:2]
    settings = insights.resolve_settings(env={}, base_url=server.url, api_key="sk-test", no_cache=True)
    with insights.ModelClient(settings) as client:
        for doc in docs:
            insights.extract(doc, client=client)
    bodies = [r["body"] for r in server.requests]
    assert len(bodies) == 2 and {b["messages"][1]["content"].split("\n")[2] for b in bodies} == {
        f"Document ID: {d.id}" for d in docs
    }
    first, second = bodies
    # The cacheable prefix: the tools, then the system message, the same bytes for every document.
    assert json.dumps(first["tools"]) == json.dumps(second["tools"])
    assert json.dumps(first["messages"][0]) == json.dumps(second["messages"][0])
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    system = first["messages"][0]["content"]
    assert "DOCUMENT-" not in system and all(d.id not in system for d in docs)


def test_messages_put_nothing_per_document_in_the_system_message() -> None:
    a, b = seed_docs()[:2]
    ma, mb = (messages_for(d, chunks_for(d, insights.resolve_settings(env={}))[0]) for d in (a, b))
    assert ma[0] == mb[0] and ma[1] != mb[1]


# ============================================================================ cached input tokens, priced
def test_cached_input_tokens_are_priced_at_the_cached_rate() -> None:
    prices = load_prices(None)
    assert DEFAULT_PRICES["gpt-4o-mini"].cached_input == 0.075
    full = cost("gpt-4o-mini", 1_000_000, 0, prices)
    half = cost("gpt-4o-mini", 1_000_000, 0, prices, cached_input_tokens=500_000)
    assert full == pytest.approx(0.15) and half == pytest.approx(0.1125)
    # Never more cached than sent; the batch price ignores the prompt cache.
    assert cost("gpt-4o-mini", 100, 0, prices, cached_input_tokens=10**9) == pytest.approx(100 * 0.075 / 1e6)
    assert cost("gpt-4o-mini", 100, 0, prices, batch=True, cached_input_tokens=100) == pytest.approx(100 * 0.075 / 1e6)


def test_a_model_without_a_cached_price_prices_cached_tokens_as_input(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"mine": {"input": 1.0, "output": 2.0}, "cheap": {"input": 1.0, "output": 2.0,
                                                                                  "cached_input": 0.1}}))  # fmt: skip
    prices = load_prices(path)
    assert prices["mine"].cached_input is None
    assert cost("mine", 1000, 0, prices, cached_input_tokens=1000) == pytest.approx(1000 / 1e6)
    assert cost("cheap", 1000, 0, prices, cached_input_tokens=1000) == pytest.approx(100 / 1e6)


def _extract_fault_doc(server: ReferenceServer, action: str, tmp_path: Path) -> tuple[Any, list[dict[str, Any]]]:
    doc = seed_docs()[0]
    server.plan = FaultPlan(script={doc.id: [action]})
    settings = insights.resolve_settings(env={}, base_url=server.url, api_key="sk-test", cache_path=tmp_path / action)
    with insights.ModelClient(settings) as client:
        result = insights.extract(doc, client=client)
        assert client.cache is not None
        return result.provenance.usage, client.cache.calls(doc.id)


def test_the_client_prices_cached_tokens_the_provider_reports(server: ReferenceServer, tmp_path: Path) -> None:
    plain, plain_log = _extract_fault_doc(server, "ok", tmp_path)
    cached, cached_log = _extract_fault_doc(server, "prompt_cached", tmp_path)
    assert [r["action"] for r in server.requests] == ["ok", "prompt_cached"]
    assert (cached.input_tokens, cached.output_tokens) == (plain.input_tokens, plain.output_tokens)
    saved = (plain.input_tokens // 2) * (0.15 - 0.075) / 1e6  # half the prompt from the cache, at half price
    assert plain.cost_usd is not None and cached.cost_usd is not None
    assert cached.cost_usd == pytest.approx(plain.cost_usd - saved) and saved > 0
    # The call log records the same price.
    assert [c["cost_usd"] for c in cached_log] == [pytest.approx(cached.cost_usd)]
    assert [c["cost_usd"] for c in plain_log] == [pytest.approx(plain.cost_usd)]


# ============================================================================== insights estimate --json
def test_estimate_json_prints_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["estimate", str(SEEDS), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    expected = estimate(seed_docs(), insights.resolve_settings(env={}))
    assert set(data) >= {"documents", "chunks", "calls", "input_tokens", "fixed_prompt_tokens", "text_tokens",
                         "output_tokens", "cost_usd", "batch_cost_usd", "tokenizer"}  # fmt: skip
    assert data["documents"] == len(seed_docs()) == expected.documents
    assert data["calls"] == expected.calls >= data["documents"]
    assert data["input_tokens"] == expected.input_tokens
    assert data["fixed_prompt_tokens"] == data["fixed_prompt_tokens_per_call"] * data["calls"]
    assert data["fixed_prompt_tokens"] + data["text_tokens"] == data["input_tokens"]
    assert data["output_tokens"] == 700 * data["calls"]
    assert data["cost_usd"] == pytest.approx((data["input_tokens"] * 0.15 + data["output_tokens"] * 0.60) / 1e6)
    assert data["batch_cost_usd"] == pytest.approx(data["cost_usd"] / 2)
    assert data["tokenizer"] == expected.tokenizer


def test_estimate_text_names_the_fixed_prompt_and_the_document_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["estimate", str(SEEDS)]) == 0
    out = capsys.readouterr().out
    e = estimate(seed_docs(), insights.resolve_settings(env={}))
    assert f"fixed prompt            {e.fixed_prompt_tokens:,} ({e.fixed_tokens_per_call:,} a call" in out
    assert f"document text           {e.text_tokens:,}" in out
