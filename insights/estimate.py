"""What a run will cost before it spends anything: documents, chunks, calls, tokens and dollars.

No network: the prompts are rendered exactly as a run would send them and counted with tiktoken when it
is installed and its encoding is available offline, otherwise with a characters/4 approximation (the
report says which). Output tokens cannot be known in advance; an assumed number per call is used and
reported. The cost is given at synchronous prices and at Batch API prices (``insights batch``).
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

    @property
    def noise_tokens_saved(self) -> int:
        """Tokens that cleaning (HTML, entities, base64 images, tags) kept away from the model."""
        return max(0, self.raw_tokens - self.clean_tokens)


def estimate(
    documents: Iterable[Document],
    settings: Settings,
    *,
    output_tokens_per_call: int = DEFAULT_OUTPUT_TOKENS_PER_CALL,
) -> Estimate:
    """Count what extracting ``documents`` with ``settings`` would send, without sending anything.

    Args:
        documents: loaded documents.
        settings: model, chunk size and prices come from here.
        output_tokens_per_call: assumed answer length.
    """
    name, count = tokenizer(settings.model)
    tool = count(json.dumps(GroundedExtraction.model_json_schema()))
    docs = chunks = input_tokens = raw = clean = 0
    for document in documents:
        docs += 1
        parts = chunks_for(document, settings)
        chunks += len(parts)
        for chunk in parts:
            input_tokens += tool + sum(count(m["content"]) for m in messages_for(document, chunk))
        clean_tokens = count(document.text)
        clean += clean_tokens
        # Raw size is only known in characters; scale by this document's own chars-per-token.
        raw += round(document.raw_chars * clean_tokens / max(1, len(document.text)))
    output_tokens = chunks * output_tokens_per_call
    prices = load_prices(settings.prices_path)
    return Estimate(
        model=settings.model,
        tokenizer=name,
        documents=docs,
        chunks=chunks,
        calls=chunks,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=cost(settings.model, input_tokens, output_tokens, prices),
        batch_cost_usd=cost(settings.model, input_tokens, output_tokens, prices, batch=True),
        raw_tokens=raw,
        clean_tokens=clean,
    )
