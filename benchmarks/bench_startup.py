"""How fast the command starts: imports, --help, time to the first request, and a warm run. Not a test.

Usage (from the repository root)::

    python benchmarks/bench_startup.py                       # archive size (9,600 documents), 3 rounds
    python benchmarks/bench_startup.py --docs 2000 --rounds 5
    python benchmarks/bench_startup.py --src OTHER_CHECKOUT  # the same with another version's code

Figures, each a fresh process, median of ``--rounds``:

* ``import insights``, ``insights --help``, ``insights estimate seeds/``: wall time, and whether the model
  SDKs (openai, instructor) were imported;
* time to the first request: the shared corpus (else ``seeds/``) replicated to ``--docs`` documents
  (hard links under ``copyNN/``), ``insights extract`` into a fresh output against the loopback reference
  server; from starting the process to the server receiving the first chat request (the run is then
  killed);
* a warm run: the corpus once (252 documents), every answer already in the cache, into a fresh output
  each round: wall time of the process, and of the run once the modules are imported, with the number of
  fsyncs it made (this is where committing finished documents in groups, rather than two fsyncs each,
  shows).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import (
    ANNOTATIONS_DIR,
    REPO_ROOT,
    SEEDS_DIR,
    cli_env,
    corpus_or_none,
    print_footer,
    print_header,
    row,
    server,
)
from bench_resume import replicate

from insights.testing.server import ReferenceServer

SDKS = "print(sorted(m for m in ('openai', 'instructor') if m in sys.modules), file=sys.stderr)"


class FirstRequest(ReferenceServer):
    """Notes when the first chat request arrives."""

    def __init__(self) -> None:
        super().__init__(ANNOTATIONS_DIR)
        self.first = threading.Event()
        self.at = 0.0

    def _chat(self, handler: Any, raw: bytes) -> None:
        if not self.first.is_set():
            self.at = time.perf_counter()
            self.first.set()
        super()._chat(handler, raw)


def python(src: Path, code: str, *args: str, url: str = "http://127.0.0.1:9") -> tuple[float, str]:
    env = cli_env(url)
    env["PYTHONPATH"] = str(src)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=src, capture_output=True, text=True)
    return time.perf_counter() - started, done.stderr


def median(values: list[float]) -> str:
    return f"median {statistics.median(values):6.2f} s  [{', '.join(f'{v:.2f}' for v in values)}]"


def commands(src: Path, rounds: int) -> None:
    cli = (
        f"import sys\nfrom insights.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n{SDKS}"
    )
    cases = [
        ("python -c 'import insights'", f"import sys, insights\n{SDKS}", []),
        ("the SDKs alone: import openai, instructor", f"import sys, openai, instructor\n{SDKS}", []),
        ("insights --help", cli, ["--help"]),
        ("insights extract --help", cli, ["extract", "--help"]),
        ("insights estimate seeds/", cli, ["estimate", str(SEEDS_DIR)]),
    ]
    for label, code, args in cases:
        times, sdks = [], ""
        for _ in range(rounds):
            took, err = python(src, code, *args)
            times.append(took)
            sdks = err.strip().splitlines()[-1] if err.strip() else "?"
        row(label, f"{median(times)}  SDKs imported: {sdks}")


def first_request(src: Path, docs: Path, rounds: int) -> None:
    times = []
    for _ in range(rounds):
        with FirstRequest() as srv, tempfile.TemporaryDirectory(prefix="bench-first-") as tmp:
            env = cli_env(srv.url)
            env["PYTHONPATH"] = str(src)
            argv = [sys.executable, "-m", "insights.cli", "extract", str(docs), "-o", f"{tmp}/out.jsonl", "-q",
                    "--cache", f"{tmp}/c.db"]  # fmt: skip
            started = time.perf_counter()
            proc = subprocess.Popen(argv, env=env, cwd=src, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            while not srv.first.wait(0.05):
                if proc.poll() is not None:
                    raise SystemExit(f"the run ended before any request: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            times.append(srv.at - started)
            proc.kill()
            proc.communicate()
    row("extract: process start → first request", median(times))


#: Runs the CLI once its modules (and the SDKs) are imported, counting fsyncs: "WARM <seconds> <fsyncs>".
WARM = """import os, sys, time
import insights.cli, insights.client
calls, real = [0], os.fsync
def fsync(fd):
    calls[0] += 1
    real(fd)
os.fsync = fsync
started = time.perf_counter()
code = insights.cli.main(sys.argv[1:])
sys.stderr.write("WARM %.3f %d\\n" % (time.perf_counter() - started, calls[0]))
sys.exit(code)
"""


def warm_run(src: Path, corpus: Path, rounds: int) -> None:
    with server() as srv, tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        cache = f"{tmp}/c.db"

        def extract(out: str) -> tuple[float, float, int]:
            env = cli_env(srv.url)
            env["PYTHONPATH"] = str(src)
            argv = [sys.executable, "-c", WARM, "extract", str(corpus), "-o", out, "-q", "--cache", cache,
                    "--concurrency", "8"]  # fmt: skip
            started = time.perf_counter()
            done = subprocess.run(argv, env=env, cwd=src, capture_output=True, text=True)
            took = time.perf_counter() - started
            own = re.search(r"^WARM ([\d.]+) (\d+)$", done.stderr, re.M)
            if done.returncode not in (0, 1) or own is None:
                raise SystemExit(f"extract failed: {done.stderr[-2000:]}")
            return took, float(own.group(1)), int(own.group(2))

        extract(f"{tmp}/cold.jsonl")
        before = srv.count
        runs = [extract(f"{tmp}/warm{i}.jsonl") for i in range(rounds)]
        assert srv.count == before, "a warm run made requests"
    n = sum(1 for p in corpus.iterdir() if p.is_file())
    row(f"warm run, {n} documents from the cache: process", median([r[0] for r in runs]))
    row("warm run, once imported: run time, fsyncs", f"{median([r[1] for r in runs])}  fsyncs {runs[0][2]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=9600, help="documents for the first-request run (default 9600)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each figure (default 3)")
    parser.add_argument("--corpus", type=Path, help="folder to replicate (default ../shared/corpus, else seeds/)")
    parser.add_argument("--src", type=Path, default=REPO_ROOT, help="repository root whose insights/ runs")
    args = parser.parse_args(argv)
    corpus = corpus_or_none(args.corpus) or SEEDS_DIR
    src = args.src.resolve()

    print_header("start-up: imports, --help, first request, warm run")
    row("code measured", str(src if src != REPO_ROOT else "this checkout"))
    commands(src, args.rounds)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        docs = Path(tmp) / "docs"
        size = replicate(corpus, args.docs, docs)
        row("corpus for the first request", f"{args.docs:,} documents, {size / 1e6:.1f} MB ({corpus.name} replicated)")
        first_request(src, docs, args.rounds)
    warm_run(src, corpus, args.rounds)
    print_footer()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
