"""A run's ledger as a resumed run reads it: what is done and where its lines are, without reading the output.

Contract
--------
The ledger is ``OUT.documents.jsonl`` (one line per finished document; see :mod:`insights.output` for the
whole line). Resuming reads these fields of each line:

``document_id``, ``content_hash``, ``prompt_version``, ``model``
    the result key: a document is done when the latest line for its id has its current content hash
    and this run's prompt version and model.
``block``: ``{"offset", "length", "sha256"}``
    the document's insight lines are the ``length`` bytes of ``OUT.jsonl`` from byte ``offset`` (written
    in one ``write``), whose SHA-256 is ``sha256`` (``length`` 0: no lines). Ledger lines are in the
    order of their blocks and the blocks follow each other without gaps: the first starts at byte 0 and
    each next one where the previous ended. So the ledger alone says how long the output must be.
``stamp``: ``{"size", "mtime_ns"}``, and ``path``, ``provenance.library_version``
    the document's file as ``os.stat`` saw it *before* it was read (files that hold one document only:
    not JSONL or CSV). A file whose path, size and modification time are unchanged, under the same
    library version, holds the same document: a resumed run does not read it again. The trade-off: a
    file rewritten with the same size within the file system's timestamp resolution, or whose
    modification time was set back (``touch -d``, some copy tools), is taken as unchanged.
    ``insights extract --verify`` reads and hashes every file instead.

The latest line for a document id is its result; earlier lines for the same id (the document was redone
after its content changed) are *superseded*, and the output drops them, with their lines, when it is
next closed or resumed.

Checking the output costs O(ledger), not O(output): :meth:`Ledger.check` compares the output's size with
the end of the last block, and checks that the last block's bytes still hash to its ``sha256``. A longer
output ends with bytes no ledger line covers (a kill between a document's lines and its ledger line): they
are cut off. Anything else (lines without blocks, from an older version; a gap; a file shorter than the ledger
says; a damaged last block; a ledger line that does not parse; a result key twice) sends the resume down
the slow path of :mod:`insights.output`, which reads every line and repairs. With ``verify``, every
block is hashed (the whole output is read, but no line is parsed).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import __version__
from .documents import Document
from .errors import OutputError

__all__ = ["Block", "Check", "Entry", "FileStamp", "Ledger", "ResultKey", "block_of", "file_stamp"]

#: What makes a finished result reusable: (document id, content hash, prompt version, model).
ResultKey = tuple[str, str, str, str]
#: A file as ``os.stat`` saw it: (size in bytes, modification time in ns).
FileStamp = tuple[int, int]
#: Where a document's lines are in the output: (offset, length, sha256 hex).
Block = tuple[int, int, str]
_CHUNK = 1 << 20


def block_of(offset: int, data: bytes) -> dict[str, Any]:
    """The ``block`` field of a ledger line for ``data`` written at ``offset``."""
    return {"offset": offset, "length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def file_stamp(path: str | os.PathLike[str]) -> FileStamp | None:
    """``(size, mtime_ns)`` of a file, or ``None`` if it cannot be stat'ed. Take it *before* reading."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_size, st.st_mtime_ns)


def key_of(line: dict[str, Any]) -> ResultKey:
    """The result key of a ledger or output line."""
    return (
        str(line.get("document_id", "")),
        str(line.get("content_hash", "")),
        str(line.get("prompt_version", "")),
        str(line.get("model", "")),
    )


def _block(line: dict[str, Any]) -> Block | None:
    block = line.get("block")
    if not isinstance(block, dict):
        return None
    offset, length, digest = block.get("offset"), block.get("length"), block.get("sha256")
    if not (isinstance(offset, int) and isinstance(length, int) and isinstance(digest, str)):
        return None
    if offset < 0 or length < 0 or isinstance(offset, bool) or isinstance(length, bool):
        return None
    return (offset, length, digest)


def _stamp(line: dict[str, Any]) -> FileStamp | None:
    stamp = line.get("stamp")
    provenance = line.get("provenance")
    if not isinstance(stamp, dict) or not isinstance(provenance, dict):
        return None
    if provenance.get("library_version") != __version__:  # another version may clean the file otherwise
        return None
    size, mtime = stamp.get("size"), stamp.get("mtime_ns")
    return (size, mtime) if isinstance(size, int) and isinstance(mtime, int) else None


@dataclass(slots=True)
class Entry:
    """One ledger line, as much of it as resuming needs."""

    key: ResultKey
    path: str | None
    block: Block | None
    stamp: FileStamp | None

    @classmethod
    def of(cls, line: dict[str, Any]) -> Entry:
        """The entry of a ledger line (as parsed)."""
        return cls(key_of(line), _str_or_none(line.get("path")), _block(line), _stamp(line))

    @property
    def document_id(self) -> str:
        return self.key[0]


