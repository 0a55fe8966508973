"""One runner per profile: ``papermill_runs/<profile>/.runner.lock`` (git-ignored).

The lock is an exclusive ``flock`` on that file, which the operating system releases when the holder exits in any
way (error, Ctrl-C, SIGKILL, a crash), so a stale lock never blocks. The file's text names the holder (pid,
host, start time, command) for the refusal message; a file left with a holder's text but no lock held means that
holder died, and the next runner takes it over with a warning.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator

from .paths import relative

try:
    import fcntl
except ImportError:  # Windows: no flock; the runner then runs unlocked
    fcntl = None


class LockHeld(RuntimeError):
    """Another live process holds the lock."""


def describe(info: dict) -> str:
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}, "
            f"command: {info.get('command', '?')}")


def _holder(path: Path) -> dict:
    for _ in range(20):  # the holder writes its text right after taking the lock
        try:
            info = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if info:
            return info
        time.sleep(0.05)
    return {}


def _open_locked(path: Path) -> int | None:
    """An fd holding the exclusive lock on ``path`` (the file now at ``path``, not an unlinked one), or None."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the previous holder removed the file between our open and flock: try again


@contextlib.contextmanager
def profile_lock(path: Path | str, command: str, warn: Callable[[str], None] = print) -> Iterator[dict]:
    """Hold the lock at ``path`` for the ``with`` block; raise ``LockHeld`` naming the holder if it is taken."""
    path = Path(path)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
          "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if fcntl is None:
        yield me
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_locked(path)
    if fd is None:
        raise LockHeld(describe(_holder(path)))
    try:
        left = os.read(fd, 65536).decode(errors="replace").strip()
        if left:
            try:
                old = json.loads(left)
            except ValueError:
                old = {"command": left[:200]}
            warn(f"warning: taking over the stale lock {relative(path)} ({describe(old)}): that runner ended "
                 f"without releasing it (crash or kill)")
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        yield me
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # before unlocking, so nobody reads our text as a stale holder's
        os.close(fd)
