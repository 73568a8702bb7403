"""Locate the model's quotes in the document, so that no evidence is taken on trust.

The model returns verbatim ``quotes`` and never offsets. For each quote, :class:`Grounder` looks in
``Document.text`` (within a chunk's span when the request covered a chunk), in this order:

1. ``exact``      — the quote occurs as written;
2. ``normalized`` — it occurs once case, white space, quote marks, dashes and HTML entities are folded;
3. ``fuzzy``      — rapidfuzz's best partial alignment scores at least ``FUZZY_THRESHOLD`` and the aligned
   passage is about as long as the quote.

The located passage is ``text[start:end]``; ``match`` says which step found it. A quote found by none is
not evidence. :class:`GroundedExtraction` runs this inside pydantic validation: in strict mode an
unlocated quote raises, naming every failing quote, so instructor re-asks the model with that message;
in lenient mode (reading the last answer after the re-ask bound) each insight is kept only if every
quote was located, and otherwise is listed as rejected with the reason.
"""

from __future__ import annotations

import bisect
import contextlib
import unicodedata
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from pydantic import ConfigDict, PrivateAttr, ValidationInfo, model_validator
from rapidfuzz import fuzz

from .documents import unescape_entities
from .schema import DRAFT_FIELDS, Evidence, Extraction, Kind, MatchKind

FUZZY_THRESHOLD = 90.0
MIN_QUOTE_CHARS = 12
_LENGTH_SLACK = 0.2  # a fuzzy passage may be 20% shorter or longer than the quote

_FOLD = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2026": "...", "\u00a0": " ",
}  # fmt: skip


def _fold_char(ch: str) -> str:
    if ch in _FOLD:
        return _FOLD[ch]
    if ch.isspace():
        return " "
    return unicodedata.normalize("NFKC", ch).lower()


def normalize(s: str) -> str:
    """Fold a string the way :class:`Grounder` folds the document (for comparisons)."""
    out = "".join(_fold_char(c) for c in unescape_entities(s))
    return " ".join(out.split())


@dataclass(frozen=True)
class Located:
    """Where a quote was found."""

    start: int
    end: int
    match: MatchKind
    score: float = 100.0


@dataclass
class Grounder:
    """Locates quotes in one text. Build once per document; :meth:`locate` is cheap to call repeatedly.

    The folded index behind the normalized and fuzzy steps is built on first need: most quotes are
    found by the exact step, and building it costs a Python call per character.
    """

    text: str
    fuzzy_threshold: float = FUZZY_THRESHOLD
    _norm: str = field(init=False, repr=False, default="")
    _starts: list[int] = field(init=False, repr=False, default_factory=list)  # original offset of each folded char
    _ends: list[int] = field(init=False, repr=False, default_factory=list)  # its original end offset
    _indexed: bool = field(init=False, repr=False, default=False)

    def _index(self) -> None:
        if self._indexed:
            return
        chars: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        last_space = True
        for i, ch in enumerate(self.text):
            folded = _fold_char(ch)
            for f in folded:
                if f == " " and last_space:
                    continue  # runs of white space fold to one space
                last_space = f == " "
                chars.append(f)
                starts.append(i)
                ends.append(i + 1)
        self._norm = "".join(chars)
        self._starts = starts
        self._ends = ends
        self._indexed = True

    def _span(self, nstart: int, nend: int) -> tuple[int, int]:
        # Trim folded white space at the edges so text[start:end] starts and ends on a real character.
        while nstart < nend and self._norm[nstart] == " ":
            nstart += 1
        while nend > nstart and self._norm[nend - 1] == " ":
            nend -= 1
        return self._starts[nstart], self._ends[nend - 1]

    def _nrange(self, lo: int, hi: int) -> tuple[int, int]:
        return bisect.bisect_left(self._starts, lo), bisect.bisect_left(self._starts, hi)

    def locate(self, quote: str, lo: int = 0, hi: int | None = None) -> Located | None:
        """Find ``quote`` in ``text[lo:hi]``; ``None`` when no step finds it.

        Args:
            quote: the passage as the model returned it.
            lo, hi: the span to search (a chunk); the whole text by default.

        Returns:
            A :class:`Located` with offsets into the whole text, or ``None``.
        """
        hi = len(self.text) if hi is None else hi
        start = self.text.find(quote, lo, hi) if quote.strip() else -1
        if start >= 0 and len(quote.strip()) >= MIN_QUOTE_CHARS:
            return Located(start, start + len(quote), "exact")
        needle = normalize(quote).strip(" \"'.,;:")
        if len(needle) < MIN_QUOTE_CHARS:
            return None
        self._index()
        nlo, nhi = self._nrange(lo, hi)
        pos = self._norm.find(needle, nlo, nhi)
        if pos >= 0:
            start, end = self._span(pos, pos + len(needle))
            return Located(start, end, "normalized")
        return self._fuzzy(needle, nlo, nhi)

    def _fuzzy(self, needle: str, nlo: int, nhi: int) -> Located | None:
        hay = self._norm[nlo:nhi]
        if not hay:
            return None
        found = fuzz.partial_ratio_alignment(needle, hay, score_cutoff=self.fuzzy_threshold)
        if found is None or found.score < self.fuzzy_threshold:
            return None
        length = found.dest_end - found.dest_start
        if abs(length - len(needle)) > _LENGTH_SLACK * len(needle):
            return None
        start, end = self._span(nlo + found.dest_start, nlo + found.dest_end)
        text = self.text
        while start > 0 and text[start - 1].isalnum() and text[start].isalnum():
            start -= 1  # widen to whole words: an alignment may cut one in half
        while end < len(text) and text[end].isalnum() and text[end - 1].isalnum():
            end += 1
        return Located(start, end, "fuzzy", round(found.score, 1))


