"""One process trains a run at a time: an OS lock on the run folder's lock file.

``flock`` is dropped by the OS when the process ends however it ends (kill -9 included), so a
killed run never leaves its folder locked; a second invocation of the same run sees the lock
and skips the run with one line instead of both writing the same ``metrics.csv``.
"""

from __future__ import annotations

import os
from pathlib import Path

from actbench.records import LOCK

_HELD_LOCKS: dict[str, RunLock] = {}  # the run locks this process holds, by path


class RunLock:
    """An exclusive OS lock (``flock``) on ``<run_dir>/.lock``, held by the one process that
    trains the run, for its whole attempt. The OS drops it when the process ends however it
    ends (kill -9 included), so it is never left held; the empty file stays."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir).resolve() / LOCK
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it."""
        import fcntl  # POSIX only, so imported where it is used

        # An attempt earlier in this process that ended by an exception before releasing it
        # (a reused sweep worker) is over: its lock is this process's to drop.
        stale = _HELD_LOCKS.pop(str(self.path), None)
        if stale is not None:
            stale.release()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by another process
            os.close(fd)
            return False
        self._fd = fd
        _HELD_LOCKS[str(self.path)] = self
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        if _HELD_LOCKS.get(str(self.path)) is self:
            del _HELD_LOCKS[str(self.path)]

    @property
    def held(self) -> bool:
        return self._fd is not None
