"""The documents a run still has to do, read one file at a time as the run asks for them.

Contract
--------
:class:`Pending` walks a listed corpus (:func:`insights.corpus.list_corpus`) in order and yields each
document that has no result in the output yet (:meth:`insights.output.OutputWriter.is_done`). A file
that holds one document and is unchanged since its result was written (same path, size and modification
time; see :mod:`insights.ledger`) is skipped without being read; with ``verify``, every file is read and
hashed. Nothing is kept but the documents handed out and not yet written, so memory does not grow with
the corpus; the first document is handed out after one ``stat`` per file, not after reading them all.

Every file is stat'ed once, up front and before it is read: that stamp is what :attr:`Pending.stamps`
gives the writer for each document handed out, and it makes :attr:`Pending.expected` (documents that may
still come, exact once every file is read) available before anything is read.

Choosing a few: :func:`first` takes the first ``n`` pending documents, in input order, and reads no
further. :func:`sample` takes ``n`` of them at random (``random.Random(seed)``; the same seed and the same
pending documents give the same sample), handed out in input order: it reads the corpus once to know
which are pending (keeping only their ids), then again, reading only the files it needs.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .corpus import CorpusFile, CorpusReader, LoadFailure
from .documents import Document
from .ledger import FileStamp, file_stamp
from .output import OutputWriter

__all__ = ["Pending", "first", "sample"]


@dataclass
class Pending:
    """The documents of ``files`` that ``writer`` has no result for, read lazily.

    Args:
        files: the listed corpus.
        writer: a resumed :class:`~insights.output.OutputWriter` (says what is done).
        verify: read every file, trusting no stamp.
        on_failure: called with each file that cannot be read (else such files are passed over).
        only: hand out only these document ids (files of one document with another id are not read).

    Attributes:
        skipped: documents passed over because they are done.
        stamps: the file stamp of each document handed out that came alone in its file (take it with
            ``stamps.pop(document.id, None)`` when writing the document).
    """

    files: list[CorpusFile]
    writer: OutputWriter
    verify: bool = False
    on_failure: Callable[[LoadFailure], None] | None = None
    only: set[str] | None = None
    skipped: int = field(default=0, init=False)
    stamps: dict[str, FileStamp] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._stamps = [file_stamp(f.path) for f in self.files]
        self._upcoming = sum(not self._known_done(f, s) for f, s in zip(self.files, self._stamps, strict=True))
        self._handed = 0

    def _known_done(self, file: CorpusFile, stamp: FileStamp | None) -> bool:
        if self.only is not None and file.holds_one and file.id not in self.only:
            return True
        return not self.verify and file.holds_one and self.writer.unchanged(file.id, str(file.path), stamp)

    @property
    def expected(self) -> int:
        """Documents handed out so far plus those that may still come (each unread file counting one)."""
        return self._handed + self._upcoming

    def __iter__(self) -> Iterator[Document]:
        reader = CorpusReader()
        for file, stamp in zip(self.files, self._stamps, strict=True):
            if self._known_done(file, stamp):
                if self.only is None or file.id in self.only:
                    self.skipped += 1
                reader.skip(file)
                continue
            self._upcoming -= 1
            for item in reader.read(file):
                if isinstance(item, LoadFailure):
                    if self.on_failure is not None:
                        self.on_failure(item)
                elif self.only is not None and item.id not in self.only:
                    continue
                elif self.writer.is_done(item):
                    self.skipped += 1
                else:
                    if file.holds_one and stamp is not None:
                        self.stamps[item.id] = stamp
                    self._handed += 1
                    yield item


def first(documents: Iterable[Document], n: int) -> Iterator[Document]:
    """The first ``n`` documents; nothing after the ``n``-th is read."""
    return itertools.islice(documents, n)


def sample(pending: Callable[[set[str] | None], Pending], n: int, seed: int) -> tuple[Pending, list[str]]:
    """``n`` pending documents at random, in input order.

    Args:
        pending: makes a :class:`Pending` over the corpus, limited to the given ids (or not, for ``None``).
        n: how many.
        seed: the random seed.

    Returns:
        The :class:`Pending` of the first pass (it counted what is done), and the ids chosen; iterate
        ``pending(set(ids))`` for the documents.
    """
    scan = pending(None)
    ids = [document.id for document in scan]  # one document in memory at a time
    chosen = set(random.Random(seed).sample(ids, min(n, len(ids))))
    return scan, [i for i in ids if i in chosen]
