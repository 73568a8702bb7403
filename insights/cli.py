"""The ``insights`` command: extract, estimate, evaluate, schema, export, report, review, themes, batch,
cache.

Exit codes: 0 success; 1 some documents failed or some files could not be read (see the errors file);
2 bad usage, settings or input, or the output is held by another run or holds another model's results
(nothing was asked); 3 the run was stopped by a fatal error (wrong key, no access, no quota, unknown model,
unreachable endpoint); 4 the run was stopped because an output file could not be written (disk full, I/O
error): finished documents are saved and consistent, rerun to resume; 5 the spending cap (``--max-cost``)
stopped the run, before it started (the estimate is above the cap: nothing was asked) or before it
finished (the documents finished are saved; rerun with a higher cap to go on); 130 interrupted.

Options and settings are checked before anything is created: a bad value, a missing key or an unreadable
price table leaves no output file, and ``extract`` asks the endpoint once whether it serves the model
(:meth:`insights.client.ModelClient.check`, skipped offline) before it creates any file or sends any
document.

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
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from . import __version__
from .batch import DEFAULT_CONCURRENCY, Outcome, RunSummary, extract_many
from .cache import Cache
from .config import DEFAULT_MAX_TOKENS, MIN_CHUNK_CHARS, MODES, Settings, resolve_settings
from .corpus import LoadFailure, iter_corpus, list_corpus, load_corpus, scan_corpus
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


# ------------------------------------------------------------------------------------ option types
def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _positive(text: str) -> float:
    """An argparse type: a finite number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return value


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
        mode=args.mode,
        max_tokens=args.max_tokens,
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


def _report_unreadable(failures: list[LoadFailure]) -> None:
    """Name the files that could not be read (even with ``-q``: they are not progress but problems)."""
    for failure in failures[:SHOWN_FAILURES]:
        _say(f"unreadable, skipped: {failure.error}")
    if len(failures) > SHOWN_FAILURES:
        _say(f"... and {len(failures) - SHOWN_FAILURES} more unreadable file(s), listed in the errors file")


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
        # The client before any file: no key, no endpoint or a bad price table is a usage error that
        # leaves nothing behind; then the endpoint and model, once, before the first document.
        client = stack.enter_context(_client_class()(settings, cache=cache))
        client.check()
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
        head = next(stream, None)
        summary, lines, fatal, broken = RunSummary(), 0, None, None
        if head is not None:
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
        f"estimated cost {_cost(summary, settings.model)}; wall time {time.perf_counter() - started:.1f}s"
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
            f"stopped: {type(fatal).__name__}: {str(fatal).rstrip('.')}. Finished documents are saved; "
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


def _cost(summary: RunSummary, model: str) -> str:
    if summary.unpriced:
        return f"unknown (no price for {model}; see --prices)"
    return f"${summary.cost_usd:.4f}"


