"""Review decisions as data (issue 13): the file, carry-over and stale decisions, applying them, edits that
may not invent evidence, gold annotations and Cohen's kappa.

The run is the seeds replayed from ``cassettes/seeds-replay.jsonl`` (61 insights in 5 documents); the
"re-runs" are that run's lines changed the way another answer or an edited document changes them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import CASSETTES, REPO, SEEDS

from insights import cli
from insights.decisions import (
    Decision,
    DecisionLog,
    EditError,
    apply_decisions,
    cover,
    decisions_path,
    make_decision,
    read_decisions,
    resolve,
    validate_edit,
)
from insights.documents import load_document
from insights.errors import OutputError
from insights.evaluate import load_annotations, score
from insights.export import build_tables
from insights.gold import agreement, check_annotation, cohen_kappa, export_gold
from insights.ids import insight_id
from insights.output import read_jsonl
from insights.report import build_report, pack_index

DOC = "003_6107789977ede02a"  # 9 insights: 2 barriers, 5 enablers, 2 champions


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("decisions")
    docs = folder / "docs"
    shutil.copytree(SEEDS, docs)
    out = folder / "run.jsonl"
    replay = CASSETTES / "seeds-replay.jsonl"
    assert cli.main(["extract", str(docs), "-o", str(out), "--replay", str(replay), "-q"]) == 0
    lines = list(read_jsonl(out))
    documents = {p.stem: load_document(p) for p in docs.iterdir()}
    return SimpleNamespace(folder=folder, docs=docs, out=out, lines=lines, documents=documents)


@pytest.fixture
def run(seeds_run: SimpleNamespace, tmp_path: Path) -> SimpleNamespace:
    """A fresh copy of the run's output (the documents are shared) for tests that write decisions."""
    out = tmp_path / "run.jsonl"
    for name in ("run.jsonl", "run.documents.jsonl"):
        shutil.copy(seeds_run.folder / name, tmp_path / name)
    return SimpleNamespace(**{**seeds_run.__dict__, "out": out, "decisions": decisions_path(out)})


def of_doc(run: SimpleNamespace, doc: str = DOC, kind: str | None = None) -> list[dict[str, Any]]:
    return [x for x in run.lines if x["document_id"] == doc and kind in (None, x["kind"])]


def reworded(line: dict[str, Any], statement: str) -> dict[str, Any]:
    """The same insight over the same passages in other words (another model's answer): another id."""
    spans = [(e["start"], e["end"]) for e in line["evidence"]]
    new_id = insight_id(line["document_id"], line["content_hash"], line["kind"], statement, spans)
    return {**line, "statement": statement, "insight_id": new_id}


def write(path: Path, decisions: list[Decision]) -> list[Decision]:
    with DecisionLog(path) as log:
        for d in decisions:
            log.append(d)
    return read_decisions(path)


# ----------------------------------------------------------------------------------------------- the file
def test_decisions_round_trip_and_the_latest_per_insight_and_reviewer_wins(run: SimpleNamespace) -> None:
    a, b = of_doc(run)[:2]
    found = write(
        run.decisions,
        [
            make_decision(a, "accept", "ana"),
            make_decision(a, "reject", "ana", note="not a barrier"),
            make_decision(a, "accept", "ben"),
            make_decision(b, "accept", "ana"),
        ],
    )
    assert [(d.insight_id, d.decision, d.reviewer, d.seq) for d in found] == [
        (a["insight_id"], "accept", "ana", 0),
        (a["insight_id"], "reject", "ana", 1),
        (a["insight_id"], "accept", "ben", 2),
        (b["insight_id"], "accept", "ana", 3),
    ]  # history kept
    first = json.loads(run.decisions.read_text(encoding="utf-8").splitlines()[1])
    assert set(first) == {"insight_id", "decision", "reviewer", "note", "at", "anchor"}
    assert first["anchor"]["evidence"] == [[e["start"], e["end"], e["quote"]] for e in a["evidence"]]
    r = resolve(run.lines, found)
    assert r.effective(a["insight_id"], "ana").decision.decision == "reject"  # ana's latest
    assert r.effective(a["insight_id"], "ben").decision.decision == "accept"
    assert r.effective(a["insight_id"]).decision.reviewer == "ben"  # the latest of everyone
    assert r.stale == [] and r.carried == []


