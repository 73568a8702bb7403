"""Locating quotes: exact, normalized, fuzzy, and nothing for what is not there."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from conftest import SEEDS
from rapidfuzz import fuzz

import insights
from insights import cli
from insights.client import ModelClient
from insights.grounding import (
    FUZZY_THRESHOLD,
    GroundedExtraction,
    Grounder,
    GroundingContext,
    difference,
    normalize,
)
from insights.testing.server import FaultPlan, ReferenceServer

TEXT = "Intro line.\n\nThe “culture of blame” is   strong — officials fear & avoid risk.\nLast line here.\n"


def test_exact_match_gives_offsets_of_the_quote() -> None:
    g = Grounder(TEXT)
    hit = g.locate("officials fear & avoid risk")
    assert hit is not None and hit.match == "exact"
    assert TEXT[hit.start : hit.end] == "officials fear & avoid risk"


@pytest.mark.parametrize(
    "quote",
    [
        'the "culture of blame" is strong - officials fear &amp; avoid risk',  # quotes, dash, entity, case
        "“culture of blame” is strong",
        "  The “culture of blame” is strong.  ",
    ],
)
def test_normalized_match_maps_back_to_the_original(quote: str) -> None:
    g = Grounder(TEXT)
    hit = g.locate(quote)
    assert hit is not None and hit.match == "normalized"
    located = TEXT[hit.start : hit.end]
    assert normalize(located) == normalize(quote).strip(" \"'.,;:")
    assert not located[0].isspace() and not located[-1].isspace()


def test_fuzzy_match_widens_to_whole_words_and_reports_score() -> None:
    g = Grounder(TEXT)
    hit = g.locate("The “culture of blme” is strong — oficials fear & avoid risk")
    assert hit is not None and hit.match == "fuzzy" and FUZZY_THRESHOLD <= hit.score < 100
    located = TEXT[hit.start : hit.end]
    assert located.startswith("The") and located.endswith("risk")


@pytest.mark.parametrize("quote", ["The ministry fully funded every pilot without conditions.", "blame", "", "   "])
def test_absent_or_too_short_quotes_are_not_found(quote: str) -> None:
    assert Grounder(TEXT).locate(quote) is None


def test_search_is_limited_to_the_given_span() -> None:
    text = "alpha beta gamma delta epsilon. " * 3
    g = Grounder(text)
    first = g.locate("alpha beta gamma delta")
    later = g.locate("alpha beta gamma delta", lo=10)
    assert first is not None and first.start == 0
    assert later is not None and later.start == 32
    assert g.locate("alpha beta gamma delta", lo=70, hi=90) is None


def _extraction(quote: str) -> dict:
    return {"barriers": [{"statement": "s", "quotes": [quote], "category": "other", "level": "individual"}]}


def test_validation_raises_naming_the_missing_quote_in_strict_mode() -> None:
    doc = insights.load_document(SEEDS / "000_e031a6a70dda01b9.txt")
    ctx = GroundingContext(Grounder(doc.text), doc.section_at)
    with pytest.raises(ValueError, match=r"barriers\[0\]\.quotes\[0\] is not in the document: 'Invented words here'"):
        GroundedExtraction.model_validate(_extraction("Invented words here"), context={"grounding": ctx})


def test_lenient_mode_keeps_reason_and_no_evidence() -> None:
    doc = insights.load_document(SEEDS / "000_e031a6a70dda01b9.txt")
    ctx = GroundingContext(Grounder(doc.text), doc.section_at)
    ctx.strict = False
    result = GroundedExtraction.model_validate(_extraction("Invented words here"), context={"grounding": ctx})
    [g] = result.grounded
    assert g.evidence is None and "Invented words here" in g.reason


def test_grounded_evidence_carries_section() -> None:
    doc = insights.load_document(SEEDS / "000_e031a6a70dda01b9.txt")
    ctx = GroundingContext(Grounder(doc.text), doc.section_at)
    quote = "little to no safety net when met with failure, to a culture of blame"
    result = GroundedExtraction.model_validate(_extraction(quote), context={"grounding": ctx})
    [g] = result.grounded
    assert g.evidence is not None
    [e] = g.evidence
    assert doc.text[e.start : e.end] == quote
    assert e.section.startswith("Learnings on your challenge")


# ------------------------------------------------------------------------------- the fuzzy rule (issue 8.6)
EDGES = " \"'.,;:"
INTRO = "Intro paragraph of the report, about something else entirely.\n\n"
OUTRO = "\n\nA closing line of the report that says nothing more."

#: (model's quote, the document's sentence, what differs, the word named). Each quote scores at least 90
#: as a partial alignment in the document: the fuzzy step used to accept every one of them.
MEANING_CHANGES = [
    ("The pilot was not scaled up to two more districts.", "The pilot was scaled up to two more districts.",
     "a negation", "'not'"),
    ("The pilot was scrapped after the first year of the programme.",
     "The pilot was scaled after the first year of the programme.", "a word", "'scrapped'"),
    ("The ministry never approved the procurement rule for the lab.",
     "The ministry approved the procurement rule for the lab.", "a negation", "'never'"),
    ("The innovation lab was launched in 2012 with a small team.",
     "The innovation lab was launched in 2021 with a small team.", "a number", "'2012'"),
    ("The municipality had a budget line for experiments at that time.",
     "The municipality had no budget line for experiments at that time.", "a negation", "'no'"),
    ("The district office didn't release the funds before the deadline.",
     "The district office did release the funds before the deadline.", "a negation", "'not'"),
    ("Uptake of the service rose by 45% in the pilot districts.",
     "Uptake of the service rose by 54% in the pilot districts.", "a number", "'45'"),
    ("The fund raised one million dollars for the recycling pilot.",
     "The fund raised one billion dollars for the recycling pilot.", "a number", "'million'"),
    ("It was possible to convince the finance ministry to pay for it.",
     "It was impossible to convince the finance ministry to pay for it.", "a word", "'possible'"),
    ("Our partners in Austria funded the second phase of the pilot.",
     "Our partners in Australia funded the second phase of the pilot.", "a name", "'Austria'"),
    ("Informal settlements in Fiji were not particularly hit hard during COVID-19.",
     "Informal settlements in Fiji were particularly hit hard during COVID-19.", "a negation", "'not'"),
    ("Le projet n'a pas été adopté par la mairie de Dakar en fin de compte.",
     "Le projet a été adopté par la mairie de Dakar en fin de compte.", "a negation", "'pas'"),
    ("El proyecto no fue aprobado por el municipio de Lima al final del año.",
     "El proyecto fue aprobado por el municipio de Lima al final del año.", "a negation", "'no'"),
    ("O projeto não foi aprovado pela prefeitura de Recife no fim do ano.",
     "O projeto foi aprovado pela prefeitura de Recife no fim do ano.", "a negation", "'não'"),
]  # fmt: skip

#: (model's quote, the document's sentence): copying slips that change nothing the sentence says.
COPYING_SLIPS = [
    ("The goverment partners trusted the lab from the first workshop.",  # a typo
     "The government partners trusted the lab from the first workshop."),
    ("The government partners trusted the lab from the first workshop.",  # a typo in the source, corrected
     "The goverment partners trusted the lab from the first workshop."),
    ("We worked with teh municipality on the waste sorting pilot.",  # two letters swapped
     "We worked with the municipality on the waste sorting pilot."),
    ("Instead, we had full support at all phases to deploy pilot",  # a dropped article
     "Instead, we had full support at all phases to deploy the pilot"),
    ("The organization prioritized the labor market analysis in the center.",  # American for British
     "The organisation prioritised the labour market analysis in the centre."),
    ("The lab co-created the service with local youth groups.",  # a compound split
     "The lab cocreated the service with local youth groups."),
    ("Our colleagues in Vietnam ran the night-time economy pilot.",  # a name joined
     "Our colleagues in Viet Nam ran the night-time economy pilot."),
    ("The district office did not release the funds before the deadline.",  # a contraction expanded
     "The district office didn't release the funds before the deadline."),
    ("Households without access to trash collection also lack water.",  # a typo in a negation word
     "Households wihtout access to trash collection also lack water."),
]  # fmt: skip


@pytest.mark.parametrize(("quote", "source", "what", "word"), MEANING_CHANGES)
def test_a_fuzzy_quote_that_changes_the_meaning_is_not_located(quote: str, source: str, what: str, word: str) -> None:
    text = INTRO + source + OUTRO
    assert fuzz.partial_ratio(normalize(quote).strip(EDGES), normalize(text)) >= FUZZY_THRESHOLD  # used to pass
    g = Grounder(text)
    assert g.locate(quote) is None
    miss = g.miss(quote)
    assert miss.reason.startswith(f"differs from the source in {what}: ") and word in miss.reason
    assert miss.passage and miss.passage in source  # the passage the document has there
    assert difference(quote, source) == miss.reason


@pytest.mark.parametrize(("quote", "source"), COPYING_SLIPS)
def test_a_fuzzy_quote_with_copying_slips_is_located_and_quotes_the_source(quote: str, source: str) -> None:
    text = INTRO + source + OUTRO
    hit = Grounder(text).locate(quote)
    assert hit is not None and hit.match == "fuzzy"
    passage = text[hit.start : hit.end]
    assert passage.strip(EDGES) == source.strip(EDGES)
    assert difference(quote, source) is None


def test_curly_quotes_are_a_normalized_match() -> None:
    text = INTRO + 'The "culture of blame" is strong in the ministry.' + OUTRO
    hit = Grounder(text).locate("The “culture of blame” is strong in the ministry")
    assert hit is not None and hit.match == "normalized"
    assert text[hit.start : hit.end] == 'The "culture of blame" is strong in the ministry'


def test_the_fuzzy_score_is_the_score_of_the_stored_passage() -> None:
    # The partial alignment of this quote used to score 100 while the passage it stored scored 85.
    text = (
        "The successful pitch we did at the mayor's office helped paved the way to minimize bottlenecks. "
        "Instead, we had full support at all phases to deploy the pilot\n\n> For this frontier challenge, "
        "how much of your time did you dedicate to the stages in the learning cycle?"
    )
    quote = "Instead, we had full support at all phases to deploy pilot"
    hit = Grounder(text).locate(quote)
    assert hit is not None and hit.match == "fuzzy"
    passage = text[hit.start : hit.end]
    assert passage == "Instead, we had full support at all phases to deploy the pilot"
    assert hit.score == round(fuzz.ratio(normalize(quote).strip(EDGES), normalize(passage).strip(EDGES)), 1)
    assert hit.score >= FUZZY_THRESHOLD


def test_a_quote_is_never_found_inside_a_longer_word() -> None:
    text = INTRO + "The informal cross-border trade survey was published in September." + OUTRO
    g = Grounder(text)
    assert g.locate("formal cross-border trade survey was published in September") is None
    assert "'formal'" in g.miss("formal cross-border trade survey was published in September").reason


def test_every_fuzzy_evidence_quotes_the_source_and_keeps_the_model_words() -> None:
    source = "The pilot was scaled up to two more districts in the second year."
    text = INTRO + source + OUTRO
    ctx = GroundingContext(Grounder(text), lambda offset: "")
    exact, fuzzy = (
        "A closing line of the report that says nothing more",
        "The pilot was scalled up to two more districts",
    )
    data = {"barriers": [{"statement": "s", "quotes": [exact, fuzzy], "category": "other", "level": "individual"}]}
    [g] = GroundedExtraction.model_validate(data, context={"grounding": ctx}).grounded
    assert g.evidence is not None
    assert [e.match for e in g.evidence] == ["exact", "fuzzy"]
    for e, model_words in zip(g.evidence, [exact, fuzzy], strict=True):
        assert e.quote == text[e.start : e.end] and e.model_quote == model_words
    assert g.evidence[1].quote == "The pilot was scaled up to two more districts"


def test_a_negated_quote_is_reasked_naming_the_negation_and_rejected_with_the_reason() -> None:
    source = "The pilot was scaled up to two more districts in the second year."
    ctx = GroundingContext(Grounder(INTRO + source + OUTRO), lambda offset: "")
    quote = "The pilot was not scaled up to two more districts in the second year."
    with pytest.raises(ValueError) as info:
        GroundedExtraction.model_validate(_extraction(quote), context={"grounding": ctx})
    message = str(info.value)
    assert "barriers[0].quotes[0] differs from the source in a negation: the quote adds 'not'" in message
    assert f"the document reads {source[:-1]!r}" in message
    ctx.strict = False
    [g] = GroundedExtraction.model_validate(_extraction(quote), context={"grounding": ctx}).grounded
    assert g.evidence is None
    assert g.reason.startswith("quote differs from the source in a negation: the quote adds 'not': ")
    assert quote in g.reason


def test_benign_slips_over_the_seeds_are_located_and_negations_never_are() -> None:
    """Every seed sentence with an auxiliary verb: a typo is located (quoting the source), ``not`` is not."""
    checked = 0
    for path in sorted(SEEDS.glob("*.txt")):
        doc = insights.load_document(path)
        g = Grounder(doc.text)
        for sentence in re.split(r"(?<=[.!?])\s+|\n", doc.text):
            m = re.search(r"\b(is|was|are|were|has|have|can|will)\b ", sentence)
            word = re.search(r"\b[a-z]{7,}\b", sentence)
            if (
                not (m and word and 60 <= len(sentence) <= 300 and sentence[0].isalnum())
                or doc.text.count(sentence) != 1
            ):
                continue
            negated = sentence[: m.end()] + "not " + sentence[m.end() :]
            assert g.locate(negated) is None, negated
            typo = sentence[: word.start() + 2] + sentence[word.start() + 3 :]
            hit = g.locate(typo)
            assert hit is not None and hit.match == "fuzzy", typo
            assert doc.text[hit.start : hit.end].strip(EDGES) == sentence.strip(EDGES)
            checked += 1
    assert checked >= 30


# ------------------------------------------------------------- end to end, with the reference server
PILOT_DOC = """# Recycling pilot report

