"""The ``insights`` command: extract, estimate, schema, cache.

Exit codes: 0 success; 1 some documents failed or some files could not be read (see the errors file);
2 bad usage, settings or input, or the output is held by another run or holds another model's results
(nothing was asked); 3 the run was stopped by a fatal error (wrong key, no access, no quota); 4 the run
was stopped because an output file could not be written (disk full, I/O error): finished documents are
saved and consistent, rerun to resume; 5 the spending cap (``--max-cost``) stopped the run, before it
started (the estimate is above the cap: nothing was asked) or before it finished (the documents finished
are saved; rerun with a higher cap to go on); 130 interrupted.

``extract`` streams: it lists the inputs, resumes the output from its ledger, and reads each document
only when a request slot is free for it (:mod:`insights.pending`), so the first request goes out before
the corpus is read, and a finished run decides it has nothing to do without reading its output. The
model SDKs are imported only by the commands that call a model.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from . import __version__
from .batch import DEFAULT_CONCURRENCY, Outcome, RunSummary, extract_many
from .cache import Cache
from .config import Settings, resolve_settings
from .corpus import LoadFailure, iter_corpus, list_corpus, load_corpus
from .documents import Document
from .errors import CacheError, ConfigError, DocumentError, InsightsError, OutputError, OutputWriteError, scrub
from .output import OutputWriter
from .pending import Pending, Plan
from .prompts import load_prompts
from .spend import SpendCap, error_cost, usd

EXIT_FAILED, EXIT_USAGE, EXIT_FATAL, EXIT_WRITE, EXIT_BUDGET, EXIT_INTERRUPTED = 1, 2, 3, 4, 5, 130
#: Seconds between commits of finished documents to the output (see :mod:`insights.output`).
COMMIT_INTERVAL = 0.25
#: Unreadable files named one by one on the terminal before the rest are only counted.
SHOWN_FAILURES = 10
REPLAY_NOTICE = (
    "Replaying recorded responses from {path}: {source}. Nothing is sent over the network; these are "
    "not a live model's answers."
)


def _say(message: str) -> None:
    print(scrub(message), file=sys.stderr, flush=True)


def __getattr__(name: str) -> Any:
    # PEP 562: the model client (openai, instructor) is imported only when a command calls a model.
    if name == "ModelClient":
        from .client import ModelClient

        return ModelClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _client_class() -> Any:
    """``ModelClient``, as this module has it (tests put a fake clock into it)."""
    return globals().get("ModelClient") or __getattr__("ModelClient")


class _ScrubSecrets(logging.Filter):
    """Removes keys and credentials from every log line the command prints (see :func:`errors.scrub`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage()), None
        return True


# ------------------------------------------------------------------------------------------- extract
def _settings_from(args: argparse.Namespace) -> Settings:
    return resolve_settings(
        model=args.model,
        base_url=args.base_url,
        cache_path=args.cache,
        no_cache=args.no_cache,
        offline=args.offline or None,
        max_retries=args.max_retries,
        reasks=args.reasks,
        timeout=args.timeout,
        chunk_chars=args.chunk_chars,
        prices_path=args.prices,
    )


def _load_replay(path: Path, settings: Settings, workdir: Path) -> tuple[Settings, Cache, str]:
    """Import a replay file into a cache in ``workdir`` and switch to offline mode against it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read replay file: {exc}") from exc
    meta: dict[str, Any] = {}
    if lines and '"_replay"' in lines[0]:
        meta = json.loads(lines.pop(0)).get("_replay", {})
    cache = Cache(workdir / "replay.db")
    cache.import_(io.StringIO("".join(lines)))
    # The recording's endpoint and model are part of its cache keys; offline, nothing is contacted.
    settings = settings.with_(
        offline=True,
        cache_path=cache.path,
        model=meta.get("model", settings.model),
        base_url=meta.get("base_url", settings.base_url),
    )
    return settings, cache, str(meta.get("source", "a recording"))


def _open_cache(settings: Settings) -> tuple[Settings, Cache | None]:
    """The run's cache; an unusable cache path warns and runs uncached (offline, it is an error)."""
    if settings.cache_path is None:
        return settings, None
    try:
        return settings, Cache(settings.cache_path)
    except CacheError as exc:
        if settings.offline:
            raise
        _say(f"warning: {exc}; running without a cache")
        return settings.with_(cache_path=None), None


