"""The library's exceptions: one root, a few meaningful children.

Every error ``insights`` raises on purpose derives from :class:`InsightsError`; SDK and OS errors are
wrapped with their cause on ``__cause__`` (``raise ... from e``)::

    InsightsError
     ├── ConfigError            bad settings (unknown option value, no key and no endpoint)
     ├── DocumentError          a file that cannot be read as a document (names the file)
     ├── CacheError             the cache file cannot be opened or written
     │    └── CacheMiss         offline mode and no cached answer for a request
     ├── OutputError            the output files cannot be used (locked by another run, unsafe paths)
     │    └── OutputWriteError  the disk refused a write (full, I/O error): the run stops cleanly
     └── ModelError             a model call that did not give a usable answer
          ├── TransportError    connection reset, timeout, 429 or 5xx after every retry  (retryable)
          │    └── ConnectionFailed    the endpoint could not be reached                 (retryable)
          │         └── EndpointUnreachable  not at the check before the first document, or
          │                                  for several documents in a row          (fatal)
          ├── RequestRejected   400 / 404 / 422: the request itself is wrong (too long, bad parameter)
          │    └── ModelNotFound       404: the endpoint does not serve the model       (fatal)
          ├── AuthError         401 / 403: the key is wrong or lacks access               (fatal)
          ├── QuotaExceeded     429 ``insufficient_quota``: the account is out of credit  (fatal)
          ├── OutputRejected    content filter, refusal, or an answer cut off at ``max_tokens``
          └── InvalidOutput     the answer never parsed into the schema within the re-ask bound

``ModelError`` carries ``attempts`` (HTTP attempts made), ``status`` (HTTP status, if any),
``last_output`` (the last raw text the model returned, if any) and ``outputs`` (the raw answers of the
call's attempts that reached validation, oldest first: what extraction falls back on). Every
``InsightsError`` raised by a document's extraction carries ``usage`` (the tokens its calls spent, failed
attempts included) once it leaves :func:`insights.extract`. Two class attributes tell a batch
runner what to do: ``retryable`` (trying again later may help) and ``fatal`` (stop the whole run:
every further request would fail the same way).

Secrets never travel in an error: :func:`scrub` removes every key registered with
:func:`register_secret` (the client registers its API key) and anything shaped like a credential —
``sk-…`` keys, ``Bearer …``/``Basic …`` values, ``api-key: …``, ``Authorization: …``, ``access_token=…``
and the like — replacing it with ``[redacted]``. Every ``InsightsError`` message and
``ModelError.last_output`` is scrubbed when the error is made, and the call log, the errors file and
the command's stderr scrub again whatever text they store or show, because an endpoint (or a proxy in
front of it) may echo the key it refused in its error body.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .schema import Usage


REDACTED = "[redacted]"
_MIN_SECRET = 8  # shorter "keys" (placeholders such as "x") are not removed from every text
_secrets: set[str] = set()
_lock = threading.Lock()
_CREDENTIAL = re.compile(
    r"(?P<key>(?<![\w-])(?:sk|rk)-[A-Za-z0-9_-]{8,})"  # OpenAI-style keys: sk-…, sk-proj-…
    r"|(?P<scheme>\b(?:bearer|basic)\s+)"  # an Authorization value that looks like a token, not a word
    r"(?P<token>(?=[A-Za-z0-9._~+/=:-]*[0-9_./+=~:-])[A-Za-z0-9._~+/=:-]{6,})"
    r"|(?P<label>\b(?:api[-_ ]?key|x-api-key|authorization|access[-_]?token|auth[-_]?token|refresh[-_]?token"
    r"|client[-_]?secret|secret[-_]?key|password|key)[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?)"
    r"(?P<value>[^\s\"',;}&)]{4,})",
    re.IGNORECASE,
)


def register_secret(value: str | None) -> None:
    """Remember ``value`` (an API key) so that :func:`scrub` removes it from every text, in this process."""
    if value and len(value.strip()) >= _MIN_SECRET:
        with _lock:
            _secrets.add(value.strip())


def _redact(match: re.Match[str]) -> str:
    return (match.group("scheme") or match.group("label") or "") + REDACTED


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` without any registered key, any of ``secrets``, or anything shaped like a credential."""
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in (*secrets, *known):
        if secret and len(secret) >= _MIN_SECRET and secret in text:
            text = text.replace(secret, REDACTED)
    return _CREDENTIAL.sub(_redact, text)


class InsightsError(Exception):
    """Root of every error raised by ``insights``. Its message is scrubbed of secrets (:func:`scrub`)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(scrub(a) if isinstance(a, str) else a for a in args))

    #: What the failed document's calls spent (set by extraction; ``None`` elsewhere).
    usage: Usage | None = None


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
    """The output, documents or errors file cannot be read or written, is held by another run, or holds
    results this run must not mix with."""


class OutputWriteError(OutputError):
    """Writing an output file failed (disk full, I/O error, file too large, read-only file system).

    What had been written of the failing record is removed again, so the files stay consistent: a
    document is in the ledger only if its lines are in the output."""


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
        outputs: Sequence[str] = (),
    ) -> None:
        self.attempts = attempts
        self.status = status
        self.last_output = None if last_output is None else scrub(last_output)
        self.outputs = list(outputs)  # in memory only, for the best-answer fallback; never stored or shown
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
