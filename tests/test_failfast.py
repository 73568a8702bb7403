"""Fail fast instead of failing every document: preflight, fatal 404s, unreachable endpoints, a total
deadline per request, and options checked before anything is created.

Every test talks to the loopback reference server (or to a closed port, or to an in-process stub
transport) and asserts on what reached the server, on the error and its message, and on the files a
run leaves. Backoff runs on a fake clock. The one test about time (the trickle) compares a 3 s deadline
with an answer that would take over two minutes, and asserts only that the request ended well before it.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from conftest import SEEDS, FakeClock

import insights
from insights import cli
from insights.batch import RateLimiter, extract_many
from insights.client import ModelClient
from insights.errors import (
    AuthError,
    ConfigError,
    ConnectionFailed,
    EndpointUnreachable,
    ModelNotFound,
    TransportError,
)
from insights.testing.server import FaultPlan, ReferenceServer

KEY = "sk-test-failfast"


def make_docs(n: int) -> list[insights.Document]:
    base = "A plain sentence about public sector innovation and its many obstacles in practice."
    return [insights.parse_document(f"# Doc {i}\n\n{base} Number {i}.\n", doc_id=f"doc{i:03d}") for i in range(n)]


def closed_port_url() -> str:
    """The base URL of a loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def make_client(base_url: str, clock: FakeClock | None = None, **overrides: Any) -> ModelClient:
    settings = insights.resolve_settings(env={}, base_url=base_url, api_key=KEY, no_cache=True, **overrides)
    return ModelClient(settings, sleep=clock or FakeClock())


def a_sentence(message: str) -> None:
    """An error message written for people: no SDK dict dump."""
    assert "{'" not in message and "Error code:" not in message, message


@pytest.fixture
def cli_to(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Point the CLI at a base URL through the environment, with a fake clock for its retries."""
    clock = FakeClock()
    real = ModelClient
    monkeypatch.setattr(cli, "ModelClient", lambda settings, **kw: real(settings, sleep=clock, **kw))
    monkeypatch.setenv("INSIGHTS_CACHE", str(tmp_path / "cache" / "insights.db"))

    def point(url: str) -> FakeClock:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        return clock

    return point


def output_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


# ==================================================================== 10. endpoint and model, once
def test_cli_unknown_model_stops_before_the_first_document(
    cli_to: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "out.jsonl"
    with ReferenceServer({}, models=["reference"]) as srv:
        cli_to(srv.url)
        code = cli.main(["extract", str(SEEDS), "-o", str(out), "--model", "no-such-model", "-q"])
        assert code == cli.EXIT_FATAL
        assert srv.lookups == ["no-such-model"]  # asked once, confirmed once with a one-token request
        assert [(r["doc_id"], r["body"]["max_tokens"]) for r in srv.requests] == [("", 1)]  # no document sent
    err = capsys.readouterr().err
    assert "no-such-model" in err and srv.url in err
    a_sentence(err)
    assert output_files(tmp_path / "out") == []  # nothing created


def test_preflight_passes_for_a_served_model_and_asks_once() -> None:
    with ReferenceServer({}, models=["reference"]) as srv, make_client(srv.url, model="reference") as client:
        client.check()
        assert srv.lookups == ["reference"] and srv.requests == []


def test_unknown_model_mid_run_is_fatal_and_named() -> None:
    # Without the preflight (the API's extract_many), the first 404 model_not_found stops the run.
    with ReferenceServer({}, models=["reference"]) as srv, make_client(srv.url, model="gone") as client:
        seen = []
        with pytest.raises(ModelNotFound) as info:
            for outcome in extract_many(make_docs(10), concurrency=1, client=client):
                seen.append(outcome)
        assert srv.count == 1  # nothing new started after the first answer
    error = info.value
    assert error.fatal and not error.retryable and error.status == 404 and error.attempts == 1
    assert "gone" in str(error) and srv.url in str(error)
    assert "does not exist" in str(error)  # the server's own words
    a_sentence(str(error))
    assert len(seen) == 1


def _stub(status: int, body: object, chat: tuple[int, object] | None = None) -> openai.OpenAI:
    """An openai client whose requests get ``status`` and ``body`` from an in-process transport (chat
    requests get ``chat`` if given)."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        code, content = chat if chat is not None and request.url.path.endswith("/chat/completions") else (status, body)
        if isinstance(content, str):
            return httpx2.Response(code, text=content)
        return httpx2.Response(code, json=content)

    return openai.OpenAI(
        base_url="http://stub.invalid/v1",
        api_key=KEY,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, {"error": {"message": "Unknown request URL: GET /v1/models/m", "code": "unknown_url"}}),
        (404, {"detail": "Not Found"}),  # FastAPI servers without the route
        (405, "Method Not Allowed"),
        (501, {"error": {"message": "not implemented"}}),
        (500, {"error": {"message": "boom"}}),
        (200, {"id": "m", "object": "model", "created": 0, "owned_by": "x"}),
    ],
)
def test_preflight_falls_through_when_the_endpoint_cannot_tell(status: int, body: object) -> None:
    settings = insights.resolve_settings(env={}, api_key=KEY, model="m", no_cache=True)
    with ModelClient(settings, openai_client=_stub(status, body), sleep=FakeClock()) as client:
        client.check()  # no error: a missing route is not a missing model


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (404, {"error": {"message": "The model `m` does not exist", "code": "model_not_found"}}, ModelNotFound),
        (401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}, AuthError),
    ],
)
def test_preflight_stops_on_a_missing_model_or_a_wrong_key(status: int, body: object, error: type) -> None:
    settings = insights.resolve_settings(env={}, api_key=KEY, model="m", no_cache=True)
    with ModelClient(settings, openai_client=_stub(status, body), sleep=FakeClock()) as client:
        with pytest.raises(error) as info:
            client.check()
    assert info.value.fatal and "http://stub.invalid/v1" in str(info.value)
    assert body["error"]["message"] in str(info.value)  # type: ignore[index]
    a_sentence(str(info.value))


