"""Running real local models (issue 9): modes, cut-off answers, lenient parsing, the best earlier answer,
bounded lists, settings for local servers, every token in the spend, and ``-v``.

The tests named ``*_cassette`` drive the real openai + instructor path replayed from ``cassettes/modes`` and
``cassettes/faults`` (recorded from the reference server with ``python tests/record.py``); the others talk
to the reference server on loopback. Nothing here is a model's quality: the server answers from the
reference annotations, and its fault actions imitate what llama.cpp's server was seen to do (``cut_off``:
stopped at ``max_tokens`` but reporting ``finish_reason: "tool_calls"``; ``raw_newlines``: raw control
characters inside JSON strings; ``unsupported_mode``: HTTP 500 for a request shape it does not support).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
from conftest import ANNOTATIONS, SEEDS, FakeClock, replaying
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cassettes import FAULT_DOC, annotation, assert_grounded, client_for, endpoint, fault_run, requests_made

import insights
from insights import cli
from insights.cache import Cache
from insights.client import escape_controls, explain_status_error
from insights.config import DEFAULT_TIMEOUT, LOCAL_TIMEOUT
from insights.errors import CacheMiss, ConfigError, InvalidOutput, OutputRejected, RequestRejected
from insights.extract import best_answer
from insights.grounding import Grounder, GroundingContext
from insights.schema import KIND_CAP, QUOTES_CAP, Extraction
from insights.testing.server import HALLUCINATED_QUOTE, FaultPlan, ReferenceServer

MODES = ["tools", "json_schema", "json"]
FIELDS = ("barriers", "enablers", "champions", "failed_experiments")


@pytest.fixture
def server() -> Iterator[ReferenceServer]:
    with ReferenceServer(ANNOTATIONS) as srv:
        yield srv


def fault_doc() -> insights.Document:
    return insights.load_document(SEEDS / f"{FAULT_DOC}.txt")


def settings_for(srv: ReferenceServer, **overrides: Any) -> insights.Settings:
    overrides.setdefault("no_cache", True)
    return insights.resolve_settings(env={}, base_url=srv.url, api_key="sk-test-modes", **overrides)


def statements(result: insights.DocumentInsights, field: str) -> list[str]:
    return [i.statement for i in getattr(result, field)]


def sent_schema(body: dict[str, Any], mode: str) -> dict[str, Any]:
    """The JSON schema of the answer as the request carried it, in each mode's place."""
    if mode == "tools":
        assert "response_format" not in body
        assert body["tool_choice"] == {"type": "function", "function": {"name": "Extraction"}}
        return dict(body["tools"][0]["function"]["parameters"])
    assert "tools" not in body and "tool_choice" not in body
    if mode == "json_schema":
        assert body["response_format"]["type"] == "json_schema"
        return dict(body["response_format"]["json_schema"]["schema"])
    assert body["response_format"] == {"type": "json_object"}
    system = body["messages"][0]["content"]
    return dict(json.loads(system[system.index("{") : system.rindex("}") + 1]))


def assert_caps(schema: dict[str, Any]) -> None:
    for field in FIELDS:
        assert schema["properties"][field]["maxItems"] == KIND_CAP, field
    for name, draft in schema["$defs"].items():
        assert draft["properties"]["quotes"]["maxItems"] == QUOTES_CAP, name


# ================================================================================ 5. modes (cassettes)
@pytest.mark.parametrize("mode", MODES)
def test_each_mode_sends_its_request_shape_and_completes_cassette(mode: str, fake_clock: FakeClock) -> None:
    doc = fault_doc()
    with endpoint() as (url, key, _), replaying(f"modes/{mode}.yaml") as cassette:
        result = insights.extract(doc, client=client_for(url, key, fake_clock, mode=mode))
    assert requests_made(cassette) == 1
    body = json.loads(cassette.requests[0].body)
    assert_caps(sent_schema(body, mode))  # item 2: the caps reach the model in every mode
    expected = annotation(FAULT_DOC)
    for field in FIELDS:
        assert statements(result, field) == [a["statement"] for a in expected[field]], field
    assert result.rejected == []
    assert_grounded(doc, result)


