"""Recurring themes across documents: barriers, enablers and failed experiments grouped by what they say.

    >>> found = insights.themes(insights.read_records("out.jsonl"))      # offline, deterministic
    >>> for t in found:
    ...     print(t.kind, t.label, t.n_documents, [r.quote for r in t.representatives])

How a theme is made (offline, no network, no download)
------------------------------------------------------
1. **Text.** A barrier or enabler is represented by its ``statement``; a failed experiment by
   ``why_it_failed`` (its statement when that is empty), so failures group by why they failed.
   Champions are not themed: :mod:`insights.champions` resolves them into entities.
2. **Blocks.** Insights are grouped by kind and, for barriers and enablers, by ``category``: a theme
   never mixes kinds or categories, it refines the category the extraction gave each insight.
3. **Vectors.** :mod:`insights.vectors` (the ``wordllama`` model inside its wheel, or TF-IDF).
4. **Clustering.** Within a block, complete-linkage agglomerative clustering (SciPy) of the distinct
   texts on cosine distance, cut at ``1 - min_similarity``: *every two members of a theme have cosine
   similarity at least* ``min_similarity`` (default per vector method:
   :data:`insights.vectors.DEFAULT_MIN_SIMILARITY`, 0.25 for wordllama, 0.08 for TF-IDF). A block of
   more than :data:`MAX_BLOCK` distinct texts is clustered in consecutive slices of that size (in sorted
   text order), so members of two slices are never grouped; a warning is logged when that happens.
5. **Recurrence.** A group is a theme only if its members come from at least ``min_documents``
   distinct documents (default 2): a pattern in one document is not recurring. Other groups are left out
   of the output and counted in :attr:`ThemeSet.not_recurring`.

Similarities are rounded to six decimals before clustering, so the last bits of a BLAS do not decide a
grouping; a similarity within rounding of the threshold may still group differently on another machine.

What a theme says, and why it may say it
----------------------------------------
Everything in a :class:`Theme` is computed from its members: the counts (members, distinct documents,
countries, years) and the category, level, country, year and type tallies are recounts of the member
records; the three ``representatives`` are members (the most central ones, from distinct documents
first) with their first evidence passage copied as it is in the record (quote, start, end, section), so
``document.text[start:end]`` is the quote; the offline ``label`` is made of terms that the members'
own texts share (:mod:`insights.theme_labels`), and the ``description`` states only counts.

Contract (``theme_id``)::

    "thm_" + sha256(canonical JSON of ["theme/1", kind, sorted member insight_ids]).hexdigest()[:20]

(:func:`insights.ids.digest_id`). The same input gives the same themes and ids in any record order.
An id changes when the theme's membership changes: a member's own ``insight_id`` changes (its document,
statement or evidence spans), insights join or leave it (new records in its block, another
``min_similarity`` or vector method, a changed category), or the recipe version changes.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from ._optional import require
from .ids import digest_id, line_insight_id
from .theme_labels import TermIndex, offline_label
from .vectors import DEFAULT_MIN_SIMILARITY, EXTRA, embed, resolve_method

log = logging.getLogger("insights.themes")

THEME_RECIPE = "theme/1"
THEMED_KINDS = ("barrier", "enabler", "failed_experiment")
#: A theme's members come from at least this many distinct documents, by default.
MIN_DOCUMENTS = 2
#: Largest block clustered in one piece (its distance matrix is MAX_BLOCK² floats).
MAX_BLOCK = 6000
REPRESENTATIVES = 3

ThemeKind = Literal["barrier", "enabler", "failed_experiment"]
LabelSource = Literal["offline", "model", "offline-fallback"]


class Count(BaseModel):
    """A value and how many members have it."""

    value: str
    count: int


class Representative(BaseModel):
    """A member shown for a theme, with its first evidence passage as the record has it."""

    insight_id: str
    document_id: str
    title: str = ""
    country: str = ""
    year: int | None = None
    type: str = ""
    statement: str
    quote: str
    start: int
    end: int
    section: str = ""
    redacted: bool = Field(default=False, description="Person names were replaced (pseudonymised output).")


class Theme(BaseModel):
    """A recurring theme: members of one kind (and category) from several documents."""

    theme_id: str
    kind: ThemeKind
    label: str
    description: str
    label_source: LabelSource = "offline"
    label_cites: list[str] = Field(default_factory=list, description="Member ids a model label cites.")
    label_note: str = Field(default="", description="Why a model label was not used, when it was not.")
    terms: list[Count] = Field(default_factory=list, description="Shared terms and how many members use each.")
    insight_ids: list[str]
    n_members: int
    n_documents: int
    n_countries: int
    n_years: int
    documents: list[str]
    countries: list[Count]
    years: list[Count]
    types: list[Count]
    categories: list[Count]
    levels: list[Count]
    representatives: list[Representative]
    min_pair_similarity: float = Field(description="The lowest cosine similarity between two members.")
    min_similarity: float = Field(description="The threshold the theme was built with.")
    vectors: str = Field(description="The vector method used: wordllama or tfidf.")
    recipe: str = THEME_RECIPE


@dataclass
class Item:
    """One themed insight: the fields grouping needs and the record it came from."""

    insight_id: str
    document_id: str
    kind: str
    text: str
    category: str
    record: dict[str, Any]


@dataclass
class ThemeSet:
    """The themes found, and what was left out."""

    themes: list[Theme] = field(default_factory=list)
    items: int = 0
    themed: int = 0
    not_recurring: int = 0
    vectors: str = ""
    min_similarity: float = 0.0
    sliced_blocks: int = 0

    def __iter__(self) -> Any:
        return iter(self.themes)

    def __len__(self) -> int:
        return len(self.themes)


# ------------------------------------------------------------------------------------------------ input
def as_dict(record: Any) -> dict[str, Any]:
    """A record (an ``OUT.jsonl`` dict or an :class:`~insights.schema.InsightRecord`) as a plain dict."""
    if isinstance(record, BaseModel):
        return record.model_dump(mode="json")
    return dict(record)


def record_id(record: Mapping[str, Any]) -> str:
    """The record's ``insight_id`` (see :func:`insights.ids.line_insight_id`)."""
    return line_insight_id(record)


