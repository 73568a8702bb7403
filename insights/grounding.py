"""Locate the model's quotes in the document, so that no evidence is taken on trust.

The model returns verbatim ``quotes`` and never offsets. For each quote, :class:`Grounder` looks in
``Document.text`` (within a chunk's span when the request covered a chunk), in this order:

1. ``exact``      — the quote occurs as written;
2. ``normalized`` — it occurs once case, white space, quote marks, dashes and HTML entities are folded;
3. ``fuzzy``      — a passage says the same thing with copying slips (the rule below).

A passage never starts or ends inside a word of the document (``formal`` is not found in ``informal``).
The located passage is ``text[start:end]``, and it is what the evidence quotes: ``Evidence.quote`` is
always ``text[start:end]``; the model's own words are kept beside it in ``Evidence.model_quote``.
``match`` says which step found it; ``score`` is 100 for the first two.

The fuzzy rule
--------------
A fuzzy match accepts copying slips (a typo, a corrected typo, two letters swapped, British or American
spelling, an article added or dropped, a compound split or joined, ``n't`` for ``not``), never a change
of meaning. The passage is rapidfuzz's best partial alignment of the folded quote in the folded text,
on whole words, moved by up to two words at either end. Among those candidates, best first, the first
that passes every check below is the evidence; if none does, the quote is not evidence, and the reason
is the first failing check of the best candidate:

* **score** — ``fuzz.ratio`` of the folded quote and the folded *stored passage* is at least
  ``FUZZY_THRESHOLD`` (90); that ratio is the ``score`` recorded. A candidate that only scored as a
  partial alignment does not count.

The words of quote and passage (folded, accents removed, ``n't``/``cannot`` read as ``not``) are then
aligned in order, and every run where they differ must be a slip. Checked in this order:

* **numbers** — the same digit runs (years, amounts, percentages, ``3.0``), signs ``% $ € £ ¥ ₹`` and
  number words (``two``, ``eighty``, ``second``, ``million``, ``deux``, ``mil``, ``milhões``…):
  ``2012`` for ``2021`` fails, and so does ``million`` for ``billion``.
* **negation** — the same negation words (:data:`NEGATIONS`, English, French, Spanish and Portuguese:
  ``not``, ``no``, ``never``, ``none``, ``nor``, ``without``, ``ne``/``n'``, ``pas``, ``jamais``,
  ``sans``, ``nunca``, ``sin``, ``ningún``, ``não``, ``sem``…): ``was not scaled`` for ``was scaled``
  fails, and so does dropping a negation the source has. A negation or number word of six letters or
  more misspelt by one letter (``wihtout``) still counts as that word.
* **names** — a name (a word with two or more capitals, such as ``UNDP`` or ``AccLab``, or a capitalised
  word that does not start a sentence, unless the same text also writes it in lower case) may differ
  only by a slip scoring at least 90 (``Organisations``/``Organizations``): ``Austria`` for
  ``Australia`` fails.
* **words** — any other word of one side must be a near spelling of a word in the other side's run:
  ``fuzz.ratio`` at least ``WORD_THRESHOLD`` (80) or one letter swap (``teh``/``the``), and not the same
  word with a prefix of up to four letters in front (``possible``/``impossible``, ``male``/``female``,
  ``approved``/``disapproved``). Articles, common prepositions and conjunctions (:data:`FUNCTION_WORDS`)
  may be added or dropped. ``scrapped`` for ``scaled`` fails, and so does a dropped content word.

The reason names what differs — ``differs from the source in a negation: the quote adds 'not'`` — and
the passage the document has there (:attr:`Miss.passage`).

Validation
----------
:class:`GroundedExtraction` runs this inside pydantic validation: in strict mode an unlocated quote
raises, naming every failing quote and why (with the source's wording when a near passage exists), so
instructor re-asks the model with that message; in lenient mode (reading the last answer after the
re-ask bound) each insight is kept only if every quote was located, and otherwise is listed as rejected
with the reason.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from pydantic import ConfigDict, PrivateAttr, ValidationInfo, model_validator
from rapidfuzz import fuzz
from rapidfuzz.distance import OSA, Levenshtein

from .documents import unescape_entities
from .schema import DRAFT_FIELDS, Evidence, Extraction, Kind, MatchKind

FUZZY_THRESHOLD = 90.0
WORD_THRESHOLD = 80.0
MIN_QUOTE_CHARS = 12
NOT_FOUND = "is not in the document"

_FOLD = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2026": "...", "\u00a0": " ",
}  # fmt: skip
_EDGES = " \"'.,;:"

#: Negation words (lower case, accents removed; ``n't`` is read as ``not`` and French ``n'`` as ``n``).
NEGATIONS = frozenset(
    "not no never none nor neither nobody nothing nowhere without "  # English
    "ne n pas jamais non sans aucun aucune rien ni nul nulle guere nullement "  # French
    "nunca sin ningun ninguno ninguna ningunos ningunas nada nadie jamas tampoco "  # Spanish
    "nao sem nenhum nenhuma nenhuns nenhumas ninguem nem".split()  # Portuguese
)
#: Number words: compared like digits.
NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred hundreds "
    "thousand thousands million millions billion billions trillion half twice double dozen dozens "
    "first second third fourth fifth sixth seventh eighth ninth tenth "
    "deux trois quatre cinq sept huit neuf dix onze douze vingt trente quarante cinquante soixante cent "
    "cents mille milliard milliards "
    "dos tres cuatro cinco seis siete ocho nueve diez veinte treinta cuarenta cincuenta cien ciento "
    "mil millon millones "
    "dois duas quatro sete oito dez vinte trinta quarenta cinquenta cem cento milhao milhoes bilhao "
    "bilhoes".split()
)
#: Words a fuzzy quote may add or drop: articles, common prepositions and conjunctions.
FUNCTION_WORDS = frozenset(
    "a an the of to in on at for and or by as that this these those with from "  # English
    "le la les l un une des de du d et a au aux en "  # French
    "el los las una unos unas del y e al "  # Spanish
    "o os as um uma da das em na nas nos".split()  # Portuguese (not "do", English; "dos" is Spanish two)
)
_MARKED = NEGATIONS | NUMBER_WORDS
_LONG_MARKED = sorted(w for w in _MARKED if len(w) >= 6)
_TOKEN = re.compile(r"[^\W_]+|[%$€£¥₹]")
_WORD = re.compile(r"[^\W_]+")
_NOT = re.compile(r"n't\b")
_CANNOT = re.compile(r"\bcannot\b")
_SENTENCE_END = (".", "!", "?", ":", "…", "\n")
_OPENERS = " \t\"'“”‘’«»([{-–—*•#>"


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


def _bare(s: str) -> str:
    """``s`` without accents (for word comparisons only)."""
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


# ---------------------------------------------------------------------------------------- the fuzzy rule
def _has_digit(word: str) -> bool:
    return any(c.isdigit() for c in word)


@functools.lru_cache(maxsize=8192)
def _canonical(token: str) -> str:
    """A negation or number word as such, also when misspelt by one letter (``wihtout``, ``thousnd``)."""
    if len(token) < 6 or token in _MARKED:
        return token
    for word in _LONG_MARKED:
        if abs(len(word) - len(token)) <= 1 and OSA.distance(word, token) <= 1 and not _prefixed(word, token):
            return word  # (but "either" is not "neither")
    return token


def _tokens(s: str) -> tuple[list[str], dict[str, str]]:
    """The words, digit runs and signs of ``s``, folded (accents removed, ``n't`` read as ``not``), and
    how ``s`` writes each (for messages)."""
    folded = _CANNOT.sub("can not", _NOT.sub(" not", normalize(s)))
    written = _TOKEN.findall(folded)
    tokens = [_canonical(_bare(t)) for t in written]
    return tokens, dict(zip(tokens, written, strict=True))


def _names(s: str) -> dict[str, str]:
    """Words of ``s`` that look like names (two capitals or more, or a capital mid-sentence): folded ->
    as written."""
    s = unicodedata.normalize("NFKC", unescape_entities(s))
    found: dict[str, str] = {}
    common: set[str] = set()  # words also written in lower case here: not names ("Government Officers")
    for m in _WORD.finditer(s):
        word = m.group(0)
        if len(word) < 2 or not word[0].isalpha() or _has_digit(word):
            continue
        if word.islower():
            common.add(_bare(word))
            continue
        capitals = sum(c.isupper() for c in word)
        before = s[: m.start()].rstrip(_OPENERS)
        starts_sentence = not before or before.endswith(_SENTENCE_END)
        if capitals >= 2 or (word[0].isupper() and not starts_sentence):
            found[_bare(word.lower())] = word
    return {key: word for key, word in found.items() if key not in common}


def _prefixed(longer: str, shorter: str) -> bool:
    """``longer`` is ``shorter`` (or a near spelling of it) with a prefix of 1-4 letters in front."""
    if len(longer) <= len(shorter):
        return False
    whole = fuzz.ratio(longer, shorter)
    for k in range(1, min(4, len(longer) - 2) + 1):
        rest = fuzz.ratio(longer[k:], shorter)
        if rest >= FUZZY_THRESHOLD and rest > whole:
            return True
    return False


def _near(a: str, b: str, threshold: float = WORD_THRESHOLD) -> bool:
    """``a`` and ``b`` are spellings of one word (see the module docstring)."""
    if _prefixed(a, b) or _prefixed(b, a):
        return False
    if fuzz.ratio(a, b) >= threshold:
        return True
    return threshold <= WORD_THRESHOLD and len(a) == len(b) and sorted(a) == sorted(b) and OSA.distance(a, b) == 1


def _blocks(q: list[str], p: list[str]) -> Iterator[tuple[list[str], list[str]]]:
    """The runs of ``q`` and ``p`` that differ, each with the run it stands for on the other side."""
    qi = pj = None
    for op in Levenshtein.opcodes(q, p):
        if op.tag == "equal":
            if qi is not None and pj is not None:
                yield q[qi : op.src_start], p[pj : op.dest_start]
            qi = pj = None
        elif qi is None:
            qi, pj = op.src_start, op.dest_start
    if qi is not None and pj is not None:
        yield q[qi:], p[pj:]


def _kind(token: str) -> str:
    if token in NEGATIONS:
        return "a negation"
    if token in NUMBER_WORDS or _has_digit(token) or not token.isalnum():
        return "a number"
    return "a word"


def difference(quote: str, passage: str) -> str | None:
    """How ``quote`` says something other than ``passage``, or ``None`` when it is a mere copying slip.

    The words of both are aligned in order; every run that differs must be a copying slip (see the
    module docstring). The first failing check, in the order numbers, negation, names, words, is
    described: ``differs from the source in a negation: the quote adds 'not'``.
    """
    q, q_shown = _tokens(quote)
    p, p_shown = _tokens(passage)
    q_names, p_names = _names(quote), _names(passage)
    quote_only: dict[str, list[str]] = {}
    source_only: dict[str, list[str]] = {}
    for qs, ps in _blocks(q, p):
        if "".join(qs) == "".join(ps):
            continue  # a compound split or joined: "co create" / "cocreate"
        for what in ("a negation", "a number"):
            qn = Counter(t for t in qs if _kind(t) == what)
            pn = Counter(t for t in ps if _kind(t) == what)
            quote_only.setdefault(what, []).extend((qn - pn).elements())
            source_only.setdefault(what, []).extend((pn - qn).elements())
        for mine, theirs, names, out in ((qs, ps, q_names, quote_only), (ps, qs, p_names, source_only)):
            others = [t for t in theirs if _kind(t) == "a word"]
            for t in mine:
                if _kind(t) != "a word" or (t in FUNCTION_WORDS and t not in names):
                    continue
                if t in names and not any(_near(t, o, FUZZY_THRESHOLD) for o in others):
                    out.setdefault("a name", []).append(t)
                elif not any(_near(t, o) for o in others):
                    out.setdefault("a word", []).append(t)
    for what in ("a number", "a negation", "a name", "a word"):
        q_diff, p_diff = quote_only.get(what, []), source_only.get(what, [])
        if q_diff or p_diff:
            return _differs(what, _show(q_diff, q_names, q_shown), _show(p_diff, p_names, p_shown))
    return None


def _show(tokens: list[str], names: dict[str, str], shown: dict[str, str]) -> str:
    return ", ".join(repr(names.get(t) or shown.get(t, t)) for t in dict.fromkeys(tokens))


def _differs(what: str, in_quote: str, in_source: str) -> str:
    if in_quote and in_source:
        detail = f"the quote has {in_quote} where the source has {in_source}"
    elif in_quote:
        detail = f"the quote adds {in_quote}"
    else:
        detail = f"the quote leaves out {in_source}"
    return f"differs from the source in {what}: {detail}"


# ---------------------------------------------------------------------------------------------- grounder
@dataclass(frozen=True)
class Located:
    """Where a quote was found: ``text[start:end]``."""

    start: int
    end: int
    match: MatchKind
    score: float = 100.0


@dataclass(frozen=True)
class Miss:
    """Why a quote was not located: ``reason``, and the nearest passage when it differs in meaning."""

    reason: str = NOT_FOUND
    passage: str = ""


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
    _misses: dict[tuple[str, int, int], Miss] = field(init=False, repr=False, default_factory=dict)

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
        """Find ``quote`` in ``text[lo:hi]``; ``None`` when no step finds it (then :meth:`miss` says why).

        Args:
            quote: the passage as the model returned it.
            lo, hi: the span to search (a chunk); the whole text by default.

        Returns:
            A :class:`Located` with offsets into the whole text, or ``None``.
        """
        hi = len(self.text) if hi is None else hi
        found = self._find(quote, lo, hi)
        if isinstance(found, Miss):
            self._misses[(quote, lo, hi)] = found
            return None
        return found

    def miss(self, quote: str, lo: int = 0, hi: int | None = None) -> Miss:
        """Why :meth:`locate` found no passage for ``quote`` (a :class:`Miss` saying so if it did)."""
        hi = len(self.text) if hi is None else hi
        known = self._misses.get((quote, lo, hi))
        if known is not None:
            return known
        found = self._find(quote, lo, hi)
        return found if isinstance(found, Miss) else Miss("was located")

    def _find(self, quote: str, lo: int, hi: int) -> Located | Miss:
        if len(quote.strip()) >= MIN_QUOTE_CHARS:
            start = _find_whole(self.text, quote, lo, hi)
            if start >= 0:
                return Located(start, start + len(quote), "exact")
        needle = normalize(quote).strip(_EDGES)
        if len(needle) < MIN_QUOTE_CHARS:
            return Miss()
        self._index()
        nlo, nhi = self._nrange(lo, hi)
        pos = _find_whole(self._norm, needle, nlo, nhi)
        if pos >= 0:
            start, end = self._span(pos, pos + len(needle))
            return Located(start, end, "normalized")
        return self._fuzzy(quote, needle, nlo, nhi)

    def _fuzzy(self, quote: str, needle: str, nlo: int, nhi: int) -> Located | Miss:
        hay = self._norm[nlo:nhi]
        if not hay:
            return Miss()
        found = fuzz.partial_ratio_alignment(needle, hay, score_cutoff=self.fuzzy_threshold)
        if found is None:
            return Miss()
        scored: dict[tuple[int, int], float] = {}
        for a, b in self._spans_near(nlo + found.dest_start, nlo + found.dest_end, nlo, nhi):
            start, end = self._whole_words(*self._span(a, b))
            if (start, end) not in scored:
                scored[(start, end)] = fuzz.ratio(needle, normalize(self.text[start:end]).strip(_EDGES))
        ranked = sorted((s for s in scored if scored[s] >= self.fuzzy_threshold), key=lambda s: -scored[s])
        first: Miss | None = None
        for start, end in ranked:
            passage = self.text[start:end]
            why = difference(quote, passage)
            if why is None:
                return Located(start, end, "fuzzy", round(scored[(start, end)], 1))
            first = first or Miss(why, passage)
        return first or Miss()

    def _whole_words(self, start: int, end: int) -> tuple[int, int]:
        text = self.text
        while start > 0 and text[start - 1].isalnum() and text[start].isalnum():
            start -= 1  # an alignment may cut a word in half
        while end < len(text) and text[end].isalnum() and text[end - 1].isalnum():
            end += 1
        return start, end

    def _spans_near(self, a: int, b: int, lo: int, hi: int) -> list[tuple[int, int]]:
        """Folded spans on word edges around ``[a, b)``: as aligned, or up to two words longer or shorter
        at either end (an alignment drifts when the quote adds or drops words)."""
        n = self._norm

        def word(i: int) -> bool:
            return lo <= i < hi and n[i].isalnum()

        def skip(j: int, step: int, inside: bool) -> int:
            # move over word characters (inside) or others, forwards (step 1) or backwards (step -1)
            while (word(j) if step > 0 else word(j - 1)) == inside and (lo < j if step < 0 else j < hi):
                j += step
            return j

        while word(a - 1) and word(a):
            a -= 1
        while word(b - 1) and word(b):
            b += 1
        starts, ends = [a], [b]
        earlier = later = a
        further = shorter = b
        for _ in range(2):
            earlier = skip(skip(earlier, -1, False), -1, True)
            later = skip(skip(later, 1, True), 1, False)
            further = skip(skip(further, 1, False), 1, True)
            shorter = skip(skip(skip(shorter, -1, False), -1, True), -1, False)
            starts += [earlier, later]
            ends += [further, shorter]

        def attached(i: int) -> bool:  # punctuation glued to a word
            return lo <= i < hi and not (n[i] == " " or n[i].isalnum())

        def snap_start(j: int) -> int:  # past spaces and edge marks; onto a bracket or mark glued to the word
            while j < hi and n[j] in _EDGES:
                j += 1
            k = j
            while attached(k - 1):
                k -= 1
            return k if any(n[i] not in _EDGES for i in range(k, j)) else j

        def snap_end(j: int) -> int:
            while j > lo and n[j - 1] in _EDGES:
                j -= 1
            k = j
            while attached(k):
                k += 1
            return k if any(n[i] not in _EDGES for i in range(j, k)) else j

        starts = list(dict.fromkeys(snap_start(j) for j in starts))
        ends = list(dict.fromkeys(snap_end(j) for j in ends))
        return [(s, e) for s in starts for e in ends if s < e]


def _find_whole(hay: str, needle: str, lo: int, hi: int) -> int:
    """The first occurrence of ``needle`` in ``hay[lo:hi]`` that does not start or end inside a word
    (``formal`` is not found in ``informal``); -1 if none."""
    pos = hay.find(needle, lo, hi)
    end = len(needle)
    while pos >= 0:
        inside_start = pos > 0 and hay[pos - 1].isalnum() and needle[0].isalnum()
        inside_end = pos + end < len(hay) and hay[pos + end].isalnum() and needle[-1].isalnum()
        if not (inside_start or inside_end):
            return pos
        pos = hay.find(needle, pos + 1, hi)
    return -1


# ------------------------------------------------------------------------------------------- validation
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


def _why(quote: str, miss: Miss) -> str:
    """A failing quote and why: ``is not in the document: '…'``, or ``differs from the source in …``."""
    if not miss.passage:
        return f"{miss.reason}: {quote!r}"
    return f"{miss.reason}: {quote!r}; the document reads {miss.passage!r}"


def _rejected_reason(whys: list[str]) -> str:
    """``quote not found in the document: '…'; quote differs from the source in …`` (one per quote)."""
    found = "not found in the document"
    return "; ".join("quote " + (found + w[len(NOT_FOUND) :] if w.startswith(NOT_FOUND) else w) for w in whys)


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
        text = ctx.grounder.text
        grounded: list[GroundedDraft] = []
        failures: list[str] = []
        for kind, attr in DRAFT_FIELDS.items():
            for i, draft in enumerate(getattr(self, attr)):
                evidence: list[Evidence] = []
                missing: list[str] = []
                for j, quote in enumerate(draft.quotes):
                    hit = ctx.grounder.locate(quote, ctx.lo, ctx.hi)
                    if hit is None:
                        why = _why(quote, ctx.grounder.miss(quote, ctx.lo, ctx.hi))
                        missing.append(why)
                        failures.append(f"{attr}[{i}].quotes[{j}] {why}")
                        continue
                    evidence.append(
                        Evidence(
                            quote=text[hit.start : hit.end],
                            model_quote=quote,
                            start=hit.start,
                            end=hit.end,
                            match=hit.match,
                            score=hit.score,
                            section=ctx.section_at(hit.start),
                        )
                    )
                reason = _rejected_reason(missing)
                grounded.append(GroundedDraft(kind, draft.model_dump(), None if missing else evidence, reason))
        if failures and ctx.strict:
            raise ValueError(
                "Some quotes are not passages of the document. Every quote must be copied word for word "
                "from the text between the delimiter lines, with its negations, numbers and names as the "
                "document writes them; fix or remove these insights:\n- " + "\n- ".join(failures)
            )
        self._grounded = grounded
        return self

    @property
    def grounded(self) -> list[GroundedDraft]:
        """Every insight with its located evidence (``None`` where a quote was not found)."""
        return self._grounded
