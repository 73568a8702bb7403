"""Typed records: what the model is asked to fill in, and what the library writes out.

Two families live here, and the difference matters:

* **Drafts** (``Extraction`` and the ``*Draft`` models) are the JSON schema sent to the model as its one
  tool. They hold verbatim ``quotes`` and nothing positional: the model is never asked for offsets.
* **Records** (``Evidence``, ``Barrier``, ``Enabler``, ``Champion``, ``FailedExperiment``,
  ``DocumentInsights``) are what ``insights`` returns and writes. Their names and fields are the interface
  other tools read; fields may be added, never renamed. ``Evidence.start``/``end``/``match``/``section``
  are set by :mod:`insights.grounding` from the document, never taken from the model.

``SCHEMA_VERSION`` changes whenever a record or draft changes shape; it is part of every cache key and of
every record's provenance.

The drafts' lists carry caps in the schema sent to the model (``maxItems``: ``QUOTES_CAP`` quotes an insight,
``KIND_CAP`` insights of each kind a call). Under grammar-constrained decoding (llama.cpp, Ollama) a small
model otherwise loops inside a list until ``max_tokens``; other endpoints read them as guidance. Validation
does not enforce them: an answer over a cap is kept whole, since nothing the model found is dropped unseen.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = "3"

Kind = Literal["barrier", "enabler", "champion", "failed_experiment"]
KINDS: tuple[Kind, ...] = ("barrier", "enabler", "champion", "failed_experiment")

#: One taxonomy shared by barriers and enablers (an enabler is often the same factor, present).
Category = Literal[
    "incentives_and_pay",
    "leadership_and_sponsorship",
    "skills_and_capacity",
    "risk_culture_and_blame",
    "bureaucracy_and_regulation",
    "funding_and_resources",
    "time_and_workload",
    "coordination_and_silos",
    "partnerships_and_trust",
    "data_and_evidence",
    "methods_and_tools",
    "political_and_external_context",
    "other",
]
#: Where the factor sits, after De Vries, Bekkers & Tummers (2016), "Innovation in the public sector".
Level = Literal["individual", "organizational", "environmental", "interaction"]
ChampionType = Literal["person", "organization", "team"]
Sector = Literal["government", "academia", "private", "civil_society", "international", "community", "unknown"]
MatchKind = Literal["exact", "normalized", "fuzzy"]

#: ``maxItems`` of an insight's quotes and of each kind's list in the schema sent to the model (not validated).
QUOTES_CAP = 3
KIND_CAP = 12

Quotes = Annotated[
    list[str],
    Field(min_length=1, json_schema_extra={"maxItems": QUOTES_CAP}),  # what a quote is: prompts/system.md
]
Statement = Annotated[str, Field(min_length=1)]


def _bare_properties(schema: dict[str, Any]) -> None:
    # The drafts' schema travels with every call: pydantic's titles ("Statement", "Champion Type") repeat
    # the property names, and defaults only restate "not required"; both cost tokens on every request.
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
        prop.pop("default", None)


def _bare_draft(schema: dict[str, Any]) -> None:
    # A draft's name in $defs says what it is, and the system prompt defines it: no title, no description
    # (the tool's own title is its name, and its description is the tool's: both stay).
    schema.pop("title", None)
    schema.pop("description", None)
    _bare_properties(schema)


# --------------------------------------------------------------------------------------------------- drafts
# The drafts' descriptions are short on purpose: they are sent with every call, and the system prompt
# (prompts/system.md) carries each kind's definition once.
class _Draft(BaseModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra=_bare_draft)

    statement: Statement
    quotes: Quotes


class FactorDraft(_Draft):
    """A barrier or an enabler."""

    category: Category
    level: Level


#: Barriers and enablers have one shape, sent once in the schema (the list they are in says which).
BarrierDraft: TypeAlias = FactorDraft
EnablerDraft: TypeAlias = FactorDraft


class ChampionDraft(_Draft):
    """A champion."""

    name: str = Field(description="As the document writes it.")
    champion_type: ChampionType
    affiliation: str = Field("", description="If stated.")
    sector: Sector = "unknown"
    contribution: str = Field(description="What they did, in one sentence.")


class FailedExperimentDraft(_Draft):
    """A failed experiment."""

    name: str = Field(description="Its name or a short label.")
    what_was_tried: str
    why_it_failed: str = Field(description="As the document explains it.")
    lesson: str = Field("", description="If stated.")


class Extraction(BaseModel):
    """Every barrier, enabler, champion and failed experiment the document itself states."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_bare_properties)

    barriers: list[BarrierDraft] = Field(default_factory=list, json_schema_extra={"maxItems": KIND_CAP})
    enablers: list[EnablerDraft] = Field(default_factory=list, json_schema_extra={"maxItems": KIND_CAP})
    champions: list[ChampionDraft] = Field(default_factory=list, json_schema_extra={"maxItems": KIND_CAP})
    failed_experiments: list[FailedExperimentDraft] = Field(
        default_factory=list, json_schema_extra={"maxItems": KIND_CAP}
    )

    @model_validator(mode="before")
    @classmethod
    def _has_a_list(cls, data: Any) -> Any:
        # An object holding none of the four lists is an answer of another shape (a small model in JSON
        # mode returned {"title": ..., "type": ...}); read as "nothing found" it would pass silently.
        # ``{}`` is still an answer: nothing to report.
        names = ("barriers", "enablers", "champions", "failed_experiments")
        if isinstance(data, dict) and data and not any(name in data for name in names):
            raise ValueError(
                f"the answer has none of the keys {', '.join(names)} (it has {', '.join(sorted(map(str, data))[:6])}):"
                " answer with an object of those four lists"
            )
        return data


