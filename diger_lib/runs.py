"""Reading the finished notebook-04 runs of a profile (``papermill_runs/<profile>/04_train_recommender__<name>/``):
the one reader notebooks 05 (figures) and 06 (tables) share."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from .records import read_ranks

PREFIX = "04_train_recommender"


# runs of other notebooks with the same test ranks and metrics: a cornac baseline (03b), a peer's TIGER (04b)
WHOLE_NAMES = ("03b_conventional_baselines__", "04b_peer_tiger__")


def run_dir(runs_dir: Path | str, name: str) -> Path:
    """A notebook-04 run's folder from its variant name; a 03b or 04b run is named by its whole folder name."""
    return Path(runs_dir) / (name if name.startswith(WHOLE_NAMES) else f"{PREFIX}__{name}")


def resolve_run(runs_dir: Path | str, ref: str) -> Path:
    """The folder of a run reference: ``name`` (a run of this profile, in ``runs_dir``) or ``profile/name`` (a run of
    another profile: ``papermill_runs/<profile>/``, the sibling of ``runs_dir``), e.g. ``diagnosis/ts_s2026``."""
    if "/" in ref:
        profile, name = ref.split("/", 1)
        return run_dir(Path(runs_dir).parent / profile, name)
    return run_dir(runs_dir, ref)


def other_profile_refs(baseline: str, pairs: str) -> list[str]:
    """The ``profile/name`` references among notebook 06's ``baseline`` and ``pairs`` (``run:partner,...``)."""
    refs = [baseline] + [p.split(":", 1)[-1] for p in pairs.split(",") if p.strip()]
    return sorted({r.strip() for r in refs if "/" in r})


def read_refs(runs_dir: Path | str, refs: Sequence[str]) -> list[Run]:
    """Runs of other profiles, named by their reference (a clear error names a missing one)."""
    out = []
    for ref in refs:
        d = resolve_run(runs_dir, ref)
        if not (d / "metrics.json").is_file():
            raise FileNotFoundError(f"{d / 'metrics.json'} not found: {ref!r} names no finished run of that profile")
        out.append(read_run(d)._replace(name=ref))
    return out


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


class Run(NamedTuple):
    name: str  # the variant, e.g. "diger_frqud"
    dir: Path
    metrics: dict[str, Any]  # metrics.json
    manifest: dict[str, Any]  # manifest.json (commit, versions; {} if absent)
    timing: dict[str, Any]  # timing.json ({} if absent)

    def history(self):
        """The per-epoch table (``history.csv``) as a DataFrame, or None (MostPopular has none)."""
        import pandas as pd

        f = self.dir / "history.csv"
        return pd.read_csv(f) if f.is_file() else None

    def usage(self) -> np.ndarray | None:
        """Code usage counts [m, K] at the best checkpoint (``usage.json``), or None."""
        u = _json(self.dir / "usage.json")
        return np.asarray(u["counts"]) if u else None

    def ranks(self) -> np.ndarray:
        """Per-test-user target ranks (``test_ranks.txt.gz``), for paired bootstraps."""
        f = self.dir / "test_ranks.txt.gz"
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found: run {self.name!r} has no per-user test ranks (rerun it with this code)")
        return read_ranks(f)


def read_run(d: Path) -> Run:
    return Run(d.name.replace(f"{PREFIX}__", ""), d, _json(d / "metrics.json"), _json(d / "manifest.json"),
               _json(d / "timing.json"))


DIGEST = "tokenizer_codes_sha256"  # notebook 04 records the SHA-256 of the codes.npy it trained on


def shared_ids(runs: Sequence[Run], allow_unrecorded: bool = True) -> str | None:
    """The semantic IDs' digest every run recorded (None: none recorded, accepted only with ``allow_unrecorded``):
    runs pair only on the same IDs. A ValueError names each run with its digest otherwise. The floors (most popular,
    Markov-1) read no IDs and record ""; they pair with any run of their dataset and are left out here."""
    digests = {r.name: r.metrics.get(DIGEST) for r in runs if r.metrics.get(DIGEST) != ""}
    if not digests and runs:
        return ""
    found = set(digests.values())
    if len(found) == 1 and (None not in found or allow_unrecorded):
        return next(iter(found))
    listed = ", ".join(f"{n} ({str(d)[:12]})" for n, d in digests.items())
    raise ValueError(f"the runs used different or unrecorded semantic IDs ({DIGEST}: {listed}): they are not paired")


def read_runs(runs_dir: Path | str, names: Sequence[str] | None = None, need: str = "metrics.json") -> list[Run]:
    """The named runs (each must have ``need``: a clear error names the missing one; a name may be ``profile/name``,
    ``resolve_run``), or with ``names=None`` every finished notebook-04 run in the folder, sorted by name (staging
    folders and runs without metrics.json are skipped)."""
    if names is None:
        dirs = [d for d in sorted(Path(runs_dir).glob(f"{PREFIX}*"))
                if not d.name.startswith(".") and (d / "metrics.json").is_file()]
        return [read_run(d) for d in dirs]
    out = []
    for name in names:
        d = resolve_run(runs_dir, name)
        if not (d / need).is_file():
            raise FileNotFoundError(f"{d / need} not found: run {name!r} ({d.name}) has not finished")
        out.append(read_run(d))
    return out
