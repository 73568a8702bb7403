"""Library overhead per document, compared with a bare openai client call.

Against the loopback reference server with zero latency, for each of the five seed documents and each
round, times:

(a) bare   ``openai.OpenAI(max_retries=0).chat.completions.create(**body)``, replaying the exact request
           body the library sends for that document (captured from the server after a library call);
(b) lib    ``insights.extract(doc, client=ModelClient(settings with no cache))``;
(c) miss   the same with a fresh, empty cache each round (the miss path: key, request, cache write,
           call log);
(d) hit    the same request again against that cache (answered from the cache, no network).

The overhead is (b) - (a): what the library adds around the same HTTP exchange (prompt rendering,
instructor's request preparation and parsing, validation, grounding, records). To split it, a further
pass of (b) runs with timers around the functions the library calls (the SDK call, instructor's
preparation, templating and retry loop, insights' ``_send``, the ``Grounder`` build); what the timers do
not cover is reported as the rest.

A plain script, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import _common as c

import insights
from insights.cache import Cache


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Per-document overhead of insights.extract compared with a bare openai call "
        "(loopback reference server, zero latency, the five seed documents).",
    )
    p.add_argument("--rounds", type=int, default=20, help="rounds over the 5 seeds (default: 20)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default: 2)")
    return p.parse_args(argv)


def _wall_cpu(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, float]:
    """Wall and process CPU seconds of one call (CPU includes the in-process server's threads)."""
    cpu, started = time.process_time(), time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - started, time.process_time() - cpu


# Functions timed while the library runs (module, attribute, bucket). Each is a name looked up at call
# time by its caller, so replacing it for the instrumented pass catches exactly the calls the library
# makes, whatever the library's code looks like today. None of them nests inside another, except
# instructor's retry loop > insights' _send > the SDK call, whose inner times are subtracted.
_TIMED: list[tuple[str, str, str]] = [
    ("openai.resources.chat.completions", "Completions.create", "sdk"),
    ("instructor.v2.core.patch", "retry_sync_v2", "retry"),
    ("insights.client", "ModelClient._send", "send"),
    ("instructor.v2.core.patch", "prepare_response_model", "schema"),
    ("instructor.v2.core.response_model", "prepare_response_model", "schema"),
    ("instructor.v2.providers.openai.handlers", "generate_openai_schema", "schema"),
    ("instructor.v2.core.patch", "handle_templating", "templating"),
    ("instructor.v2.core.patch", "reject_async_validators", "scans"),
    ("insights.grounding", "Grounder.__post_init__", "grounder"),
]

SPLIT_LABELS = {
    "schema": "instructor: response model + tool schema preparation",
    "templating": "instructor: Jinja templating of the messages",
    "scans": "instructor: async-validator scan (entry)",
    "retry": "instructor: retry loop, parse, validate + locate quotes",
    "send": "insights: _send around the SDK (key, tenacity, ledger)",
    "grounder": "grounding: Grounder(doc.text) index build",
    "rest": "insights, the rest (prompts, merge, records, ...)",
}


def split_overhead(docs: list[insights.Document], client: insights.ModelClient, rounds: int) -> dict[str, Any]:
    """Run ``rounds`` rounds of ``insights.extract`` with the functions of ``_TIMED`` wrapped in timers.

    Returns mean seconds and calls per document for each bucket, the SDK call ("sdk"), the library's
    overhead outside the SDK call ("overhead") and what the timers do not cover ("rest")."""
    import importlib

    spent: dict[str, float] = {}
    calls: dict[str, int] = {}
    restore: list[tuple[Any, str, Any]] = []

    def timer(fn: Callable[..., Any], bucket: str) -> Callable[..., Any]:
        def timed(*a: Any, **k: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[bucket] = spent.get(bucket, 0.0) + time.perf_counter() - started
                calls[bucket] = calls.get(bucket, 0) + 1

        return timed

    missing = []
    for module_name, attr, bucket in _TIMED:
        try:
            owner: Any = importlib.import_module(module_name)
            *path, name = attr.split(".")
            for part in path:
                owner = getattr(owner, part)
            original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        except (ImportError, AttributeError, KeyError):
            missing.append(f"{module_name}.{attr}")
            continue
        restore.append((owner, name, original))
        setattr(owner, name, timer(original, bucket))
    try:
        started = time.perf_counter()
        for _ in range(rounds):
            for doc in docs:
                insights.extract(doc, client=client)
        total = time.perf_counter() - started
    finally:
        for owner, name, original in reversed(restore):
            setattr(owner, name, original)
    n = rounds * len(docs)
    per = {k: v / n for k, v in spent.items()}
    sdk = per.get("sdk", 0.0)
    # nesting: instructor's retry loop calls insights' _send, which calls the SDK
    if "send" in per:
        per["send"] -= sdk
    if "retry" in per:
        per["retry"] -= sdk + per.get("send", 0.0)
    overhead = total / n - sdk
    rest = overhead - sum(v for k, v in per.items() if k != "sdk")
    return {
        "rounds": rounds,
        "total": total / n,
        "sdk": sdk,
        "overhead": overhead,
        "parts": {**{k: v for k, v in per.items() if k != "sdk"}, "rest": rest},
        "calls": {k: v / n for k, v in calls.items()},
        "missing": missing,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    c.print_header("bench_overhead: library overhead per document vs a bare openai call")
    import openai

    docs = c.seed_documents()
    tmp = Path(tempfile.mkdtemp(prefix="insights-bench-overhead-"))
    with c.server(latency=0.0) as srv:
        lib = insights.ModelClient(c.settings(srv.url, no_cache=True))
        bare = openai.OpenAI(base_url=srv.url, api_key=c.API_KEY, max_retries=0)
        miss_http = openai.OpenAI(base_url=srv.url, api_key=c.API_KEY, max_retries=0)

        # Capture the exact body the library sends for each document, and the answer it gets.
        bodies: dict[str, dict[str, Any]] = {}
        answers: dict[str, str] = {}
        for doc in docs:
            before = srv.count
            insights.extract(doc, client=lib)
            sent = srv.requests[before:]
            if len(sent) != 1:
                print(f"   note: {doc.id} took {len(sent)} requests (re-asks); replaying the first")
            bodies[doc.id] = sent[0]["body"]
            reply = bare.chat.completions.create(**bodies[doc.id])
            answers[doc.id] = reply.choices[0].message.tool_calls[0].function.arguments

        times: dict[str, list[float]] = {"bare": [], "lib": [], "miss": [], "hit": []}
        cpus: dict[str, list[float]] = {"bare": [], "lib": [], "miss": [], "hit": []}
        per_doc: dict[str, list[float]] = {d.id: [] for d in docs}
        for rnd in range(args.warmup + args.rounds):
            cache = Cache(tmp / f"round-{rnd}.db")
            # Shares miss_http's connection pool; not closed here, which would close that pool too.
            cached = insights.ModelClient(c.settings(srv.url, no_cache=True), cache=cache, openai_client=miss_http)
            for doc in docs:
                t_bare = _wall_cpu(bare.chat.completions.create, **bodies[doc.id])
                t_lib = _wall_cpu(insights.extract, doc, client=lib)
                t_miss = _wall_cpu(insights.extract, doc, client=cached)
                before = srv.count
                t_hit = _wall_cpu(insights.extract, doc, client=cached)
                if srv.count != before:
                    print("   warning: the cache-hit run reached the server", file=sys.stderr)
                if rnd >= args.warmup:
                    for key, (wall, cpu) in zip(times, (t_bare, t_lib, t_miss, t_hit), strict=True):
                        times[key].append(wall)
                        cpus[key].append(cpu)
                    per_doc[doc.id].append(t_lib[0] - t_bare[0])
            cache.close()
        lib.close()
        bare.close()
        miss_http.close()
        with insights.ModelClient(c.settings(srv.url, no_cache=True)) as probe:
            split = split_overhead(docs, probe, rounds=max(3, args.rounds // 2))

    n = len(times["bare"])
    s = {k: c.summary(v) for k, v in times.items()}
    cs = {k: c.summary(v) for k, v in cpus.items()}
    overhead = s["lib"]["median"] - s["bare"]["median"]
    print(
        f"   {len(docs)} seed documents x {args.rounds} rounds = {n} timings per path "
        f"(after {args.warmup} warm-up rounds)"
    )
    print(f"   {'per document (wall time)':<48} {'median':>11} {'mean':>11} {'p90':>11} {'CPU median':>13}")
    labels = {
        "bare": "(a) bare openai call (same body)",
        "lib": "(b) insights.extract, no cache",
        "miss": "(c) insights.extract, fresh cache (miss+write)",
        "hit": "(d) insights.extract, cache hit (no network)",
    }
    for key, label in labels.items():
        print(
            f"   {label:<48} {c.ms(s[key]['median'])} {c.ms(s[key]['mean'])} {c.ms(s[key]['p90'])}   "
            f"{c.ms(cs[key]['median'])}"
        )
    print()
    c.row("overhead (b) - (a), medians", c.ms(overhead))
    c.row("overhead (b) - (a), means", c.ms(s["lib"]["mean"] - s["bare"]["mean"]))
    c.row(
        "overhead (b) - (a), CPU medians",
        c.ms(cs["lib"]["median"] - cs["bare"]["median"]) + "  (process CPU; less sensitive to load)",
    )
    c.row("cache write cost (c) - (b), medians", c.ms(s["miss"]["median"] - s["lib"]["median"]))
    c.row("library / bare, medians", f"{s['lib']['median'] / s['bare']['median']:8.2f} x")
    print()
    print("   overhead per seed (median of (b) - (a) over rounds):")
    for doc in docs:
        chars = len(doc.text)
        c.row(f"  {doc.id} ({chars:,} chars)", c.ms(c.summary(per_doc[doc.id])["median"]))
    print()
    print(
        f"   where the time of (b) goes: an instrumented pass of {split['rounds']} rounds "
        "(timers around the calls\n   the library makes; mean per document):"
    )
    c.row("(b) in this pass", c.ms(split["total"]), width=58)
    c.row("openai SDK call: HTTP + server (what (a) does)", c.ms(split["sdk"]), width=58)
    c.row("library overhead, (b) - SDK call", c.ms(split["overhead"]), width=58)
    for key, label in SPLIT_LABELS.items():
        value = split["parts"].get(key)
        n_calls = split["calls"].get(key)
        if value is None:
            c.row("  " + label, "not called")
            continue
        share = f" ({value / split['overhead']:5.1%})" if split["overhead"] > 0 else ""
        per_call = f"  {n_calls:g} calls/doc" if n_calls is not None else ""
        c.row("  " + label, f"{c.ms(value)}{share}{per_call}", width=58)
    if split["missing"]:
        print("   (not instrumented, names not found in this version: " + ", ".join(split["missing"]) + ")")
    c.print_footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