def test_a_server_that_rejects_the_mode_fails_at_once_naming_it_cassette(fake_clock: FakeClock) -> None:
    # llama.cpp's server answers response_format json_schema with HTTP 500; retrying cannot help.
    plan = FaultPlan(script={FAULT_DOC: ["unsupported_mode"] * 5})
    with endpoint(plan) as (url, key, _), replaying("faults/json_schema_rejected.yaml") as cassette:
        with pytest.raises(RequestRejected) as raised:
            insights.extract(fault_doc(), client=client_for(url, key, fake_clock, mode="json_schema"))
    assert requests_made(cassette) == 1 and fake_clock.sleeps == []
    message = str(raised.value)
    assert "--mode json_schema" in message and "response_format" in message and "--mode tools" in message
    assert raised.value.status == 500 and raised.value.retryable is False


# ====================================================================== 1. cut-off answers (cassettes)
def test_an_answer_cut_off_at_max_tokens_fails_at_once_with_advice_cassette(fake_clock: FakeClock) -> None:
    # finish_reason says "tool_calls", but completion_tokens reached max_tokens: the answer was cut off.
    plan = FaultPlan(script={FAULT_DOC: ["cut_off"] * 3})
    with endpoint(plan) as (url, key, _), replaying("faults/cut_off.yaml") as cassette:
        with pytest.raises(OutputRejected) as raised:
            insights.extract(fault_doc(), client=client_for(url, key, fake_clock, max_tokens=900))
    assert requests_made(cassette) == 1  # not re-asked: the truncated text is never pasted back
    message = str(raised.value)
    assert "cut off at 900 tokens" in message and "--max-tokens" in message and "--chunk-chars" in message
    assert raised.value.last_output and raised.value.last_output.startswith('{"barriers"')


def test_a_reask_cut_off_falls_back_to_the_earlier_answer_cassette(fake_clock: FakeClock) -> None:
    doc, result, cassette = fault_run(["hallucinate", "cut_off"], "hallucinate_then_cut_off", fake_clock)
    assert requests_made(cassette) == 2
    expected = annotation(FAULT_DOC)
    assert len(result.barriers) == len(expected["barriers"]) - 1
    assert [r.kind for r in result.rejected] == ["barrier"] and HALLUCINATED_QUOTE in result.rejected[0].reason
    assert statements(result, "enablers") == [a["statement"] for a in expected["enablers"]]
    assert_grounded(doc, result)


# ======================================================== 3. the best answer that parses (cassettes)
def test_the_best_earlier_answer_is_kept_when_the_last_does_not_parse_cassette(fake_clock: FakeClock) -> None:
    actions = ["hallucinate", "malformed", "malformed"]
    doc, result, cassette = fault_run(actions, "hallucinate_then_malformed", fake_clock, reasks=2)
    assert requests_made(cassette) == 3
    expected = annotation(FAULT_DOC)
    assert len(result.barriers) == len(expected["barriers"]) - 1
    assert len(result.enablers) == len(expected["enablers"]) and len(result.rejected) == 1
    assert_grounded(doc, result)


# ============================================================ 4. raw control characters (cassettes)
def test_raw_newlines_inside_strings_parse_without_a_reask_cassette(fake_clock: FakeClock) -> None:
    doc, result, cassette = fault_run(["raw_newlines"], "raw_newlines", fake_clock)
    assert requests_made(cassette) == 1
    expected = annotation(FAULT_DOC)
    for field in FIELDS:
        got = statements(result, field)
        assert all("\n" in s for s in got), field
        assert [s.replace("\n", " ") for s in got] == [a["statement"] for a in expected[field]], field
    assert_grounded(doc, result)


