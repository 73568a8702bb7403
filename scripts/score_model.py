#!/usr/bin/env python3
"""Score a live model against the annotation set and write ``evals/results/<MODEL>.json`` with the cost.

    OPENAI_API_KEY=sk-... python scripts/score_model.py --model gpt-4o-mini
    python scripts/score_model.py --model llama3.1 --base-url http://localhost:11434/v1   # a local model
    python scripts/score_model.py --model gpt-4o-mini -- --concurrency 16 --mode tools   # options for extract

1. ``insights extract`` over the annotated documents (``seeds/`` and ``evals/corpus/documents/``), with a
   **fresh, empty cache** so that every answer is asked of the endpoint in this run. The output is kept
   beside the result (``evals/results/<MODEL>.output.jsonl`` and its ``.documents``/``.errors`` sidecars)
   so anyone can re-score or audit it.
2. Refuses to write a result (exit 2) when any answer did not come from a live model in this run: an
   answer served from a cache (``--replay``, ``--offline`` and ``--cache`` are refused up front), or one
   from the project's reference server (its completions carry ``system_fingerprint: fp_reference``; it
   answers from the annotations themselves and would score 1.0).
3. ``insights evaluate`` over the shipped annotation sets (95 % bootstrap intervals over documents), and
   the spend from the run's call log: calls, tokens and estimated cost, failed calls included.

The result file is a measurement of that model with this version's prompts; the README's quality section
quotes only such files.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import insights  # noqa: E402
from insights.cache import Cache  # noqa: E402
from insights.evaluate import annotation_dirs, report, score_file  # noqa: E402
from insights.output import read_jsonl, sidecar  # noqa: E402
from insights.pricing import cost, load_prices  # noqa: E402

DOCUMENTS = [REPO / "seeds", REPO / "evals" / "corpus" / "documents"]
RESULTS = REPO / "evals" / "results"
REFERENCE_FINGERPRINT = "fp_reference"
REFUSED_OPTIONS = {"--replay", "--offline", "--cache", "--no-cache"}


def say(message: str) -> None:
    print(f"[score_model] {message}", file=sys.stderr, flush=True)


def file_name(model: str) -> str:
    """A file name for a model name (``/`` and other unsafe characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model"


def not_live(cache: Cache, ledger: list[dict[str, Any]]) -> list[str]:
    """Why the run's answers are not a live model's (empty when they are)."""
    reasons = []
    buffer = io.StringIO()
    cache.export(buffer)
    for line in buffer.getvalue().splitlines():
        response = json.loads(line).get("response") or {}
        if response.get("system_fingerprint") == REFERENCE_FINGERPRINT:
            reasons.append("answers came from the project's reference server (system_fingerprint fp_reference)")
            break
    cached = [line["document_id"] for line in ledger if line["provenance"]["usage"].get("cached_calls")]
    if cached:
        reasons.append(f"{len(cached)} document(s) were answered from a cache, not asked: {', '.join(cached[:5])}")
    return reasons


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run insights extract with a live model over the annotated documents, score it with insights "
        "evaluate, and write evals/results/MODEL.json with the scores and the cost. Refuses replayed, cached or "
        "reference-server answers.",
        epilog="Arguments after -- go to insights extract (e.g. --concurrency 16 --mode json).",
    )
    parser.add_argument("--model", required=True, help="the model to score")
    parser.add_argument("--base-url", help="an OpenAI-compatible endpoint (default: OPENAI_BASE_URL or OpenAI)")
    parser.add_argument("--prices", help="JSON price table for a model the built-in table lacks")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write (default: evals/results)")
    parser.add_argument(
        "--documents", nargs="+", type=Path, help="documents (default: seeds/ and evals/corpus/documents/)"
    )
    parser.add_argument("extract_args", nargs="*", help="extra insights extract options (after --)")
    args = parser.parse_args(argv)

    refused = REFUSED_OPTIONS.intersection(a.split("=")[0] for a in args.extract_args)
    if refused:
        parser.error(f"{', '.join(sorted(refused))}: a score is only written from answers asked of the model now")
    documents = [p for p in (args.documents or DOCUMENTS) if p.exists()]
    args.results.mkdir(parents=True, exist_ok=True)
    name = file_name(args.model)
    out = args.results / f"{name}.output.jsonl"
    result_path = args.results / f"{name}.json"

    with tempfile.TemporaryDirectory(prefix="insights-score-") as tmp:
        cache_path = Path(tmp) / "cache.db"
        cmd = [sys.executable, "-m", "insights.cli", "extract", *map(str, documents), "-o", str(out), "--overwrite",
               "--model", args.model, "--cache", str(cache_path), *args.extract_args]  # fmt: skip
        if args.base_url:
            cmd += ["--base-url", args.base_url]
        if args.prices:
            cmd += ["--prices", args.prices]
        say("$ " + " ".join(cmd))
        started = time.monotonic()
        code = subprocess.call(cmd, cwd=REPO)
        wall = time.monotonic() - started
        if code not in (0, 1):
            say(f"insights extract exited with {code}; no result written")
            return code
        ledger = list(read_jsonl(sidecar(out, "documents")))
        with Cache(cache_path) as cache:
            reasons = not_live(cache, ledger)
            spent = cache.stats()
    if reasons:
        say("refusing to write a result: " + "; ".join(reasons))
        return 2

    loaded = insights.load_corpus([str(p) for p in documents])
    folders = annotation_dirs()
    scored = score_file(out, folders, loaded)
    price = cost(args.model, 1_000_000, 0, load_prices(Path(args.prices) if args.prices else None))
    failed = list(read_jsonl(sidecar(out, "errors")))
    result = {
        "model": args.model,
        "endpoint": (args.base_url or "OPENAI_BASE_URL or api.openai.com").split("//")[-1].split("/")[0],
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "insights_version": insights.__version__,
        "prompt_version": insights.prompts.load_prompts().version,
        "command": "python scripts/score_model.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "annotation_sets": [f.name for f in folders],
        "documents": {"given": len(loaded), "scored": scored.documents, "finished": len(ledger), "failed": len(failed)},
        "spend": {
            "calls": spent.misses,
            "tokens": spent.tokens_spent,
            "cost_usd": round(spent.cost_spent_usd, 6) if price is not None else None,
            "cost_note": "estimate from the price table" if price is not None else "no price for this model",
            "wall_time_s": round(wall, 1),
        },
        "scores": report(scored),
        "output": str(out.relative_to(REPO)) if out.is_relative_to(REPO) else str(out),
    }
    result_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    all_f1 = result["scores"]["metrics"]["all.f1"]
    say(f"wrote {result_path}: all.f1 {all_f1['value']} {all_f1['interval']}, cost {result['spend']['cost_usd']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
