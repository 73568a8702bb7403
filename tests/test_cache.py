"""Tests for insights.cache (response cache + call log) and insights.pricing."""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from contextlib import closing
from pathlib import Path

import pytest

from insights.cache import MIGRATIONS, Cache, CachedResponse, CallRecord, request_key
from insights.errors import CacheError, ConfigError
from insights.pricing import DEFAULT_PRICES, Price, cost, load_prices

REPO_ROOT = Path(__file__).resolve().parents[1]


def _parts(**changes: object) -> dict[str, object]:
    parts: dict[str, object] = {
        "endpoint": "api.openai.com",
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Extract."}, {"role": "user", "content": "Texte é"}],
        "tools": [{"type": "function", "function": {"name": "Insights", "parameters": {"type": "object"}}}],
        "mode": "tools",
        "temperature": 0.0,
        "seed": 7,
        "max_tokens": 4096,
        "prompt_version": "p1",
        "schema_version": "s1",
    }
    parts.update(changes)
    return parts


def _response(n: int) -> dict[str, object]:
    return {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer {n} ✓"}}],
        "usage": {"prompt_tokens": 100 + n, "completion_tokens": 10 + n},
    }


@pytest.fixture
def cache(tmp_path: Path):
    with Cache(tmp_path / "sub" / "dir" / "cache.db") as c:
        yield c


# ---------------------------------------------------------------------------------------------- keys


def test_request_key_is_deterministic_and_versioned() -> None:
    key = request_key(_parts())
    assert key == request_key(_parts())
    assert key.startswith("v1:")
    assert len(key) == 3 + 64
    int(key[3:], 16)  # hex digest


def test_request_key_ignores_dict_key_order() -> None:
    parts = _parts()
    reordered = dict(reversed(list(parts.items())))
    reordered["messages"] = [dict(reversed(list(m.items()))) for m in parts["messages"]]  # type: ignore[union-attr]
    assert list(reordered) != list(parts)
    assert request_key(reordered) == request_key(parts)


def test_request_key_matches_documented_recipe() -> None:
    import hashlib

    parts = _parts()
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert request_key(parts) == "v1:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"messages": [{"role": "user", "content": "other"}]},
        {"tools": []},
        {"temperature": 0.2},
        {"prompt_version": "p2"},
        {"schema_version": "s2"},
        {"seed": 8},
        {"max_tokens": 100},
        {"endpoint": "localhost:11434"},
        {"mode": "json"},
    ],
)
def test_request_key_changes_with_every_part(change: dict[str, object]) -> None:
    assert request_key(_parts(**change)) != request_key(_parts())


def test_request_key_same_parts_same_key_whatever_else_changes() -> None:
    # The caller never puts the API key (or a timestamp) in parts; what is not in parts cannot matter.
    a = _parts()
    b = _parts()
    assert a is not b
    assert request_key(a) == request_key(b)


# ------------------------------------------------------------------------------------ put / get


def test_put_get_round_trip_and_miss(cache: Cache) -> None:
    key = request_key(_parts())
    assert cache.get(key) is None
    cache.put(key, response=_response(1), model="gpt-4o-mini", input_tokens=101, output_tokens=11, latency_s=1.5)
    got = cache.get(key)
    assert isinstance(got, CachedResponse)
    assert got.key == key
    assert got.response == _response(1)
    assert got.model == "gpt-4o-mini"
    assert (got.input_tokens, got.output_tokens, got.latency_s) == (101, 11, 1.5)
    assert got.created_at.endswith("+00:00")
    assert cache.get(request_key(_parts(model="gpt-4o"))) is None
    # INSERT OR REPLACE
    cache.put(key, response=_response(2), model="gpt-4o-mini", input_tokens=1, output_tokens=2, latency_s=0.1)
    again = cache.get(key)
    assert again is not None and again.response == _response(2) and again.input_tokens == 1
    assert cache.stats().entries == 1


