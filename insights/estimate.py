"""What a run will cost before it spends anything: documents, chunks, calls, tokens and dollars.

No network: the prompts are rendered exactly as a run would send them and counted with tiktoken when it
is installed and its encoding is available offline, otherwise with a characters/4 approximation (the
report says which). Output tokens cannot be known in advance; an assumed number per call is used and
reported. The cost is given at synchronous prices and at Batch API prices (``insights batch``). Cache
hits are not foreseen: the estimate is what the run would cost with an empty cache.

:class:`Estimator` adds documents one at a time (the corpus never has to be in memory) and gives each
document's own estimated cost; ``insights extract --max-cost`` uses it for the documents still to do.

Input tokens are split into the **fixed prompt** every call repeats (the system message, the tool schema
and the user message's template around the document: :func:`fixed_prompt_tokens`) and the **text** (the
chunk and its metadata lines: everything else). The fixed part is what prompt caching and a shorter
prompt save.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

from .config import Settings
from .documents import Document
from .extract import chunks_for, messages_for
from .grounding import GroundedExtraction
from .pricing import cost, load_prices
from .prompts import render_messages

DEFAULT_OUTPUT_TOKENS_PER_CALL = 700


@lru_cache(maxsize=4)
def tokenizer(model: str) -> tuple[str, Callable[[str], int]]:
    """A token counter for ``model``: ``(name, count)``; tiktoken if usable offline, else chars/4."""
    try:
        import tiktoken

        try:
            enc = tiktoken.encoding_for_model(model)
        except KeyError:
            enc = tiktoken.get_encoding("o200k_base")
        enc.encode("probe")
        return f"tiktoken {enc.name}", lambda text: len(enc.encode(text, disallowed_special=()))
    except Exception:  # not installed, or its encoding file cannot be fetched offline
        return "approximate (characters / 4)", lambda text: (len(text) + 3) // 4


@dataclass(frozen=True)
class Estimate:
    """The figures :func:`estimate` reports."""

    model: str
    tokenizer: str
    documents: int
    chunks: int
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    batch_cost_usd: float | None
    raw_tokens: int
    clean_tokens: int
    fixed_tokens_per_call: int = 0

    @property
    def fixed_prompt_tokens(self) -> int:
        """Input tokens that every call repeats (system message, tool schema, user template), all calls."""
        return self.fixed_tokens_per_call * self.calls

    @property
    def text_tokens(self) -> int:
        """Input tokens that are the documents' own (chunk text and metadata lines)."""
        return max(0, self.input_tokens - self.fixed_prompt_tokens)

    def as_dict(self) -> dict[str, object]:
        """The figures as one JSON object (``insights estimate --json``)."""
        return {
            "model": self.model,
            "documents": self.documents,
            "chunks": self.chunks,
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "fixed_prompt_tokens": self.fixed_prompt_tokens,
            "fixed_prompt_tokens_per_call": self.fixed_tokens_per_call,
            "text_tokens": self.text_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
            "batch_cost_usd": self.batch_cost_usd,
            "raw_tokens": self.raw_tokens,
            "clean_tokens": self.clean_tokens,
            "tokenizer": self.tokenizer,
        }

    @property
    def noise_tokens_saved(self) -> int:
        """Tokens that cleaning (HTML, entities, base64 images, tags) kept away from the model."""
        return max(0, self.raw_tokens - self.clean_tokens)


def tool_schema_json() -> str:
    """The tool schema as sent with every call: the extraction tool's JSON schema, serialized compactly as
    the HTTP client sends request bodies."""
    return json.dumps(GroundedExtraction.model_json_schema(), separators=(",", ":"), ensure_ascii=False)


def fixed_prompt_tokens(count: Callable[[str], int]) -> int:
    """Tokens every call sends whatever the document: the system message, the tool schema, and the user
    message rendered for an empty document with no metadata (its template and delimiter lines)."""
    empty = render_messages(document_id="", title="", text="")
    return count(tool_schema_json()) + sum(count(m["content"]) for m in empty)


class Estimator:
    """Counts documents one at a time; :meth:`result` is the :class:`Estimate` of those added so far.

    Args:
        settings: model, chunk size and prices come from here.
        output_tokens_per_call: assumed answer length.
    """

    def __init__(self, settings: Settings, *, output_tokens_per_call: int = DEFAULT_OUTPUT_TOKENS_PER_CALL) -> None:
        self.settings, self.output_tokens_per_call = settings, output_tokens_per_call
        self._name, self._count = tokenizer(settings.model)
        self._tool = self._count(tool_schema_json())
        self._prices = load_prices(settings.prices_path)
        self.documents = self.chunks = self.input_tokens = self.raw_tokens = self.clean_tokens = 0

    def add(self, document: Document) -> float | None:
        """Count one document; returns its estimated cost in USD (``None``: the model has no price)."""
        parts = chunks_for(document, self.settings)
        tokens = sum(self._tool + sum(self._count(m["content"]) for m in messages_for(document, c)) for c in parts)
        clean_tokens = self._count(document.text)
        self.documents += 1
        self.chunks += len(parts)
        self.input_tokens += tokens
        self.clean_tokens += clean_tokens
        # Raw size is only known in characters; scale by this document's own chars-per-token.
        self.raw_tokens += round(document.raw_chars * clean_tokens / max(1, len(document.text)))
        return cost(self.settings.model, tokens, len(parts) * self.output_tokens_per_call, self._prices)

    def result(self) -> Estimate:
        """The figures for every document added."""
        output_tokens = self.chunks * self.output_tokens_per_call
        return Estimate(
            model=self.settings.model,
            tokenizer=self._name,
            documents=self.documents,
            chunks=self.chunks,
            calls=self.chunks,
            input_tokens=self.input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost(self.settings.model, self.input_tokens, output_tokens, self._prices),
            batch_cost_usd=cost(self.settings.model, self.input_tokens, output_tokens, self._prices, batch=True),
            raw_tokens=self.raw_tokens,
            clean_tokens=self.clean_tokens,
            fixed_tokens_per_call=fixed_prompt_tokens(self._count),
        )


def estimate(
    documents: Iterable[Document],
    settings: Settings,
    *,
    output_tokens_per_call: int = DEFAULT_OUTPUT_TOKENS_PER_CALL,
) -> Estimate:
    """Count what extracting ``documents`` with ``settings`` would send, without sending anything.

    Args:
        documents: loaded documents (an iterator is consumed one document at a time).
        settings: model, chunk size and prices come from here.
        output_tokens_per_call: assumed answer length.
    """
    estimator = Estimator(settings, output_tokens_per_call=output_tokens_per_call)
    for document in documents:
        estimator.add(document)
    return estimator.result()
