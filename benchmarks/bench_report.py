"""How big the HTML report of an archive-sized run is, how long it takes to build, and how fast it opens. Not
a test.

The whole archive has about 9,600 documents; a run over it about 30,000 insights. This replicates the
shared corpus to that size (copies get new ids: ``<id>~2``...), runs ``insights extract`` over it against
the loopback reference server (synthetic answers: one barrier and one enabler a document; one answer in
twenty has a hallucinated quote and no re-ask, so some insights are rejected), then adds champions and
failed experiments located at sentences of each document until the run holds ``--insights`` lines (the
reference server does not make those). Then it times ``insights report`` and opens the file in headless
Chromium (Debian's ``chromium`` and ``chromium-driver``, ``pip install selenium``): first paint,
DOMContentLoaded, load, the index decoded, and opening a document and filtering the list.

Usage (from the repository root)::

    python benchmarks/bench_report.py                          # 9,600 documents, 30,000 insights
    python benchmarks/bench_report.py --docs 2000 --insights 6000 --corpus PATH
    python benchmarks/bench_report.py --screenshot docs/report.png   # only the README's screenshot
    python benchmarks/bench_report.py --themes                 # also run insights themes, report with them

The figures depend on the machine; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as c

from insights.documents import Document, load_corpus
from insights.output import insight_records
from insights.schema import Champion, DocumentInsights, Evidence, FailedExperiment, Provenance
from insights.testing.server import FaultPlan, ReferenceServer

CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
SENTENCE = re.compile(r"[A-Z][^.!?\n#>\[\]<{}|*]{40,300}[.!?]")

TIMINGS = """
const nav = performance.getEntriesByType('navigation')[0];
const paint = Object.fromEntries(performance.getEntriesByType('paint').map(p => [p.name, p.startTime]));
const ready = performance.getEntriesByName('insights-index-ready')[0];
return {first_paint: paint['first-paint'], first_contentful_paint: paint['first-contentful-paint'],
        dom_content_loaded: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
        index_ready: ready ? ready.startTime : null,
        heap_mb: performance.memory ? performance.memory.usedJSHeapSize / 1e6 : null};
"""
# Navigate to a hash and call back with the milliseconds until the page has routed and painted there.
ROUTE = """
const [hash, done] = arguments;
const t0 = performance.now();
const check = () => document.body.dataset.route === hash
  ? requestAnimationFrame(() => done(performance.now() - t0)) : setTimeout(check, 5);
