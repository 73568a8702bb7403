"""Token prices, to turn token counts into an estimated cost in US dollars.

:data:`DEFAULT_PRICES` holds list prices in USD per 1 million tokens (input, output) for a few common
OpenAI models. They are **estimates as of writing** (2025) and will drift: providers change prices,
and negotiated prices differ. Each entry also has the **Batch API** price (``batch_input``,
``batch_output``): half the synchronous price for OpenAI's models, as OpenAI lists it; and the
**cached input** price (``cached_input``): what a prompt token costs when the provider served it from its
prompt cache (OpenAI reports those tokens as ``usage.prompt_tokens_details.cached_tokens``).
Override or extend them with a JSON file::

    {"gpt-4o-mini": {"input": 0.15, "output": 0.60, "batch_input": 0.075, "batch_output": 0.30,
                     "cached_input": 0.075},
     "my-azure-deployment": {"input": 2.50, "output": 10.00},
     "llama3": {"input": 0, "output": 0}}

passed to :func:`load_prices` (the ``INSIGHTS_PRICES`` setting names such a file). Entries in the
file replace or add to the defaults; the rest of the defaults stay. An entry without batch prices has
none (``cost(..., batch=True)`` is ``None``), and one without ``cached_input`` prices cached tokens at its
input price: the library does not guess a discount.

A model name is priced by its exact entry, else by the longest known name it starts with (so
``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``, not ``gpt-4o``). Unknown models, such as
local ones, have no price: :func:`cost` returns ``None`` rather than a made-up number.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

__all__ = ["BATCH_DISCOUNT", "DEFAULT_PRICES", "Price", "cost", "load_prices", "lookup"]


@dataclass(frozen=True)
class Price:
    """USD per 1 million tokens: synchronous, through the Batch API, and for cached input (``None``: not
    known; cached input is then priced as input)."""

    input: float
    output: float
    batch_input: float | None = None
    batch_output: float | None = None
    cached_input: float | None = None


BATCH_DISCOUNT = 0.5
"""OpenAI's Batch API price as a fraction of the synchronous one (50 % off, input and output)."""


def _openai(input: float, output: float, cached_input: float) -> Price:  # noqa: A002 - the field's name
    return Price(
        input,
        output,
        batch_input=input * BATCH_DISCOUNT,
        batch_output=output * BATCH_DISCOUNT,
        cached_input=cached_input,
    )


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-mini": _openai(input=0.15, output=0.60, cached_input=0.075),
    "gpt-4o": _openai(input=2.50, output=10.00, cached_input=1.25),
    "gpt-4.1": _openai(input=2.00, output=8.00, cached_input=0.50),
    "gpt-4.1-mini": _openai(input=0.40, output=1.60, cached_input=0.10),
    "gpt-4.1-nano": _openai(input=0.10, output=0.40, cached_input=0.025),
    "gpt-5-mini": _openai(input=0.25, output=2.00, cached_input=0.025),
}


def _rate(path: Path, model: str, entry: Mapping[str, Any], field: str) -> float:
    value = entry.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path}: price for {model!r} needs a number for {field!r}, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{path}: price for {model!r} has an invalid {field!r}: {value!r}")
    return float(value)


def load_prices(path: Path | None) -> dict[str, Price]:
    """The default prices, updated with the user's JSON file if one is given.

    Args:
        path: a JSON file ``{model: {"input": usd_per_1m, "output": usd_per_1m}}``, or ``None``.

    Returns:
        A new dict; :data:`DEFAULT_PRICES` is never modified.

    Raises:
        ConfigError: the file cannot be read, is not JSON, or has an entry of the wrong shape. The
            message names the file and the cause.
    """
    prices = dict(DEFAULT_PRICES)
    if path is None:
        return prices
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the prices file: {e}") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: the prices file is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the prices file must be a JSON object of {{model: {{input, output}}}}, got {type(data).__name__}"
        )
    for model, entry in data.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: price for {model!r} must be an object with 'input' and 'output', got {entry!r}")
        extra = [
            None if entry.get(f) is None else _rate(path, model, entry, f)
            for f in ("batch_input", "batch_output", "cached_input")
        ]
        prices[model] = Price(_rate(path, model, entry, "input"), _rate(path, model, entry, "output"), *extra)
    return prices


def lookup(model: str, prices: Mapping[str, Price]) -> Price | None:
    """The price of ``model``: its exact entry, else the longest known name it starts with, else ``None``."""
    if model in prices:
        return prices[model]
    best: str | None = None
    for name in prices:
        if name and model.startswith(name) and (best is None or len(name) > len(best)):
            best = name
    return prices[best] if best is not None else None


def cost(
    model: str,
    input_tokens: int,
    output_tokens: int,
    prices: Mapping[str, Price],
    *,
    batch: bool = False,
    cached_input_tokens: int = 0,
) -> float | None:
    """Estimated cost in USD of one call, or ``None`` when the model has no known price.

    Args:
        model: the model name as sent or as reported by the endpoint (dated snapshots match by prefix).
        input_tokens: prompt tokens, cached ones included (as OpenAI reports ``prompt_tokens``).
        output_tokens: completion tokens.
        prices: usually the result of :func:`load_prices`.
        batch: at Batch API prices (``None`` when the entry has none).
        cached_input_tokens: of ``input_tokens``, those served from the provider's prompt cache: priced at
            ``cached_input`` (synchronous calls only; at the input price when the entry has none).
    """
    price = lookup(model, prices)
    if price is None:
        return None
    rate_in, rate_out = (price.batch_input, price.batch_output) if batch else (price.input, price.output)
    if rate_in is None or rate_out is None:
        return None
    cached = 0 if batch else max(0, min(cached_input_tokens, input_tokens))
    rate_cached = rate_in if price.cached_input is None else price.cached_input
    return ((input_tokens - cached) * rate_in + cached * rate_cached + output_tokens * rate_out) / 1_000_000
