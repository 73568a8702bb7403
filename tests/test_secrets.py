"""No key leaks, even when an endpoint (or a proxy in front of it) echoes the key in its error body.

The reference server's ``*_echo`` fault actions answer 401, 400 or 500 with the request's
``Authorization`` header and the bare key in the message and ``param``. A real ``insights extract``
process runs against it, and the test reads every byte the run left: cache file (call log included),
output, ledger and errors files, stdout and stderr (with ``-v``, so log lines are printed too).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO

from insights.errors import REDACTED, AuthError, InvalidOutput, register_secret, scrub
from insights.testing.server import FaultPlan, ReferenceServer

DOC = """# {title}

## Learnings

The district office could not release funds before the end of the fiscal quarter that year.
Volunteers kept the sensor network running long after the grant had ended in the city.
"""


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Error code: 401 - {'message': 'Bearer sk-test-ABCDEF0123456789 refused'}", "Error code: 401"),
        ("the proxy rejected the key sk-proj-Zz9_abcdefghijklmnop.", "the proxy rejected the key"),
        ("Authorization: Bearer opaque-token.value_42", "Authorization: "),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: "),
        ('{"api_key": "abcdef123456", "x": 1}', '"x": 1'),
        ("api-key: 0123456789abcdef0123", "api-key: "),
        ("GET /v1/models?key=AIzaSyD0123456789&alt=json", "&alt=json"),
        ("access_token=ya29.a0AfH6SMB refresh_token=1//0gabc", "access_token="),
    ],
)
def test_scrub_removes_keys_and_anything_shaped_like_a_credential(text: str, kept: str) -> None:
    clean = scrub(text)
    assert REDACTED in clean and kept in clean
    for secret in ("sk-test-ABCDEF", "sk-proj-Zz9", "opaque-token", "dXNlcjpw", "abcdef123456", "0123456789abcdef0123",
                   "AIzaSyD", "ya29", "1//0gabc"):  # fmt: skip
        assert secret not in clean


def test_scrub_removes_a_registered_key_of_any_shape_and_leaves_prose_alone() -> None:
    register_secret("plain-proxy-secret-000111")
    assert scrub("key plain-proxy-secret-000111 was refused") == f"key {REDACTED} was refused"
    assert scrub("given", "another-secret-2222") == "given"
    prose = (
        "This model's maximum context length is 128000 tokens; max_tokens: 4096. Check your key. The "
        "task-force ran basic training on risk-assessment (sk-learn) and a Bearer bond."
    )
    assert scrub(prose) == prose


def test_model_errors_are_scrubbed_when_they_are_made() -> None:
    error = AuthError("HTTP 401: Bearer sk-test-ABCDEF0123456789 is invalid", status=401)
    assert "sk-test" not in str(error) and REDACTED in str(error)
    invalid = InvalidOutput("no valid answer", last_output='{"note": "api_key=abcdef123456"}')
    assert invalid.last_output == '{"note": "api_key=[redacted]"}'


@pytest.fixture
def srv() -> Iterator[ReferenceServer]:
    with ReferenceServer() as server:
        yield server


@pytest.mark.parametrize("key", ["sk-test-ECHO0123456789abcdef", "proxy-secret-7f3a9c2d41e5"])
def test_a_key_echoed_in_error_bodies_is_never_stored_or_shown(srv: ReferenceServer, tmp_path: Path, key: str) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a_transport", "b_rejected", "c_unauthorized"):  # run in this order (--concurrency 1)
        (docs / f"{name}.md").write_text(DOC.format(title=name), encoding="utf-8")
    srv.plan = FaultPlan(
        script={"a_transport": ["500_echo"] * 5, "b_rejected": ["400_echo"], "c_unauthorized": ["401_echo"]}
    )
    out, cache = tmp_path / "out" / "out.jsonl", tmp_path / "cache" / "insights.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "INSIGHTS_"))}
    env.update(OPENAI_BASE_URL=srv.url, OPENAI_API_KEY=key, INSIGHTS_CACHE=str(cache), PYTHONPATH=str(REPO))
    argv = ["-v", "extract", str(docs), "-o", str(out), "--concurrency", "1", "--max-retries", "1"]

    run = subprocess.run(
        [sys.executable, "-m", "insights.cli", *argv], env=env, capture_output=True, text=True, timeout=120
    )

    assert run.returncode == 3, run.stderr  # stopped by the 401
    # The endpoint did echo the key, to every request, in the three kinds of error.
    assert [r["action"] for r in srv.requests] == ["500_echo", "500_echo", "400_echo", "401_echo"]
    assert all(r["headers"]["authorization"] == f"Bearer {key}" for r in srv.requests)
    # What the run stored and showed says why, without the key.
    errors = [json.loads(line) for line in out.with_name("out.errors.jsonl").read_text().splitlines()]
    assert [(e["document_id"], e["status"]) for e in errors] == [("a_transport", 500), ("b_rejected", 400)]
    assert all(REDACTED in e["message"] for e in errors)
    with sqlite3.connect(cache) as conn:
        logged = [row[0] for row in conn.execute("SELECT error FROM calls WHERE error != ''")]
    conn.close()
    assert len(logged) == 4 and all(REDACTED in e for e in logged)
    assert "stopped: AuthError" in run.stderr and REDACTED in run.stderr
    # Zero hits anywhere: every file the run left (cache and its journal, output, ledger, errors), and
    # both streams.
    files = [p for p in tmp_path.rglob("*") if p.is_file() and docs not in p.parents]
    assert cache in files and out.with_name("out.errors.jsonl") in files
    for path in files:
        assert key.encode() not in path.read_bytes(), f"the key leaked into {path.relative_to(tmp_path)}"
    assert key not in run.stdout and key not in run.stderr
