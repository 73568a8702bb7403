"""Optional dependencies, imported through one helper that names the extra to install.

Heavy or single-purpose libraries are extras in ``pyproject.toml`` (``pip install 'insights[report]'``). A
module that needs one calls :func:`require` where it needs it, never at import time, so the core library
imports without them.
"""

from __future__ import annotations

import importlib
import types

from .errors import ConfigError


def require(module: str, extra: str) -> types.ModuleType:
    """Import ``module``, or fail with a message naming the extra that provides it.

    Args:
        module: the module to import, e.g. ``"jinja2"``.
        extra: the ``insights`` extra that installs it, e.g. ``"report"``.

    Raises:
        ConfigError: the module is not installed; the message says ``pip install 'insights[EXTRA]'``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"this feature needs {module}: pip install 'insights[{extra}]'") from exc