def test_one_writer_at_a_time_and_a_torn_last_line_is_cut_off(run: SimpleNamespace) -> None:
    line = of_doc(run)[0]
    with DecisionLog(run.decisions) as log:
        log.append(make_decision(line, "accept", "ana"))
        with pytest.raises(OutputError, match=r"being written by another run \(process \d+"):
            DecisionLog(run.decisions).open()
    whole = run.decisions.read_bytes()
    run.decisions.write_bytes(whole + b'{"insight_id": "ins_torn", "deci')  # a kill in the middle of a write
    assert len(read_decisions(run.decisions)) == 1  # readers skip it
    with DecisionLog(run.decisions) as log:
        assert log.repaired
        assert run.decisions.read_bytes() == whole
        log.append(make_decision(line, "reject", "ana"))
    assert [d.decision for d in read_decisions(run.decisions)] == ["accept", "reject"]
    assert all(json.loads(x) for x in run.decisions.read_text(encoding="utf-8").splitlines())


APPENDER = """
import sys
from insights.decisions import DecisionLog, make_decision
from insights.output import read_jsonl
lines = list(read_jsonl(sys.argv[1]))
with DecisionLog(sys.argv[2]) as log:
    for n in range(100000):
        line = lines[n % len(lines)]
        log.append(make_decision(line, ("accept", "reject")[n % 2], "ana", note="n=%d" % n))
        print(n, flush=True)
"""


def test_a_writer_killed_mid_review_loses_no_acknowledged_decision(run: SimpleNamespace) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for kill_after in (3, 60):
        child = subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(run.out), str(run.decisions)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        acked = [int(child.stdout.readline()) for _ in range(kill_after)]
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        notes = [d.note for d in read_decisions(run.decisions)]
        assert {f"n={n}" for n in acked} <= set(notes)  # every acknowledged decision is on disk
        with DecisionLog(run.decisions) as log:  # the next writer starts on a clean line
            log.append(make_decision(run.lines[0], "accept", "after-kill"))
        raw = run.decisions.read_text(encoding="utf-8").splitlines()
        assert all(json.loads(x)["reviewer"] in ("ana", "after-kill") for x in raw)  # no torn line left


# ------------------------------------------------------------------------------------------- carry-over
def test_a_rerun_with_the_same_ids_keeps_every_decision(run: SimpleNamespace) -> None:
    found = write(run.decisions, [make_decision(x, "accept", "ana") for x in of_doc(run)])
    r = resolve(list(read_jsonl(run.out)), found)
    assert {i for i, by in r.placed.items() if not by["ana"].carried} == {x["insight_id"] for x in of_doc(run)}
    assert r.stale == [] and r.carried == []


def test_decisions_are_carried_to_the_insight_covering_the_same_passage(run: SimpleNamespace) -> None:
    enablers = of_doc(run, kind="enabler")
    found = write(
        run.decisions,
        [make_decision(enablers[0], "reject", "ana"), make_decision(enablers[1], "accept", "ana", note="good")],
    )
    rerun = [reworded(x, "In other words: " + x["statement"]) if x in enablers[:2] else x for x in run.lines]
    r = resolve(rerun, found)
    assert [(c.decision.insight_id, c.target) for c in r.carried] == [
        (enablers[0]["insight_id"], rerun[run.lines.index(enablers[0])]["insight_id"]),
        (enablers[1]["insight_id"], rerun[run.lines.index(enablers[1])]["insight_id"]),
    ]
    applied = apply_decisions(rerun, found)
    assert [x["statement"] for x in applied.left_out] == ["In other words: " + enablers[0]["statement"]]
    marked = next(x for x in applied.lines if x.get("review"))
    assert marked["review"] == {
        "decision": "accept", "reviewer": "ana", "at": found[1].at, "note": "good", "carried": True,
        "from": enablers[1]["insight_id"],
    }  # fmt: skip


def test_a_changed_document_carries_decisions_by_the_quotes_text(run: SimpleNamespace) -> None:
    line = of_doc(run, kind="barrier")[0]
    found = write(run.decisions, [make_decision(line, "reject", "ana")])
    shift = 25  # a paragraph added above: every offset moves, the content hash changes
    moved = []
    for x in run.lines:
        if x["document_id"] != DOC:
            moved.append(x)
            continue
        evidence = [{**e, "start": e["start"] + shift, "end": e["end"] + shift} for e in x["evidence"]]
        spans = [(e["start"], e["end"]) for e in evidence]
        new_id = insight_id(DOC, "changed", x["kind"], x["statement"], spans)
        moved.append({**x, "evidence": evidence, "content_hash": "changed", "insight_id": new_id})
    r = resolve(moved, found)
    assert [c.target for c in r.carried] == [moved[run.lines.index(line)]["insight_id"]]
    assert cover(found[0].anchor, moved[run.lines.index(line)]) == pytest.approx(1.0)