class _Progress:
    """A rich progress bar on a terminal, plain log lines otherwise; both show the estimated spend and the
    documents failed so far. The total may change as the inputs are read (see :mod:`insights.pending`)."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet, self.n, self.spent, self.failed = total, quiet, 0, 0.0, 0
        self._bar: Any = None
        if not quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("extract"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("${task.fields[spent]:.4f}"), TextColumn("{task.fields[failed]} failed"),
                TextColumn("{task.fields[last]}"), transient=False,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task("extract", total=total, last="", spent=0.0, failed=0)

    def update(self, outcome: Outcome, lines: int, total: int | None = None) -> None:
        self.n += 1
        self.total = max(self.n, total if total is not None else self.total)
        doc = outcome.document.id
        if outcome.result is not None:
            usage = outcome.result.provenance.usage
            self.spent += usage.cost_usd or 0.0
            cached = " (cache)" if usage.calls and usage.cached_calls == usage.calls else ""
            rejected = len(outcome.result.rejected)
            note = f"{doc}: {lines} insights{', %d rejected' % rejected if rejected else ''}{cached}"
        else:
            self.spent += error_cost(outcome.error) or 0.0
            self.failed += not getattr(outcome.error, "fatal", False)
            note = scrub(f"{doc}: FAILED {type(outcome.error).__name__}: {outcome.error}")
        if self._bar is not None:
            self._bar.update(
                self._task, advance=1, total=self.total, last=note[:60], spent=self.spent, failed=self.failed
            )
            if outcome.error is not None:
                self._bar.console.print(note)
        elif not self.quiet:
            _say(f"[{self.n}/{self.total}] {note} | ${self.spent:.4f} spent, {self.failed} failed")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _count_spend(summary: RunSummary, outcome: Outcome) -> None:
    """Add what a document's requests cost when its result could not be kept (the run stopped)."""
    if outcome.result is not None:
        usage = outcome.result.provenance.usage
        summary.input_tokens += usage.input_tokens
        summary.output_tokens += usage.output_tokens
        summary.cost_usd += usage.cost_usd or 0.0


def _run(
    documents: Iterable[Document],
    pending: Pending,
    plan: Plan,
    writer: OutputWriter,
    cap: SpendCap | None,
    progress: _Progress,
    client: Any,
    args: argparse.Namespace,
) -> tuple[RunSummary, int, BaseException | None, OutputWriteError | None]:
    """Extract, write and count every document; returns the summary, the lines written, and the fatal
    error or write error that stopped the run, if any."""
    summary, lines, fatal, broken = RunSummary(), 0, None, None
    try:
        for outcome in extract_many(documents, concurrency=args.concurrency, client=client, rpm=args.rpm, tpm=args.tpm):
            stamp = pending.stamps.pop(outcome.document.id, None)
            if cap is not None:
                cap.finished(outcome)
            written = 0
            try:
                if outcome.result is not None:
                    written = writer.write(outcome.document, outcome.result, stamp=stamp)
                elif not getattr(outcome.error, "fatal", False):
                    writer.write_error(outcome.document, outcome.error)  # type: ignore[arg-type]
            except OutputWriteError as exc:
                _count_spend(summary, outcome)
                broken = exc
                break
            summary.add(outcome)
            lines += written
            progress.update(outcome, written, plan.total(pending))
    except InsightsError as exc:
        if not getattr(exc, "fatal", False):
            raise
        fatal = exc
    finally:
        try:
            writer.commit()
        except OutputWriteError as exc:
            broken = broken or exc
    if broken is not None:
        summary.done = writer.saved  # documents written after the last commit were not saved
    return summary, lines, fatal, broken


