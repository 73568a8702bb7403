"""Files that are not plain text: PDF, DOCX and HTML converted, CSV/TSV read as records, others refused.

Contract
--------
:func:`convert` is called by :mod:`insights.documents` for every file whose extension is in
:data:`SUFFIXES`, with the file's bytes. It returns :class:`Converted` items: text in the archive's
markdown dialect (``# title``, ``## heading`` lines, paragraphs separated by blank lines) and metadata,
which :func:`insights.documents.parse_document` then cleans like any other file. ``Document.text`` is
that cleaned converted text, so evidence offsets index into it, never into the original file.

``.pdf``           pypdf (extra ``documents``): the text layer of every page, pages separated by a
                   blank line; the PDF's title, if any, as ``metadata["title"]``. A PDF with no text
                   layer (a scan) is refused: OCR it first.
``.docx``          python-docx (extra ``documents``): paragraphs and tables in body order; ``Title``
                   style as the title, ``Heading N`` styles as ``##`` headings, list paragraphs as
                   ``- `` items, table rows as cells joined by `` | ``; the core title as fallback.
``.html``/``.htm`` the standard library's parser: ``<h1>`` (first) as the title, other headings as
                   ``##``, block elements as paragraphs, ``<br>`` as a line break; ``<script>``,
                   ``<style>`` and the like dropped; ``<title>`` as the title when there is no ``<h1>``.
``.csv``/``.tsv``  records, one document per row: a ``text`` column is required; ``id`` (else
                   ``<file stem>-<n>``, as for JSONL) and every other non-empty column become metadata
                   (``title`` is the title). A file without a ``text`` column is refused, never read as
                   one document.
spreadsheets, ``.doc``, ``.odt``, ``.pptx``...  refused with what to do instead (see :data:`REFUSED`).

Only :class:`~insights.errors.DocumentError` leaves :func:`convert`, naming the file; a missing
extra is a :class:`~insights.errors.ConfigError` naming the extra.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ._optional import require
from .errors import DocumentError, InsightsError

_RECORDS = "give records as CSV with a 'text' column, or JSONL of {id, text, metadata}"
#: Extensions refused, with what to do instead.
REFUSED = {
    **dict.fromkeys((".xlsx", ".xls", ".xlsm", ".ods"), f"a spreadsheet is not a document: {_RECORDS}"),
    **dict.fromkeys((".doc", ".odt", ".rtf", ".pages"), "save it as DOCX or PDF first"),
    **dict.fromkeys((".ppt", ".pptx", ".odp", ".key"), "save it as PDF first"),
}
CONVERTED = frozenset({".pdf", ".docx", ".html", ".htm", ".csv", ".tsv"})
#: Every extension :func:`convert` handles (case-insensitive).
SUFFIXES = CONVERTED | frozenset(REFUSED)
MAX_CSV_FIELD = 64 * 1024 * 1024


@dataclass(frozen=True)
class Converted:
    """One document's text (archive markdown), metadata, id (``None``: the file's) and place in the file."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    doc_id: str | None = None
    where: str = ""


def handles(path: Path) -> bool:
    """Whether :func:`convert` reads (or refuses) this file, by its extension."""
    return path.suffix.lower() in SUFFIXES


def convert(path: Path, data: bytes) -> list[Converted]:
    """Convert one file's bytes (see the module docstring for each format).

    Args:
        path: the file (its extension chooses the converter; it is named in errors).
        data: its content.

    Returns:
        The documents it holds: one, or one per row of a CSV/TSV.

    Raises:
        DocumentError: a refused format, a damaged file, a file with no text, a CSV without a text column.
        ConfigError: the extra a format needs is not installed.
    """
    suffix = path.suffix.lower()
    if suffix in REFUSED:
        raise DocumentError(path, f"{suffix} files are not read: {REFUSED[suffix]}")
    if suffix in (".csv", ".tsv"):
        return _records(path, data, "\t" if suffix == ".tsv" else ",")
    if suffix in (".html", ".htm"):
        return [_html(path, data)]
    reader = _pdf if suffix == ".pdf" else _docx
    try:
        return [reader(path, data)]
    except InsightsError:  # DocumentError naming the file, ConfigError naming the extra
        raise
    except Exception as exc:  # the libraries raise many kinds on a damaged file
        raise DocumentError(path, f"cannot read this {suffix[1:].upper()} file ({type(exc).__name__}: {exc})") from exc


def _text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(path, f"not UTF-8 text (invalid byte at offset {exc.start})") from exc


def _blocks(blocks: list[str]) -> str:
    return "\n\n".join(b for b in (b.strip() for b in blocks) if b)


