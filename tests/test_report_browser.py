"""The HTML report in a real browser: headless Chromium driven by Selenium, the file opened from file://.

Asserts on the DOM: each evidence span's highlighted text equals ``Document.text[start:end]`` (the quote),
the filters show the count computed here in Python, an insight's link opens its document with the span
in view, rejected insights are listed with their reasons, text from the data stays text, and the page
logs no error and loads nothing.

Runs over the fixture run of ``test_report.py`` and, when ``../shared/corpus`` is present (or the
``SHARED_CORPUS`` environment variable names a folder), over a run of the reference server on it.
Needs Debian's ``chromium`` and ``chromium-driver`` and ``pip install selenium``; skipped otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
from conftest import SHARED_CORPUS
from test_report import INJECTION, make_run

import insights
from insights.charts import NONE
from insights.output import OutputWriter, read_jsonl
from insights.prompts import load_prompts
from insights.report import write_report
from insights.testing.server import FaultPlan, ReferenceServer

pytestmark = pytest.mark.browser
CORPUS = Path(os.environ.get("SHARED_CORPUS") or SHARED_CORPUS)
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,900",
]  # fmt: skip


def chromium_paths() -> tuple[str, str]:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("needs chromium and chromedriver (Debian: apt-get install -y chromium chromium-driver)")
    return browser, driver


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    browser, chromedriver = chromium_paths()
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="report-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()
        shutil.rmtree(profile, ignore_errors=True)


def corpus_run(folder: Path) -> SimpleNamespace:
    """The reference server's run over the shared corpus (synthetic answers for unannotated documents);
    one answer in ten has a hallucinated quote and no re-ask, so some insights are rejected."""
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not present ({CORPUS})")
    docs = insights.load_corpus(CORPUS)
    out = folder / "corpus.jsonl"
    with ReferenceServer(plan=FaultPlan(rates={"hallucinate": 0.1}, seed=7)) as srv:
        settings = insights.resolve_settings(
            env={}, base_url=srv.url, api_key="test-not-a-key", no_cache=True, reasks=0
        )
        with insights.ModelClient(settings) as client, OutputWriter(out) as writer:
            writer.resume(docs, settings.model, load_prompts().version, overwrite=True)
            for outcome in insights.extract_many(docs, concurrency=8, client=client):
                assert outcome.result is not None, outcome.error
                writer.write(outcome.document, outcome.result)
    return SimpleNamespace(out=out, docs=CORPUS, texts={d.id: d.text for d in docs}, lines=list(read_jsonl(out)))


@pytest.fixture(scope="module", params=["fixture", "corpus"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp(f"browser-{request.param}")
    made = make_run(folder) if request.param == "fixture" else corpus_run(folder)
    made.name = request.param
    made.html = folder / "report.html"
    write_report(made.out, made.html, [made.docs])
    made.url = made.html.resolve().as_uri()
    return made


def visit(driver: Any, run: SimpleNamespace, fragment: str) -> None:
    """Open the report at ``#fragment`` and wait until the page has routed there."""
    from selenium.webdriver.support.ui import WebDriverWait

    if driver.current_url.split("#")[0] == run.url:
        driver.execute_script(
            "if (location.hash !== '#' + arguments[0]) {"
            " document.body.dataset.route = '-'; location.hash = arguments[0]; }",
            fragment,
        )
    else:
        driver.get(f"{run.url}#{fragment}")
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.body.dataset.route") == f"#{fragment}")


def wait_for(driver: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 30).until(condition)