def test_decisions_that_cannot_be_placed_are_stale_never_applied_elsewhere(run: SimpleNamespace) -> None:
    barriers, enablers = of_doc(run, kind="barrier"), of_doc(run, kind="enabler")
    other_doc = next(x for x in run.lines if x["document_id"] != DOC)
    found = write(
        run.decisions,
        [
            make_decision(barriers[0], "reject", "ana"),  # its passage is gone from the new answer
            make_decision(other_doc, "accept", "ana"),  # its document is not in the new output
            make_decision(enablers[0], "accept", "ana"),  # the answer now calls it a barrier
        ],
    )
    rerun = [x for x in run.lines if x not in (barriers[0], other_doc) and x["document_id"] != other_doc["document_id"]]
    rerun = [{**reworded(x, x["statement"] + "!"), "kind": "barrier"} if x is enablers[0] else x for x in rerun]
    r = resolve(rerun, found)
    assert r.carried == [] and not r.placed
    assert [(s.decision.insight_id, s.reason) for s in r.stale] == [
        (barriers[0]["insight_id"], f"no barrier of document {DOC} covers its passage any more"),
        (other_doc["insight_id"], f"document {other_doc['document_id']} is not in this output"),
        (enablers[0]["insight_id"], f"no enabler of document {DOC} covers its passage any more"),
    ]
    applied = apply_decisions(rerun, found)
    assert not applied.left_out and not any(x.get("review") for x in applied.lines)


def test_two_insights_covering_a_passage_equally_leave_the_decision_stale(run: SimpleNamespace) -> None:
    line = of_doc(run, kind="enabler")[0]
    found = write(run.decisions, [make_decision(line, "accept", "ana")])
    twins = [reworded(line, "One reading."), reworded(line, "Another reading.")]
    rerun = [x for x in run.lines if x is not line] + twins
    r = resolve(rerun, found)
    assert [s.reason for s in r.stale] == [
        f"two insights cover its passage equally ({min(t['insight_id'] for t in twins)}, "
        f"{max(t['insight_id'] for t in twins)})"
    ]


def test_carrying_is_one_to_one_newest_first_and_a_direct_decision_is_never_overridden(run: SimpleNamespace) -> None:
    enablers = of_doc(run, kind="enabler")
    a, b = enablers[0], enablers[1]
    c = reworded(a, "A third wording")  # a new insight over a's passage
    found = write(run.decisions, [make_decision(a, "reject", "ana"), make_decision(c, "accept", "ana")])
    rerun = [x for x in run.lines if x is not a] + [c]
    r = resolve(rerun, found)
    assert r.effective(c["insight_id"], "ana").decision.decision == "accept"  # c's own decision stands
    assert [s.reason for s in r.stale] == [
        f"its passage is covered by {c['insight_id']}, which has a newer or direct decision of this reviewer"
    ]
    # Deciding a carried insight supersedes the carried decision: no stale entry for it afterwards.
    d = reworded(b, "Yet another wording")
    found = write(run.decisions, [make_decision(b, "accept", "ben")])
    rerun2 = [x for x in run.lines if x is not b] + [d]
    assert resolve(rerun2, found).carried[0].target == d["insight_id"]
    found = write(run.decisions, [make_decision(d, "reject", "ben", supersedes=[b["insight_id"]])])
    rerun3 = [x for x in rerun2 if x is not d] + [reworded(d, "A fourth wording")]
    r3 = resolve(rerun3, found)
    assert r3.superseded == 1
    assert [c.decision.insight_id for c in r3.carried if c.decision.reviewer == "ben"] == [d["insight_id"]]


def test_an_edit_of_evidence_is_not_carried_into_a_changed_document(run: SimpleNamespace) -> None:
    line = of_doc(run, kind="champion")[0]
    doc = run.documents[DOC]
    other = next(e for x in of_doc(run, kind="enabler") for e in x["evidence"])["quote"]
    fields = validate_edit(line, {"quotes": [line["evidence"][0]["quote"], other]}, doc)
    found = write(run.decisions, [make_decision(line, "edit", "ana", fields=fields)])
    changed = [{**reworded({**line, "content_hash": "changed"}, line["statement"])}]
    r = resolve(changed, found)
    assert [s.reason for s in r.stale] == [
        f"an edit of its evidence, and document {DOC} changed since (the offsets no longer hold)"
    ]


