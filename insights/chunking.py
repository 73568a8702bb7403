"""Split long documents into chunks the model can read, at section and paragraph boundaries.

A chunk is a span ``(start, end)`` of ``Document.text``; the model sees ``text[start:end]`` and the
grounder searches the same span, so evidence offsets are always offsets into the whole document.
Consecutive chunks overlap by about ``overlap`` characters (snapped to a line start), so a passage cut by
a boundary is whole in one of them; insights found twice are merged by :mod:`insights.extract`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SECTION = re.compile(r"^## ", re.MULTILINE)
_PARAGRAPH = re.compile(r"\n\s*\n")
_LINE = re.compile(r"\n")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Chunk:
    """One span of a document's text, numbered from 1."""

    part: int
    parts: int
    start: int
    end: int


def _cut(text: str, start: int, limit: int) -> int:
    """The best end for a chunk that starts at ``start`` and may not pass ``limit``."""
    window = text[start:limit]
    floor = len(window) // 3  # never cut so early that chunks become tiny
    for pattern in (_SECTION, _PARAGRAPH, _LINE, _SENTENCE):
        ends = [m.start() if pattern is _SECTION else m.end() for m in pattern.finditer(window)]
        ends = [e for e in ends if e > floor]
        if ends:
            return start + ends[-1]
    return limit


def _overlap_start(text: str, lo: int, hi: int) -> int:
    """Where an overlapping chunk starts: the first line, sentence or word start in ``[lo, hi)``."""
    for boundary in ("\n", ". ", " "):
        at = text.find(boundary, lo, hi)
        if at >= 0:
            return at + len(boundary)
    return lo


def split(text: str, max_chars: int, overlap: int = 0) -> list[Chunk]:
    """Spans of at most ``max_chars`` characters covering ``text``, overlapping by about ``overlap``.

    Args:
        text: the whole document text.
        max_chars: the largest chunk.
        overlap: characters each chunk repeats from the end of the one before (less than half a chunk).

    Returns:
        One chunk when the text fits, otherwise chunks in order, together covering every character.
    """
    if len(text) <= max_chars:
        return [Chunk(1, 1, 0, len(text))]
    overlap = max(0, min(overlap, max_chars // 2))
    spans: list[tuple[int, int]] = []
    start = 0
    while start < len(text):
        limit = start + max_chars
        end = len(text) if limit >= len(text) else _cut(text, start, limit)
        spans.append((start, end))
        if end >= len(text):
            break
        nxt = max(end - overlap, start + 1)
        start = _overlap_start(text, nxt, min(end - 1, nxt + overlap // 2)) if overlap else nxt
    return [Chunk(i + 1, len(spans), s, e) for i, (s, e) in enumerate(spans)]