# ------------------------------------------------------------------------------------------ estimate
def cmd_estimate(args: argparse.Namespace) -> int:
    from .estimate import estimate

    started = time.perf_counter()
    settings = resolve_settings(model=args.model, chunk_chars=args.chunk_chars, prices_path=args.prices, no_cache=True)
    e = estimate(iter_corpus(args.paths), settings, output_tokens_per_call=args.output_tokens)
    if args.json:
        print(json.dumps(e.as_dict()))
        return 0
    cost = "unknown (no price for this model; see --prices)" if e.cost_usd is None else f"${e.cost_usd:,.4f}"
    batch = "unknown (no batch price; see --prices)" if e.batch_cost_usd is None else f"${e.batch_cost_usd:,.4f}"
    rows = [
        ("model", e.model),
        ("documents", f"{e.documents:,}"),
        ("chunks", f"{e.chunks:,}"),
        ("calls (no re-asks)", f"{e.calls:,}"),
        ("input tokens", f"{e.input_tokens:,}"),
        (
            "  fixed prompt",
            f"{e.fixed_prompt_tokens:,} ({e.fixed_tokens_per_call:,} a call: system, tool schema, template)",
        ),
        ("  document text", f"{e.text_tokens:,}"),
        ("output tokens (assumed)", f"{e.output_tokens:,} ({args.output_tokens} a call)"),
        ("estimated cost", cost),
        ("estimated cost (batch)", f"{batch} with `insights batch`"),
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
    from .decisions import reviewed_lines
    from .evaluate import annotation_dirs, compare, report, score_file
    from .output import read_jsonl

    runs = list(args.compare) if args.compare else [args.output]
    paths = [args.output, *args.paths] if args.compare and args.output else list(args.paths)
    if not runs[0] or not paths:
        raise ConfigError("evaluate needs OUT.jsonl and the documents (PATH...), or --compare A.jsonl B.jsonl PATH...")
    folders = args.annotations or annotation_dirs()
    if not folders:
        raise ConfigError("no annotation folders: pass --annotations DIR")
    documents = load_corpus(paths)
    try:
        reviewed = [reviewed_lines(run, read_jsonl(run), raw=args.raw, decisions=args.decisions) for run in runs]
        scores = [score_file(run, folders, documents, lines=r.lines) for run, r in zip(runs, reviewed, strict=True)]
    except (OSError, ValueError) as exc:  # a missing folder or a malformed annotation file
        raise ConfigError(f"annotations: {exc}") from exc
    for r in reviewed:
        if r.summary():
            _say(r.summary())
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


# -------------------------------------------------------------------------------------------- report
def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    out = Path(args.output)
    dest = Path(args.html) if args.html else out.with_name(out.name.removesuffix(".jsonl") + ".html")
    stats = write_report(
        out, dest, args.paths, full_text=args.full_text, title=args.title, raw=args.raw, decisions=args.decisions,
        themes=_themes_option(args),
    )  # fmt: skip
    _say(f"report: {stats.path} ({stats.bytes / 1e6:.2f} MB; {stats.documents} documents, {stats.insights} insights)")
    if stats.review:
        _say(stats.review)
    for note in stats.notes:
        _say(f"note: {note}")
    if stats.missing or stats.changed:
        _say(
            f"warning: {stats.missing} document(s) not found and {stats.changed} changed since the run: their "
            "quotes are shown without highlights (give the documents' PATHs)"
        )
    return 0


# -------------------------------------------------------------------------------------------- themes
def cmd_themes(args: argparse.Namespace) -> int:
    from collections import Counter

    from .champions import champions, pseudonymise_themes
    from .decisions import reviewed_lines
    from .output import read_jsonl, sidecar
    from .themes import themes

    started = time.perf_counter()
    source = Path(args.input)
    if not source.is_file():
        raise ConfigError(f"{source}: no such output file (run insights extract first)")
    reviewed = reviewed_lines(source, read_jsonl(source), raw=args.raw, decisions=args.decisions)
    records = reviewed.lines
    if reviewed.summary():
        _say(reviewed.summary())
    out = Path(args.output) if args.output else sidecar(source, "themes")
    found = themes(records, min_similarity=args.min_similarity, min_documents=args.min_documents, vectors=args.vectors)
    entities = champions(records, undo=args.undo_merge or (), pseudonymise=args.pseudonymise_persons)
    result = list(found)
    if args.label_with_model:
        result = _model_labels(args, result, records)
    if args.pseudonymise_persons:
        result = pseudonymise_themes(result, entities, records)
    champions_out = sidecar(out, "champions")
    for path, rows in ((out, result), (champions_out, entities)):
        _write_jsonl(path, [r.model_dump(mode="json") for r in rows])
    labels = Counter(t.label_source for t in result)
    _say(
        f"{len(result)} themes over {found.themed} of {found.items} insights ({found.vectors} vectors, min similarity "
        f"{found.min_similarity:g}, at least {args.min_documents} documents); {found.not_recurring} groups from "
        f"fewer documents left out; labels: {', '.join(f'{n} {k}' for k, n in sorted(labels.items())) or 'none'}; "
        f"{len(entities)} champion entities, {sum(len(e.merges) for e in entities)} merges; "
        f"wall time {time.perf_counter() - started:.1f}s"
    )
    _say(f"output: {out} (champions: {champions_out})")
    return 0


def _model_labels(args: argparse.Namespace, found: list[Any], records: list[dict[str, Any]]) -> list[Any]:
    from .theme_labels import label_with_model

    with contextlib.ExitStack() as stack:
        settings = resolve_settings(
            model=args.model, base_url=args.base_url, cache_path=args.cache, no_cache=args.no_cache,
            offline=args.offline or None,
        )  # fmt: skip
        cache: Cache | None
        if args.replay:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="insights-replay-")))
            settings, cache, origin = _load_replay(Path(args.replay), settings, workdir)
            _say(REPLAY_NOTICE.format(path=args.replay, source=origin))
        else:
            settings, cache = _open_cache(settings)
        if cache is not None:
            stack.callback(cache.close)
        client = stack.enter_context(_client_class()(settings, cache=cache))
        return label_with_model(found, records, client)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` as JSON lines to ``path`` as a whole (see :func:`insights.output.write_atomically`)."""
    from .output import write_atomically

    write_atomically(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8"))


# -------------------------------------------------------------------------------------------- schema
def cmd_schema(args: argparse.Namespace) -> int:
    from .formats import json_schema

    print(json.dumps(json_schema(args.which), indent=2, ensure_ascii=False))
    return 0


# -------------------------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    result = export(
        args.output, args.to, args.path, raw=args.raw, decisions=args.decisions, themes=_themes_option(args)
    )
    for note in result.notes:
        _say(f"note: {note}")
    if result.themes is not None:
        _say(f"themes: {result.themes}")
    rows = ", ".join(f"{name} {n:,}" for name, n in result.rows.items() if name != "readme")
    _say(f"wrote {result.path} ({result.format}): {rows}")
    return 0


# --------------------------------------------------------------------------------------------- batch
BATCH_HELP = """\
The OpenAI Batch API: half the price, no rate limits, answers within 24 hours.

  insights batch submit PATH... -o OUT.jsonl            send the requests a run would make, as batches
  insights batch status                                 where the batches are
  insights batch collect PATH... -o OUT.jsonl [--wait]  store the answers and write OUT.jsonl
  insights batch cancel [BATCH_ID...]                   cancel running batches

submit sends exactly the requests `insights extract` would send for the documents not yet in OUT.jsonl;
answers already in the cache are not asked for again, and requests already in a running batch are not
sent twice. Jobs are kept in the cache file, so status and collect work after a crash, a reboot or on
another day. collect stores each answer in the cache as a synchronous call would and runs the normal
pipeline from it (grounding, OUT.jsonl, its ledger and errors file); answers that need a re-ask go into a
follow-up batch (or are sent at once with --sync-reasks); requests that failed or were left unrun by an
expired batch are sent again (3 times at most), the rest are recorded in OUT.errors.jsonl. With --wait,
collect polls until every document is in the output or the errors file. Costs are at batch prices.
Works with OpenAI, and with Azure OpenAI's v1 API through --base-url (a Global Batch deployment).
"""


def _batch_client(args: argparse.Namespace, stack: contextlib.ExitStack) -> Any:
    settings = resolve_settings(
        model=args.model, base_url=args.base_url, cache_path=args.cache, max_retries=args.max_retries,
        reasks=getattr(args, "reasks", None), chunk_chars=getattr(args, "chunk_chars", None), prices_path=args.prices,
    )  # fmt: skip
    if settings.offline or settings.cache_path is None:
        raise ConfigError("the Batch API needs the network and the cache: unset INSIGHTS_OFFLINE / INSIGHTS_NO_CACHE")
    cache = Cache(settings.cache_path)
    stack.callback(cache.close)
    return stack.enter_context(_client_class()(settings, cache=cache))


def _jobs_table(jobs: Sequence[Any]) -> None:
    print(f"{'batch':<24} {'status':<11} {'requests':>8} {'done':>6} {'failed':>6}  {'created':<25} collected")
    for j in jobs:
        print(
            f"{j.batch_id or '(' + j.job + ')':<24} {j.status:<11} {j.requests:>8,} {j.completed:>6,} {j.failed:>6,}"
            f"  {j.created_at:<25} {'yes' if j.collected else 'no'}"
        )
        if j.errors:
            print(f"    {j.errors}")


def cmd_batch(args: argparse.Namespace) -> int:
    from . import batchapi
    from .batchstore import BatchStore
    from .pricing import cost

    with contextlib.ExitStack() as stack:
        client = _batch_client(args, stack)
        if args.action == "status":
            jobs = batchapi.status(client)
            _jobs_table(jobs)
            assert client.cache is not None
            states = BatchStore(client.cache).counts()
            print("requests: " + (", ".join(f"{n:,} {state}" for state, n in sorted(states.items())) or "none"))
            return 0
        if args.action == "cancel":
            _jobs_table(batchapi.cancel(client, args.batch_ids))
            return 0
        errors = getattr(args, "errors", None)
        writer = OutputWriter(Path(args.output), errors=Path(errors) if errors else None)
        writer.refuse_unsafe_paths(args.paths)
        corpus = scan_corpus(args.paths)
        documents = corpus.documents
        if not documents and not corpus.failures:
            raise DocumentError(" ".join(args.paths), "no documents found")
        stack.enter_context(writer)
        done = writer.resume(documents, client.model, load_prompts().version, overwrite=False)
        for failure in corpus.failures:
            writer.write_failure(failure)
        _report_unreadable(corpus.failures)
        todo = [d for d in documents if d.id not in done]
        limits = batchapi.Limits(requests=args.requests_per_batch)
        if args.action == "submit":
            sub = batchapi.submit(todo, client, limits=limits)
            _say(
                f"{sub.documents} document(s) to do ({len(done)} already in the output): {sub.requests:,} request(s) "
                f"sent in {len(sub.jobs)} batch(es); {sub.live:,} already in a running batch; {sub.ready} "
                "document(s) answered by the cache already"
            )
            _jobs_table(sub.jobs)
            _say(f"then: insights batch collect {' '.join(args.paths)} -o {args.output} [--wait]")
            return 0
        say = (lambda message: None) if args.quiet else _say
        report = batchapi.collect(
            todo, writer, client, wait=args.wait, poll=args.poll, sync_reasks=args.sync_reasks, limits=limits,
            concurrency=args.concurrency, say=say,
        )  # fmt: skip
    h = report.harvest
    spent = "unknown (no batch price for this model)" if h.cost_usd is None else f"${h.cost_usd:.4f}"
    sync = cost(client.model, h.input_tokens, h.output_tokens, client.prices)
    _say(
        f"harvested {h.jobs} batch(es): {h.answers:,} answers, {h.failed:,} failed, {h.unfinished:,} unrun; "
        f"tokens in {h.input_tokens:,} out {h.output_tokens:,}; cost at batch prices {spent}"
        + ("" if sync is None else f" (synchronously ${sync:.4f})")
    )
    _say(
        f"done {report.done}, failed {report.errors}, skipped {len(done)} (already in the output), waiting "
        f"{report.waiting}; follow-up: {report.followup_requests:,} request(s) in {report.followup_jobs} batch(es)"
        + (
            f"; {report.sync_documents} finished synchronously (${report.sync_cost_usd:.4f})"
            if args.sync_reasks
            else ""
        )
    )
    _say(f"output: {writer.out} (documents: {writer.documents}, errors: {writer.errors})")
    if report.waiting:
        _say(f"{report.waiting} document(s) wait on running batches: run the same command again later, or add --wait")
    return EXIT_FAILED if report.errors else 0


def _batch_parser(sub: Any) -> None:
    ba = sub.add_parser(
        "batch",
        help="extract through the OpenAI Batch API (half the price; submit, status, collect)",
        description=BATCH_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = ba.add_subparsers(dest="action", required=True, metavar="ACTION")
    submit = actions.add_parser(
        "submit",
        help="send the requests a run would make, as batches",
        description="Send, as batches, the requests `insights extract` would send.",
    )
    status = actions.add_parser("status", help="refresh and list the batches of this endpoint")
    collect = actions.add_parser(
        "collect",
        help="store finished batches' answers and write the output",
        description="Harvest finished batches into the cache, then write OUT.jsonl from it as `insights extract` "
        "would; re-asks go into a follow-up batch, failed requests are sent again or recorded as errors.",
    )
    cancel = actions.add_parser("cancel", help="cancel running batches (collect harvests what they finished)")
    cancel.add_argument("batch_ids", nargs="*", metavar="BATCH_ID", help="batches to cancel (default: all running)")
    for p in (submit, collect):
        p.add_argument("paths", nargs="+", metavar="PATH", help="files, folders (searched recursively) or globs")
        p.add_argument("-o", "--output", required=True, metavar="OUT.jsonl", help="the run's output (resumable)")
        p.add_argument("--chunk-chars", type=int, metavar="N", help="chunk size (default 24000)")
        p.add_argument("--reasks", type=int, metavar="N", help="re-asks after an invalid answer (default 2)")
        p.add_argument(
            "--requests-per-batch",
            type=int,
            default=50_000,
            metavar="N",
            help="lines per batch input file (default and API maximum 50000; files stay under 200 MB)",
        )
    collect.add_argument("--errors", metavar="FILE", help="error records (default: OUT.errors.jsonl)")
    collect.add_argument("--wait", action="store_true", help="poll until every document is done or failed")
    collect.add_argument("--poll", type=float, default=30.0, metavar="S",
                         help="first wait between polls, doubling up to 10 minutes (default 30)")  # fmt: skip
    collect.add_argument("--sync-reasks", action="store_true",
                         help="send re-asks at once (synchronous price) instead of in a follow-up batch")  # fmt: skip
    collect.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, metavar="N",
                         help="documents in flight for --sync-reasks")  # fmt: skip
    collect.add_argument("-q", "--quiet", action="store_true", help="no line per harvested batch")
    for p in (submit, status, collect, cancel):
        _model_options(p)
        p.add_argument(
            "--cache", metavar="PATH", help="cache file, which also holds the jobs (default: INSIGHTS_CACHE)"
        )
        p.add_argument("--max-retries", type=int, metavar="N", help="transport retries per API call (default 4)")
        p.add_argument("--prices", metavar="FILE", help="JSON price table (see insights/pricing.py)")
    ba.set_defaults(func=cmd_batch)


# -------------------------------------------------------------------------------------------- review
def cmd_review(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .decisions import decisions_path, read_decisions

    if args.export_gold or args.agreement:
        from .gold import agreement, export_gold
        from .output import read_jsonl

        decisions = read_decisions(args.decisions or decisions_path(args.output))
        for extra in args.with_decisions or []:  # another reviewer's file: later lines, same rules
            decisions += [replace(d, seq=len(decisions) + i) for i, d in enumerate(read_decisions(extra))]
        if args.export_gold:
            gold = export_gold(args.output, args.export_gold, decisions, args.paths, reviewer=args.reviewer)
            for doc_id, why in gold.skipped:
                _say(f"not exported: {doc_id}: {why}")
            _say(f"gold: {len(gold.written)} document(s), {gold.items} insight(s) written to {args.export_gold}")
        if args.agreement:
            pairs = agreement(read_jsonl(args.output), decisions)
            if not pairs:
                print("agreement needs two reviewers who decided the same insights")

            def kappa(k: float | None) -> str:
                return "n/a" if k is None else f"{k:.3f}"

            for a in pairs:
                print(
                    f"{a.reviewers[0]} / {a.reviewers[1]}: accept-reject on {a.n} insights: agree {a.same}, "
                    f"Cohen's kappa {kappa(a.kappa)}; category on {a.n_category} kept barriers/enablers: agree "
                    f"{a.same_category}, Cohen's kappa {kappa(a.kappa_category)}"
                )
        return 0
    from .review import ReviewServer, ReviewSession, status_text

    session = ReviewSession(args.output, args.paths, decisions=args.decisions)
    if args.status:
        print(status_text(session, args.reviewer))
        return 0
    session.open()  # the decisions file is ours before the page is announced (one writer at a time)
    try:
        server = ReviewServer(session, args.host, args.port, reviewer=args.reviewer or "")
        print(
            f"review: {server.url} ({len(session.lines)} insights; decisions are saved to {session.decisions_path})",
            flush=True,
        )
        if session.log.repaired:
            _say("the decisions file ended in a line torn by a kill (never acknowledged): it was cut off")
        if args.open:
            import webbrowser

            webbrowser.open(server.url)
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        session.close()
    _say(f"review stopped; every decision is in {session.decisions_path}")
    return 0


# --------------------------------------------------------------------------------------------- cache
def cmd_cache(args: argparse.Namespace) -> int:
    settings = resolve_settings(cache_path=args.cache)
    assert settings.cache_path is not None
    if args.action != "import" and not settings.cache_path.is_file():
        raise ConfigError(
            f"{settings.cache_path}: no cache there (nothing was created); check --cache or INSIGHTS_CACHE"
        )
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
        allow_abbrev=False,
        description="Extract barriers, enablers, champions and failed experiments from practitioners' "
        "documents with a language model; every quote is located in the source.",
        epilog="Settings: arguments win over OPENAI_API_KEY, OPENAI_BASE_URL, INSIGHTS_MODEL, INSIGHTS_CACHE, "
        "INSIGHTS_OFFLINE, INSIGHTS_MODE, INSIGHTS_MAX_TOKENS, INSIGHTS_TIMEOUT (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"insights {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every request, retry, re-ask and cut-off answer"
    )
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
        type=_int_at_least(1),
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"documents in flight (default {DEFAULT_CONCURRENCY})",
    )
    ex.add_argument("--rpm", type=_positive, metavar="N", help="at most N requests per minute")
    ex.add_argument("--tpm", type=_positive, metavar="N", help="at most N input tokens per minute")
    ex.add_argument("--replay", metavar="FILE", help="answer only from a recorded replay file (offline, no key needed)")
    ex.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    _spend_options(ex)
    _model_options(ex)
    _cache_options(ex)
    ex.add_argument("--offline", action="store_true", help="never touch the network; a cache miss fails that document")
    ex.add_argument(
        "--mode",
        choices=MODES,
        help="how the answer's structure is asked for: tools (a function call, default), json_schema "
        "(response_format json_schema: OpenAI, Ollama) or json (response_format json_object: llama.cpp). "
        "Default: INSIGHTS_MODE or tools",
    )
    ex.add_argument(
        "--max-tokens",
        type=_int_at_least(1),
        metavar="N",
        help=f"output tokens per call; an answer that reaches it is cut off (default {DEFAULT_MAX_TOKENS})",
    )
    ex.add_argument(
        "--max-retries", type=_int_at_least(0), metavar="N", help="transport retries per request (default 4)"
    )
    ex.add_argument(
        "--reasks", type=_int_at_least(0), metavar="N", help="re-asks after an invalid or ungrounded answer (default 2)"
    )
    ex.add_argument(
        "--timeout",
        type=_positive,
        metavar="S",
        help="seconds per HTTP request, start to last byte (default 120; 600 for a local endpoint: localhost, "
        "a private address)",
    )
    ex.add_argument(
        "--chunk-chars",
        type=_int_at_least(MIN_CHUNK_CHARS),
        metavar="N",
        help="split documents longer than N characters (default 24000)",
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
    es.add_argument(
        "--chunk-chars", type=_int_at_least(MIN_CHUNK_CHARS), metavar="N", help="chunk size (default 24000)"
    )
    es.add_argument(
        "--output-tokens",
        type=_int_at_least(0),
        default=700,
        metavar="N",
        help="assumed output tokens a call (default 700)",
    )
    es.add_argument("--prices", metavar="FILE", help="JSON price table {model: {input, output}} in $ per 1M tokens")
    es.add_argument("--json", action="store_true", help="print the figures as one JSON object, for scripts")
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
    _review_options(ev)
    ev.set_defaults(func=cmd_evaluate)

    th = sub.add_parser(
        "themes",
        help="group insights into recurring themes and resolve champions across documents",
        description="Group the barriers, enablers and failed experiments of an output file into recurring "
        "themes (offline: vectors from a model packaged with the 'themes' extra, or TF-IDF; complete-linkage "
        "clustering within each kind and category), and resolve champions written differently into entities. "
        "Writes THEMES.jsonl and THEMES.champions.jsonl. The same input gives the same output.",
    )
    th.add_argument("input", metavar="OUT.jsonl", help="the output of insights extract")
    th.add_argument("-o", "--output", metavar="THEMES.jsonl", help="themes file (default: OUT.themes.jsonl)")
    th.add_argument(
        "--min-similarity", type=float, metavar="S",
        help="every two members of a theme are at least this similar, cosine (default 0.25 with wordllama, "
        "0.08 with tfidf)",
    )  # fmt: skip
    th.add_argument(
        "--min-documents", type=int, default=2, metavar="N",
        help="a theme's members come from at least N documents (default 2)",
    )  # fmt: skip
    th.add_argument(
        "--vectors", choices=["auto", "wordllama", "tfidf"], default="auto",
        help="sentence vectors (default auto: wordllama if installed, else tfidf)",
    )  # fmt: skip
    th.add_argument(
        "--pseudonymise-persons", action="store_true",
        help="replace person champions' names with stable pseudonyms in both outputs",
    )  # fmt: skip
    th.add_argument(
        "--undo-merge", action="append", metavar="MERGE_ID", help="do not make this champion merge (repeatable)"
    )
    th.add_argument(
        "--label-with-model", action="store_true",
        help="one model call per theme writes its label and description, citing members (cached, logged)",
    )  # fmt: skip
    _model_options(th)
    _cache_options(th)
    th.add_argument("--offline", action="store_true", help="labels only from the cache; a miss keeps the offline label")
    th.add_argument("--replay", metavar="FILE", help="label only from a recorded replay file (offline)")
    _review_options(th)
    th.set_defaults(func=cmd_themes)

    _schema_parser(sub)
    _export_parser(sub)
    _report_parser(sub)
    _batch_parser(sub)
    _review_parser(sub)

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
    for p in _parsers(parser):
        # No abbreviations: "--mode x" must never be read as "--model x" (nor any prefix as an option).
        p.allow_abbrev = False
        if p is not parser:  # -v after the subcommand too; SUPPRESS keeps a -v given before it
            p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log every request")
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
        "insight_id and document_id) from OUT.jsonl and its OUT.documents.jsonl, and the theme tables from "
        "the output of insights themes when there is one. csv and parquet: a folder with one file per table; "
        "sqlite: one database with keys and full-text search, ready for Datasette and sqlite-utils. The target "
        "is replaced only once the new one is complete.",
    )
    xp.add_argument("output", metavar="OUT.jsonl", help="the output of insights extract")
    xp.add_argument("--to", required=True, choices=FORMATS, help="csv, parquet (needs the parquet extra) or sqlite")
    xp.add_argument("path", metavar="PATH", help="folder (csv, parquet) or file (sqlite) to write")
    _review_options(xp)
    _themes_options(xp, "add the tables themes, theme_members, champions, champion_aliases and champion_mentions")
    xp.set_defaults(func=cmd_export)


def _themes_options(p: argparse.ArgumentParser, what: str) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--themes", metavar="THEMES.jsonl",
        help=f"the output of insights themes (and its THEMES.champions.jsonl): {what} (default: OUT.themes.jsonl "
        "beside the output, when it exists)",
    )  # fmt: skip
    group.add_argument("--no-themes", action="store_true", help="do not read a themes file")


def _themes_option(args: argparse.Namespace) -> str | bool:
    """The ``themes`` argument of export and report: a path, ``False`` (--no-themes) or ``True`` (default file)."""
    return str(args.themes) if args.themes else not args.no_themes


def _report_parser(sub: Any) -> None:
    rp = sub.add_parser(
        "report",
        help="write a self-contained HTML report of an output file",
        description="Write one static HTML file (no server, no network; opens from file:// and can be sent by "
        "e-mail): counts by kind, category, level, country, year, type and SDG; a filterable list of insights; "
        "each document with its evidence highlighted at its offsets; rejected insights with their reasons; "
        "with the output of insights themes, its themes (drilling down to members and their evidence) and "
        "champions, filterable by country, year and document type. "
        "Needs the 'report' extra (pip install 'grounded-insights[report]').",
    )
    rp.add_argument("output", metavar="OUT.jsonl", help="the output of insights extract (its ledger is read too)")
    rp.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="the documents (files, folders, globs); default: the paths recorded in OUT.documents.jsonl",
    )
    rp.add_argument("-o", "--html", metavar="REPORT.html", help="the report file (default: OUT.html beside OUT)")
    rp.add_argument(
        "--full-text", action="store_true", help="embed whole documents, not only the paragraphs around evidence"
    )
    rp.add_argument("--title", help="the report's title (default: the output file's name)")
    _review_options(rp)
    _themes_options(rp, "add the pages Themes and Champions")
    rp.set_defaults(func=cmd_report)


def _review_parser(sub: Any) -> None:
    rv = sub.add_parser(
        "review",
        help="review insights in a local web page: accept, reject or edit each one",
        description="Open a local review page (127.0.0.1) for an output: each insight beside its document with "
        "the evidence highlighted; accept (a), reject (r) or edit (e) it. Every decision is appended to "
        "OUT.decisions.jsonl at once; export, report and evaluate apply the decisions, and they are kept across "
        "re-runs (carried to the insight covering the same passage, or listed as stale). Needs the 'review' "
        "extra (pip install 'grounded-insights[review]').",
    )
    rv.add_argument("output", metavar="OUT.jsonl", help="the output of insights extract")
    rv.add_argument(
        "paths", nargs="*", metavar="PATH", help="the documents (default: the paths recorded in OUT.documents.jsonl)"
    )
    rv.add_argument(
        "--reviewer",
        metavar="NAME",
        help="your name (the page asks for it otherwise); with --status, --export-gold: only this reviewer's decisions",
    )
    rv.add_argument("--decisions", metavar="FILE", help="the decisions file (default: OUT.decisions.jsonl)")
    rv.add_argument("--host", default="127.0.0.1", help="a loopback address to listen on (default 127.0.0.1)")
    rv.add_argument("--port", type=int, default=8765, help="the port (default 8765; 0: any free one)")
    rv.add_argument("--open", action="store_true", help="open the page in the web browser")
    rv.add_argument(
        "--status",
        action="store_true",
        help="print progress, and the decisions carried to new insights or stale, then exit",
    )
    rv.add_argument(
        "--export-gold",
        metavar="DIR",
        help="write the fully reviewed documents as reference annotations (evals/ format) into DIR",
    )
    rv.add_argument(
        "--agreement", action="store_true", help="print Cohen's kappa between reviewers (accept/reject, and category)"
    )
    rv.add_argument(
        "--with",
        dest="with_decisions",
        action="append",
        metavar="FILE",
        help="with --agreement or --export-gold: also read this decisions file (e.g. a second reviewer's, made on "
        "a copy of the output); repeatable",
    )
    rv.set_defaults(func=cmd_review)


def _review_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raw", action="store_true", help="the model's output alone, without the review decisions")
    p.add_argument(
        "--decisions", metavar="FILE", help="review decisions to apply (default: OUT.decisions.jsonl beside OUT)"
    )


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every subcommand's parser below it."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found.extend(_parsers(sub))
    return found


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