# ---------------------------------------------------------------------------------------------- edits
def test_an_edit_is_validated_against_the_schema_and_its_quotes_located(run: SimpleNamespace) -> None:
    line = of_doc(run, kind="barrier")[0]
    doc = run.documents[DOC]
    sentence = of_doc(run, kind="enabler")[1]["evidence"][0]["quote"]  # another insight's passage
    fields = validate_edit(line, {"category": "time_and_workload", "quotes": [sentence.upper()]}, doc)
    assert fields["category"] == "time_and_workload"
    [ev] = fields["evidence"]
    assert doc.text[ev["start"] : ev["end"]] == ev["quote"] and ev["start"] == doc.text.index(sentence[:60])
    assert ev["match"] == "normalized" and ev["model_quote"] == sentence.upper()
    assert set(fields) == {"category", "evidence"}

    with pytest.raises(EditError, match="may not invent evidence: the quote 'The lab won a Nobel prize in 2019"):
        validate_edit(line, {"quotes": ["The lab won a Nobel prize in 2019 for its work"]}, doc)
    with pytest.raises(EditError, match="category: Input should be"):
        validate_edit(line, {"category": "weather"}, doc)
    with pytest.raises(EditError, match="no editable field 'name'"):
        validate_edit(line, {"name": "Someone"}, doc)
    with pytest.raises(EditError, match="changes nothing"):
        validate_edit(line, {"category": line["category"]}, doc)
    with pytest.raises(EditError, match="at least one quote"):
        validate_edit(line, {"quotes": ["  "]}, doc)
    with pytest.raises(EditError, match="name: Field required"):
        validate_edit(line, {"kind": "champion"}, doc)
    moved = validate_edit(line, {"kind": "enabler"}, doc)
    assert moved == {"kind": "enabler"}
    changed = dataclasses.replace(doc, text=doc.text + " more")  # not the run's text any more
    assert changed.content_hash != doc.content_hash
    with pytest.raises(EditError, match="changed since the run"):
        validate_edit(line, {"quotes": [sentence]}, changed)


# ------------------------------------------------------------------------------------- applied everywhere
def scripted_review(run: SimpleNamespace) -> dict[str, list[dict[str, Any]]]:
    """Reject 3, edit 1 (category and statement), accept the rest of one document."""
    lines = of_doc(run)
    rejected, edited, accepted = lines[:3], lines[3], lines[4:]
    fields = validate_edit(edited, {"statement": "Edited by the analyst.", "category": "other"}, run.documents[DOC])
    write(
        run.decisions,
        [
            *(make_decision(x, "reject", "ana") for x in rejected),
            make_decision(edited, "edit", "ana", fields=fields),
            *(make_decision(x, "accept", "ana") for x in accepted),
        ],
    )
    return {"rejected": rejected, "edited": [edited], "accepted": accepted}


def test_export_and_report_apply_the_decisions_and_raw_shows_the_model_alone(run: SimpleNamespace) -> None:
    script = scripted_review(run)
    tables = build_tables(run.out)
    rows = {r["insight_id"]: r for r in tables.rows["insights"]}
    assert len(rows) == len(run.lines) - 3
    assert not {x["insight_id"] for x in script["rejected"]} & set(rows)
    edited = rows[script["edited"][0]["insight_id"]]
    assert (edited["statement"], edited["category"], edited["review"], edited["reviewer"]) == (
        "Edited by the analyst.", "other", "edit", "ana",
    )  # fmt: skip
    assert {rows[x["insight_id"]]["review"] for x in script["accepted"]} == {"accept"}
    assert sum(r["review"] is None for r in rows.values()) == len(run.lines) - len(of_doc(run))
    assert any("3 insight(s) rejected in review and left out, 1 edited, 5 accepted" in n for n in tables.notes)
    raw = build_tables(run.out, raw=True)
    assert len(raw.rows["insights"]) == len(run.lines) and {r["review"] for r in raw.rows["insights"]} == {None}

    report = build_report(run.out)
    shown = {x["insight_id"]: x for _, x in report.insights}
    assert len(shown) == len(run.lines) - 3 and report.left_out == 3
    assert shown[script["edited"][0]["insight_id"]]["statement"] == "Edited by the analyst."
    index = json.loads(__import__("gzip").decompress(__import__("base64").b64decode(pack_index(report)[0])))
    marked = {i["id"]: i["f"].get("reviewed") for i in index["insights"]}
    assert marked[script["accepted"][0]["insight_id"]] == "accepted by ana"
    assert marked[script["edited"][0]["insight_id"]] == "edited by ana"
    assert len(build_report(run.out, raw=True).insights) == len(run.lines)


