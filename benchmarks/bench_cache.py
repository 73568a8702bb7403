"""Warm-cache re-run throughput over the shared corpus.

1. cold: ``extract_many`` over the corpus against the zero-latency loopback reference server, with a
   fresh cache in a temporary folder (every request is a miss and is stored);
2. warm, library: the same documents again with a new client on the same cache file. It must make zero
   model requests: the server's request count is printed before and after and must not change;
3. warm, CLI: ``python -m insights.cli extract CORPUS --cache SAME -q -o NEW.jsonl`` into a fresh output
   file (so resume skips nothing), again with zero model requests.

Reports documents per second for each. Skips with a message when the corpus is absent.

A plain script, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common as c

import insights
from insights.documents import Document


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Documents per second of a re-run answered entirely from the cache (library and CLI), "
        "after a cold run against the loopback reference server.",
    )
    p.add_argument("--corpus", type=Path, default=None, help="documents folder (default: <repo root>/../shared/corpus)")
    p.add_argument("--concurrency", type=int, default=8, help="documents in flight (default: 8, the library default)")
    p.add_argument("--repeat", type=int, default=2, help="warm library runs (default: 2)")
    p.add_argument("--no-cli", action="store_true", help="skip the CLI run")
    return p.parse_args(argv)


def run(docs: list[Document], url: str, cache_path: Path, concurrency: int) -> tuple[float, list[insights.Outcome]]:
    with insights.ModelClient(c.settings(url, cache_path=cache_path)) as client:
        started = time.perf_counter()
        outcomes = list(insights.extract_many(docs, concurrency=concurrency, client=client))
        return time.perf_counter() - started, outcomes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    c.print_header("bench_cache: warm-cache re-run throughput")
    folder = c.corpus_or_none(args.corpus)
    if folder is None:
        print("   " + c.corpus_missing_message(args.corpus))
        c.print_footer()
        return 0
    docs = insights.load_corpus(folder)
    tmp = Path(tempfile.mkdtemp(prefix="insights-bench-cache-"))
    cache_path = tmp / "cache.db"
    c.row("documents", f"{len(docs)} from {folder.name}/ ({sum(len(d.text) for d in docs):,} characters)")
    c.row("concurrency", str(args.concurrency))
    c.row("cache", "a fresh SQLite file in a temporary folder")
    print()

    with c.server(latency=0.0) as srv:
        cold, outcomes = run(docs, srv.url, cache_path, args.concurrency)
        cold_calls = srv.count
        failed = [o for o in outcomes if not o.ok]
        c.row("cold run (misses, stored)", f"{cold:.2f} s  {len(docs) / cold:7.1f} docs/s  ({cold_calls} requests)")
        if failed:
            print(
                f"   note: {len(failed)} documents failed in the cold run and are not cached, "
                f"e.g. {failed[0].document.id}: {failed[0].error}"
            )

        warm_times = []
        for i in range(args.repeat):
            before = srv.count
            wall, outcomes = run(docs, srv.url, cache_path, args.concurrency)
            after = srv.count
            hits = sum(
                1
                for o in outcomes
                if o.result is not None and o.result.provenance.usage.cached_calls == o.result.provenance.usage.calls
            )
            warm_times.append(wall)
            c.row(
                f"warm run {i + 1}, library (extract_many)",
                f"{wall:.2f} s  {len(docs) / wall:7.1f} docs/s  server requests {before} -> {after} "
                f"({'no model requests' if after == before else f'{after - before} REQUESTS'}); "
                f"{hits} docs all from cache",
            )
        warm = statistics.median(warm_times)

        cli_wall = cli_own = None
        if not args.no_cli:
            out = tmp / "warm-cli.jsonl"  # fresh: resume skips nothing
            before = srv.count
            cli_args = [
                "extract",
                str(folder),
                "--cache",
                str(cache_path),
                "--concurrency",
                str(args.concurrency),
                "-q",
                "-o",
                str(out),
            ]
            cli_wall, cli_own, proc = c.run_cli(cli_args, srv.url)
            after = srv.count
            if proc.returncode not in (0, 1):
                print(f"   CLI failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
                cli_wall = None
            else:
                summary = next((ln for ln in proc.stderr.splitlines() if ln.startswith("done ")), "")
                c.row(
                    "warm run, CLI into a fresh output file",
                    f"{cli_wall:.2f} s  {len(docs) / cli_wall:7.1f} docs/s (whole process)  server requests "
                    f"{before} -> {after} ({'no model requests' if after == before else f'{after - before} REQUESTS'})",
                )
                if cli_own:
                    c.row(
                        "  as reported by the CLI (after imports)",
                        f"{cli_own:.1f} s  {len(docs) / cli_own:7.1f} docs/s",
                    )
                if summary:
                    c.row("  CLI summary", summary.split(";")[0])

    print()
    c.row("warm re-run, library (median)", f"{len(docs) / warm:7.1f} docs/s  ({warm / len(docs) * 1000:.2f} ms/doc)")
    if cli_wall:
        c.row(
            "warm re-run, CLI (whole process)",
            f"{len(docs) / cli_wall:7.1f} docs/s  ({cli_wall / len(docs) * 1000:.2f} ms/doc)",
        )
    c.row("cold run", f"{len(docs) / cold:7.1f} docs/s  (zero-latency server)")
    c.print_footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
