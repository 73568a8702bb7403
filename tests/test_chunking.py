"""Chunks cover the text, respect the size limit, overlap, and cut at boundaries."""

from __future__ import annotations

from conftest import SEEDS

import insights
from insights.chunking import split


def test_short_text_is_one_chunk() -> None:
    [chunk] = split("short text", 100)
    assert (chunk.part, chunk.parts, chunk.start, chunk.end) == (1, 1, 0, 10)


def test_chunks_cover_everything_within_the_limit_and_overlap() -> None:
    text = insights.load_document(SEEDS / "004_578e9dd3e6ef0cec.txt").text
    chunks = split(text, 3000, 300)
    assert len(chunks) >= 4
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    assert all(c.end - c.start <= 3000 for c in chunks)
    assert [c.part for c in chunks] == list(range(1, len(chunks) + 1))
    assert all(c.parts == len(chunks) for c in chunks)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.start < b.start <= a.end  # progress, and no gap
        assert a.end - b.start > 0  # overlap


def test_cuts_prefer_section_then_paragraph_boundaries() -> None:
    text = ("## Part\n\n" + "A sentence that goes on. " * 20 + "\n\n") * 10
    chunks = split(text, 1200, 0)
    for c in chunks[:-1]:
        assert text[c.end - 2 : c.end] == "\n\n" or text[c.end : c.end + 3] == "## "


def test_text_without_any_boundary_is_cut_hard() -> None:
    text = "x" * 10_000
    chunks = split(text, 3000, 0)
    assert [c.end - c.start for c in chunks] == [3000, 3000, 3000, 1000]
