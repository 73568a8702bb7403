"""Optional dependencies, imported in one place so a missing one fails with the extra that provides it.

>>> np = require("numpy", "themes")   # the module, or ConfigError: "… needs numpy: pip install 'insights[themes]'"
"""

from __future__ import annotations

import importlib
import types

from .errors import ConfigError


def require(module: str, extra: str) -> types.ModuleType:
    """Import ``module``, or raise :class:`~insights.errors.ConfigError` naming ``pip install 'insights[EXTRA]'``.

    Args:
        module: the importable name, e.g. ``"sklearn.feature_extraction.text"``.
        extra: the ``insights`` extra that installs it, e.g. ``"themes"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise ConfigError(f"this feature needs {top}: pip install 'insights[{extra}]'") from exc