def cmd_extract(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    out = None if args.output in (None, "-") else Path(args.output)
    # Paths are checked before any file (cache, lock, output) is created.
    writer = OutputWriter(
        out, errors=Path(args.errors) if args.errors else None, stream=sys.stdout, commit_interval=COMMIT_INTERVAL
    )
    writer.refuse_unsafe_paths(args.paths)
    unreadable: list[LoadFailure] = []

    def report(failure: LoadFailure) -> None:
        # Named even with -q: they are not progress but problems.
        writer.write_failure(failure)
        unreadable.append(failure)
        if len(unreadable) <= SHOWN_FAILURES:
            _say(f"unreadable, skipped: {failure.error}")

    with contextlib.ExitStack() as stack:
        settings = _settings_from(args)
        cache: Cache | None
        if args.replay:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="insights-replay-")))
            settings, cache, source = _load_replay(Path(args.replay), settings, workdir)
            _say(REPLAY_NOTICE.format(path=args.replay, source=source))
        else:
            settings, cache = _open_cache(settings)
        if cache is not None:
            stack.callback(cache.close)
        files = list_corpus(args.paths)
        if not files:
            raise DocumentError(" ".join(args.paths), "no documents found")
        cap = SpendCap(args.max_cost, settings) if args.max_cost is not None else None

        stack.enter_context(writer)
        writer.resume(None, settings.model, load_prompts().version, overwrite=args.overwrite, verify=args.verify)
        for message in writer.repairs:
            _say(f"resume: {message}")
        plan = Plan(
            files, writer, limit=args.limit, sample=args.sample, seed=args.seed, verify=args.verify, on_failure=report
        )
        if cap is not None:
            cap.plan(plan.documents()[1])
            refusal = cap.refusal()
            if refusal is not None:
                _say(f"not started: {refusal}")
                return EXIT_BUDGET
        pending, documents = plan.documents()
        stream = iter(cap.gate(documents) if cap is not None else documents)
        head = next(stream, None)  # nothing to do: no client, and the SDKs are not even imported
        summary, lines, fatal, broken = RunSummary(), 0, None, None
        if head is not None:
            client = stack.enter_context(_client_class()(settings, cache=cache))
            progress = _Progress(plan.total(pending), args.quiet)
            stack.callback(progress.close)
            run = _run(itertools.chain([head], stream), pending, plan, writer, cap, progress, client, args)
            summary, lines, fatal, broken = run
        skipped = plan.skipped(pending)

    if len(unreadable) > SHOWN_FAILURES:
        _say(f"... and {len(unreadable) - SHOWN_FAILURES} more unreadable file(s), listed in the errors file")
    _say(
        f"done {summary.done}, failed {summary.failed}, unreadable {len(unreadable)}, skipped {skipped} (already "
        f"in the output), from cache {summary.from_cache}; {lines} insights written; "
        f"tokens in {summary.input_tokens:,} out {summary.output_tokens:,}; "
        f"estimated cost ${summary.cost_usd:.4f}; wall time {time.perf_counter() - started:.1f}s"
    )
    if out is not None:
        _say(f"output: {out} (documents: {writer.documents}, errors: {writer.errors})")
    if broken is not None:
        _say(
            f"stopped: {broken}. The {summary.done} document(s) finished before are saved, each with its ledger "
            "line; those being written are not (they will be redone). Free some space (or fix the disk) and run "
            "the same command again to resume."
        )
        return EXIT_WRITE
    if fatal is not None:
        _say(
            f"stopped: {type(fatal).__name__}: {fatal}. Finished documents are saved; "
            "fix the cause and run the same command again to resume."
        )
        return EXIT_FATAL
    if cap is not None and cap.stopped:
        _say(
            f"stopped: the next document would take the estimated spend ({usd(cap.spent)} so far) past --max-cost "
            f"{usd(cap.cap)}. The {summary.done} document(s) finished are saved; run the same command with a "
            "higher --max-cost to go on."
        )
        return EXIT_BUDGET
    if summary.failed or unreadable:
        _say(
            f"{summary.failed} document(s) failed and {len(unreadable)} file(s) could not be read: see "
            f"{writer.errors or 'the messages above'}. Run the same command again to retry the failed ones."
        )
        return EXIT_FAILED
    return 0


