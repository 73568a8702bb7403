"""Settings: argument, then environment, then default."""

from __future__ import annotations

from pathlib import Path

import pytest

from insights import ConfigError, resolve_settings
from insights.config import DEFAULT_MODEL


def test_defaults() -> None:
    s = resolve_settings(env={"HOME": "home-of-u"})
    assert s.model == DEFAULT_MODEL and s.api_key is None and s.base_url is None and not s.offline
    assert s.cache_path is not None and s.cache_path.name == "insights.db"


def test_environment_then_arguments_win() -> None:
    env = {"INSIGHTS_MODEL": "env-model", "OPENAI_BASE_URL": "http://localhost:11434/v1", "INSIGHTS_OFFLINE": "1",
           "INSIGHTS_CACHE": "some/dir/x.db", "INSIGHTS_MAX_RETRIES": "7", "INSIGHTS_REASKS": "0"}  # fmt: skip
    s = resolve_settings(env=env)
    assert (s.model, s.base_url, s.offline, s.cache_path, s.max_retries, s.reasks) == (
        "env-model", "http://localhost:11434/v1", True, Path("some/dir/x.db"), 7, 0)  # fmt: skip
    s = resolve_settings(env=env, model="arg-model", max_retries=0, cache_path="other/y.db")
    assert (s.model, s.max_retries, s.cache_path) == ("arg-model", 0, Path("other/y.db"))


def test_no_cache_wins_over_a_cache_path() -> None:
    assert resolve_settings(env={"INSIGHTS_CACHE": "some/dir/x.db"}, no_cache=True).cache_path is None
    assert resolve_settings(env={"INSIGHTS_NO_CACHE": "1"}).cache_path is None


@pytest.mark.parametrize(
    ("env", "kwargs", "message"),
    [
        ({"INSIGHTS_MAX_RETRIES": "many"}, {}, "INSIGHTS_MAX_RETRIES"),
        ({}, {"colour": "red"}, "unknown setting"),
        ({}, {"reasks": -1}, "0 or more"),
        ({}, {"chunk_chars": 10}, "too small"),
    ],
)
def test_bad_settings_raise_config_error(env: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_settings(env=env, **kwargs)


def test_api_key_is_not_in_repr() -> None:
    assert "sk-secret" not in repr(resolve_settings(env={"OPENAI_API_KEY": "sk-secret"}))
