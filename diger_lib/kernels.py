"""How the runner talks to a notebook's kernel, and how an executed notebook is written so that it reads the same in
every clone."""
from __future__ import annotations

import os
from pathlib import Path

from .paths import relative, relative_text


def kernel_config(socket_dir: str):
    """The kernel talks to papermill over private Unix sockets (IPC), not TCP on localhost: nothing for ipykernel
    to warn about ("running over TCP without encryption"), and no ports to collide between runners."""
    from traitlets.config import Config

    if os.name == "nt":
        return Config()
    return Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(socket_dir, "kernel")}})


def relativize_notebook(path: Path, source: Path, final: Path) -> None:
    """Papermill records absolute input/output paths (``source``, the notebook run; ``final``, its run folder) in
    the notebook's metadata: write them relative to the repo. Text outputs that name a file under the checkout (a library warning, a path printed without display_path)
    lose the machine's prefix the same way, so an executed notebook reads the same in every clone."""
    import nbformat

    book = nbformat.read(path, as_version=4)
    meta = book.metadata.get("papermill", {})
    meta["input_path"] = relative(source)
    meta["output_path"] = relative(final / path.name)
    for cell in book.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = relative_text(out["text"])
            if "traceback" in out:
                out["traceback"] = [relative_text(line) for line in out["traceback"]]
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/") and isinstance(value, str):
                    out["data"][mime] = relative_text(value)
    nbformat.write(book, path)
