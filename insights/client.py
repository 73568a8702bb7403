"""The model call: the only module that imports ``openai`` and ``instructor``.

One :meth:`ModelClient.complete` is one structured call as instructor sees it: a request, and re-asks
while the answer fails validation (``Settings.reasks`` of them). Underneath, every HTTP request goes
through :meth:`ModelClient._send`, which owns, in this order:

1. the **cache**: the request is keyed (see :mod:`insights.cache` for the key contract) and a stored
   completion is returned without touching the network; instructor then parses and validates it again,
   so a fixed validator applies to cached answers for free;
2. **offline mode**: a miss raises :class:`~insights.errors.CacheMiss` instead of calling out;
3. **transport retries**, owned here and nowhere else (the SDK's ``max_retries`` is 0): connection
   errors, timeouts, 408/409/429 and 5xx are retried with exponential backoff and jitter, honouring
   ``Retry-After``; ``insufficient_quota``, 400/401/403/404/422 and content-filter refusals are not;
4. the **call log**: every request, hit or miss, success or failure, with tokens, latency and cost.

Every HTTP request the client sends on a connection it built has a **total deadline** of
``Settings.timeout`` seconds, from connecting to the last byte of the answer: httpx's own timeouts
bound each read, so an endpoint that trickles a byte at a time would never time out. The deadline is
kept by the network layer under httpx (every connect, read and write waits at most what is left of it);
an ``openai.OpenAI`` passed in keeps its own transport and timeouts.

:meth:`ModelClient.check` asks the endpoint once, before a run's first document, whether it answers
and serves the model (see there for what counts as an answer). Errors name the endpoint's base URL and
the model, and quote the server's own message rather than the SDK's rendering of the response body.

Completions that were cut off, filtered or refused raise :class:`~insights.errors.OutputRejected` and
are never cached (their tokens are still logged and counted). *Cut off* means ``finish_reason: "length"``,
or ``completion_tokens`` reaching ``max_tokens`` with an answer that is not a whole JSON value:
llama.cpp's server reports ``"tool_calls"`` or ``"stop"`` for an answer it stopped at the cap. A cut-off
answer is never re-asked (the re-ask would paste the truncated text back into a prompt that already did
not fit); the error says to raise ``--max-tokens`` or lower ``--chunk-chars``. When a document fails,
extraction calls :meth:`ModelClient.discard` to remove the completions its calls stored, so a failure is
never replayed from the cache.

Modes (``Settings.mode``): ``tools`` asks for a forced function call; ``json_schema`` sends
``response_format: {"type": "json_schema", ...}``; ``json`` sends ``response_format: {"type": "json_object"}``
with the schema in the system message (instructor's TOOLS, JSON_SCHEMA and JSON modes). The mode is part of
the cache key. A server that rejects the mode's request shape (llama.cpp answers ``json_schema`` with HTTP
500) fails at once with a :class:`~insights.errors.RequestRejected` naming the mode and the others.

Parsing is lenient only where JSON itself is: raw control characters inside strings (llama.cpp's JSON
grammar lets newlines through) are escaped before instructor parses, exactly as ``json.loads(...,
strict=False)`` reads them. The cache keeps the bytes the endpoint sent.

Logging (``insights.client`` at INFO, ``insights -v``): each request with its model, mode, document and
attempt; each answer with its tokens and time; each transport retry with its reason and wait; each
re-ask with the validation error; each cut-off answer.

For the Batch API (:mod:`insights.batchapi`): in *capture mode* (``on_miss`` set, offline) a miss hands the
request's key and the exact body the SDK would POST to ``on_miss`` instead of sending anything;
:meth:`ModelClient.store_batch_answer` caches a batch answer as :meth:`ModelClient._send` caches a synchronous
one; :class:`BatchAPI` wraps the Files and Batches endpoints.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlparse

import httpcore2
import httpx2
import instructor
import openai
from instructor.core.exceptions import InstructorRetryException
from pydantic import BaseModel, ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from .cache import Cache, CallRecord, request_key
from .config import Settings, resolve_settings
from .errors import (
    AuthError,
    CacheError,
    CacheMiss,
    ConfigError,
    ConnectionFailed,
    EndpointUnreachable,
    InsightsError,
    InvalidOutput,
    ModelError,
    ModelNotFound,
    OutputRejected,
    QuotaExceeded,
    RequestRejected,
    TransportError,
    register_secret,
)
from .pricing import Price, cost, load_prices
from .schema import SCHEMA_VERSION

log = logging.getLogger("insights.client")
T = TypeVar("T", bound=BaseModel)

#: ``Settings.mode`` -> instructor's mode (the value of which is part of the cache key).
MODES: dict[str, instructor.Mode] = {
    "tools": instructor.Mode.TOOLS,
    "json_schema": instructor.Mode.JSON_SCHEMA,
    "json": instructor.Mode.JSON,
}
#: Words in a server's error message that show it refused the request shape of a mode.
_MODE_WORDS: dict[str, tuple[str, ...]] = {
    "tools": ("tool",),
    "json_schema": ("response_format", "json_schema"),
    "json": ("response_format", "json_object"),
}
_CONTEXT_RE = re.compile(r"context[ _](length|size|window)|maximum context|exceed_context", re.IGNORECASE)
_CONTROL_RE = re.compile(r"[\x00-\x1f]")
_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
MAX_BACKOFF_S = 60.0
_NOT_KEYED = {"timeout", "extra_headers", "extra_query", "extra_body", "stream"}
#: Request fields the SDK would walk as typed parameters; sent in ``extra_body`` as given instead.
_RAW_BODY = ("tools", "tool_choice", "response_format")


@dataclass
class _Call:
    """The structured call under way in this thread (read by ``_dispatch``)."""

    ledger: CallLedger
    prompt_version: str
    attempt: int = 0


_CALL: ContextVar[_Call] = ContextVar("insights_call")


@dataclass
class CallLedger:
    """What one structured call cost: filled in by every HTTP request it made (cached or not)."""

    document_id: str = ""
    calls: int = 0
    cached_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    stored_keys: list[str] = field(default_factory=list)


class _Retryable(Exception):
    """Internal: a transport failure worth another try, with the error to raise if none is left."""

    def __init__(self, error: ModelError, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw:
            try:
                return max(0.0, float(raw) * scale)
            except ValueError:
                return None  # an HTTP date; fall back to our own backoff
    return None


def _error_object(exc: openai.APIStatusError) -> dict[str, Any]:
    """The ``error`` object of an OpenAI-style error body (or the body itself when it has none)."""
    body = exc.body if isinstance(exc.body, dict) else {}
    inner = body.get("error", body)
    return inner if isinstance(inner, dict) else {}


def _error_code(exc: openai.APIStatusError) -> str:
    inner = _error_object(exc)
    return str(inner.get("code") or inner.get("type") or getattr(exc, "code", "") or "")


def _server_words(exc: openai.APIStatusError) -> str:
    """What the server said, in its own words (the ``message`` of an OpenAI-style error body)."""
    body: Any = exc.body
    text = ""
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if isinstance(value, str) and value.strip():
                text = value
                break
    elif isinstance(body, str):
        text = body
    text = " ".join(text.split())[:400]
    if not text:
        text = getattr(exc.response, "reason_phrase", "") or "no message"
    return text if text[-1] in ".!?" else text + "."


def _model_not_found(exc: openai.APIStatusError) -> bool:
    """A 404 that is about the model (OpenAI's ``model_not_found``, or a server's words saying so)."""
    if exc.status_code != 404:
        return False
    if _error_code(exc) == "model_not_found":
        return True
    words = _server_words(exc).lower()
    return "model" in words and ("not found" in words or "not exist" in words)


def _root_cause(exc: BaseException) -> str:
    """The innermost cause's message (``[Errno 111] Connection refused``), for connection errors."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    for cause in reversed(seen):
        text = " ".join(str(cause).split())
        if text:
            return text
    return type(exc).__name__