# =========================================================================== modes on the live server
@pytest.mark.parametrize("mode", ["json_schema", "json"])
def test_json_modes_get_content_answers_and_reasks(server: ReferenceServer, mode: str) -> None:
    server.plan = FaultPlan(script={FAULT_DOC: ["hallucinate", "ok"]})
    with insights.ModelClient(settings_for(server, mode=mode), sleep=FakeClock()) as client:
        result = insights.extract(fault_doc(), client=client)
    assert [r["attempt"] for r in server.requests] == [1, 2]
    reask = server.requests[1]["body"]["messages"]
    assert reask[2]["role"] == "assistant" and json.loads(reask[2]["content"])["barriers"]
    assert HALLUCINATED_QUOTE in reask[3]["content"] and "is not in the document" in reask[3]["content"]
    assert result.rejected == [] and len(result.barriers) == len(annotation(FAULT_DOC)["barriers"])


def test_the_mode_is_part_of_the_cache_key(server: ReferenceServer, tmp_path: Path) -> None:
    cache = tmp_path / "c.db"
    with insights.ModelClient(settings_for(server, cache_path=cache, no_cache=False)) as client:
        insights.extract(fault_doc(), client=client)
    with insights.ModelClient(settings_for(server, cache_path=cache, no_cache=False, offline=True)) as client:
        assert insights.extract(fault_doc(), client=client).provenance.usage.cached_calls == 1
    offline_json = settings_for(server, cache_path=cache, no_cache=False, offline=True, mode="json")
    with insights.ModelClient(offline_json) as client, pytest.raises(CacheMiss):
        insights.extract(fault_doc(), client=client)
    assert server.count == 1


def test_a_cut_off_answer_is_not_cached_but_its_tokens_are_logged(server: ReferenceServer, tmp_path: Path) -> None:
    server.plan = FaultPlan(script={FAULT_DOC: ["cut_off"]})
    settings = settings_for(server, cache_path=tmp_path / "c.db", no_cache=False, max_tokens=700)
    with insights.ModelClient(settings) as client:
        with pytest.raises(OutputRejected, match="cut off at 700 tokens") as raised:
            insights.extract(fault_doc(), client=client)
        assert client.cache is not None
        [call] = client.cache.calls(FAULT_DOC)
        assert client.cache.stats().entries == 0
    assert (call["status"], call["output_tokens"]) == ("OutputRejected", 700) and call["input_tokens"] > 0
    usage = raised.value.usage
    assert usage is not None and (usage.output_tokens, usage.input_tokens) == (700, call["input_tokens"])


def test_an_answer_that_is_complete_at_the_cap_is_kept(server: ReferenceServer) -> None:
    # usage says the cap was reached, but the JSON is whole: nothing was cut off.
    server.plan = FaultPlan(script={FAULT_DOC: ["at_cap"]})
    with insights.ModelClient(settings_for(server, max_tokens=800)) as client:
        result = insights.extract(fault_doc(), client=client)
    assert server.count == 1 and len(result.barriers) == len(annotation(FAULT_DOC)["barriers"])


# ============================================================================ 3. best answer: the rule
def _grounding_context(doc: insights.Document) -> GroundingContext:
    return GroundingContext(Grounder(doc.text), doc.section_at, 0, len(doc.text))


def _answer(quotes: list[str]) -> str:
    drafts = [{"statement": f"s{i}", "quotes": [q], "category": "other", "level": "individual"} for i, q in
              enumerate(quotes)]  # fmt: skip
    return json.dumps({"barriers": drafts})


def test_best_answer_keeps_the_most_located_insights_and_the_latest_on_a_tie() -> None:
    doc = fault_doc()
    real = annotation(FAULT_DOC)["barriers"][0]["quotes"][0]
    other = annotation(FAULT_DOC)["enablers"][0]["quotes"][0]
    one = _answer([real, HALLUCINATED_QUOTE])
    two = _answer([real, other])
    tie = _answer([other, real])
    picked = best_answer([one, two, "{not json", one], _grounding_context(doc))
    assert picked is not None and [g.draft["quotes"] for g in picked] == [[real], [other]]
    picked = best_answer([two, tie, one], _grounding_context(doc))
    assert picked is not None and [g.draft["quotes"] for g in picked] == [[other], [real]]  # the latest of two
    assert best_answer(["{not json", '{"barriers": [{"statement": 1}]}'], _grounding_context(doc)) is None
    raw = _answer([real]).replace('"s0"', '"line one\nline two"')  # raw control character: lenient parse
    picked = best_answer([raw], _grounding_context(doc))
    assert picked is not None and picked[0].draft["statement"] == "line one\nline two"


