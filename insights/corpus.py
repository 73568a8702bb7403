"""A corpus: the documents under files, folders and glob patterns, with ids that stay unique.

Contract
--------
:func:`scan_corpus` reads every file under the inputs and returns the documents *and* the files that
could not be read (:class:`LoadFailure`: the file, the id it would have had, the reason), so one bad file
never stops the others. :func:`load_corpus` and :func:`iter_corpus` raise the first failure instead (or
hand each to ``on_error``). :func:`corpus_files` only lists the files; :func:`picks_up` says whether the
inputs would read a given path (the CLI refuses outputs that a rerun would read as input).

Reading lazily: :func:`list_corpus` lists the files with their ids (:class:`CorpusFile`) without reading
any (ids depend on every file's path, not on contents), and a :class:`CorpusReader` reads them one at a
time, as a run needs them, keeping document ids unique across the files it reads or skips. This is how
``insights extract`` starts its first request before the rest of the corpus is read, and never holds the
whole corpus in memory. ``iter_corpus`` and ``scan_corpus`` are built on them.

Inputs: a folder is walked recursively in sorted order, skipping hidden files and folders (names
starting with ``.``); a glob (``*``, ``?``, ``[``; ``**`` recurses) is expanded in sorted order, also
skipping hidden names; a file named explicitly is always read. A file reached twice is read once. A
path that does not exist, or a pattern that matches nothing, raises
:class:`~insights.errors.DocumentError` at once (it is a typo, not a bad document).

One failure per file: a file that cannot be read at all (empty, binary, not UTF-8, a PDF, no text once
cleaned) is one :class:`LoadFailure`; in a JSONL file the good records are read and the bad ones (and
records whose id repeats an earlier document's) make one failure for the file that names their lines.

Source
------
``Document.source`` is the file's path relative to the input it was found under, with ``/`` separators:
relative to the folder for a folder; relative to the pattern's leading folders without wildcards for a
glob (``docs/**/*.md`` → relative to ``docs``); for a file named directly, the path as given.

Ids
---
A document's id is its file's stem (the name without its last extension), as in
:mod:`insights.documents`, so caches and earlier outputs stay valid. Only when several files of one
corpus share a stem does each of them take the first of these that no other file has: its source
without the extension, its source, its path as found without the extension, its path as found. So
``docs/a/report.md`` and ``docs/b/report.md`` read from ``docs`` become ``a/report`` and ``b/report``;
``x.md`` and ``x.txt`` become ``x.md`` and ``x.txt``. A JSONL record keeps its own ``id`` (one without
gets ``<file id>-<n>``). Note that adding a file whose stem collides with an earlier one's changes that
earlier file's id too: its results are then redone under the new id.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import os
import posixpath
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .documents import Document, read_file
from .errors import DocumentError

__all__ = [
    "Corpus",
    "CorpusFile",
    "CorpusReader",
    "LoadFailure",
    "corpus_files",
    "iter_corpus",
    "list_corpus",
    "load_corpus",
    "picks_up",
    "scan_corpus",
]

Paths = Iterable[str | os.PathLike[str]] | str | os.PathLike[str]
_MAGIC = frozenset("*?[")
#: Files read as records, several documents each (see insights.documents and insights.converters).
RECORD_SUFFIXES = frozenset({".jsonl", ".ndjson", ".csv", ".tsv"})
#: How many bad JSONL records one failure's message names before it says "and N more".
_REASONS_SHOWN = 5


@dataclass(frozen=True)
class LoadFailure:
    """A file (or some records of a JSONL file) that could not be read.

    Attributes:
        document_id: the id the file's document would have had (for JSONL: the file's id).
        path: the file, as found.
        source: the file's path relative to its input (see the module docstring).
        error: why, naming the file (and the lines of a JSONL file).
    """

    document_id: str
    path: str
    source: str
    error: DocumentError


@dataclass
class Corpus:
    """What :func:`scan_corpus` read: the documents in file order, and the files that failed."""

    documents: list[Document] = field(default_factory=list)
    failures: list[LoadFailure] = field(default_factory=list)


@dataclass(frozen=True)
class _Entry:
    path: Path
    source: str


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(folder: Path) -> Iterator[tuple[Path, str, str]]:
    """Every file under ``folder`` as (path, path relative to ``folder`` with ``/``, real path), hidden
    names skipped, symbolic links to folders not followed (as :func:`os.walk`), ordered by the relative
    path's components. One ``scandir`` per folder; a file's real path is its folder's plus its name
    unless it is itself a link."""

    def visit(directory: str, real: str, prefix: str) -> Iterator[tuple[Path, str, str]]:
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if _hidden(entry.name):
                continue
            link = entry.is_symlink()
            if entry.is_dir():
                if not link:
                    yield from visit(entry.path, os.path.join(real, entry.name), prefix + entry.name + "/")
            else:
                key = os.path.realpath(entry.path) if link else os.path.join(real, entry.name)
                yield Path(entry.path), prefix + entry.name, key

    return visit(os.fspath(folder), os.path.realpath(folder), "")


def _is_glob(item: str) -> bool:
    return any(c in item for c in _MAGIC)


def _glob_root(pattern: str) -> str:
    """The leading folders of a pattern, up to its first component with a wildcard."""
    fixed: list[str] = []
    for part in Path(pattern).parts:
        if _is_glob(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else os.curdir


def _relative(path: Path, root: str) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _as_items(paths: Paths) -> list[str | os.PathLike[str]]:
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def _entries(paths: Paths) -> list[_Entry]:
    result: list[_Entry] = []
    seen: set[str] = set()

    def add(p: Path, source: str, key: str | None = None) -> None:
        key = key or os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            result.append(_Entry(p, source))

    for item in _as_items(paths):
        try:
            p = Path(item)
        except TypeError as e:
            raise DocumentError(repr(item), "not a file path") from e
        if p.is_dir():
            for f, relative, real in _walk(p):
                add(f, relative, real)
        elif p.exists():
            add(p, os.fspath(item))
        elif _is_glob(str(item)):
            matches = sorted(glob.glob(os.fspath(item), recursive=True))
            if not matches:
                raise DocumentError(item, "no files match this pattern")
            root = _glob_root(os.fspath(item))
            for match in matches:
                mp = Path(match)
                for f, _, real in _walk(mp) if mp.is_dir() else [(mp, "", "")]:
                    add(f, _relative(f, root), real)
        else:
            raise DocumentError(item, "no such file or folder")
    return result


def corpus_files(paths: Paths) -> list[Path]:
    """Expand files, folders and glob patterns into the files to read (see the module docstring).

    Args:
        paths: one path or pattern, or an iterable of them.

    Returns:
        The files, in order.

    Raises:
        DocumentError: a path that does not exist, or a pattern that matches nothing.
    """
    return [entry.path for entry in _entries(paths)]


def _stem(path: Path) -> str:
    name = path.name
    dot = name.rfind(".")
    return name[:dot] if 0 < dot < len(name) - 1 else name  # as Path.stem, without parsing the path again


def _without_suffix(posix_path: str) -> str:
    root, ext = posixpath.splitext(posix_path)
    return root if ext and root and not root.endswith("/") else posix_path


def _ids(entries: list[_Entry]) -> list[str]:
    """Each file's id (for JSONL: the prefix of its records' default ids); see the module docstring."""

    def choice(e: _Entry, level: int) -> str:
        if level == 0:
            return _stem(e.path)
        found = e.path.as_posix()
        return [_without_suffix(e.source), e.source, _without_suffix(found), found][level - 1]

    level = [0] * len(entries)
    ids = [choice(e, 0) for e in entries]
    while True:
        counts = Counter(ids)
        clashing = [i for i, x in enumerate(ids) if counts[x] > 1 and level[i] < 4]
        if not clashing:
            return ids
        for i in clashing:
            level[i] += 1
            ids[i] = choice(entries[i], level[i])


@dataclass(frozen=True)
class CorpusFile:
    """One file of a corpus, listed but not read.

    Attributes:
        path: the file, as found.
        source: its path relative to the input it was found under (see the module docstring).
        id: the id of its document (for a file of records: the prefix of their default ids).
    """

    path: Path
    source: str
    id: str

    @property
    def holds_one(self) -> bool:
        """Whether the file holds one document (it is not JSONL, NDJSON, CSV or TSV)."""
        return self.path.suffix.lower() not in RECORD_SUFFIXES


def list_corpus(paths: Paths) -> list[CorpusFile]:
    """The files under ``paths`` with their ids, in reading order; nothing is read.

    Raises:
        DocumentError: a path that does not exist, or a pattern that matches nothing.
    """
    entries = _entries(paths)
    return [CorpusFile(e.path, e.source, base) for e, base in zip(entries, _ids(entries), strict=True)]


class CorpusReader:
    """Reads listed files one at a time; a record whose id an earlier document (read or skipped) already
    has is refused, as in :func:`scan_corpus`."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def skip(self, file: CorpusFile) -> None:
        """Pass over a one-document file without reading it (its id stays taken)."""
        self._seen.setdefault(file.id, str(file.path))

    def read(self, file: CorpusFile) -> Iterator[Document | LoadFailure]:
        """The file's documents (each with its ``source``), then one :class:`LoadFailure` if it, or some of
        its records, could not be read."""
        problems: list[str] = []
        try:
            for item in read_file(file.path, file.id):
                if isinstance(item, DocumentError):
                    problems.append(item.reason)
                elif item.id in self._seen:
                    problems.append(f"duplicate document id {item.id!r} (already read from {self._seen[item.id]})")
                else:
                    self._seen[item.id] = str(file.path)
                    yield dataclasses.replace(item, source=file.source)
        except DocumentError as e:
            problems.append(e.reason)
        if problems:
            reason = problems[0]
            if len(problems) > 1:
                shown = "; ".join(problems[:_REASONS_SHOWN])
                more = len(problems) - _REASONS_SHOWN
                reason = f"{len(problems)} records could not be read: {shown}" + (f"; {more} more" if more > 0 else "")
            yield LoadFailure(file.id, str(file.path), file.source, DocumentError(file.path, reason))


