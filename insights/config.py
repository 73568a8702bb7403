"""Settings, resolved in one place: explicit argument, then environment, then default.

Environment variables read (and nowhere else in the package)::

    OPENAI_API_KEY        key for the endpoint (never written anywhere)
    OPENAI_BASE_URL       an OpenAI-compatible endpoint (Azure, Ollama, vLLM, a loopback server)
    INSIGHTS_MODEL        model name                                   default: gpt-4o-mini
    INSIGHTS_CACHE        cache database path                          default: ~/.cache/insights/insights.db
    INSIGHTS_OFFLINE      1 = never touch the network, answer from the cache or fail
    INSIGHTS_NO_CACHE     1 = neither read nor write the cache
    INSIGHTS_PRICES       JSON file of {model: {"input": $/1M tokens, "output": $/1M tokens}}
    INSIGHTS_MAX_RETRIES  transport retries per call                    default: 4
    INSIGHTS_REASKS       re-asks after an invalid or ungrounded answer default: 2
    INSIGHTS_TIMEOUT      seconds per HTTP request, start to last byte  default: 120, or 600 for a local endpoint
    INSIGHTS_CONNECTION_FAILURES  documents in a row that may fail to connect before a run stops  default: 5
    INSIGHTS_CHUNK_CHARS  documents longer than this are chunked        default: 24000
    INSIGHTS_MODE         how the answer's structure is requested        default: tools
                          tools:       a forced function call (OpenAI, vLLM, llama.cpp with --jinja)
                          json_schema: response_format json_schema (OpenAI, Ollama; llama.cpp rejects it)
                          json:        response_format json_object, the schema in the system message
    INSIGHTS_MAX_TOKENS   output tokens per call; an answer that reaches it is cut off   default: 4096

A *local endpoint* is one whose host is ``localhost``, a loopback or private address, or a name without a
dot (a container or LAN host such as ``ollama``): a model on a CPU takes minutes per call, and a retry
after a timeout only queues behind the abandoned request on the server, so the timeout is longer there.
"""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from .errors import ConfigError

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_MAX_RETRIES = 4
DEFAULT_REASKS = 2
DEFAULT_TIMEOUT = 120.0
LOCAL_TIMEOUT = 600.0
DEFAULT_CHUNK_CHARS = 24_000
DEFAULT_CHUNK_OVERLAP = 1_000
DEFAULT_TEMPERATURE = 0.0
DEFAULT_MAX_TOKENS = 4_096
#: The ways of asking for structured output (``--mode``); insights.client maps them to instructor's modes.
MODES: tuple[str, ...] = ("tools", "json_schema", "json")
DEFAULT_MODE = "tools"
DEFAULT_CONNECTION_FAILURES = 5
MIN_CHUNK_CHARS = 2_000


def default_cache_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the cache lives unless told otherwise: ``$XDG_CACHE_HOME/insights/insights.db``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "insights" / "insights.db"


@dataclass(frozen=True)
class Settings:
    """Everything that shapes a run. Build it with :func:`resolve_settings`."""

    model: str = DEFAULT_MODEL
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    cache_path: Path | None = None  # None: no cache at all
    offline: bool = False
    prices_path: Path | None = None
    max_retries: int = DEFAULT_MAX_RETRIES
    reasks: int = DEFAULT_REASKS
    timeout: float = DEFAULT_TIMEOUT
    temperature: float = DEFAULT_TEMPERATURE
    max_tokens: int = DEFAULT_MAX_TOKENS
    seed: int | None = None
    chunk_chars: int = DEFAULT_CHUNK_CHARS
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP
    mode: str = DEFAULT_MODE
    connection_failures: int = DEFAULT_CONNECTION_FAILURES

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _number(env: Mapping[str, str], name: str, kind: type, default: Any) -> Any:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None