@pytest.mark.parametrize(
    ("column", "garbage"),
    [("response", "{not json"), ("response", "[1, 2]"), ("input_tokens", "many"), ("latency_s", None)],
)
def test_corrupt_row_is_a_miss_and_is_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, column: str, garbage: object
) -> None:
    path = tmp_path / "cache.db"
    with Cache(path) as cache:
        cache.put("k1", response=_response(1), model="m", input_tokens=1, output_tokens=1, latency_s=0.1)
        cache.put("k2", response=_response(2), model="m", input_tokens=2, output_tokens=2, latency_s=0.2)
        with closing(sqlite3.connect(path)) as raw:
            if garbage is None:  # NOT NULL column: rebuild the row with a text value instead
                raw.execute(f"UPDATE responses SET {column} = 'slow' WHERE key = 'k1'")
            else:
                raw.execute(f"UPDATE responses SET {column} = ? WHERE key = 'k1'", (garbage,))
            raw.commit()
        with caplog.at_level(logging.WARNING, logger="insights.cache"):
            assert cache.get("k1") is None
        assert any("k1" in r.getMessage() and r.name == "insights.cache" for r in caplog.records)
        with closing(sqlite3.connect(path)) as raw:
            keys = [row[0] for row in raw.execute("SELECT key FROM responses ORDER BY key")]
        assert keys == ["k2"]
        assert cache.get("k1") is None
        got = cache.get("k2")
        assert got is not None and got.response == _response(2)


def test_clear_removes_entries_but_keeps_log_unless_asked(cache: Cache) -> None:
    for n in range(5):
        cache.put(f"k{n}", response=_response(n), model="m", input_tokens=n, output_tokens=n, latency_s=0.0)
    cache.log_call(CallRecord(document_id="d", model="m", key="k0", cached=False))
    assert cache.clear() == 5
    assert all(cache.get(f"k{n}") is None for n in range(5))
    assert cache.stats().entries == 0
    assert len(cache.calls()) == 1
    cache.put("k9", response=_response(9), model="m", input_tokens=1, output_tokens=1, latency_s=0.0)
    assert cache.clear(log=True) == 1
    assert cache.calls() == []
    assert cache.clear() == 0


# ---------------------------------------------------------------------------------------- call log


def test_log_calls_and_stats(cache: Cache) -> None:
    cache.put("k1", response=_response(1), model="gpt-4o-mini", input_tokens=100, output_tokens=50, latency_s=2)
    records = [
        CallRecord(
            "doc-a", "gpt-4o-mini", "k1", cached=False, input_tokens=100, output_tokens=50, latency_s=2.0, cost_usd=0.01
        ),
        CallRecord(
            "doc-b",
            "gpt-4o-mini",
            "k2",
            cached=False,
            input_tokens=300,
            output_tokens=0,
            latency_s=1.0,
            cost_usd=None,
            status="TransportError",
            error="timeout",
        ),
        CallRecord("doc-a", "gpt-4o-mini", "k1", cached=True, input_tokens=100, output_tokens=50, cost_usd=0.01),
        CallRecord("doc-c", "gpt-4o-mini", "k1", cached=True, input_tokens=100, output_tokens=50, cost_usd=0.01),
        CallRecord("doc-d", "llama3", "k3", cached=True, input_tokens=7, output_tokens=3, cost_usd=None),
        CallRecord("doc-e", "gpt-4o", "k4", cached=False, input_tokens=1000, output_tokens=200, cost_usd=0.0045),
    ]
    for record in records:
        cache.log_call(record)

    stats = cache.stats()
    assert stats.path == str(cache.path)
    assert stats.size_bytes > 0
    assert stats.entries == 1
    assert stats.calls == 6
    assert stats.hits == 3
    assert stats.misses == 3
    assert stats.hit_rate == pytest.approx(0.5)
    assert stats.tokens_saved == 150 + 150 + 10
    assert stats.cost_saved_usd == pytest.approx(0.02)
    # Every non-cached call's logged tokens are spent, a failed one's too (a cut-off answer cost its tokens).
    assert stats.tokens_spent == 150 + 300 + 1200
    assert stats.cost_spent_usd == pytest.approx(0.0145)

    doc_a = cache.calls("doc-a")
    assert [c["cached"] for c in doc_a] == [False, True]  # oldest first
    assert doc_a[0]["cost_usd"] == pytest.approx(0.01) and doc_a[0]["latency_s"] == 2.0
    every = cache.calls()
    assert [c["document_id"] for c in every] == ["doc-a", "doc-b", "doc-a", "doc-c", "doc-d", "doc-e"]
    assert every[1]["status"] == "TransportError" and every[1]["error"] == "timeout"
    assert every[1]["cost_usd"] is None
    assert cache.calls("nobody") == []


