"""One training run at a time in a run folder: an advisory lock held for the whole run.

Two runs writing into one ``--out`` (say a run still going and a ``--resume`` of it) would both
rewrite ``last.pt`` and interleave their ``metrics.jsonl`` lines. The run takes an exclusive
``flock`` on ``RUN/.lock`` without waiting; a second run finds it taken and stops at once. The
kernel drops the lock when the holder's file is closed or its process dies, so a crashed run
leaves no stale lock to clear by hand. The lock file itself stays: removing it could let two
runs lock two different files under the same name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # not POSIX (Windows): runs go unlocked
    fcntl = None

LOCK_NAME = ".lock"


class RunFolderBusy(ValueError):
    """Another run holds the run folder's lock."""


def make_run_folder(out: Path) -> None:
    """Create the run folder ``out``; a folder that cannot be created is a one-line user error.

    Raises
    ------
    ValueError
        A file is in the way, or there is no permission.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out {out}: cannot create the folder ({error.strerror or error})") from None


class RunLock:
    """The exclusive lock on a run folder, from :meth:`acquire` until :meth:`release`.

    Parameters
    ----------
    handle : file object or None
        The open lock file whose ``flock`` is held (None where locks are not supported).
    path : Path
        The lock file.
    """

    def __init__(self, handle: IO[str] | None, path: Path) -> None:
        self._handle = handle
        self.path = path

    @classmethod
    def acquire(cls, out: Path) -> "RunLock":
        """Lock the run folder ``out`` (created if need be) without waiting.

        Raises
        ------
        RunFolderBusy
            Another run holds the lock; the message names the folder (and that run's process id).
        ValueError
            The folder cannot be created.
        """
        make_run_folder(out)
        path = out / LOCK_NAME
        if fcntl is None:
            return cls(None, path)
        # "a+": opening must not wipe the holder's process id before the lock is known to be ours
        handle = path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            handle.close()
            raise RunFolderBusy(f"--out {out}: another fastgen run{holder} is using this run folder; wait for it "
                                "to end, or choose another --out") from None
        except BaseException:
            handle.close()
            raise
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return cls(handle, path)

    def release(self) -> None:
        """Drop the lock (closing the file releases it); calling it again does nothing."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _holder(handle: IO[str]) -> str:
    """`` (process N)`` for the lock file's recorded holder, or "" when it has not written its id yet."""
    handle.seek(0)
    text = handle.read().strip()
    return f" (process {text})" if text.isdigit() else ""
