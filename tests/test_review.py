"""``insights review`` (issue 13): the review app's guards, and a scripted review through the real server that
survives a cached re-run, a re-run with another model and a kill, and is applied by export, report,
evaluate and the gold export.

The run is made by ``insights extract`` against the loopback reference server (fixtures of
``test_faults.py``); "another model" is a second reference server whose answers for one document are
reworded or dropped, as another model's would be. The browser tests are in ``test_review_browser.py``.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import test_faults as faults
from conftest import ANNOTATIONS, REPO
from test_faults import run_cli

from insights import cli
from insights.decisions import decisions_path, read_decisions
from insights.errors import ConfigError
from insights.evaluate import load_annotations
from insights.gold import check_annotation, cohen_kappa
from insights.output import read_jsonl
from insights.review import ReviewServer, ReviewSession, create_app
from insights.testing.server import ReferenceServer

srv, cli_env, seed_dir = faults.srv, faults.cli_env, faults.seed_dir
DOC = "003_6107789977ede02a"  # 2 barriers, 5 enablers, 2 champions
TOKEN_RE = re.compile(r'<meta name="review-token" content="([^"]+)">')


@pytest.fixture
def run(srv: ReferenceServer, cli_env: Any, seed_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out.jsonl"
    assert run_cli(seed_dir, "-o", out) == 0
    return out


def doc_lines(out: Path, doc: str = DOC) -> list[dict[str, Any]]:
    return [x for x in read_jsonl(out) if x["document_id"] == doc]


def token_of(client: httpx.Client) -> str:
    found = TOKEN_RE.search(client.get("/").text)
    assert found is not None
    return found.group(1)


def post(client: httpx.Client, token: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return client.post("/api/decision", json=body, headers={"X-Review-Token": token, **headers})


# ------------------------------------------------------------------------------------------- the guards
def test_requests_from_another_origin_or_host_or_without_the_token_are_refused(run: Path) -> None:
    from starlette.testclient import TestClient

    line = doc_lines(run)[0]
    accept = {"insight_id": line["insight_id"], "decision": "accept", "reviewer": "ana"}
    with ReviewSession(run) as session:
        app = create_app(session, token="secret-token", hosts=["testserver"], reviewer="ana")
        with TestClient(app) as client:
            page = client.get("/")
            assert page.status_code == 200 and 'content="secret-token"' in page.text
            assert page.headers["x-frame-options"] == "DENY"
            assert "script-src 'self'" in page.headers["content-security-policy"]
            refused = [
                post(client, "secret-token", accept, Origin="http://evil.example"),  # the token leaked, even
                post(client, "secret-token", accept, Origin="http://testserver.evil.example"),
                post(client, "secret-token", accept, **{"Sec-Fetch-Site": "cross-site"}),
                post(client, "secret-token", accept, Host="rebound.example"),  # DNS rebinding
                post(client, "wrong", accept),
                client.post("/api/decision", json=accept),  # no token
                client.get("/api/state", headers={"Origin": "http://evil.example"}),
                client.get("/", headers={"Host": "rebound.example"}),
            ]
            assert [r.status_code for r in refused] == [403] * len(refused)
            assert refused[0].json() == {"error": "cross-origin request refused"}
            assert client.options("/api/decision", headers={"Origin": "http://evil.example"}).status_code >= 400
            assert not decisions_path(run).read_bytes()  # nothing was recorded
            ok = post(client, "secret-token", accept, Origin="http://testserver", **{"Sec-Fetch-Site": "same-origin"})
            assert ok.status_code == 200 and ok.json()["insight"]["r"]["decision"] == "accept"
            assert ok.json()["progress"]["reviewed"] == 1
    assert [(d.insight_id, d.reviewer) for d in read_decisions(decisions_path(run))] == [(line["insight_id"], "ana")]


def test_an_edit_through_the_app_is_validated_and_its_marks_follow_it(run: Path) -> None:
    from starlette.testclient import TestClient

    lines = doc_lines(run)
    line, other = lines[0], lines[4]
    with ReviewSession(run) as session:
        with TestClient(create_app(session, token="t", hosts=["testserver"])) as client:
            invented = {"insight_id": line["insight_id"], "decision": "edit", "reviewer": "ana",
                        "fields": {"quotes": ["The ministry abolished every innovation lab in 2020."]}}  # fmt: skip
            refused = post(client, "t", invented)
            assert refused.status_code == 422
            assert "may not invent evidence" in refused.json()["error"] and "abolished" in refused.json()["error"]
            bad = post(client, "t", {**invented, "fields": {"category": "weather"}})
            assert bad.status_code == 422 and "category" in bad.json()["error"]
            assert not decisions_path(run).read_bytes()
            quote = other["evidence"][0]["quote"]
            good = post(client, "t", {**invented, "fields": {"category": "other", "quotes": [quote]}})
            assert good.status_code == 200, good.text
            entry = good.json()["insight"]
            assert entry["f"]["category"] == "other" and entry["r"]["decision"] == "edit"
            assert [e[5] for e in entry["e"]] == [quote] and entry["model"]["category"] == line["category"]
            d = session.doc_of[session.position[line["insight_id"]]]
            payload = client.get(f"/api/doc/{d}?reviewer=ana").json()
            text = "".join(p[2] for p in payload["parts"])
            mine = [m for m in payload["marks"] if m[3] == session.position[line["insight_id"]]]
            start = other["evidence"][0]["start"]
            assert len(mine) == 1 and text[start : start + len(quote)] == quote
            assert client.get(f"/api/doc/{d}?reviewer=ben").json()["marks"] != payload["marks"]  # ben: no edit
    [d] = read_decisions(decisions_path(run))
    assert d.fields["category"] == "other" and d.fields["evidence"][0]["start"] == other["evidence"][0]["start"]


def test_the_server_listens_on_loopback_only_and_one_review_at_a_time(run: Path, capsys: Any) -> None:
    with pytest.raises(ConfigError, match="loopback only"):
        ReviewServer(ReviewSession(run), "0.0.0.0")
    with ReviewServer(ReviewSession(run)) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert cli.main(["review", str(run), "--port", "0"]) == cli.EXIT_USAGE
        assert "is being written by another run" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- a scripted review
def scripted_review(out: Path) -> dict[str, Any]:
    """Through the real server and its HTTP API: reject 3, edit 1, accept the rest of one document."""
    lines = doc_lines(out)
    barriers = [x for x in lines if x["kind"] == "barrier"]
    enablers = [x for x in lines if x["kind"] == "enabler"]
    champions = [x for x in lines if x["kind"] == "champion"]
    plan = {
        "rejected": [*barriers, champions[0]],
        "edited": enablers[0],
        "accepted": [*enablers[1:], champions[1]],
    }
    with ReviewServer(ReviewSession(out), reviewer="ana") as server, httpx.Client(base_url=server.url) as client:
        token = token_of(client)
        for x in plan["rejected"]:
            decision = {"insight_id": x["insight_id"], "decision": "reject", "reviewer": "ana"}
            assert post(client, token, decision).is_success
        edit = {"statement": "Public servants need new skills to innovate (edited).", "category": "skills_and_capacity"}
        r = post(client, token, {"insight_id": plan["edited"]["insight_id"], "decision": "edit", "reviewer": "ana",
                                 "fields": edit, "note": "sharper"})  # fmt: skip
        assert r.is_success, r.text
        for x in plan["accepted"]:
            decision = {"insight_id": x["insight_id"], "decision": "accept", "reviewer": "ana"}
            assert post(client, token, decision).is_success
        assert r.json()["progress"]["by_kind"]["enabler"] == [1, 25]
    return plan


def status(out: Path, capsys: Any) -> str:
    capsys.readouterr()
    assert cli.main(["review", str(out), "--status"]) == 0
    return str(capsys.readouterr().out)


def another_models_answers(plan: dict[str, Any]) -> dict[str, Any]:
    """The seeds' reference answers with one document answered otherwise: the edited enabler and one
    accepted enabler reworded (same passages), the first rejected barrier no longer found."""
    answers = copy.deepcopy(load_annotations(ANNOTATIONS))
    extraction = answers[DOC]
    renamed = {plan["edited"]["statement"], plan["accepted"][0]["statement"]}
    for item in extraction["enablers"]:
        if item["statement"] in renamed:
            item["statement"] = "Another model says: " + item["statement"]
    extraction["barriers"] = [b for b in extraction["barriers"] if b["statement"] != plan["rejected"][0]["statement"]]
    return answers


def test_a_scripted_review_survives_reruns_and_is_applied_everywhere(
    run: Path, seed_dir: Path, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = scripted_review(run)
    decisions = decisions_path(run)
    recorded = decisions.read_bytes()
    assert len(recorded.splitlines()) == 9

    # 1. A cached re-run (starting over, every answer from the cache) gives the same ids: all kept.
    assert run_cli(seed_dir, "-o", run, "--overwrite") == 0
    assert decisions.read_bytes() == recorded  # extract never touches the decisions file
    shown = status(run, capsys)
    assert "ana: reviewed 9 / 61 (barrier 2/28, enabler 5/25, champion 2/7, failed experiment 0/1)" in shown
    assert "5 accepted, 3 rejected, 1 edited; 0 carried, 0 stale" in shown
    assert "carried (0):" in shown and "stale (0):" in shown

    # 2. Export, report and evaluate apply the decisions; --raw shows the model alone.
    capsys.readouterr()
    assert cli.main(["export", str(run), "--to", "csv", str(tmp_path / "csv")]) == 0
    assert "3 insight(s) rejected in review and left out, 1 edited, 5 accepted" in capsys.readouterr().err
    with open(tmp_path / "csv" / "insights.csv", encoding="utf-8") as fp:
        rows = {r["insight_id"]: r for r in csv.DictReader(fp)}
    assert len(rows) == 61 - 3 and not {x["insight_id"] for x in plan["rejected"]} & set(rows)
    edited = rows[plan["edited"]["insight_id"]]
    assert (edited["statement"], edited["category"], edited["review"], edited["reviewer"]) == (
        "Public servants need new skills to innovate (edited).", "skills_and_capacity", "edit", "ana",
    )  # fmt: skip
    assert {rows[x["insight_id"]]["review"] for x in plan["accepted"]} == {"accept"}
    assert cli.main(["export", str(run), "--to", "csv", str(tmp_path / "raw"), "--raw"]) == 0
    with open(tmp_path / "raw" / "insights.csv", encoding="utf-8") as fp:
        assert len(list(csv.DictReader(fp))) == 61
    assert cli.main(["report", str(run), "-o", str(tmp_path / "report.html")]) == 0
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Insights rejected in review (3) are not in this report" in html and "(58)" in html

    # 3. The gold export passes the annotation checks and scores the reviewed run 1.0.
    gold = tmp_path / "gold"
    assert cli.main(["review", str(run), "--export-gold", str(gold)]) == 0
    assert sorted(p.name for p in gold.iterdir()) == [f"{DOC}.json"]
    data = json.loads((gold / f"{DOC}.json").read_text(encoding="utf-8"))
    document = ReviewSession(run).docs[[d.id for d in ReviewSession(run).docs].index(DOC)].document
    assert document is not None and check_annotation(data, document) == []
    capsys.readouterr()

    def evaluated(*extra: str) -> tuple[dict[str, int], dict[str, float]]:
        assert cli.main(["evaluate", str(run), str(seed_dir), "--annotations", str(gold), "--json", *extra]) == 0
        result = json.loads(capsys.readouterr().out)
        metrics = {x: result["metrics"][f"all.{x}"]["value"] for x in ("precision", "recall", "f1")}
        return result["counts"]["all"], metrics

    counts, metrics = evaluated()
    assert (counts["predicted"], counts["reference"], counts["matched"]) == (6, 6, 6)
    assert metrics == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    counts, metrics = evaluated("--raw")
    assert (counts["predicted"], counts["reference"], counts["matched"]) == (9, 6, 6)
    assert round(metrics["precision"], 3) == 0.667 and metrics["recall"] == 1.0

    # 4. Another model, over the same output (--overwrite): decisions carried or stale, each listed.
    with ReferenceServer(another_models_answers(plan)) as other:
        monkeypatch.setenv("OPENAI_BASE_URL", other.url)
        assert run_cli(seed_dir, "-o", run, "--model", "another-model") == cli.EXIT_USAGE  # refused without
        assert run_cli(seed_dir, "-o", run, "--model", "another-model", "--overwrite") == 0
    assert decisions.read_bytes() == recorded
    new = {x["statement"]: x for x in doc_lines(run)}
    shown = status(run, capsys)
    edited_to = new["Another model says: " + plan["edited"]["statement"]]["insight_id"]
    accepted_to = new["Another model says: " + plan["accepted"][0]["statement"]]["insight_id"]
    assert "carried (2):" in shown and "stale (1):" in shown
    assert f"  {plan['accepted'][0]['insight_id']} -> {accepted_to}  accept by ana (enabler in {DOC})" in shown
    assert f"  {plan['edited']['insight_id']} -> {edited_to}  edit by ana (enabler in {DOC})" in shown
    assert (
        f"  {plan['rejected'][0]['insight_id']}  reject by ana (barrier in {DOC}): no barrier of document {DOC} "
        "covers its passage any more" in shown
    )
    assert "5 accepted, 2 rejected, 1 edited; 2 carried, 1 stale" in shown
    assert cli.main(["export", str(run), "--to", "csv", str(tmp_path / "csv2")]) == 0
    with open(tmp_path / "csv2" / "insights.csv", encoding="utf-8") as fp:
        rows = {r["insight_id"]: r for r in csv.DictReader(fp)}
    assert rows[edited_to]["statement"] == "Public servants need new skills to innovate (edited)."
    assert rows[edited_to]["model"] == "another-model" and rows[accepted_to]["review"] == "accept"
    assert not {x["insight_id"] for x in plan["rejected"][1:]} & set(rows)


# ----------------------------------------------------------------------------------------------- a kill
def review_process(out: Path) -> tuple[subprocess.Popen[str], str]:
    """``insights review`` in its own process; returns it and its URL (read from its first line)."""
    code = "import sys; from insights.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", code, "review", str(out), "--port", "0", "--reviewer", "ana"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert child.stdout is not None
    first = child.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:\d+/", first)
    if found is None:
        child.kill()
        _, err = child.communicate()
        raise AssertionError(f"insights review did not start: {first!r} {err}")
    return child, found.group(0)


def test_a_review_killed_with_sigkill_keeps_every_acknowledged_decision(run: Path, capsys: Any) -> None:
    lines = doc_lines(run)
    acknowledged: list[str] = []
    for batch in (lines[:4], lines[4:]):
        child, url = review_process(run)
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                token = token_of(client)
                for x in batch:
                    r = post(client, token, {"insight_id": x["insight_id"], "decision": "accept", "reviewer": "ana"})
                    assert r.status_code == 200, r.text
                    acknowledged.append(x["insight_id"])
        finally:
            os.kill(child.pid, signal.SIGKILL)  # no clean shutdown: the decisions must already be on disk
            child.communicate()
        assert [d.insight_id for d in read_decisions(decisions_path(run))] == acknowledged
    assert "ana: reviewed 9 / 61" in status(run, capsys)


def test_two_reviewers_agreement_and_decisions_read_from_another_output(
    run: Path, seed_dir: Path, tmp_path: Path, capsys: Any
) -> None:
    lines = doc_lines(run)
    graded = next(x for x in lines[1:] if x["kind"] == "enabler")
    bens = tmp_path / "ben.decisions.jsonl"  # each reviewer with a decisions file of their own
    with ReviewSession(run) as ana_session, ReviewSession(run, decisions=bens) as ben_session:
        for x in lines:
            ana_session.decide(x["insight_id"], "accept", "ana")
            ben_session.decide(x["insight_id"], "reject" if x is lines[0] else "accept", "ben")
        ben_session.decide(graded["insight_id"], "edit", "ben", fields={"category": "other"})
    capsys.readouterr()
    assert cli.main(["review", str(run), "--agreement"]) == 0
    assert capsys.readouterr().out.strip() == "agreement needs two reviewers who decided the same insights"
    assert cli.main(["review", str(run), "--agreement", "--with", str(bens)]) == 0
    kept = [x for x in lines[1:] if x["kind"] in ("barrier", "enabler")]
    ana = [x["category"] for x in kept]
    ben = ["other" if x is graded else x["category"] for x in kept]
    assert capsys.readouterr().out.strip() == (
        "ana / ben: accept-reject on 9 insights: agree 8, Cohen's kappa 0.000; "
        f"category on {len(kept)} kept barriers/enablers: agree {len(kept) - 1}, "
        f"Cohen's kappa {cohen_kappa(ana, ben):.3f}"
    )
    # A new output (-o elsewhere) reads the old decisions with --decisions: the same ids, so all placed.
    other = tmp_path / "other.jsonl"
    assert run_cli(seed_dir, "-o", other) == 0
    shown = status_of(["review", str(other), "--decisions", str(bens)], capsys)
    assert "ben: reviewed 9 / 61" in shown and "1 rejected, 1 edited" in shown and "stale (0):" in shown
    assert not decisions_path(other).exists()


def status_of(argv: list[str], capsys: Any) -> str:
    capsys.readouterr()
    assert cli.main([*argv, "--status"]) == 0
    return str(capsys.readouterr().out)
