"""Shared fixtures: a clean environment for every test, and replayed HTTP through vcrpy.

Cassettes in ``cassettes/`` hold real HTTP exchanges of the openai SDK (driven by instructor) with the
project's reference server, or with a live API when re-recorded with a key. They are matched on method,
path and **body**, so a changed prompt, schema or model cannot silently replay a stale answer: it fails
with :class:`ReplayMiss`, which says how to re-record (``python tests/record.py``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import vcr
from vcr.errors import CannotOverwriteExistingCassetteException

# vcrpy probes optional HTTP clients by importing them each time a cassette is entered. Under CPython 3.11 a
# failing import that races another thread's import can raise KeyError from the import machinery's module
# lock (seen once in a re-record run). Marking the absent ones absent makes those imports fail at once,
# without the lock.
for _absent in ("botocore", "requests", "httplib2", "tornado", "aiohttp", "httpx_curl_cffi", "pyreqwest"):
    if importlib.util.find_spec(_absent) is None:
        sys.modules.setdefault(_absent, None)  # type: ignore[assignment]

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"
CASSETTES = REPO / "cassettes"
ANNOTATIONS = REPO / "evals" / "seeds"
SHARED_CORPUS = REPO.parent / "shared" / "corpus"
RECORDING = os.environ.get("INSIGHTS_RECORD") == "1"
#: When recording with a live key, the seed cassettes come from this endpoint instead of the server.
LIVE_KEY = os.environ.get("OPENAI_API_KEY") if RECORDING else None
LIVE_BASE_URL = os.environ.get("OPENAI_BASE_URL") if RECORDING else None
LIVE_MODEL = os.environ.get("INSIGHTS_MODEL") if RECORDING else None
REPLAY_KEY = "replay-placeholder-key"

#: Request headers never written to a cassette (secrets, and values that change between machines).
SCRUBBED_REQUEST_HEADERS = ["authorization", "api-key", "openai-organization", "openai-project", "cookie"]
#: The only response headers kept: what the client reads. Everything else (cookies, org ids) is dropped.
KEPT_RESPONSE_HEADERS = {"content-type", "retry-after", "retry-after-ms", "x-should-retry", "x-reference-action"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer setting leaks into a test; the default cache lives in the test's temp dir."""
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "INSIGHTS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    response["headers"] = {k: v for k, v in response["headers"].items() if k.lower() in KEPT_RESPONSE_HEADERS}
    return response


def _same_body(r1: Any, r2: Any) -> None:
    # vcr's own body matcher diffs mismatching bodies (tens of KB of prompt) at great cost; a replay
    # miss must fail fast, so compare the bytes and say only that they differ.
    if r1.body != r2.body:
        raise AssertionError("request bodies differ")


def make_vcr(record: bool = RECORDING) -> vcr.VCR:
    """The project's vcr configuration (record only when ``INSIGHTS_RECORD=1``)."""
    recorder = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode="all" if record else "none",
        match_on=["method", "path", "same_body"],
        filter_headers=SCRUBBED_REQUEST_HEADERS,
        before_record_response=_scrub_response,
        decode_compressed_response=True,
    )
    recorder.register_matcher("same_body", _same_body)
    return recorder


class ReplayMiss(AssertionError):
    """A request had no recorded answer: the cassette is stale or missing."""


def _replay_miss(exc: BaseException) -> CannotOverwriteExistingCassetteException | None:
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:  # cause/context chains can loop
        if isinstance(seen, CannotOverwriteExistingCassetteException):
            return seen
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def replaying(name: str) -> Iterator[Any]:
    """Replay (or, when recording, record) cassette ``name``; a miss raises :class:`ReplayMiss` at once."""
    try:
        with make_vcr().use_cassette(name, allow_playback_repeats=False) as cassette:
            yield cassette
    except Exception as exc:
        miss = _replay_miss(exc)
        if miss is None:
            raise
        raise ReplayMiss(
            f"cassette {name!r} has no recorded answer for a request ({miss.reason}): the prompt, schema, "
            "model or document changed since it was recorded. Re-record every cassette with "
            "`python tests/record.py` (from the project's reference server; with OPENAI_API_KEY set, the "
            "seed cassettes come from the live API)."
        ) from exc


class FakeClock:
    """Stands in for ``time.sleep`` in retries: records the delays, never waits."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()
