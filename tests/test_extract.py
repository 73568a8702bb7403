"""Extraction of one document: chunking, merging, grounding offsets into the whole text, injection."""

from __future__ import annotations

import json
import re

from conftest import ANNOTATIONS, SEEDS, FakeClock

import insights
from insights.chunking import split
from insights.testing.server import ReferenceServer


def client(srv: ReferenceServer, **kw: object) -> insights.ModelClient:
    settings = insights.resolve_settings(env={}, base_url=srv.url, api_key="sk-test", no_cache=True, **kw)  # type: ignore[arg-type]
    return insights.ModelClient(settings, sleep=FakeClock())


def test_long_document_is_chunked_and_duplicates_from_overlaps_merge_once() -> None:
    doc = insights.load_document(SEEDS / "004_578e9dd3e6ef0cec.txt")
    expected = json.loads((ANNOTATIONS / f"{doc.id}.json").read_text())["extraction"]
    with ReferenceServer(ANNOTATIONS) as srv:
        c = client(srv, chunk_chars=3000, chunk_overlap=1500)
        result = insights.extract(doc, client=c)
        requests = srv.requests
    chunks = split(doc.text, 3000, 1500)
    assert result.provenance.chunks == len(chunks) == len(requests) > 3

    # The server answers each chunk with the annotated items whose quotes all lie inside it; with
    # overlaps this large most items are answered twice, yet each must come out once.
    def fits(item: dict, times: int) -> bool:
        inside = [c for c in chunks if all(q in doc.text[c.start : c.end] for q in item["quotes"])]
        return len(inside) >= times

    items = [x for k in expected.values() for x in k]
    answerable = {x["statement"] for x in items if fits(x, 1)}
    assert len([x for x in items if fits(x, 2)]) >= 5  # the test really exercises the merge
    statements = [i.statement for i in result.insights()]
    assert sorted(statements) == sorted(answerable)
    for insight in result.insights():
        for e in insight.evidence:
            assert doc.text[e.start : e.end] == e.quote


def test_chunk_requests_carry_their_part_and_only_their_text() -> None:
    doc = insights.load_document(SEEDS / "004_578e9dd3e6ef0cec.txt")
    with ReferenceServer(ANNOTATIONS) as srv:
        insights.extract(doc, client=client(srv, chunk_chars=4000))
        bodies = [r["body"]["messages"][1]["content"] for r in srv.requests]
    n = len(bodies)
    for k, body in enumerate(bodies, start=1):
        assert f"Part: {k} of {n}" in body
        block = re.search(r"<<<(DOCUMENT-[0-9a-f]{16})\n(.*)\n\1>>>", body, re.S)
        assert block and block.group(2) in doc.text and len(block.group(2)) <= 4000


def test_document_text_reaches_the_model_verbatim_even_with_template_syntax() -> None:
    text = "# Braces\n\nOfficials wrote {{ budget }} and {% if approved %} into the form, then waited months.\n"
    doc = insights.parse_document(text, doc_id="braces")
    with ReferenceServer({}) as srv:
        insights.extract(doc, client=client(srv))
        body = srv.requests[0]["body"]["messages"][1]["content"]
    assert "{{ budget }} and {% if approved %}" in body


def test_metadata_e_mails_never_reach_the_request() -> None:
    doc = insights.load_document(SEEDS / "000_e031a6a70dda01b9.txt")
    assert "nguyen.tuan.luong@undp.org" in doc.metadata["focal_point"]
    with ReferenceServer(ANNOTATIONS) as srv:
        insights.extract(doc, client=client(srv))
        body = json.dumps(srv.requests[0]["body"])
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", body)
