"""How long a finished run takes to decide it has nothing left to do, and how much memory. Not a test.

Usage (from the repository root)::

    python benchmarks/bench_resume.py                         # 1,000 and 10,000 documents, 3 rounds each
    python benchmarks/bench_resume.py --docs 1000 --rounds 5
    python benchmarks/bench_resume.py --src OTHER_CHECKOUT    # the same with another version's code

For each size, the shared corpus (``../shared/corpus``, else ``seeds/``) is replicated into that many
documents (hard links under ``copyNN/`` folders, so ids stay unique), and ``insights extract`` runs once
over them against the loopback reference server (zero latency) to finish the output. Then the same command
runs again, ``--rounds`` times: it has nothing to do. Each such run is a fresh process; the figures are its
wall time and its peak resident memory (``ru_maxrss`` from ``os.wait4``), and the script checks that it
made no request and skipped every document. ``--verify`` runs are timed too (every file read and hashed,
every output block hashed). Peak memory is the process's own high-water mark (``VmHWM`` in
``/proc/self/status``; Linux only, else 0).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO_ROOT, SEEDS_DIR, cli_env, corpus_or_none, print_footer, print_header, row, server


def replicate(corpus: Path, n: int, folder: Path) -> int:
    """``n`` documents: the corpus's files, again and again under ``copy01/``, ``copy02/``... (hard links
    where possible). Returns the bytes of input."""
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and not p.name.startswith("."))
    size = 0
    for i in range(n):
        src = files[i % len(files)]
        dst = folder / f"copy{i // len(files) + 1:02d}" / src.relative_to(corpus)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
        size += src.stat().st_size
    return size


#: Runs the CLI and reports the process's own peak RSS (VmHWM: ``ru_maxrss`` of a child also counts the
#: parent's memory it was forked from, on Linux).
CHILD = """import atexit, sys
def peak():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                sys.stderr.write("VmHWM %s\\n" % line.split()[1])
    except OSError:
        pass
atexit.register(peak)
from insights.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run(src: Path, url: str, args: list[str]) -> tuple[float, int, str]:
    """Run the CLI with ``src`` on the path: (wall seconds, peak RSS in bytes, stderr)."""
    env = cli_env(url)
    env["PYTHONPATH"] = str(src)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, cwd=src, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"insights {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    found = re.search(r"^VmHWM (\d+)$", proc.stderr, re.M)
    return wall, int(found.group(1)) * 1024 if found else 0, proc.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[1000, 10000], help="sizes (default 1000 10000)")
    parser.add_argument("--rounds", type=int, default=3, help="resumed runs per size (default 3)")
    parser.add_argument("--corpus", type=Path, help="folder to replicate (default ../shared/corpus, else seeds/)")
    parser.add_argument("--src", type=Path, default=REPO_ROOT, help="repository root whose insights/ runs")
    parser.add_argument("--no-verify", action="store_true", help="skip the --verify runs (older versions lack it)")
    args = parser.parse_args(argv)
    corpus = corpus_or_none(args.corpus) or SEEDS_DIR
    src = args.src.resolve()

    print_header("resume a finished run (nothing left to do)")
    row("code measured", str(src if src != REPO_ROOT else "this checkout"))
    row("corpus replicated", f"{corpus.name} ({sum(1 for p in corpus.iterdir() if p.is_file())} files)")
    print()
    results = {}
    with server() as srv, tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
        for n in args.docs:
            work = Path(tmp) / f"n{n}"
            docs = work / "docs"
            size = replicate(corpus, n, docs)
            out = work / "out.jsonl"
            command = ["extract", str(docs), "-o", str(out), "--concurrency", "16", "-q",
                       "--cache", str(work / "cache.db")]  # fmt: skip
            before = srv.count
            setup, setup_rss, _ = run(src, srv.url, command)
            made = srv.count - before
            print(f"   {n:,} documents ({size / 1e6:.1f} MB of input): finishing run {setup:.1f} s, {made:,} requests, "
                  f"peak {setup_rss / 2**20:.0f} MiB; output {out.stat().st_size / 1e6:.1f} MB, ledger "
                  f"{out.with_name('out.documents.jsonl').stat().st_size / 1e6:.1f} MB")  # fmt: skip
            variants = [("resume, nothing to do", [])] + ([] if args.no_verify else [("resume --verify", ["--verify"])])
            for label, extra in variants:
                walls, peaks = [], []
                for _ in range(args.rounds):
                    before = srv.count
                    wall, rss, err = run(src, srv.url, [*command, *extra])
                    skipped = re.search(r"skipped (\d+)", err)
                    assert srv.count == before, "a finished run made requests"
                    assert skipped and int(skipped.group(1)) == n and "done 0," in err, err[-500:]
                    walls.append(wall)
                    peaks.append(rss)
                results[(n, label)] = (statistics.median(walls), max(peaks))
                rounds = ", ".join(f"{w:.2f}" for w in walls)
                median = statistics.median(walls)
                peak = max(peaks) / 2**20
                figures = f"median {median:6.2f} s (min {min(walls):.2f}), peak RSS {peak:6.1f} MiB  [{rounds}]"
                row(f"{n:,} docs: {label}", figures)
            shutil.rmtree(work)
    if len(args.docs) == 2:
        small, large = sorted(args.docs)
        key = "resume, nothing to do"
        ratio = results[(large, key)][0] / results[(small, key)][0]
        row(f"time {large:,} / {small:,} documents (×{large / small:.0f} output)", f"{ratio:.1f}×")
    print_footer()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