## Learnings

The district office was able to release the funds before the end of the fiscal quarter in 2021.
Volunteers from ward seven kept the sensor network running long after the grant had ended.
"""
FIRST = "The district office was able to release the funds before the end of the fiscal quarter in 2021."
DISTORTED = {  # fault action -> (its quote, what differs, the word named)
    "negate": ("The district office was not able to release", "a negation", "the quote adds 'not'"),
    "renumber": ("the fiscal quarter in 3021.", "a number", "the quote has '3021' where the source has '2021'"),
}


@pytest.fixture
def srv() -> Iterator[ReferenceServer]:
    with ReferenceServer() as server:
        yield server


def _client(srv: ReferenceServer) -> ModelClient:
    return ModelClient(insights.resolve_settings(env={}, base_url=srv.url, api_key="sk-test-e2e", no_cache=True))


@pytest.mark.parametrize("action", sorted(DISTORTED))
def test_a_distorted_quote_is_reasked_then_rejected_with_the_reason_never_kept(srv, action) -> None:
    doc = insights.parse_document(PILOT_DOC, doc_id="pilot")
    part, what, detail = DISTORTED[action]
    srv.plan = FaultPlan(script={"pilot": [action] * 10})
    with _client(srv) as client:
        result = insights.extract(doc, client=client)

    assert srv.count == 3  # the answer, and two re-asks (the default bound)
    for request in srv.requests[1:]:  # each re-ask names the difference and what the document says
        reask = json.dumps(request["body"]["messages"][2:], ensure_ascii=False)
        assert f"barriers[0].quotes[0] differs from the source in {what}: {detail}" in reask
        assert FIRST[:-1] in reask
    [rejected] = result.rejected
    assert rejected.kind == "barrier" and part in rejected.draft["quotes"][0]
    assert rejected.reason.startswith(f"quote differs from the source in {what}: {detail}: ")
    assert [e.quote for i in result.insights() for e in i.evidence] == [
        "Volunteers from ward seven kept the sensor network running long after the grant had ended."
    ]


@pytest.mark.parametrize("action", sorted(DISTORTED))
def test_a_distorted_quote_once_is_reasked_and_the_exact_quote_kept(srv, action) -> None:
    doc = insights.parse_document(PILOT_DOC, doc_id="pilot")
    srv.plan = FaultPlan(script={"pilot": [action, "ok"]})
    with _client(srv) as client:
        result = insights.extract(doc, client=client)
    assert srv.count == 2 and result.rejected == []
    [barrier] = result.barriers
    [e] = barrier.evidence
    assert (e.match, e.quote, e.model_quote) == ("exact", FIRST, FIRST)


@pytest.mark.parametrize("action", sorted(DISTORTED))
def test_cli_never_writes_distorted_evidence_and_lists_it_as_rejected(srv, action, tmp_path, monkeypatch) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "pilot.md").write_text(PILOT_DOC, encoding="utf-8")
    monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-e2e")
    monkeypatch.setenv("INSIGHTS_CACHE", str(tmp_path / "cache.db"))
    part, what, detail = DISTORTED[action]
    srv.plan = FaultPlan(script={"pilot": [action] * 10})
    out = tmp_path / "out.jsonl"

    assert cli.main(["extract", str(tmp_path / "docs"), "-o", str(out), "-q"]) == 0

    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["kind"] for line in lines] == ["enabler"]
    assert part not in out.read_text(encoding="utf-8")
    doc = insights.load_document(tmp_path / "docs" / "pilot.md")
    for e in lines[0]["evidence"]:
        assert e["quote"] == doc.text[e["start"] : e["end"]] == e["model_quote"]
    [ledger] = [json.loads(line) for line in out.with_name("out.documents.jsonl").read_text().splitlines()]
    [rejected] = ledger["rejected"]
    assert rejected["kind"] == "barrier" and f"differs from the source in {what}: {detail}" in rejected["reason"]