def is_local_endpoint(base_url: str | None) -> bool:
    """Whether ``base_url`` points at this machine or a private network (see the module docstring)."""
    host = (urlsplit(base_url).hostname or "") if base_url else ""
    if not host:
        return False
    if host == "localhost" or host.endswith((".localhost", ".local")) or ("." not in host and ":" not in host):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def resolve_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Resolve settings: keyword arguments that are not ``None`` win, then the environment, then defaults.

    Args:
        env: the environment to read (``os.environ`` when omitted; tests pass a dict).
        **overrides: any :class:`Settings` field; ``no_cache=True`` turns the cache off.

    Raises:
        ConfigError: an unknown setting or a value of the wrong type.
    """
    env = os.environ if env is None else env
    no_cache = bool(overrides.pop("no_cache", False)) or _flag(env.get("INSIGHTS_NO_CACHE"))
    unknown = set(overrides) - set(Settings.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    given = {k: v for k, v in overrides.items() if v is not None}

    cache_path: Path | None = None
    if not no_cache:
        raw_cache = given.pop("cache_path", None) or env.get("INSIGHTS_CACHE")
        cache_path = Path(raw_cache).expanduser() if raw_cache else default_cache_path(env)
    given.pop("cache_path", None)
    prices = given.pop("prices_path", None) or env.get("INSIGHTS_PRICES")

    def pick(name: str, env_name: str, kind: type, default: Any) -> Any:
        if name in given:
            return given.pop(name)
        return _number(env, env_name, kind, default)

    base_url = given.pop("base_url", None) or env.get("OPENAI_BASE_URL") or None
    settings = Settings(
        model=given.pop("model", None) or env.get("INSIGHTS_MODEL") or DEFAULT_MODEL,
        api_key=given.pop("api_key", None) or env.get("OPENAI_API_KEY") or None,
        base_url=base_url,
        cache_path=cache_path,
        offline=bool(given.pop("offline", False)) or _flag(env.get("INSIGHTS_OFFLINE")),
        prices_path=Path(prices).expanduser() if prices else None,
        max_retries=pick("max_retries", "INSIGHTS_MAX_RETRIES", int, DEFAULT_MAX_RETRIES),
        reasks=pick("reasks", "INSIGHTS_REASKS", int, DEFAULT_REASKS),
        timeout=pick(
            "timeout", "INSIGHTS_TIMEOUT", float, LOCAL_TIMEOUT if is_local_endpoint(base_url) else DEFAULT_TIMEOUT
        ),
        chunk_chars=pick("chunk_chars", "INSIGHTS_CHUNK_CHARS", int, DEFAULT_CHUNK_CHARS),
        max_tokens=pick("max_tokens", "INSIGHTS_MAX_TOKENS", int, DEFAULT_MAX_TOKENS),
        mode=given.pop("mode", None) or env.get("INSIGHTS_MODE") or DEFAULT_MODE,
        connection_failures=pick(
            "connection_failures", "INSIGHTS_CONNECTION_FAILURES", int, DEFAULT_CONNECTION_FAILURES
        ),
    )
    settings = replace(settings, **given)
    if settings.max_retries < 0 or settings.reasks < 0:
        raise ConfigError("max_retries and reasks must be 0 or more")
    if settings.mode not in MODES:
        raise ConfigError(f"mode {settings.mode!r} is not one of {', '.join(MODES)}")
    if settings.max_tokens < 1:
        raise ConfigError(f"max_tokens={settings.max_tokens} must be 1 or more")
    if not (math.isfinite(settings.timeout) and settings.timeout > 0):
        raise ConfigError(f"timeout={settings.timeout:g} must be a positive number of seconds")
    if settings.connection_failures < 1:
        raise ConfigError(f"connection_failures={settings.connection_failures} must be 1 or more")
    if settings.chunk_chars < MIN_CHUNK_CHARS:
        raise ConfigError(f"chunk_chars={settings.chunk_chars} is too small ({MIN_CHUNK_CHARS} at least)")
    return settings
