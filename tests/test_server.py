"""The reference server (``insights.testing.server``): answers, determinism, fault actions, concurrency.

The server is exercised over real loopback HTTP with ``urllib``/``http.client`` (and once with the openai
SDK), never through the project's own client.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest

from insights.testing.server import (
    ACTIONS,
    CREATED,
    HALLUCINATED_QUOTE,
    INJECTED_QUOTE,
    INJECTED_STATEMENT,
    SYNTHETIC_STATEMENT,
    FaultPlan,
    ReferenceServer,
    default_annotations_dir,
    is_loopback,
    load_annotations,
    main,
)

DOC_ID = "doc-annotated"
PART_1 = (
    "## Learnings\n"
    "> What stopped you?\n"
    "Officials feared   blame when pilots failed.\n"
    "The deputy minister championed the sandbox from the start.\n"
)
PART_2 = (
    "Budget rules blocked multi-year funding for experiments.\n"
    "The open data hackathon failed because no agency adopted its prototypes.\n"
)
ANNOTATION: dict[str, Any] = {
    "barriers": [
        {
            "statement": "Fear of blame discouraged experimentation.",
            # Single spaces where the document has three: quotes match after collapsing whitespace.
            "quotes": ["Officials feared blame when pilots failed."],
            "category": "risk_culture_and_blame",
            "level": "organizational",
        },
        {
            "statement": "Budget rules prevented multi-year funding.",
            "quotes": ["Budget rules blocked multi-year funding for experiments."],
            "category": "bureaucracy_and_regulation",
            "level": "environmental",
        },
        {
            "statement": "Spans both chunks, so neither chunk alone supports it.",
            "quotes": [
                "Officials feared blame when pilots failed.",
                "Budget rules blocked multi-year funding",
            ],
            "category": "other",
            "level": "organizational",
        },
    ],
    "enablers": [],
    "champions": [
        {
            "statement": "The deputy minister pushed the sandbox.",
            "quotes": ["The deputy minister championed the sandbox from the start."],
            "name": "deputy minister",
            "champion_type": "person",
            "affiliation": "",
            "sector": "government",
            "contribution": "Championed the sandbox.",
        }
    ],
    "failed_experiments": [
        {
            "statement": "The hackathon's prototypes were not adopted.",
            "quotes": ["The open data hackathon failed because no agency adopted its prototypes."],
            "name": "open data hackathon",
            "what_was_tried": "A hackathon on open data.",
            "why_it_failed": "No agency adopted the prototypes.",
            "lesson": "",
        }
    ],
}
SYNTHETIC_TEXT = (
    "# Title\n"
    "[[year:2022]]\n"
    "| a | table | row that is long enough to count as a sentence but has markup |\n"
    "Short one.\n"
    "The lab ran three pilots with the city, and two of them reached residents. Then a second sentence "
    "of reasonable length followed on the same line.\n"
    "A third sentence that is long enough but should not be picked at all.\n"
)


# ------------------------------------------------------------------------------------------------ helpers
def chat_body(
    doc_id: str | None,
    text: str,
    *,
    part: int = 1,
    parts: int = 1,
    assistant_turns: int = 0,
    model: str = "gpt-4o-mini",
) -> dict[str, Any]:
    """A request body shaped like the one the openai SDK sends in instructor TOOLS mode."""
    token = "DOCUMENT-" + hashlib.sha256(text.encode()).hexdigest()[:16]
    header = f"Document ID: {doc_id}\n" if doc_id is not None else ""
    user = (
        "Extract the barriers, enablers, champions and failed experiments stated in this document.\n\n"
        f"{header}Title: T\nType: unknown | Year: unknown | Country: unknown\nPart: {part} of {parts}\n\n"
        f"The document is everything between the line <<<{token} and the line {token}>>>.\n\n"
        f"<<<{token}\n{text}\n{token}>>>\n"
    )
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You extract."},
        {"role": "user", "content": user},
    ]
    for i in range(assistant_turns):
        call_id = f"call_{i}"
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": "Extraction", "arguments": "{"}}
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": call_id, "content": "Validation Error found: ..."})
    return {
        "model": model,
        "messages": messages,
        "tools": [{"type": "function", "function": {"name": "Extraction", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "Extraction"}},
        "temperature": 0.0,
    }


def post(
    url: str, body: dict[str, Any] | bytes, *, path: str = "/chat/completions", timeout: float = 60.0
) -> tuple[int, dict[str, str], bytes]:
    """POST and return (status, lowercased headers, raw body); HTTP errors are returned, not raised.
    ``timeout`` guards against hanging (per socket operation); no test relies on it firing but one."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def tool_arguments(raw: bytes) -> str:
    """The arguments string of the one tool call."""
    message = json.loads(raw)["choices"][0]["message"]
    (call,) = message["tool_calls"]
    return str(call["function"]["arguments"])