DRAFT_FIELDS: dict[Kind, str] = {
    "barrier": "barriers",
    "enabler": "enablers",
    "champion": "champions",
    "failed_experiment": "failed_experiments",
}


# -------------------------------------------------------------------------------------------------- records
_KIND = "The kind of insight: barrier, enabler, champion or failed_experiment."
_CATEGORY = "What kind of factor it is (one taxonomy shared by barriers and enablers)."
_LEVEL = "Where the factor sits, after De Vries, Bekkers & Tummers (2016)."
_DOCUMENT_ID = "The document's id: its file name without the last extension, or its JSONL record id."
_CONTENT_HASH = "SHA-256 of the document's title, text and metadata (Document.content_hash)."


class Evidence(BaseModel):
    """A passage of ``Document.text`` that supports an insight: ``quote == text[start:end]``, always.

    ``quote`` is what the document says there, whatever the match; ``model_quote`` is the quote as the
    model wrote it (the same string for an ``exact`` match; for ``normalized`` and ``fuzzy`` matches it
    differs only in ways :mod:`insights.grounding` accepts: folding, or copying slips that change no
    negation, number, name or word). Lines written before ``model_quote`` existed read it as ``""``.
    """

    quote: str = Field(description="The located passage, Document.text[start:end] (set by the library).")
    model_quote: str = Field("", description="The quote as the model returned it.")
    start: int = Field(ge=0, description="Offset of the located passage in Document.text (set by the library).")
    end: int = Field(ge=0, description="End offset, exclusive (set by the library).")
    match: MatchKind = Field(description="How the quote was found: exact, normalized or fuzzy.")
    score: float = Field(100.0, description="Similarity of quote and located passage, 0-100 (100 unless fuzzy).")
    section: str = Field("", description="The '## section' / '> question' the passage falls in.")


class _Insight(BaseModel):
    statement: str = Field(description="The insight in one sentence, in the model's words.")
    evidence: list[Evidence] = Field(
        min_length=1, description="The passages of the document that support it, each located by the library."
    )


class Barrier(_Insight):
    """Something that blocked or slowed innovation."""

    kind: Literal["barrier"] = Field(default="barrier", description=_KIND)
    category: Category = Field(description=_CATEGORY)
    level: Level = Field(description=_LEVEL)


class Enabler(_Insight):
    """Something that made innovation possible or easier."""

    kind: Literal["enabler"] = Field(default="enabler", description=_KIND)
    category: Category = Field(description=_CATEGORY)
    level: Level = Field(description=_LEVEL)


