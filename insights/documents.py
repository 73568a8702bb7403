"""Documents: read SDG Innovation Commons files into clean text the model sees and quotes are located in.

Contract
--------
:func:`parse_document` turns one raw string into a :class:`Document`; :func:`load_document` reads one
file. Only :class:`~insights.errors.DocumentError` ever escapes them, and it always names the file (or
the id). Reading files, folders and globs (``load_corpus``, ``scan_corpus``) lives in
:mod:`insights.corpus`, which also gives ids to files that share a stem.

The input is the archive's markdown dialect: a ``# title`` line, ``[[key:value]]`` tags, ``## section``
headings, ``> question`` lines followed by their answers, plus leftovers of the web forms it came from
(HTML tags, entities escaped up to several times, base64 images, markdown links with HTML in them).

``Document.text`` is *the* string the model is shown and that every evidence offset indexes into:

* its first line is the title (no ``#``); every later heading is a ``## Heading`` line (all heading
  levels are written as ``##``), each question a ``> question`` line (consecutive ``>`` lines are
  joined with a space, empty ones dropped), answers are paragraphs. Blocks are separated by one blank
  line; single line breaks inside a paragraph are kept; there are never two blank lines in a row, no
  leading/trailing spaces on a line and no tabs; a run of spaces/no-break spaces becomes one space
  (a single no-break space, as in French typography, is kept);
* ``[[key:value]]`` tags are removed (they are in ``metadata``). Only tags whose key starts with a
  letter count: ``[[0:11]]`` (a transcript timestamp) is text;
* HTML entities are decoded repeatedly until stable (``&amp;amp;quot;`` becomes ``"``; ``&nbsp;`` a
  space); HTML tags are removed, also those that only appear after decoding; block tags (``<div>``,
  ``<p>``, ``<br>``, ``<li>``…) become line breaks, ``<script>``/``<style>`` are removed with their
  content, HTML comments too;
* ``data:`` URIs, markdown images ``![alt](url)`` (alt text included) and any run of 200+ non-space
  ASCII characters (base64, tracking URLs) are removed. Runs in scripts written without spaces
  (Chinese, Japanese, Thai…) are kept; only ASCII runs of 200+ inside them are removed;
* a markdown link ``[label](url)`` becomes its cleaned ``label`` (the bare ``url`` if the label cleans
  to nothing); ``<https://…>`` autolinks become the bare URL; bare URLs stay;
* markdown backslash escapes (``\\.``) are unescaped; then e-mail addresses become ``[email]`` (they
  stay in ``metadata``), also when written with ``\\@``, ``&#64;``, a fullwidth ``＠`` or zero-width
  characters inside (see :func:`redact_emails`); C0 control characters are dropped; CRLF/CR become LF.

Everything else is kept character for character: prose that had no markup, entities, tabs or double
spaces in the raw file is found verbatim in ``text`` (curly quotes, accents, CJK, RTL included). Markdown
emphasis (``**bold**``), list markers and tables are left as they are.

``Document.id`` is the file name without its last extension (the whole name if it has none), or a
JSONL record's ``id`` (``<file stem>-<n>`` when a record has none, ``n`` counting records from 1). When
several files of one corpus share a stem, :mod:`insights.corpus` gives them ids from their paths instead
(the rule is stated there).
``metadata`` maps each tag key to its values in order of appearance (identical repeats dropped;
entities decoded; whitespace collapsed). A tag with no value (``[[year:]]``) keeps its key with an
empty list, so ``meta("year")`` returns the default. Sections (``Document.sections``) are the heading
and question blocks, each running from its ``##``/``>`` line to the end of its answer; text before
the first heading or question belongs to no section.

JSONL files (``.jsonl``/``.ndjson``) hold one record per line: ``{"id", "text", "metadata"}``;
metadata values may be strings, numbers or lists (all become ``list[str]``); ``metadata["title"]``, if
given (a ``[[title:…]]`` tag counts too), is the title and is put as the first line of ``text`` when the
text has no ``# `` title of its own.

PDF, DOCX and HTML files are converted, and CSV/TSV files read as records (one document per row), by
:mod:`insights.converters`, by extension; spreadsheets and other office formats are refused there.
"""

