"""The HTML report's renderer, without a browser: what it embeds, how it escapes, what its charts count.

The browser tests (``test_report_browser.py``) open the same fixture run in headless Chromium. The fixture
is the seeds run replayed from ``cassettes/seeds-replay.jsonl`` plus three hand-made documents written by
the library's own :class:`~insights.output.OutputWriter`: a tricky one (emoji before its spans,
overlapping spans, ``<`` in the text, HTML in a tag, in a statement and in a rejected draft), one edited
after the run and one deleted after the run.
"""

from __future__ import annotations

import base64
import gzip
import html as html_module
import json
import os
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import CASSETTES, SEEDS
from hypothesis import given, settings
from hypothesis import strategies as st

from insights import cli
from insights._optional import require
from insights.charts import NONE, make_chart
from insights.documents import Document, load_document
from insights.errors import ConfigError, OutputError
from insights.output import OutputWriter, read_jsonl
from insights.prompts import load_prompts
from insights.report import build_report, pack_index, render_report, shown_parts, write_report
from insights.schema import (
    KINDS,
    Barrier,
    Champion,
    DocumentInsights,
    Enabler,
    Evidence,
    FailedExperiment,
    Provenance,
    Rejected,
)

INJECTION = "</script><script>window.__pwned = 1</script>"
TRICKY = """# Tricky report document
[[country:<img src=x onerror="window.__pwned = 2">]]
[[year:2023]]
[[type:experiment]]
[[sdgs:5. Gender equality]]
[[sdgs:11. Sustainable cities and communities]]

## Emoji first 😀🚀

The lab 🎉 tried a rota of 🧪 night shifts, and a < b was the rule. The night rota failed because nobody owned it.

## Second part

Funding from the city council made the pilot possible. The council's innovation officer, Dr. Mai 👩‍🔬, \
pushed the pilot forward.
"""
PLAIN = """# A document edited after the run
[[country:Chile]]
[[year:2020]]
[[type:blog]]

The ministry had no budget line for experiments, so every pilot waited a year.
"""


def evidence(doc: Document, *quotes: str) -> list[Evidence]:
    out = []
    for quote in quotes:
        start = doc.text.index(quote)
        end = start + len(quote)
        out.append(Evidence(quote=quote, start=start, end=end, match="exact", section=doc.section_at(start)))
    return out


def tricky_result(doc: Document) -> DocumentInsights:
    rota = "The night rota failed because nobody owned it."
    return DocumentInsights(
        document_id=doc.id,
        barriers=[
            Barrier(statement=f"{INJECTION} Nobody owned the night rota.", evidence=evidence(doc, rota),
                    category="time_and_workload", level="organizational"),
            Barrier(statement="The officer had to push alone.", evidence=evidence(doc, "Dr. Mai 👩‍🔬, pushed the"),
                    category="leadership_and_sponsorship", level="individual"),
        ],
        enablers=[
            Enabler(statement="City funding made the pilot possible.",
                    evidence=evidence(doc, "Funding from the city council made the pilot possible."),
                    category="funding_and_resources", level="environmental"),
        ],
        champions=[
            Champion(statement="Dr. Mai pushed the pilot.", name="Dr. Mai <img src=x onerror=alert(3)>",
                     champion_type="person", affiliation="city council", sector="government",
                     contribution="Pushed the pilot forward.",
                     evidence=evidence(doc, "innovation officer, Dr. Mai 👩‍🔬, pushed the pilot forward.")),
        ],
        failed_experiments=[
            FailedExperiment(statement="The night-shift rota failed.", name="night rota",
                             what_was_tried="A rota of night shifts.", why_it_failed="Nobody owned it.",
                             evidence=evidence(doc, "tried a rota of 🧪 night shifts, and a < b", rota)),
        ],
        rejected=[
            Rejected(kind="barrier", draft={"statement": "<b>Invented</b> barrier", "quotes": ["not in the text"]},
                     reason="quote not found in the document: 'not in the text'"),
            Rejected(kind="champion", draft={"name": "Nobody", "quotes": ["a quote nowhere"]},
                     reason="quote not found in the document: 'a quote nowhere'"),
        ],
        provenance=run_provenance(),
    )  # fmt: skip


