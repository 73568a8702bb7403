"""The long-document tail: one many-chunk document among short ones, against a slow endpoint.

One long document (the corpus's longest, cut into ``--chunks`` chunks by choosing ``chunk_chars``) and
``--short`` single-chunk documents go through ``--concurrency`` calls in flight, against the loopback
reference server sleeping ``--latency`` seconds before every answer (cache off, so every chunk is a
request). Two schedulers are timed on the same documents:

* ``chunks in the window`` — :func:`insights.extract_many`: the unit of work is a chunk, so the long
  document's chunks run side by side with the short documents.
* ``documents in the window`` — the scheduler before: a sliding window of *documents*, each running
  :func:`insights.extract` (its chunks one after another) on one worker thread. Its wall time cannot go
  below ``chunks * latency``, however wide the window.

The ideal is ``ceil(calls / concurrency) * latency``: every slot busy, each request taking exactly the
latency (``calls`` is what the server received; the critical path of one chunk, ``latency``, is below it).
The script prints measured / ideal for both; the target is <= 1.5 for chunks in the window. The long
document goes first in the input (``--position first``), last, or both. A plain script: it asserts
nothing about time.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import _common as c

import insights
from insights.config import MIN_CHUNK_CHARS
from insights.documents import Document
from insights.extract import chunks_for
from insights.testing.server import ReferenceServer

TARGET = 1.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chunks", type=int, default=35, help="chunks of the long document (default: 35)")
    p.add_argument("--short", type=int, default=31, help="single-chunk documents beside it (default: 31)")
    p.add_argument("--latency", type=float, default=0.2, help="server seconds per request (default: 0.2)")
    p.add_argument("--concurrency", type=int, default=32, help="calls in flight (default: 32)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per scheduler and position (default: 3)")
    p.add_argument("--position", choices=("first", "last", "both"), default="both", help="where the long one goes")
    p.add_argument("--corpus", type=Path, default=None, help="folder of documents (default: ../shared/corpus)")
    return p.parse_args(argv)


def pick(args: argparse.Namespace) -> tuple[Document, list[Document], insights.Settings, str]:
    """The long document, the short ones, the settings that cut the long one into ``--chunks`` chunks."""
    folder = c.corpus_or_none(args.corpus)
    if folder is not None:
        pool = insights.load_corpus(folder)
        source = f"{folder.name}/"
    else:
        print("   " + c.corpus_missing_message(args.corpus).replace("skipped", "note") + "; using the 5 seeds")
        pool = c.seed_documents()
        source = "seeds/"
    long = max(pool, key=lambda d: len(d.text))
    if folder is None:  # the seeds are short: one long document made of all five
        long = insights.parse_document("\n\n".join(d.text for d in pool), doc_id="seeds-joined")
    settings = c.settings("http://127.0.0.1:1/v1", no_cache=True)
    lo, hi = MIN_CHUNK_CHARS, max(MIN_CHUNK_CHARS, len(long.text))  # the largest chunk_chars giving enough
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(chunks_for(long, settings.with_(chunk_chars=mid))) >= args.chunks:
            lo = mid
        else:
            hi = mid - 1
    chunk_chars = lo
    settings = settings.with_(chunk_chars=chunk_chars)
    shorts = c.distinct([d for d in c.single_chunk(pool, settings) if d.id != long.id], args.short)
    parts = len(chunks_for(long, settings))
    source += f" {long.id} ({len(long.text):,} chars, {parts} chunks at chunk_chars={chunk_chars})"
    source += f" + {len(shorts)} single-chunk documents"
    return long, shorts, settings, source


def documents_in_the_window(docs: list[Document], concurrency: int, client: insights.ModelClient) -> Iterator[bool]:
    """The scheduler before: a window of documents, each one's chunks one after another on one worker."""
    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(insights.extract, d, client=client) for d in docs]
        for future in as_completed(futures):
            yield future.exception() is None


def chunks_in_the_window(docs: list[Document], concurrency: int, client: insights.ModelClient) -> Iterator[bool]:
    for outcome in insights.extract_many(docs, concurrency=concurrency, client=client):
        yield outcome.ok


Scheduler = Callable[[list[Document], int, insights.ModelClient], Iterator[bool]]
SCHEDULERS: dict[str, Scheduler] = {
    "chunks in the window (now)": chunks_in_the_window,
    "documents in the window (before)": documents_in_the_window,
}


def timed(
    run: Scheduler, docs: list[Document], args: argparse.Namespace, srv: ReferenceServer, settings: insights.Settings
) -> tuple[float, int]:
    with insights.ModelClient(settings.with_(base_url=srv.url)) as client:
        before = srv.count
        started = time.perf_counter()
        results = list(run(docs, args.concurrency, client))
        wall = time.perf_counter() - started
        calls = srv.count - before
    if not all(results):
        print(f"   warning: {results.count(False)} documents failed")
    return wall, calls


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    c.print_header("bench_tail: one long document among short ones, chunks vs documents in the window")
    long, shorts, settings, source = pick(args)
    c.row("documents", source)
    c.row("latency, concurrency, repeats", f"{args.latency} s, {args.concurrency}, {args.repeat}")
    c.row("server", "reference server in this process (thread), cache off")
    print()
    positions = ("first", "last") if args.position == "both" else (args.position,)
    with c.server(latency=args.latency) as srv:
        warmup = [dataclasses.replace(d, id=f"{d.id}~warmup") for d in shorts[: args.concurrency]]
        timed(chunks_in_the_window, warmup, args, srv, settings)
        for position in positions:
            docs = [long, *shorts] if position == "first" else [*shorts, long]
            print(f"   long document {position} in the input")
            for label, run in SCHEDULERS.items():
                runs = [timed(run, docs, args, srv, settings) for _ in range(args.repeat)]
                walls = [w for w, _ in runs]
                calls = runs[0][1]
                ideal = math.ceil(calls / args.concurrency) * args.latency
                wall = statistics.median(walls)
                c.row(f"  {label}", f"median {wall:6.3f} s  (runs {', '.join(f'{w:.3f}' for w in walls)})")
                c.row("    calls, ideal ceil(calls/concurrency) x latency", f"{calls}, {ideal:.3f} s")
                verdict = "within" if wall / ideal <= TARGET else "outside"
                c.row("    measured / ideal", f"{wall / ideal:5.2f}x  ({verdict} the {TARGET}x target)")
            print()
    c.print_footer()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