@dataclass(frozen=True)
class GroundedDraft:
    """One insight as the model proposed it, with its quotes located (``evidence``) or the reason not."""

    kind: Kind
    draft: dict[str, Any]
    evidence: list[Evidence] | None
    reason: str = ""


class GroundingContext:
    """What :class:`GroundedExtraction` grounds against: set with :func:`grounding` (or pass it as
    pydantic validation context ``{"grounding": ctx}``)."""

    def __init__(self, grounder: Grounder, section_at: Any, lo: int = 0, hi: int | None = None) -> None:
        self.grounder = grounder
        self.section_at = section_at
        self.lo = lo
        self.hi = hi
        self.strict = True


_ACTIVE: ContextVar[GroundingContext | None] = ContextVar("insights_grounding", default=None)


@contextlib.contextmanager
def grounding(context: GroundingContext) -> Iterator[GroundingContext]:
    """Make ``context`` the one :class:`GroundedExtraction` validates against, in this thread.

    Not passed as instructor's ``context=``: instructor renders every message as a Jinja template when
    it gets a context, and a document's ``{{ … }}`` must reach the model as written.
    """
    token = _ACTIVE.set(context)
    try:
        yield context
    finally:
        _ACTIVE.reset(token)


class GroundedExtraction(Extraction):
    """Every barrier, enabler, champion and failed experiment the document itself states."""

    # The response model handed to instructor: an Extraction whose quotes must be in the document. The
    # docstring above is what the model reads as the tool's description, and the title its name.
    model_config = ConfigDict(title="Extraction", extra="ignore")

    _grounded: list[GroundedDraft] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _locate_quotes(self, info: ValidationInfo) -> GroundedExtraction:
        ctx = (info.context or {}).get("grounding") or _ACTIVE.get()
        if not isinstance(ctx, GroundingContext):
            return self  # validated outside extraction (e.g. schema tests): nothing to ground against
        grounded: list[GroundedDraft] = []
        failures: list[str] = []
        for kind, attr in DRAFT_FIELDS.items():
            for i, draft in enumerate(getattr(self, attr)):
                evidence: list[Evidence] = []
                missing: list[str] = []
                for j, quote in enumerate(draft.quotes):
                    hit = ctx.grounder.locate(quote, ctx.lo, ctx.hi)
                    if hit is None:
                        missing.append(quote)
                        failures.append(f"{attr}[{i}].quotes[{j}] is not in the document: {quote!r}")
                        continue
                    evidence.append(
                        Evidence(
                            quote=quote,
                            start=hit.start,
                            end=hit.end,
                            match=hit.match,
                            score=hit.score,
                            section=ctx.section_at(hit.start),
                        )
                    )
                reason = ""
                if missing:
                    reason = "quote not found in the document: " + "; ".join(repr(q) for q in missing)
                grounded.append(GroundedDraft(kind, draft.model_dump(), None if missing else evidence, reason))
        if failures and ctx.strict:
            raise ValueError(
                "Some quotes are not passages of the document. Every quote must be copied word for word "
                "from the text between the delimiter lines; fix or remove these insights:\n- " + "\n- ".join(failures)
            )
        self._grounded = grounded
        return self

    @property
    def grounded(self) -> list[GroundedDraft]:
        """Every insight with its located evidence (``None`` where a quote was not found)."""
        return self._grounded
