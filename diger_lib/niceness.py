"""Let ``nice`` work for notebook kernels on Linux.

jupyter_client starts each kernel in a new session (``setsid``), and with the kernel's autogroup scheduling
(``/proc/sys/kernel/sched_autogroup_enabled``) every session is its own scheduling group: CPU time is shared between
groups first, and a process's nice value weighs only inside its group. So ``nice -n 19 make baselines`` gave its
kernels an equal share beside a batch instead of its idle time (measured in session 13: a nice-19 SASRec kernel took
45% of a core from two nice-0 trainings). ``honour_nice`` gives the process's autogroup the process's own nice
value, which an unprivileged process may do for its own group (raising it only)."""
from __future__ import annotations

import os
from pathlib import Path

AUTOGROUP = Path("/proc/self/autogroup")


def autogroup_nice(path: Path = AUTOGROUP) -> int | None:
    """The nice value of this process's autogroup, or None where there is none (not Linux, autogroups off)."""
    try:
        text = path.read_text()  # "/autogroup-37 nice 0"
    except OSError:
        return None
    parts = text.split()
    return int(parts[-1]) if len(parts) >= 3 and parts[-2] == "nice" else None


def honour_nice(path: Path = AUTOGROUP) -> bool:
    """If this process is niced (nice > 0) and its autogroup is less so, set the group's nice to the process's.
    Returns True if it changed it; never raises (a machine without autogroups has nothing to do)."""
    try:
        mine = os.nice(0)
    except (AttributeError, OSError):  # Windows
        return False
    group = autogroup_nice(path)
    if mine <= 0 or group is None or group >= mine:
        return False
    try:
        path.write_text(f"{mine}\n")
    except OSError:
        return False
    return autogroup_nice(path) == mine
