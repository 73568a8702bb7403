"""Stable identifiers of insights: the same answer replayed gives the same id, other content another.

Contract (``insight_id``)::

    "ins_" + sha256(canonical JSON of [
        "insight/2",                 # recipe version: a change of recipe changes every id, visibly
        document_id,                 # the document's id (two copies of one file stay two insights)
        content_hash,                # Document.content_hash of the source document
        kind,                        # barrier | enabler | champion | failed_experiment
        normalize(statement),        # grounding.normalize: case, white space, quotes, dashes, entities folded
        sorted [start, end] spans,   # the located evidence offsets into Document.text
    ]).hexdigest()[:20]

Canonical JSON: ``ensure_ascii=False``, ``separators=(",", ":")``, UTF-8. Nothing else enters the id: not
the model, the prompt version, the category or the run time. The same insight from a cached re-run, or
from another model that states it the same way over the same passages, has the same id; a changed
document (another content hash), statement or passage gives another. The document id is part of the
recipe because archives hold duplicate uploads under different names: each copy's insights are output
lines of their own and need ids of their own.

``theme_id`` and champion ``entity_id`` follow the same pattern over their own parts (see
:mod:`insights.themes`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from .grounding import normalize

INSIGHT_RECIPE = "insight/2"
ID_HEX_CHARS = 20


def digest_id(prefix: str, parts: list[object]) -> str:
    """``prefix + "_" +`` the first :data:`ID_HEX_CHARS` hex digits of the SHA-256 of ``parts`` as
    canonical JSON."""
    canonical = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return f"{prefix}_{hashlib.sha256(canonical.encode('utf-8', 'surrogatepass')).hexdigest()[:ID_HEX_CHARS]}"


def insight_id(document_id: str, content_hash: str, kind: str, statement: str, spans: Iterable[tuple[int, int]]) -> str:
    """The stable id of one insight (see the module docstring for the recipe).

    Args:
        document_id: the source document's id.
        content_hash: the source document's ``content_hash``.
        kind: the insight's kind.
        statement: the insight's statement (normalized before hashing).
        spans: ``(start, end)`` of each evidence passage, in any order.

    Returns:
        ``"ins_"`` followed by 20 hex digits.
    """
    ordered = sorted({(int(s), int(e)) for s, e in spans})
    return digest_id(
        "ins", [INSIGHT_RECIPE, document_id, content_hash, kind, normalize(statement), [list(p) for p in ordered]]
    )


def line_insight_id(line: Mapping[str, Any]) -> str:
    """The ``insight_id`` of an output line: the one it carries, else computed by the recipe (lines written
    before ids existed)."""
    given = str(line.get("insight_id") or "")
    if given:
        return given
    spans = [(int(e.get("start", 0)), int(e.get("end", 0))) for e in line.get("evidence") or []]
    return insight_id(
        str(line.get("document_id", "")),
        str(line.get("content_hash", "")),
        str(line.get("kind", "")),
        str(line.get("statement", "")),
        spans,
    )