def run_provenance() -> Provenance:
    """The replayed run's model and prompt version: one output holds one model's results."""
    model = json.loads((CASSETTES / "RECORDED.json").read_text(encoding="utf-8"))["model"]
    return Provenance(model=model, prompt_version=load_prompts().version)


def plain_result(doc: Document) -> DocumentInsights:
    quote = "The ministry had no budget line for experiments"
    return DocumentInsights(
        document_id=doc.id,
        barriers=[
            Barrier(
                statement="No budget line for experiments.",
                evidence=evidence(doc, quote),
                category="funding_and_resources",
                level="organizational",
            )
        ],
        provenance=run_provenance(),
    )


def make_run(folder: Path) -> SimpleNamespace:
    """The fixture run in ``folder``: ``out`` (OUT.jsonl), ``docs`` (the folder of its documents),
    ``texts`` ({document id: text} of the documents as they were during the run). Like a user's run, it
    is made from inside ``folder``, so the ledger records paths relative to it (``docs/...``)."""
    docs = folder / "docs"
    docs.mkdir(parents=True)
    for seed in sorted(SEEDS.glob("*.txt")):
        (docs / seed.name).write_bytes(seed.read_bytes())
    (docs / "tricky.md").write_text(TRICKY, encoding="utf-8")
    (docs / "edited.md").write_text(PLAIN, encoding="utf-8")
    (docs / "deleted.md").write_text(PLAIN.replace("Chile", "Peru"), encoding="utf-8")
    texts = {d.id: d.text for d in (load_document(p) for p in sorted(docs.iterdir()))}
    replay = CASSETTES / "seeds-replay.jsonl"
    here = os.getcwd()
    os.chdir(folder)
    try:
        seeds = [f"docs/{p.name}" for p in sorted(SEEDS.glob("*.txt"))]
        assert cli.main(["extract", *seeds, "-o", "run.jsonl", "--replay", str(replay), "-q"]) == 0
        added = [(load_document(f"docs/{name}.md"), make) for name, make in
                 (("tricky", tricky_result), ("edited", plain_result), ("deleted", plain_result))]  # fmt: skip
        with OutputWriter(Path("run.jsonl")) as writer:
            prov = run_provenance()
            writer.resume([d for d, _ in added], prov.model, prov.prompt_version, overwrite=False)
            for doc, make in added:
                writer.write(doc, make(doc))
    finally:
        os.chdir(here)
    (docs / "edited.md").write_text(PLAIN.replace("no budget", "no real budget"), encoding="utf-8")
    (docs / "deleted.md").unlink()
    out = folder / "run.jsonl"
    return SimpleNamespace(out=out, docs=docs, texts=texts, lines=list(read_jsonl(out)))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    return make_run(tmp_path_factory.mktemp("report-run"))


def unpack(b64: str) -> Any:
    return json.loads(gzip.decompress(base64.b64decode(b64)))


