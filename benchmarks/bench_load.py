"""How fast documents load, and how much noise cleaning removes. Not a test.

Usage (from the repository root)::

    python benchmarks/bench_load.py                 # ../shared/corpus, 3 rounds
    python benchmarks/bench_load.py PATH [-n 5]     # any file, folder or glob

Prints documents/s and MB/s of raw input (best and median round), raw vs clean characters, the five
documents that lost the most, the machine it ran on, and the command to reproduce the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from insights.documents import corpus_files, load_corpus  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "corpus"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT_CORPUS), help="file, folder or glob")
    parser.add_argument("-n", "--rounds", type=int, default=3, help="times to load the corpus (default 3)")
    args = parser.parse_args(argv)

    try:
        files = corpus_files(args.path)
    except Exception as e:  # noqa: BLE001 - report and stop
        print(f"cannot read {args.path}: {e}", file=sys.stderr)
        return 2
    raw_bytes = sum(f.stat().st_size for f in files)

    timings: list[float] = []
    docs = []
    for _ in range(max(1, args.rounds)):
        started = time.perf_counter()
        docs = load_corpus(files)
        timings.append(time.perf_counter() - started)

    best, median = min(timings), statistics.median(timings)
    raw_chars = sum(d.raw_chars for d in docs)
    clean_chars = sum(len(d.text) for d in docs)
    mb = raw_bytes / 1e6

    shown = os.path.relpath(args.path) if os.path.exists(args.path) else args.path
    print(f"corpus        {shown}: {len(files)} files, {len(docs)} documents, {mb:.2f} MB raw")
    print(f"rounds        {len(timings)}: " + ", ".join(f"{t:.3f}s" for t in timings))
    print(f"best          {best:.3f}s  {len(docs) / best:,.0f} documents/s  {mb / best:.1f} MB/s")
    print(f"median        {median:.3f}s  {len(docs) / median:,.0f} documents/s  {mb / median:.1f} MB/s")
    saved = 1 - clean_chars / raw_chars if raw_chars else 0.0
    print(f"characters    raw {raw_chars:,}  clean {clean_chars:,}  removed {saved:.1%}")
    worst = sorted(docs, key=lambda d: d.raw_chars - len(d.text), reverse=True)[:5]
    for d in worst:
        print(f"  {d.id[:60]:60} raw {d.raw_chars:>9,}  clean {len(d.text):>7,}")
    cpu = platform.processor() or platform.machine()
    print(
        f"machine       {platform.platform()}; {cpu}; {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()} ({platform.python_implementation()})"
    )
    command = ["python", "benchmarks/bench_load.py", *(argv if argv is not None else sys.argv[1:])]
    print(f"reproduce     cd <repo> && PYTHONPATH=. {shlex.join(command)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
