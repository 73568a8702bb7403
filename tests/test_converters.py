"""PDF, DOCX and HTML inputs are converted (offsets index the converted text); CSV/TSV are records or refused.

The PDF and DOCX tests need the ``documents`` extra (pypdf, python-docx); ``pip install .[dev]`` installs it,
so they run in CI. The files are made here: DOCX with python-docx, PDF as a minimal hand-written file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import insights
from insights.errors import ConfigError, DocumentError
from insights.extract import extract
from insights.testing.server import ReferenceServer

KEY = "sk-test-FAKEKEY0123456789abcdef"
PILOT = "Procurement rules made every small pilot wait three months for an approval from the capital."
PARTNER = "The office of the mayor opened its data to the lab and sat with us in every design session."


def tiny_pdf(lines: list[str], title: str | None = None) -> bytes:
    """A one-page PDF whose text layer is ``lines`` (Helvetica), with an optional /Title."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    stream = "BT /F1 11 Tf 14 TL 50 750 Td " + " ".join(f"({esc(x)}) '" for x in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
        "/Contents 5 0 R >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
        f"<< /Title ({esc(title)}) >>" if title else "<< >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def make_docx(path: Path) -> Path:
    docx = pytest.importorskip("docx", reason="the documents extra (python-docx) is not installed")
    document = docx.Document()
    document.core_properties.title = "Core title (not used: the Title paragraph wins)"
    document.add_paragraph("Lab closing report", style="Title")
    document.add_heading("What blocked us", level=1)
    document.add_paragraph(PILOT)
    document.add_paragraph("Weekly check-ins with the ministry", style="List Bullet")
    document.add_heading("Who helped", level=2)
    document.add_paragraph(PARTNER)
    table = document.add_table(rows=2, cols=2)
    for (r, c), text in {(0, 0): "Partner", (0, 1): "Role", (1, 0): "City hall", (1, 1): "Data"}.items():
        table.cell(r, c).text = text
    document.save(str(path))
    return path


# ----------------------------------------------------------------------------------------------- PDF
def test_pdf_text_layer_becomes_the_document_text(tmp_path: Path) -> None:
    pytest.importorskip("pypdf", reason="the documents extra (pypdf) is not installed")
    path = tmp_path / "closing-report.pdf"
    path.write_bytes(tiny_pdf(["What blocked us", PILOT, "Who helped (and how)", PARTNER], title="Closing report"))
    doc = insights.load_document(path)
    assert doc.id == "closing-report" and doc.title == "Closing report" and doc.path == str(path)
    assert doc.text == f"Closing report\n\nWhat blocked us\n{PILOT}\nWho helped (and how)\n{PARTNER}"
    start = doc.text.index(PILOT)
    assert doc.text[start : start + len(PILOT)] == PILOT


def test_a_pdf_without_text_is_refused_naming_the_file(tmp_path: Path) -> None:
    pytest.importorskip("pypdf", reason="the documents extra (pypdf) is not installed")
    path = tmp_path / "scan.pdf"
    path.write_bytes(tiny_pdf([]))
    with pytest.raises(DocumentError, match="no text layer") as err:
        insights.load_document(path)
    assert err.value.path == str(path)


def test_a_damaged_pdf_is_a_document_error_naming_the_file(tmp_path: Path) -> None:
    pytest.importorskip("pypdf", reason="the documents extra (pypdf) is not installed")
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\nthis is not a pdf body at all")
    with pytest.raises(DocumentError, match="cannot read this PDF file") as err:
        insights.load_document(path)
    assert err.value.path == str(path)


