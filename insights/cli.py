"""The ``insights`` command: extract, estimate, evaluate, schema, cache.

Exit codes: 0 success; 1 some documents failed (see the errors file); 2 bad usage, settings or input;
3 the run was stopped by a fatal error (wrong key, no access, no quota); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO, Union, cast

from . import __version__
from .batch import DEFAULT_CONCURRENCY, Outcome, RunSummary, extract_many
from .cache import Cache
from .client import ModelClient
from .config import Settings, resolve_settings
from .documents import load_corpus
from .errors import CacheError, ConfigError, DocumentError, InsightsError, OutputError
from .output import OutputWriter
from .prompts import load_prompts

EXIT_FAILED, EXIT_USAGE, EXIT_FATAL, EXIT_INTERRUPTED = 1, 2, 3, 130
REPLAY_NOTICE = (
    "Replaying recorded responses from {path}: {source}. Nothing is sent over the network; these are "
    "not a live model's answers."
)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
    """A rich progress bar on a terminal, plain log lines otherwise."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet, self.n = total, quiet, 0
        self._bar: Any = None
        if not quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("extract"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[last]}"), transient=False,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task("extract", total=total, last="")

    def update(self, outcome: Outcome, lines: int) -> None:
        self.n += 1
        doc = outcome.document.id
        if outcome.result is not None:
            usage = outcome.result.provenance.usage
            cached = " (cache)" if usage.calls and usage.cached_calls == usage.calls else ""
            rejected = len(outcome.result.rejected)
            note = f"{doc}: {lines} insights{', %d rejected' % rejected if rejected else ''}{cached}"
        else:
            note = f"{doc}: FAILED {type(outcome.error).__name__}: {outcome.error}"
        if self._bar is not None:
            self._bar.update(self._task, advance=1, last=note[:60])
            if outcome.error is not None:
                self._bar.console.print(note)
        elif not self.quiet:
            _say(f"[{self.n}/{self.total}] {note}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def cmd_extract(args: argparse.Namespace) -> int:
    started = time.perf_counter()
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
        documents = load_corpus(args.paths)
        if not documents:
            raise DocumentError(" ".join(args.paths), "no documents found")

        out = None if args.output in (None, "-") else Path(args.output)
        writer = stack.enter_context(
            OutputWriter(out, errors=Path(args.errors) if args.errors else None, stream=sys.stdout)
        )
        done = writer.resume(documents, settings.model, load_prompts().version, overwrite=args.overwrite)
        todo = [d for d in documents if d.id not in done]
        writer.start_errors()
        client = stack.enter_context(ModelClient(settings, cache=cache))
        progress = _Progress(len(todo), args.quiet)
        stack.callback(progress.close)

        summary, lines, fatal = RunSummary(), 0, None
        try:
            for outcome in extract_many(todo, concurrency=args.concurrency, client=client, rpm=args.rpm, tpm=args.tpm):
                written = 0
                if outcome.result is not None:
                    written = writer.write(outcome.document, outcome.result)
                elif not getattr(outcome.error, "fatal", False):
                    writer.write_error(outcome.document, outcome.error)  # type: ignore[arg-type]
                summary.add(outcome)
                lines += written
                progress.update(outcome, written)
        except InsightsError as exc:
            if not getattr(exc, "fatal", False):
                raise
            fatal = exc

    _say(
        f"done {summary.done}, failed {summary.failed}, skipped {len(done)} (already in the output), "
        f"from cache {summary.from_cache}; {lines} insights written; "
        f"tokens in {summary.input_tokens:,} out {summary.output_tokens:,}; "
        f"estimated cost ${summary.cost_usd:.4f}; wall time {time.perf_counter() - started:.1f}s"
    )
    if out is not None:
        _say(f"output: {out} (documents: {writer.documents}, errors: {writer.errors})")
    if fatal is not None:
        _say(
            f"stopped: {type(fatal).__name__}: {fatal}. Finished documents are saved; "
            "fix the cause and run the same command again to resume."
        )
        return EXIT_FATAL
    if summary.failed:
        _say(f"{summary.failed} document(s) failed: see {writer.errors}. Run the same command again to retry them.")
        return EXIT_FAILED
    return 0


# ------------------------------------------------------------------------------------------ estimate
def cmd_estimate(args: argparse.Namespace) -> int:
    from .estimate import estimate

    started = time.perf_counter()
    settings = resolve_settings(model=args.model, chunk_chars=args.chunk_chars, prices_path=args.prices, no_cache=True)
    documents = load_corpus(args.paths)
    e = estimate(documents, settings, output_tokens_per_call=args.output_tokens)
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
def _fmt(value: float | None, interval: Any = None) -> str:
    if value is None:
        return "—"
    if interval is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{interval[0]:.2f}, {interval[1]:.2f}]"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import annotation_dirs, compare, report, score_file

    runs = list(args.compare) if args.compare else [args.output]
    paths = [args.output, *args.paths] if args.compare and args.output else list(args.paths)
    if not runs[0] or not paths:
        raise ConfigError("evaluate needs OUT.jsonl and the documents (PATH...), or --compare A.jsonl B.jsonl PATH...")
    folders = args.annotations or annotation_dirs()
    if not folders:
        raise ConfigError("no annotation folders: pass --annotations DIR")
    documents = load_corpus(paths)
    try:
        scores = [score_file(run, folders, documents) for run in runs]
    except (OSError, ValueError) as exc:  # a missing folder or a malformed annotation file
        raise ConfigError(f"annotations: {exc}") from exc
    where = ", ".join(str(f) for f in folders)
    if not scores[0].documents:
        raise ConfigError(f"none of the documents given has an annotation in {where}")
    if args.compare:
        diffs = compare(scores[0], scores[1], args.resamples, args.seed)
        if args.json:
            print(json.dumps({name: vars(d) for name, d in diffs.items()}, indent=2))
            return 0
        print(f"{scores[0].documents} annotated document(s) ({where}); A = {runs[0]}, B = {runs[1]}")
        print(f"B − A with a paired bootstrap 95% interval over documents ({args.resamples} resamples)")
        print(f"{'metric':<28} {'A':>6} {'B':>6}  B − A [95% interval]")
        for name, d in diffs.items():
            print(f"{name:<28} {_fmt(d.a):>6} {_fmt(d.b):>6}  {_fmt(d.diff, d.interval)}")
        return 0
    result = report(scores[0], args.resamples, args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    m = result["metrics"]
    print(f"{result['documents']} annotated document(s) ({where}); a match shares at least half a passage")
    print(f"95% intervals: bootstrap over documents, {args.resamples} resamples")
    if result["not_done"]:
        missing = ", ".join(result["not_done"])
        print(f"not in the run's ledger (failed or not run, scored as finding nothing): {missing}")
    print(f"{'kind':<18} {'pred':>5} {'ref':>5} {'match':>5}  {'precision':<22} {'recall':<22} F1")
    for name, c in result["counts"].items():
        cells = [_fmt(m[f"{name}.{x}"]["value"], m[f"{name}.{x}"]["interval"]) for x in ("precision", "recall", "f1")]
        counts = f"{name:<18} {c['predicted']:>5} {c['reference']:>5} {c['matched']:>5}"
        print((counts + "  " + " ".join(f"{x:<22}" for x in cells)).rstrip())
    print("on matched barriers and enablers:")
    for name in ("barrier", "enabler", "all"):
        cells = []
        for label in ("category", "level"):
            agree, kappa = m[f"{name}.{label}_agreement"], m[f"{name}.{label}_kappa"]
            cells.append(f"{label} agree {_fmt(agree['value'])}, κ {_fmt(kappa['value'], kappa['interval'])}")
        print(f"  {name:<8} " + "; ".join(cells))
    for name in ("verbatim_rate", "grounding_rate", "rejected_rate"):
        note = "" if m[name]["value"] is not None or name == "verbatim_rate" else " (no ledger beside the output)"
        print(f"{name:<18} {_fmt(m[name]['value'], m[name]['interval'])}{note}")
    return 0


# -------------------------------------------------------------------------------------------- schema
def output_schema() -> dict[str, Any]:
    """JSON Schema of one output line (``OUT.jsonl``) and of ``DocumentInsights``."""
    from pydantic import TypeAdapter, create_model

    from .schema import RECORD_TYPES, DocumentInsights

    identity: dict[str, Any] = {
        "document_id": (str, ...), "title": (str, ""), "type": (str, ""), "year": (int | None, None),
        "country": (str, ""), "content_hash": (str, ""), "model": (str, ""), "prompt_version": (str, ""),
    }  # fmt: skip
    lines = [create_model(f"{cls.__name__}Line", __base__=cls, **identity) for cls in RECORD_TYPES.values()]
    line_schema = TypeAdapter(Union[tuple(lines)]).json_schema()  # type: ignore[arg-type]
    return {"output_line": line_schema, "document_insights": DocumentInsights.model_json_schema()}


def cmd_schema(args: argparse.Namespace) -> int:
    schema = output_schema()
    print(json.dumps(schema[args.which] if args.which else schema, indent=2))
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
        help="score an output file against reference annotations, or compare two runs",
        description="Precision, recall and F1 per kind of an OUT.jsonl against annotation files, with category "
        "and level agreement (Cohen's kappa) on matched barriers and enablers, verbatim, grounding and rejected "
        "rates, and 95% bootstrap intervals over documents. A predicted insight matches a reference one of the "
        "same kind when their passages overlap by at least half. With --compare A.jsonl B.jsonl, every "
        "metric of both runs and B - A with a paired interval (a prompt or model A/B).",
    )
    ev.add_argument("output", nargs="?", metavar="OUT.jsonl", help="the output of insights extract")
    ev.add_argument("paths", nargs="*", metavar="PATH", help="the documents the output was extracted from")
    ev.add_argument(
        "--compare", nargs=2, metavar=("A.jsonl", "B.jsonl"), help="compare two runs (then every PATH is a document)"
    )
    ev.add_argument(
        "--annotations",
        action="append",
        metavar="DIR",
        help="annotation folder, repeatable (default: every set shipped with insights: evals/seeds, evals/corpus)",
    )
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.add_argument("--resamples", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    ev.add_argument("--seed", type=int, default=0, metavar="N", help="bootstrap seed (default 0)")
    ev.set_defaults(func=cmd_evaluate)

    sc = sub.add_parser(
        "schema",
        help="print the JSON Schema of the output records",
        description="Print the JSON Schema of output lines and of DocumentInsights.",
    )
    sc.add_argument("which", nargs="?", choices=["output_line", "document_insights"], help="only this schema")
    sc.set_defaults(func=cmd_schema)

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
    if not args.verbose:
        # instructor logs every failed attempt at ERROR; the outcome is reported once, by us.
        logging.getLogger("instructor").setLevel(logging.CRITICAL)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        _say("interrupted: finished documents are saved; run the same command again to resume")
        return EXIT_INTERRUPTED
    except (ConfigError, DocumentError, OutputError, CacheError) as exc:
        _say(f"insights: error: {exc}")
        return EXIT_USAGE
    except InsightsError as exc:
        _say(f"insights: error: {type(exc).__name__}: {exc}")
        return EXIT_FATAL


if __name__ == "__main__":
    sys.exit(main())
