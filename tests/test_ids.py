"""Stable insight ids: same content → same id; any change of document, kind, statement or span → another."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SEEDS

import insights
from insights.ids import insight_id
from insights.output import insight_records
from insights.schema import Barrier, DocumentInsights, Evidence, Provenance

BASE = ("doc", "hash-a", "barrier", "Staff lacked time.", [(10, 40), (50, 80)])


def test_recipe_is_stable_and_documented() -> None:
    iid = insight_id(*BASE)
    assert iid == insight_id(*BASE)
    assert iid.startswith("ins_") and len(iid) == 24
    # Order of spans, case, white space and quote marks do not change the id.
    assert insight_id("doc", "hash-a", "barrier", "  staff LACKED   time. ", [(50, 80), (10, 40)]) == iid
    # A pinned value: a change of the recipe must be deliberate (bump INSIGHT_RECIPE and say so).
    assert iid == "ins_6d9f4c3ab270b1d8a32d"


def test_every_part_changes_the_id() -> None:
    iid = insight_id(*BASE)
    assert insight_id("doc", "hash-b", *BASE[2:]) != iid
    assert insight_id("copy", *BASE[1:]) != iid  # a duplicate upload under another name
    assert insight_id("doc", "hash-a", "enabler", *BASE[3:]) != iid
    assert insight_id("doc", "hash-a", "barrier", "Staff lacked money.", BASE[4]) != iid
    assert insight_id("doc", "hash-a", "barrier", BASE[3], [(10, 41), (50, 80)]) != iid


def test_records_carry_ids_year_and_every_tag(tmp_path: Path) -> None:
    doc = insights.load_corpus(SEEDS)[0]
    ev = Evidence(quote=doc.text[:20], start=0, end=20, match="exact")
    result = DocumentInsights(
        document_id=doc.id,
        barriers=[Barrier(statement="one", evidence=[ev], category="other", level="individual"),
                  Barrier(statement="two", evidence=[ev], category="other", level="individual")],
        provenance=Provenance(model="m", prompt_version="p"),
    )  # fmt: skip
    lines = insight_records(doc, result)
    assert [line["insight_id"] for line in lines] == [
        insight_id(doc.id, doc.content_hash, "barrier", "one", [(0, 20)]),
        insight_id(doc.id, doc.content_hash, "barrier", "two", [(0, 20)]),
    ]
    assert lines[0]["year"] == int(doc.meta("year"))
    assert lines[0]["metadata"].keys() == doc.metadata.keys()
    assert all(isinstance(v, list) for v in lines[0]["metadata"].values())
    assert "@" not in json.dumps(lines)
