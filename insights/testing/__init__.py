"""Test doubles for ``insights``: an OpenAI-compatible reference server on loopback.

See :mod:`insights.testing.server` for its behaviour and fault actions. The names are imported lazily so
that ``python -m insights.testing.server`` runs without a double import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import ACTIONS, FaultPlan, ReferenceServer, default_annotations_dir, load_annotations

__all__ = ["ACTIONS", "FaultPlan", "ReferenceServer", "default_annotations_dir", "load_annotations"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