def _iter_items(paths: Paths) -> Iterator[Document | LoadFailure]:
    reader = CorpusReader()
    for file in list_corpus(paths):
        yield from reader.read(file)


def scan_corpus(paths: Paths) -> Corpus:
    """Read every document under ``paths``, keeping the files that fail apart instead of stopping.

    Args:
        paths: files, folders (recursive, sorted, hidden names skipped) and glob patterns.

    Returns:
        A :class:`Corpus`: the documents in file order (each with its ``source``), and one
        :class:`LoadFailure` per file that could not be read (or held bad JSONL records).

    Raises:
        DocumentError: a path that does not exist, or a pattern that matches nothing.
    """
    corpus = Corpus()
    for item in _iter_items(paths):
        if isinstance(item, LoadFailure):
            corpus.failures.append(item)
        else:
            corpus.documents.append(item)
    return corpus


def iter_corpus(paths: Paths, *, on_error: Callable[[DocumentError], None] | None = None) -> Iterator[Document]:
    """Lazily read every document under ``paths``; JSONL files give one document per record.

    Args:
        paths: files, folders and glob patterns.
        on_error: called with each file's :class:`DocumentError` instead of raising it; reading goes on.

    Returns:
        An iterator of documents, in file order.

    Raises:
        DocumentError: (without ``on_error``) the first file that cannot be read or holds a bad record.
    """
    for item in _iter_items(paths):
        if isinstance(item, LoadFailure):
            if on_error is None:
                raise item.error
            on_error(item.error)
        else:
            yield item


