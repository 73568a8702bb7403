"""Themes and champions over 30k insights: wall time and peak memory of ``insights themes``, offline.

1. **A corpus run.** ``extract_many`` over the shared corpus against the zero-latency loopback reference
   server, which answers from the reference annotations (``evals/corpus``, ``evals/seeds``) for annotated
   documents and with two synthetic sentences (one barrier, one enabler, category ``other``) otherwise.
2. **30k insights** built from that run, in two ways (``--mode``):

   ``replicated``  the run copied until it holds ``--insights`` records; each copy gets its own document
                   id (``<id>~<n>``) and insight id, so the texts repeat exactly.
   ``distinct``    the same copies, but every barrier, enabler and failed experiment gets a text of its
                   own: a real sentence of the corpus (40-250 characters), joined to a second one when
                   the sentences run out; synthetic records (category ``other``) get a category drawn
                   from the taxonomy by a hash of their id. This is the harder case: ~30k distinct texts
                   to embed and cluster.

3. **The command.** ``insights themes BIG.jsonl -o THEMES.jsonl`` in a child process limited to two CPUs
   (``sched_setaffinity`` where available, BLAS/OpenMP threads 2) with every socket connection refused,
   so a network access would fail the run. The child prints its wall time (command start to files
   written) and its peak resident memory (``VmHWM``), and the memory after imports alone.

A plain script, not a test: it asserts nothing about time. Skips with a message when the corpus is absent
or the ``themes`` extra is not installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c

import insights
from insights.evaluate import load_annotations
from insights.ids import digest_id
from insights.output import insight_records
from insights.schema import Category

CATEGORIES = [x for x in Category.__args__ if x != "other"]  # type: ignore[attr-defined]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Time and peak memory of `insights themes` over ~30k insights.")
    p.add_argument("--corpus", type=Path, default=None, help="documents folder (default: <repo root>/../shared/corpus)")
    p.add_argument("--insights", type=int, default=30_000, help="records to build (default 30000)")
    p.add_argument("--mode", choices=["replicated", "distinct", "both"], default="both")
    p.add_argument("--vectors", choices=["auto", "wordllama", "tfidf"], default="auto")
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------- the child
def peak_kb(resource: Any) -> int:
    """This process's peak resident memory in kB: ``VmHWM`` of /proc (reset by exec, unlike ``ru_maxrss``,
    which on Linux keeps the forking parent's peak), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def child(args: list[str]) -> int:
    """Run ``insights themes ARGS`` offline on two CPUs; print one JSON line of figures."""
    import resource
    import socket

    def refuse(*_: Any, **__: Any) -> None:
        raise OSError("bench_themes: network access refused (the themes command must run offline)")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.create_connection = refuse  # type: ignore[assignment]
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:2]
        os.sched_setaffinity(0, cpus)
    import numpy  # noqa: F401
    import scipy.cluster.hierarchy  # noqa: F401
    import sklearn.feature_extraction.text  # noqa: F401

    from insights import champions, cli, themes  # noqa: F401 - imports counted apart from the work

    after_imports = peak_kb(resource)
    started = time.perf_counter()
    code = cli.main(args)
    wall = time.perf_counter() - started
    peak = peak_kb(resource)
    cpus_used = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(json.dumps({"exit": code, "wall_s": wall, "peak_kb": peak, "imports_kb": after_imports, "cpus": cpus_used}))
    return code


# ------------------------------------------------------------------------------------------- the input
def corpus_run(folder: Path) -> tuple[list[dict[str, Any]], list[insights.Document]]:
    annotations = {**load_annotations(c.REPO_ROOT / "evals" / "corpus"), **load_annotations(c.ANNOTATIONS_DIR)}
    docs = insights.load_corpus(folder)
    records: list[dict[str, Any]] = []
    with c.ReferenceServer(annotations) as srv, insights.ModelClient(c.settings(srv.url, no_cache=True)) as client:
        for outcome in insights.extract_many(docs, concurrency=8, client=client):
            if outcome.result is not None:
                records.extend(insight_records(outcome.document, outcome.result))
    return records, docs


