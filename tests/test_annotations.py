"""The reference annotations are valid and every quote is verbatim in its document.

Two folders of annotations, each beside the documents it codes (rules in ``evals/CODEBOOK.md``):

* ``evals/seeds`` codes ``seeds/`` (the reference server answers from these files);
* ``evals/corpus`` codes ``evals/corpus/documents/`` (the evaluation set drawn from the archive).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import ANNOTATIONS, REPO, SEEDS

import insights
from insights.evaluate import load_annotations
from insights.schema import Extraction

CORPUS = REPO / "evals" / "corpus"
#: (annotations folder, documents folder)
FOLDERS = [(ANNOTATIONS, SEEDS), (CORPUS, CORPUS / "documents")]
FILES = [(path, docs) for notes, docs in FOLDERS for path in sorted(notes.glob("*.json"))]
ANNOTATOR = "reference annotation written by reading the document (project team)"

#: Frequent function words, enough to tell the archive's languages apart.
STOPWORDS = {
    "en": {"the", "and", "of", "to", "with", "is", "that", "for", "this", "are"},
    "fr": {"les", "des", "est", "pour", "une", "avec", "dans", "sur", "du", "et"},
    "es": {"los", "las", "para", "una", "con", "del", "que", "por", "el", "y"},
}


def detect_language(text: str) -> str:
    """The language whose function words are most frequent in ``text`` (crude, but enough here)."""
    words = re.findall(r"[a-zà-ÿ]+", text.lower())
    return max(STOPWORDS, key=lambda lang: sum(word in STOPWORDS[lang] for word in words))


def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _document(path: Path, docs: Path) -> insights.Document:
    matches = sorted(docs.glob(f"{_read(path)['document_id']}.*"))
    assert len(matches) == 1, matches
    return insights.load_document(matches[0])


@pytest.mark.parametrize(("notes", "docs"), FOLDERS, ids=["seeds", "corpus"])
def test_every_document_is_annotated_once(notes: Path, docs: Path) -> None:
    documents = sorted(insights.load_document(p).id for p in docs.iterdir() if p.is_file())
    annotated = sorted(_read(p)["document_id"] for p in notes.glob("*.json"))
    assert annotated == documents
    assert sorted(p.stem for p in notes.glob("*.json")) == annotated  # file named by the document's id


@pytest.mark.parametrize(("path", "docs"), FILES, ids=[p.stem[:40] for p, _ in FILES])
def test_annotation_is_valid_and_its_quotes_are_verbatim(path: Path, docs: Path) -> None:
    data = _read(path)
    extraction = Extraction.model_validate(data["extraction"])
    assert set(data["extraction"]) == {"barriers", "enablers", "champions", "failed_experiments"}
    doc = _document(path, docs)
    assert doc.id == data["document_id"] == path.stem
    assert data["notes"].strip() and data["annotator"] == ANNOTATOR
    items = [*extraction.barriers, *extraction.enablers, *extraction.champions, *extraction.failed_experiments]
    if docs == SEEDS:
        assert items  # the reference server answers from these: each seed has something to answer
    for item in items:
        assert 1 <= len(item.quotes) <= 3, item.statement
        assert item.statement.strip()
        for quote in item.quotes:
            assert quote in doc.text, quote
            assert "\n" not in quote and len(quote) >= 12


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.json")), ids=lambda p: p.stem[:40])
def test_recorded_language_is_the_documents(path: Path) -> None:
    data = _read(path)
    assert data["language"] == detect_language(_document(path, CORPUS / "documents").text)


def test_language_detection_tells_the_archive_languages_apart() -> None:
    assert detect_language("The lab worked with the ministry and the city.") == "en"
    assert detect_language("Le laboratoire a travaillé avec les communes pour une solution.") == "fr"
    assert detect_language("El laboratorio trabajó con los municipios para una solución.") == "es"


def test_the_evaluation_set_is_large_and_multilingual() -> None:
    languages = [_read(path).get("language") or detect_language(_document(path, docs).text) for path, docs in FILES]
    assert len(languages) >= 25
    assert sum(lang != "en" for lang in languages) >= 3
    # Each folder loads with the loader `insights evaluate` uses (extra top-level fields are ignored).
    assert len(load_annotations(ANNOTATIONS)) + len(load_annotations(CORPUS)) == len(languages)
