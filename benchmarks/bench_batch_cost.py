"""What the archive costs synchronously and through the OpenAI Batch API, and what a batch round trip costs in time.

1. **Estimate** (no network): ``insights.estimate.estimate`` over the corpus for a few models, at synchronous and
   batch prices (the price table in ``insights/pricing.py``), then scaled to the whole archive by document count.
   The archive has 9,582 documents (``../shared/README.md``); the shared corpus is a sample of 252 drawn across
   document types, not uniformly, so the scaled figure is an approximation, and output tokens are an assumption
   (700 a call), as ``insights estimate`` says.
2. **Round trip** (``--no-round-trip`` skips it): ``batchapi.submit`` then ``batchapi.collect --wait`` over the corpus
   against the loopback reference server (its Batch API answers as its chat endpoint does, 10 % of first answers
   hallucinated so that re-asks go into follow-up batches). Reports the time spent in this library (capture,
   upload, harvest, pipeline; the server advances a batch one state per poll, and polls do not sleep here), the
   batches and requests, and the spend at batch and synchronous prices of the server's token counts (characters /
   4: the reference server's own arithmetic, not a model's usage).

A plain script, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common as c

import insights
from insights import batchapi
from insights.client import ModelClient
from insights.estimate import estimate
from insights.output import OutputWriter
from insights.pricing import cost
from insights.prompts import load_prompts
from insights.testing.server import FaultPlan

ARCHIVE_DOCUMENTS = 9_582
"""Documents in the whole SDG Innovation Commons archive (``../shared/README.md``)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Estimated archive cost, synchronous and by batch; a batch round trip.")
    p.add_argument("--corpus", type=Path, default=None, help="documents folder (default: <repo root>/../shared/corpus)")
    p.add_argument("--models", default="gpt-4o-mini,gpt-4.1-mini,gpt-4o", help="comma-separated models to price")
    p.add_argument("--no-round-trip", action="store_true", help="only the estimate")
    return p.parse_args(argv)


def money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.2f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    c.print_header("bench_batch_cost: archive cost synchronously and through the Batch API")
    folder = c.corpus_or_none(args.corpus)
    if folder is None:
        print("   " + c.corpus_missing_message(args.corpus))
        c.print_footer()
        return 0
    docs = insights.load_corpus(folder)
    scale = ARCHIVE_DOCUMENTS / len(docs)
    c.row("documents", f"{len(docs)} from {folder.name}/; archive {ARCHIVE_DOCUMENTS:,} (×{scale:.1f} by count)")
    print()
    print(f"   {'model':<14} {'calls':>6} {'input tokens':>13} {'sample sync':>12} {'sample batch':>13}"
          f" {'archive sync':>13} {'archive batch':>14}")  # fmt: skip
    tokenizer = ""
    for model in args.models.split(","):
        e = estimate(docs, insights.resolve_settings(env={}, model=model, no_cache=True))
        tokenizer = e.tokenizer
        archive = [None if v is None else v * scale for v in (e.cost_usd, e.batch_cost_usd)]
        print(
            f"   {model:<14} {e.calls:>6,} {e.input_tokens:>13,} {money(e.cost_usd):>12} {money(e.batch_cost_usd):>13}"
            f" {money(archive[0]):>13} {money(archive[1]):>14}"
        )
    print(f"   (tokenizer: {tokenizer}; output tokens assumed 700 a call; archive = sample × {scale:.2f})")

    if not args.no_round_trip:
        print()
        round_trip(docs)
    c.print_footer()
    return 0


def round_trip(docs: list[insights.Document]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="insights-bench-batch-"))
    with c.server() as srv:
        srv.plan = FaultPlan(rates={"hallucinate": 0.1}, seed=1)
        settings = c.settings(srv.url, cache_path=tmp / "cache.db")
        with ModelClient(settings) as client, OutputWriter(tmp / "out.jsonl") as writer:
            started = time.perf_counter()
            sub = batchapi.submit(docs, client)
            submitted = time.perf_counter() - started
            writer.resume(docs, client.model, load_prompts().version, overwrite=False)
            started = time.perf_counter()
            report = batchapi.collect(docs, writer, client, wait=True, sleep=lambda s: None)
            collected = time.perf_counter() - started
        h = report.harvest
        c.row("submit: capture, upload, create", f"{submitted:.2f} s ({len(docs) / submitted:.0f} docs/s)")
        c.row("requests, batches at submit", f"{sub.requests:,} in {len(sub.jobs)}")
        c.row("collect: polls, harvest, pipeline", f"{collected:.2f} s over {report.polls} polls")
        c.row("follow-up re-asks", f"{report.followup_requests:,} in {report.followup_jobs} batch(es)")
        c.row("documents done / failed / waiting", f"{report.done} / {report.errors} / {report.waiting}")
        c.row("tokens (reference server: chars/4)", f"in {h.input_tokens:,}, out {h.output_tokens:,}")
        sync = cost("gpt-4o-mini", h.input_tokens, h.output_tokens, client.prices)
        c.row("spend gpt-4o-mini: batch / synchronous", f"{money(h.cost_usd)} / {money(sync)}")
        c.row("model requests outside batches", str(sum(1 for r in srv.requests if not r.get("batch"))))


if __name__ == "__main__":
    raise SystemExit(main())