# ------------------------------------------------------------------------------------------------ PDF
def _pdf(path: Path, data: bytes) -> Converted:
    pypdf = require("pypdf", "documents", purpose="reading PDF files")
    reader = pypdf.PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not reader.decrypt(""):
        raise DocumentError(path, "the PDF is encrypted with a password")
    text = _blocks([page.extract_text() or "" for page in reader.pages])
    if not text:
        raise DocumentError(path, "the PDF has no text layer (a scan?): run OCR on it first")
    title = reader.metadata.title if reader.metadata else None
    return Converted(text, {"title": title.strip()} if isinstance(title, str) and title.strip() else {})


# ----------------------------------------------------------------------------------------------- DOCX
def _docx(path: Path, data: bytes) -> Converted:
    docx = require("docx", "documents", purpose="reading DOCX files")
    document = docx.Document(io.BytesIO(data))
    blocks: list[str] = []
    has_title = False
    for item in document.iter_inner_content():
        if hasattr(item, "rows"):  # a table
            rows = [" | ".join(" ".join(cell.text.split()) for cell in row.cells) for row in item.rows]
            blocks.append("\n".join(r for r in rows if r.strip(" |")))
            continue
        text = item.text.strip()
        style = (item.style.name if item.style is not None else "") or ""
        if not text:
            continue
        if style == "Title" and not blocks:
            blocks.append("# " + " ".join(text.split()))
            has_title = True
        elif style.startswith("Heading") or style == "Title":
            blocks.append("## " + " ".join(text.split()))
        elif style.startswith("List"):
            blocks.append("- " + text)
        else:
            blocks.append(text)
    title = (document.core_properties.title or "").strip()
    return Converted(_blocks(blocks), {"title": title} if title and not has_title else {})


# ----------------------------------------------------------------------------------------------- HTML
class _HTMLText(HTMLParser):
    """HTML to archive markdown: headings, paragraphs, line breaks; hidden elements dropped."""

    HIDDEN = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
    BLOCKS = frozenset(
        "address article aside blockquote body caption dd details div dl dt fieldset figcaption figure footer "
        "form header hr li main nav ol p pre section summary table tbody tfoot thead tr ul".split()
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.title: list[str] = []
        self._parts: list[str] = []
        self._heading = ""
        self._hidden = 0
        self._in_title = False
        self.has_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self.HIDDEN:
            self._hidden += 1
        elif tag == "br":
            self._parts.append("\n")
        elif tag in ("td", "th"):
            self._parts.append(" | ")
        elif tag in self.HEADINGS or tag in self.BLOCKS:
            self._flush()
            self._heading = tag if tag in self.HEADINGS else ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self.HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self.HEADINGS or tag in self.BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif not self._hidden:
            self._parts.append(data)

    def _flush(self) -> None:
        lines = [" ".join(line.split()).strip(" |") for line in "".join(self._parts).split("\n")]
        text = "\n".join(line for line in lines if line)
        if text and self._heading:
            first = self._heading == "h1" and not self.blocks
            self.has_h1 = self.has_h1 or first
            text = ("# " if first else "## ") + " ".join(text.split())
        if text:
            self.blocks.append(text)
        self._parts, self._heading = [], ""


def _html(path: Path, data: bytes) -> Converted:
    parser = _HTMLText()
    parser.feed(_text(path, data))
    parser.close()
    parser._flush()
    title = " ".join("".join(parser.title).split())
    return Converted(_blocks(parser.blocks), {"title": title} if title and not parser.has_h1 else {})


# -------------------------------------------------------------------------------------------- CSV/TSV
def _records(path: Path, data: bytes, delimiter: str) -> list[Converted]:
    csv.field_size_limit(max(csv.field_size_limit(), MAX_CSV_FIELD))  # a document is longer than a cell
    try:
        reader = csv.DictReader(io.StringIO(_text(path, data), newline=""), delimiter=delimiter)
        columns = [(name or "").strip() for name in reader.fieldnames or []]
        if "text" not in columns:
            found = ", ".join(repr(c) for c in columns) or "none"
            raise DocumentError(
                path,
                f"a {path.suffix.lower()[1:].upper()} file is read as records, one document per row, and needs a "
                f"'text' column (found: {found}); {_RECORDS}",
            )
        reader.fieldnames = columns
        items: list[Converted] = []
        for row in reader:
            values = {k: (v or "").strip() for k, v in row.items() if k and isinstance(v, str)}
            if not any(values.values()):
                continue  # a blank row
            n = len(items) + 1
            where = f"row {n} (line {reader.line_num})"
            if not values.get("text"):
                raise DocumentError(path, f"{where}: the 'text' cell is empty")
            metadata = {k: v for k, v in values.items() if k not in ("id", "text") and v}
            items.append(Converted(row["text"], metadata, values.get("id") or f"{_stem(path)}-{n}", where))
    except csv.Error as exc:
        raise DocumentError(path, f"not a valid {path.suffix.lower()[1:].upper()} file: {exc}") from exc
    if not items:
        raise DocumentError(path, "the file holds no records")
    return items


def _stem(path: Path) -> str:
    return path.stem or path.name