def sample_documents(run: SimpleNamespace, n: int = 12) -> list[str]:
    """Documents with insights: every one of the fixture, an even sample of the corpus."""
    ids = sorted({line["document_id"] for line in run.lines if line["document_id"] in run.texts})
    ids = [i for i in ids if i not in ("edited", "deleted")]
    step = max(1, len(ids) // n)
    return ids[::step]


HIGHLIGHTS = """
const out = {};
for (const mark of document.querySelectorAll('#doc-text mark')) {
  for (const key of mark.dataset.ev.split(' ')) out[key] = (out[key] || '') + mark.textContent;
}
return out;
"""


def test_every_highlighted_span_is_its_passage(driver: Any, run: SimpleNamespace) -> None:
    checked = 0
    for doc_id in sample_documents(run):
        visit(driver, run, "doc/" + quote(doc_id, safe=""))
        shown = driver.execute_script(HIGHLIGHTS)
        text = run.texts[doc_id]
        expected = {
            f"{line['insight_id']}:{j}": text[e["start"] : e["end"]]
            for line in run.lines if line["document_id"] == doc_id for j, e in enumerate(line["evidence"])
        }  # fmt: skip
        assert shown == expected, doc_id
        for line in run.lines:
            if line["document_id"] == doc_id:
                for e in line["evidence"]:
                    assert e["match"] != "exact" or text[e["start"] : e["end"]] == e["quote"]
        checked += len(expected)
    assert checked >= 10


def test_overlapping_spans_after_emoji_are_all_highlighted(driver: Any, run: SimpleNamespace) -> None:
    if run.name != "fixture":
        pytest.skip("the tricky document is in the fixture run")
    visit(driver, run, "doc/tricky")
    shown = driver.execute_script(HIGHLIGHTS)
    assert "tried a rota of 🧪 night shifts, and a < b" in shown.values()
    assert "Dr. Mai 👩‍🔬, pushed the" in shown.values()
    overlaps = driver.execute_script("return document.querySelectorAll('#doc-text mark.overlap').length")
    assert overlaps >= 2  # the rota sentence (two insights) and "Dr. Mai ..." (inside the champion's passage)


def expected_count(run: SimpleNamespace, **f: str) -> int:
    """The number of insights the list should show for filters ``f`` (the report's rules, in Python)."""
    words = f.pop("q", "").lower().split()
    n = 0
    identity = {"document_id", "insight_id", "kind", "statement", "evidence", "title", "type", "year", "country",
                "metadata", "content_hash", "model", "prompt_version", "category", "level", "source"}  # fmt: skip
    for line in run.lines:
        values = {
            "kind": line["kind"], "category": line.get("category"), "level": line.get("level"),
            "country": line["country"] or NONE, "year": str(line["year"]) if line["year"] is not None else NONE,
            "type": line["type"] or NONE,
        }  # fmt: skip
        if any(values[k] != v for k, v in f.items()):
            continue
        fields = [v for k, v in line.items() if k not in identity]
        hay = "\n".join([line["statement"], line.get("category", ""), *map(str, fields), line["title"]]).lower()
        n += all(w in hay for w in words)
    return n


def count_shown(driver: Any) -> int:
    return int(driver.find_element("id", "count").text)


def test_filters_change_the_visible_count(driver: Any, run: SimpleNamespace) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    visit(driver, run, "insights")
    total = len(run.lines)
    assert count_shown(driver) == total
    assert len(driver.find_elements(By.CSS_SELECTOR, "#insight-list li.item")) == min(total, 50)

    biggest_type = max({line["type"] for line in run.lines}, key=lambda t: sum(x["type"] == t for x in run.lines))
    steps: list[tuple[str, str]] = [("kind", "barrier"), ("type", biggest_type or NONE)]
    applied: dict[str, str] = {}
    for name, value in steps:
        Select(driver.find_element(By.NAME, name)).select_by_value(value)
        applied[name] = value
        want = expected_count(run, **applied)
        wait_for(driver, lambda d, want=want: count_shown(d) == want)
        assert 0 < want < total
        assert len(driver.find_elements(By.CSS_SELECTOR, "#insight-list li.item")) == min(want, 50)

    word = "the"  # common enough to match, not everything
    box = driver.find_element(By.NAME, "q")
    box.send_keys(word)
    want = expected_count(run, q=word, **applied)
    wait_for(driver, lambda d: count_shown(d) == want)
    assert want <= expected_count(run, **applied)
    box.send_keys(" zzzqqq-no-such-word")
    wait_for(driver, lambda d: count_shown(d) == 0)

    driver.find_element(By.CSS_SELECTOR, "#filters button[type=reset]").click()
    wait_for(driver, lambda d: count_shown(d) == total)

    country = next(line["country"] for line in run.lines if line["country"])
    visit(driver, run, "insights?country=" + quote(country, safe=""))  # a chart's link
    assert count_shown(driver) == expected_count(run, country=country)
    assert Select(driver.find_element(By.NAME, "country")).first_selected_option.get_attribute("value") == country


def test_an_insight_link_opens_its_document_with_the_span_in_view(driver: Any, run: SimpleNamespace) -> None:
    from selenium.webdriver.common.by import By

    line = max((x for x in run.lines if x["document_id"] in run.texts and x["document_id"] != "edited"),
               key=lambda x: x["evidence"][0]["start"])  # the deepest span: the page must scroll to it  # fmt: skip
    visit(driver, run, f"insights?kind={line['kind']}&q=" + quote(line["title"], safe=""))
    link = driver.find_element(By.CSS_SELECTOR, f'#insight-list li[data-insight="{line["insight_id"]}"] a.statement')
    link.click()
    route = f"#insight/{line['insight_id']}"
    wait_for(driver, lambda d: d.execute_script("return document.body.dataset.route") == route)
    assert driver.find_element(By.ID, "doc-title").get_attribute("data-doc") == line["document_id"]
    assert driver.find_element(By.ID, "insight-detail").get_attribute("data-insight") == line["insight_id"]
    in_view = driver.execute_script(
        """const m = document.querySelector('#doc-text mark.selected'); if (!m) return null;
           const r = m.getBoundingClientRect(); return r.bottom > 0 && r.top < window.innerHeight;"""
    )
    assert in_view is True
    selected = driver.execute_script(
        "return [...document.querySelectorAll('#doc-text mark.selected')].map(m => m.textContent).join('')"
    )
    text = run.texts[line["document_id"]]
    assert all(text[e["start"] : e["end"]] in selected for e in line["evidence"])


def test_rejected_insights_are_listed_with_their_reasons(driver: Any, run: SimpleNamespace) -> None:
    from selenium.webdriver.common.by import By

    ledger = list(read_jsonl(run.out.with_name(run.out.name.replace(".jsonl", ".documents.jsonl"))))
    rejected = {x["document_id"]: x["rejected"] for x in ledger if x["rejected"]}
    visit(driver, run, "rejected")
    assert int(driver.find_element(By.ID, "rejected-count").text) == sum(map(len, rejected.values()))
    sections = driver.find_elements(By.CSS_SELECTOR, "#rejected-list section.rejected-doc")
    assert {s.get_attribute("data-doc") for s in sections} == set(sorted(rejected)[:50])
    for doc_id, items in list(rejected.items())[:3]:
        visit(driver, run, "doc/" + quote(doc_id, safe=""))
        reasons = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#doc-panel .rejected-list .reason")]
        assert reasons == [f"reason: {r['reason']}" for r in items]
    assert "tricky" in rejected if run.name == "fixture" else len(rejected) > 5


def test_text_from_the_data_is_never_markup(driver: Any, run: SimpleNamespace) -> None:
    from selenium.webdriver.common.by import By

    if run.name != "fixture":
        pytest.skip("the injection is in the fixture run")
    barrier = next(x for x in run.lines if x["document_id"] == "tricky" and x["statement"].startswith(INJECTION))
    visit(driver, run, f"insight/{barrier['insight_id']}")
    assert driver.find_element(By.CSS_SELECTOR, "#insight-detail .statement").text == barrier["statement"]
    assert '<img src=x onerror="window.__pwned = 2">' in driver.find_element(By.ID, "doc-head").text
    assert "<b>Invented</b> barrier" in driver.find_element(By.ID, "doc-panel").text  # a rejected draft
    champion = next(x for x in run.lines if x["document_id"] == "tricky" and x["kind"] == "champion")
    visit(driver, run, f"insight/{champion['insight_id']}")
    assert "Dr. Mai <img src=x onerror=alert(3)>" in driver.find_element(By.ID, "insight-detail").text
    visit(driver, run, "insights?q=" + quote("nobody owned", safe=""))
    assert barrier["statement"] in driver.find_element(By.ID, "insight-list").text
    assert driver.execute_script("return window.__pwned === undefined && document.querySelectorAll('img').length === 0")
    assert len(driver.find_elements(By.TAG_NAME, "script")) == 3


def test_changed_and_missing_documents_show_their_quotes_without_highlights(driver: Any, run: SimpleNamespace) -> None:
    from selenium.webdriver.common.by import By

    if run.name != "fixture":
        pytest.skip("the changed and missing documents are in the fixture run")
    for doc_id, why in (("edited", "changed after the run"), ("deleted", "text was not found")):
        line = next(x for x in run.lines if x["document_id"] == doc_id)
        visit(driver, run, f"insight/{line['insight_id']}")
        assert why in driver.find_element(By.ID, "doc-text").text
        assert not driver.find_elements(By.CSS_SELECTOR, "#doc-text mark")
        assert line["evidence"][0]["quote"] in driver.find_element(By.ID, "doc-panel").text


def test_no_console_error_no_request_and_no_stray_value(driver: Any, run: SimpleNamespace) -> None:
    line = run.lines[-1]
    for fragment in (
        "overview",
        "insights?kind=enabler",
        "rejected",
        "insights?page=2",
        f"insight/{line['insight_id']}",
    ):
        visit(driver, run, fragment)
        if run.name == "fixture":  # a value the script failed to fill in would show as one of these
            assert not re.search(
                r"\b(null|undefined|NaN|\[object Object\])", driver.find_element("tag name", "main").text
            )
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    urls = driver.execute_script(
        "return [...document.querySelectorAll('[src], [href]')]"
        ".map(e => e.getAttribute('src') ?? e.getAttribute('href'))"
    )
    assert [u for u in urls if not u.startswith(("#", "data:"))] == []


# ------------------------------------------------------------------------------ themes and champions
@pytest.fixture(scope="module")
def themed(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The annotated run of test_report_themes.py with its themes file, reported."""
    from test_report_themes import make_themes_run

    folder = tmp_path_factory.mktemp("browser-themes")
    made = make_themes_run(folder)
    made.html = folder / "report.html"
    write_report(made.out, made.html, made.paths)  # OUT.themes.jsonl beside the output is read by default
    made.url = made.html.resolve().as_uri()
    made.by_id = {line["insight_id"]: line for line in made.lines}
    return made


def doc_value(line: dict[str, Any], key: str) -> str:
    """A member's value for the country, year or type filter (the report's rule)."""
    value = line[key]
    return NONE if value in (None, "") else str(value)


def shown_items(driver: Any, selector: str, key: str) -> dict[str, dict[str, int]]:
    """The listed items' data-* counts, by their data-KEY id."""
    return driver.execute_script(
        "const key = arguments[1];"
        "const counts = (li) => Object.entries(li.dataset).filter(([k]) => k !== key).map(([k, v]) => [k, +v]);"
        "return Object.fromEntries([...document.querySelectorAll(arguments[0])]"
        "  .map(li => [li.dataset[key], Object.fromEntries(counts(li))]));",
        selector,
        key,
    )


def test_the_themes_page_lists_every_theme_and_filters_by_country(driver: Any, themed: SimpleNamespace) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    visit(driver, themed, "themes")
    total = len(themed.themes)
    assert int(driver.find_element(By.ID, "theme-count").text) == total > 2
    shown = shown_items(driver, "#theme-list li.theme", "theme")
    assert len(shown) == min(total, 50)
    for t in themed.themes:
        if t.theme_id in shown:
            assert shown[t.theme_id] == {"members": t.n_members, "documents": t.n_documents, "countries": t.n_countries}

    having = Counter(v for t in themed.themes for v in {doc_value(themed.by_id[i], "country") for i in t.insight_ids})
    country = max((c for c, n in having.items() if 1 < n < total), key=lambda c: (having[c], c))
    want = {}
    for t in themed.themes:
        members = [themed.by_id[i] for i in t.insight_ids if doc_value(themed.by_id[i], "country") == country]
        if members:
            want[t.theme_id] = {"members": len(members), "documents": len({m["document_id"] for m in members}),
                                "countries": 1}  # fmt: skip
    Select(driver.find_element(By.CSS_SELECTOR, "#theme-filters select[name=country]")).select_by_value(country)
    wait_for(driver, lambda d: d.find_element(By.ID, "theme-count").text == str(len(want)))
    assert driver.execute_script("return document.body.dataset.route") == "#themes?country=" + quote(country)
    assert shown_items(driver, "#theme-list li.theme", "theme") == want
    assert 0 < len(want) < total

    Select(driver.find_element(By.CSS_SELECTOR, "#theme-filters select[name=kind]")).select_by_value("enabler")
    enablers = {t.theme_id for t in themed.themes if t.kind == "enabler"} & set(want)
    wait_for(driver, lambda d: d.find_element(By.ID, "theme-count").text == str(len(enablers)))
    assert set(shown_items(driver, "#theme-list li.theme", "theme")) == enablers
    driver.find_element(By.CSS_SELECTOR, "#theme-filters button[type=reset]").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "theme-count").text == str(total))


