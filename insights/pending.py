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

Choosing a few (:class:`Plan`): ``limit`` takes the first ``n`` pending documents, in input order, and
reads no further. ``sample`` takes ``n`` of them at random (``random.Random(seed)``; the same seed and the
same pending documents give the same sample), handed out in input order: it reads the corpus once to
know which are pending (keeping only their ids), then again, reading only the files it needs. A plan can
be walked several times (``insights extract --max-cost`` estimates the documents, then runs them); the
files that cannot be read are reported by the first pass that meets them.
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

__all__ = ["Pending", "Plan"]


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


@dataclass
class Plan:
    """The documents a run does: those of ``files`` still to do, or ``limit`` / ``sample`` of them.

    Args:
        files, writer, verify: as for :class:`Pending`.
        limit: only the first ``limit`` pending documents.
        sample: only ``sample`` pending documents, at random (``seed``); not with ``limit``.
        on_failure: called with each file that cannot be read, once (by the first pass that meets it).

    Attributes:
        chosen: the ids ``sample`` chose, in input order.
    """

    files: list[CorpusFile]
    writer: OutputWriter
    limit: int | None = None
    sample: int | None = None
    seed: int = 0
    verify: bool = False
    on_failure: Callable[[LoadFailure], None] | None = None
    chosen: list[str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.limit is not None and self.sample is not None:
            raise ValueError("limit and sample exclude each other")
        self._scan: Pending | None = None
        if self.sample is not None:
            self._scan = self._pending(None)
            ids = [document.id for document in self._scan]  # one document in memory at a time
            chosen = set(random.Random(self.seed).sample(ids, min(self.sample, len(ids))))
            self.chosen = [i for i in ids if i in chosen]

    def _pending(self, only: set[str] | None) -> Pending:
        report, self.on_failure = self.on_failure, None  # only the first pass reports
        return Pending(self.files, self.writer, verify=self.verify, on_failure=report, only=only)

    def documents(self) -> tuple[Pending, Iterable[Document]]:
        """A new pass: its :class:`Pending` (for ``stamps``, ``expected``) and the documents it hands out."""
        pending = self._pending(None if self.chosen is None else set(self.chosen))
        return pending, pending if self.limit is None else itertools.islice(pending, self.limit)

    def total(self, pending: Pending) -> int:
        """How many documents the pass ``pending`` hands out, as far as is known yet."""
        if self.chosen is not None:
            return len(self.chosen)
        return pending.expected if self.limit is None else min(self.limit, pending.expected)

    def skipped(self, pending: Pending) -> int:
        """Documents passed over because they are done (counted over the whole corpus for a sample)."""
        return (self._scan or pending).skipped