def theme_text(record: Mapping[str, Any]) -> str:
    """What a record is grouped by: ``why_it_failed`` for a failed experiment, else its statement."""
    if record.get("kind") == "failed_experiment" and str(record.get("why_it_failed") or "").strip():
        return " ".join(str(record["why_it_failed"]).split())
    return " ".join(str(record.get("statement") or "").split())


def collect(records: Iterable[Any]) -> list[Item]:
    """The themable items of ``records``, one per ``insight_id`` (the first by document id), sorted."""
    by_id: dict[str, Item] = {}
    for raw in records:
        record = as_dict(raw)
        if record.get("kind") not in THEMED_KINDS or not record.get("evidence"):
            continue
        text = theme_text(record)
        if not text:
            continue
        iid = record_id(record)
        item = Item(iid, str(record.get("document_id", "")), str(record["kind"]), text, "", record)
        item.category = str(record.get("category") or "") if item.kind != "failed_experiment" else ""
        seen = by_id.get(iid)
        if seen is None or item.document_id < seen.document_id:
            by_id[iid] = item
    return [by_id[k] for k in sorted(by_id)]


# ----------------------------------------------------------------------------------------- clustering
def _cluster(vectors: Any, max_distance: float) -> list[int]:
    """Complete-linkage flat clusters of the rows of ``vectors`` (L2-normalised) at ``max_distance``."""
    np = require("numpy", EXTRA, purpose="insights themes")
    hierarchy = require("scipy.cluster.hierarchy", EXTRA, purpose="insights themes")
    distance = require("scipy.spatial.distance", EXTRA, purpose="insights themes")
    n = vectors.shape[0]
    if n == 1:
        return [0]
    sims = vectors @ vectors.T
    sims = sims.toarray() if hasattr(sims, "toarray") else np.asarray(sims)
    dist = np.clip(1.0 - sims.astype(np.float64), 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    # Exact symmetry for squareform; rounding keeps another BLAS's last-bit differences from deciding.
    dist = np.round((dist + dist.T) / 2.0, 6)
    tree = hierarchy.linkage(distance.squareform(dist, checks=False), method="complete")
    labels = hierarchy.fcluster(tree, t=max_distance, criterion="distance")
    return [int(x) for x in labels]


def _groups(items: list[Item], min_similarity: float, method: str) -> tuple[list[list[int]], Any, str, int]:
    """Indices of ``items`` grouped into clusters; the vectors of the distinct texts; the method; the
    number of blocks that had to be sliced."""
    np = require("numpy", EXTRA, purpose="insights themes")
    texts = sorted({item.text for item in items})
    row = {t: i for i, t in enumerate(texts)}
    vectors, used = embed(texts, method)
    blocks: dict[tuple[str, str], list[int]] = {}
    for i, item in enumerate(items):
        blocks.setdefault((item.kind, item.category), []).append(i)
    groups: list[list[int]] = []
    sliced = 0
    for key in sorted(blocks):
        members = blocks[key]
        distinct = sorted({row[items[i].text] for i in members})
        if len(distinct) > MAX_BLOCK:
            sliced += 1
            log.warning("block %s has %d distinct texts: clustered in slices of %d", key, len(distinct), MAX_BLOCK)
        label_of: dict[int, tuple[int, int]] = {}
        for s in range(0, len(distinct), MAX_BLOCK):
            part = distinct[s : s + MAX_BLOCK]
            labels = _cluster(vectors[np.asarray(part)], 1.0 - min_similarity)
            label_of.update({r: (s, lab) for r, lab in zip(part, labels, strict=True)})
        clusters: dict[tuple[int, int], list[int]] = {}
        for i in members:
            clusters.setdefault(label_of[row[items[i].text]], []).append(i)
        groups.extend(clusters.values())
    return groups, (vectors, row), used, sliced


def _cohesion(members: list[Item], matrix: Any, row: dict[str, int], np: Any) -> tuple[dict[str, float], float]:
    """Each member's mean similarity to the other members, and the least similarity of two members,
    computed over the distinct texts with their multiplicities (a theme of 10,000 copies of one text
    costs one row)."""
    counts = Counter(row[m.text] for m in members)
    rows = sorted(counts)
    weights = np.asarray([counts[r] for r in rows], dtype=np.float64)
    sub = matrix[np.asarray(rows)]
    sims = sub @ sub.T
    sims = np.asarray(sims.toarray() if hasattr(sims, "toarray") else sims, dtype=np.float64)
    n = len(members)
    if n == 1:
        return {members[0].insight_id: 1.0}, 1.0
    totals = sims @ weights - np.diag(sims)  # similarity to every other member
    mean = {r: float(totals[k] / (n - 1)) for k, r in enumerate(rows)}
    pairs = sims[~np.eye(len(rows), dtype=bool)]
    least = float(pairs.min()) if pairs.size else 1.0
    if any(counts[r] > 1 for r in rows):
        least = min(least, float(min(sims[k, k] for k, r in enumerate(rows) if counts[r] > 1)))
    return {m.insight_id: mean[row[m.text]] for m in members}, least


# -------------------------------------------------------------------------------------------- records
def _count(values: Iterable[str]) -> list[Count]:
    tally = Counter(v for v in values if v)
    return [Count(value=v, count=c) for v, c in sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))]