from __future__ import annotations

import bisect
import hashlib
import html
import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from . import converters
from .errors import DocumentError

__all__ = [
    "Document",
    "Section",
    "load_document",
    "parse_document",
    "read_file",
]

#: Files larger than this are refused rather than read (they are not practitioner documents).
MAX_FILE_BYTES = 64 * 1024 * 1024
#: A run of this many non-space ASCII characters is noise (base64, tracking URLs) and is removed.
LONG_TOKEN = 200
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})

_LABEL_SEP = " › "


# ------------------------------------------------------------------------------------------ records
@dataclass(frozen=True, slots=True)
class Section:
    """A heading or question block of :attr:`Document.text`.

    ``text[start:end]`` runs from the ``## heading`` or ``> question`` line to the end of its answer
    (the blank line before the next block excluded).
    """

    heading: str
    question: str
    start: int
    end: int

    @property
    def label(self) -> str:
        """``"Heading › Question"``, or whichever of the two is non-empty."""
        if self.heading and self.question:
            return f"{self.heading}{_LABEL_SEP}{self.question}"
        return self.heading or self.question


@dataclass(frozen=True, slots=True)
class Document:
    """One document, cleaned. Evidence offsets index into :attr:`text`; see the module docstring.

    Attributes:
        id: the file name without its last extension, or the JSONL record's id.
        title: the ``# `` title (else a JSONL ``metadata["title"]``, else the first line, else the id).
        metadata: every ``[[key:value]]`` tag, values in order, identical repeats dropped.
        text: the clean text the model sees.
        sections: the heading/question blocks of ``text``, ordered and non-overlapping.
        path: the file it was read from, if any.
        raw_chars: characters in the raw input (compare with ``len(text)`` to see what cleaning removed).
        source: the file's path relative to the input it was found under (a folder or glob given to
            :func:`insights.corpus.load_corpus`; a file given by name: its path as given). Not part of
            the content hash.
    """

    id: str
    title: str
    metadata: dict[str, list[str]]
    text: str
    sections: tuple[Section, ...] = ()
    path: str | None = None
    raw_chars: int = 0
    source: str | None = None
    _content_hash: str = field(init=False, repr=False, compare=False, default="")
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        canonical = json.dumps(
            [self.title, self.text, self.metadata],
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
        object.__setattr__(self, "_content_hash", digest)
        object.__setattr__(self, "_starts", tuple(s.start for s in self.sections))

    def __hash__(self) -> int:
        return hash((self.id, self._content_hash))

    @property
    def content_hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON of ``[title, text, metadata]`` (keys sorted, UTF-8)."""
        return self._content_hash

    def meta(self, key: str, default: str = "") -> str:
        """The first value of tag ``key``.

        Args:
            key: the tag key, e.g. ``"country"``.
            default: returned when the tag is absent or has no value.

        Returns:
            The first value, or ``default``.
        """
        values = self.metadata.get(key)
        return values[0] if values else default

    def section_at(self, offset: int) -> str:
        """The label of the section containing ``offset`` in :attr:`text`.

        Args:
            offset: a character offset into ``text``.

        Returns:
            The section's :attr:`Section.label`, or ``""`` when the offset lies in no section (the
            title and preamble, a blank line between blocks, or outside the text).
        """
        i = bisect.bisect_right(self._starts, offset) - 1
        if i < 0:
            return ""
        section = self.sections[i]
        return section.label if offset < section.end else ""


# ----------------------------------------------------------------------------------------- patterns
_NEWLINES = re.compile(r"\r\n?|[\x0b\x0c\x85\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ud800-\udfff]")
_CONTROL_SCAN = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_DATA_URI = re.compile(
    r"data:[A-Za-z]+/[\w.+-]+(?:;[\w.+-]+(?:=[\w.+-]*)?)*(?:;base64)?,[A-Za-z0-9+/=%._~-]*", re.IGNORECASE
)
# A value runs to the first ']]' on its line and never holds '[[' (so a scan stops at the next tag).
_TAG = re.compile(r"\[\[([A-Za-z][\w-]{0,63}):((?:[^\[\]\n]|\[(?!\[)|\](?!\])){0,8000})\]\]")
_HIDDEN_BLOCKS = ("script", "style", "noscript", "template")
_HIDDEN_OPEN = re.compile(r"<(%s)(?=[\s/>])" % "|".join(_HIDDEN_BLOCKS), re.IGNORECASE)
_HIDDEN_CLOSE = {name: re.compile(rf"</{name}\s*>", re.IGNORECASE) for name in _HIDDEN_BLOCKS}
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_BLOCK_TAGS = frozenset(
    "address article aside blockquote body br caption center dd details dialog div dl dt fieldset figcaption "
    "figure footer form h1 h2 h3 h4 h5 h6 head header hr html legend li main nav ol p pre section summary "
    "table tbody tfoot thead title tr ul".split()
)
_INLINE_TAGS = frozenset(
    "a abbr acronym b bdi bdo big cite code del dfn em font i ins kbd mark nobr q s samp small span strike "
    "strong sub sup tt u var wbr".split()
)
_OTHER_TAGS = frozenset(
    "area audio base button canvas col colgroup data datalist embed frame frameset g iframe img input label "
    "link map meta meter noscript object optgroup option output param path picture progress rect script "
    "select source style svg td template textarea th time track video".split()
)
# Anything shaped like a tag; the callbacks keep it unless its name is an HTML element (or 'ns:name',
# as in Word's <o:p>), so prose such as "a <b and c> d" only loses real tag names.
_HTML_TAG = re.compile(r"</?([A-Za-z][\w:.-]{0,40})(?=[\s/>])[^<>]*>")
_HTML_MULTILINE = re.compile(r"</?([A-Za-z][\w:.-]{0,40})(?=[\s/>])[^<>\n]*\n[^<>]*>")
# A tag cut off at the end of a line ("<div class=" with no '>'): nothing readable follows it.
_HTML_OPEN_END = re.compile(r"</?([A-Za-z][\w:.-]{0,40})(?=[\s/]|$)[^<>]*$")
_ENTITY = re.compile(r"&(#[0-9]{1,8}|#[xX][0-9a-fA-F]{1,8}|[A-Za-z][A-Za-z0-9]{1,31});")
_NBSP_ENTITIES = frozenset({"nbsp", "#160", "#xa0", "#xA0", "#Xa0", "#XA0", "#x00a0", "#x00A0"})
_LINK_URL = r"((?:[^()\n]|\([^()\n]*\))*)"
_MD_IMAGE = re.compile(r"!\[[^\[\]\n]*\]\(" + _LINK_URL + r"\)")
_MD_LINK = re.compile(r"\[([^\[\]\n]*)\]\(" + _LINK_URL + r"\)")
_AUTOLINK = re.compile(r"<((?:https?|ftp)://[^\s<>]+|mailto:[^\s<>]+)>", re.IGNORECASE)
_URL = re.compile(r"(?:https?|ftp)://\S+$", re.IGNORECASE)
_EMAIL = re.compile(r"(?:mailto:)?(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)
_LONG_RUN = re.compile(r"\S{%d,}" % LONG_TOKEN)
_LONG_ASCII = re.compile(r"[!-~]{%d,}" % LONG_TOKEN)
# Scripts written without spaces between words: long runs of them are prose, not noise.
_NO_SPACE_SCRIPT = re.compile(
    "[\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]"
)
_MD_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_SPACES = re.compile("[ \t\u00a0]{2,}|\t")
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_STRIP_CHARS = " \t\n\u00a0\u3000" + _ZERO_WIDTH
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_QUESTION = re.compile(r"^ {0,3}>[>\s]*(.*)$")
_BINARY_MAGIC = (
    (b"%PDF-", "a PDF"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive (docx/xlsx?)"),
    (b"\x1f\x8b", "gzip-compressed"),
    (b"\xd0\xcf\x11\xe0", "an OLE file (doc/xls?)"),
    (b"SQLite format 3\x00", "a SQLite database"),
)


# ------------------------------------------------------------------------------------------ cleaning
def redact_emails(value: str) -> str:
    """Replace e-mail addresses with ``[email]``, as in ``Document.text`` (for metadata sent to a model).

    Addresses are found in the string as a reader sees it: each character NFKC-folded (``＠`` is ``@``,
    fullwidth letters are letters), invisible format characters (zero-width spaces and joiners, soft
    hyphens, BOM) and markdown backslashes (``maria\\@undp.org``) ignored. What is replaced is the
    original span, those characters included; everything else is kept as it was.
    """
    if "@" not in value and "\uff20" not in value and "\ufe6b" not in value:  # what NFKC folds to "@"
        return value
    if value.isascii() and "\\" not in value:
        return _EMAIL.sub("[email]", value)
    seen: list[str] = []
    where: list[int] = []  # offset in value of each character of seen
    for i, ch in enumerate(value):
        if ch == "\\" and _MD_ESCAPE.match(value, i) or unicodedata.category(ch) == "Cf":
            continue
        for folded in unicodedata.normalize("NFKC", ch) if not ch.isascii() else ch:
            seen.append(folded)
            where.append(i)
    out: list[str] = []
    last = 0
    for m in _EMAIL.finditer("".join(seen)):
        start, end = where[m.start()], where[m.end() - 1] + 1
        out += [value[last:start], "[email]"]
        last = end
    return "".join(out) + value[last:] if out else value


def _entity(match: re.Match[str]) -> str:
    name = match.group(1)
    if name in _NBSP_ENTITIES:
        return " "
    return html.unescape(match.group(0))


def unescape_entities(s: str) -> str:
    """Decode HTML entities until nothing changes (bounded: 20 rounds), as ``Document.text`` is."""
    for _ in range(20):
        if "&" not in s:
            break
        decoded = _ENTITY.sub(_entity, s)
        if decoded == s:
            break
        s = decoded
    return s


def _control(match: re.Match[str]) -> str:
    return "\ufffd" if match.group(0) >= "\ud800" else ""


def _tag_replacement(match: re.Match[str], block: str) -> str:
    name = match.group(1).lower()
    if name in _INLINE_TAGS:
        return ""
    if name in _BLOCK_TAGS:
        return block
    if name in _OTHER_TAGS or ":" in name:
        return " "
    return match.group(0)


def _tag_in_body(match: re.Match[str]) -> str:
    return _tag_replacement(match, "\n")


def _tag_in_line(match: re.Match[str]) -> str:
    return _tag_replacement(match, " ")


def _tag_dropped(match: re.Match[str]) -> str:
    return "" if _tag_replacement(match, "") != match.group(0) else match.group(0)


def _strip_hidden_blocks(s: str) -> str:
    """Remove ``<script>…</script>`` (and style, noscript, template) with their content, in linear time.

    An opening tag with no closing tag after it is left for the tag pass (which removes the tag alone).
    """
    if not _HIDDEN_OPEN.search(s):
        return s
    out: list[str] = []
    emitted = 0  # s[:emitted] is handled
    search = 0
    unclosed: set[str] = set()
    while (opening := _HIDDEN_OPEN.search(s, search)) is not None:
        name = opening.group(1).lower()
        closing = None if name in unclosed else _HIDDEN_CLOSE[name].search(s, opening.end())
        if closing is None:
            unclosed.add(name)  # no closing tag anywhere further: stop looking for one
            search = opening.end()
            continue
        out.append(s[emitted : opening.start()])
        out.append(" ")
        emitted = search = closing.end()
    out.append(s[emitted:])
    return "".join(out)


def _long_run(match: re.Match[str]) -> str:
    run = match.group(0)
    if _NO_SPACE_SCRIPT.search(run):
        return _LONG_ASCII.sub("", run)
    return ""


def _link(match: re.Match[str]) -> str:
    label, url = match.group(1), match.group(2).strip()
    if label.strip():
        return label
    return url if _URL.match(url) else ""


def _clean_inline(s: str, *, one_line: bool) -> str:
    """Clean one line of content (already without tags/links) into plain text.

    The result may hold line breaks (from ``<br>``/``<div>``) unless ``one_line``.
    """
    if "&" in s:
        decoded = unescape_entities(s)
        if decoded != s:
            s = _CONTROL.sub(_control, _NEWLINES.sub("\n", decoded))
    if "<" in s:
        s = _strip_hidden_blocks(s)
        s = _COMMENT.sub(" ", s)
        s = _AUTOLINK.sub(r"\1", s)
        s = _HTML_TAG.sub(_tag_in_line if one_line else _tag_in_body, s)
        s = _HTML_OPEN_END.sub(_tag_dropped, s)
    if "\n" in s and one_line:
        s = s.replace("\n", " ")
    if len(s) >= LONG_TOKEN:
        s = _LONG_RUN.sub(_long_run, s)
    if "\\" in s:
        s = _MD_ESCAPE.sub(r"\1", s)
    s = redact_emails(s)  # after entities and escapes are undone, so "a\\@b.org" and "a&#64;b.org" are seen
    if "\t" in s or "  " in s or "\u00a0" in s:
        s = _SPACES.sub(" ", s)
    return s


def _strip(s: str) -> str:
    """Strip whitespace, and zero-width characters left at either end."""
    s = s.strip()
    if s and (s[0] in _ZERO_WIDTH or s[-1] in _ZERO_WIDTH):
        s = s.strip(_STRIP_CHARS)
    return s


def _clean_value(value: str) -> str:
    value = unescape_entities(value) if "&" in value else value
    return _strip(_SPACES.sub(" ", value))


def _check_text(raw: str, where: str) -> None:
    if not raw.strip():
        raise DocumentError(where, "empty document" if not raw else "document holds only whitespace")
    if "\x00" in raw:
        raise DocumentError(where, "binary content (NUL characters), not text")
    sample = raw[:65536]
    controls = len(_CONTROL_SCAN.findall(sample))
    if controls > 0.1 * len(sample):
        raise DocumentError(where, f"binary content ({controls} control characters in {len(sample)}), not text")


def _extract_tags(s: str, metadata: dict[str, list[str]]) -> str:
    def take(match: re.Match[str]) -> str:
        key, value = match.group(1), _clean_value(match.group(2))
        values = metadata.setdefault(key, [])
        if value and value not in values:
            values.append(value)
        return ""

    return _TAG.sub(take, s)


def _merge_metadata(given: Mapping[str, Any] | None, where: str) -> dict[str, list[str]]:
    metadata: dict[str, list[str]] = {}
    if not given:
        return metadata
    if not isinstance(given, Mapping):
        raise DocumentError(where, f"metadata must be an object, not {type(given).__name__}")
    for key, value in given.items():
        if value is None:
            items: list[Any] = []
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        values = metadata.setdefault(str(key), [])
        for item in items:
            if item is None:
                continue
            if isinstance(item, (dict, list, tuple)):
                text = json.dumps(item, ensure_ascii=False, sort_keys=True)
            else:
                text = str(item)
            text = _clean_value(text)
            if text and text not in values:
                values.append(text)
    return metadata


# ----------------------------------------------------------------------------------------- building
class _Builder:
    """Accumulates blocks into the text, tracking offsets of headings and questions."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.paragraph: list[str] = []
        # (start, heading, question) of every heading/question block; end filled in later
        self.marks: list[tuple[int, str, str]] = []
        self.ends: list[int] = []  # end offset of each block, in order
        self.block_is_mark: list[bool] = []

    def _add(self, block: str, mark: tuple[str, str] | None) -> None:
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        start = self.length
        self.parts.append(block)
        self.length += len(block)
        self.ends.append(self.length)
        self.block_is_mark.append(mark is not None)
        if mark is not None:
            self.marks.append((start, mark[0], mark[1]))

    def line(self, text: str) -> None:
        self.paragraph.append(text)

    def flush(self) -> None:
        if self.paragraph:
            self._add("\n".join(self.paragraph), None)
            self.paragraph = []

    def block(self, text: str, mark: tuple[str, str] | None = None) -> None:
        self.flush()
        self._add(text, mark)

    def sections(self) -> tuple[Section, ...]:
        result: list[Section] = []
        mark_blocks = [i for i, is_mark in enumerate(self.block_is_mark) if is_mark]
        for n, (start, heading, question) in enumerate(self.marks):
            last_block = (mark_blocks[n + 1] - 1) if n + 1 < len(mark_blocks) else len(self.ends) - 1
            result.append(Section(heading, question, start, self.ends[last_block]))
        return tuple(result)


