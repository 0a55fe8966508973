"""Small helpers the notebooks share: flat metrics files, the paper's numbers, run folders."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_open

PAPER_TABLES = Path(__file__).parent / "resources" / "paper_tables.json"


def paper_tables() -> dict[str, Any]:
    """The DIGER and UniGRec tables as transcribed (``resources/paper_tables.json``)."""
    return json.loads(PAPER_TABLES.read_text())


def _plain(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return None if math.isnan(v) else v
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def write_json(path: Path | str, obj: Any) -> Path:
    """Atomic JSON write (temp file + rename)."""
    with atomic_open(path, "w") as fh:
        fh.write(json.dumps(obj, indent=2, sort_keys=True, default=_plain) + "\n")
    return Path(path)


def write_metrics(out_dir: Path | str, metrics: dict[str, Any]) -> Path:
    """The flat ``metrics.json`` every notebook writes; tables and tests read it, never the outputs."""
    flat = {}
    for k, v in metrics.items():
        if isinstance(v, (dict, list, tuple)):
            raise TypeError(f"metrics.json must be flat; {k!r} is a {type(v).__name__}")
        flat[k] = _plain(v)
    return write_json(Path(out_dir) / "metrics.json", flat)


def write_timing(out_dir: Path | str, **timing: Any) -> Path:
    """Wall times and resume facts go to ``timing.json``, apart from the results, so that metrics.json is
    identical for identical runs."""
    return write_json(Path(out_dir) / "timing.json", {k: _plain(v) for k, v in timing.items()})


def dataset_artifacts(artifacts_dir: Path | str, dataset: str) -> Path:
    d = Path(artifacts_dir) / dataset
    d.mkdir(parents=True, exist_ok=True)
    return d


def rqvae_dir(artifacts_dir: Path | str, dataset: str, K: int, m: int) -> Path:
    return dataset_artifacts(artifacts_dir, dataset) / f"rqvae_K{K}_m{m}"


def markdown_table(df) -> str:
    """pandas DataFrame -> GitHub Markdown table (no tabulate dependency)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        cells = []
        for v in row.tolist():
            if isinstance(v, float):
                cells.append("" if math.isnan(v) else (f"{v:.4f}" if abs(v) < 10 else f"{v:,.2f}"))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_ranks(path: Path | str, ranks: Any) -> Path:
    """Per-user target ranks (-1 = not in the top k), one integer per line, gzip-compressed (small in git)."""
    import gzip

    with atomic_open(path, "wb") as fh:
        fh.write(gzip.compress("\n".join(str(int(r)) for r in np.asarray(ranks)).encode() + b"\n", mtime=0))
    return Path(path)


def read_ranks(path: Path | str) -> np.ndarray:
    import gzip

    return np.array(gzip.decompress(Path(path).read_bytes()).split(), dtype=np.int64)


def finished_run_weights(runs_dir: Path | str, name: str) -> dict[str, Any]:
    """Best recommender weights of a finished notebook-04 run of the same artifacts folder (warm start)."""
    import torch

    pointer = Path(runs_dir) / name / "finished.json"
    if not pointer.is_file():
        known = sorted(p.parent.name for p in Path(runs_dir).glob("*/finished.json"))
        raise FileNotFoundError(f"init_from={name!r}: no finished run {pointer}; finished runs here: "
                                f"{', '.join(known) or 'none'} (run that step first, same artifacts_dir)")
    best = Path(runs_dir) / name / json.loads(pointer.read_text())["fingerprint"] / "best.pt"
    return torch.load(best, map_location="cpu", weights_only=False)["model"]
