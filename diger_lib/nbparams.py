"""Direct papermill use is as safe as the runner: a misspelt ``-p`` name fails the notebook at its first cell.

Papermill injects a cell tagged ``injected-parameters`` (source ``# Parameters`` then ``name = value`` lines) right
after the cell tagged ``parameters``, and only warns about names the parameters cell does not declare. The first
code cell of every notebook calls :func:`check_injected`, which reads the kernel's input history (nbclient executes
with ``store_history``), finds the injected cell and the parameters cell before it, and raises the runner's
"unknown parameter ...; did you mean ...?" error. Interactive use, with no injected cell, passes.
"""
from __future__ import annotations

import ast
from typing import Sequence

from .config import reject_unknown

INJECTED_HEADER = "# Parameters"  # papermill's first line of the injected cell


def assigned_names(source: str) -> list[str]:
    """Names a cell assigns at top level (``x = 1`` and ``x: int = 1``), in order."""
    names = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def _history() -> Sequence[str]:
    try:
        from IPython import get_ipython
    except ImportError:
        return []
    ip = get_ipython()
    return [] if ip is None else list(ip.history_manager.input_hist_raw)


def check_injected(history: Sequence[str] | None = None) -> None:
    """Raise ``ConfigError`` for any papermill-injected parameter the notebook's parameters cell does not declare.

    ``history`` is the kernel's input history, oldest first, ending with the cell that calls this (IPython's
    ``In``); by default it is read from the running IPython kernel.
    """
    from .niceness import honour_nice

    honour_nice()  # every notebook's first call: a niced runner's kernel yields the CPU (niceness.py says why)
    history = list(_history() if history is None else history)
    for i in range(len(history) - 2, 0, -1):  # the latest injected cell before the calling one
        if history[i].strip().splitlines()[:1] == [INJECTED_HEADER]:
            try:
                injected, declared = assigned_names(history[i]), assigned_names(history[i - 1])
            except SyntaxError:  # not the cells papermill wrote: nothing to judge
                return
            if declared:
                reject_unknown(dict.fromkeys(injected), declared, where="this notebook (papermill -p)")
            return
