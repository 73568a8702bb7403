"""Concurrency efficiency of ``insights.extract_many`` (and of the CLI) against a slow endpoint.

The loopback reference server sleeps ``--latency`` seconds before every answer. With ``--concurrency``
documents in flight and one request per document, a perfect client finishes ``--docs`` documents in

    ideal = ceil(calls / concurrency) * latency

(``calls`` is the number of requests the server actually received, so a chunked document or a re-ask
is accounted for). The script reports the measured wall time, the ideal, efficiency = ideal / measured and
the ratio measured / ideal; the target is efficiency >= 0.9 (ratio <= 1.15). Documents are distinct (no
two requests are alike) and the cache is off, so the cache cannot help.

Server placement: ``thread`` runs the reference server inside this process (its handler threads share the
GIL with the client's worker threads), ``process`` runs it as a separate process (``python -m
insights.testing.server``), which isolates the library's own cost. The CLI run always has the server
outside the CLI's process.

It also prints the CPU time the process spent per document: all Python work of the client happens under
one GIL, so ``docs * cpu_per_doc`` is a floor under the wall time however high the concurrency is.

A plain script, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _common as c

import insights
from insights.documents import Document
from insights.extract import chunks_for, messages_for

TARGET = 0.9


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Wall time of extract_many (and the CLI) with N documents in flight against a loopback "
        "server with fixed latency, compared with the ideal ceil(calls/concurrency) * latency.",
    )
    p.add_argument("--docs", type=int, default=200, help="documents (default: 200)")
    p.add_argument("--latency", type=float, default=0.2, help="server seconds per request (default: 0.2)")
    p.add_argument("--concurrency", type=int, default=32, help="documents in flight (default: 32)")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per server placement (default: 2)")
    p.add_argument(
        "--server",
        choices=("thread", "process", "both"),
        default="both",
        help="reference server in this process, in its own process, or both (default: both)",
    )
    p.add_argument("--corpus", type=Path, default=None, help="documents folder (default: <repo root>/../shared/corpus)")
    p.add_argument("--no-cli", action="store_true", help="skip the CLI run")
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also profile a sequential pass (cProfile, zero latency) and print the top N functions",
    )
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------ documents
def pick_documents(args: argparse.Namespace) -> tuple[list[Document], str]:
    s = c.settings("http://127.0.0.1:1/v1", no_cache=True)
    folder = c.corpus_or_none(args.corpus)
    if folder is not None:
        pool = c.single_chunk(insights.load_corpus(folder), s)
        source = f"{folder.name}/ ({len(pool)} single-chunk documents"
    else:
        print("   " + c.corpus_missing_message(args.corpus).replace("skipped", "note") + "; using the 5 seeds")
        pool = c.single_chunk(c.seed_documents(), s)
        source = f"seeds/ ({len(pool)} documents"
    docs = c.distinct(pool, args.docs)
    source += ", cycled with new ids)" if args.docs > len(pool) else ")"
    return docs, source


def warmup_documents(docs: list[Document], n: int) -> list[Document]:
    import dataclasses

    return [dataclasses.replace(d, id=f"{d.id}~warmup") for d in docs[:n]]


# -------------------------------------------------------------------------------------------- servers
class _ProcessServer:
    """The reference server as a child process (``python -m insights.testing.server``)."""

    def __init__(self, latency: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "insights.testing.server", "--port", "0", "--latency", str(latency),
             "--annotations", str(c.ANNOTATIONS_DIR)],
            cwd=c.REPO_ROOT,
            env=c.cli_env("http://127.0.0.1:1/v1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.close()
            raise RuntimeError(f"the reference server did not start (printed {self.url!r})")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------------------------- runs
def bare_bodies(docs: list[Document]) -> list[dict[str, Any]]:
    """The request body the library sends for each document: one body captured from the server after a
    library call gives the model, tools and options; the messages are rendered per document."""
    s = c.settings("http://127.0.0.1:1/v1", no_cache=True)
    with c.server(latency=0.0) as srv, insights.ModelClient(c.settings(srv.url, no_cache=True)) as client:
        insights.extract(warmup_documents(docs, 1)[0], client=client)
        template = srv.requests[0]["body"]
    return [dict(template, messages=messages_for(d, chunks_for(d, s)[0])) for d in docs]


def run_bare(url: str, bodies: list[dict[str, Any]], concurrency: int) -> dict[str, float]:
    """The same requests from a bare openai client in a pool of ``concurrency`` threads: the floor any
    client built on the openai SDK can reach on this machine."""
    import openai

    client = openai.OpenAI(base_url=url, api_key=c.API_KEY, max_retries=0)
    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(lambda b: client.chat.completions.create(**b), bodies[:concurrency]))  # warm-up
            cpu0, started = time.process_time(), time.perf_counter()
            list(pool.map(lambda b: client.chat.completions.create(**b), bodies))
            return {
                "wall": time.perf_counter() - started,
                "cpu": time.process_time() - cpu0,
                "calls": len(bodies),
                "docs": len(bodies),
            }
    finally:
        client.close()


def run_library(url: str, docs: list[Document], concurrency: int, count: Any) -> dict[str, float]:
    """One timed extract_many run; ``count()`` gives the server's request count, or None."""
    with insights.ModelClient(c.settings(url, no_cache=True)) as client:
        list(insights.extract_many(warmup_documents(docs, concurrency), concurrency=concurrency, client=client))
        before = count()
        cpu0, started = time.process_time(), time.perf_counter()
        outcomes = list(insights.extract_many(docs, concurrency=concurrency, client=client))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
        after = count()
    failed = [o for o in outcomes if not o.ok]
    if failed:
        print(f"   warning: {len(failed)} documents failed, e.g. {failed[0].document.id}: {failed[0].error}")
    calls = sum(o.result.provenance.usage.calls for o in outcomes if o.result is not None)
    if before is not None and after is not None:
        calls = after - before
    return {"wall": wall, "cpu": cpu, "calls": calls, "docs": len(outcomes)}


