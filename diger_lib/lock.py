"""One runner per profile: ``papermill_runs/<profile>/.runner.lock`` (git-ignored).

The lock is an exclusive ``flock`` on that file, which the operating system releases when the holder exits in any
way (error, Ctrl-C, SIGKILL, a crash), so a stale lock never blocks. The file's text names the holder (pid,
host, start time, command) for the refusal message; a file left with a holder's text but no lock held means that
holder died, and the next runner takes it over with a warning.
"""
from __future__ import annotations

import calendar
import contextlib
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from .paths import relative

try:
    import fcntl
except ImportError:  # Windows: no flock; the runner then runs unlocked
    fcntl = None


LOCK_NAME = ".runner.lock"  # in papermill_runs/<profile>/


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


def started_at(info: dict) -> float:
    """When the holder started (seconds since the epoch): its ``started_unix``, or for a lock written before that field
    existed its ``started`` text (local time, as ``profile_lock`` writes it); 0.0 when neither can be read."""
    if isinstance(info.get("started_unix"), (int, float)):
        return float(info["started_unix"])
    try:
        t = time.strptime(str(info.get("started", "")), "%Y-%m-%d %H:%M:%S %Z")
    except ValueError:
        return 0.0
    return float(calendar.timegm(t) if t.tm_zone in ("UTC", "GMT") else time.mktime(t))


def live_holder(path: Path | str) -> dict | None:
    """The runner that holds the lock at ``path`` as its text names it, or None when no runner does: no file (a
    runner removes it when it ends), or a holder on this host whose process is gone (killed, or the machine stopped).
    It reads the text and asks the OS about the pid without touching the lock, so it never delays a starting runner;
    a holder on another host (a shared disk) counts as alive. A reused pid reads as alive: rare, and only cosmetic."""
    info = _holder(Path(path)) if Path(path).is_file() else {}
    if not info:
        return None
    pid = info.get("pid")
    if info.get("host") == socket.gethostname() and isinstance(pid, int) and pid > 0:
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return None
        except (PermissionError, OverflowError):
            pass  # another user's process (so it exists), or a pid beyond the OS's range: say alive
    return info


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
          "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "started_unix": time.time()}
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


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM (a session's end, ``kill``, a batch scheduler, a ``--workers`` parent stopping its
    children) ends the runner as Ctrl-C does: the kernel is shut down, the interrupted step's staging folder removed
    and the profile's lock released. SIGTERM's default action would end the process with none of that done. The
    previous handler comes back after the block (``runner.main`` also runs inside tests)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
