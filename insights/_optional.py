"""Optional dependencies, imported in one place so a missing one says which extra installs it.

The package is published as ``grounded-insights`` (the name ``insights`` on the index belongs to an
unrelated project); the import name and the command stay ``insights``. Extras (``pyproject.toml``):

``documents``  pypdf, python-docx    PDF and DOCX inputs (:mod:`insights.converters`)
``parquet``    pyarrow               ``insights export --to parquet``
``pandas``     pandas                :func:`insights.to_dataframe`
``datasette``  datasette             browsing an exported SQLite file (optional, only for people)
``report``     jinja2                ``insights report`` (:mod:`insights.report`)
``themes``     wordllama, scikit-learn, scipy, numpy   ``insights themes`` (:mod:`insights.themes`)
``review``     starlette, uvicorn,   ``insights review``, the local review page (:mod:`insights.review`)
               jinja2
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ConfigError

#: The distribution name on the package index (``pip install grounded-insights``).
DISTRIBUTION = "grounded-insights"


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra``: ``pip install 'grounded-insights[extra]'``."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def require(module: str, extra: str, *, purpose: str = "") -> ModuleType:
    """Import an optional dependency, or fail with a message naming the extra that installs it.

    Args:
        module: the module to import, e.g. ``"pyarrow.parquet"``.
        extra: the extra of this package that installs it, e.g. ``"parquet"``.
        purpose: what needs it, for the message (e.g. ``"insights export --to parquet"``).

    Returns:
        The imported module.

    Raises:
        ConfigError: the module is not installed; the message names the extra and the pip command.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        who = purpose or f"this feature (extra {extra!r})"
        raise ConfigError(f"{who} needs {top}, which is not installed: {install_hint(extra)}") from exc
