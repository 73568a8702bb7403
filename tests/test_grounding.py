"""Locating quotes: exact, normalized, fuzzy, and nothing for what is not there."""

from __future__ import annotations

import pytest
from conftest import SEEDS

import insights
from insights.grounding import FUZZY_THRESHOLD, GroundedExtraction, Grounder, GroundingContext, normalize

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