class Champion(_Insight):
    """A person, team or organization that pushed innovation forward."""

    kind: Literal["champion"] = Field(default="champion", description=_KIND)
    name: str = Field(description="The champion's name as the document writes it.")
    champion_type: ChampionType = Field(description="person, organization or team.")
    affiliation: str = Field(default="", description="The organization the champion belongs to, if the document says.")
    sector: Sector = Field(
        default="unknown", description="The champion's sector (unknown if the document does not say)."
    )
    contribution: str = Field(default="", description="What the champion did, in one sentence.")


class FailedExperiment(_Insight):
    """An experiment the authors say failed, why, and what they learned."""

    kind: Literal["failed_experiment"] = Field(default="failed_experiment", description=_KIND)
    name: str = Field(description="The experiment's name or a short label for it.")
    what_was_tried: str = Field(description="What was tried.")
    why_it_failed: str = Field(description="Why it failed or fell short, as the authors tell it.")
    lesson: str = Field(default="", description="The lesson the authors draw, if they state one.")


Insight = Annotated[Union[Barrier, Enabler, Champion, FailedExperiment], Field(discriminator="kind")]
RECORD_TYPES: dict[Kind, type[_Insight]] = {
    "barrier": Barrier,
    "enabler": Enabler,
    "champion": Champion,
    "failed_experiment": FailedExperiment,
}


class Rejected(BaseModel):
    """An insight the model proposed that the library did not keep, and why."""

    kind: Kind = Field(description="The kind of insight the model proposed.")
    draft: dict[str, Any] = Field(description="The insight as the model returned it.")
    reason: str = Field(description="Why it was not kept (e.g. which quote could not be found in the document).")


class Usage(BaseModel):
    """Tokens spent on one document, summed over every call (re-asks and chunks included)."""

    input_tokens: int = Field(default=0, description="Input (prompt) tokens, as the endpoint reported them.")
    output_tokens: int = Field(default=0, description="Output (completion) tokens, as the endpoint reported them.")
    calls: int = Field(default=0, description="Model calls made, re-asks and chunks included.")
    cached_calls: int = Field(default=0, description="Of those, calls answered from the cache.")
    cost_usd: float | None = Field(
        default=None, description="Estimated cost in US dollars; null if the model has no price."
    )


class Provenance(BaseModel):
    """Where a result came from, so it can be reproduced and audited."""

    model: str = Field(description="The model that answered.")
    prompt_version: str = Field(description="Hash of the prompt files (changes when a prompt changes).")
    schema_version: str = Field(default=SCHEMA_VERSION, description="Version of the record and draft shapes.")
    library_version: str = Field(default="", description="Version of insights that produced the result.")
    content_hash: str = Field(default="", description="The document's content hash (see Document.content_hash).")
    chunks: int = Field(default=1, description="Chunks the document was split into (one call each, before re-asks).")
    usage: Usage = Field(default_factory=Usage, description="Tokens, calls and estimated cost for the document.")
    latency_s: float = Field(default=0.0, description="Seconds spent on the document's model calls.")
    extracted_at: str = Field(default="", description="When the result was made: UTC time, ISO 8601.")


class DocumentInsights(BaseModel):
    """Everything extracted from one document."""

    document_id: str
    title: str = ""
    barriers: list[Barrier] = Field(default_factory=list)
    enablers: list[Enabler] = Field(default_factory=list)
    champions: list[Champion] = Field(default_factory=list)
    failed_experiments: list[FailedExperiment] = Field(default_factory=list)
    rejected: list[Rejected] = Field(default_factory=list)
    provenance: Provenance

    def insights(self) -> list[Barrier | Enabler | Champion | FailedExperiment]:
        """All kept insights, in kind order."""
        return [*self.barriers, *self.enablers, *self.champions, *self.failed_experiments]


