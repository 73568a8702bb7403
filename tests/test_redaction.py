"""E-mail addresses never reach ``Document.text``, however they are written (issue 8.8).

Redaction runs after entities and markdown escapes are undone, and finds addresses in the text as a
reader sees it (NFKC-folded, invisible format characters ignored), so ``maria.lopez\\@undp.org``,
``team@undp\\.org``, ``maria＠undp.org``, ``maria&#64;undp.org`` and zero-width-split addresses are
all replaced by ``[email]``; the offsets of everything else stay consistent.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from insights.documents import DocumentError, load_document, parse_document, redact_emails

EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")

WRITTEN = [
    "maria.lopez\\@undp.org",  # markdown-escaped @
    "team@undp\\.org",  # markdown-escaped dot
    "maria＠undp.org",  # fullwidth @
    "maria﹫undp.org",  # small @
    "ｍａｒｉａ＠ｕｎｄｐ．ｏｒｇ",  # all fullwidth
    "maria\u200b@undp.org",  # zero-width space before @
    "maria@\u200bundp.org",  # and after
    "ma\u200dria@un\u2060dp.org",  # joiner and word joiner inside the parts
    "maria\u00ad@undp.org",  # soft hyphen
    "maria&#64;undp.org",  # entity
    "maria&amp;#64;undp&#46;org",  # double-escaped entity and an escaped dot
    "maria\\@undp\\.org\u200b",  # escapes and a trailing zero-width space
]


def seen(text: str) -> str:
    """``text`` as a reader sees it: folded, invisible characters and markdown backslashes dropped."""
    folded = "".join(c for c in unicodedata.normalize("NFKC", text) if unicodedata.category(c) != "Cf")
    return folded.replace("\\", "")


def assert_sections_index_the_text(doc) -> None:  # type: ignore[no-untyped-def]
    for section in doc.sections:
        block = doc.text[section.start : section.end]
        assert block.startswith(("## ", "> ")), block[:40]


@pytest.mark.parametrize("address", WRITTEN)
@pytest.mark.parametrize(
    "template",
    [
        "# Pilot report\n\n## Contacts\n\nWrite to {} for the data.\nThe district office could not release funds.\n",
        "# Pilot report\n\n## Write to {} for the data\n\nThe district office could not release funds.\n",
        "# Pilot report\n\n> Who is the focal point ({})?\n\nThe district office could not release funds.\n",
        "# Report by {}\n\nThe district office could not release funds before the end of the quarter.\n",
    ],
    ids=["paragraph", "heading", "question", "title"],
)
def test_an_address_however_written_is_redacted_from_the_text(address: str, template: str) -> None:
    doc = parse_document(template.format(address), doc_id="mail")
    assert "[email]" in doc.text
    assert "maria" not in seen(doc.text).lower() and "undp" not in seen(doc.text).lower()
    assert not EMAIL.search(seen(doc.text))
    assert "The district office could not release funds" in doc.text
    assert "[email]" in doc.title or "[email]" not in template.split("\n", 1)[0].format(address)
    assert_sections_index_the_text(doc)


@pytest.mark.parametrize("address", WRITTEN)
def test_an_address_however_written_is_redacted_from_a_metadata_value_sent_to_a_model(address: str) -> None:
    doc = parse_document(f"# Pilot\n\n[[type:blog by {address}]]\n\nThe office had no budget line.", doc_id="t")
    [value] = doc.metadata["type"]
    assert EMAIL.search(seen(value))  # the tag keeps the address ...
    redacted = redact_emails(value)
    assert redacted.startswith("blog by [email]") and not EMAIL.search(seen(redacted))  # ... nothing else does


def test_redaction_keeps_the_text_around_the_address_as_it_was() -> None:
    raw = "# T\n\nAsk maria\u200b@undp.org — or ｍａｒｉａ＠ｕｎｄｐ．ｏｒｇ, “now”.\n"
    assert parse_document(raw, doc_id="x").text == "T\n\nAsk [email] — or [email], “now”."


def test_a_jsonl_title_with_an_escaped_address_is_redacted(tmp_path: Path) -> None:
    record = {"id": "r1", "text": "The office had no budget line.", "metadata": {"title": "Notes by ana\\@x.org"}}
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    doc = load_document(path)
    assert doc.title == "Notes by [email]" and doc.text.startswith("Notes by [email]\n\n")


_LOCAL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=10).filter(
    lambda s: s[0].isalnum() and s[-1].isalnum() and ".." not in s
)
_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_AT = st.sampled_from(["@", "\\@", "＠", "﹫", "&#64;", "&amp;#64;", "\u200b@", "@\u200b", "\u2060@\u00ad"])
_DOT = st.sampled_from([".", "\\.", "．", "&#46;", "\u200b."])
_AROUND = st.sampled_from(["", " ", "(", ") ", "\u200b", "<b>", "</b> ", "**", ", ", "mailto:"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=_AROUND,
    local=_LOCAL,
    at=_AT,
    domain=st.lists(_LABEL, min_size=2, max_size=3),
    dots=st.lists(_DOT, min_size=2, max_size=2),
    after=_AROUND,
    place=st.sampled_from(["# {}\n\nbody text", "# T\n\nSee {} here.", "# T\n\n## {}\n\nx", "# T\n\n> {}?\n\nx"]),
)
def test_property_no_address_a_reader_would_see_reaches_the_text(
    before: str, local: str, at: str, domain: list[str], dots: list[str], after: str, place: str
) -> None:
    host = domain[0] + "".join(d + label for d, label in zip(dots, domain[1:], strict=False))
    raw = place.format(before + local + at + host + after)
    try:
        doc = parse_document(raw, doc_id="prop")
    except DocumentError:
        return
    assert not EMAIL.search(seen(doc.text)), (raw, doc.text)
    assert_sections_index_the_text(doc)
