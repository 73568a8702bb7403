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

Completions that end in ``length``, ``content_filter`` or a refusal raise
:class:`~insights.errors.OutputRejected` and are never cached. When a document fails, extraction calls
:meth:`ModelClient.discard` to remove the completions its calls stored, so a failure is never replayed
from the cache.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
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
)
from .pricing import Price, cost, load_prices
from .schema import SCHEMA_VERSION

log = logging.getLogger("insights.client")
T = TypeVar("T", bound=BaseModel)

MODE = instructor.Mode.TOOLS
#: The structured call under way in this thread: its ledger and prompt version (read by _dispatch).
_CALL: ContextVar[tuple[CallLedger, str]] = ContextVar("insights_call")
MAX_BACKOFF_S = 60.0
_NOT_KEYED = {"timeout", "extra_headers", "extra_query", "extra_body", "stream"}


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


def _error_code(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    inner = body.get("error", body) if isinstance(body.get("error", body), dict) else {}
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


def _check_finish(completion: Any, attempts: int) -> None:
    choice = completion.choices[0] if completion.choices else None
    if choice is None:
        raise OutputRejected("the endpoint returned no choices", attempts=attempts)
    message = choice.message
    if getattr(message, "refusal", None):
        raise OutputRejected(f"the model refused: {message.refusal}", attempts=attempts)
    if choice.finish_reason == "content_filter":
        raise OutputRejected("the answer was blocked by the endpoint's content filter", attempts=attempts)
    if choice.finish_reason == "length":
        raw = message.tool_calls[0].function.arguments if message.tool_calls else message.content
        raise OutputRejected(
            "the answer was cut off (finish_reason=length): raise max_tokens or use smaller chunks",
            attempts=attempts,
            last_output=raw,
        )


def _last_output(exc: InstructorRetryException) -> str | None:
    completion = exc.last_completion
    try:
        message = completion.choices[0].message  # type: ignore[union-attr]
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
        if openai_client is None and not (self.settings.offline or self.settings.api_key or self.settings.base_url):
            raise ConfigError(
                "no OPENAI_API_KEY is set and no OPENAI_BASE_URL / --base-url points at a local endpoint; "
                "set one, or answer from a cache with --offline (or --replay FILE)"
            )
        self.cache = (
            cache if cache is not None else (Cache(self.settings.cache_path) if self.settings.cache_path else None)
        )
        self._owns_cache = cache is None and self.cache is not None
        self.sleep = sleep
        self.before_request = before_request
        self.prices: dict[str, Price] = load_prices(self.settings.prices_path)
        self._rng = random.Random()
        self._lock = threading.Lock()
        # Patched once: instructor calls _dispatch for the first request and every re-ask.
        self._create = instructor.patch(create=self._dispatch, mode=MODE)
        self._openai: openai.OpenAI | None = None
        if openai_client is not None:
            if not isinstance(openai_client, openai.OpenAI):
                raise ConfigError(
                    f"client must be an openai.OpenAI or insights.ModelClient, not {type(openai_client).__name__}"
                )
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
        token = _CALL.set((ledger, prompt_version))
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
        cause = _insights_cause(failure)
        if cause is not None:
            raise cause
        raise InvalidOutput(
            f"no valid answer after {failure.n_attempts} attempt(s): {_why(failure)}",
            attempts=failure.n_attempts,
            last_output=_last_output(failure),
            document_id=document_id,
        ) from failure

    def discard(self, ledger: CallLedger) -> None:
        """Remove from the cache what the calls of ``ledger`` stored: their document failed, and a failure
        must not be replayed."""
        if self.cache is not None:
            for key in ledger.stored_keys:
                self.cache.delete(key)
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
            "mode": str(MODE.value),
            "prompt_version": prompt_version,
            "schema_version": SCHEMA_VERSION,
            "request": {k: v for k, v in request.items() if k not in _NOT_KEYED},
        }
        return request_key(parts, default=_jsonable)

    def _dispatch(self, *args: Any, **request: Any) -> Any:
        ledger, prompt_version = _CALL.get()
        return self._send(request, ledger, prompt_version)

    def _send(self, request: dict[str, Any], ledger: CallLedger, prompt_version: str) -> Any:
        from openai.types.chat import ChatCompletion

        key = self._key(request, prompt_version) if self.cache is not None else ""
        doc = ledger.document_id
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                try:
                    completion = ChatCompletion.model_validate(hit.response)
                    if not completion.choices:
                        raise ValueError("no choices")
                except (ValidationError, ValueError) as exc:
                    # Not a completion: a corrupt row is a miss. Raising here would look to instructor
                    # like a bad answer and be re-asked against the same row.
                    log.warning("cache entry %s is not a chat completion (%s); asking again", key, exc)
                    self.cache.delete(key)
                else:
                    self._account(ledger, key, completion, 0.0, cached=True)
                    return completion
        if self.settings.offline:
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
            if self.before_request is not None:
                self.before_request(len(json.dumps(request.get("messages", []), default=_jsonable)) // 4)
            try:
                return self._openai_create(request)
            except openai.OpenAIError as exc:
                mapped = classify(
                    exc, attempts, base_url=self.base_url, model=self.model, timeout=self.settings.timeout
                )
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
            completion = self._retrying()(once)
        except _Retryable as exc:
            exc.error.attempts = attempts
            raise exc.error from exc.__cause__
        latency = time.perf_counter() - started
        _check_finish(completion, attempts)
        if self.cache is not None:
            self.cache.put(
                key,
                response=completion.model_dump(mode="json"),
                model=self.model,
                input_tokens=_tokens(completion, "prompt_tokens"),
                output_tokens=_tokens(completion, "completion_tokens"),
                latency_s=latency,
            )
            ledger.stored_keys.append(key)
        self._account(ledger, key, completion, latency, cached=False)
        return completion

    def _openai_create(self, request: dict[str, Any]) -> Any:
        # The tool schema goes in ``extra_body``, which the SDK sends as given: as a typed parameter it
        # is walked node by node on every request (about 2 ms of CPU, the largest cost under the GIL).
        # The JSON sent is the same apart from key order.
        body = {k: request[k] for k in ("tools", "tool_choice") if k in request}
        params = {k: v for k, v in request.items() if k not in body}
        if body:
            params["extra_body"] = {**params.get("extra_body", {}), **body}
        with _deadline(self.settings.timeout):
            return self.openai().chat.completions.create(**params)

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

    def _retrying(self) -> Retrying:
        """The transport retry policy: connection errors, timeouts, 429 and 5xx, with backoff."""
        return Retrying(
            stop=stop_after_attempt(self.settings.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
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

    def _account(self, ledger: CallLedger, key: str, completion: Any, latency: float, *, cached: bool) -> None:
        tin, tout = _tokens(completion, "prompt_tokens"), _tokens(completion, "completion_tokens")
        price = cost(self.model, tin, tout, self.prices)
        ledger.calls += 1
        ledger.cached_calls += int(cached)
        if not cached:
            ledger.input_tokens += tin
            ledger.output_tokens += tout
            if price is not None:
                ledger.cost_usd = (ledger.cost_usd or 0.0) + price
        self._log(CallRecord(ledger.document_id, self.model, key, cached, tin, tout, latency, price))

    def _log(self, record: CallRecord) -> None:
        if self.cache is not None:
            self.cache.log_call(record)


def _tokens(completion: Any, name: str) -> int:
    usage = getattr(completion, "usage", None)
    return int(getattr(usage, name, 0) or 0) if usage is not None else 0


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
