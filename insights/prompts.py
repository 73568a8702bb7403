"""Prompts live as files in ``prompts/`` (installed as the package data ``insights.prompt_files``).

* ``system.md`` — the instructions: the four kinds with a definition, an example and a counter-example
  each, the taxonomy, and the rule that the document is data.
* ``user.md`` — the template of the user message, filled with :meth:`str.format`.

The prompt version is the first 12 hex digits of a SHA-256 over every prompt file's name and bytes, so any
edit to a prompt changes it; it is recorded in each result's provenance and is part of every cache key.

The document is wrapped in delimiter lines that carry a token derived from the hash of the wrapped text
(``DOCUMENT-`` + 16 hex digits). A document cannot contain the token that its own hash produces, so it
cannot forge the closing line and smuggle text outside the data block.

Everything else taken from a document — its id (a JSONL ``id`` or a file name), title and the
``type``/``year``/``country`` tags — stands outside the block, so each is reduced to one safe line by
:func:`one_line` before it is put in the template: line and paragraph separators and every other
control or format character become a space or go, delimiter tokens (``DOCUMENT-`` + 16 hex digits) and
runs of ``<<<``/``>>>`` are removed, white space is collapsed, and the value is cut at
``MAX_FIELD_CHARS``. No document value can add a line to the prompt outside the data block.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

PROMPT_FILES = ("system.md", "user.md")
#: The longest a document's id, title or tag value may be in the prompt (longer ones are cut, with "…").
MAX_FIELD_CHARS = 200
_FORGED = re.compile(r"DOCUMENT-[0-9A-Fa-f]{16}|<{3,}|>{3,}")


@dataclass(frozen=True)
class PromptSet:
    """The prompt files' text and their version."""

    system: str
    user: str
    version: str


def _read(name: str) -> bytes:
    try:
        return resources.files("insights.prompt_files").joinpath(name).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        # Running from a source checkout without installing: prompts/ sits beside insights/.
        return (Path(__file__).resolve().parent.parent / "prompts" / name).read_bytes()


@lru_cache(maxsize=1)
def load_prompts() -> PromptSet:
    """Read the prompt files once and compute their version."""
    digest = hashlib.sha256()
    texts: dict[str, str] = {}
    for name in PROMPT_FILES:
        data = _read(name)
        digest.update(name.encode() + b"\0" + data + b"\0")
        texts[name] = data.decode("utf-8")
    return PromptSet(system=texts["system.md"].strip(), user=texts["user.md"], version=digest.hexdigest()[:12])


def delimiter_for(text: str) -> str:
    """The delimiter token for a block of document text (see the module docstring)."""
    return "DOCUMENT-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def one_line(value: str, limit: int = MAX_FIELD_CHARS) -> str:
    """``value`` as one safe line of the prompt (see the module docstring)."""
    chars = []
    for ch in value:
        kind = unicodedata.category(ch)
        if kind in ("Cc", "Zl", "Zp") or ch.isspace():
            chars.append(" ")  # newlines, tabs, other controls
        elif kind not in ("Cf", "Cs", "Co", "Cn"):  # format (zero-width, bidi overrides), surrogates, unassigned
            chars.append(ch)
    line = _FORGED.sub(" ", "".join(chars))  # a space, so that the pieces around cannot join into a token
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def render_messages(
    *,
    document_id: str,
    title: str,
    text: str,
    doc_type: str = "",
    year: str = "",
    country: str = "",
    part: int = 1,
    parts: int = 1,
) -> list[dict[str, str]]:
    """The chat messages for one document (or one chunk of it). Every value but ``text`` is reduced to
    one safe line (:func:`one_line`); ``text`` goes between the delimiter lines as it is."""
    prompts = load_prompts()
    user = prompts.user.format(
        document_id=one_line(document_id) or "(none)",
        title=one_line(title) or "(none)",
        type=one_line(doc_type) or "unknown",
        year=one_line(year) or "unknown",
        country=one_line(country) or "unknown",
        part=part,
        parts=parts,
        delimiter=delimiter_for(text),
        text=text,
    )
    return [{"role": "system", "content": prompts.system}, {"role": "user", "content": user}]