def collapse(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def annotations_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("annotations")
    annotation = {"document_id": DOC_ID, "extraction": ANNOTATION}
    (root / "a.json").write_text(json.dumps(annotation), encoding="utf-8")
    return root


@pytest.fixture()
def server(annotations_dir: Path) -> Iterator[ReferenceServer]:
    with ReferenceServer(annotations_dir) as srv:
        yield srv


# -------------------------------------------------------------------------------------------------- answers
def test_annotated_answer_and_determinism(server: ReferenceServer) -> None:
    body = chat_body(DOC_ID, PART_1 + PART_2)
    status, headers, raw = post(server.url, body)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(raw)
    completion = json.loads(raw)
    assert completion["object"] == "chat.completion"
    assert completion["created"] == CREATED
    assert completion["model"] == "gpt-4o-mini"
    assert completion["id"].startswith("chatcmpl-")
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "Extraction"
    answer = json.loads(call["function"]["arguments"])
    # The whole document: everything, including the item whose quotes span the two halves.
    assert answer == ANNOTATION
    usage = completion["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    # Same body, same bytes (also the headers a cassette records); another body, another id.
    status2, headers2, raw2 = post(server.url, body)
    assert (status2, raw2) == (status, raw)
    assert headers2 == headers
    other = json.loads(post(server.url, chat_body(DOC_ID, PART_1))[2])
    assert other["id"] != completion["id"]


def test_chunks_get_only_their_own_items(server: ReferenceServer) -> None:
    first = json.loads(tool_arguments(post(server.url, chat_body(DOC_ID, PART_1, part=1, parts=2))[2]))
    second = json.loads(tool_arguments(post(server.url, chat_body(DOC_ID, PART_2, part=2, parts=2))[2]))
    assert [b["statement"] for b in first["barriers"]] == ["Fear of blame discouraged experimentation."]
    assert [c["name"] for c in first["champions"]] == ["deputy minister"]
    assert first["failed_experiments"] == []
    assert [b["statement"] for b in second["barriers"]] == ["Budget rules prevented multi-year funding."]
    assert second["champions"] == []
    assert len(second["failed_experiments"]) == 1
    assert [(r["doc_id"], r["part"], r["n"]) for r in server.requests] == [(DOC_ID, 1, 1), (DOC_ID, 2, 1)]


def test_synthetic_answer_for_unannotated_document(server: ReferenceServer) -> None:
    answer = json.loads(tool_arguments(post(server.url, chat_body("unknown-doc", SYNTHETIC_TEXT))[2]))
    assert answer["champions"] == [] and answer["failed_experiments"] == []
    (barrier,) = answer["barriers"]
    (enabler,) = answer["enablers"]
    assert barrier["quotes"] == ["The lab ran three pilots with the city, and two of them reached residents."]
    assert enabler["quotes"] == ["Then a second sentence of reasonable length followed on the same line."]
    for item in (barrier, enabler):
        assert item["statement"] == SYNTHETIC_STATEMENT
        assert (item["category"], item["level"]) == ("other", "organizational")
        assert item["quotes"][0] in SYNTHETIC_TEXT
    # No usable sentence: empty lists. No delimited document at all: empty lists too.
    raw = post(server.url, chat_body("unknown-doc", "# Only\n[[a:b]]\nShort."))[2]
    empty = json.loads(tool_arguments(raw))
    assert empty == {"barriers": [], "enablers": [], "champions": [], "failed_experiments": []}
    bare = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    assert json.loads(tool_arguments(post(server.url, bare)[2]))["barriers"] == []


def test_models_unknown_paths_and_bad_json(server: ReferenceServer) -> None:
    with urllib.request.urlopen(server.url + "/models", timeout=60) as resp:
        models = json.loads(resp.read())
    assert models["object"] == "list" and len(models["data"]) == 1
    status, _, raw = post(server.url, chat_body(DOC_ID, PART_1), path="/embeddings")
    assert status == 404 and json.loads(raw)["error"]["code"] == "unknown_url"
    # The path without /v1 works too.
    status, _, _ = post(server.url.removesuffix("/v1"), chat_body(DOC_ID, PART_1), path="/chat/completions")
    assert status == 200
    status, _, raw = post(server.url, b"{not json")
    assert status == 400 and json.loads(raw)["error"]["type"] == "invalid_request_error"
    assert server.requests[-1]["body"] is None


def test_keep_alive_serves_several_requests_on_one_connection(server: ReferenceServer) -> None:
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for path in ("/v1/chat/completions", "/v1/nowhere", "/v1/chat/completions"):
            body = json.dumps(chat_body(DOC_ID, PART_1))
            conn.request("POST", path, body=body, headers={"content-type": "application/json"})
            resp = conn.getresponse()
            assert len(resp.read()) == int(resp.headers["content-length"])
            assert resp.headers.get("connection", "").lower() != "close"
    finally:
        conn.close()
    assert server.count == 2


# -------------------------------------------------------------------------------------------- fault actions
ERROR_STATUS = {
    "429": (429, "rate_limit_exceeded"),
    "429_quota": (429, "insufficient_quota"),
    "500": (500, None),
    "502": (502, "bad_gateway"),
    "503": (503, "service_unavailable"),
    "400": (400, "context_length_exceeded"),
    "401": (401, "invalid_api_key"),
    "403": (403, "unsupported_country_region_territory"),
    "404": (404, "model_not_found"),
}


@pytest.mark.parametrize("action", sorted(ERROR_STATUS))
def test_error_actions(server: ReferenceServer, action: str) -> None:
    server.plan = FaultPlan(script={"*": [action]}, retry_after=2)
    status, headers, raw = post(server.url, chat_body(DOC_ID, PART_1))
    expected_status, expected_code = ERROR_STATUS[action]
    assert status == expected_status
    assert headers["content-type"] == "application/json"
    assert headers["x-reference-action"] == action
    error = json.loads(raw)["error"]
    assert set(error) == {"message", "type", "code", "param"} and error["message"]
    assert error["code"] == expected_code
    if action == "429":
        assert (headers["retry-after"], headers["retry-after-ms"]) == ("2", "2000")
    else:
        assert "retry-after" not in headers
    if action == "429_quota":
        assert error["type"] == "insufficient_quota"
    # The script is used up: the next request is answered.
    assert post(server.url, chat_body(DOC_ID, PART_1))[0] == 200


def test_reset_closes_the_connection_without_a_response(server: ReferenceServer) -> None:
    server.plan = FaultPlan(script={DOC_ID: ["reset"]})
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        post(server.url, chat_body(DOC_ID, PART_1))
    assert server.requests[-1]["action"] == "reset"
    assert post(server.url, chat_body(DOC_ID, PART_1))[0] == 200


def test_timeout_stalls_then_answers(server: ReferenceServer) -> None:
    server.plan = FaultPlan(script={DOC_ID: ["timeout"]}, timeout_s=600)  # stalls until the server stops
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        post(server.url, chat_body(DOC_ID, PART_1), timeout=0.5)
    server.plan = FaultPlan(script={DOC_ID: ["timeout"]}, timeout_s=0.4)
    started = time.monotonic()
    status, _, raw = post(server.url, chat_body(DOC_ID, PART_1))
    assert status == 200 and time.monotonic() - started >= 0.35
    assert json.loads(tool_arguments(raw))["barriers"]


def _completion_for(server: ReferenceServer, action: str, text: str = PART_1, doc_id: str = DOC_ID) -> dict[str, Any]:
    server.plan = FaultPlan(script={"*": [action]})
    status, headers, raw = post(server.url, chat_body(doc_id, text))
    assert status == 200 and headers["x-reference-action"] == action
    return dict(json.loads(raw))


def test_malformed_and_length_give_unparseable_arguments(server: ReferenceServer) -> None:
    malformed = _completion_for(server, "malformed")
    assert malformed["choices"][0]["finish_reason"] == "tool_calls"
    args = malformed["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    with pytest.raises(json.JSONDecodeError, match="Unterminated string"):
        json.loads(args)
    length = _completion_for(server, "length")
    assert length["choices"][0]["finish_reason"] == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(length["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    # Empty answers break the same way.
    empty = _completion_for(server, "malformed", text="Short.", doc_id="other")
    with pytest.raises(json.JSONDecodeError):
        json.loads(empty["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])


def test_schema_invalid_violates_the_schema(server: ReferenceServer) -> None:
    from pydantic import ValidationError

    from insights.schema import Extraction

    completion = _completion_for(server, "schema_invalid")
    args = completion["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    data = json.loads(args)
    assert "quotes" not in data["barriers"][0]
    with pytest.raises(ValidationError) as info:
        Extraction.model_validate_json(args)
    assert {e["loc"][-1] for e in info.value.errors()} >= {"quotes", "category"}
    # The normal answer does validate.
    Extraction.model_validate_json(tool_arguments(post(server.url, chat_body(DOC_ID, PART_1 + PART_2))[2]))


def test_no_tool_call_refusal_and_content_filter(server: ReferenceServer) -> None:
    plain = _completion_for(server, "no_tool_call")["choices"][0]
    assert plain["finish_reason"] == "stop" and "tool_calls" not in plain["message"]
    assert isinstance(plain["message"]["content"], str) and plain["message"]["content"]
    refusal = _completion_for(server, "refusal")["choices"][0]
    assert refusal["finish_reason"] == "stop" and refusal["message"]["refusal"]
    assert refusal["message"]["content"] is None and "tool_calls" not in refusal["message"]
    filtered = _completion_for(server, "content_filter")["choices"][0]
    assert filtered["finish_reason"] == "content_filter"
    assert filtered["message"]["content"] is None and "tool_calls" not in filtered["message"]


def test_hallucinate_and_obey_injection_quote_text_not_in_the_document(server: ReferenceServer) -> None:
    completion = _completion_for(server, "hallucinate")
    answer = json.loads(completion["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    assert answer["barriers"][0]["quotes"][0] == HALLUCINATED_QUOTE
    assert HALLUCINATED_QUOTE not in PART_1
    assert answer["champions"] == ANNOTATION["champions"]  # the rest is the normal answer
    empty = _completion_for(server, "hallucinate", text="Short.", doc_id="other")
    answer = json.loads(empty["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    assert [b["quotes"] for b in answer["barriers"]] == [[HALLUCINATED_QUOTE]]

    injected = _completion_for(server, "obey_injection")
    answer = json.loads(injected["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    (barrier,) = answer["barriers"]
    assert (barrier["statement"], barrier["quotes"]) == (INJECTED_STATEMENT, [INJECTED_QUOTE])
    assert collapse(INJECTED_QUOTE) not in collapse(PART_1)


# ------------------------------------------------------------------------------------- counting and plans
def test_script_counts_per_document_and_part_then_falls_through_to_ok(server: ReferenceServer) -> None:
    server.plan = FaultPlan(script={"A": ["500", "429"], "*": ["503"]}, retry_after=0.5)
    seen = [
        post(server.url, chat_body(doc, PART_1, part=part, parts=2))[0]
        for doc, part in [("A", 1), ("B", 1), ("A", 1), ("A", 2), ("A", 1), ("B", 1), ("A", 1)]
    ]
    assert seen == [500, 503, 429, 500, 200, 200, 200]
    records = server.requests
    assert [(r["doc_id"], r["part"], r["n"], r["action"]) for r in records] == [
        ("A", 1, 1, "500"),
        ("B", 1, 1, "503"),
        ("A", 1, 2, "429"),
        ("A", 2, 1, "500"),
        ("A", 1, 3, "ok"),
        ("B", 1, 2, "ok"),
        ("A", 1, 4, "ok"),
    ]
    assert records[0]["headers"]["content-type"] == "application/json"
    assert records[0]["body"]["model"] == "gpt-4o-mini"
    assert server.count == 7
    # A new plan restarts the counters; reset() forgets the records as well.
    server.plan = FaultPlan(script={"A": ["502"]})
    assert post(server.url, chat_body("A", PART_1))[0] == 502
    server.reset()
    assert server.count == 0 and server.requests == []
    server.plan = None
    assert post(server.url, chat_body("A", PART_1))[0] == 200


def test_rates_are_deterministic_and_roughly_proportional() -> None:
    rates = {"429": 0.2, "500": 0.1, "malformed": 0.1, "hallucinate": 0.15}
    plan = FaultPlan(rates=rates, seed=7)
    keys = [(f"doc-{i % 50}", 1 + i % 2, 1 + i // 100) for i in range(500)]
    draws = [plan.action_for(*key) for key in keys]
    same_seed = FaultPlan(rates=dict(reversed(rates.items())), seed=7)  # dict order does not matter
    assert draws == [same_seed.action_for(*key) for key in keys]
    assert draws != [FaultPlan(rates=rates, seed=8).action_for(*key) for key in keys]
    expected = {**rates, "ok": 1 - sum(rates.values())}
    for action, p in expected.items():
        share = draws.count(action) / len(draws)
        assert abs(share - p) < 0.06, (action, share, p)
    # A script entry wins over rates; "*" covers documents without their own entry.
    mixed = FaultPlan(script={"x": []}, rates={"500": 1.0})
    assert (mixed.action_for("x", 1, 1), mixed.action_for("y", 1, 1)) == ("ok", "500")
    with pytest.raises(ValueError, match="unknown fault action"):
        FaultPlan(script={"x": ["explode"]})
    with pytest.raises(ValueError, match="sum"):
        FaultPlan(rates={"429": 0.7, "500": 0.7})
    assert set(ERROR_STATUS) < set(ACTIONS)


def test_rates_apply_over_http(server: ReferenceServer) -> None:
    server.plan = FaultPlan(rates={"503": 1.0})
    assert post(server.url, chat_body(DOC_ID, PART_1))[0] == 503
    plan = FaultPlan(rates={"429": 0.5}, seed=3, retry_after=0.1)
    server.plan = plan
    statuses = [post(server.url, chat_body("r", PART_1))[0] for _ in range(6)]
    assert statuses == [429 if plan.action_for("r", 1, n) == "429" else 200 for n in range(1, 7)]


def test_reask_attempt_is_counted_from_assistant_messages(server: ReferenceServer) -> None:
    for turns in range(3):
        post(server.url, chat_body(DOC_ID, PART_1, assistant_turns=turns))
    assert [(r["n"], r["attempt"]) for r in server.requests] == [(1, 1), (2, 2), (3, 3)]


# ------------------------------------------------------------------------------------------ binding, load
def test_only_loopback_hosts_are_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host)
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.com", ""):
        assert not is_loopback(host)
        with pytest.raises(ValueError, match="loopback"):
            ReferenceServer({}, host=host)
    with pytest.raises(SystemExit) as info:
        main(["--host", "0.0.0.0", "--port", "0"])
    assert info.value.code == 2
    assert "loopback" in capsys.readouterr().err


def test_annotation_loading(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(json.dumps({"document_id": "d", "extraction": {"barriers": []}}))
    assert load_annotations(tmp_path) == {"d": {"barriers": []}}
    (tmp_path / "two.json").write_text(json.dumps([{"document_id": "d", "extraction": {}}]))
    with pytest.raises(ValueError, match="annotated in both"):
        load_annotations(tmp_path)
    with pytest.raises(FileNotFoundError):
        ReferenceServer(tmp_path / "missing")
    assert default_annotations_dir().parts[-2:] == ("evals", "seeds")
    assert default_annotations_dir().parent.parent == Path(__file__).resolve().parent.parent
    if default_annotations_dir().is_dir():  # the repository's own seeds load cleanly
        load_annotations(default_annotations_dir())


# ---------------------------------------------------------------------------------------------- clients
def test_64_concurrent_requests_are_served_in_parallel(annotations_dir: Path) -> None:
    # All 64 requests are inside the server at the same time (held until released): served one at a
    # time, no more than one could ever be held. Nothing here depends on timing.
    with ReferenceServer(annotations_dir) as srv:
        srv.hold()
        bodies = [chat_body(f"doc-{i}", PART_1) for i in range(64)]
        with ThreadPoolExecutor(max_workers=64) as pool:
            futures = [pool.submit(lambda b: post(srv.url, b, timeout=300)[0], b) for b in bodies]
            try:
                assert srv.wait_held(64, count=64)
            finally:
                srv.release()
            statuses = [f.result() for f in futures]
    assert statuses == [200] * 64


def test_held_requests_go_one_by_one(server: ReferenceServer) -> None:
    server.hold()
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(post, server.url, chat_body(f"doc-{i}", PART_1), timeout=300) for i in range(3)]
        assert server.wait_held(3, count=3)
        server.release(1)
        assert server.wait_held(2, count=3)
        assert sum(f.done() for f in futures) <= 1 and server.held == 2
        server.release(2)
        assert [f.result()[0] for f in futures] == [200] * 3
    assert server.held == 0
    server.release()
    assert post(server.url, chat_body(DOC_ID, PART_1))[0] == 200  # no longer held


def test_trickle_sends_the_normal_answer_byte_by_byte(server: ReferenceServer) -> None:
    server.plan = FaultPlan(script={DOC_ID: ["ok", "trickle"]}, trickle_s=0)
    status, _, normal = post(server.url, chat_body(DOC_ID, PART_1))
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(chat_body(DOC_ID, PART_1)))
        resp = conn.getresponse()
        assert resp.headers["x-reference-action"] == "trickle"
        pieces = []
        while piece := resp.read1(65536):
            pieces.append(piece)
    finally:
        conn.close()
    assert status == resp.status == 200 and b"".join(pieces) == normal  # the same bytes as "ok"
    assert len(pieces) > 1  # and not in one piece
    assert [r["action"] for r in server.requests] == ["ok", "trickle"]


def test_unknown_model_gets_model_not_found() -> None:
    with ReferenceServer({}, models=["reference"]) as srv:
        body = {**chat_body(DOC_ID, PART_1), "model": "other"}
        status, _, raw = post(srv.url, body)
        assert status == 404 and json.loads(raw)["error"]["code"] == "model_not_found"
        assert "`other`" in json.loads(raw)["error"]["message"]
        assert post(srv.url, {**body, "model": "reference"})[0] == 200
        assert [r["action"] for r in srv.requests] == ["404", "ok"]


def test_openai_sdk_talks_to_it(server: ReferenceServer) -> None:
    openai = pytest.importorskip("openai")
    body = chat_body(DOC_ID, PART_1)
    client = openai.OpenAI(base_url=server.url, api_key="test", max_retries=0)
    try:
        completion = client.chat.completions.create(
            model="m", messages=body["messages"], tools=body["tools"], tool_choice=body["tool_choice"]
        )
        assert isinstance(completion, openai.types.chat.ChatCompletion)
        assert completion.model == "m"
        call = completion.choices[0].message.tool_calls[0]
        assert json.loads(call.function.arguments)["barriers"][0]["category"] == "risk_culture_and_blame"
        assert server.requests[-1]["headers"]["authorization"] == "Bearer test"

        server.plan = FaultPlan(script={"*": ["429_quota", "429", "reset"]})
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="m", messages=body["messages"], tools=body["tools"])
        assert info.value.code == "insufficient_quota"
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="m", messages=body["messages"], tools=body["tools"])
        assert info.value.code == "rate_limit_exceeded"
        assert info.value.response.headers["retry-after"] == "1"
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="m", messages=body["messages"], tools=body["tools"])
    finally:
        client.close()


def test_command_line_serves_in_the_foreground(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"*": ["503"]}))
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    (tmp_path / "annotations").mkdir()
    annotations = str(tmp_path / "annotations")
    command = [sys.executable, "-m", "insights.testing.server", "--port", "0", "--annotations", annotations]
    proc = subprocess.Popen(
        [*command, "--script", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert post(url, chat_body("d", PART_1))[0] == 503
        assert post(url, chat_body("d", PART_1))[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)  # a guard against hanging
    assert proc.returncode == 0, err
    assert "test double" in err
