"""A spending cap for a run (``insights extract --max-cost USD``).

Contract
--------
Before the run, :meth:`SpendCap.plan` estimates the documents still to do (:class:`insights.estimate.
Estimator`: the prompts as they will be sent, an assumed answer length, an empty cache) and
:meth:`SpendCap.refusal` says why the run must not start when that estimate is above the cap. A model
without a known price cannot be capped: making a :class:`SpendCap` for it raises
:class:`~insights.errors.ConfigError` rather than let the cap pass silently.

During the run, :meth:`SpendCap.admit` lets a document start only while what has been spent (the
estimated cost of finished documents' calls, cache hits free) plus the estimates of the documents in
flight plus its own stays within the cap. The first document refused ends the stream: no document starts
after it, those in flight finish and are saved, and :attr:`SpendCap.stopped` is set (the command exits
with code 5). A failed document counts its own spend if its error carries it (``error.usage.cost_usd``),
else its estimate (a failure may have paid for answers that were then rejected).

Costs are estimates from the price table (:mod:`insights.pricing`), not the provider's invoice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .batch import Outcome
from .config import Settings
from .documents import Document
from .errors import ConfigError
from .estimate import Estimate, Estimator
from .pricing import cost, load_prices

__all__ = ["SpendCap", "error_cost", "usd"]


def error_cost(error: BaseException | None) -> float | None:
    """What a failed document's calls cost, if its error says (``error.usage.cost_usd``)."""
    value = getattr(getattr(error, "usage", None), "cost_usd", None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def usd(amount: float) -> str:
    """A sum of US dollars for messages: cents and more to 4 decimals, less to 6."""
    return f"${amount:,.4f}" if amount >= 0.01 else f"${amount:.6f}"


@dataclass
class SpendCap:
    """At most ``cap`` US dollars for one run (see the module docstring).

    Attributes:
        estimate: the estimate of the documents planned (after :meth:`plan`).
        spent: estimated cost of the calls finished so far.
        stopped: a document was refused: the run ends early.
    """

    cap: float
    settings: Settings
    output_tokens_per_call: int = 700
    estimate: Estimate | None = field(default=None, init=False)
    spent: float = field(default=0.0, init=False)
    stopped: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if cost(self.settings.model, 1, 1, load_prices(self.settings.prices_path)) is None:
            raise ConfigError(
                f"--max-cost needs the price of model {self.settings.model!r}, which is not in the price table: "
                "give one with --prices FILE (or INSIGHTS_PRICES), or run without --max-cost"
            )
        self._estimator = Estimator(self.settings, output_tokens_per_call=self.output_tokens_per_call)
        self._costs: dict[str, float] = {}
        self._in_flight: dict[str, float] = {}

    def _cost(self, document: Document) -> float:
        found = self._costs.get(document.id)
        if found is None:
            found = self._costs[document.id] = self._estimator.add(document) or 0.0
        return found

    def plan(self, documents: Iterable[Document]) -> Estimate:
        """Estimate the documents the run will do (read one at a time, none kept)."""
        for document in documents:
            self._cost(document)
        self.estimate = self._estimator.result()
        return self.estimate

    def refusal(self) -> str | None:
        """Why the run must not start (its estimate is above the cap), or ``None``."""
        e = self.estimate
        if e is None or e.cost_usd is None or e.cost_usd <= self.cap:
            return None
        return (
            f"the estimate for the {e.documents:,} document(s) to do is {usd(e.cost_usd)} ({e.calls:,} call(s), "
            f"{e.input_tokens:,} input tokens, {e.output_tokens:,} output tokens assumed), above --max-cost "
            f"{usd(self.cap)}. Nothing was sent. Raise --max-cost, or do fewer documents first with --limit N "
            "or --sample N (the estimate assumes an empty cache)."
        )

    def admit(self, document: Document) -> bool:
        """Whether ``document`` may start now; the first refusal sets :attr:`stopped`."""
        if self.stopped:
            return False
        cost = self._cost(document)
        if self.spent + sum(self._in_flight.values()) + cost > self.cap:
            self.stopped = True
            return False
        self._in_flight[document.id] = cost
        return True

    def gate(self, documents: Iterable[Document]) -> Iterator[Document]:
        """``documents`` while :meth:`admit` lets them start."""
        for document in documents:
            if not self.admit(document):
                return
            yield document

    def finished(self, outcome: Outcome) -> None:
        """Count what a finished document cost."""
        estimated = self._in_flight.pop(outcome.document.id, 0.0)
        if outcome.result is not None:
            self.spent += outcome.result.provenance.usage.cost_usd or 0.0
        else:
            own = error_cost(outcome.error)
            self.spent += own if own is not None else estimated