def test_stats_of_empty_cache(cache: Cache) -> None:
    stats = cache.stats()
    assert (stats.entries, stats.calls, stats.hits, stats.misses, stats.hit_rate) == (0, 0, 0, 0, 0.0)
    assert (stats.tokens_saved, stats.cost_saved_usd, stats.tokens_spent, stats.cost_spent_usd) == (0, 0, 0, 0)


# ----------------------------------------------------------------------------------- export / import


def test_export_import_round_trip_skips_bad_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    keys = [request_key(_parts(seed=n)) for n in range(4)]
    with Cache(tmp_path / "a.db") as source:
        for n, key in enumerate(keys):
            source.put(
                key, response=_response(n), model="gpt-4o-mini", input_tokens=n, output_tokens=2 * n, latency_s=0.25 * n
            )
        buffer = io.StringIO()
        assert source.export(buffer) == 4
        originals = {key: source.get(key) for key in keys}

    lines = buffer.getvalue().splitlines()
    assert len(lines) == 4
    first = json.loads(lines[0])
    assert set(first) == {"key", "response", "model", "input_tokens", "output_tokens", "latency_s", "created_at"}
    assert isinstance(first["response"], dict)

    bad = ["this is not json", json.dumps({"key": "x", "response": "not an object"}), "[1, 2]", ""]
    text = "\n".join(lines[:2] + bad + lines[2:]) + "\n"
    with Cache(tmp_path / "b.db") as target:
        with caplog.at_level(logging.WARNING, logger="insights.cache"):
            assert target.import_(io.StringIO(text)) == 4
        warnings = [r for r in caplog.records if r.name == "insights.cache" and r.levelno == logging.WARNING]
        assert len(warnings) == 3
        for key in keys:
            assert target.get(key) == originals[key]
        assert target.stats().entries == 4
        assert target.get("x") is None


# ------------------------------------------------------------------------------- migrations / errors


def test_migrations_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    with Cache(path):
        pass
    with Cache(path) as again, Cache(path):
        again.put("k", response={}, model="m", input_tokens=0, output_tokens=0, latency_s=0)
    with closing(sqlite3.connect(path)) as raw:
        rows = raw.execute("SELECT name, applied_at FROM _migrations").fetchall()
        mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
        indexes = [r[1] for r in raw.execute("PRAGMA index_list(calls)")]
    assert [r[0] for r in rows] == [m.__name__ for m in MIGRATIONS]
    assert rows[0][1]
    assert mode == "wal"
    assert "calls_document_id" in indexes


def test_parent_is_a_regular_file_raises_cache_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    path = blocker / "cache" / "insights.db"
    with pytest.raises(CacheError) as info:
        Cache(path)
    assert str(path) in str(info.value)
    assert info.value.__cause__ is not None


def test_read_only_directory_raises_cache_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running with privileges that ignore directory permissions (root)")
        path = ro / "cache.db"
        with pytest.raises(CacheError) as info:
            Cache(path)
        assert str(path) in str(info.value)
        assert info.value.__cause__ is not None
    finally:
        ro.chmod(0o755)


def test_not_a_database_raises_cache_error(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    path.write_bytes(b"this is not a sqlite database at all" * 100)
    with pytest.raises(CacheError) as info:
        Cache(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.Error)


def test_closed_cache_raises_cache_error(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache.db")
    cache.close()
    with pytest.raises(CacheError):
        cache.get("k")


# ------------------------------------------------------------------------------------- concurrency

_WORKER = textwrap.dedent(
    """
    import sys
    from insights.cache import Cache, CallRecord

    path, wid, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()  # wait for "go" so every process writes at the same time
    with Cache(path) as cache:
        for i in range(n):
            key = f"p{wid}-{i}"
            response = {"id": key, "choices": [{"message": {"content": "x" * (i % 50)}}]}
            cache.put(key, response=response, model="m", input_tokens=i, output_tokens=1, latency_s=0.01)
            cache.put(f"shared-{i % 10}", response={"by": wid}, model="m", input_tokens=1, output_tokens=1,
                      latency_s=0.0)
            got = cache.get(key)
            assert got is not None and got.response == response, (key, got)
            cache.log_call(CallRecord(document_id=f"doc-{wid}", model="m", key=key, cached=i % 2 == 0,
                                      input_tokens=i, output_tokens=1))
    print("done")
    """
)


def test_concurrent_processes_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    workers, per_worker = 4, 200
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), str(w), str(per_worker)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for w in range(workers)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=600) for proc in procs]  # a guard against hanging
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "done"

    with Cache(path) as cache:
        for w in range(workers):
            for i in range(per_worker):
                got = cache.get(f"p{w}-{i}")
                assert got is not None and got.response["id"] == f"p{w}-{i}" and got.input_tokens == i
            assert len(cache.calls(f"doc-{w}")) == per_worker
        stats = cache.stats()
        assert stats.entries == workers * per_worker + 10
        assert stats.calls == workers * per_worker
        assert stats.hits == workers * per_worker // 2
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert raw.execute("SELECT COUNT(*) FROM _migrations").fetchone()[0] == len(MIGRATIONS)


