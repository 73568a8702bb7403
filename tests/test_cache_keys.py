"""The response cache as the client uses it: what hits, what misses, offline mode, re-validation.

Runs against the project's reference server on loopback (a real HTTP server in a thread), so the
request counts are real.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ANNOTATIONS, SEEDS, FakeClock

import insights
from insights import cli
from insights.grounding import Located
from insights.testing.server import HALLUCINATED_QUOTE, FaultPlan, ReferenceServer

DOC = "003_6107789977ede02a"


@pytest.fixture
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer(ANNOTATIONS) as srv:
        yield srv


def run(srv: ReferenceServer, cache: Path, **overrides: object) -> insights.DocumentInsights:
    doc = insights.load_document(SEEDS / f"{DOC}.txt")
    options = {"env": {}, "base_url": srv.url, "api_key": "sk-test-one", "cache_path": cache, **overrides}
    with insights.ModelClient(insights.resolve_settings(**options), sleep=FakeClock()) as client:  # type: ignore[arg-type]
        return insights.extract(doc, client=client)


def test_second_run_is_free_and_identical(server: ReferenceServer, tmp_path: Path) -> None:
    first = run(server, tmp_path / "c.db")
    second = run(server, tmp_path / "c.db")
    assert server.count == 1
    assert second.provenance.usage.cached_calls == 1 and second.provenance.usage.input_tokens == 0
    assert first.model_dump(exclude={"provenance"}) == second.model_dump(exclude={"provenance"})


@pytest.mark.parametrize(
    "change",
    [{"model": "another-model"}, {"temperature": 0.7}, {"max_tokens": 1000}, {"seed": 7}],
    ids=["model", "temperature", "max_tokens", "seed"],
)
def test_changing_what_shapes_the_answer_misses(server: ReferenceServer, tmp_path: Path, change: dict) -> None:
    run(server, tmp_path / "c.db")
    run(server, tmp_path / "c.db", **change)
    assert server.count == 2


def test_changing_the_prompt_misses(server: ReferenceServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run(server, tmp_path / "c.db")
    prompts = insights.prompts.load_prompts()
    edited = type(prompts)(system=prompts.system + "\nBe brief.", user=prompts.user, version="edited")
    monkeypatch.setattr(insights.prompts, "load_prompts", lambda: edited)
    monkeypatch.setattr(importlib.import_module("insights.extract"), "load_prompts", lambda: edited)
    run(server, tmp_path / "c.db")
    assert server.count == 2


def test_changing_the_schema_version_misses(
    server: ReferenceServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(server, tmp_path / "c.db")
    monkeypatch.setattr(insights.client, "SCHEMA_VERSION", "999")
    run(server, tmp_path / "c.db")
    assert server.count == 2


def test_changing_only_the_api_key_hits(server: ReferenceServer, tmp_path: Path) -> None:
    run(server, tmp_path / "c.db", api_key="sk-test-one")
    run(server, tmp_path / "c.db", api_key="sk-test-two")
    assert server.count == 1
    assert b"sk-test" not in (tmp_path / "c.db").read_bytes()


def test_offline_miss_makes_no_request(server: ReferenceServer, tmp_path: Path) -> None:
    with pytest.raises(insights.CacheMiss, match=DOC):
        run(server, tmp_path / "c.db", offline=True)
    assert server.count == 0


def test_a_hit_is_validated_again(server: ReferenceServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server.plan = FaultPlan(script={DOC: ["hallucinate"]})
    first = run(server, tmp_path / "c.db", reasks=0)
    assert [r.reason for r in first.rejected if HALLUCINATED_QUOTE in r.reason]
    # A "fixed" grounder that now accepts the passage: the cached answer is re-grounded for free.
    original = insights.grounding.Grounder.locate

    def lenient(self, quote: str, lo: int = 0, hi: int | None = None) -> Located | None:  # type: ignore[no-untyped-def]
        return Located(lo, lo + 20, "fuzzy", 91.0) if quote == HALLUCINATED_QUOTE else original(self, quote, lo, hi)

    monkeypatch.setattr(insights.grounding.Grounder, "locate", lenient)
    second = run(server, tmp_path / "c.db", reasks=0)
    assert server.count == 1
    assert second.rejected == [] and len(second.barriers) == len(first.barriers) + 1


def test_call_log_records_hits_and_misses(server: ReferenceServer, tmp_path: Path) -> None:
    run(server, tmp_path / "c.db")
    run(server, tmp_path / "c.db")
    with insights.Cache(tmp_path / "c.db") as cache:
        calls = cache.calls(DOC)
        stats = cache.stats()
    assert [c["cached"] for c in calls] == [False, True]
    assert calls[0]["input_tokens"] > 0 and calls[0]["model"] == "gpt-4o-mini"
    assert stats.hits == 1 and stats.tokens_saved == calls[0]["input_tokens"] + calls[0]["output_tokens"]


def test_cli_twice_makes_no_request_the_second_time(
    server: ReferenceServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-cli")
    monkeypatch.setenv("INSIGHTS_CACHE", str(tmp_path / "c.db"))
    assert cli.main(["extract", str(SEEDS), "-o", str(tmp_path / "a.jsonl"), "-q"]) == 0
    assert server.count == 5
    assert cli.main(["extract", str(SEEDS), "-o", str(tmp_path / "b.jsonl"), "-q"]) == 0
    assert server.count == 5
    a, b = (tmp_path / "a.jsonl").read_text(), (tmp_path / "b.jsonl").read_text()
    assert sorted(a.splitlines()) == sorted(b.splitlines()) and len(a.splitlines()) == 61