document.body.dataset.route = '-';
location.hash = hash;
check();
"""


def chromium(width: int = 1280, height: int = 900) -> Any:
    """Headless Chromium through Selenium and the system chromedriver (no driver download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    for flag in [*CHROMIUM_FLAGS, f"--window-size={width},{height}", f"--user-data-dir={tempfile.mkdtemp()}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)


# ------------------------------------------------------------------------------------------- the run
def make_run(corpus: Path, n_docs: int, n_insights: int, folder: Path) -> tuple[Path, Path, dict[str, Any]]:
    """Replicate ``corpus`` to ``n_docs`` documents, extract them against the reference server, top the
    output up to ``n_insights`` lines; return (OUT.jsonl, the documents' JSONL, facts)."""
    copies = c.distinct(load_corpus(corpus), n_docs)
    docs_path = folder / "archive"  # JSONL files of 1,000 documents (a file may not exceed 64 MB)
    docs_path.mkdir(exist_ok=True)
    for i in range(0, len(copies), 1000):
        c.write_jsonl(copies[i : i + 1000], docs_path / f"part-{i // 1000:02d}.jsonl")
    docs = load_corpus(docs_path)  # as the report will read them
    out = folder / "out.jsonl"
    plan = FaultPlan(rates={"hallucinate": 0.05}, seed=11)
    with ReferenceServer(c.ANNOTATIONS_DIR, plan=plan) as srv:
        args = ["extract", str(docs_path), "-o", str(out), "--no-cache", "--reasks", "0", "-q", "--concurrency", "8"]
        wall, _, proc = c.run_cli(args, srv.url)
    if proc.returncode != 0:
        raise SystemExit(f"extract failed ({proc.returncode}): {proc.stderr[-2000:]}")
    extracted = sum(1 for _ in out.open(encoding="utf-8"))
    added = top_up(out, docs, n_insights - extracted)
    facts = {"documents": len(docs), "extracted": extracted, "added": added, "extract_s": wall,
             "text_mb": sum(len(d.text.encode()) for d in docs) / 1e6}  # fmt: skip
    return out, docs_path, facts


def top_up(out: Path, docs: list[Document], wanted: int) -> int:
    """Append ``wanted`` champion and failed-experiment lines located at sentences of the documents."""
    rng = random.Random(5)
    sentences = {d.id: [(m.start(), m.end()) for m in SENTENCE.finditer(d.text)][2:] for d in docs}
    lines: list[dict[str, Any]] = []
    rounds = 0
    while len(lines) < wanted and rounds < 20:
        rounds += 1
        for doc in docs:
            if len(lines) >= wanted or not sentences[doc.id]:
                continue
            start, end = sentences[doc.id].pop(rng.randrange(len(sentences[doc.id])))
            ev = Evidence(quote=doc.text[start:end], start=start, end=end, match="exact", section=doc.section_at(start))
            stated = f"Synthetic {rounds}: " + doc.text[start:end][:80]
            insight: Champion | FailedExperiment = (
                Champion(statement=stated, name=f"Champion {rounds}", champion_type="person", evidence=[ev])
                if rng.random() < 0.5
                else FailedExperiment(statement=stated, name=f"Pilot {rounds}", what_was_tried="(synthetic)",
                                      why_it_failed="(synthetic)", evidence=[ev])
            )  # fmt: skip
            result = DocumentInsights(
                document_id=doc.id,
                champions=[insight] if isinstance(insight, Champion) else [],
                failed_experiments=[insight] if isinstance(insight, FailedExperiment) else [],
                provenance=Provenance(model="reference", prompt_version="synthetic"),
            )
            lines.extend(insight_records(doc, result))
    with out.open("a", encoding="utf-8") as fp:
        fp.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    return len(lines)


# ---------------------------------------------------------------------------------------- measuring
def parts_of(html: str) -> dict[str, int]:
    """Bytes of the packed index, of the packed texts and of everything else."""
    sizes = {}
    for name in ("insights-index", "insights-texts"):
        body = html.split(f'id="{name}">', 1)[1].split("</script>", 1)[0]
        sizes[name] = len(body.encode())
    sizes["the rest (overview, script, style)"] = len(html.encode()) - sum(sizes.values())
    return sizes


def open_in_browser(
    html_path: Path, rounds: int, out_lines: list[dict[str, Any]], routes: tuple[tuple[str, str], ...] = ()
) -> list[dict[str, Any]]:
    driver = chromium()
    results = []
    try:
        driver.set_script_timeout(120)
        url = html_path.resolve().as_uri()
        target = out_lines[len(out_lines) // 2]
        for _ in range(rounds):
            driver.get("about:blank")
            driver.get(url)
            deadline = time.time() + 120
            while driver.execute_script("return performance.getEntriesByName('insights-index-ready').length") == 0:
                if time.time() > deadline:
                    raise SystemExit("the index never decoded")
                time.sleep(0.05)
            timings = driver.execute_script(TIMINGS)
            timings["open_document_ms"] = driver.execute_async_script(ROUTE, f"#insight/{target['insight_id']}")
            timings["list_all_ms"] = driver.execute_async_script(ROUTE, "#insights")
            timings["filter_ms"] = driver.execute_async_script(ROUTE, "#insights?kind=barrier&q=the")
            for key, route in routes:  # the theme pages, when the report has them
                timings[key] = driver.execute_async_script(ROUTE, route)
            severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            if severe:
                raise SystemExit(f"console errors: {severe}")
            results.append(timings)
    finally:
        driver.quit()
    return results


def screenshot(dest: Path) -> None:
    """The README's picture: the seeds run (replayed), one document with an insight selected."""
    from insights import cli

    dest, here = dest.resolve(), os.getcwd()
    os.chdir(c.REPO_ROOT)  # so that the report shows the paths as "seeds/..."
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "seeds.jsonl"
        replay = "cassettes/seeds-replay.jsonl"
        assert cli.main(["extract", "seeds", "-o", str(out), "--replay", replay, "-q"]) == 0
        html = Path(tmp) / "report.html"
        assert cli.main(["report", str(out), "seeds", "-o", str(html), "--title", "Seed documents"]) == 0
        line = next(x for x in map(json.loads, out.open(encoding="utf-8")) if x["document_id"].startswith("004"))
        driver = chromium(1200, 900)
        try:
            driver.get(html.resolve().as_uri())
            driver.set_script_timeout(30)
            driver.execute_async_script(ROUTE, f"#insight/{line['insight_id']}")
            driver.execute_script("window.scrollTo(0, 0)")  # the document's title above its passages
            driver.save_screenshot(str(dest))
        finally:
            driver.quit()
            os.chdir(here)
    print(f"screenshot: {dest} ({dest.stat().st_size / 1e3:.0f} kB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="folder of documents (default: <repo root>/../shared/corpus)")
    parser.add_argument("--docs", type=int, default=9600, help="documents in the replicated run (default 9600)")
    parser.add_argument("--insights", type=int, default=30000, help="insight lines in the run (default 30000)")
    parser.add_argument("--rounds", type=int, default=3, help="times to open the report (default 3)")
    parser.add_argument("--full-text", action="store_true", help="also build and open a --full-text report")
    parser.add_argument("--keep", type=Path, help="keep the run and the reports in this folder")
    parser.add_argument(
        "--themes", choices=["auto", "wordllama", "tfidf"], nargs="?", const="auto",
        help="also run insights themes (--vectors, default auto) and build and open the report with its themes",
    )  # fmt: skip
    parser.add_argument("--screenshot", type=Path, help="only save the README's screenshot to this PNG")
    args = parser.parse_args(argv)
    if args.screenshot:
        screenshot(args.screenshot)
        return 0
    corpus = c.corpus_or_none(args.corpus)
    if corpus is None:
        print(c.corpus_missing_message(args.corpus))
        return 0

    c.print_header(f"HTML report of a {args.docs:,}-document run")
    folder = Path(tempfile.mkdtemp(prefix="bench-report-")) if args.keep is None else args.keep
    folder.mkdir(parents=True, exist_ok=True)
    try:
        out, docs_path, facts = make_run(corpus, args.docs, args.insights, folder)
        lines = [json.loads(x) for x in out.open(encoding="utf-8")]
        rejected = sum(len(json.loads(x)["rejected"]) for x in out.with_name("out.documents.jsonl").open())
        c.row("documents (clean text)", f"{facts['documents']:,} ({facts['text_mb']:.1f} MB)")
        c.row("insights", f"{len(lines):,} ({facts['extracted']:,} extracted, {facts['added']:,} added)")
        c.row("rejected insights", f"{rejected:,}")
        c.row("extract against the reference server", f"{facts['extract_s']:.1f} s")
        started = time.perf_counter()
        load_corpus(docs_path)
        c.row("loading the documents alone (part of each build)", f"{time.perf_counter() - started:.1f} s")
        modes = [("default (paragraphs around evidence)", ["--no-themes"], "report.html")] + (
            [("--full-text", ["--full-text", "--no-themes"], "report-full.html")] if args.full_text else []
        )
        routes: tuple[tuple[str, str], ...] = ()
        if args.themes:
            wall, _, proc = c.run_cli(["themes", str(out), "--vectors", args.themes], "http://127.0.0.1:9")
            if proc.returncode != 0:
                raise SystemExit(f"themes failed: {proc.stderr}")
            c.row("insights themes (whole process)", f"{wall:.1f} s: {proc.stderr.strip().splitlines()[0]}")
            themes = [json.loads(x) for x in out.with_name("out.themes.jsonl").open(encoding="utf-8")]
            country = max(themes[0]["countries"], key=lambda x: x["count"])["value"] if themes else ""
            biggest = max(themes, key=lambda t: t["n_members"])["theme_id"] if themes else ""
            routes = (("themes_ms", "#themes"), ("themes_filter_ms", "#themes?country=" + country),
                      ("theme_ms", "#theme/" + biggest), ("champions_ms", "#champions"))  # fmt: skip
            modes.append(("with themes (OUT.themes.jsonl)", [], "report-themes.html"))
        for label, extra, name in modes:
            html_path = folder / name
            wall, _, proc = c.run_cli(
                ["report", str(out), str(docs_path), "-o", str(html_path), *extra], "http://127.0.0.1:9"
            )
            if proc.returncode != 0:
                raise SystemExit(f"report failed: {proc.stderr}")
            html = html_path.read_text(encoding="utf-8")
            print()
            print(f"   -- {label}")
            c.row("build (insights report, whole process)", f"{wall:.1f} s")
            c.row("file size", f"{html_path.stat().st_size / 1e6:.1f} MB")
            for name, size in parts_of(html).items():
                c.row(f"  {name}", f"{size / 1e6:.2f} MB")
            timings = open_in_browser(html_path, args.rounds, lines, routes if not extra else ())
            for key in ("first_paint", "first_contentful_paint", "dom_content_loaded", "load", "index_ready",
                        "open_document_ms", "list_all_ms", "filter_ms", *(k for k, _ in routes)):  # fmt: skip
                values = [t[key] for t in timings if t.get(key) is not None]
                if values:
                    every = ", ".join(f"{v:.0f}" for v in values)
                    name = key.removesuffix("_ms").replace("_", " ")
                    c.row(f"{name} (ms, median of {len(values)})", f"{statistics.median(values):8.0f}   (all: {every})")
            heap = [t["heap_mb"] for t in timings if t.get("heap_mb")]
            if heap:
                c.row("JS heap after the list and one document", f"{max(heap):.0f} MB")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    c.print_footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
