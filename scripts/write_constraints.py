"""Rewrite ``constraints.txt``: every package ``requirements.txt`` resolves to, pinned (``make constraints``).

Resolves from scratch with pip's own resolver (``--dry-run --ignore-installed --report``), so what a venv happens to
hold beside the requirements (playwright from ``make test-browser``, a package a user added) does not leak in. The
local label of torch (``+cpu``) is dropped, so a CUDA build of the same version satisfies the pin. The file is
written only after the resolution succeeded (``atomic_open``). Run from the repository's top as
``python -m scripts.write_constraints``, so it needs no ``pip install -e .`` (a venv being re-pinned may lack it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from diger_lib.atomic import atomic_open

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"pip", "setuptools", "wheel"}
HEADER = """\
# Every package requirements.txt resolves to, at the versions our runs and CI used. make setup installs with
# pip install -r requirements.txt -c constraints.txt: requirements.txt names what we use, this file fixes the rest, so
# a fresh machine next year gets today's scipy, jupyter_client, huggingface-hub ... Written by make constraints
# (scripts/write_constraints.py) after a change to requirements.txt; torch is pinned without its +cpu local label,
# so a CUDA build of the same version satisfies it.
"""


def resolve(requirements: Path) -> dict[str, str]:
    """Name -> version of every package pip would install for ``requirements`` into an empty environment."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
                        "--report", str(report), "-r", str(requirements)], check=True)
        items = json.loads(report.read_text())["install"]
    return {i["metadata"]["name"]: i["metadata"]["version"].split("+")[0] for i in items
            if i["metadata"]["name"].lower() not in SKIP}


def main() -> None:
    pins = resolve(ROOT / "requirements.txt")
    lines = [f"{name}=={version}\n" for name, version in sorted(pins.items(), key=lambda kv: kv[0].lower())]
    with atomic_open(ROOT / "constraints.txt", "w") as fh:
        fh.write(HEADER + "".join(lines))
    print(f"constraints.txt: {len(lines)} packages")


if __name__ == "__main__":
    main()