# ------------------------------------------------------------------------------------------ estimate
def cmd_estimate(args: argparse.Namespace) -> int:
    from .estimate import estimate

    started = time.perf_counter()
    settings = resolve_settings(model=args.model, chunk_chars=args.chunk_chars, prices_path=args.prices, no_cache=True)
    e = estimate(iter_corpus(args.paths), settings, output_tokens_per_call=args.output_tokens)
    cost = "unknown (no price for this model; see --prices)" if e.cost_usd is None else f"${e.cost_usd:,.4f}"
    rows = [
        ("model", e.model),
        ("documents", f"{e.documents:,}"),
        ("chunks", f"{e.chunks:,}"),
        ("calls (no re-asks)", f"{e.calls:,}"),
        ("input tokens", f"{e.input_tokens:,}"),
        ("output tokens (assumed)", f"{e.output_tokens:,} ({args.output_tokens} a call)"),
        ("estimated cost", cost),
        ("tokens saved by cleaning", f"{e.noise_tokens_saved:,} (raw {e.raw_tokens:,} → clean {e.clean_tokens:,})"),
        ("tokenizer", e.tokenizer),
        ("time", f"{time.perf_counter() - started:.2f}s, no network"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


# ------------------------------------------------------------------------------------------ evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import score_file

    try:
        result = score_file(args.output, args.annotations, load_corpus(args.paths))
    except (OSError, ValueError) as exc:  # a missing folder or a malformed annotation file
        raise ConfigError(f"annotations: {exc}") from exc
    if not result.documents:
        raise ConfigError(f"none of the documents given has an annotation in {args.annotations}")
    print(f"{result.documents} annotated document(s); a match shares at least half a passage")
    print(
        f"{'kind':<18} {'pred':>5} {'ref':>5} {'match':>5} {'precision':>9} {'recall':>7} {'F1':>6}"
        "  category/level agree"
    )
    for name, k in [*result.kinds.items(), ("all", result.total)]:
        agree = f"{k.same_category}/{k.matched}, {k.same_level}/{k.matched}" if name in ("barrier", "enabler") else ""
        print(
            f"{name:<18} {k.predicted:>5} {k.reference:>5} {k.matched:>5} {k.precision:>9.3f} {k.recall:>7.3f} "
            f"{k.f1:>6.3f}  {agree}"
        )
    return 0


# -------------------------------------------------------------------------------------------- schema
def cmd_schema(args: argparse.Namespace) -> int:
    from .formats import json_schema

    print(json.dumps(json_schema(args.which), indent=2, ensure_ascii=False))
    return 0


# -------------------------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    result = export(args.output, args.to, args.path)
    for note in result.notes:
        _say(f"note: {note}")
    rows = ", ".join(f"{name} {n:,}" for name, n in result.rows.items() if name != "readme")
    _say(f"wrote {result.path} ({result.format}): {rows}")
    return 0


# --------------------------------------------------------------------------------------------- cache
def cmd_cache(args: argparse.Namespace) -> int:
    settings = resolve_settings(cache_path=args.cache)
    assert settings.cache_path is not None
    with Cache(settings.cache_path) as cache:
        if args.action == "stats":
            s = cache.stats()
            print(f"cache        {s.path}")
            print(f"size         {s.size_bytes / 1e6:.2f} MB, {s.entries:,} entries")
            print(f"calls        {s.calls:,} ({s.hits:,} hits, {s.misses:,} misses, hit rate {s.hit_rate:.1%})")
            print(f"saved        {s.tokens_saved:,} tokens, ${s.cost_saved_usd:.4f}")
            print(f"spent        {s.tokens_spent:,} tokens, ${s.cost_spent_usd:.4f}")
        elif args.action == "clear":
            print(f"removed {cache.clear(log=args.log):,} entries from {cache.path}")
        elif args.action == "export":
            with _open(args.file, "w") as fp:
                print(f"exported {cache.export(fp):,} entries", file=sys.stderr)
        elif args.action == "import":
            with _open(args.file, "r") as fp:
                print(f"imported {cache.import_(fp):,} entries into {cache.path}", file=sys.stderr)
    return 0


def _open(name: str, mode: str) -> contextlib.AbstractContextManager[TextIO]:
    """A file to read or write, or standard input/output for ``-`` (left open afterwards)."""
    if name == "-":
        return contextlib.nullcontext(sys.stdout if "w" in mode else sys.stdin)
    try:
        return cast(TextIO, open(name, mode, encoding="utf-8"))  # closed by the caller's with
    except OSError as exc:
        raise OutputError(f"{name}: {exc}") from exc


# -------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="insights",
        description="Extract barriers, enablers, champions and failed experiments from practitioners' "
        "documents with a language model; every quote is located in the source.",
        epilog="Settings: arguments win over OPENAI_API_KEY, OPENAI_BASE_URL, INSIGHTS_MODEL, INSIGHTS_CACHE, "
        "INSIGHTS_OFFLINE (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"insights {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request and retry")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ex = sub.add_parser(
        "extract",
        help="extract insights from documents into JSONL",
        description="Extract insights from files, folders or globs (SDG Innovation Commons markdown, plain "
        ".md/.txt, files without extension, JSONL of {id, text, metadata}). Writes one JSON line per insight. "
        "Re-running the same command skips documents already in the output and retries the failed ones.",
    )
    ex.add_argument("paths", nargs="+", metavar="PATH", help="files, folders (searched recursively) or globs")
    ex.add_argument(
        "-o", "--output", metavar="OUT.jsonl", help="output file (appended, resumable); '-' or none: stdout"
    )
    ex.add_argument("--errors", metavar="FILE", help="error records (default: OUT.errors.jsonl beside the output)")
    ex.add_argument("--overwrite", action="store_true", help="start over instead of resuming the output")
    ex.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"documents in flight (default {DEFAULT_CONCURRENCY})",
    )
    ex.add_argument("--rpm", type=float, metavar="N", help="at most N requests per minute")
    ex.add_argument("--tpm", type=float, metavar="N", help="at most N input tokens per minute")
    ex.add_argument("--replay", metavar="FILE", help="answer only from a recorded replay file (offline, no key needed)")
    ex.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    _spend_options(ex)
    _model_options(ex)
    _cache_options(ex)
    ex.add_argument("--offline", action="store_true", help="never touch the network; a cache miss fails that document")
    ex.add_argument("--max-retries", type=int, metavar="N", help="transport retries per request (default 4)")
    ex.add_argument("--reasks", type=int, metavar="N", help="re-asks after an invalid or ungrounded answer (default 2)")
    ex.add_argument("--timeout", type=float, metavar="S", help="seconds per HTTP request (default 120)")
    ex.add_argument(
        "--chunk-chars", type=int, metavar="N", help="split documents longer than N characters (default 24000)"
    )
    ex.add_argument("--prices", metavar="FILE", help="JSON price table {model: {input, output}} in $ per 1M tokens")
    ex.set_defaults(func=cmd_extract)

    es = sub.add_parser(
        "estimate",
        help="count documents, calls, tokens and cost without calling a model",
        description="Render the prompts a run would send and count them. No network, no key.",
    )
    es.add_argument("paths", nargs="+", metavar="PATH")
    es.add_argument("--model", help="model to price (default: INSIGHTS_MODEL or gpt-4o-mini)")
    es.add_argument("--chunk-chars", type=int, metavar="N", help="chunk size (default 24000)")
    es.add_argument(
        "--output-tokens", type=int, default=700, metavar="N", help="assumed output tokens a call (default 700)"
    )
    es.add_argument("--prices", metavar="FILE", help="JSON price table {model: {input, output}} in $ per 1M tokens")
    es.set_defaults(func=cmd_estimate)

    ev = sub.add_parser(
        "evaluate",
        help="score an output file against reference annotations",
        description="Precision, recall and F1 per kind of an OUT.jsonl against annotation files (evals/seeds is "
        "the start of such a set). A predicted insight matches a reference one of the same kind when their "
        "passages overlap by at least half.",
    )
    ev.add_argument("output", metavar="OUT.jsonl", help="the output of insights extract")
    ev.add_argument("paths", nargs="+", metavar="PATH", help="the documents the output was extracted from")
    ev.add_argument(
        "--annotations", default="evals/seeds", metavar="DIR", help="annotation files (default evals/seeds)"
    )
    ev.set_defaults(func=cmd_evaluate)

    _schema_parser(sub)
    _export_parser(sub)

    ca = sub.add_parser(
        "cache",
        help="inspect, clear, export or import the response cache",
        description="The response cache and call log (an SQLite file).",
    )
    ca_sub = ca.add_subparsers(dest="action", required=True, metavar="ACTION")
    ca_sub.add_parser("stats", help="entries, size, hit rate, tokens and cost saved")
    clear = ca_sub.add_parser("clear", help="delete every cached response")
    clear.add_argument("--log", action="store_true", help="delete the call log too")
    exp = ca_sub.add_parser("export", help="write cache entries as JSONL (to share a cache)")
    exp.add_argument("file", metavar="FILE", help="output file, or - for stdout")
    imp = ca_sub.add_parser("import", help="read cache entries from JSONL")
    imp.add_argument("file", metavar="FILE", help="input file, or - for stdin")
    for p in (ca, *ca_sub.choices.values()):
        p.add_argument(
            "--cache",
            metavar="PATH",
            default=argparse.SUPPRESS,
            help="cache file (default: INSIGHTS_CACHE or ~/.cache/insights/insights.db)",
        )
    ca.set_defaults(func=cmd_cache, cache=None)
    return parser


def _schema_parser(sub: Any) -> None:
    from .formats import SCHEMAS

    sc = sub.add_parser(
        "schema",
        help="print the JSON Schema of an output file",
        description="Print one JSON Schema (draft 2020-12) of a file insights writes; every field is described. "
        + "; ".join(f"{name}: {what}" for name, what in SCHEMAS.items())
        + ".",
    )
    sc.add_argument("which", nargs="?", default="insight", choices=list(SCHEMAS), metavar="NAME",
                    help=f"one of {', '.join(SCHEMAS)} (default: insight)")  # fmt: skip
    sc.set_defaults(func=cmd_schema)


def _export_parser(sub: Any) -> None:
    from .export import FORMATS

    xp = sub.add_parser(
        "export",
        help="write an output as CSV, Parquet or SQLite tables",
        description="Write the tables insights, evidence, documents, rejected, tags and readme (joined by "
        "insight_id and document_id) from OUT.jsonl and its OUT.documents.jsonl. csv and parquet: a folder "
        "with one file per table; sqlite: one database with keys and full-text search, ready for Datasette "
        "and sqlite-utils. The target is replaced only once the new one is complete.",
    )
    xp.add_argument("output", metavar="OUT.jsonl", help="the output of insights extract")
    xp.add_argument("--to", required=True, choices=FORMATS, help="csv, parquet (needs the parquet extra) or sqlite")
    xp.add_argument("path", metavar="PATH", help="folder (csv, parquet) or file (sqlite) to write")
    xp.set_defaults(func=cmd_export)


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _usd(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of US dollars, 0 or more, not {text!r}")
    return value


def _spend_options(p: argparse.ArgumentParser) -> None:
    """Trying a few documents first, capping the spend, and how much a resumed run trusts."""
    few = p.add_mutually_exclusive_group()
    few.add_argument(
        "--limit", type=_count, metavar="N", help="do only the first N documents still to do (input order), then stop"
    )
    few.add_argument(
        "--sample", type=_count, metavar="N", help="do N documents still to do, chosen at random (see --seed)"
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed of --sample (default 0)")
    p.add_argument(
        "--max-cost",
        type=_usd,
        metavar="USD",
        help="refuse to start if the estimate for the documents to do is above USD, and start no document that "
        "would take the estimated spend past it (exit 5; needs the model's price)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="on resume, read and hash every input file and check every output line against the ledger "
        "(by default a file with unchanged path, size and modification time is not read again)",
    )


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model name (default: INSIGHTS_MODEL or gpt-4o-mini)")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (default: OPENAI_BASE_URL or OpenAI)")


def _cache_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--cache", metavar="PATH", help="cache file (default: INSIGHTS_CACHE or ~/.cache/insights/insights.db)"
    )
    group.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``insights`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_ScrubSecrets())
    if not args.verbose:
        # instructor logs every failed attempt at ERROR; the outcome is reported once, by us.
        logging.getLogger("instructor").setLevel(logging.CRITICAL)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        _say("interrupted: finished documents are saved; run the same command again to resume")
        return EXIT_INTERRUPTED
    except OutputWriteError as exc:
        _say(f"insights: error: {exc}. Nothing was lost; free some space (or fix the disk) and run again.")
        return EXIT_WRITE
    except (ConfigError, DocumentError, OutputError, CacheError) as exc:
        _say(f"insights: error: {exc}")
        return EXIT_USAGE
    except InsightsError as exc:
        _say(f"insights: error: {type(exc).__name__}: {exc}")
        return EXIT_FATAL


if __name__ == "__main__":
    sys.exit(main())