def test_preflight_lets_an_alias_through() -> None:
    # The lookup does not know the name, but the endpoint answers chat requests for it (an alias).
    lookup = {"error": {"message": "The model `m` does not exist", "code": "model_not_found"}}
    completion = {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "OK"}, "finish_reason": "length"}],
    }
    settings = insights.resolve_settings(env={}, api_key=KEY, model="m", no_cache=True)
    with ModelClient(settings, openai_client=_stub(404, lookup, chat=(200, completion)), sleep=FakeClock()) as client:
        client.check()


def test_cli_closed_port_stops_at_once_naming_the_url(
    cli_to: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = closed_port_url()
    clock = cli_to(url)
    out = tmp_path / "out" / "out.jsonl"
    assert cli.main(["extract", str(SEEDS), "-o", str(out), "-q", "--max-retries", "2"]) == cli.EXIT_FATAL
    err = capsys.readouterr().err
    assert url in err and "connect" in err
    a_sentence(err)
    assert len(clock.sleeps) == 2  # the check was retried like any request, then the run stopped
    assert output_files(tmp_path / "out") == []


def test_consecutive_connection_failures_stop_the_run() -> None:
    url = closed_port_url()
    clock = FakeClock()
    with make_client(url, clock, max_retries=1, connection_failures=5) as client:
        seen = []
        with pytest.raises(EndpointUnreachable) as info:
            for outcome in extract_many(make_docs(50), concurrency=2, client=client):
                seen.append(outcome)
    assert 5 <= len(seen) <= 6  # five in a row, and what was in flight
    assert all(isinstance(o.error, ConnectionFailed) for o in seen)
    assert info.value.fatal and url in str(info.value) and "5 documents in a row" in str(info.value)
    a_sentence(str(info.value))
    assert len(clock.sleeps) == len(seen)  # one retry each, nothing more started


def test_a_success_between_connection_failures_resets_the_count() -> None:
    docs = make_docs(16)
    # Every fourth document gets through; the others lose their connection every time.
    script = {d.id: ["reset"] * 5 for i, d in enumerate(docs) if i % 4 != 3}
    with ReferenceServer({}, plan=FaultPlan(script=script)) as srv:
        with make_client(srv.url, max_retries=0, connection_failures=4) as client:
            outcomes = list(extract_many(docs, concurrency=1, client=client))
    assert len(outcomes) == 16
    failed = [o for o in outcomes if not o.ok]
    assert len(failed) == 12 and all(isinstance(o.error, ConnectionFailed) for o in failed)
    assert all(o.error is not None and not o.error.fatal for o in failed)


@pytest.mark.parametrize(
    ("action", "status", "words"),
    [
        ("401", 401, "Incorrect API key provided"),
        ("429_quota", 429, "You exceeded your current quota"),
        ("400", 400, "maximum context length"),
        ("500", 500, "The server had an error"),
    ],
)
def test_error_messages_are_sentences_with_the_servers_words(action: str, status: int, words: str) -> None:
    docs = make_docs(1)
    with ReferenceServer({}, plan=FaultPlan(script={"*": [action] * 5})) as srv:
        with make_client(srv.url, max_retries=0) as client, pytest.raises(insights.ModelError) as info:
            insights.extract(docs[0], client=client)
    message = str(info.value)
    assert info.value.status == status and words in message and srv.url in message
    a_sentence(message)


# ========================================================================= 11. a total deadline
def test_a_trickling_answer_hits_the_whole_request_deadline() -> None:
    doc = make_docs(1)[0]
    # The answer is about 800 bytes at 0.2 s a byte: over two minutes to arrive in full. No single
    # read waits long, so only a deadline on the whole request can stop it.
    with ReferenceServer({}, plan=FaultPlan(script={"*": ["trickle"]}, trickle_s=0.2)) as srv:
        with make_client(srv.url, max_retries=0, timeout=3.0) as client:
            started = time.monotonic()
            with pytest.raises(TransportError) as info:
                insights.extract(doc, client=client)
            took = time.monotonic() - started
        assert [r["action"] for r in srv.requests] == ["trickle"]
    assert "within 3 s" in str(info.value) and srv.url in str(info.value)
    a_sentence(str(info.value))
    assert took < 60  # ended at the 3 s deadline, long before the 160 s trickle


def test_the_deadline_leaves_a_normal_request_alone() -> None:
    with ReferenceServer({}) as srv, make_client(srv.url, timeout=30.0) as client:
        result = insights.extract(make_docs(1)[0], client=client)
    assert result.barriers and srv.count == 1


# ============================================================ 12. options checked before anything exists
@pytest.mark.parametrize(
    "option",
    [
        ["--concurrency", "0"],
        ["--concurrency", "-2"],
        ["--concurrency", "many"],
        ["--rpm", "-1"],
        ["--rpm", "0"],
        ["--tpm", "-5"],
        ["--max-retries", "-1"],
        ["--reasks", "-1"],
        ["--timeout", "0"],
        ["--timeout", "-3"],
        ["--timeout", "nan"],
        ["--chunk-chars", "10"],
    ],
)
def test_cli_rejects_a_bad_option_before_creating_anything(
    option: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "out.jsonl"
    with pytest.raises(SystemExit) as done:
        cli.main(["extract", str(SEEDS), "-o", str(out), "--base-url", "http://127.0.0.1:9/v1", *option])
    assert done.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert option[0] in err and "Traceback" not in err
    assert output_files(tmp_path) == []


def test_cli_config_error_leaves_no_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "out.jsonl"
    assert cli.main(["extract", str(SEEDS), "-o", str(out), "--no-cache"]) == cli.EXIT_USAGE  # no key, no endpoint
    assert "OPENAI_API_KEY" in capsys.readouterr().err
    prices = tmp_path / "prices.json"
    prices.write_text("{not json")
    argv = ["extract", str(SEEDS), "-o", str(out), "--base-url", "http://127.0.0.1:9/v1", "--prices", str(prices)]
    assert cli.main([*argv, "--no-cache"]) == cli.EXIT_USAGE
    assert "prices" in capsys.readouterr().err
    assert output_files(tmp_path / "out") == []


def test_env_settings_are_checked_too() -> None:
    for env in ({"INSIGHTS_TIMEOUT": "0"}, {"INSIGHTS_TIMEOUT": "-1"}, {"INSIGHTS_CONNECTION_FAILURES": "0"}):
        with pytest.raises(ConfigError):
            insights.resolve_settings(env=env)
    with pytest.raises(ConfigError):
        insights.resolve_settings(env={}, timeout=float("inf"))


def test_rate_limits_must_be_positive() -> None:
    for limits in ({"rpm": -1}, {"rpm": 0}, {"tpm": -10}, {"rpm": float("nan")}):
        with pytest.raises(ValueError):
            RateLimiter(**limits)
        with pytest.raises(ValueError):
            next(extract_many(make_docs(1), client=make_client("http://127.0.0.1:9/v1"), **limits))


def test_unknown_price_is_reported_as_unknown(cli_to: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ReferenceServer() as srv:
        cli_to(srv.url)
        out = tmp_path / "out.jsonl"
        assert cli.main(["extract", str(SEEDS), "-o", str(out), "--model", "my-local-llama", "-q"]) == 0
    err = capsys.readouterr().err
    assert "estimated cost unknown" in err and "my-local-llama" in err and "$0.0000" not in err


def test_known_price_is_still_reported_in_dollars(
    cli_to: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ReferenceServer() as srv:
        cli_to(srv.url)
        assert cli.main(["extract", str(SEEDS), "-o", str(tmp_path / "out.jsonl"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "estimated cost $0.0" in err and "unknown" not in err


@pytest.mark.parametrize("action", [["stats"], ["clear"], ["export", "-"]])
def test_cache_commands_do_not_create_a_missing_cache(
    action: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo" / "x.db"
    assert cli.main(["cache", *action, "--cache", str(missing)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert str(missing) in err and "no cache" in err
    assert not (tmp_path / "typo").exists()


def test_cache_import_creates_the_cache(tmp_path: Path) -> None:
    entries = tmp_path / "entries.jsonl"
    entries.write_text("")
    target = tmp_path / "new" / "x.db"
    assert cli.main(["cache", "import", str(entries), "--cache", str(target)]) == 0
    assert target.exists()
    assert cli.main(["cache", "stats", "--cache", str(target)]) == 0


def test_reference_server_models_endpoint() -> None:
    import urllib.error
    import urllib.request

    with ReferenceServer({}, models=["a", "b"]) as srv:
        with urllib.request.urlopen(srv.url + "/models", timeout=30) as resp:
            assert [m["id"] for m in json.loads(resp.read())["data"]] == ["a", "b"]
        with urllib.request.urlopen(srv.url + "/models/b", timeout=30) as resp:
            assert json.loads(resp.read())["id"] == "b"
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(srv.url + "/models/c", timeout=30)
        assert info.value.code == 404 and json.loads(info.value.read())["error"]["code"] == "model_not_found"
        assert srv.lookups == ["b", "c"]
    with ReferenceServer({}) as srv:  # no list: every model exists
        with urllib.request.urlopen(srv.url + "/models/anything", timeout=30) as resp:
            assert json.loads(resp.read())["id"] == "anything"
