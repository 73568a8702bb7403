"""What reviewing a run costs: loading it for review, the page's state, one decision, applying them. Not a test.

Copies the shared corpus ``--copies`` times (copies get new ids from their file names), extracts it with
``extract_many`` against the loopback reference server (synthetic answers for unannotated documents),
then, through a live ``insights review`` server (:class:`insights.review.ReviewServer`) and its HTTP API:

* load: :class:`~insights.review.ReviewSession` over the run (reads it as the report does, whole texts);
* state: ``GET /api/state`` (bytes and time) and ``GET /api/doc/N`` for one document;
* decide: ``POST /api/decision`` for every insight (accept, every tenth rejected, every 25th edited),
  each appended and fsynced before the answer: median and 95th percentile latency;
* apply: :func:`insights.export.build_tables` with and without the decisions, and ``--status``.

Usage (from the repository root)::

    python benchmarks/bench_review.py                 # 4 copies of the corpus (~1,000 documents)
    python benchmarks/bench_review.py --copies 1 --corpus PATH

The figures depend on the machine (fsync above all); nothing here is asserted.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common as c
import httpx

import insights
from insights.export import build_tables
from insights.output import OutputWriter, read_jsonl
from insights.prompts import load_prompts
from insights.review import ReviewServer, ReviewSession, status_text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Cost of reviewing a run: load, page state, one decision, applying.")
    p.add_argument("--corpus", type=Path, default=None, help="documents folder (default: <repo root>/../shared/corpus)")
    p.add_argument("--copies", type=int, default=4, help="copies of the corpus to review (default 4)")
    return p.parse_args(argv)


def make_run(corpus: Path, copies: int, folder: Path) -> Path:
    docs = folder / "docs"
    for k in range(copies):
        for path in sorted(p for p in corpus.rglob("*") if p.is_file()):
            target = docs / f"copy{k}" / f"{path.stem}~{k}{path.suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    documents = insights.load_corpus(docs)
    out = folder / "run.jsonl"
    with c.ReferenceServer() as srv:
        settings = insights.resolve_settings(env={}, base_url=srv.url, api_key=c.API_KEY, no_cache=True)
        with insights.ModelClient(settings) as client, OutputWriter(out) as writer:
            writer.resume(documents, settings.model, load_prompts().version, overwrite=True)
            for outcome in insights.extract_many(documents, concurrency=8, client=client):
                if outcome.result is not None:
                    writer.write(outcome.document, outcome.result)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    corpus = args.corpus or c.DEFAULT_CORPUS
    if not corpus.is_dir():
        print(f"corpus not found: {corpus} (give --corpus)", file=sys.stderr)
        return 0
    for key, value in c.machine().items():
        print(f"{key}: {value}")
    print(f"command: python benchmarks/bench_review.py --copies {args.copies}")
    with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
        out = make_run(corpus, args.copies, Path(tmp))
        lines = list(read_jsonl(out))
        started = time.perf_counter()
        session = ReviewSession(out)
        load = time.perf_counter() - started
        print(f"run: {len(session.docs):,} documents, {len(lines):,} insights; load for review {load:.2f} s")
        with ReviewServer(session, reviewer="bench") as server, httpx.Client(base_url=server.url, timeout=60) as web:
            found = re.search(r'name="review-token" content="([^"]+)"', web.get("/").text)
            assert found is not None
            token = found.group(1)
            started = time.perf_counter()
            state = web.get("/api/state", params={"reviewer": "bench"})
            print(f"GET /api/state: {len(state.content) / 1e6:.2f} MB in {time.perf_counter() - started:.2f} s")
            started = time.perf_counter()
            doc = web.get("/api/doc/0", params={"reviewer": "bench"})
            print(f"GET /api/doc/0: {len(doc.content) / 1e3:.0f} kB in {(time.perf_counter() - started) * 1e3:.0f} ms")
            latencies = []
            for i, line in enumerate(session.lines):
                decision = "reject" if i % 10 == 0 else "edit" if i % 25 == 1 else "accept"
                body = {"insight_id": line["insight_id"], "decision": decision, "reviewer": "bench"}
                if decision == "edit":
                    body["fields"] = {"statement": "Edited: " + str(line["statement"])}
                started = time.perf_counter()
                r = web.post("/api/decision", json=body, headers={"X-Review-Token": token})
                latencies.append(time.perf_counter() - started)
                assert r.status_code == 200, r.text
        latencies.sort()
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        print(f"POST /api/decision (append + fsync + answer), {len(latencies):,} decisions: median "
              f"{statistics.median(latencies) * 1e3:.1f} ms, 95th percentile {p95 * 1e3:.1f} ms")  # fmt: skip
        for raw in (True, False):
            started = time.perf_counter()
            tables = build_tables(out, raw=raw)
            what = "raw" if raw else "with the decisions"
            took = time.perf_counter() - started
            print(f"build_tables {what}: {len(tables.rows['insights']):,} rows in {took:.2f} s")
        started = time.perf_counter()
        status_text(ReviewSession(out))
        print(f"insights review --status: {time.perf_counter() - started:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