def _body_lines(content: str) -> list[str]:
    """Clean a body line; returns its lines ('' marks a paragraph break)."""
    cleaned = _clean_inline(content, one_line=False)
    if "\n" not in cleaned:
        return [_strip(cleaned)]
    return [_strip(piece) for piece in cleaned.split("\n")]


def _title_from(line: str) -> str:
    if len(line) <= 200:
        return line
    cut = line[:200]
    space = cut.rfind(" ")
    return (cut[:space] if space > 80 else cut).rstrip() + "…"


def parse_document(
    raw: str,
    *,
    doc_id: str,
    path: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Document:
    """Parse one raw document into a :class:`Document` (see the module docstring for what ``text`` is).

    Args:
        raw: the document's text as read from the file (any line endings).
        doc_id: the document's id.
        path: where it came from, recorded on the document and named in errors.
        metadata: metadata known from elsewhere (a JSONL record); values may be a string, a number or
            a list. ``[[key:value]]`` tags found in ``raw`` are appended after these.

    Returns:
        The cleaned document.

    Raises:
        DocumentError: ``raw`` is not a string, is empty or whitespace-only, looks binary, or holds no
            text once tags and markup are removed.
    """
    where = path or doc_id or "<document>"
    if not isinstance(raw, str):
        raise DocumentError(where, f"expected text (str), got {type(raw).__name__}")
    _check_text(raw, where)
    meta = _merge_metadata(metadata, where)
    try:
        return _parse(raw, str(doc_id), path, meta)
    except DocumentError:
        raise
    except Exception as e:  # pragma: no cover - a safety net: only DocumentError leaves this function
        raise DocumentError(where, f"cannot parse ({type(e).__name__}: {e})") from e


def _parse(raw: str, doc_id: str, path: str | None, meta: dict[str, list[str]]) -> Document:
    where = path or doc_id or "<document>"
    s = raw
    if "\r" in s or "\x0b" in s or "\x0c" in s or "\x85" in s or "\u2028" in s or "\u2029" in s:
        s = _NEWLINES.sub("\n", s)
    s = _DATA_URI.sub("", s)
    s = _CONTROL.sub(_control, s)
    if "[[" in s:
        s = _extract_tags(s, meta)
    if "<" in s:
        s = _strip_hidden_blocks(s)
        s = _COMMENT.sub(" ", s)
        s = _HTML_MULTILINE.sub(_tag_in_line, s)
    if "](" in s:
        s = _MD_IMAGE.sub("", s)
        s = _MD_LINK.sub(_link, s)

    given_title = meta.get("title", [""])[0] if meta.get("title") else ""
    build = _Builder()
    title = ""
    first_content = True
    heading = ""
    question_parts: list[str] | None = None  # an open '>' question (consecutive lines join)

    def close_question() -> None:
        nonlocal question_parts
        if question_parts:
            q = " ".join(question_parts)
            build.block("> " + q, (heading, q))
        question_parts = None

    for line in s.split("\n"):
        if not line or line.isspace():
            close_question()
            build.flush()
            continue
        first = line.lstrip(" ")[:1]
        if first == "#" and (m := _HEADING.match(line)) is not None:
            close_question()
            text = _strip(_clean_inline(m.group(2) or "", one_line=True))
            if not text:
                continue
            if first_content and len(m.group(1)) == 1:
                title = _title_from(text)
                build.block(text)
            else:
                heading = text
                build.block("## " + text, (heading, ""))
            first_content = False
            continue
        if first == ">" and (m := _QUESTION.match(line)) is not None:
            text = _strip(_clean_inline(m.group(1), one_line=True))
            if not text:
                close_question()
                continue
            build.flush()
            if question_parts is None:
                question_parts = []
            question_parts.append(text)
            first_content = False
            continue
        pieces = _body_lines(line)
        close_question()
        for piece in pieces:
            if piece:
                build.line(piece)
                first_content = False
            else:
                build.flush()
    close_question()
    build.flush()

    if not build.parts:
        raise DocumentError(where, "no text left once tags and markup are removed")
    sections = build.sections()
    text = "".join(build.parts)
    if given_title:
        prefix = _strip(_clean_inline(given_title, one_line=True))
        if not title and prefix and text.split("\n", 1)[0] != prefix:
            shift = len(prefix) + 2
            text = prefix + "\n\n" + text
            sections = tuple(Section(x.heading, x.question, x.start + shift, x.end + shift) for x in sections)
        title = prefix or given_title
    if not title:
        first_line = text.split("\n", 1)[0]
        if first_line.startswith("## ") and sections and sections[0].start == 0:
            first_line = first_line[3:]
        elif first_line.startswith("> ") and sections and sections[0].start == 0:
            first_line = first_line[2:]
        title = _title_from(first_line) or doc_id
    return Document(
        id=doc_id,
        title=title,
        metadata=meta,
        text=text,
        sections=sections,
        path=path,
        raw_chars=len(raw),
    )


# ------------------------------------------------------------------------------------------ reading
def _read_bytes(path: Path) -> bytes:
    try:
        if path.is_dir():
            raise DocumentError(path, "is a directory, not a document (use load_corpus for folders)")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DocumentError(path, f"file is {size} bytes, over the {MAX_FILE_BYTES}-byte limit")
        return path.read_bytes()
    except FileNotFoundError as e:
        raise DocumentError(path, "no such file") from e
    except PermissionError as e:
        raise DocumentError(path, "permission denied") from e
    except IsADirectoryError as e:
        raise DocumentError(path, "is a directory, not a document (use load_corpus for folders)") from e
    except OSError as e:
        raise DocumentError(path, f"cannot read: {e.strerror or e}") from e
    except ValueError as e:  # e.g. a NUL character in the path
        raise DocumentError(path, f"cannot read: {e}") from e


def _decode(data: bytes, path: Path | str) -> str:
    """Bytes to text: UTF-8 (BOM allowed) or BOM-marked UTF-16; anything else is refused."""
    if not data:
        raise DocumentError(path, "empty file")
    for magic, what in _BINARY_MAGIC:
        if data.startswith(magic):
            raise DocumentError(path, f"binary file ({what}), not text")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise DocumentError(path, f"invalid UTF-16 text at byte {e.start}") from e
    if b"\x00" in data:
        raise DocumentError(path, "binary file (contains NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DocumentError(path, f"not UTF-8 text (invalid byte 0x{data[e.start]:02x} at offset {e.start})") from e


def _doc_id(path: Path) -> str:
    name = path.name
    stem = path.stem if path.suffix else name
    return stem or name


def _jsonl_items(path: Path, text: str, stem: str) -> Iterator[Document | DocumentError]:
    """Each record of a JSONL file as a document, or as the error that names its line (and the reading
    goes on with the next line)."""
    count = 0
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        count += 1
        try:
            yield _jsonl_record(path, line, lineno, f"{stem}-{count}")
        except DocumentError as e:
            yield e
    if count == 0:
        yield DocumentError(path, "JSONL file holds no records")


def _jsonl_record(path: Path, line: str, lineno: int, default_id: str) -> Document:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as e:
        raise DocumentError(path, f"line {lineno}: not valid JSON ({e})") from None
    if not isinstance(record, dict):
        raise DocumentError(path, f"line {lineno}: a record must be a JSON object")
    body = record.get("text")
    if not isinstance(body, str):
        raise DocumentError(path, f"line {lineno}: record has no 'text' string")
    rid = record.get("id")
    if rid is None or (isinstance(rid, str) and not rid.strip()):
        rid = default_id
    elif not isinstance(rid, (str, int)) or isinstance(rid, bool):
        raise DocumentError(path, f"line {lineno}: 'id' must be a string or an integer")
    metadata = record.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise DocumentError(path, f"line {lineno}: 'metadata' must be an object")
    try:
        return parse_document(body, doc_id=str(rid), path=str(path), metadata=metadata)
    except DocumentError as e:
        raise DocumentError(path, f"line {lineno} (id {rid!s}): {e.reason}") from None


def _is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in JSONL_SUFFIXES


def _converted(path: Path, doc_id: str | None) -> Iterator[Document]:
    for item in converters.convert(path, _read_bytes(path)):
        try:
            yield parse_document(
                item.text, doc_id=item.doc_id or doc_id or _doc_id(path), path=str(path), metadata=item.metadata
            )
        except DocumentError as e:
            raise DocumentError(path, f"{item.where}: {e.reason}" if item.where else e.reason) from None


def read_file(path: Path, doc_id: str | None = None) -> Iterator[Document | DocumentError]:
    """The documents of one file (one, or one per JSONL record), each bad JSONL record as its error.

    Args:
        path: the file.
        doc_id: the id (the JSONL default-id prefix) to use instead of the file's stem.

    Raises:
        DocumentError: the file as a whole cannot be read (missing, binary, not UTF-8, empty...).
    """
    if converters.handles(path):
        yield from _converted(path, doc_id)
        return
    raw = _decode(_read_bytes(path), path)
    base = doc_id or _doc_id(path)
    if _is_jsonl(path):
        _check_text(raw, str(path))
        yield from _jsonl_items(path, raw, base)
    else:
        yield parse_document(raw, doc_id=base, path=str(path))


def _iter_file(path: Path) -> Iterator[Document]:
    for item in read_file(path):
        if isinstance(item, DocumentError):
            raise item
        yield item


def load_document(path: str | os.PathLike[str]) -> Document:
    """Read one file (markdown, plain text, extensionless, PDF, DOCX, HTML, or a one-record JSONL/CSV).

    Args:
        path: the file.

    Returns:
        The document, its id being the file name without the last extension.

    Raises:
        DocumentError: the file is missing, a directory, unreadable, binary, not UTF-8, empty, holds
            no text after cleaning, is a JSONL/CSV file with a bad line or not exactly one record, or is
            of a refused format (a spreadsheet...).
        ConfigError: a PDF or DOCX file, and the ``documents`` extra is not installed.
    """
    try:
        p = Path(path)
    except TypeError as e:
        raise DocumentError(repr(path), "not a file path") from e
    docs = list(_iter_file(p))
    if len(docs) != 1:
        raise DocumentError(p, f"holds {len(docs)} records; use load_corpus to read several")
    return docs[0]


# ------------------------------------------------------------------------------------------- corpus
def __getattr__(name: str) -> Any:
    # Reading many files moved to insights.corpus; these names stay importable from here.
    if name in ("corpus_files", "iter_corpus", "load_corpus"):
        from . import corpus

        return getattr(corpus, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
