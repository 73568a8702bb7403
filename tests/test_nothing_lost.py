"""Nothing lost (issue 8, items 1-5): one run per output, records never emptied, disk errors, bad files,
another model's results.

The CLI runs against the loopback reference server, in-process through ``cli.main`` or as real
``insights extract`` processes where another process is the point (two runs at once, a file-size
limit). Helpers and fixtures come from ``test_faults.py``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import test_faults as faults
from conftest import REPO
from test_faults import KEY, SEED_FILES, Out, multiset, run_cli, strict_jsonl

from insights import cli
from insights.cache import Cache
from insights.errors import CacheError
from insights.testing.server import FaultPlan, ReferenceServer

# The fault suite's fixtures, under their names (pytest finds fixtures among a test module's globals).
srv, cli_env, seed_dir, seeds = faults.srv, faults.cli_env, faults.seed_dir, faults.seeds


def cli_process_env(server: ReferenceServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "INSIGHTS_"))}
    env.update(PYTHONPATH=str(REPO), OPENAI_BASE_URL=server.url, OPENAI_API_KEY=KEY, **extra)
    return env


def extract_command(docs: Path, out: Path, *options: str, prelude: str = "") -> list[str]:
    """``insights extract`` in a fresh interpreter (``prelude``: Python run first, e.g. a resource limit)."""
    code = f"{prelude}import sys; from insights.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, "extract", str(docs), "-o", str(out), *options]


def lines_by_document(out: Out) -> Counter[str]:
    return Counter(line["document_id"] for line in out.lines())


def assert_each_document_once(out: Out, ids: list[str]) -> None:
    """The ledger names each document once, and each document has exactly the lines its ledger line counts."""
    ledger = strict_jsonl(out.documents)
    assert Counter(x["document_id"] for x in ledger) == Counter(ids)
    per_doc = lines_by_document(out)
    for entry in ledger:
        counts = entry["counts"]
        expected = sum(counts[k] for k in ("barrier", "enabler", "champion", "failed_experiment"))
        assert per_doc[entry["document_id"]] == expected, entry["document_id"]
    assert set(per_doc) <= set(ids)
    assert max(multiset(out.lines()).values(), default=1) == 1  # no line twice


# ============================================================================ 1. one run per output
class GatedServer(ReferenceServer):
    """Holds every chat request until :attr:`gate` is set; :attr:`arrived` tells that one came."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()
        self.gate = threading.Event()

    def _chat(self, handler: Any, raw: bytes) -> None:
        self.arrived.set()
        assert self.gate.wait(120), "the test never opened the gate"
        super()._chat(handler, raw)