def test_threads_share_one_cache_object(tmp_path: Path) -> None:
    threads, per_thread = 16, 100
    errors: list[BaseException] = []
    start = threading.Barrier(threads)
    with Cache(tmp_path / "threads.db") as cache:

        def work(t: int) -> None:
            try:
                start.wait()
                for i in range(per_thread):
                    key = f"t{t}-{i}"
                    cache.put(key, response={"t": t, "i": i}, model="m", input_tokens=i, output_tokens=0, latency_s=0.0)
                    got = cache.get(key)
                    assert got is not None and got.response == {"t": t, "i": i}
                    assert cache.get(f"t{(t + 1) % threads}-absent") is None
                    cache.log_call(CallRecord(document_id=f"d{t}", model="m", key=key, cached=False, input_tokens=i))
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        assert errors == []
        stats = cache.stats()
        assert stats.entries == threads * per_thread
        assert stats.calls == threads * per_thread
        assert stats.tokens_spent == threads * sum(range(per_thread))
        assert all(cache.get(f"t{t}-{i}") is not None for t in range(threads) for i in range(per_thread))
        with closing(sqlite3.connect(cache.path)) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


# ------------------------------------------------------------------------------------------ pricing


def test_cost_exact_and_longest_prefix() -> None:
    prices = load_prices(None)
    assert prices == DEFAULT_PRICES and prices is not DEFAULT_PRICES
    assert cost("gpt-4o-mini", 1_000_000, 1_000_000, prices) == pytest.approx(0.75)
    assert cost("gpt-4o-mini-2024-07-18", 1_000_000, 0, prices) == pytest.approx(0.15)
    assert cost("gpt-4o-2024-08-06", 2_000_000, 1_000_000, prices) == pytest.approx(15.0)
    assert cost("gpt-4.1-mini-2025-04-14", 0, 1_000_000, prices) == pytest.approx(1.60)
    assert cost("gpt-4.1-2025-04-14", 1000, 500, prices) == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1e6)


def test_cost_unknown_model_is_none() -> None:
    prices = load_prices(None)
    assert cost("llama3.1:8b", 1000, 1000, prices) is None
    assert cost("qwen2.5", 0, 0, prices) is None
    assert cost("", 10, 10, prices) is None


def test_user_prices_override_and_extend(tmp_path: Path) -> None:
    file = tmp_path / "prices.json"
    file.write_text(json.dumps({"gpt-4o-mini": {"input": 1, "output": 2}, "llama3": {"input": 0, "output": 0}}))
    prices = load_prices(file)
    assert prices["gpt-4o-mini"] == Price(input=1.0, output=2.0)
    assert prices["gpt-4o"] == DEFAULT_PRICES["gpt-4o"]
    assert DEFAULT_PRICES["gpt-4o-mini"] == Price(
        0.15, 0.60, batch_input=0.075, batch_output=0.30, cached_input=0.075
    )  # untouched
    assert cost("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000, prices) == pytest.approx(3.0)
    assert cost("llama3", 5000, 5000, prices) == 0.0


@pytest.mark.parametrize(
    "content",
    ["{not json", "[1, 2]", '{"m": 3}', '{"m": {"input": 1}}', '{"m": {"input": "1", "output": 2}}'],
)
def test_bad_prices_file_raises_config_error_naming_file(tmp_path: Path, content: str) -> None:
    file = tmp_path / "my-prices.json"
    file.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_prices(file)
    assert str(file) in str(info.value)


def test_missing_prices_file_raises_config_error(tmp_path: Path) -> None:
    file = tmp_path / "absent.json"
    with pytest.raises(ConfigError) as info:
        load_prices(file)
    assert str(file) in str(info.value)