@dataclass(frozen=True)
class Check:
    """What :meth:`Ledger.check` found: ``ok`` (the output is as long as the ledger says), ``tail`` (it
    is longer: bytes after ``end`` belong to no finished document) or ``repair`` (``why``)."""

    verdict: Literal["ok", "tail", "repair"]
    end: int = 0
    why: str = ""


@dataclass
class Ledger:
    """The ledger's lines in file order (see the module docstring).

    Attributes:
        entries: every complete line that parses, in file order.
        size: bytes of the ledger file up to the end of its last complete line.
        torn: bytes after that (a line cut short by a kill); they are to be cut off.
        invalid: complete lines that do not parse.
    """

    entries: list[Entry] = field(default_factory=list)
    size: int = 0
    torn: int = 0
    invalid: int = 0
    _latest: dict[str, Entry] = field(default_factory=dict, repr=False)

    @classmethod
    def read(cls, path: Path) -> Ledger:
        """Index a ledger file (missing: empty). One pass; only the fields above are kept."""
        ledger = cls()
        try:
            with open(path, "rb") as fp:
                for raw in fp:
                    if not raw.endswith(b"\n"):
                        ledger.torn = len(raw)
                        break
                    ledger.size += len(raw)
                    try:
                        line = json.loads(raw)
                    except ValueError:
                        ledger.invalid += 1
                        continue
                    if not isinstance(line, dict):
                        ledger.invalid += 1
                        continue
                    ledger.add(Entry.of(line))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise OutputError(f"{path}: cannot read: {exc}") from exc
        return ledger

    def add(self, entry: Entry) -> None:
        """Append an entry (a line this run wrote); it becomes the latest for its document."""
        self.entries.append(entry)
        self._latest[entry.document_id] = entry

    def latest(self, document_id: str) -> Entry | None:
        """The entry that holds a document's result, if any."""
        return self._latest.get(document_id)

    def done(self, document: Document, model: str, prompt_version: str) -> bool:
        """Whether ``document`` (as it is now) has a result of this model and prompt version."""
        entry = self._latest.get(document.id)
        return entry is not None and entry.key == (document.id, document.content_hash, prompt_version, model)

    def unchanged(self, document_id: str, path: str, stamp: FileStamp | None, model: str, prompt_version: str) -> bool:
        """Whether the one-document file ``path`` (``stamp`` taken now) is done without reading it: the
        latest entry of ``document_id`` came from that path, with that stamp, this model and prompt."""
        entry = self._latest.get(document_id)
        return (
            stamp is not None
            and entry is not None
            and entry.stamp == stamp
            and entry.path == path
            and entry.key[2:] == (prompt_version, model)
        )

    def ids(self) -> set[str]:
        """Every document id with a result."""
        return set(self._latest)

    def superseded(self) -> int:
        """How many entries are not their document's latest."""
        return len(self.entries) - len(self._latest)

    def repeated(self) -> bool:
        """Whether a result key appears on more than one line (only older versions could do this)."""
        return len({e.key for e in self.entries}) != len(self.entries)

    def check(self, out: Path, *, verify: bool = False) -> Check:
        """Whether ``out`` holds exactly the blocks the ledger says (see the module docstring)."""
        if self.invalid:
            return Check("repair", why=f"{self.invalid} ledger line(s) do not parse")
        if self.repeated():
            return Check("repair", why="a result is recorded twice")
        end = 0
        for entry in self.entries:
            if entry.block is None:
                return Check("repair", why="ledger lines without byte offsets (written by an older version)")
            if entry.block[0] != end:
                return Check("repair", why=f"{entry.document_id}: its lines are not where the ledger says")
            end += entry.block[1]
        try:
            size = os.stat(out).st_size
        except FileNotFoundError:
            size = 0
        except OSError as exc:
            raise OutputError(f"{out}: cannot read: {exc}") from exc
        if size < end:
            return Check("repair", why=f"the output has {size:,} bytes, the ledger says {end:,}")
        blocks = [e.block for e in self.entries if e.block is not None and e.block[1]]
        try:
            with open(out, "rb") as fp:
                for offset, length, digest in blocks if verify else blocks[-1:]:
                    if _digest(fp, offset, length) != digest:
                        return Check("repair", why=f"the lines at byte {offset:,} are not those recorded")
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise OutputError(f"{out}: cannot read: {exc}") from exc
        return Check("ok" if size == end else "tail", end)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def _digest(fp: Any, offset: int, length: int) -> str:
    fp.seek(offset)
    h = hashlib.sha256()
    left = length
    while left:
        chunk = fp.read(min(left, _CHUNK))
        if not chunk:
            break
        h.update(chunk)
        left -= len(chunk)
    return h.hexdigest()


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