def sentences(docs: list[insights.Document]) -> list[str]:
    found: set[str] = set()
    for d in docs:
        for s in re.split(r"(?<=[.!?])\s+", d.text):
            s = " ".join(s.split())
            if 40 <= len(s) <= 250 and not set("<>[]{}|#*`\\") & set(s):
                found.add(s)
    return sorted(found)


def build(records: list[dict[str, Any]], n: int, pool: list[str] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    lap = 0
    k = 0
    while len(out) < n:
        for r in records:
            if len(out) == n:
                break
            copy = dict(r, document_id=f"{r['document_id']}~{lap}")
            copy["insight_id"] = digest_id("ins", ["bench", r["insight_id"], lap])
            if pool is not None and r["kind"] != "champion":
                first, second = pool[k % len(pool)], pool[(k * 7919 + k // len(pool)) % len(pool)]
                text = first if k < len(pool) else f"{first} {second}"
                k += 1
                copy["statement"] = text
                if r["kind"] == "failed_experiment":
                    copy["why_it_failed"] = text
                if r.get("category") == "other":
                    h = int(hashlib.sha256(copy["insight_id"].encode()).hexdigest(), 16)
                    copy["category"] = CATEGORIES[h % len(CATEGORIES)]
            out.append(copy)
        lap += 1
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        return child(args.child)
    c.print_header("bench_themes: insights themes over ~30k insights, offline, 2 CPUs")
    try:
        import numpy  # noqa: F401
        import scipy  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError:
        print("   skipped: the themes extra is not installed (pip install 'insights[themes]')")
        c.print_footer()
        return 0
    folder = c.corpus_or_none(args.corpus)
    if folder is None:
        print("   " + c.corpus_missing_message(args.corpus))
        c.print_footer()
        return 0
    started = time.perf_counter()
    records, docs = corpus_run(folder)
    kinds = {k: sum(r["kind"] == k for r in records) for k in ("barrier", "enabler", "champion", "failed_experiment")}
    c.row(
        "corpus run",
        f"{len(docs)} documents -> {len(records)} records {kinds} in {time.perf_counter() - started:.1f} s",
    )
    pool = sentences(docs)
    c.row("sentence pool (distinct mode)", f"{len(pool):,} corpus sentences of 40-250 characters")
    tmp = Path(tempfile.mkdtemp(prefix="insights-bench-themes-"))
    env = c.cli_env("http://127.0.0.1:9/v1")  # no endpoint is used: themes makes no model call
    env.update(OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2", MKL_NUM_THREADS="2", TOKENIZERS_PARALLELISM="false")
    modes = ["replicated", "distinct"] if args.mode == "both" else [args.mode]
    print()
    for mode in modes:
        big = build(records, args.insights, pool if mode == "distinct" else None)
        path = tmp / f"{mode}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in big), encoding="utf-8")
        texts = {r.get("why_it_failed") or r["statement"] for r in big if r["kind"] != "champion"}
        out = tmp / f"{mode}.themes.jsonl"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "themes", str(path), "-o", str(out)]
        cmd += ["--vectors", args.vectors]
        proc = subprocess.run(cmd, env=env, cwd=c.REPO_ROOT, capture_output=True, text=True, check=False)
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "{}"
        figures = json.loads(last) if last.startswith("{") else {}
        summary = next((ln for ln in proc.stderr.splitlines() if "themes over" in ln), proc.stderr.strip()[-300:])
        c.row(
            f"{mode}: input",
            f"{len(big):,} records, {len(texts):,} distinct texts to group ({path.stat().st_size / 1e6:.1f} MB)",
        )
        if proc.returncode != 0 or not figures:
            c.row(f"{mode}: FAILED", f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
            continue
        c.row(
            f"{mode}: wall time",
            f"{figures['wall_s']:.1f} s on {figures['cpus']} CPUs (read, themes, champions, write)",
        )
        c.row(
            f"{mode}: peak memory",
            f"{figures['peak_kb'] / 1024:.0f} MB RSS ({figures['imports_kb'] / 1024:.0f} MB after imports)",
        )
        c.row(f"{mode}: network", "none: every socket connection was refused in the child")
        c.row(f"{mode}: summary", summary.split("; wall time")[0])
        print()
    c.print_footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
