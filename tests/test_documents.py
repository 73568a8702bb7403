"""Tests for insights.documents: parsing, cleaning, offsets, loading and the errors it raises."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from conftest import SEEDS, SHARED_CORPUS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from insights.documents import (
    Document,
    Section,
    corpus_files,
    iter_corpus,
    load_corpus,
    load_document,
    parse_document,
)
from insights.errors import DocumentError, InsightsError

DATA = Path(__file__).resolve().parent / "data" / "documents"
CORPUS = SHARED_CORPUS

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
LONG_RUN = re.compile(r"\S{200,}")
NOISE = ("base64,", "data:image", "<div", "&amp;", "&lt;", "&gt;", "&quot;", "&nbsp;", "<br", "<span", "\r", "\t")


def seed(prefix: str) -> Path:
    (path,) = SEEDS.glob(f"{prefix}_*.txt")
    return path


def assert_clean(doc: Document) -> None:
    """Invariants every loaded document must satisfy."""
    text = doc.text
    assert text and text == text.strip()
    for noise in NOISE:
        assert noise not in text, (doc.id, noise)
    assert not EMAIL.search(text), (doc.id, EMAIL.search(text))
    assert not LONG_RUN.search(text), doc.id
    assert "\n\n\n" not in text
    assert not re.search(r"[ \t]\n|\n[ \t]", text), doc.id
    assert "[[" not in text or not re.search(r"\[\[[A-Za-z][\w-]*:", text)
    assert text.split("\n", 1)[0] == doc.title or len(doc.title) > 150 or doc.title.endswith("…")
    assert_sections(doc)


def assert_sections(doc: Document) -> None:
    previous_end = 0
    for section in doc.sections:
        assert isinstance(section, Section)
        assert 0 <= previous_end <= section.start < section.end <= len(doc.text)
        previous_end = section.end
        block = doc.text[section.start : section.end]
        if section.question:
            assert block.startswith("> " + section.question)
        else:
            assert block.startswith("## " + section.heading)
        assert section.label
        assert doc.section_at(section.start) == section.label
        assert doc.section_at(section.end - 1) == section.label
        assert not block.endswith("\n")


# ----------------------------------------------------------------------------------------------- seeds
SEED_TITLES = {
    "000": "Closing VN Government Innovation Lab Journey",
    "001": "Beyond the Paper Trail: Stories from Accelerator Lab on Public Sector Innovation in Viet Nam",
    "002": "Creating a hands-on experience for government officials to learn about social innovation",
    "003": "Closing of: Public Sector Innovation Changemakers Journey & Playbook for civil servants",
    "004": "Promoting Viet Nam Government/Public Sector Innovation",
}

#: (seed, sentence copied from the raw file's prose, the label of the section it is in)
SEED_SENTENCES = [
    (
        "000",
        "Consistent and engaged senior Leadership was a highly important component in the successes case "
        "and breakthroughs in our projects.",
        "Learnings on your challenge › What are the top 5 key insights you generated about your frontier "
        "challenge during this Action Learning Plan?",
    ),
    (
        "001",
        "How can we foster innovation in the public sector of Viet Nam? This is the question that drives the "
        "Viet Nam Accelerator Lab,",
        "",
    ),
    (
        "002",
        "Our challenge is that government officials in Vietnam often lack opportunities and venues to learn "
        "about social innovation and test new policy ideas.",
        "Challenge statement › Challenge statement:\u00a0What is your challenge? (Please answer in specific "
        'terms: "Our challenge is that...”.)',
    ),
    (
        "003",
        "The government lab studio approach helped public servants to innovate in a safe working environment.",
        "Learnings on your challenge › What are the top key insights you generated about your learning "
        "challenge during this Action Learning Plan? (Please list a maximum of 5 key insights)",
    ),
    (
        "004",
        "Our challenge is that government officials lack incentives to change or adopt new innovative practices.",
        "Challenge statement › Challenge statement:\u00a0What is your challenge? (Please answer in specific "
        'terms: "Our challenge is that...”.)',
    ),
]


@pytest.mark.parametrize("prefix", sorted(SEED_TITLES))
def test_seed_loads_clean(prefix: str) -> None:
    path = seed(prefix)
    doc = load_document(path)
    assert doc.id == path.stem
    assert doc.title == SEED_TITLES[prefix]
    assert doc.text.startswith(SEED_TITLES[prefix] + "\n\n")
    assert doc.path == str(path)
    assert doc.raw_chars == len(path.read_text(encoding="utf-8"))
    assert len(doc.text) < doc.raw_chars
    assert doc.meta("country") == "Vietnam"
    assert_clean(doc)


@pytest.mark.parametrize(("prefix", "sentence", "label"), SEED_SENTENCES)
def test_seed_sentence_verbatim_and_section(prefix: str, sentence: str, label: str) -> None:
    path = seed(prefix)
    assert sentence in path.read_text(encoding="utf-8")
    doc = load_document(path)
    assert doc.text.count(sentence) == 1
    offset = doc.text.index(sentence)
    assert doc.section_at(offset) == label
    assert doc.section_at(offset + len(sentence) - 1) == label


def test_seed_000_metadata() -> None:
    doc = load_document(seed("000"))
    assert doc.metadata["year"] == ["2022"]
    assert doc.metadata["type"] == ["learningplan"]
    assert doc.metadata["country"] == ["Vietnam"]
    assert doc.metadata["focal_point"] == ["nguyen.tuan.luong@undp.org"]
    assert len(doc.metadata["datasources"]) == 15
    assert doc.metadata["datasources"][0] == "Sensor & sensor network data"
    assert doc.metadata["datasources"][-1] == "written policies"
    assert len(doc.metadata["methods"]) == 12
    assert doc.metadata["latlng"] == ["16.64218260604241,106.30093523600311"]
    assert "," in doc.meta("latlng")
    keys = ["focal_point", "year", "type", "datasources", "methods", "country", "latlng"]
    assert list(doc.metadata) == keys
    assert "nguyen.tuan.luong" not in doc.text
    # the raw file holds triple-escaped HTML; none of it survives
    assert "&amp;amp;" in seed("000").read_text(encoding="utf-8")
    assert "Times New Roman" not in doc.text
    labels = [s.label for s in doc.sections]
    assert len(labels) == 18
    assert labels[0] == "Learnings on your challenge"
    assert labels[-1].startswith("End › Please upload any further supporting evidence")
    assert [s.heading for s in doc.sections if not s.question] == [
        "Learnings on your challenge",
        "Data and Methods",
        "Partners",
        "End",
    ]


def test_seed_001_source_url_with_colons() -> None:
    doc = load_document(seed("001"))
    assert doc.metadata["source"] == [
        "https://www.undp.org/vietnam/blog/beyond-paper-trail-stories-accelerator-lab-public-sector-innovation-viet-nam"
    ]
    assert doc.meta("date") == "NOVEMBER 15, 2023"
    assert doc.sections == ()
    # the markdown link keeps its label, not its URL
    assert "Original article published here" in doc.text
    assert "](" not in doc.text


def test_seed_002_empty_questions_and_groups() -> None:
    doc = load_document(seed("002"))
    assert doc.metadata["focal_point"] == ["lanphan35@gmail.com"]
    assert doc.metadata["sdgs"] == [
        "8. Decent work and economic growth",
        "9. Industry, innovation and infrastructure",
        "17. Partnerships for the goals",
    ]
    assert len(doc.sections) == 24
    assert "\n> \n" not in doc.text and not doc.text.endswith(">")
    assert all(s.question.strip() == s.question for s in doc.sections)
    # an empty '## Challenge classification' section directly followed by '## Partners'
    (empty,) = [s for s in doc.sections if s.heading == "Challenge classification"]
    assert doc.text[empty.start : empty.end] == "## Challenge classification"
    # a markdown link whose label is the URL becomes the bare URL, once
    url = (
        "https://www.moha.gov.vn/danh-muc/"
        "nhan-tai-va-chinh-sach-thu-hut-su-dung-nhan-tai-cho-nen-cong-vu-viet-nam-45411.html"
    )
    assert doc.text.count(url) == 1


def test_seed_003_title_entities_decoded() -> None:
    doc = load_document(seed("003"))
    assert "&amp;" in seed("003").read_text(encoding="utf-8").splitlines()[0]
    assert doc.text.splitlines()[0] == SEED_TITLES["003"]
    assert doc.metadata["methods"][0] == "Visual Thinking & Mapping"


def test_content_hash_stable_and_sensitive() -> None:
    a = load_document(seed("000"))
    b = load_document(seed("000"))
    assert a.content_hash == b.content_hash
    assert re.fullmatch(r"[0-9a-f]{64}", a.content_hash)
    assert a == b and hash(a) == hash(b)
    changed = dataclasses.replace(a, text=a.text + "!")
    assert changed.content_hash != a.content_hash
    other_meta = dataclasses.replace(a, metadata={**a.metadata, "year": ["2023"]})
    assert other_meta.content_hash != a.content_hash
    # the path is not content
    moved = dataclasses.replace(a, path="elsewhere.md")
    assert moved.content_hash == a.content_hash
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.text = "x"  # type: ignore[misc]


def test_meta_default_and_section_at_outside() -> None:
    doc = load_document(seed("000"))
    assert doc.meta("nope") == ""
    assert doc.meta("nope", "fallback") == "fallback"
    assert doc.section_at(0) == ""  # the title line
    assert doc.section_at(-5) == ""
    assert doc.section_at(len(doc.text) + 10) == ""
    gap = doc.sections[0].end  # the blank line after the first heading
    assert doc.text[gap : gap + 2] == "\n\n"
    assert doc.section_at(gap) == ""


def test_section_label() -> None:
    assert Section("H", "Q?", 0, 1).label == "H › Q?"
    assert Section("H", "", 0, 1).label == "H"
    assert Section("", "Q?", 0, 1).label == "Q?"
    assert Section("", "", 0, 1).label == ""


# --------------------------------------------------------------------------------------- fixture files
def test_noisy_fixture_cleaning() -> None:
    path = DATA / "noisy.md"
    raw = path.read_text(encoding="utf-8")
    assert "base64," in raw and "<script>" in raw
    doc = load_document(path)
    assert_clean(doc)
    assert doc.title == "Noisy & messy: a test document"
    assert doc.metadata["methods"] == ["Design Thinking", "Ethnography"]  # identical repeat dropped
    assert doc.metadata["source"] == ["https://example.org/a:b?x=1&y=2"]
    assert doc.metadata["year"] == []  # a tag with no value keeps its key
    assert doc.meta("year", "n/a") == "n/a"
    assert doc.metadata["focal_point"] == ["jane.doe@undp.org"]
    text = doc.text
    assert "The ministry's budget cycle blocked the pilot for six months.\nIt was a hard lesson." in text
    assert "Contact [email] or write to us for details." in text
    assert "See the report and https://example.org/raw." in text
    assert "junk" not in text and "tracking" not in text and "color" not in text
    assert "Token: end." in text
    assert "The city council and the national statistics office helped." in text
    assert "中文的句子没有空格但是应该保留下来。" in text
    assert [s.label for s in doc.sections] == [
        "Learnings on your challenge",
        "Learnings on your challenge › What did you learn?",
        "Partners",
        "Partners › Who helped?",
    ]
    offset = text.index("budget cycle")
    assert doc.section_at(offset) == "Learnings on your challenge › What did you learn?"
    assert doc.section_at(text.index("statistics office")) == "Partners › Who helped?"


def test_extensionless_file() -> None:
    doc = load_document(DATA / "Common")
    assert doc.id == "Common"
    assert doc.title == "Common grounding"
    assert doc.metadata == {"type": ["skills"]}
    assert [s.heading for s in doc.sections][:3] == ["Overview", "Purpose", "How it works"]
    sentence = "Common Grounding is a skill used in public and social innovation work"
    assert doc.section_at(doc.text.index(sentence)) == "Overview"
    assert_clean(doc)


def test_transcript_tags_before_title_and_subheadings() -> None:
    doc = load_document(DATA / "Experimenters_COD.md")
    assert doc.title == "Digitalizing Justice System for Anti Corruption in Democratic Republic of Congo."
    assert doc.text.startswith(doc.title + "\n\n")
    assert doc.meta("audio").endswith("Experimenters_COD.m4a")
    assert doc.meta("ai_summary").startswith("Tatiana Lukama Binda")
    assert "Recognize local expertise" in doc.metadata["principles"]
    # '### [[0:11]] question' lines are sections; a timestamp is not a tag
    assert "0" not in doc.metadata
    assert len(doc.sections) == 7
    first = "[[0:11]] Could you tell me about an R&D activity you would like to share?"
    assert doc.sections[0].heading == first
    # markdown escapes are undone
    assert "I consent to this recording." in doc.text and "\\." not in doc.text
    assert_clean(doc)


def test_french_accents_and_typography_kept() -> None:
    path = DATA / "covid_niger_fr.md"
    doc = load_document(path)
    assert doc.title == "COVID 19 : leçons pour la digitalisation au Niger"
    assert doc.meta("date") == "27 AOÛT 2020"
    sentence = "L’accessibilité de l’outil digital continue toutefois de faire face à de nombreux défis."
    assert sentence in path.read_text(encoding="utf-8")
    assert sentence in doc.text
    assert_clean(doc)


def test_arabic_in_real_document_kept() -> None:
    doc = load_document(DATA / "madaba_ar.md")
    assert "Shababuna Ezwieh (شبابنا عزوة), a non-profit organization" in doc.text
    assert_clean(doc)


def test_empty_title_line_and_duplicate_tags() -> None:
    doc = load_document(DATA / "confection_haiti.md")
    assert doc.title == "1- Confection de poubelles avec des bouteilles en plastiques."
    assert doc.text == doc.title
    assert doc.metadata["country"] == ["Haiti"]  # four identical tags, one value
    assert doc.metadata["latlng"] == ["18.938371436631993,-72.69087406294194"]
    assert doc.metadata["sdgs"] == ["6. Clean water and sanitation", "15. Life on land"]
    assert "Missing alt text" not in doc.text


def test_garbage_markdown_link() -> None:
    path = DATA / "angola_markets.md"
    assert "&amp;amp;amp;nbsp;<div>" in path.read_text(encoding="utf-8")
    doc = load_document(path)
    url = "https://undp.sharepoint.com/:f:/s/Angola/EmLEn35jWHJChgdbwSpMMn4BuPPlHdQu0I9_KkpHb4x12Q?e=Mzei9d"
    assert url + "\n" in doc.text
    assert doc.text.count("Voices of Mutundo Age: 54 Ir para este Sway") == 1
    assert_clean(doc)


# ---------------------------------------------------------------------------------------- whole corpus
@pytest.fixture(scope="module")
def corpus() -> list[Document]:
    if not CORPUS.is_dir():
        pytest.skip("shared corpus not present (../shared/corpus)")
    return load_corpus(CORPUS)  # its speed is measured by benchmarks/bench_load.py, not asserted here


def test_corpus_loads_every_file(corpus: list[Document]) -> None:
    files = [p for p in CORPUS.iterdir() if p.is_file() and not p.name.startswith(".")]
    assert len(corpus) == len(files) == 252
    assert len({d.id for d in corpus}) == 252
    assert {d.id for d in corpus} >= {"Flourish", "Participatory", "NESTA", "RCTs"}


def test_corpus_text_is_clean(corpus: list[Document]) -> None:
    for doc in corpus:
        assert_clean(doc)
        assert doc.title


def test_corpus_noise_is_stripped(corpus: list[Document]) -> None:
    by_id = {d.id: d for d in corpus}
    for name in ("Participatory", "Flourish"):
        doc = by_id[name]
        assert doc.raw_chars > 400_000
        assert len(doc.text) < 5_000
        assert "## Overview" in doc.text
    raw = sum(d.raw_chars for d in corpus)
    clean = sum(len(d.text) for d in corpus)
    assert clean < raw * 0.7


def test_corpus_emails_stay_in_metadata(corpus: list[Document]) -> None:
    with_focal = [d for d in corpus if d.metadata.get("focal_point")]
    assert len(with_focal) > 100
    assert any(EMAIL.search(v) for d in with_focal for v in d.metadata["focal_point"])


# ----------------------------------------------------------------------------------------- bad inputs
def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_bytes(data.encode("utf-8"))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.md", b"", "empty"),
        ("blank.md", b"  \n\n\t \n", "whitespace"),
        ("nul.md", b"# Title\n\nsome text\x00\x01\x02 more", "NUL"),
        ("latin1.md", "# Café\n\nrésumé".encode("latin-1"), "UTF-8"),
        ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "binary"),
        ("controls.txt", bytes(range(1, 9)) * 50 + b"text", "binary"),
        ("tags.md", b"[[type:blog]]\n[[year:2022]]\n\n[[country:Chad]]\n", "no text"),
        ("images.md", b"[[type:x]]\n![](data:image/png;base64,iVBORw0KGgo=)\n<div><br></div>\n", "no text"),
        ("bom_only.md", b"\xef\xbb\xbf", "empty"),
    ],
)
def test_bad_inputs_raise_document_error(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    path = write(tmp_path, name, data)
    with pytest.raises(DocumentError) as info:
        load_document(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
    assert reason.lower() in info.value.reason.lower()
    assert isinstance(info.value, InsightsError)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="no such file") as info:
        load_document(tmp_path / "absent.md")
    assert "absent.md" in str(info.value)
    with pytest.raises(DocumentError, match="directory"):
        load_document(tmp_path)
    with pytest.raises(DocumentError, match="no such file"):
        load_corpus([tmp_path / "absent"])
    with pytest.raises(DocumentError, match="no files match"):
        load_corpus(str(tmp_path / "*.nothing"))


def test_parse_document_rejects_non_text() -> None:
    with pytest.raises(DocumentError):
        parse_document(b"bytes", doc_id="x")  # type: ignore[arg-type]
    with pytest.raises(DocumentError) as info:
        parse_document("   ", doc_id="my-id")
    assert "my-id" in str(info.value)


def test_crlf_and_bom(tmp_path: Path) -> None:
    raw = b"\xef\xbb\xbf# Title\r\n\r\n[[year:2020]]\r\n## Part\r\n\r\nLine one.\r\nLine two.\r\n"
    path = write(tmp_path, "crlf.md", raw)
    doc = load_document(path)
    assert "\r" not in doc.text and "\ufeff" not in doc.text
    assert doc.text == "Title\n\n## Part\n\nLine one.\nLine two."
    assert doc.metadata == {"year": ["2020"]}
    assert doc.sections == (Section("Part", "", 7, len(doc.text)),)


def test_utf16_with_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "wide.txt", "# Wide\n\nSaved by Notepad.".encode("utf-16"))
    assert load_document(path).text == "Wide\n\nSaved by Notepad."


def test_rtl_and_cjk_unchanged(tmp_path: Path) -> None:
    arabic = "يواجه الموظفون الحكوميون عوائق كثيرة عند تجربة أفكار جديدة، لكن القيادة الداعمة تساعدهم."
    hebrew = "הצוות למד שהניסוי נכשל בגלל חוסר תקציב."
    chinese = "地方政府缺乏创新激励机制" * 30  # 360 characters without a space: prose, not noise
    japanese = "実験は予算不足のために失敗しましたが、多くのことを学びました。"
    body = "\n\n".join([arabic, hebrew, chinese, japanese])
    path = write(tmp_path, "scripts.md", f"# عنوان\n\n## Section\n\n{body}\n")
    doc = load_document(path)
    assert doc.title == "عنوان"
    for sentence in (arabic, hebrew, chinese, japanese):
        assert sentence in doc.text
        assert doc.section_at(doc.text.index(sentence)) == "Section"


def test_long_ascii_token_inside_cjk_removed() -> None:
    noise = "A" * 300
    doc = parse_document(f"# t\n\n中文{noise}中文 and more", doc_id="x")
    assert doc.text == "t\n\n中文中文 and more"


def test_short_data_uris_removed_everywhere() -> None:
    raw = (
        "# T\n\nLogo data:image/png;base64,iVBORw0KGgo= inline, "
        "<img src='data:image/gif;base64,R0lGOD=='> and "
        '<a href="data:text/html;charset=utf-8,hello">a link</a>; '
        "![chart](data:image/svg+xml;base64,PHN2Zz4=) end."
    )
    doc = parse_document(raw, doc_id="d")
    assert doc.text == "T\n\nLogo inline, and a link; end."


def test_multi_megabyte_document(tmp_path: Path) -> None:
    paragraph = "Pilots stalled when the procurement rules changed mid-year, so the team found partners. "
    parts = ["# Big report", "[[type:publications]]"]
    for i in range(600):
        parts.append(f"## Chapter {i}")
        parts.append(f"> Question {i}?")
        parts.append(paragraph * 40)
    raw = "\n\n".join(parts) + "\n"
    assert len(raw) > 2_000_000
    path = write(tmp_path, "big.md", raw)
    doc = load_document(path)
    assert len(doc.sections) == 1200
    assert doc.sections[-1].label == "Chapter 599 › Question 599?"
    assert doc.section_at(len(doc.text) - 5) == "Chapter 599 › Question 599?"
    assert_sections(doc)


def test_tag_without_value_and_duplicates() -> None:
    doc = parse_document(
        "# T\n[[year:]]\n[[methods:A]]\n[[methods: B ]]\n[[methods:A]]\n[[country:Peru]]\n\nBody text.",
        doc_id="t",
    )
    assert doc.metadata == {"year": [], "methods": ["A", "B"], "country": ["Peru"]}
    assert doc.text == "T\n\nBody text."
    assert doc.meta("year") == ""


def test_metadata_argument_is_merged_first() -> None:
    doc = parse_document("[[country:Peru]]\nBody.", doc_id="t", metadata={"country": "Chile", "year": 2021})
    assert doc.metadata == {"country": ["Chile", "Peru"], "year": ["2021"]}


def test_no_title(tmp_path: Path) -> None:
    raw = "Just a first line of prose.\nAnd a second one.\n\nA new paragraph.\n"
    path = write(tmp_path, "plain.txt", raw)
    doc = load_document(path)
    assert doc.id == "plain"
    assert doc.title == "Just a first line of prose."
    assert doc.text == "Just a first line of prose.\nAnd a second one.\n\nA new paragraph."
    assert doc.sections == ()


def test_heading_first_and_later_h1(tmp_path: Path) -> None:
    doc = parse_document("Intro line.\n\n# Later H1\n\ntext\n\n### Deep\n\nmore", doc_id="d")
    assert doc.title == "Intro line."
    assert [s.label for s in doc.sections] == ["Later H1", "Deep"]
    assert "## Later H1" in doc.text and "## Deep" in doc.text


def test_questions_join_and_question_before_heading() -> None:
    doc = parse_document("# T\n\n> First part\n> second part?\n\nAnswer.\n\n## H\n\n> Q2\nA2", doc_id="q")
    assert doc.text == "T\n\n> First part second part?\n\nAnswer.\n\n## H\n\n> Q2\n\nA2"
    assert [s.label for s in doc.sections] == ["First part second part?", "H", "H › Q2"]
    assert doc.sections[0].heading == ""
    assert doc.text[doc.sections[0].start : doc.sections[0].end] == "> First part second part?\n\nAnswer."


def test_file_name_with_several_dots(tmp_path: Path) -> None:
    path = write(tmp_path, "report.v2.final.md", "# R\n\nbody")
    assert load_document(path).id == "report.v2.final"


# ---------------------------------------------------------------------------------------------- JSONL
def test_jsonl_records(tmp_path: Path) -> None:
    records = [
        {"id": "rec-1", "text": "# First\n\n## Part\n\nHello &amp;amp; welcome.", "metadata": {"country": "Chad"}},
        {"id": 7, "text": "No title here.\n[[year:2021]]", "metadata": {"methods": ["A", "B"], "title": "Given"}},
        {"text": "Third record without an id."},
    ]
    path = write(tmp_path, "batch.jsonl", "\n".join(json.dumps(r) for r in records) + "\n\n")
    docs = load_corpus(path)
    assert [d.id for d in docs] == ["rec-1", "7", "batch-3"]
    first, second, third = docs
    assert first.title == "First"
    assert first.text == "First\n\n## Part\n\nHello & welcome."
    assert first.metadata == {"country": ["Chad"]}
    assert first.path == str(path)
    assert second.metadata == {"methods": ["A", "B"], "title": ["Given"], "year": ["2021"]}
    assert second.title == "Given"
    assert second.text == "Given\n\nNo title here."
    assert third.title == "Third record without an id."
    with pytest.raises(DocumentError, match="load_corpus"):
        load_document(path)


def test_jsonl_single_record(tmp_path: Path) -> None:
    path = write(tmp_path, "one.jsonl", json.dumps({"id": "only", "text": "# One\n\nBody"}) + "\n")
    doc = load_document(path)
    assert (doc.id, doc.title, doc.text) == ("only", "One", "One\n\nBody")


@pytest.mark.parametrize(
    ("lines", "lineno"),
    [
        (['{"id": "a", "text": "ok"}', "{not json", '{"id": "c", "text": "ok"}'], 2),
        (['{"id": "a", "text": "ok"}', "", '["a list"]'], 3),
        (['{"id": "a"}'], 1),
        (['{"id": "a", "text": "ok"}', '{"id": "b", "text": "[[type:x]]"}'], 2),
        (['{"id": "a", "text": "ok", "metadata": "not a dict"}'], 1),
    ],
)
def test_jsonl_bad_line(tmp_path: Path, lines: list[str], lineno: int) -> None:
    path = write(tmp_path, "bad.jsonl", "\n".join(lines))
    with pytest.raises(DocumentError) as info:
        load_corpus(path)
    assert str(path) in str(info.value)
    assert f"line {lineno}" in str(info.value)


# --------------------------------------------------------------------------------------------- corpus
def make_tree(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden_dir").mkdir()
    write(root, "b.md", "# B\n\nbody b")
    write(root, "a.txt", "# A\n\nbody a")
    write(root / "sub", "c.md", "# C\n\nbody c")
    write(root / "sub" / "deeper", "d", "# D\n\nbody d")
    write(root, ".secret.md", "# hidden\n\nno")
    write(root / ".hidden_dir", "e.md", "# hidden\n\nno")
    return root


def test_folder_loading_sorted_recursive_skips_hidden(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    docs = load_corpus(root)
    assert [d.id for d in docs] == ["a", "b", "c", "d"]
    assert [d.title for d in docs] == ["A", "B", "C", "D"]
    assert [p.name for p in corpus_files(str(root))] == ["a.txt", "b.md", "c.md", "d"]


def test_glob_and_list_loading(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    assert [d.id for d in load_corpus(str(root / "*.md"))] == ["b"]
    assert [d.id for d in load_corpus(str(root / "**" / "*.md"))] == ["b", "c"]
    docs = load_corpus([root / "sub", root / "a.txt", root / "sub" / "c.md"])  # c reached twice, kept once
    assert [d.id for d in docs] == ["c", "d", "a"]
    # a hidden file named explicitly is read
    assert load_corpus([root / ".secret.md"])[0].title == "hidden"


def test_iter_corpus_is_lazy_and_on_error(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    write(root, "broken.md", b"\xff\xfe\xfa not text\x00")
    it = iter_corpus(root)
    assert next(it).id == "a"
    with pytest.raises(DocumentError):
        load_corpus(root)
    errors: list[DocumentError] = []
    docs = load_corpus(root, on_error=errors.append)
    assert [d.id for d in docs] == ["a", "b", "c", "d"]
    assert len(errors) == 1 and errors[0].path.endswith("broken.md")


def test_files_sharing_a_stem_get_their_names_as_ids_and_repeated_record_ids_are_rejected(tmp_path: Path) -> None:
    write(tmp_path, "x.md", "# one\n\nbody")
    write(tmp_path, "x.txt", "# two\n\nbody")
    assert [d.id for d in load_corpus(tmp_path)] == ["x.md", "x.txt"]  # the rule: insights/corpus.py
    write(tmp_path, "y.jsonl", json.dumps({"id": "x.md", "text": "# three\n\nbody"}))
    with pytest.raises(DocumentError, match="duplicate document id 'x.md'"):
        load_corpus(tmp_path)


def test_empty_folder_gives_no_documents(tmp_path: Path) -> None:
    assert load_corpus(tmp_path) == []


# ------------------------------------------------------------------------------------------- property
SOUP = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "[[",
                "]]",
                ":",
                "<",
                ">",
                "&amp;",
                "&lt;",
                "&#10;",
                "&#13;",
                "#",
                "## ",
                "> ",
                "\n",
                "\r\n",
                "\n\n",
                " ",
                "\t",
                "[[year:",
                "[[methods:x]]",
                "<div>",
                "</div>",
                "<br>",
                "](",
                "![](",
                "[",
                ")",
                "data:image/png;base64,",
                "AAAA",
                "@",
                "a@b.org",
                "\\.",
                "\u00a0",
                "\u200b",
                "中文",
                "שלום",
                "&amp;amp;lt;div&amp;amp;gt;",
                "<script>",
                "</script>",
                "<!--",
                "-->",
                "\x0c",
                "\u2028",
            ]
        ),
        st.text(min_size=1, max_size=12),
    ),
    max_size=60,
).map("".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=SOUP)
def test_property_soup_gives_document_or_document_error(raw: str) -> None:
    try:
        doc = parse_document(raw, doc_id="soup")
    except DocumentError as e:
        assert e.path == "soup"
        return
    assert isinstance(doc, Document)
    assert doc.text and doc.text == doc.text.strip()
    assert "\r" not in doc.text and "\n\n\n" not in doc.text
    assert all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in doc.metadata.values())
    assert not EMAIL.search(doc.text)
    assert_sections(doc)
    assert len(doc.content_hash) == 64


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300))
def test_property_bytes_give_document_or_document_error(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("bin") / "f.md"
    path.write_bytes(data)
    try:
        doc = load_document(path)
    except DocumentError as e:
        assert e.path == str(path)
        return
    assert doc.text and doc.id == "f"
    assert_sections(doc)
