"""The reference annotations are valid and every quote is verbatim in its document."""

from __future__ import annotations

import json

import pytest
from conftest import ANNOTATIONS, SEEDS

import insights
from insights.schema import Extraction

FILES = sorted(ANNOTATIONS.glob("*.json"))


def test_every_seed_is_annotated() -> None:
    assert sorted(p.stem for p in FILES) == sorted(p.stem for p in SEEDS.iterdir())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_annotation_is_valid_and_its_quotes_are_verbatim(path) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(path.read_text(encoding="utf-8"))
    extraction = Extraction.model_validate(data["extraction"])
    doc = insights.load_document(next(SEEDS.glob(f"{data['document_id']}.*")))
    items = [*extraction.barriers, *extraction.enablers, *extraction.champions, *extraction.failed_experiments]
    assert items and data["notes"].strip()
    for item in items:
        for quote in item.quotes:
            assert quote in doc.text, quote
            assert "\n" not in quote and len(quote) >= 12