def test_gold_export_passes_the_annotation_checks_and_scores_the_reviewed_run_1(run: SimpleNamespace) -> None:
    script = scripted_review(run)
    gold = export_gold(run.out, run.out.parent / "gold", read_decisions(run.decisions))
    assert [p.name for p in gold.written] == [f"{DOC}.json"] and gold.items == 6
    assert gold.skipped == []  # the other documents have no decision at all
    data = json.loads(gold.written[0].read_text(encoding="utf-8"))
    assert check_annotation(data, run.documents[DOC]) == []
    statements = [i["statement"] for items in data["extraction"].values() for i in items]
    assert "Edited by the analyst." in statements
    assert not {x["statement"] for x in script["rejected"]} & set(statements)
    reviewed = apply_decisions(run.lines, read_decisions(run.decisions))
    result = score(reviewed.lines, load_annotations(run.out.parent / "gold"), run.documents.values())
    assert result.documents == 1
    assert (result.total.precision, result.total.recall, result.total.matched) == (1.0, 1.0, 6)
    raw = score(run.lines, load_annotations(run.out.parent / "gold"), run.documents.values())
    assert raw.total.precision == pytest.approx(6 / 9)  # the model's output alone: 3 rejected in review

    # A partly reviewed document is not written, and is listed.
    write(run.decisions, [make_decision(of_doc(run, "000_e031a6a70dda01b9")[0], "accept", "ana")])
    again = export_gold(run.out, run.out.parent / "gold2", read_decisions(run.decisions))
    assert again.skipped == [("000_e031a6a70dda01b9", "15 of 16 insights not reviewed yet")]


def test_check_annotation_finds_what_the_annotation_tests_refuse(run: SimpleNamespace) -> None:
    doc = run.documents[DOC]
    good = json.loads((REPO / "evals" / "seeds" / f"{DOC}.json").read_text(encoding="utf-8"))
    assert check_annotation(good, doc) == []
    bad = copy.deepcopy(good)
    bad["extraction"]["barriers"][0]["quotes"] = ["not in the document at all"]
    bad["notes"] = ""
    assert check_annotation(bad, doc) == [
        "notes and annotator must be given",
        "quote 'not in the document at all' is not one verbatim line of 12+ characters",
    ]


# --------------------------------------------------------------------------------------------- agreement
def test_cohen_kappa_matches_hand_computed_values() -> None:
    assert cohen_kappa(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.5)
    # 20 items: both yes 7, a-yes b-no 3, a-no b-yes 2, both no 8 -> po 0.75, pe 0.5, kappa 0.5
    a = ["y"] * 10 + ["n"] * 10
    b = ["y"] * 7 + ["n"] * 3 + ["y"] * 2 + ["n"] * 8
    assert cohen_kappa(a, b) == pytest.approx((0.75 - 0.5) / 0.5)
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None and cohen_kappa([], []) is None


def test_two_reviewers_get_their_agreement_on_keeping_and_on_category(run: SimpleNamespace) -> None:
    lines = of_doc(run)
    doc = run.documents[DOC]
    graded = [x for x in lines if x["kind"] in ("barrier", "enabler")]
    recat = validate_edit(graded[0], {"category": "other"}, doc)
    write(
        run.decisions,
        [
            *(make_decision(x, "accept", "ana") for x in lines),
            *(make_decision(x, "accept", "ben") for x in lines[:-1]),
            make_decision(lines[-1], "reject", "ben"),
            make_decision(graded[0], "edit", "ben", fields=recat),
        ],
    )
    [pair] = agreement(run.lines, read_decisions(run.decisions))
    assert pair.reviewers == ("ana", "ben") and (pair.n, pair.same) == (9, 8)
    assert pair.kappa == pytest.approx(0.0)  # ana kept everything: 8 of 9 agree, as chance predicts
    kept = [x for x in graded if x is not lines[-1]]
    assert (pair.n_category, pair.same_category) == (len(kept), len(kept) - 1)
    a = [x["category"] for x in kept]
    b = ["other"] + a[1:]
    assert pair.kappa_category == pytest.approx(cohen_kappa(a, b))