def test_missing_extra_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(tiny_pdf([PILOT]))
    monkeypatch.setitem(sys.modules, "pypdf", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'grounded-insights\[documents\]'"):
        insights.load_document(path)
    monkeypatch.setitem(sys.modules, "docx", None)
    (tmp_path / "report.docx").write_bytes(b"PK\x03\x04")
    with pytest.raises(ConfigError, match=r"reading DOCX files needs docx.*grounded-insights\[documents\]"):
        insights.load_document(tmp_path / "report.docx")


def test_evidence_offsets_index_the_converted_text(tmp_path: Path) -> None:
    """A whole extraction over a PDF and a DOCX: every quote is located in the converted text."""
    pytest.importorskip("pypdf", reason="the documents extra (pypdf) is not installed")
    (tmp_path / "report.pdf").write_bytes(tiny_pdf(["What blocked us", PILOT, PARTNER], title="Report"))
    make_docx(tmp_path / "notes.docx")
    documents = insights.load_corpus(tmp_path)
    assert [d.id for d in documents] == ["notes", "report"]
    with ReferenceServer() as server:  # answers unannotated documents with two of their sentences
        settings = insights.resolve_settings(env={}, base_url=server.url, api_key=KEY, no_cache=True)
        with insights.ModelClient(settings) as client:
            for doc in documents:
                result = extract(doc, client=client)
                evidence = [e for item in result.insights() for e in item.evidence]
                assert len(evidence) == 2 and not result.rejected
                for e in evidence:
                    assert doc.text[e.start : e.end] == e.quote and e.match == "exact"
                assert {e.quote for e in evidence} == {PILOT, PARTNER}


# ---------------------------------------------------------------------------------------------- DOCX
def test_docx_paragraphs_headings_lists_and_tables(tmp_path: Path) -> None:
    doc = insights.load_document(make_docx(tmp_path / "notes.docx"))
    assert doc.title == "Lab closing report"
    assert doc.text == (
        f"Lab closing report\n\n## What blocked us\n\n{PILOT}\n\n- Weekly check-ins with the ministry\n\n"
        f"## Who helped\n\n{PARTNER}\n\nPartner | Role\nCity hall | Data"
    )
    assert [s.heading for s in doc.sections] == ["What blocked us", "Who helped"]
    assert doc.section_at(doc.text.index(PARTNER)) == "Who helped"


def test_docx_core_title_when_there_is_no_title_paragraph(tmp_path: Path) -> None:
    docx = pytest.importorskip("docx", reason="the documents extra (python-docx) is not installed")
    document = docx.Document()
    document.core_properties.title = "Field notes"
    document.add_paragraph(PILOT)
    document.save(str(tmp_path / "n.docx"))
    doc = insights.load_document(tmp_path / "n.docx")
    assert doc.title == "Field notes" and doc.text == f"Field notes\n\n{PILOT}"


# ---------------------------------------------------------------------------------------------- HTML
def test_html_headings_become_sections_and_hidden_content_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "blog.html"
    path.write_text(
        "<html><head><title>Site name</title><style>p {color: red}</style></head><body>"
        "<h1>Learning &amp; failing</h1><p>First line<br>second line</p><h2>Barriers</h2>"
        f"<div>{PILOT.replace('small', '<b>small</b>')}</div><script>track()</script>"
        "<ul><li>one</li><li>two</li></ul></body></html>",
        encoding="utf-8",
    )
    doc = insights.load_document(path)
    assert doc.title == "Learning & failing"
    assert doc.text == f"Learning & failing\n\nFirst line\nsecond line\n\n## Barriers\n\n{PILOT}\n\none\n\ntwo"
    assert doc.section_at(doc.text.index(PILOT)) == "Barriers"


def test_html_title_element_when_there_is_no_h1(tmp_path: Path) -> None:
    path = tmp_path / "page.htm"
    path.write_text(f"<title>Page title</title><p>{PARTNER}</p>", encoding="utf-8")
    doc = insights.load_document(path)
    assert doc.title == "Page title" and doc.text == f"Page title\n\n{PARTNER}"


# ------------------------------------------------------------------------------------------- CSV/TSV
def test_csv_rows_are_records_with_ids_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "stories.csv"
    path.write_text(
        'id,title,country,text\ns1,Pilot delays,Ghana,"'
        + PILOT
        + '"\n,,,\n,Open data,Peru,"'
        + PARTNER
        + '\nSecond line."\n',
        encoding="utf-8",
    )
    documents = insights.load_corpus(path)
    assert [d.id for d in documents] == ["s1", "stories-2"]
    assert [d.title for d in documents] == ["Pilot delays", "Open data"]
    assert documents[0].text == f"Pilot delays\n\n{PILOT}"
    assert documents[1].text == f"Open data\n\n{PARTNER}\nSecond line."
    assert documents[1].metadata == {"title": ["Open data"], "country": ["Peru"]}
    with pytest.raises(DocumentError, match="holds 2 records; use load_corpus"):
        insights.load_document(path)


def test_tsv_is_read_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "x.tsv"
    path.write_text(f"text\tsdgs\n{PILOT}\t5\n", encoding="utf-8")
    doc = insights.load_document(path)
    assert doc.id == "x-1" and doc.metadata == {"sdgs": ["5"]} and doc.text == PILOT


def test_a_csv_without_a_text_column_is_refused_never_one_document(tmp_path: Path) -> None:
    path = tmp_path / "budget.csv"
    path.write_text("item,amount\nworkshop,300\n", encoding="utf-8")
    with pytest.raises(DocumentError) as err:
        insights.load_corpus(tmp_path)
    assert err.value.path == str(path)
    assert "needs a 'text' column" in err.value.reason and "'item', 'amount'" in err.value.reason
    assert "JSONL of {id, text, metadata}" in err.value.reason


def test_an_empty_text_cell_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(f"id,text\na,{PILOT}\nb,\n", encoding="utf-8")
    with pytest.raises(DocumentError, match=r"row 2 \(line 3\): the 'text' cell is empty"):
        insights.load_corpus(path)


@pytest.mark.parametrize("name, advice", [("sheet.xlsx", "CSV with a 'text' column"), ("old.doc", "DOCX or PDF")])
def test_spreadsheets_and_old_office_files_are_refused_with_advice(tmp_path: Path, name: str, advice: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04 not read")
    with pytest.raises(DocumentError, match="files are not read") as err:
        insights.load_document(path)
    assert advice in err.value.reason and err.value.path == str(path)