MARKED = """
const out = {};
for (const mark of document.querySelectorAll('#doc-text mark')) {
  for (const key of mark.dataset.ev.split(' ')) {
    if (key.startsWith(arguments[0] + ':')) out[key] = (out[key] || '') + mark.textContent;
  }
}
return [out, [...document.querySelectorAll('#doc-text mark.selected')].map(m => m.textContent).join('')];
"""


def test_a_theme_member_opens_its_document_with_the_span_highlighted(driver: Any, themed: SimpleNamespace) -> None:
    from selenium.webdriver.common.by import By

    theme = max(themed.themes, key=lambda t: (t.n_members, t.theme_id))
    visit(driver, themed, "theme/" + theme.theme_id)
    assert driver.find_element(By.ID, "theme-title").get_attribute("data-theme") == theme.theme_id
    assert int(driver.find_element(By.ID, "member-count").text) == theme.n_members
    items = driver.find_elements(By.CSS_SELECTOR, "#member-list li.member")
    reps = [r.insight_id for r in theme.representatives]
    order = reps + [i for i in theme.insight_ids if i not in reps]
    assert [li.get_attribute("data-insight") for li in items] == order
    for li in items:  # each member's first passage, as located in its document
        line = themed.by_id[li.get_attribute("data-insight")]
        first = line["evidence"][0]
        shown = li.find_element(By.CSS_SELECTOR, "blockquote.quote").get_attribute("textContent")
        assert shown == themed.texts[line["document_id"]][first["start"] : first["end"]] == first["quote"]

    member = themed.by_id[order[-1]]
    items[-1].find_element(By.CSS_SELECTOR, "a.statement").click()
    route = f"#insight/{member['insight_id']}"
    wait_for(driver, lambda d: d.execute_script("return document.body.dataset.route") == route)
    assert driver.find_element(By.ID, "doc-title").get_attribute("data-doc") == member["document_id"]
    marked, selected = driver.execute_script(MARKED, member["insight_id"])
    text = themed.texts[member["document_id"]]
    assert marked == {f"{member['insight_id']}:{j}": e["quote"] for j, e in enumerate(member["evidence"])}
    assert all(text[e["start"] : e["end"]] == e["quote"] and e["quote"] in selected for e in member["evidence"])


