"""Labels of themes: offline from the terms members share, or written by a model that must cite members.

Offline (the default, deterministic)
------------------------------------
A term is a word of three letters or more, or two adjacent words, that is not an English stop word
(scikit-learn's list), lower-cased. Words of the innovation family are stop words
too (:data:`DOMAIN_STOP_WORDS`). A theme's distinctive terms are those at least two of its members use
(if none, those of its most central member), ranked by the share of members that use them times their
inverse document frequency among all themed insights of the same kind, then alphabetically; a word
inside a chosen term is not chosen again. The label is the top three terms; the
description is one sentence of counts (members, documents, countries, years, category, level, and how
many members use each term). Neither says anything the member records do not show.

With a model (``--label-with-model``)
-------------------------------------
One structured call per theme through :class:`~insights.client.ModelClient` (so it is cached, logged
and replayable like extraction calls). The tool is :class:`ThemeLabel`; its validator rejects an answer
that cites no member, or cites an id that is not among the statements sent, so instructor re-asks with
the reason. The prompt files are ``prompts/theme_system.md`` and ``prompts/theme_user.md``; their hash is
the calls' prompt version (:func:`label_prompt_version`). When no valid answer comes within the re-ask
bound, or the cache misses offline, the theme keeps its offline label with ``label_source``
``"offline-fallback"`` and the reason in ``label_note``; a model label has ``label_source`` ``"model"``
and the cited ids in ``label_cites``. A fatal error (wrong key, no quota) is raised.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, model_validator

from ._optional import require
from .errors import CacheMiss, ModelError
from .prompts import _read, delimiter_for
from .vectors import EXTRA

if TYPE_CHECKING:
    from .client import ModelClient
    from .themes import Theme

LABEL_TERMS = 3
MAX_LABEL_MEMBERS = 30
LABEL_PROMPT_FILES = ("theme_system.md", "theme_user.md")
_WORD = re.compile(r"[^\W\d_][^\W\d_'’-]*[^\W\d_]", re.UNICODE)
_KIND_PLURAL = {"barrier": "barriers", "enabler": "enablers", "failed_experiment": "failed experiments"}


# ------------------------------------------------------------------------------------------- offline
#: Words every insight of this domain uses: they name no theme.
DOMAIN_STOP_WORDS = frozenset({"innovation", "innovations", "innovative", "innovate", "innovating", "innovators"})


def _stop_words() -> frozenset[str]:
    text = require("sklearn.feature_extraction.text", EXTRA, purpose="insights themes")
    return frozenset(text.ENGLISH_STOP_WORDS) | DOMAIN_STOP_WORDS


def terms_of(text: str, stop: frozenset[str]) -> set[str]:
    """The terms of one text: content words (3+ letters) and pairs of adjacent content words."""
    words = [w.strip("'’-") for w in _WORD.findall(text.lower())]
    out: set[str] = set()
    prev = ""
    for w in words:
        if len(w) < 3 or w in stop:
            prev = ""
            continue
        out.add(w)
        if prev:
            out.add(f"{prev} {w}")
        prev = w
    return out


class TermIndex:
    """Document frequencies of terms among all themed texts of each kind (the background of labels)."""

    def __init__(self, texts_by_kind: Mapping[str, Iterable[str]]) -> None:
        self.stop = _stop_words()
        self.df: dict[str, Counter[str]] = {}
        self.n: dict[str, int] = {}
        self._terms: dict[str, set[str]] = {}
        for kind, texts in texts_by_kind.items():
            counter: Counter[str] = Counter()
            n = 0
            for t in texts:
                counter.update(self.terms(t))
                n += 1
            self.df[kind], self.n[kind] = counter, n

    def terms(self, text: str) -> set[str]:
        """:func:`terms_of` ``text``, computed once per distinct text."""
        found = self._terms.get(text)
        if found is None:
            found = self._terms[text] = terms_of(text, self.stop)
        return found

    def distinctive(self, kind: str, texts: list[str], k: int = LABEL_TERMS) -> list[tuple[str, int]]:
        """The ``k`` most distinctive terms of ``texts`` with the number of texts using each."""
        used: Counter[str] = Counter()
        for t in texts:
            used.update(self.terms(t))
        df, n = self.df.get(kind, Counter()), max(self.n.get(kind, 0), len(texts))

        def score(term: str) -> float:
            return used[term] / len(texts) * math.log((n + 1) / (df.get(term, used[term]) + 1)) + 1e-9

        # Terms two or more members share; with none, the terms of the first (most central) text.
        shared = [t for t, c in used.items() if c >= 2] or sorted(self.terms(texts[0]))
        ranked = sorted(shared, key=lambda t: (-round(score(t), 9), t))
        chosen: list[str] = []
        for term in ranked:
            words = set(term.split())
            if any(words & set(c.split()) for c in chosen):
                continue  # "civil servants" chosen: neither "civil" nor "servants" again
            chosen.append(term)
            if len(chosen) == k:
                break
        return [(t, used[t]) for t in chosen]


def _years(theme: Theme) -> str:
    years = sorted(int(c.value) for c in theme.years)
    if not years:
        return "no year given"
    return str(years[0]) if years[0] == years[-1] else f"{years[0]}–{years[-1]}"


def describe(theme: Theme, terms: list[tuple[str, int]]) -> str:
    """The offline one-sentence description: counts only."""
    kinds = _KIND_PLURAL[theme.kind]
    where = (
        f"{theme.n_countries} {'country' if theme.n_countries == 1 else 'countries'}"
        if theme.n_countries
        else "no country given"
    )
    parts = [f"{theme.n_members} {kinds} from {theme.n_documents} documents ({where}; {_years(theme)})"]
    if theme.categories:
        top = theme.categories[0]
        coded = "all" if top.count == theme.n_members else f"{top.count} of {theme.n_members}"
        level = ""
        if theme.levels:
            lv = theme.levels[0]
            level = f", {lv.count} at the {lv.value} level"
        parts.append(f"{coded} coded {top.value.replace('_', ' ')}{level}")
    elif theme.kind == "failed_experiment":
        parts.append("grouped by why they failed")
    if terms:
        said = ", ".join(f"{c} use “{t}”" for t, c in terms)
        parts.append(said)
    return "; ".join(parts) + "."


def offline_label(theme: Theme, texts: list[str], index: TermIndex | None = None) -> Theme:
    """``theme`` with its offline label, description and terms (``texts``: its members' texts)."""
    from .themes import Count

    index = index or TermIndex({theme.kind: texts})
    terms = index.distinctive(theme.kind, texts)
    label = ", ".join(t for t, _ in terms) or f"{_KIND_PLURAL[theme.kind]} theme"
    return theme.model_copy(
        update={
            "label": label[:1].upper() + label[1:],
            "description": describe(theme, terms),
            "terms": [Count(value=t, count=c) for t, c in terms],
            "label_source": "offline",
        }
    )


# --------------------------------------------------------------------------------------------- model
_ALLOWED: ContextVar[frozenset[str] | None] = ContextVar("insights_theme_members", default=None)


@contextmanager
def citable(ids: Iterable[str]) -> Iterator[None]:
    """Make ``ids`` the member ids a :class:`ThemeLabel` may cite, in this thread."""
    token = _ALLOWED.set(frozenset(ids))
    try:
        yield
    finally:
        _ALLOWED.reset(token)


class ThemeLabel(BaseModel):
    """A short label and a one-sentence description of what the listed statements have in common,
    citing the ids of the statements that show it."""

    label: str = Field(min_length=1, max_length=80, description="3 to 8 words naming what the statements share.")
    description: str = Field(
        min_length=1,
        max_length=400,
        description="One sentence saying what the statements share, claiming nothing they do not say.",
    )
    cited_ids: list[str] = Field(
        min_length=1, description="Ids of the statements that show the pattern, copied exactly from the list."
    )

    @model_validator(mode="after")
    def _cites_members(self) -> ThemeLabel:
        allowed = _ALLOWED.get()
        if allowed is None:
            return self  # validated outside a labelling call (schema tests)
        unknown = [i for i in self.cited_ids if i not in allowed]
        if unknown:
            raise ValueError(f"cited_ids must be ids from the list of statements; these are not: {', '.join(unknown)}")
        return self


def label_prompt_version() -> str:
    """``"themes-"`` + 12 hex digits of the SHA-256 of the label prompt files (part of the cache key)."""
    digest = hashlib.sha256()
    for name in LABEL_PROMPT_FILES:
        digest.update(name.encode() + b"\0" + _read(name) + b"\0")
    return "themes-" + digest.hexdigest()[:12]


def label_messages(theme: Theme, statements: list[tuple[str, str]]) -> list[dict[str, str]]:
    """The chat messages asking for the label of ``theme`` from ``(insight_id, text)`` pairs."""
    block = "\n".join(f"[{iid}] {' '.join(text.split())}" for iid, text in statements)
    delimiter = delimiter_for(block)
    user = (
        _read("theme_user.md")
        .decode("utf-8")
        .format(
            theme_id=theme.theme_id,
            kind=theme.kind,
            category=theme.categories[0].value if theme.categories else "none",
            members=theme.n_members,
            documents=theme.n_documents,
            delimiter=delimiter,
            statements=block,
        )
    )
    return [
        {"role": "system", "content": _read("theme_system.md").decode("utf-8").strip()},
        {"role": "user", "content": user},
    ]


def _statements(theme: Theme, texts: Mapping[str, str]) -> list[tuple[str, str]]:
    first = [r.insight_id for r in theme.representatives]
    rest = [i for i in theme.insight_ids if i not in first]
    return [(i, texts[i]) for i in [*first, *rest][:MAX_LABEL_MEMBERS] if i in texts]


def label_with_model(found: Iterable[Theme], records: Iterable[Any], client: ModelClient) -> list[Theme]:
    """Each theme relabelled by one structured call (see the module docstring); fallbacks recorded.

    Raises:
        ModelError: a fatal one (``AuthError``, ``QuotaExceeded``): every further call would fail too.
    """
    from .client import CallLedger
    from .themes import as_dict, record_id, theme_text

    texts = {record_id(r): theme_text(r) for r in map(as_dict, records)}
    version = label_prompt_version()
    out: list[Theme] = []
    for theme in found:
        statements = _statements(theme, texts)
        ledger = CallLedger(document_id=theme.theme_id)
        try:
            with citable(i for i, _ in statements):
                answer = client.complete(
                    ThemeLabel,
                    label_messages(theme, statements),
                    document_id=theme.theme_id,
                    prompt_version=version,
                    ledger=ledger,
                )
        except (ModelError, CacheMiss) as exc:
            client.discard(ledger)  # an answer that failed validation is never replayed from the cache
            if getattr(exc, "fatal", False):
                raise
            note = f"{type(exc).__name__}: {exc}"
            out.append(theme.model_copy(update={"label_source": "offline-fallback", "label_note": note[:500]}))
            continue
        out.append(
            theme.model_copy(
                update={
                    "label": " ".join(answer.label.split()),
                    "description": " ".join(answer.description.split()),
                    "label_source": "model",
                    "label_cites": list(dict.fromkeys(answer.cited_ids)),
                    "label_note": "",
                }
            )
        )
    return out