def figures(wall: float, calls: float, args: argparse.Namespace) -> tuple[float, float, float]:
    ideal = math.ceil(calls / args.concurrency) * args.latency
    return ideal, (ideal / wall if wall else 0.0), (wall / ideal if ideal else math.inf)


def report_bare(runs: list[dict[str, float]], args: argparse.Namespace) -> None:
    walls = [r["wall"] for r in runs]
    med = statistics.median(walls)
    ideal, eff, ratio = figures(med, runs[0]["calls"], args)
    cpu_doc = statistics.median(r["cpu"] / r["docs"] for r in runs)
    c.row(
        "  reference: bare openai client, same bodies",
        f"{med:.3f} s   efficiency {eff:.3f}, ratio {ratio:.3f}, CPU {cpu_doc * 1000:.2f} ms/request",
    )
    print()


def report_library(label: str, runs: list[dict[str, float]], args: argparse.Namespace) -> dict[str, float]:
    walls = [r["wall"] for r in runs]
    med = statistics.median(walls)
    calls = runs[0]["calls"]
    ideal, eff, ratio = figures(med, calls, args)
    _, best_eff, best_ratio = figures(min(walls), calls, args)
    cpu_doc = statistics.median(r["cpu"] / r["docs"] for r in runs)
    print(f"   extract_many, server in a {label}:")
    c.row("  requests (server count)" if label == "thread" else "  requests (sum of usage.calls)", f"{calls:.0f}")
    c.row("  measured wall time (median of runs)", f"{med:.3f} s   runs: " + ", ".join(f"{w:.3f}" for w in walls))
    c.row("  ideal ceil(calls/concurrency) x latency", f"{ideal:.3f} s")
    c.row("  efficiency ideal/measured (median, best)", f"{eff:.3f}, {best_eff:.3f}   target >= {TARGET}")
    c.row("  ratio measured/ideal (median, best)", f"{ratio:.3f}, {best_ratio:.3f}   target <= 1.15")
    c.row(
        "  process CPU per document",
        f"{cpu_doc * 1000:.2f} ms" + ("  (client + in-process server)" if label == "thread" else "  (client only)"),
    )
    budget = (ideal / TARGET) / runs[0]["docs"]
    c.row(
        "  CPU budget per document for the target",
        f"{budget * 1000:.2f} ms  (one GIL: docs x CPU/doc <= ideal/{TARGET})",
    )
    return {"wall": med, "ideal": ideal, "eff": eff, "ratio": ratio, "cpu_doc": cpu_doc}