def _representatives(members: list[Item], centrality: dict[str, float]) -> list[Representative]:
    ranked = sorted(members, key=lambda m: (-round(centrality[m.insight_id], 6), m.insight_id))
    chosen: list[Item] = []
    documents: set[str] = set()
    for m in ranked:  # distinct documents first: a theme shows its recurrence
        if len(chosen) < REPRESENTATIVES and m.document_id not in documents:
            chosen.append(m)
            documents.add(m.document_id)
    for m in ranked:
        if len(chosen) < REPRESENTATIVES and m not in chosen:
            chosen.append(m)
    out = []
    for m in chosen:
        r, ev = m.record, m.record["evidence"][0]
        out.append(
            Representative(
                insight_id=m.insight_id,
                document_id=m.document_id,
                title=str(r.get("title") or ""),
                country=str(r.get("country") or ""),
                year=r.get("year"),
                type=str(r.get("type") or ""),
                statement=str(r.get("statement") or ""),
                quote=str(ev["quote"]),
                start=int(ev["start"]),
                end=int(ev["end"]),
                section=str(ev.get("section") or ""),
            )  # fmt: skip
        )
    return out


def build_theme(
    members: list[Item],
    *,
    centrality: dict[str, float],
    min_pair: float,
    min_similarity: float,
    vectors: str,
    index: TermIndex | None = None,
) -> Theme:
    """A :class:`Theme` of ``members`` with its counts, representatives and offline label."""

    members = sorted(members, key=lambda m: m.insight_id)
    kind = members[0].kind
    ids = [m.insight_id for m in members]
    recs = [m.record for m in members]
    years = [str(r["year"]) for r in recs if r.get("year") is not None]
    theme = Theme(
        theme_id=digest_id("thm", [THEME_RECIPE, kind, ids]),
        kind=kind,  # type: ignore[arg-type]
        label="",
        description="",
        insight_ids=ids,
        n_members=len(ids),
        n_documents=len({m.document_id for m in members}),
        n_countries=len({str(r.get("country") or "") for r in recs} - {""}),
        n_years=len(set(years)),
        documents=sorted({m.document_id for m in members}),
        countries=_count(str(r.get("country") or "") for r in recs),
        years=_count(years),
        types=_count(str(r.get("type") or "") for r in recs),
        categories=_count(str(r.get("category") or "") for r in recs),
        levels=_count(str(r.get("level") or "") for r in recs),
        representatives=_representatives(members, centrality),
        min_pair_similarity=round(min_pair, 4),
        min_similarity=min_similarity,
        vectors=vectors,
    )
    first = {r.insight_id for r in theme.representatives[:1]}
    texts = [m.text for m in members if m.insight_id in first] + [m.text for m in members if m.insight_id not in first]
    return offline_label(theme, texts, index)


