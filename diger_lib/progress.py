"""Progress bars: rate and ETA in a terminal and in JupyterLab, compact in papermill's executed notebooks.

``tqdm.auto`` draws a widget in JupyterLab and a text bar in a terminal. Under papermill (the runner sets
``DIGER_PROGRESS=plain``) a widget would be stored as an opaque blob and a text bar would store every
redraw, so there the bar is plain text redrawn at most every ``DIGER_PROGRESS_INTERVAL`` seconds (60).
"""
from __future__ import annotations

import os
from typing import Any, Iterable


def progress_bar(iterable: Iterable | None = None, **kwargs: Any):
    mode = os.environ.get("DIGER_PROGRESS", "auto")
    if mode == "off":
        kwargs["disable"] = True
    if mode == "plain":
        from tqdm.std import tqdm

        kwargs.setdefault("mininterval", float(os.environ.get("DIGER_PROGRESS_INTERVAL", "60")))
        kwargs.setdefault("ncols", 100)
        kwargs.setdefault("ascii", True)
        return tqdm(iterable, **kwargs)
    from tqdm.auto import tqdm

    kwargs.setdefault("mininterval", 1.0)
    return tqdm(iterable, **kwargs)
