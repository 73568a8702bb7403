"""One run at a time per output: an exclusive lock held on ``OUT.jsonl`` for the whole run.

Contract
--------
The lock file is ``OUT.jsonl.lock``, beside the output. A run takes it before it reads or writes any of
its output files and keeps it until it has closed them. The lock is the operating system's advisory
file lock (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows), so the kernel drops it when the
holding process ends, however it ends (``kill -9`` and power loss included): a lock left by a dead run
never blocks the next one, and no stale-lock heuristics are needed.

While it is held, the lock file holds one JSON object naming the holder::

    {"pid": 4242, "host": "lab-vm", "started": "2025-01-31T09:12:03+00:00", "command": "insights extract ..."}

A second run that finds the lock taken does not wait: it stops at once with an
:class:`~insights.errors.OutputError` that names the holder from that object. The holder removes the
file when it releases the lock (on POSIX; on Windows it empties it).

Why ``fcntl`` and not the ``filelock`` package: the standard library does exactly what is needed here
(a lock the kernel releases with its process, tried without waiting), no dependency is added, and the
holder's description can live in the lock file itself. ``filelock`` 4 may fall back to a "soft" lock, a
marker file that a killed process leaves behind, which is what must not happen here.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import OutputError

__all__ = ["OutputLock", "lock_path"]

if sys.platform == "win32":  # pragma: no cover - the test suite runs on POSIX
    import msvcrt

    _WIN_LOCK_OFFSET = 1 << 30  # lock a byte past the holder's description, which stays readable

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def lock_path(target: Path) -> Path:
    """``out.jsonl`` → ``out.jsonl.lock``."""
    return target.with_name(target.name + ".lock")


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["insights", *sys.argv[1:]]) if sys.argv else "",
    }


def _describe(raw: bytes) -> str:
    try:
        info = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        info = None
    if not isinstance(info, dict):  # the holder is between taking the lock and writing its name
        return "another process (it has not written its name yet)"
    return (
        f"process {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}: "
        f"{info.get('command', '?')}"
    )


class OutputLock:
    """The lock on one output file (see the module docstring). Use :meth:`acquire` and :meth:`release`,
    or ``with``.

    Args:
        target: the file to protect (``OUT.jsonl``); the lock file is :func:`lock_path` of it.
    """

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self.target = Path(target)
        self.path = lock_path(self.target)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or fail at once.

        Raises:
            OutputError: another process (or another writer in this one) holds it; the message names the
                holder. Also when the lock file cannot be created.
        """
        if self._fd is not None:
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot create the lock file: {exc.strerror or exc}") from exc
            try:
                if not _try_lock(fd):
                    holder = _describe(os.read(fd, 4096))
                    raise OutputError(
                        f"{self.target} is being written by another run ({holder}). Wait for it to finish, "
                        f"stop it, or write to another -o. (Lock file: {self.path}; it is released when that "
                        "process ends, so it never outlives it.)"
                    )
                if self._still_there(fd):
                    break
                # The previous holder removed the file between our open and our lock: that lock guards
                # nothing anyone else can see. Start again on the path as it is now.
                _unlock(fd)
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(_holder(), ensure_ascii=False).encode("utf-8"))
        except OSError:
            pass  # a full disk: the lock holds all the same, only without the holder's name
        self._fd = fd

    def _still_there(self, fd: int) -> bool:
        if sys.platform == "win32":  # pragma: no cover - the file is never removed there
            return True
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)

    def release(self) -> None:
        """Give the lock up (removing the lock file first, while still holding it). Safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if sys.platform == "win32":  # pragma: no cover
                os.ftruncate(fd, 0)
            else:
                os.unlink(self.path)
        except OSError:
            pass
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