def test_a_filtered_theme_shows_its_matching_members(driver: Any, themed: SimpleNamespace) -> None:
    from selenium.webdriver.common.by import By

    theme = next(t for t in themed.themes if t.n_countries > 1)
    country = theme.countries[-1].value
    visit(driver, themed, f"theme/{theme.theme_id}?country=" + quote(country))
    members = [i for i in theme.insight_ids if themed.by_id[i]["country"] == country]
    assert int(driver.find_element(By.ID, "member-count").text) == len(members) < theme.n_members
    shown = [li.get_attribute("data-insight") for li in driver.find_elements(By.CSS_SELECTOR, "#member-list li")]
    assert sorted(shown) == sorted(members)
    driver.find_element(By.LINK_TEXT, "Show all members").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "member-count").text == str(theme.n_members))


def test_the_champions_page_lists_every_entity_and_filters_by_country(driver: Any, themed: SimpleNamespace) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    visit(driver, themed, "champions")
    total = len(themed.entities)
    assert int(driver.find_element(By.ID, "champion-count").text) == total
    shown = shown_items(driver, "#champion-list li.champion", "entity")
    assert len(shown) == min(total, 50)
    for e in themed.entities:
        if e.entity_id in shown:
            assert shown[e.entity_id] == {"mentions": e.n_mentions, "documents": e.n_documents}
    merged = next(e for e in themed.entities if len(e.aliases) > 1)
    item = driver.find_element(By.CSS_SELECTOR, f'#champion-list li[data-entity="{merged.entity_id}"]')
    assert all(a.alias in item.find_element(By.CSS_SELECTOR, ".aliases").text for a in merged.aliases)
    assert merged.merges[0].reason in item.find_element(By.CSS_SELECTOR, ".merges").text
    links = item.find_elements(By.CSS_SELECTOR, "details li a")
    assert sorted(a.get_attribute("href").split("#insight/")[1] for a in links) == merged.insight_ids

    country = merged.countries[0].value
    want = sum(any(themed.by_id[i]["country"] == country for i in e.insight_ids) for e in themed.entities)
    Select(driver.find_element(By.CSS_SELECTOR, "#champion-filters select[name=country]")).select_by_value(country)
    wait_for(driver, lambda d: d.find_element(By.ID, "champion-count").text == str(want))
    assert 0 < want < total


def test_theme_pages_log_no_error_load_nothing_and_show_no_stray_value(driver: Any, themed: SimpleNamespace) -> None:
    driver.get("about:blank")
    driver.get_log("browser")  # drop what earlier pages logged
    theme = themed.themes[0]
    for fragment in ("themes", "themes?year=2023&page=1", f"theme/{theme.theme_id}", "theme/thm_nothing",
                     "champions", "champions?type=blog"):  # fmt: skip
        visit(driver, themed, fragment)
        assert not re.search(r"\b(null|undefined|NaN|\[object Object\])", driver.find_element("tag name", "main").text)
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
