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
    INSIGHTS_TIMEOUT      seconds per HTTP request, start to last byte  default: 120
    INSIGHTS_CONNECTION_FAILURES  documents in a row that may fail to connect before a run stops  default: 5
    INSIGHTS_CHUNK_CHARS  documents longer than this are chunked        default: 24000
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_MAX_RETRIES = 4
DEFAULT_REASKS = 2
DEFAULT_TIMEOUT = 120.0
DEFAULT_CHUNK_CHARS = 24_000
DEFAULT_CHUNK_OVERLAP = 1_000
DEFAULT_TEMPERATURE = 0.0
DEFAULT_MAX_TOKENS = 4_096
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

    settings = Settings(
        model=given.pop("model", None) or env.get("INSIGHTS_MODEL") or DEFAULT_MODEL,
        api_key=given.pop("api_key", None) or env.get("OPENAI_API_KEY") or None,
        base_url=given.pop("base_url", None) or env.get("OPENAI_BASE_URL") or None,
        cache_path=cache_path,
        offline=bool(given.pop("offline", False)) or _flag(env.get("INSIGHTS_OFFLINE")),
        prices_path=Path(prices).expanduser() if prices else None,
        max_retries=pick("max_retries", "INSIGHTS_MAX_RETRIES", int, DEFAULT_MAX_RETRIES),
        reasks=pick("reasks", "INSIGHTS_REASKS", int, DEFAULT_REASKS),
        timeout=pick("timeout", "INSIGHTS_TIMEOUT", float, DEFAULT_TIMEOUT),
        chunk_chars=pick("chunk_chars", "INSIGHTS_CHUNK_CHARS", int, DEFAULT_CHUNK_CHARS),
        connection_failures=pick(
            "connection_failures", "INSIGHTS_CONNECTION_FAILURES", int, DEFAULT_CONNECTION_FAILURES
        ),
    )
    settings = replace(settings, **given)
    if settings.max_retries < 0 or settings.reasks < 0:
        raise ConfigError("max_retries and reasks must be 0 or more")
    if not (math.isfinite(settings.timeout) and settings.timeout > 0):
        raise ConfigError(f"timeout={settings.timeout:g} must be a positive number of seconds")
    if settings.connection_failures < 1:
        raise ConfigError(f"connection_failures={settings.connection_failures} must be 1 or more")
    if settings.chunk_chars < MIN_CHUNK_CHARS:
        raise ConfigError(f"chunk_chars={settings.chunk_chars} is too small ({MIN_CHUNK_CHARS} at least)")
    return settings
