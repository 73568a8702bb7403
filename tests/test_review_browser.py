"""The review page in a real browser: headless Chromium (Selenium) against a live ``insights review`` server.

Accept with the keyboard, reject with the button, edit through the form (fields and quotes, the new
passage highlighted), an invented quote refused with a message, the evidence highlighted by the code the
report uses (``static/highlight.js``), and a page from another origin that cannot record a decision.
Every assertion on a decision reads the decisions file itself. Needs Debian's ``chromium`` and
``chromium-driver`` and ``pip install selenium``; skipped otherwise (the fixture of
``test_report_browser.py``).
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import test_report_browser as report_browser
from conftest import CASSETTES, SEEDS

from insights import cli
from insights.decisions import decisions_path, read_decisions
from insights.documents import load_document
from insights.output import read_jsonl
from insights.review import ReviewServer, ReviewSession

pytestmark = pytest.mark.browser
driver = report_browser.driver  # one headless Chromium for the module (skips when it is missing)
DOC = "003_6107789977ede02a"


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("review-browser")
    shutil.copytree(SEEDS, folder / "docs")
    out = folder / "run.jsonl"
    replay = CASSETTES / "seeds-replay.jsonl"
    assert cli.main(["extract", str(folder / "docs"), "-o", str(out), "--replay", str(replay), "-q"]) == 0
    return SimpleNamespace(folder=folder, text=load_document(folder / "docs" / f"{DOC}.txt").text)


@pytest.fixture
def review(seeds_run: SimpleNamespace, tmp_path: Path) -> Iterator[SimpleNamespace]:
    """A fresh copy of the run under review, served on loopback (reviewer "ana")."""
    for name in ("run.jsonl", "run.documents.jsonl"):
        shutil.copy(seeds_run.folder / name, tmp_path / name)
    out = tmp_path / "run.jsonl"
    lines = [x for x in read_jsonl(out) if x["document_id"] == DOC]
    with ReviewServer(ReviewSession(out), reviewer="ana") as server:
        yield SimpleNamespace(server=server, out=out, lines=lines, text=seeds_run.text, decisions=decisions_path(out))


def wait_for(driver: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 30).until(condition)


def body(driver: Any, key: str) -> Any:
    return driver.execute_script("return document.body.dataset[arguments[0]]", key)


def open_insight(driver: Any, review: SimpleNamespace, insight_id: str) -> None:
    driver.get(f"{review.server.url}#one/{insight_id}")
    wait_for(driver, lambda d: body(d, "ready") == "1" and body(d, "route") == f"#one/{insight_id}")


def press(driver: Any, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()


def saved(driver: Any, n: int) -> None:
    wait_for(driver, lambda d: body(d, "decisions") == str(n))


SELECTED = """
const out = {};
for (const mark of document.querySelectorAll('#doc-text mark.selected')) {
  for (const key of mark.dataset.ev.split(' ')) {
    if (key.startsWith(arguments[0] + ':')) out[key] = (out[key] || '') + mark.textContent;
  }
}
return out;
"""


def test_the_insights_evidence_is_highlighted_at_its_passages(driver: Any, review: SimpleNamespace) -> None:
    for line in review.lines:
        open_insight(driver, review, line["insight_id"])
        shown = driver.execute_script(SELECTED, line["insight_id"])
        spans = enumerate(line["evidence"])
        expected = {f"{line['insight_id']}:{j}": review.text[e["start"] : e["end"]] for j, e in spans}
        assert shown == expected
        detail = driver.find_element("id", "insight-detail")
        assert detail.get_attribute("data-insight") == line["insight_id"]
        assert detail.get_attribute("data-status") == "todo"


def test_accept_and_move_with_the_keyboard(driver: Any, review: SimpleNamespace) -> None:
    from selenium.webdriver.support.ui import Select

    first, second = review.lines[0], review.lines[1]
    open_insight(driver, review, first["insight_id"])
    driver.get_log("browser")  # start with an empty console log
    press(driver, "a")
    saved(driver, 1)
    wait_for(driver, lambda d: body(d, "route") == f"#one/{second['insight_id']}")  # on to the next one
    [d] = read_decisions(review.decisions)
    assert (d.insight_id, d.decision, d.reviewer) == (first["insight_id"], "accept", "ana")
    progress = driver.find_element("id", "progress")
    assert (progress.get_attribute("data-reviewed"), progress.get_attribute("data-total")) == ("1", "61")
    Select(driver.find_element("name", "status")).select_by_value("")  # show reviewed ones too
    driver.execute_script("document.activeElement.blur()")
    press(driver, "k")
    wait_for(driver, lambda d: body(d, "route") == f"#one/{first['insight_id']}")
    assert driver.find_element("id", "status").text == "accepted"
    press(driver, "j")
    wait_for(driver, lambda d: body(d, "route") == f"#one/{second['insight_id']}")
    press(driver, "a")
    saved(driver, 2)
    assert [x.insight_id for x in read_decisions(review.decisions)] == [first["insight_id"], second["insight_id"]]
    assert [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")] == []


def test_reject_with_the_button(driver: Any, review: SimpleNamespace) -> None:
    from selenium.webdriver.support.ui import Select

    line = review.lines[2]
    open_insight(driver, review, line["insight_id"])
    driver.find_element("id", "reject").click()
    saved(driver, 1)
    [d] = read_decisions(review.decisions)
    assert (d.insight_id, d.decision, d.reviewer) == (line["insight_id"], "reject", "ana")
    assert driver.find_element("id", "progress").get_attribute("data-reviewed") == "1"
    driver.get(f"{review.server.url}#list")  # a reload: the decision comes back from the server
    wait_for(driver, lambda d: body(d, "ready") == "1")
    Select(driver.find_element("name", "status")).select_by_value("reject")
    wait_for(driver, lambda d: d.find_element("id", "count").text == "1")
    item = driver.find_element("css selector", "#insight-list li.item")
    assert (item.get_attribute("data-insight"), item.get_attribute("data-status")) == (line["insight_id"], "reject")


def fill(element: Any, text: str) -> None:
    element.clear()
    element.send_keys(text)


def test_edit_fields_and_quotes_through_the_form(driver: Any, review: SimpleNamespace) -> None:
    from selenium.webdriver.support.ui import Select

    line = next(x for x in review.lines if x["kind"] == "barrier")
    quote = next(x for x in review.lines if x["kind"] == "enabler")["evidence"][0]["quote"]
    open_insight(driver, review, line["insight_id"])
    press(driver, "e")
    form = driver.find_element("id", "edit-form")
    wait_for(driver, lambda d: form.is_displayed())
    Select(form.find_element("name", "category")).select_by_value("other")
    fill(form.find_element("name", "statement"), "Edited in the browser.")
    fill(form.find_element("name", "quotes"), quote)
    driver.find_element("id", "save-edit").click()
    saved(driver, 1)
    [d] = read_decisions(review.decisions)
    assert (d.decision, d.fields["category"], d.fields["statement"]) == ("edit", "other", "Edited in the browser.")
    [ev] = d.fields["evidence"]
    assert review.text[ev["start"] : ev["end"]] == quote
    assert driver.find_element("css selector", "#insight-detail .statement").text == "Edited in the browser."
    assert driver.find_element("id", "status").text == "edited"
    shown = driver.execute_script(SELECTED, line["insight_id"])
    assert shown == {f"{line['insight_id']}:0": quote}  # the new passage is highlighted, the old one not


def test_an_invented_quote_is_refused_with_a_message(driver: Any, review: SimpleNamespace) -> None:
    line = review.lines[0]
    open_insight(driver, review, line["insight_id"])
    driver.find_element("id", "edit").click()
    form = driver.find_element("id", "edit-form")
    wait_for(driver, lambda d: form.is_displayed())
    fill(form.find_element("name", "quotes"), "The minister personally banned every experiment in 2021.")
    driver.find_element("id", "save-edit").click()
    error = driver.find_element("id", "edit-error")
    wait_for(driver, lambda d: error.text)
    assert "may not invent evidence" in error.text and "banned every experiment" in error.text
    assert form.is_displayed() and not review.decisions.read_bytes()
    press(driver, "\ue00c")  # Escape closes the form
    wait_for(driver, lambda d: not form.is_displayed())
    assert driver.find_element("id", "status").text == "not reviewed"


class Attacker(BaseHTTPRequestHandler):
    """A page on another origin (another port of loopback) that tries to record a decision."""

    page = ""

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        data = self.page.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


ATTACK = """<!DOCTYPE html><title>attacker</title><script>
const target = %(url)s + "api/decision";
const body = JSON.stringify(%(body)s);
const results = [];
fetch(target, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body})
  .then(() => results.push("sent"), () => results.push("failed"))
  .then(() => fetch(target, {method: "POST", headers: {"Content-Type": "application/json",
                                                        "X-Review-Token": %(token)s}, body}))
  .then((r) => results.push("read " + r.status), () => results.push("blocked"))
  .then(() => { document.body.dataset.results = results.join(","); });
</script>"""


def test_a_page_from_another_origin_cannot_record_a_decision(driver: Any, review: SimpleNamespace) -> None:
    line = review.lines[0]
    token = review.server.token  # even a page that knew the session's token
    decision = {"insight_id": line["insight_id"], "decision": "reject", "reviewer": "mallory", "token": token}
    Attacker.page = ATTACK % {"url": json.dumps(review.server.url), "body": json.dumps(decision),
                              "token": json.dumps(token)}  # fmt: skip
    attacker = ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    thread = threading.Thread(target=attacker.serve_forever, daemon=True)
    thread.start()
    try:
        driver.get(f"http://127.0.0.1:{attacker.server_address[1]}/")
        wait_for(driver, lambda d: body(d, "results"))
        assert body(driver, "results") == "sent,blocked"  # the first reached the server; the browser stopped the second
    finally:
        attacker.shutdown()
        attacker.server_close()
        thread.join()
    assert review.server.app.state.refused["cross-origin request refused"] >= 1
    assert not review.decisions.read_bytes()