def run_cli(docs: list[Document], args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="insights-bench-conc-"))
    paths = [d.path for d in docs]
    if all(paths) and len(set(paths)) == len(docs) and len({d.id for d in docs}) == len(docs):
        inputs = [str(p) for p in paths]  # the original files, as a user would pass them
        how = "the document files"
    else:
        inputs = [str(c.write_jsonl(docs, tmp / "docs.jsonl"))]
        how = "one JSONL file"
    out = tmp / "out.jsonl"
    with c.server(latency=args.latency) as srv:
        cli_args = ["extract", *inputs, "--concurrency", str(args.concurrency), "--no-cache", "-q", "-o", str(out)]
        outside, own, proc = c.run_cli(cli_args, srv.url)
        calls = srv.count
    if proc.returncode != 0:
        print(f"   CLI failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        return
    ideal, eff_out, ratio_out = figures(outside, calls, args)
    print(
        f"   CLI (python -m insights.cli extract ... --concurrency {args.concurrency} --no-cache -q -o OUT), "
        f"{len(docs)} docs from {how}:"
    )
    c.row("  requests (server count)", f"{calls}")
    c.row(
        "  wall time, whole process (start to exit)",
        f"{outside:.3f} s   efficiency {eff_out:.3f}, ratio {ratio_out:.3f}",
    )
    if own is not None:
        _, eff_own, ratio_own = figures(own, calls, args)
        c.row(
            "  CLI's own wall time (after imports)", f"{own:.1f} s     efficiency {eff_own:.3f}, ratio {ratio_own:.3f}"
        )
    c.row("  ideal", f"{ideal:.3f} s")
    c.row("  output lines written", f"{sum(1 for _ in out.open(encoding='utf-8'))}")
    print()


def profile(docs: list[Document], top: int) -> None:
    sample = docs[: min(len(docs), 100)]
    with c.server(latency=0.0) as srv, insights.ModelClient(c.settings(srv.url, no_cache=True)) as client:
        for d in warmup_documents(sample, 3):
            insights.extract(d, client=client)
        prof = cProfile.Profile()
        prof.enable()
        for d in sample:
            insights.extract(d, client=client)
        prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    print(
        f"   cProfile of a sequential pass over {len(sample)} documents "
        "(zero latency; the server's threads are not profiled):"
    )
    for line in buf.getvalue().splitlines():
        if line.strip():
            print("   " + line)
    print()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    c.print_header("bench_concurrency: extract_many wall time vs the ideal, slow endpoint")
    docs, source = pick_documents(args)
    c.row("documents", f"{len(docs)} from {source}")
    c.row("latency, concurrency", f"{args.latency} s, {args.concurrency}")
    c.row("cache", "off (no_cache=True)")
    print()
    results: dict[str, dict[str, float]] = {}
    bodies = bare_bodies(docs)
    if args.server in ("thread", "both"):
        runs, bare = [], []
        with c.server(latency=args.latency) as srv:
            for _ in range(args.repeat):
                runs.append(run_library(srv.url, docs, args.concurrency, lambda: srv.count))
                bare.append(run_bare(srv.url, bodies, args.concurrency))
        results["thread"] = report_library("thread", runs, args)
        report_bare(bare, args)
    if args.server in ("process", "both"):
        child = _ProcessServer(args.latency)
        try:
            runs, bare = [], []
            for _ in range(args.repeat):
                runs.append(run_library(child.url, docs, args.concurrency, lambda: None))
                bare.append(run_bare(child.url, bodies, args.concurrency))
        finally:
            child.close()
        results["process"] = report_library("process", runs, args)
        report_bare(bare, args)
    if not args.no_cli:
        run_cli(docs, args)
    if args.profile:
        profile(docs, args.profile)
    missed = [k for k, r in results.items() if r["eff"] < TARGET]
    if missed:
        print(
            f"   target missed ({', '.join(missed)}): the client is CPU-bound under the GIL (see 'process CPU per "
            "document' vs the budget);\n   run with --profile 25 and see BENCHMARKS.md for what dominates."
        )
    c.print_footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
