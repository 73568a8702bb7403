"""The public surface changes only on purpose."""

from __future__ import annotations

import ast
from pathlib import Path

import insights

PACKAGE = Path(insights.__file__).parent

EXPECTED = {
    "AuthError", "Barrier", "Cache", "CacheError", "CacheMiss", "Champion", "ConfigError", "ConnectionFailed",
    "Document", "DocumentError", "DocumentInsights", "Enabler", "EndpointUnreachable", "Evidence",
    "FailedExperiment", "InsightRecord", "InsightsError", "InvalidOutput", "ModelClient", "ModelError",
    "ModelNotFound", "Outcome", "OutputError", "OutputRejected",
    "OutputWriter", "Provenance", "QuotaExceeded", "RateLimiter", "Rejected", "RequestRejected", "Section",
    "Settings", "TransportError", "__version__", "champions", "export", "extract", "extract_many", "load_corpus",
    "load_document", "parse_document", "read_records", "resolve_settings", "scan_corpus", "themes", "to_dataframe",
}  # fmt: skip


def test_exported_names() -> None:
    assert set(insights.__all__) == EXPECTED
    assert insights.__all__ == sorted(insights.__all__)
    assert all(hasattr(insights, name) for name in insights.__all__)


def test_every_error_derives_from_the_root() -> None:
    errors = [
        getattr(insights, n)
        for n in insights.__all__
        if n.endswith("Error")
        or n
        in (
            "CacheMiss", "QuotaExceeded", "InvalidOutput", "OutputRejected", "RequestRejected", "ConnectionFailed",
            "EndpointUnreachable", "ModelNotFound",
        )
    ]  # fmt: skip
    assert errors and all(issubclass(e, insights.InsightsError) for e in errors)
    assert insights.AuthError.fatal and insights.QuotaExceeded.fatal and not insights.TransportError.fatal
    assert insights.ModelNotFound.fatal and insights.EndpointUnreachable.fatal
    assert insights.ConnectionFailed.retryable and not insights.ConnectionFailed.fatal
    assert insights.TransportError.retryable and not insights.RequestRejected.retryable


def test_only_the_client_imports_the_model_sdks() -> None:
    importers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n.split(".")[0] in ("openai", "instructor") for n in names):
                importers.add(path.relative_to(PACKAGE).as_posix())
    assert importers == {"client.py"}


def test_public_functions_have_docstrings() -> None:
    for name in insights.__all__:
        obj = getattr(insights, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), name


def test_the_async_validator_check_is_remembered_but_still_refuses() -> None:
    from instructor.v2.validation import async_validators
    from pydantic import BaseModel

    import insights.client  # noqa: F401  (installs the memo)

    check = async_validators.reject_async_validators
    assert getattr(check, "_insights_memo", False)

    class WithAsync(BaseModel):
        x: int

        @async_validators.async_field_validator("x")
        async def slow(self, value: int) -> int:
            return value

    for _ in range(2):  # refused every time: a failure is never remembered as a pass
        try:
            check(WithAsync)
        except ValueError as exc:
            assert "async validators" in str(exc)
        else:
            raise AssertionError("a model with an async validator was accepted")