def themes(
    records: Iterable[Any],
    *,
    min_similarity: float | None = None,
    min_documents: int = MIN_DOCUMENTS,
    vectors: str = "auto",
) -> ThemeSet:
    """Group the barriers, enablers and failed experiments of ``records`` into recurring themes.

    Args:
        records: lines of ``OUT.jsonl`` (dicts, e.g. from :func:`insights.output.read_jsonl`) or
            :class:`~insights.schema.InsightRecord` objects. Champions and records without evidence are
            ignored; a repeated ``insight_id`` counts once.
        min_similarity: every two members of a theme have at least this cosine similarity (default: the
            vector method's, :data:`insights.vectors.DEFAULT_MIN_SIMILARITY`).
        min_documents: a theme's members come from at least this many documents.
        vectors: ``auto``, ``wordllama`` or ``tfidf`` (see :mod:`insights.vectors`).

    Returns:
        A :class:`ThemeSet` (iterable of :class:`Theme`), sorted by kind, then by documents and members
        (most first), then ``theme_id``. Labels are offline; see :func:`insights.theme_labels.label_with_model`.

    Raises:
        ConfigError: the ``themes`` extra is not installed, or an argument is out of range.
    """
    from .errors import ConfigError

    vectors = resolve_method(vectors)
    if min_similarity is None:
        min_similarity = DEFAULT_MIN_SIMILARITY[vectors]
    if not 0.0 < min_similarity <= 1.0:
        raise ConfigError(f"min_similarity must be in (0, 1], got {min_similarity}")
    if min_documents < 1:
        raise ConfigError(f"min_documents must be at least 1, got {min_documents}")
    np = require("numpy", EXTRA, purpose="insights themes")
    items = collect(records)
    result = ThemeSet(items=len(items), vectors=vectors, min_similarity=min_similarity)
    if not items:
        return result
    groups, (matrix, row), result.vectors, result.sliced_blocks = _groups(items, min_similarity, vectors)
    texts_by_kind: dict[str, list[str]] = {}
    for item in items:
        texts_by_kind.setdefault(item.kind, []).append(item.text)
    index = TermIndex(texts_by_kind)
    found: list[Theme] = []
    for group in groups:
        members = [items[i] for i in group]
        if len({m.document_id for m in members}) < min_documents:
            result.not_recurring += 1
            continue
        centrality, min_pair = _cohesion(members, matrix, row, np)
        found.append(
            build_theme(
                members,
                centrality=centrality,
                min_pair=min_pair,
                min_similarity=min_similarity,
                vectors=result.vectors,
                index=index,
            )
        )
        result.themed += len(members)
    order = {k: i for i, k in enumerate(THEMED_KINDS)}
    result.themes = sorted(found, key=lambda t: (order[t.kind], -t.n_documents, -t.n_members, t.theme_id))
    return result
