"""The library's exceptions: one root, a few meaningful children.

Every error ``insights`` raises on purpose derives from :class:`InsightsError`; SDK and OS errors are
wrapped with their cause on ``__cause__`` (``raise ... from e``)::

    InsightsError
     ├── ConfigError            bad settings (unknown option value, no key and no endpoint)
     ├── DocumentError          a file that cannot be read as a document (names the file)
     ├── CacheError             the cache file cannot be opened or written
     │    └── CacheMiss         offline mode and no cached answer for a request
     ├── OutputError            the output files cannot be read or written
     └── ModelError             a model call that did not give a usable answer
          ├── TransportError    connection reset, timeout, 429 or 5xx after every retry  (retryable)
          │    └── ConnectionFailed    the endpoint could not be reached                 (retryable)
          │         └── EndpointUnreachable  not at the check before the first document, or
          │                                  for several documents in a row          (fatal)
          ├── RequestRejected   400 / 404 / 422: the request itself is wrong (too long, bad parameter)
          │    └── ModelNotFound       404: the endpoint does not serve the model       (fatal)
          ├── AuthError         401 / 403: the key is wrong or lacks access               (fatal)
          ├── QuotaExceeded     429 ``insufficient_quota``: the account is out of credit  (fatal)
          ├── OutputRejected    content filter, refusal, or ``finish_reason=length``
          └── InvalidOutput     the answer never parsed into the schema within the re-ask bound

``ModelError`` carries ``attempts`` (HTTP attempts made), ``status`` (HTTP status, if any) and
``last_output`` (the last raw text the model returned, if any). Two class attributes tell a batch
runner what to do: ``retryable`` (trying again later may help) and ``fatal`` (stop the whole run:
every further request would fail the same way).
"""

from __future__ import annotations


class InsightsError(Exception):
    """Root of every error raised by ``insights``."""


class ConfigError(InsightsError):
    """Settings that cannot work: an unknown value, or no key and no endpoint."""


class DocumentError(InsightsError):
    """A file that cannot be read as a document. ``path`` names it."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CacheError(InsightsError):
    """The cache database cannot be opened, read or written."""


class CacheMiss(CacheError):
    """Offline mode and no cached answer for this request. Running online would help: ``retryable``."""

    retryable = True

    def __init__(self, message: str, *, key: str = "", document_id: str = "") -> None:
        self.key = key
        self.document_id = document_id
        super().__init__(message)


class OutputError(InsightsError):
    """The output, documents or errors file cannot be read or written."""


class ModelError(InsightsError):
    """A model call that did not give a usable answer."""

    retryable: bool = False
    fatal: bool = False

    def __init__(
        self,
        message: str,
        *,
        attempts: int = 1,
        status: int | None = None,
        last_output: str | None = None,
        document_id: str = "",
    ) -> None:
        self.attempts = attempts
        self.status = status
        self.last_output = last_output
        self.document_id = document_id
        super().__init__(message)


class TransportError(ModelError):
    """Connection failures, timeouts, 429 and 5xx that outlasted every retry."""

    retryable = True


class RequestRejected(ModelError):
    """400, 404, 422: the request is wrong (unknown model, context too long); retrying cannot help."""


class AuthError(ModelError):
    """401 or 403: the key is missing, wrong, or lacks access. Stops a batch run."""

    fatal = True


class QuotaExceeded(ModelError):
    """429 with ``insufficient_quota``: the account has no credit left. Stops a batch run."""

    fatal = True


class OutputRejected(ModelError):
    """The model refused, was content-filtered, or ran out of output tokens."""


class InvalidOutput(ModelError):
    """The answer never parsed into the schema, even after re-asking."""

    retryable = True


class ConnectionFailed(TransportError):
    """The endpoint could not be reached (refused, reset, DNS failure, connect timeout) after every retry."""


class EndpointUnreachable(ConnectionFailed):
    """The endpoint cannot be reached at all: the check before the first document could not connect, or
    ``Settings.connection_failures`` documents in a row could not. Stops a batch run."""

    fatal = True


class ModelNotFound(RequestRejected):
    """404 on the model: the endpoint does not serve it (``model_not_found``), or has no chat route at
    this address. Every document would fail the same way, so it stops a batch run."""

    fatal = True