class InsightRecord(BaseModel):
    """One line of ``insights extract`` output: an insight with its document's identity.

    The insight's own fields (``statement``, ``category``…) sit at the top level beside these.
    """

    model_config = ConfigDict(extra="allow")

    document_id: str = Field(description=_DOCUMENT_ID)
    insight_id: str = Field("", description="Stable id of the insight (recipe in insights.ids).")
    kind: Kind = Field(description=_KIND)
    statement: str = Field(description="The insight in one sentence, in the model's words.")
    evidence: list[Evidence] = Field(description="The supporting passages, each located by the library.")
    title: str = Field(default="", description="The document's title.")
    type: str = Field(default="", description="The document's type tag (e.g. learningplan, experiment, blog).")
    year: int | None = Field(None, description="The document's year tag, when it is a whole number.")
    country: str = Field("", description="The document's first country tag.")
    metadata: dict[str, list[str]] = Field(
        default_factory=dict, description="Every [[key:value]] tag of the document, values in order."
    )
    source: str | None = Field(
        None, description="The document's file, relative to the input it was found under (see insights.corpus)."
    )
    content_hash: str = Field(default="", description=_CONTENT_HASH)
    model: str = Field(default="", description="The model that answered.")
    prompt_version: str = Field(default="", description="Hash of the prompt files the answer was asked with.")


class Counts(BaseModel):
    """How many insights of each kind a document gave, and how many were rejected."""

    model_config = ConfigDict(extra="allow")

    barrier: int = Field(default=0, description="Barriers kept.")
    enabler: int = Field(default=0, description="Enablers kept.")
    champion: int = Field(default=0, description="Champions kept.")
    failed_experiment: int = Field(default=0, description="Failed experiments kept.")
    rejected: int = Field(default=0, description="Insights proposed by the model and not kept (see rejected).")


class Block(BaseModel):
    """Where a document's lines are in ``OUT.jsonl`` (see insights.ledger)."""

    offset: int = Field(ge=0, description="Byte offset of the document's first line in OUT.jsonl.")
    length: int = Field(ge=0, description="Bytes of its lines, written in one write (0: no lines).")
    sha256: str = Field(description="SHA-256 (hex) of those bytes.")


class FileStamp(BaseModel):
    """The document's file as os.stat saw it before it was read (see insights.ledger)."""

    size: int = Field(ge=0, description="Size in bytes.")
    mtime_ns: int = Field(description="Modification time, in nanoseconds since the epoch.")


class LedgerRecord(BaseModel):
    """One line of ``OUT.documents.jsonl``: a finished document (the run's ledger).

    Permissive (``extra="allow"``): fields may be added, never renamed or removed.
    """

    model_config = ConfigDict(extra="allow")

    document_id: str = Field(description=_DOCUMENT_ID)
    title: str = Field(default="", description="The document's title.")
    path: str | None = Field(default=None, description="The file the document was read from, if any.")
    source: str | None = Field(
        default=None, description="The document's file, relative to the input it was found under (see insights.corpus)."
    )
    content_hash: str = Field(default="", description=_CONTENT_HASH)
    model: str = Field(default="", description="The model that answered.")
    prompt_version: str = Field(default="", description="Hash of the prompt files the answer was asked with.")
    counts: Counts = Field(default_factory=Counts, description="Insights kept per kind, and rejected.")
    rejected: list[Rejected] = Field(default_factory=list, description="Every insight not kept, with the reason.")
    provenance: Provenance = Field(description="Model, prompt and library versions, tokens, cost and time.")
    block: Block | None = Field(default=None, description="Where the document's lines are in OUT.jsonl.")
    stamp: FileStamp | None = Field(
        default=None, description="The file as it was before it was read (files of one document only)."
    )


class ErrorRecord(BaseModel):
    """One line of ``OUT.errors.jsonl``: a document that failed in the latest run.

    Permissive (``extra="allow"``): fields may be added, never renamed or removed.
    """

    model_config = ConfigDict(extra="allow")

    document_id: str = Field(description=_DOCUMENT_ID)
    path: str | None = Field(default=None, description="The file the document was read from, if any.")
    source: str | None = Field(
        default=None, description="The document's file, relative to the input it was found under (see insights.corpus)."
    )
    error_type: str = Field(description="The exception's class name (see insights/errors.py).")
    message: str = Field(description="What went wrong.")
    attempts: int = Field(default=1, description="HTTP attempts made for the failing call.")
    status: int | None = Field(default=None, description="The last HTTP status, if there was one.")
    retryable: bool = Field(description="Whether running again later may succeed.")
    last_output: str | None = Field(
        default=None, description="The last raw text the model returned (truncated), if any."
    )
    time: str = Field(default="", description="When it failed: UTC time, ISO 8601.")
