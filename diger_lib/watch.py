"""What a running batch is doing: the last line each running step printed.

The runner executes a step into ``papermill_runs/<profile>/.<step>.partial/<stem>.ipynb`` and papermill saves that
notebook while a cell runs (every 30 s by default), so its last output line is the step's progress (a training's
``epoch 3: 41% ... loss=2.9``, a test's ``recommend: 60% ...``). ``--workers`` children log only their header to
``.logs/``; ``python -m diger_lib.cli progress <profile>`` reads the notebooks instead. A staging folder whose
profile no live runner holds (``lock.live_holder``) is an interrupted run, and the report says so."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

from .lock import LOCK_NAME, live_holder, started_at
from .paths import STAGING_SUFFIX, run_of_folder


class Running(NamedTuple):
    step: str  # the run folder's name, e.g. 04_train_recommender__two_stage_cosine
    line: str  # its last output line, or why there is none
    age_seconds: float  # since its notebook was last saved


def _text(output: dict) -> str:
    text = output.get("text")
    if text is None:
        text = output.get("data", {}).get("text/plain", "")
    return "".join(text) if isinstance(text, list) else str(text)


def last_line(notebook: dict) -> str:
    """The last non-empty line of the last cell that printed anything (a progress bar's latest state: text after
    its last carriage return)."""
    for cell in reversed(notebook.get("cells", [])):
        for output in reversed(cell.get("outputs", [])):
            if output.get("output_type") == "error":
                return f"error: {output.get('ename', '?')}: {output.get('evalue', '')}"
            lines = [ln.rsplit("\r", 1)[-1].strip() for ln in _text(output).splitlines()]
            lines = [ln for ln in lines if ln]
            if lines:
                return lines[-1]
    return "(no output yet)"


def running(runs_dir: Path | str, now: float | None = None) -> list[Running]:
    """Every step of a profile's runs folder that is being executed (its ``.<step>.partial`` folder, ``paths.
    staging_dir``), the one saved longest ago first."""
    now = time.time() if now is None else now
    out = []
    for folder in sorted(Path(runs_dir).glob(f".*{STAGING_SUFFIX}")):
        books = sorted(folder.glob("*.ipynb"))
        step = run_of_folder(folder.name)
        if not books:
            out.append(Running(step, "(starting: no notebook saved yet)", now - folder.stat().st_mtime))
            continue
        try:
            line = last_line(json.loads(books[0].read_text()))
        except (OSError, ValueError):  # papermill is rewriting it at this moment
            line = "(notebook being saved; ask again)"
        out.append(Running(step, line, now - books[0].stat().st_mtime))
    return sorted(out, key=lambda r: -r.age_seconds)


def _stopped(step: Running, holder: dict | None, now: float) -> str:
    """"" for a step the profile's live runner is executing; otherwise the words that say it was interrupted. The runner
    makes a step's staging folder afresh when it starts it, so a folder last saved before the holder started (by more
    than a clock's tick) is an earlier, interrupted runner's."""
    if holder is not None and now - step.age_seconds >= started_at(holder) - 1.0:
        return ""
    why = "no runner holds this profile" if holder is None else "left by an earlier runner, not this one's"
    return f"; STOPPED: {why}; --skip-finished resumes it"


def report(runs_root: Path | str, profiles: list[str]) -> str:
    """One line per running step of each profile (every profile with a runs folder when ``profiles`` is empty)."""
    root, now = Path(runs_root), time.time()
    if not profiles:
        profiles = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    lines = []
    for profile in profiles:
        if not (root / profile).is_dir():
            raise FileNotFoundError(f"{root / profile} not found: no runs of profile {profile!r} here")
        steps = running(root / profile)
        holder = live_holder(root / profile / LOCK_NAME) if steps else None
        for r in steps:
            lines.append(f"{profile}/{r.step}: {r.line}  (saved {r.age_seconds:.0f} s ago{_stopped(r, holder, now)})")
    return "\n".join(lines) if lines else "nothing running in " + ", ".join(profiles)