def _failed_to_connect(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, (httpx2.ConnectError, httpx2.ConnectTimeout, httpcore2.ConnectError, ConnectionError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def classify(
    exc: Exception, attempts: int, *, base_url: str = "", model: str = "", timeout: float | None = None
) -> ModelError | _Retryable:
    """Map an SDK exception to the library's error, wrapped in ``_Retryable`` when a retry may help.

    The message is a sentence naming ``base_url`` (and ``model`` where it matters) with the server's own
    words, never the SDK's dump of the response body.
    """
    where = base_url or "the endpoint"
    if isinstance(exc, openai.APITimeoutError):
        within = f" within {timeout:g} s" if timeout else ""
        if _failed_to_connect(exc):
            text = f"could not connect to {where}{within}."
            return _Retryable(ConnectionFailed(text, attempts=attempts), None)
        text = f"no complete answer from {where}{within} (the whole-request timeout: --timeout or INSIGHTS_TIMEOUT)."
        return _Retryable(TransportError(text, attempts=attempts), None)
    if isinstance(exc, openai.APIConnectionError):
        if _failed_to_connect(exc):
            text = f"could not connect to {where} ({_root_cause(exc)}). Is the server running at this address?"
        else:
            text = f"the connection to {where} broke before an answer arrived ({_root_cause(exc)})."
        return _Retryable(ConnectionFailed(text, attempts=attempts), None)
    if not isinstance(exc, openai.APIStatusError):
        return ModelError(f"{type(exc).__name__}: {exc}", attempts=attempts)
    status, code = exc.status_code, _error_code(exc)
    said = f"{where} answered HTTP {status}{f' {code}' if code else ''}: {_server_words(exc)}"
    if status == 429 and code == "insufficient_quota":
        return QuotaExceeded(
            said + " The account is out of credit; retrying cannot help.", attempts=attempts, status=status
        )
    if status in (408, 409, 429) or status >= 500:
        return _Retryable(TransportError(said, attempts=attempts, status=status), _retry_after(exc.response))
    if status in (401, 403):
        return AuthError(said + " Check OPENAI_API_KEY and the endpoint.", attempts=attempts, status=status)
    if status == 404:
        if _model_not_found(exc):
            text = (
                f"{where} does not serve the model {model!r}: HTTP 404 {code or 'not found'}: {_server_words(exc)} "
                f"Check --model or INSIGHTS_MODEL (GET {where}/models lists what the endpoint serves)."
            )
        else:
            text = said + " Check --base-url or OPENAI_BASE_URL (it usually ends in /v1) and --model."
        return ModelNotFound(text, attempts=attempts, status=status)
    if "content_filter" in code or "content_policy" in code:
        return OutputRejected(said, attempts=attempts, status=status)
    return RequestRejected(said, attempts=attempts, status=status)


# ------------------------------------------------------------------------------- the request deadline
#: When the HTTP request under way in this thread must be done (``time.monotonic()``), or None.
_DEADLINE: ContextVar[float | None] = ContextVar("insights_deadline", default=None)


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _left(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` (one socket operation's) capped by what is left of this thread's request deadline."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the request's total deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore2.NetworkStream):
    """A connection whose every read and write waits at most what is left of the request deadline."""

    def __init__(self, stream: httpcore2.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        tls = self._stream.start_tls(ssl_context, server_hostname, _left(timeout, httpcore2.ConnectTimeout))
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore2.NetworkBackend):
    """httpcore's blocking sockets, with every operation bounded by the request deadline."""

    def __init__(self) -> None:
        self._backend = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        left = _left(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_tcp(host, port, left, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.NetworkStream:  # pragma: no cover - the client never asks for a unix socket
        left = _left(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _DeadlineTransport(httpx2.HTTPTransport):
    """httpx's own transport on a connection pool whose sockets keep the request deadline."""

    def __init__(self, limits: httpx2.Limits) -> None:
        super().__init__(limits=limits)
        # httpx builds its pool without a way to pass a network backend; this is the same pool with ours.
        # (If httpx renamed the attribute, the deadline would be lost: a test sends a trickling answer.)
        self._pool = httpcore2.ConnectionPool(
            ssl_context=httpx2.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_DeadlineBackend(),
        )


def _error_fields(exc: openai.APIStatusError) -> tuple[str, str]:
    inner = _error_object(exc)
    words = " ".join(str(inner.get(k) or "") for k in ("code", "type"))
    return words, str(inner.get("message") or exc.message or "")


def explain_status_error(exc: Exception, *, mode: str, attempts: int, base_url: str = "") -> RequestRejected | None:
    """A refusal that retrying cannot fix, said in terms a user can act on; ``None`` for anything else.

    * the prompt does not fit the model's context (OpenAI's ``context_length_exceeded``, llama.cpp's
      ``exceed_context_size_error``, vLLM's "maximum context length"): lower ``--chunk-chars``;
    * the server refuses the mode's request shape (its message names ``response_format``/``tools``, even
      as an HTTP 500, as llama.cpp does for ``json_schema``): use another ``--mode``.
    """
    if not isinstance(exc, openai.APIStatusError) or exc.status_code in (401, 403, 429):
        return None
    words, message = _error_fields(exc)
    status = exc.status_code
    said = f"HTTP {status} {' '.join(message.split())[:500]}"  # servers may send a traceback: one line
    if base_url:
        said = f"{base_url} answered {said}"
    if _CONTEXT_RE.search(f"{words} {message}"):
        return RequestRejected(
            f"{said} [{words.strip()}] (the prompt does not fit the model's context: lower --chunk-chars "
            "(INSIGHTS_CHUNK_CHARS), or serve the model with a larger context)",
            attempts=attempts,
            status=status,
        )
    if any(word in message.lower() for word in _MODE_WORDS.get(mode, ())):
        others = ", ".join(f"--mode {m}" for m in MODES if m != mode)
        return RequestRejected(
            f"{said} (the endpoint rejects the request shape of --mode {mode}; try {others})",
            attempts=attempts,
            status=status,
        )
    return None


def escape_controls(text: str) -> str:
    """``text`` with raw control characters inside JSON strings escaped, when that is what keeps it from
    parsing strictly; anything else is returned unchanged.

    The result means exactly what ``json.loads(text, strict=False)`` reads: nothing is guessed.
    """
    if not _CONTROL_RE.search(text):
        return text
    try:
        json.loads(text)
        return text
    except ValueError:
        pass
    try:
        json.loads(text, strict=False)
    except ValueError:
        return text
    escape = functools.partial(_CONTROL_RE.sub, lambda m: json.dumps(m.group())[1:-1])
    return _STRING_RE.sub(lambda m: escape(m.group()), text)


def _lenient(completion: Any) -> Any:
    """``completion`` as instructor should parse it: JSON strings with raw control characters escaped.

    A copy when anything changes: the completion itself is what the cache stores."""
    message = completion.choices[0].message if completion.choices else None
    if message is None:
        return completion
    calls = [call.function for call in message.tool_calls or [] if getattr(call, "function", None) is not None]
    texts = [message.content, *(function.arguments for function in calls)]
    fixed = [escape_controls(t) if isinstance(t, str) else t for t in texts]
    if fixed == texts:
        return completion
    copy = completion.model_copy(deep=True)
    message = copy.choices[0].message
    message.content = fixed[0]
    calls = [call.function for call in message.tool_calls or [] if getattr(call, "function", None) is not None]
    for function, text in zip(calls, fixed[1:], strict=True):
        function.arguments = text
    return copy


def _memoize_async_validator_check() -> None:
    """Remember which response models passed instructor's async-validator check.

    instructor 1.17 walks the response model's whole class tree (every attribute of every base) to
    refuse async validators, six times a request: over a third of the library's CPU per document,
    which under the GIL caps how many requests 32 threads keep in flight. The answer for a class never
    changes, so each class is checked once. If instructor moves the function, this does nothing.
    """
    try:
        from instructor.v2.core import patch as patch_module
        from instructor.v2.validation import async_validators
    except ImportError:  # pragma: no cover - another instructor layout
        return
    original = getattr(async_validators, "reject_async_validators", None)
    if original is None or getattr(original, "_insights_memo", False):
        return
    passed: dict[int, Any] = {}  # id -> model; holding the model keeps its id from being reused

    def reject_async_validators(response_model: Any) -> None:
        if id(response_model) in passed:
            return
        original(response_model)  # raises for a model that has async validators
        passed[id(response_model)] = response_model

    reject_async_validators._insights_memo = True  # type: ignore[attr-defined]
    async_validators.reject_async_validators = reject_async_validators
    if getattr(patch_module, "reject_async_validators", None) is original:
        patch_module.reject_async_validators = reject_async_validators  # type: ignore[attr-defined]


_memoize_async_validator_check()


@functools.lru_cache(maxsize=32)
def _prepared(model: type[T]) -> type[T]:
    # instructor wraps a plain model in a new subclass on every call, which defeats its schema cache
    # (about 50 ms of JSON-schema generation per request); wrap once per model instead.
    return instructor.openai_schema(model)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _rejection(completion: Any, request: dict[str, Any], attempts: int) -> OutputRejected | None:
    """Why a completion cannot be used (cut off, filtered, refused), or ``None``."""
    choice = completion.choices[0] if completion.choices else None
    if choice is None:
        return OutputRejected("the endpoint returned no choices", attempts=attempts)
    message = choice.message
    if getattr(message, "refusal", None):
        return OutputRejected(f"the model refused: {message.refusal}", attempts=attempts)
    if choice.finish_reason == "content_filter":
        return OutputRejected("the answer was blocked by the endpoint's content filter", attempts=attempts)
    raw = _output_text(completion)
    limit = request.get("max_completion_tokens") or request.get("max_tokens")
    used = _tokens(completion, "completion_tokens")
    at_cap = isinstance(limit, int) and 0 < limit <= used and not _whole_json(raw)
    if choice.finish_reason == "length" or at_cap:
        return OutputRejected(
            f"the answer was cut off at {limit or used} tokens (finish_reason={choice.finish_reason}, "
            f"{used} output tokens): raise --max-tokens (INSIGHTS_MAX_TOKENS) or lower --chunk-chars",
            attempts=attempts,
            last_output=raw,
        )
    return None


def _whole_json(text: str | None) -> bool:
    try:
        json.loads(text or "", strict=False)
    except ValueError:
        return False
    return True


def _output_text(completion: Any) -> str | None:
    """The answer's raw text: the first tool call's arguments, else the content."""
    try:
        message = completion.choices[0].message
        if message.tool_calls:
            return str(message.tool_calls[0].function.arguments)
        return None if message.content is None else str(message.content)
    except (AttributeError, IndexError, TypeError):
        return None


class ModelClient:
    """A configured connection to one OpenAI-compatible endpoint, with cache, retries and call log.

    Args:
        settings: resolved settings; :func:`~insights.config.resolve_settings` when omitted.
        cache: an open :class:`~insights.cache.Cache`; opened from ``settings.cache_path`` when omitted
            (``settings.cache_path=None`` runs without a cache).
        openai_client: an ``openai.OpenAI`` to use instead of building one (its own retries are kept
            off by wrapping it with ``max_retries=0``).
        sleep: the function that waits between retries (tests pass a fake clock).
        before_request: called with the estimated tokens before every network request (rate limits).

    Raises:
        ConfigError: no API key and no endpoint to send requests to (unless offline).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        cache: Cache | None = None,
        openai_client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        before_request: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings or resolve_settings()
        register_secret(self.settings.api_key)  # never stored or shown, even if an endpoint echoes it
        if openai_client is None and not (self.settings.offline or self.settings.api_key or self.settings.base_url):
            raise ConfigError(
                "no OPENAI_API_KEY is set and no OPENAI_BASE_URL / --base-url points at a local endpoint; "
                "set one, or answer from a cache with --offline (or --replay FILE)"
            )
        self.cache = (
            cache if cache is not None else (Cache(self.settings.cache_path) if self.settings.cache_path else None)
        )
        self._owns_cache = cache is None and self.cache is not None
        self._cache_off = False  # set when the cache could not be used (a full disk): see _cache_failed
        self.sleep = sleep
        self.before_request = before_request
        #: Capture mode (:mod:`insights.batchapi`): when set and offline, a cache miss calls
        #: ``on_miss(key, body, document_id)`` with the exact bytes the SDK would POST; nothing is logged.
        self.on_miss: Callable[[str, bytes, str], None] | None = None
        self._body_sdk: Any = None
        self.prices: dict[str, Price] = load_prices(self.settings.prices_path)
        self._rng = random.Random()
        self._lock = threading.Lock()
        # Patched once: instructor calls _dispatch for the first request and every re-ask.
        self.mode = MODES[self.settings.mode]
        self._create = instructor.patch(create=self._dispatch, mode=self.mode)
        self._openai: openai.OpenAI | None = None
        if openai_client is not None:
            if not isinstance(openai_client, openai.OpenAI):
                raise ConfigError(
                    f"client must be an openai.OpenAI or insights.ModelClient, not {type(openai_client).__name__}"
                )
            register_secret(openai_client.api_key)
            self._openai = openai_client.with_options(max_retries=0)
            self.endpoint = urlparse(str(openai_client.base_url)).netloc
        else:
            base = self.settings.base_url
            self.endpoint = urlparse(base).netloc if base else "api.openai.com"

    # ------------------------------------------------------------------------------------------- public
    @property
    def model(self) -> str:
        """The model every request asks for."""
        return self.settings.model

    @property
    def base_url(self) -> str:
        """The endpoint's base URL, as errors name it (``https://api.openai.com/v1`` by default)."""
        if self._openai is not None:
            return str(self._openai.base_url).rstrip("/")
        return (self.settings.base_url or "https://api.openai.com/v1").rstrip("/")

    def check(self) -> None:
        """Ask the endpoint once whether it is there and serves the model; call it before a run.

        Sends ``GET {base_url}/models/{model}`` (with the usual transport retries and deadline). A model
        object means yes. It raises, each error ``fatal``:

        * :class:`~insights.errors.ModelNotFound` when the endpoint says the model does not exist (404
          ``model_not_found``, or words to that effect) *and* a one-token chat request to that model
          gets a 404 too: endpoints alias names (Azure deployments, proxies), so a model the lookup does
          not know may still answer, and then the run goes ahead;
        * :class:`~insights.errors.AuthError` for 401/403, :class:`~insights.errors.QuotaExceeded`;
        * :class:`~insights.errors.EndpointUnreachable` when no connection or no answer came.

        Any other answer cannot tell (an endpoint without this route answers 404 of another kind, 405
        or 501; a 5xx that outlasts the retries), and the run goes ahead: its first chat request will
        say (a 404 there is fatal too). The list ``GET /models`` is not consulted, for the same reason
        of aliases. Offline, nothing is sent.
        """
        if self.settings.offline:
            return
        attempts = 0
        context = {"base_url": self.base_url, "model": self.model, "timeout": self.settings.timeout}

        def once() -> None:
            nonlocal attempts
            attempts += 1
            try:
                with _deadline(self.settings.timeout):
                    self.openai().models.retrieve(self.model)
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status == 404 and not _model_not_found(exc):
                    return None  # no such route: cannot tell
                if status == 404:
                    return self._confirm_missing(attempts)
                if status in (405, 501) or (400 <= status < 500 and status not in (401, 403, 404, 408, 409, 429)):
                    return None
                mapped = classify(exc, attempts, **context)  # type: ignore[arg-type]
                if isinstance(mapped, _Retryable):
                    raise mapped from exc
                raise mapped from exc
            except openai.OpenAIError as exc:
                mapped = classify(exc, attempts, **context)  # type: ignore[arg-type]
                if isinstance(mapped, _Retryable):
                    raise mapped from exc
                raise mapped from exc
            return None

        try:
            self._retrying()(once)
        except _Retryable as exc:
            error = exc.error
            if isinstance(error, ConnectionFailed) or error.status is None:
                raise EndpointUnreachable(
                    f"stopped before the first document, after {attempts} attempt(s): {error}",
                    attempts=attempts,
                ) from exc.__cause__
            log.info("the endpoint check could not tell (%s); going ahead", error)

    def openai(self) -> Any:
        """The underlying ``openai.OpenAI`` (built on first use, so offline runs need no key)."""
        with self._lock:
            if self._openai is None:
                # Local servers (Ollama, vLLM) ignore the key; the SDK insists on one.
                key = self.settings.api_key or "not-needed"
                limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)
                self._openai = openai.OpenAI(
                    api_key=key,
                    base_url=self.settings.base_url,
                    max_retries=0,
                    timeout=self.settings.timeout,
                    http_client=openai.DefaultHttpxClient(transport=_DeadlineTransport(limits)),
                )
            return self._openai

    def complete(
        self,
        response_model: type[T],
        messages: list[dict[str, Any]],
        *,
        document_id: str = "",
        prompt_version: str = "",
        ledger: CallLedger | None = None,
    ) -> T:
        """One structured call: request, then re-ask while validation fails.

        Args:
            response_model: the pydantic model the answer must validate against.
            messages: the chat messages.
            document_id: recorded in the call log.
            prompt_version: part of the cache key.
            ledger: receives tokens, latency and cost of every request made.

        Returns:
            The validated model instance.

        Raises:
            ModelError: a subclass saying why (transport, auth, quota, rejected request or output,
                ``InvalidOutput`` after the re-ask bound, with ``last_output``).
            CacheMiss: offline and not in the cache.
        """
        ledger = ledger if ledger is not None else CallLedger(document_id=document_id)
        ledger.document_id = document_id
        request: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.settings.temperature is not None:
            request["temperature"] = self.settings.temperature
        if self.settings.max_tokens:
            request["max_tokens"] = self.settings.max_tokens
        if self.settings.seed is not None:
            request["seed"] = self.settings.seed
        token = _CALL.set(_Call(ledger, prompt_version))
        try:
            # No ``context=``: instructor would render every message as a Jinja template.
            answer: T = self._create(
                response_model=_prepared(response_model), max_retries=self.settings.reasks, **request
            )
            return answer
        except InstructorRetryException as exc:
            failure = exc
        finally:
            _CALL.reset(token)
        # Raised outside the except block so that no cause/context cycle forms: instructor's exception
        # has our error as its cause, and ours keeps the SDK error as its own.
        outputs = [text for a in failure.failed_attempts or [] if (text := _output_text(a.completion)) is not None]
        cause = _insights_cause(failure)
        if cause is not None:
            if isinstance(cause, ModelError):
                cause.outputs = outputs  # the answers before the one that failed: extraction may use them
            raise cause
        why = _why(failure)
        raise InvalidOutput(
            f"no valid answer after {failure.n_attempts} attempt(s): {why}{_ends_mid_json(failure, why)}",
            attempts=failure.n_attempts,
            last_output=_output_text(failure.last_completion),
            document_id=document_id,
            outputs=outputs,
        ) from failure

    def discard(self, ledger: CallLedger) -> None:
        """Remove from the cache what the calls of ``ledger`` stored: their document failed, and a failure
        must not be replayed."""
        cache = self._live_cache()
        if cache is not None:
            try:
                for key in ledger.stored_keys:
                    cache.delete(key)
            except CacheError as exc:
                self._cache_failed(exc)
        ledger.stored_keys.clear()

    def for_model(self, model: str) -> ModelClient:
        """A client for another model sharing this one's connection, cache and hooks."""
        twin = ModelClient(
            self.settings.with_(model=model), cache=self.cache, sleep=self.sleep, before_request=self.before_request
        )
        twin._openai, twin.endpoint, twin._owns_cache = self._openai, self.endpoint, False
        return twin

    def close(self) -> None:
        """Close the HTTP client and, if this client opened it, the cache."""
        if self._openai is not None:
            self._openai.close()
        if self._body_sdk is not None:
            self._body_sdk.close()
        if self._owns_cache and self.cache is not None:
            self.cache.close()

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ private
    def _key(self, request: dict[str, Any], prompt_version: str) -> str:
        parts = {
            "endpoint": self.endpoint,
            "mode": str(self.mode.value),
            "prompt_version": prompt_version,
            "schema_version": SCHEMA_VERSION,
            "request": {k: v for k, v in request.items() if k not in _NOT_KEYED},
        }
        return request_key(parts, default=_jsonable)

    def _dispatch(self, *args: Any, **request: Any) -> Any:
        call = _CALL.get()
        call.attempt += 1
        if call.attempt > 1:
            messages = request.get("messages") or [{}]
            why = " ".join(str(messages[-1].get("content") or "").split()).removeprefix("Validation Error found: ")
            log.info(
                "%s: re-ask %d of %d after an invalid answer: %s",
                call.ledger.document_id or "request",
                call.attempt - 1,
                self.settings.reasks,
                why[:300],
            )
        return self._send(request, call.ledger, call.prompt_version, call.attempt)

    def _send(self, request: dict[str, Any], ledger: CallLedger, prompt_version: str, attempt: int = 1) -> Any:
        from openai.types.chat import ChatCompletion

        cache = self._live_cache()
        key = self._key(request, prompt_version) if cache is not None else ""
        doc = ledger.document_id
        if cache is not None:
            try:
                hit = cache.get(key)
            except CacheError as exc:
                self._cache_failed(exc)
                hit = None
            if hit is not None:
                try:
                    completion = ChatCompletion.model_validate(hit.response)
                    if not completion.choices:
                        raise ValueError("no choices")
                except (ValidationError, ValueError) as exc:
                    # Not a completion: a corrupt row is a miss. Raising here would look to instructor
                    # like a bad answer and be re-asked against the same row.
                    log.warning("cache entry %s is not a chat completion (%s); asking again", key, exc)
                    try:
                        cache.delete(key)
                    except CacheError as error:
                        self._cache_failed(error)
                else:
                    self._account(ledger, key, completion, 0.0, cached=True)
                    log.info("%s: request %d answered from the cache", doc or "request", attempt)
                    return _lenient(completion)
        if self.settings.offline:
            if self.on_miss is not None:
                self.on_miss(key, self.request_body(request), doc)
            else:
                self._log(CallRecord(doc, self.model, key, cached=False, status="CacheMiss", error="offline"))
            where = self.cache.path if self.cache is not None else "no cache (--no-cache)"
            raise CacheMiss(
                f"{doc or 'request'}: offline, and {where} has no answer for this request "
                f"(model {request.get('model')}, prompt version {prompt_version or '?'}, key {key[:15]}…)",
                key=key,
                document_id=doc,
            )

        attempts = 0

        def once() -> Any:
            nonlocal attempts
            attempts += 1
            verbose = log.isEnabledFor(logging.INFO)
            prompt_tokens = 0
            if self.before_request is not None or verbose:  # a few hundred µs a request: only when used
                prompt_tokens = len(json.dumps(request.get("messages", []), default=_jsonable)) // 4
            if self.before_request is not None:
                self.before_request(prompt_tokens)
            log.info(
                "%s: sending request %d (model %s, mode %s, ~%d prompt tokens, timeout %gs)",
                doc or "request",
                attempt,
                self.model,
                self.settings.mode,
                prompt_tokens,
                self.settings.timeout,
            )
            try:
                return self._openai_create(request)
            except openai.OpenAIError as exc:
                mapped = explain_status_error(
                    exc, mode=self.settings.mode, attempts=attempts, base_url=self.base_url
                ) or classify(exc, attempts, base_url=self.base_url, model=self.model, timeout=self.settings.timeout)
                err = mapped.error if isinstance(mapped, _Retryable) else mapped
                err.document_id = doc
                self._log(
                    CallRecord(doc, self.model, key, cached=False, status=type(err).__name__, error=str(err)[:500])
                )
                if isinstance(mapped, _Retryable):
                    raise mapped from exc
                raise mapped from exc

        started = time.perf_counter()
        try:
            completion = self._retrying(doc)(once)
        except _Retryable as exc:
            exc.error.attempts = attempts
            raise exc.error from exc.__cause__
        latency = time.perf_counter() - started
        rejected = _rejection(completion, request, attempts)
        log.info(
            "%s: answer %d in %.1fs (%d prompt + %d output tokens, finish_reason %s)",
            doc or "request",
            attempt,
            latency,
            _tokens(completion, "prompt_tokens"),
            _tokens(completion, "completion_tokens"),
            completion.choices[0].finish_reason if completion.choices else None,
        )
        # Spent tokens are counted whether or not the answer can be used.
        self._account(ledger, key, completion, latency, cached=False, rejected=rejected)
        if rejected is not None:
            rejected.document_id = doc
            log.info("%s: %s", doc or "request", rejected)
            raise rejected
        cache = self._live_cache()
        if cache is not None:
            # The answer is paid for: a cache that cannot store it (a full disk) must not fail the document.
            try:
                cache.put(
                    key,
                    response=completion.model_dump(mode="json"),
                    model=self.model,
                    input_tokens=_tokens(completion, "prompt_tokens"),
                    output_tokens=_tokens(completion, "completion_tokens"),
                    latency_s=latency,
                )
                ledger.stored_keys.append(key)
            except CacheError as exc:
                self._cache_failed(exc)
        return _lenient(completion)

    def _openai_create(self, request: dict[str, Any], sdk: Any = None) -> Any:
        # The tool schema (or response format) goes in ``extra_body``, which the SDK sends as given: as a
        # typed parameter it is walked node by node on every request (about 2 ms of CPU, the largest cost
        # under the GIL). The JSON sent is the same apart from key order.
        body = {k: request[k] for k in _RAW_BODY if k in request}
        params = {k: v for k, v in request.items() if k not in body}
        if body:
            params["extra_body"] = {**params.get("extra_body", {}), **body}
        with _deadline(self.settings.timeout):
            return (sdk or self.openai()).chat.completions.create(**params)

    def _confirm_missing(self, attempts: int) -> None:
        """The lookup said the model does not exist: raise ModelNotFound if a one-token chat says so too."""
        try:
            with _deadline(self.settings.timeout):
                self.openai().chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": "Reply with OK."}], max_tokens=1
                )
        except openai.APIStatusError as exc:
            if exc.status_code == 404:
                mapped = classify(exc, attempts, base_url=self.base_url, model=self.model)
                raise mapped from exc  # a ModelNotFound
        except openai.OpenAIError:
            pass  # any other failure cannot tell; the run's own requests will
        return None

    def _retrying(self, doc: str = "") -> Retrying:
        """The transport retry policy: connection errors, timeouts, 429 and 5xx, with backoff."""
        return Retrying(
            stop=stop_after_attempt(self.settings.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            before_sleep=functools.partial(self._log_retry, doc),
            sleep=self.sleep,
            reraise=True,
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        told = exc.retry_after if isinstance(exc, _Retryable) else None
        if told is not None:
            return min(told, MAX_BACKOFF_S)
        base: float = min(MAX_BACKOFF_S, 0.5 * 2 ** (state.attempt_number - 1))
        return base * (0.5 + self._rng.random() / 2)  # jitter: spread retries of parallel workers

    def _log_retry(self, doc: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info(
            "%s: %s; retry %d of %d in %.1f s",
            doc or "request",
            exc,
            state.attempt_number,
            self.settings.max_retries,
            wait,
        )

    def _account(
        self,
        ledger: CallLedger,
        key: str,
        completion: Any,
        latency: float,
        *,
        cached: bool,
        rejected: OutputRejected | None = None,
    ) -> None:
        tin, tout = _tokens(completion, "prompt_tokens"), _tokens(completion, "completion_tokens")
        # Prompt tokens the provider served from its prompt cache are priced at the cached-input rate.
        price = cost(self.model, tin, tout, self.prices, cached_input_tokens=_cached_tokens(completion))
        ledger.calls += 1
        ledger.cached_calls += int(cached)
        if not cached:
            ledger.input_tokens += tin
            ledger.output_tokens += tout
            if price is not None:
                ledger.cost_usd = (ledger.cost_usd or 0.0) + price
        status, error = ("ok", "") if rejected is None else (type(rejected).__name__, str(rejected)[:500])
        self._log(CallRecord(ledger.document_id, self.model, key, cached, tin, tout, latency, price, status, error))

    def _log(self, record: CallRecord) -> None:
        cache = self._live_cache()
        # Capture mode only reads what a batch answered (logged once, at its batch price): not a call.
        if cache is not None and self.on_miss is None:
            try:
                cache.log_call(record)
            except CacheError as exc:
                self._cache_failed(exc)

    def _live_cache(self) -> Cache | None:
        return None if self._cache_off else self.cache

    def _cache_failed(self, exc: CacheError) -> None:
        """The cache cannot be read or written (a full disk, an I/O error): warn once and go on without it.
        Answers already paid for are still used and counted; they are only not stored."""
        with self._lock:
            first, self._cache_off = not self._cache_off, True
        if first:
            log.warning("%s; continuing without the cache (answers are no longer stored, nor read from it)", exc)

    # ---------------------------------------------------------------------------- Batch API support
    def request_body(self, request: dict[str, Any]) -> bytes:
        """The exact bytes the SDK would POST for ``request``, built by the SDK itself; nothing is sent."""
        with self._lock:
            if self._body_sdk is None:
                self._body_sdk = _BodyRecorder(api_key="not-sent", base_url="http://127.0.0.1/v1", max_retries=0)
        try:
            self._openai_create(request, sdk=self._body_sdk)
        except _Body as captured:
            return captured.body
        raise AssertionError("the SDK sent nothing")  # pragma: no cover

    def store_batch_answer(self, key: str, response: dict[str, Any], document_id: str) -> tuple[int, int, float | None]:
        """Cache a Batch API answer under ``key`` exactly as :meth:`_send` caches a synchronous one, and log the
        call at batch prices (latency 0: the wait was the batch's). Returns (input tokens, output tokens, cost).

        Raises:
            OutputRejected: cut off, filtered or refused (never cached, as for a synchronous answer).
            ValueError: ``response`` is not a chat completion.
        """
        from openai.types.chat import ChatCompletion

        try:
            completion = ChatCompletion.model_validate(response)
        except ValidationError as exc:
            raise ValueError(f"not a chat completion: {exc}") from None
        rejected = _rejection(completion, {"max_tokens": self.settings.max_tokens}, 1)
        if rejected is not None:
            raise rejected
        tin, tout = _tokens(completion, "prompt_tokens"), _tokens(completion, "completion_tokens")
        if self.cache is not None:
            self.cache.put(
                key, response=completion.model_dump(mode="json"), model=self.model,
                input_tokens=tin, output_tokens=tout, latency_s=0.0,
            )  # fmt: skip
        price = cost(self.model, tin, tout, self.prices, batch=True)
        self._log(CallRecord(document_id, self.model, key, cached=False, input_tokens=tin, output_tokens=tout,
                             cost_usd=price, status="ok"))  # fmt: skip
        return tin, tout, price


class _Body(Exception):
    """Internal: the request body the SDK was about to send."""

    def __init__(self, body: bytes) -> None:
        super().__init__("request body captured")
        self.body = body


class _BodyRecorder(openai.OpenAI):
    """An SDK client that builds every request as usual and raises :class:`_Body` instead of sending it."""

    def _prepare_request(self, request: Any) -> None:
        raise _Body(bytes(request.content))


class BatchAPI:
    """The Files and Batches endpoints of a client's endpoint (OpenAI, Azure OpenAI's v1 API, the reference
    server), returning plain JSON values. Transient failures are retried as :meth:`ModelClient._send` retries
    them; the rest raise the library's :class:`~insights.errors.ModelError` subclasses.
    """

    def __init__(self, client: ModelClient) -> None:
        self.client = client

    def upload(self, name: str, data: bytes) -> str:
        """Upload a batch input file; return its id."""
        return str(self._call(lambda sdk: sdk.files.create(file=(name, data), purpose="batch")).id)

    def create(self, input_file_id: str, *, endpoint: str, metadata: dict[str, str]) -> dict[str, Any]:
        """Create a batch over an uploaded file (completion window 24 h)."""
        return _plain(self._call(lambda sdk: sdk.batches.create(
            input_file_id=input_file_id, endpoint=endpoint, completion_window="24h", metadata=metadata)))  # fmt: skip

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        """A batch's current state."""
        return _plain(self._call(lambda sdk: sdk.batches.retrieve(batch_id)))

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """Ask the endpoint to cancel a batch (it passes through ``cancelling``)."""
        return _plain(self._call(lambda sdk: sdk.batches.cancel(batch_id)))

    def list(self, *, limit: int = 100, max_pages: int = 20) -> list[dict[str, Any]]:
        """The most recent batches, newest first (at most ``max_pages`` pages of ``limit``)."""
        found: list[dict[str, Any]] = []
        page = self._call(lambda sdk: sdk.batches.list(limit=limit))
        for _ in range(max_pages):
            found.extend(_plain(item) for item in page.data)
            if not page.has_next_page():
                break
            page = self._call(functools.partial(_next_page, page))
        return found

    def content(self, file_id: str) -> bytes:
        """The bytes of a file (a batch's output or error file)."""
        return bytes(self._call(lambda sdk: sdk.files.content(file_id)).content)

    def _call(self, operation: Callable[[Any], Any]) -> Any:
        client, attempts = self.client, 0

        def once() -> Any:
            nonlocal attempts
            attempts += 1
            try:
                return operation(client.openai())
            except openai.OpenAIError as exc:
                mapped = classify(exc, attempts)
                raise mapped from exc

        retrying = Retrying(
            stop=stop_after_attempt(client.settings.max_retries + 1), wait=client._wait,
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)), sleep=client.sleep, reraise=True,
        )  # fmt: skip
        try:
            return retrying(once)
        except _Retryable as exc:
            exc.error.attempts = attempts
            raise exc.error from exc.__cause__


def _next_page(page: Any, sdk: Any) -> Any:
    return page.get_next_page()


def _plain(obj: Any) -> dict[str, Any]:
    return obj.model_dump(mode="json") if isinstance(obj, BaseModel) else dict(obj)


def _tokens(completion: Any, name: str) -> int:
    usage = getattr(completion, "usage", None)
    return int(getattr(usage, name, 0) or 0) if usage is not None else 0


def _cached_tokens(completion: Any) -> int:
    """Prompt tokens served from the provider's prompt cache (``usage.prompt_tokens_details.cached_tokens``)."""
    details = getattr(getattr(completion, "usage", None), "prompt_tokens_details", None)
    if isinstance(details, dict):  # a stored answer re-read without the SDK's types
        return int(details.get("cached_tokens") or 0)
    return int(getattr(details, "cached_tokens", 0) or 0)


def _ends_mid_json(failure: InstructorRetryException, why: str) -> str:
    """A hint when the last answer stops mid-JSON below ``max_tokens``: a local server (llama.cpp) also
    stops at its context size, reporting an ordinary finish, once re-asks have grown the prompt."""
    if "EOF while parsing" not in why or failure.last_completion is None:
        return ""
    prompt, output = (
        _tokens(failure.last_completion, "prompt_tokens"),
        _tokens(failure.last_completion, "completion_tokens"),
    )
    return (
        f" (the answer ends mid-JSON after {prompt} prompt + {output} output tokens: if the server's context "
        f"holds {prompt + output} tokens, it stopped there; lower --chunk-chars or --reasks)"
    )


def _insights_cause(exc: BaseException) -> InsightsError | None:
    """Our own error inside instructor's wrapper, unless the failure was a parse/validation error."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        if isinstance(seen, InsightsError):
            return seen
        if isinstance(seen, (ValidationError, json.JSONDecodeError)):
            return None
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _why(failure: InstructorRetryException) -> str:
    """The last attempt's own error, in one line (instructor's message is a dump of every attempt)."""
    attempts = getattr(failure, "failed_attempts", None) or []
    cause: BaseException | None = attempts[-1].exception if attempts else failure.__cause__
    text = " ".join(str(cause if cause is not None else failure).split())
    return text[:400] if text else type(failure).__name__