def load_corpus(paths: Paths, *, on_error: Callable[[DocumentError], None] | None = None) -> list[Document]:
    """Read every document under ``paths`` into a list; the first bad file raises (see
    :func:`scan_corpus` to go on past bad files and get them listed).

    Args:
        paths: files, folders (recursive, sorted, hidden names skipped) and glob patterns.
        on_error: called with each file's :class:`DocumentError` instead of raising it.

    Returns:
        The documents, in file order.

    Raises:
        DocumentError: (without ``on_error``) the first file that cannot be read, or a path that does
            not exist.
    """
    return list(iter_corpus(paths, on_error=on_error))


def _pattern_covers(pattern: list[str], parts: list[str]) -> bool:
    """Whether glob components ``pattern`` (walking a matched folder) reach the path ``parts``."""
    if not pattern:
        return not any(_hidden(p) for p in parts)  # a matched folder is walked, hidden names skipped
    if not parts:
        return pattern == ["**"]
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return _pattern_covers(rest, parts) or (not _hidden(parts[0]) and _pattern_covers(pattern, parts[1:]))
    if _hidden(parts[0]) and not head.startswith(".") and _is_glob(head):
        return False
    return fnmatch.fnmatchcase(parts[0], head) and _pattern_covers(rest, parts[1:])


def picks_up(paths: Paths, candidate: str | os.PathLike[str]) -> str | None:
    """The input that would read ``candidate`` (a file that may not exist yet), or ``None``.

    Args:
        paths: the inputs, as given to :func:`scan_corpus`.
        candidate: a file path.

    Returns:
        The first input (folder, file or pattern, as given) under which ``candidate`` would be read.
    """
    target = os.path.realpath(candidate)
    for item in _as_items(paths):
        text = os.fspath(item)
        p = Path(text)
        if p.is_dir():
            root = os.path.realpath(p)
            inside = os.path.relpath(target, root)
            if not inside.startswith(os.pardir) and not os.path.isabs(inside):
                if not any(_hidden(part) for part in Path(inside).parts):
                    return text
        elif p.exists():
            if os.path.realpath(p) == target:
                return text
        elif _is_glob(text):
            pattern = Path(os.path.abspath(text)).parts
            if _pattern_covers(list(pattern[1:]), list(Path(os.path.abspath(candidate)).parts[1:])):
                return text
    return None
