"""insights: grounded extraction of barriers, enablers, champions and failed experiments.

    >>> import insights
    >>> doc = insights.load_document("seeds/000_e031a6a70dda01b9.txt")
    >>> result = insights.extract(doc)                       # one structured call (or one per chunk)
    >>> for b in result.barriers:
    ...     e = b.evidence[0]
    ...     assert doc.text[e.start:e.end]                   # every quote located by the library

Data flows one way: documents → prompts → client (the only module importing openai/instructor) →
grounding → extract → batch → output.
"""

__version__ = "0.1.0"

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
