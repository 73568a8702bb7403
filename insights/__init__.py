"""insights: grounded extraction of barriers, enablers, champions and failed experiments.

    >>> import insights
    >>> doc = insights.load_document("seeds/000_e031a6a70dda01b9.txt")
    >>> result = insights.extract(doc)                       # one structured call (or one per chunk)
    >>> for b in result.barriers:
    ...     e = b.evidence[0]
    ...     assert doc.text[e.start:e.end]                   # every quote located by the library

Data flows one way: documents → prompts → client (the only module importing openai/instructor) →
grounding → extract → batch → output.

Names are imported on first use (PEP 562), so ``import insights`` and the command line's ``--help``,
``estimate`` and ``export`` do not import the model SDKs (openai, instructor); :data:`_LAZY` says which
module each public name comes from.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .batch import Outcome, RateLimiter, extract_many
    from .cache import Cache
    from .champions import champions
    from .client import ModelClient
    from .config import Settings, resolve_settings
    from .corpus import load_corpus, scan_corpus
    from .documents import Document, Section, load_document, parse_document
    from .errors import (
        AuthError,
        CacheError,
        CacheMiss,
        ConfigError,
        ConnectionFailed,
        DocumentError,
        EndpointUnreachable,
        InsightsError,
        InvalidOutput,
        ModelError,
        ModelNotFound,
        OutputError,
        OutputRejected,
        QuotaExceeded,
        RequestRejected,
        TransportError,
    )
    from .export import export, to_dataframe
    from .extract import extract
    from .output import OutputWriter, read_records
    from .schema import (
        Barrier,
        Champion,
        DocumentInsights,
        Enabler,
        Evidence,
        FailedExperiment,
        InsightRecord,
        Provenance,
        Rejected,
    )
    from .themes import themes

#: The module each public name is imported from, on first use.
_LAZY = {
    **dict.fromkeys(("Outcome", "RateLimiter", "extract_many"), "batch"),
    "Cache": "cache",
    "champions": "champions",
    "ModelClient": "client",
    **dict.fromkeys(("Settings", "resolve_settings"), "config"),
    **dict.fromkeys(("load_corpus", "scan_corpus"), "corpus"),
    **dict.fromkeys(("Document", "Section", "load_document", "parse_document"), "documents"),
    **dict.fromkeys(
        (
            "AuthError",
            "CacheError",
            "CacheMiss",
            "ConfigError",
            "ConnectionFailed",
            "DocumentError",
            "EndpointUnreachable",
            "InsightsError",
            "InvalidOutput",
            "ModelError",
            "ModelNotFound",
            "OutputError",
            "OutputRejected",
            "QuotaExceeded",
            "RequestRejected",
            "TransportError",
        ),
        "errors",
    ),  # fmt: skip
    **dict.fromkeys(("export", "to_dataframe"), "export"),
    "extract": "extract",
    **dict.fromkeys(("OutputWriter", "read_records"), "output"),
    **dict.fromkeys(
        (
            "Barrier",
            "Champion",
            "DocumentInsights",
            "Enabler",
            "Evidence",
            "FailedExperiment",
            "InsightRecord",
            "Provenance",
            "Rejected",
        ),
        "schema",
    ),  # fmt: skip
    "themes": "themes",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _Package(types.ModuleType):
    """The package object: ``extract`` and ``export`` name functions, not the submodules of the same name.

    Importing a submodule sets it as an attribute of its package; for these two names the function
    (resolved by :func:`__getattr__`) stays the public attribute instead. The submodules are in
    ``sys.modules`` as usual (``from insights.extract import chunks_for`` works).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "AuthError",
    "Barrier",
    "Cache",
    "CacheError",
    "CacheMiss",
    "Champion",
    "ConfigError",
    "ConnectionFailed",
    "Document",
    "DocumentError",
    "DocumentInsights",
    "Enabler",
    "EndpointUnreachable",
    "Evidence",
    "FailedExperiment",
    "InsightRecord",
    "InsightsError",
    "InvalidOutput",
    "ModelClient",
    "ModelError",
    "ModelNotFound",
    "Outcome",
    "OutputError",
    "OutputRejected",
    "OutputWriter",
    "Provenance",
    "QuotaExceeded",
    "RateLimiter",
    "Rejected",
    "RequestRejected",
    "Section",
    "Settings",
    "TransportError",
    "__version__",
    "champions",
    "export",
    "extract",
    "extract_many",
    "load_corpus",
    "load_document",
    "parse_document",
    "read_records",
    "resolve_settings",
    "scan_corpus",
    "themes",
    "to_dataframe",
]