def test_an_always_invalid_answer_still_fails_with_every_output(server: ReferenceServer) -> None:
    server.plan = FaultPlan(script={FAULT_DOC: ["malformed"] * 3})
    with insights.ModelClient(settings_for(server, reasks=2)) as client, pytest.raises(InvalidOutput) as raised:
        insights.extract(fault_doc(), client=client)
    assert len(raised.value.outputs) == 3 and raised.value.outputs[-1] == raised.value.last_output
    # llama.cpp also stops at its context size with an ordinary finish_reason: the message says how to fit.
    message = str(raised.value)
    assert "the answer ends mid-JSON after" in message and "lower --chunk-chars or --reasks" in message


def raw_dumps(value: Any) -> str:
    """JSON with every control character inside strings left raw (as llama.cpp's grammar lets through)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ",\n".join(raw_dumps(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{raw_dumps(k)}: {raw_dumps(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(st.text() | st.integers() | st.none(), lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids))
)
def test_escaping_raw_control_characters_reads_as_lenient_json_does(value: Any) -> None:
    raw = raw_dumps(value)
    assert json.loads(raw, strict=False) == value
    assert json.loads(escape_controls(raw)) == value  # strict parsing now reads what lenient parsing read
    cut = raw[: len(raw) // 2]
    try:
        json.loads(cut, strict=False)
    except ValueError:
        assert escape_controls(cut) == cut  # not JSON even leniently (a cut-off answer): left as it is


# ================================================================== an answer of another shape is not "none"
def test_an_object_without_any_of_the_four_lists_is_invalid_not_empty() -> None:
    # SmolLM2 in json mode answered {"title": ..., "type": ...}: read as "no insights" it would pass silently.
    with pytest.raises(ValueError, match="none of the keys barriers, enablers, champions, failed_experiments"):
        Extraction.model_validate({"title": "Closing of a journey", "type": "learningplan"})
    assert Extraction.model_validate({}).barriers == []  # nothing to report is still an answer
    assert Extraction.model_validate({"enablers": [], "notes": "x"}).enablers == []


@pytest.mark.parametrize("mode", MODES)
def test_an_answer_of_another_shape_is_reasked_in_every_mode(server: ReferenceServer, mode: str) -> None:
    server.plan = FaultPlan(script={FAULT_DOC: ["wrong_shape", "ok"]})
    with insights.ModelClient(settings_for(server, mode=mode), sleep=FakeClock()) as client:
        result = insights.extract(fault_doc(), client=client)
    assert [r["action"] for r in server.requests] == ["wrong_shape", "ok"]
    assert "none of the keys" in json.dumps(server.requests[1]["body"]["messages"][2:])
    assert len(result.barriers) == len(annotation(FAULT_DOC)["barriers"])


# ==================================================================================== 2. bounded lists
def test_the_schema_bounds_every_list_and_still_accepts_an_answer_over_the_cap() -> None:
    assert_caps(Extraction.model_json_schema())
    many = {"statement": "s", "quotes": ["a", "b", "c", "d"], "category": "other", "level": "individual"}
    parsed = Extraction.model_validate({"barriers": [many] * (KIND_CAP + 1)})
    assert len(parsed.barriers) == KIND_CAP + 1 and len(parsed.barriers[0].quotes) == 4  # nothing dropped


# ============================================================================== 6. settings and errors
def test_mode_max_tokens_and_timeout_settings() -> None:
    env = {"INSIGHTS_MODE": "json", "INSIGHTS_MAX_TOKENS": "1500"}
    s = insights.resolve_settings(env=env)
    assert (s.mode, s.max_tokens, s.timeout) == ("json", 1500, DEFAULT_TIMEOUT)
    s = insights.resolve_settings(env=env, mode="json_schema", max_tokens=800)
    assert (s.mode, s.max_tokens) == ("json_schema", 800)
    assert insights.resolve_settings(env={}).mode == "tools"
    for url in ("http://127.0.0.1:8080/v1", "http://localhost:11434/v1", "http://[::1]:8000/v1",
                "http://192.168.1.20:8080/v1", "http://ollama:11434/v1"):  # fmt: skip
        assert insights.resolve_settings(env={"OPENAI_BASE_URL": url}).timeout == LOCAL_TIMEOUT, url
    assert insights.resolve_settings(env={"OPENAI_BASE_URL": "https://api.example.com/v1"}).timeout == DEFAULT_TIMEOUT
    local = {"OPENAI_BASE_URL": "http://127.0.0.1:8080/v1", "INSIGHTS_TIMEOUT": "30"}
    assert insights.resolve_settings(env=local).timeout == 30.0
    with pytest.raises(ConfigError, match="tools, json_schema, json"):
        insights.resolve_settings(env={"INSIGHTS_MODE": "md_json"})
    with pytest.raises(ConfigError, match="INSIGHTS_MAX_TOKENS"):
        insights.resolve_settings(env={"INSIGHTS_MAX_TOKENS": "lots"})
    with pytest.raises(ConfigError, match="max_tokens"):
        insights.resolve_settings(env={}, max_tokens=0)


def _status_error(status: int, body: dict[str, Any]) -> openai.APIStatusError:
    response = httpx.Response(status, json=body, request=httpx.Request("POST", "http://127.0.0.1:8080/v1/x"))
    cls = openai.BadRequestError if status == 400 else openai.InternalServerError
    return cls(str(body["error"]["message"]), response=response, body=body)


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "This model's maximum context length is 8192 tokens.", "code": "context_length_exceeded",
                   "type": "invalid_request_error", "param": "messages"}},
        {"error": {"code": 400, "message": "the request exceeds the available context size, try increasing it",
                   "type": "exceed_context_size_error", "n_prompt_tokens": 9000, "n_ctx": 8192}},
    ],
    ids=["openai", "llama.cpp"],
)  # fmt: skip
def test_a_prompt_over_the_context_says_lower_chunk_chars(body: dict[str, Any]) -> None:
    error = explain_status_error(_status_error(400, body), mode="tools", attempts=1)
    assert isinstance(error, RequestRejected) and error.retryable is False
    assert "--chunk-chars" in str(error) and body["error"]["message"] in str(error)


LLAMA_CPP_PYTHON_500 = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input "
    "should be 'text' or 'json_object'\", 'input': 'json_schema'}\n\n  File \"llama_cpp/server/app.py\", line "
    "376, in create_chat_completion\n    POST /v1/chat/completions"
)


@pytest.mark.parametrize(
    ("mode", "body"),
    [
        ("tools", {"error": {"code": 500, "message": "tools param requires --jinja flag", "type": "server_error"}}),
        ("json_schema", {"error": {"message": LLAMA_CPP_PYTHON_500, "type": "internal_server_error", "code": None}}),
    ],
    ids=["llama.cpp-tools", "llama-cpp-python-json_schema"],
)
def test_a_server_error_about_the_request_shape_names_the_mode(mode: str, body: dict[str, Any]) -> None:
    error = explain_status_error(_status_error(500, body), mode=mode, attempts=1)
    assert isinstance(error, RequestRejected) and f"--mode {mode}" in str(error)
    assert "\n" not in str(error) and " ".join(body["error"]["message"].split()) in str(error)
    assert all(f"--mode {m}" in str(error) for m in MODES)  # the others are offered
    plain = {"error": {"code": 500, "message": "The server had an error", "type": "server_error"}}
    assert explain_status_error(_status_error(500, plain), mode=mode, attempts=1) is None  # retried as before


def test_the_reference_servers_context_error_says_lower_chunk_chars(server: ReferenceServer) -> None:
    server.plan = FaultPlan(script={FAULT_DOC: ["400"]})
    with insights.ModelClient(settings_for(server)) as client, pytest.raises(RequestRejected) as raised:
        insights.extract(fault_doc(), client=client)
    assert "context_length_exceeded" in str(raised.value) and "--chunk-chars" in str(raised.value)


# =================================================================================== 7. spend
def _summary_tokens(stderr: str) -> tuple[int, int]:
    found = re.search(r"tokens in ([\d,]+) out ([\d,]+)", stderr)
    assert found, stderr
    return int(found.group(1).replace(",", "")), int(found.group(2).replace(",", ""))


def test_the_summary_and_the_error_record_hold_every_token_spent(
    server: ReferenceServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for path in sorted(SEEDS.glob("*.txt"))[:3]:
        (docs / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    bad, cut = sorted(p.stem for p in docs.iterdir())[:2]
    server.plan = FaultPlan(script={bad: ["malformed"] * 3, cut: ["hallucinate", "cut_off"]})
    cache = tmp_path / "c.db"
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-modes")
    monkeypatch.setattr(cli, "ModelClient", lambda s, **kw: insights.ModelClient(s, sleep=FakeClock(), **kw))
    out = tmp_path / "out.jsonl"
    code = cli.main(["extract", str(docs), "-o", str(out), "--cache", str(cache), "--reasks", "2", "-q"])
    assert code == 1
    with Cache(cache) as c:
        calls = [x for x in c.calls() if not x["cached"]]
    assert len(calls) == 3 + 2 + 1
    spent = (sum(x["input_tokens"] for x in calls), sum(x["output_tokens"] for x in calls))
    assert _summary_tokens(capsys.readouterr().err) == spent
    [record] = [json.loads(line) for line in out.with_name("out.errors.jsonl").read_text().splitlines()]
    assert record["document_id"] == bad and record["error_type"] == "InvalidOutput"
    mine = [x for x in calls if x["document_id"] == bad]
    assert record["usage"]["calls"] == 3 and record["usage"]["input_tokens"] == sum(x["input_tokens"] for x in mine)
    assert record["usage"]["output_tokens"] == sum(x["output_tokens"] for x in mine) > 0


# ====================================================================================== 8. the CLI
def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_no_parser_takes_abbreviations_and_mode_is_not_model() -> None:
    parser = cli.build_parser()
    assert all(p.allow_abbrev is False for p in _parsers(parser))
    args = parser.parse_args(["extract", "docs", "--mode", "json", "--max-tokens", "900"])
    assert (args.mode, args.max_tokens, args.model) == ("json", 900, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["extract", "docs", "--mod", "x"])
    with pytest.raises(SystemExit):
        parser.parse_args(["extract", "docs", "--mode", "x"])


@pytest.mark.parametrize(
    "argv", [["-v", "extract", "docs"], ["extract", "docs", "-v"], ["extract", "-v", "docs"], ["extract", "docs"]]
)
def test_verbose_before_or_after_the_subcommand(argv: list[str]) -> None:
    assert cli.build_parser().parse_args(argv).verbose is ("-v" in argv)
    assert cli.build_parser().parse_args(["cache", "stats", "--verbose"]).verbose is True


def test_verbose_logs_each_request_retry_reask_and_cut_off(
    server: ReferenceServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.plan = FaultPlan(script={FAULT_DOC: ["500", "malformed", "cut_off"]}, retry_after=2)
    caplog.set_level(logging.INFO, logger="insights")
    with insights.ModelClient(settings_for(server, max_tokens=600), sleep=FakeClock()) as client:
        with pytest.raises(OutputRejected):
            insights.extract(fault_doc(), client=client)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("insights")]
    text = "\n".join(lines)
    assert len([x for x in lines if "sending request" in x]) == 3, text
    assert f"{FAULT_DOC}: sending request 1 (model gpt-4o-mini, mode tools" in text
    assert re.search(r"HTTP 500 .*; retry 1 of 4 in [\d.]+ s", text), text
    assert re.search(r"re-ask 1 of 2 after an invalid answer: .*json_invalid", text), text
    assert "cut off at 600 tokens" in text