class Elements(HTMLParser):
    """Every start tag of an HTML string, with its attributes, and the text of each script."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: dict[str, str] = {}
        self._script: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs).get("id") or "inline"
            self.scripts[self._script] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self.scripts[self._script] += data


# ---------------------------------------------------------------------------------------------- data
def test_every_line_and_document_of_the_run_is_in_the_index(run: SimpleNamespace) -> None:
    report = build_report(run.out, [run.docs])
    index_b64, texts = pack_index(report)
    index = unpack(index_b64)
    assert [i["id"] for i in index["insights"]] == [
        line["insight_id"] for d in sorted({x["document_id"] for x in run.lines}) for line in run.lines
        if line["document_id"] == d
    ]  # fmt: skip
    assert len(index["docs"]) == len(texts) == 8  # five seeds, tricky, edited, deleted
    status = {d["id"]: d["status"] for d in index["docs"]}
    assert status.pop("edited") == "changed" and status.pop("deleted") == "missing"
    assert set(status.values()) == {"ok"}
    for ins, line in zip(index["insights"], sorted(run.lines, key=lambda x: x["document_id"]), strict=True):
        assert ins["k"] == line["kind"] and ins["s"] == line["statement"]
        assert [e[:2] for e in ins["e"]] == [[e["start"], e["end"]] for e in line["evidence"]]
        assert [index["sections"][e[4]] for e in ins["e"]] == [e["section"] for e in line["evidence"]]
    tricky = next(d for d in index["docs"] if d["id"] == "tricky")
    assert tricky["country"] == '<img src=x onerror="window.__pwned = 2">' and tricky["year"] == 2023
    assert [r["reason"] for r in tricky["rejected"]] == [
        "quote not found in the document: 'not in the text'",
        "quote not found in the document: 'a quote nowhere'",
    ]
    assert tricky["rejected"][0]["label"] == "<b>Invented</b> barrier"


def test_quotes_are_kept_only_where_the_text_does_not_show_them(run: SimpleNamespace) -> None:
    report = build_report(run.out, [run.docs])
    index = unpack(pack_index(report)[0])
    for ins in index["insights"]:
        doc = index["docs"][ins["d"]]
        line = next(x for x in run.lines if x["insight_id"] == ins["id"])
        for e, source in zip(ins["e"], line["evidence"], strict=True):
            if doc["status"] == "ok" and run.texts[doc["id"]][e[0] : e[1]] == source["quote"]:
                assert e[5] is None
            else:
                assert e[5] == source["quote"]


def test_the_models_own_words_are_kept_when_they_differ_from_the_passage(run: SimpleNamespace, tmp_path: Path) -> None:
    lines = [dict(x) for x in run.lines if x["document_id"] == "tricky"]
    lines[0]["evidence"] = [dict(lines[0]["evidence"][0], model_quote="The night rota failed as nobody owned it")]
    lines[1]["evidence"] = [dict(e, model_quote=e["quote"]) for e in lines[1]["evidence"]]
    out = tmp_path / "run.jsonl"
    out.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    index = unpack(pack_index(build_report(out, [run.docs]))[0])
    assert index["insights"][0]["e"][0][6] == "The night rota failed as nobody owned it"
    assert [e[6] for e in index["insights"][1]["e"]] == [None] * len(lines[1]["evidence"])


def test_marks_index_utf16_units_so_emoji_before_a_span_do_not_shift_it(run: SimpleNamespace) -> None:
    report = build_report(run.out, [run.docs])
    index_b64, texts = pack_index(report)
    index = unpack(index_b64)
    d = next(i for i, doc in enumerate(index["docs"]) if doc["id"] == "tricky")
    payload = unpack(texts[d])
    text = run.texts["tricky"]
    assert any(ord(c) > 0xFFFF for c in text[: index["insights"][payload["marks"][0][3]]["e"][0][0]])
    assert len(payload["marks"]) == sum(len(index["insights"][i]["e"]) for i in range(len(index["insights"]))
                                        if index["insights"][i]["d"] == d)  # fmt: skip
    for part, u_start, u_end, i, j in payload["marks"]:
        start, end = index["insights"][i]["e"][j][:2]
        units = payload["parts"][part][2].encode("utf-16-le")
        assert units[2 * u_start : 2 * u_end].decode("utf-16-le") == text[start:end]
        assert payload["parts"][part][0] <= start and end <= payload["parts"][part][1]
    for start, end, shown in payload["parts"]:
        assert text[start:end] == shown


def test_shown_parts_are_the_paragraphs_with_evidence_and_the_heading_above() -> None:
    filler = "Nothing to see in this paragraph, which is long enough to be left out of the report. " * 2
    text = f"Title\n\n## Heading one\n\nalpha beta\n\n{filler}\n\n## Heading two\n\n{filler}\n\nzeta eta"
    beta, zeta = text.index("beta"), text.index("zeta")
    parts = shown_parts(text, [(beta, beta + 4), (zeta, zeta + 4)])
    assert [text[s:e] for s, e in parts] == ["## Heading one\n\nalpha beta", "## Heading two", "zeta eta"]
    near = text.index("Nothing")  # a span in the next paragraph: the two are joined, the gap is small
    assert [text[s:e] for s, e in shown_parts(text, [(beta, beta + 4), (near, near + 7)])] == [
        f"## Heading one\n\nalpha beta\n\n{filler}"
    ]
    assert shown_parts(text, [], full_text=True) == [(0, len(text))]


def test_a_long_paragraph_is_cut_to_the_sentences_around_the_span() -> None:
    sentences = [f"Sentence number {i} says a little more about the lab. " for i in range(60)]
    text = "## Heading\n\n" + "".join(sentences).strip()
    quote = "number 30 says a little"
    start = text.index(quote)
    (head, body) = shown_parts(text, [(start, start + len(quote))])
    assert text[head[0] : head[1]] == "## Heading"
    shown = text[body[0] : body[1]]
    assert quote in shown and len(shown) < 2 * 300 + len(quote)
    assert shown.lstrip().startswith("Sentence number") and shown.endswith("lab.")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(alphabet="ab. \n😀", min_size=0, max_size=900), min_size=1, max_size=8),
    st.lists(st.tuples(st.integers(0, 8000), st.integers(0, 400)), max_size=6),
)
def test_every_span_lies_inside_one_shown_part(paragraphs: list[str], raw_spans: list[tuple[int, int]]) -> None:
    text = "\n\n".join(p.strip("\n") or "x" for p in paragraphs)
    spans = [(min(s, len(text)), min(s + n, len(text))) for s, n in raw_spans]
    parts = shown_parts(text, spans)
    assert parts == sorted(parts) and all(a < b or a == b for a, b in parts)
    assert all(parts[i][1] < parts[i + 1][0] for i in range(len(parts) - 1))
    for start, end in spans:
        assert any(a <= start and end <= b for a, b in parts), (start, end, parts)


def test_full_text_embeds_whole_documents(run: SimpleNamespace) -> None:
    report = build_report(run.out, [run.docs], full_text=True)
    index_b64, texts = pack_index(report)
    index = unpack(index_b64)
    for doc, line in zip(index["docs"], texts, strict=True):
        if doc["status"] == "ok":
            assert unpack(line)["parts"] == [[0, len(run.texts[doc["id"]]), run.texts[doc["id"]]]]
        else:
            assert line == ""


def test_without_paths_the_ledger_paths_are_used(
    run: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert next(read_jsonl(run.out.with_name("run.documents.jsonl")))["path"].startswith("docs/")
    monkeypatch.chdir(tmp_path)  # the ledger's relative paths resolve from the output's folder
    report = build_report(run.out)
    assert Counter(d.status for d in report.documents) == {"ok": 6, "changed": 1, "missing": 1}
    assert [d.id for d in report.documents if d.status == "ok" and d.document is not None] == [
        d.id for d in report.documents if d.id not in ("edited", "deleted")
    ]


# ------------------------------------------------------------------------------------------- escaping
def test_html_from_the_run_or_the_documents_is_text(run: SimpleNamespace) -> None:
    html = render_report(build_report(run.out, [run.docs]))
    parsed = Elements(html)
    assert [a.get("id") for tag, a in parsed.tags if tag == "script"] == ["insights-index", "insights-texts", None]
    assert not [a for tag, a in parsed.tags if tag == "img" or any(k.startswith("on") for k in a)]
    assert "&lt;img src=x onerror=&#34;window.__pwned = 2&#34;&gt;" in html  # the country, in tables and filters
    for name, body in parsed.scripts.items():
        if name != "inline":
            assert re.fullmatch(r"[A-Za-z0-9+/=\n]*", body), name  # base64 lines only: nothing to break out of


def test_the_file_refers_to_nothing_outside_itself(run: SimpleNamespace) -> None:
    html = render_report(build_report(run.out, [run.docs]))
    for tag, attrs in Elements(html).tags:
        for key in ("src", "href", "action", "srcset"):
            value = attrs.get(key)
            assert value is None or value.startswith(("#", "data:")), (tag, key, value)
    assert "default-src 'none'" in html  # the page's policy forbids loading anything


def test_static_assets_cannot_close_their_element() -> None:
    from importlib import resources

    for name in ("report.css", "report.js"):
        text = resources.files("insights").joinpath("static", name).read_text(encoding="utf-8")
        assert not re.search(r"</(script|style)", text, re.IGNORECASE)
        assert "http://" not in text and "https://" not in text


# --------------------------------------------------------------------------------------------- charts
def chart_counts(html: str, chart: str) -> dict[str, dict[str, int]]:
    """{bar label: {kind: count}} as drawn in the SVG of one chart."""
    section = html.split(f'id="chart-{chart}"', 1)[1].split("</svg>", 1)[0]
    out: dict[str, dict[str, int]] = {}
    for bar in re.findall(r'<g class="bar"[^>]*data-label="([^"]*)"[^>]*>(.*?)</g>', section, re.S):
        out[html_module.unescape(bar[0])] = {
            k: int(n) for k, n in re.findall(r'data-kind="(\w+)" data-count="(\d+)"', bar[1])
        }
    return out


def test_charts_count_the_lines_of_the_run(run: SimpleNamespace) -> None:
    html = render_report(build_report(run.out, [run.docs]))
    lines = run.lines

    def expect(key: Any, kinds: tuple[str, ...] = ("barrier", "enabler", "champion", "failed_experiment")):
        c: dict[str, Counter[str]] = {}
        for line in lines:
            if line["kind"] in kinds:
                for value in key(line) or [NONE]:
                    c.setdefault(value, Counter())[line["kind"]] += 1
        return {k: dict(v) for k, v in c.items()}

    graded = ("barrier", "enabler")
    assert chart_counts(html, "kind") == expect(lambda x: [x["kind"]])
    assert chart_counts(html, "category") == expect(lambda x: [x["category"]], graded)
    assert chart_counts(html, "level") == expect(lambda x: [x["level"]], graded)
    assert chart_counts(html, "country") == expect(lambda x: [x["country"]] if x["country"] else [])
    assert chart_counts(html, "year") == expect(lambda x: [str(x["year"])] if x["year"] else [])
    assert chart_counts(html, "type") == expect(lambda x: [x["type"]] if x["type"] else [])
    assert chart_counts(html, "sdg") == expect(lambda x: x["metadata"].get("sdgs", []))
    assert chart_counts(html, "kind")["barrier"]["barrier"] == sum(x["kind"] == "barrier" for x in lines) > 0


def test_chart_rows_are_drawn_in_their_order() -> None:
    chart = make_chart("k", "K", "kind", [(k, [k]) for k in ("champion", "barrier", "barrier")], order=KINDS)
    assert [(b.label, b.y) for b in chart.bars] == [("barrier", 0), ("champion", 22)]
    years = make_chart("y", "Y", "year", [("barrier", [y]) for y in ("2021", "2019", "2020", "2021")], order="label")
    assert [(b.label, b.y, b.total) for b in years.bars] == [("2019", 0, 1), ("2020", 22, 1), ("2021", 44, 2)]


def test_a_chart_draws_the_largest_rows_and_tables_all_of_them() -> None:
    chart = make_chart("c", "C", "country", [("barrier", [f"country {i:02d}"]) for i in range(30) for _ in range(i)])
    assert len(chart.bars) == 29 and len(chart.drawn) == 20  # country 00 has no insight
    assert [b.total for b in chart.drawn] == list(range(29, 9, -1))
    assert chart.drawn[0].segments[0].width == pytest.approx(430)
    assert chart.drawn[0].href == "#insights?country=country+29"


# ------------------------------------------------------------------------------------------- command
def test_report_command_writes_one_file_and_says_what_it_holds(
    run: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "report.html"
    assert cli.main(["report", str(run.out), str(run.docs), "-o", str(dest)]) == 0
    err = capsys.readouterr().err
    assert "8 documents" in err and f"{len(run.lines)} insights" in err
    assert "1 document(s) not found and 1 changed" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temporary file left
    assert dest.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_report_command_writes_beside_the_output_by_default(run: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "copy.jsonl"
    for name in ("", ".documents"):
        (tmp_path / f"copy{name}.jsonl").write_bytes(run.out.with_name(f"run{name}.jsonl").read_bytes())
    assert cli.main(["report", str(out), str(run.docs)]) == 0
    assert (tmp_path / "copy.html").is_file()


def test_report_command_help_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["report", "--help"])
    assert done.value.code == 0 and "--full-text" in capsys.readouterr().out
    assert cli.main(["report", str(tmp_path / "none.jsonl")]) == cli.EXIT_USAGE
    assert "no such output file" in capsys.readouterr().err
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(OutputError):
        build_report(tmp_path / "empty.jsonl")


def test_require_names_the_extra_to_install() -> None:
    assert require("json", "report").dumps([]) == "[]"
    with pytest.raises(
        ConfigError,
        match=r"needs no_such_module_xyz, which is not installed: pip install 'grounded-insights\[report\]'",
    ):
        require("no_such_module_xyz", "report")


def test_the_report_is_reproducible(run: SimpleNamespace, tmp_path: Path) -> None:
    a = write_report(run.out, tmp_path / "a.html", [run.docs])
    b = write_report(run.out, tmp_path / "b.html", [run.docs])
    assert a.bytes == b.bytes and (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()