def test_two_concurrent_runs_on_one_output_the_second_is_refused_naming_the_first(tmp_path, seed_dir, seeds):
    server = GatedServer().start()
    out = Out(tmp_path / "out.jsonl")
    env = cli_process_env(server, INSIGHTS_CACHE=str(tmp_path / "cache.db"))
    first = subprocess.Popen(
        extract_command(seed_dir, out.out, "--concurrency", "2", "-q"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # The first run is inside its first request, so it holds the output (and has paid for nothing yet).
        assert server.arrived.wait(60), "the first run never sent a request"
        second = subprocess.run(
            extract_command(seed_dir, out.out, "-q"), env=env, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == cli.EXIT_USAGE, second.stderr
        holder = f"process {first.pid} on "
        assert holder in second.stderr and f"extract {seed_dir} -o {out.out}" in second.stderr, second.stderr
        assert "another -o" in second.stderr and "Traceback" not in second.stderr
    finally:
        server.gate.set()
        _, err = first.communicate(timeout=120)
        server.stop()
    assert first.returncode == 0, err.decode()[-2000:]
    assert_each_document_once(out, [d.id for d in seeds])
    assert Counter(r["doc_id"] for r in server.requests) == Counter({d.id: 1 for d in seeds})  # nobody paid twice
    assert not (tmp_path / "out.jsonl.lock").exists()


# ========================================================================= 2. records never emptied
def test_a_rerun_stopped_early_keeps_the_previous_failures(srv, cli_env, seed_dir, seeds, tmp_path, monkeypatch):
    failing = seeds[3].id
    srv.plan = FaultPlan(script={failing: ["400"] * 10})
    out = Out(tmp_path / "out.jsonl")
    assert run_cli(seed_dir, "-o", out.out) == cli.EXIT_FAILED
    assert [r["document_id"] for r in out.error_records()] == [failing]

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(cli, "extract_many", interrupted)
        assert run_cli(seed_dir, "-o", out.out) == cli.EXIT_INTERRUPTED
    assert [r["document_id"] for r in out.error_records()] == [failing]  # still recorded

    srv.plan = FaultPlan()
    assert run_cli(seed_dir, "-o", out.out) == 0
    assert out.error_records() == []
    assert_each_document_once(out, [d.id for d in seeds])


@pytest.mark.parametrize(
    ("where", "why"),
    [
        (lambda t: ["-o", t / "out.jsonl", "--errors", t / "out.jsonl"], "same file as"),
        (lambda t: ["-o", t / "out.jsonl", "--errors", t / "out.documents.jsonl"], "same file as"),
        (lambda t: ["-o", t / "docs" / "out.jsonl"], "would be read as input"),
        (lambda t: ["-o", t / "out.jsonl", "--errors", t / "docs" / "failed.jsonl"], "would be read as input"),
    ],
)
def test_paths_that_would_lose_records_are_refused_before_any_file_is_created(
    srv, cli_env, seed_dir, tmp_path, capsys, where, why
):
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert run_cli(seed_dir, *where(tmp_path)) == cli.EXIT_USAGE
    assert why in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # not even the cache
    assert srv.count == 0


# ============================================================================ 3. a full disk
FSIZE_PRELUDE = "import resource; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_full_disk_under_the_output_stops_cleanly_and_a_rerun_completes(srv, cli_env, seed_dir, seeds, tmp_path):
    # The reference: an uninterrupted run, documents in file order.
    ref = Out(tmp_path / "ref" / "out.jsonl")
    assert run_cli(seed_dir, "-o", ref.out, "--concurrency", 1, "--no-cache") == 0
    sizes = [len("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in ref.lines() if x["document_id"] == d.id))
             for d in seeds]  # fmt: skip
    # Files may not grow past the middle of the third document's lines (writes past it fail with EFBIG,
    # as on a full disk); the ledger stays below it.
    limit = sizes[0] + sizes[1] + sizes[2] // 2
    assert ref.documents.stat().st_size < limit

    out = Out(tmp_path / "run" / "out.jsonl")
    env = cli_process_env(srv, INSIGHTS_CACHE=str(tmp_path / "c.db"))
    prelude = FSIZE_PRELUDE.format(limit=limit)
    full = subprocess.run(
        extract_command(seed_dir, out.out, "--concurrency", "1", "--no-cache", "-q", prelude=prelude),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert full.returncode == cli.EXIT_WRITE, full.stderr
    assert "Traceback" not in full.stderr
    [stopped] = [line for line in full.stderr.splitlines() if line.startswith("stopped:")]
    assert f"cannot write {out.out}: File too large" in stopped and "run the same command again" in stopped
    assert re.search(r"done 2, .*estimated cost \$0\.\d{4}", full.stderr)
    assert out.ledger_ids() == [d.id for d in seeds[:2]]  # the ledger matches the lines: no torn line
    assert multiset(out.lines()) == multiset(x for x in ref.lines() if x["document_id"] in out.ledger_ids())

    srv.reset()
    assert run_cli(seed_dir, "-o", out.out, "--concurrency", 1, "--no-cache") == 0
    assert multiset(out.lines()) == multiset(ref.lines())
    assert_each_document_once(out, [d.id for d in seeds])
    assert sorted(r["doc_id"] for r in srv.requests) == sorted(d.id for d in seeds[2:])


def test_a_full_disk_under_the_cache_warns_once_goes_on_and_counts_the_spend(
    srv, cli_env, seed_dir, seeds, tmp_path, monkeypatch, capsys, caplog
):
    real_write, real_put = Cache._write, Cache.put
    full = threading.Event()

    def write(self: Cache, operation: Any) -> Any:
        if full.is_set():
            raise CacheError(f"cache {self.path}: database or disk is full") from sqlite3.OperationalError(
                "database or disk is full"
            )
        return real_write(self, operation)

    def put(self: Cache, key: str, **kwargs: Any) -> None:
        real_put(self, key, **kwargs)
        full.set()  # the disk fills up right after the first stored answer

    monkeypatch.setattr(Cache, "_write", write)
    monkeypatch.setattr(Cache, "put", put)
    out = Out(tmp_path / "out.jsonl")
    with caplog.at_level(logging.WARNING, logger="insights.client"):
        assert run_cli(seed_dir, "-o", out.out, "--concurrency", 2) == 0

    warnings = [r.getMessage() for r in caplog.records if "continuing without the cache" in r.getMessage()]
    assert len(warnings) == 1 and "database or disk is full" in warnings[0]
    assert out.error_records() == []
    assert_each_document_once(out, [d.id for d in seeds])
    assert srv.count == 5
    ledger = strict_jsonl(out.documents)
    spent = sum(x["provenance"]["usage"]["cost_usd"] for x in ledger)
    tokens = sum(x["provenance"]["usage"]["input_tokens"] for x in ledger)
    err = capsys.readouterr().err
    assert spent > 0 and f"estimated cost ${spent:.4f}" in err and f"tokens in {tokens:,} " in err


# ============================================================================ 4. bad files, same stems
def test_files_sharing_a_stem_are_all_extracted_under_unique_ids_with_their_source(srv, cli_env, seed_dir, tmp_path):
    docs = tmp_path / "corpus"
    for folder, seed in (("lab-a", SEED_FILES[0]), ("lab-b", SEED_FILES[1])):
        (docs / folder).mkdir(parents=True)
        shutil.copy(seed, docs / folder / "closing-report.md")
    shutil.copy(SEED_FILES[2], docs / SEED_FILES[2].name)
    out = Out(tmp_path / "out.jsonl")

    assert run_cli(docs, "-o", out.out) == 0

    ids = ["lab-a/closing-report", "lab-b/closing-report", SEED_FILES[2].stem]
    assert sorted(out.ledger_ids()) == sorted(ids)
    sources = {x["document_id"]: x["source"] for x in out.lines()}
    assert sources == {ids[0]: "lab-a/closing-report.md", ids[1]: "lab-b/closing-report.md", ids[2]: SEED_FILES[2].name}
    assert Counter(r["doc_id"] for r in srv.requests) == Counter({i: 1 for i in ids})
    assert run_cli(docs, "-o", out.out) == 0 and srv.count == 3  # and a rerun skips them all


# ============================================================================ 5. another model's results
def test_another_model_on_the_same_output_is_refused_before_any_request(srv, cli_env, seed_dir, tmp_path, capsys):
    out = Out(tmp_path / "out.jsonl")
    assert run_cli(seed_dir, "-o", out.out) == 0
    before = out.out.read_bytes(), out.documents.read_bytes()
    capsys.readouterr()

    assert run_cli(seed_dir, "-o", out.out, "--model", "gpt-4.1-mini") == cli.EXIT_USAGE

    err = capsys.readouterr().err
    assert "holds results of model 'gpt-4o-mini'" in err and "this run uses model 'gpt-4.1-mini'" in err
    assert "--overwrite" in err and "another -o" in err
    assert (out.out.read_bytes(), out.documents.read_bytes()) == before and srv.count == 5
    assert run_cli(seed_dir, "-o", tmp_path / "other.jsonl", "--model", "gpt-4.1-mini") == 0
    assert run_cli(seed_dir, "-o", out.out, "--model", "gpt-4.1-mini", "--overwrite") == 0
    assert {x["model"] for x in out.lines()} == {"gpt-4.1-mini"}
