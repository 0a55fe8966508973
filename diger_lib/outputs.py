"""What a finished run left outside git, and whether it is still there.

A finished run's folder under ``papermill_runs/`` is committed, but the artifacts it made are not (embeddings,
tokenizers, checkpoints live under ``$DIGER_ARTIFACTS``). On a new machine, or after the artifacts were deleted,
a run can be "finished" in git while the files the next notebooks read are gone, or are rebuilt differently: RQ-VAE
pretraining is deterministic on one machine, not across CPU types (README, reproduction notes), so notebook 03 can
give other semantic IDs. ``stale_reason`` says why such a run must run again; the runner's ``--skip-finished`` asks
it, so a batch never pairs runs made on different IDs. Notebooks 05 and 06 read the profile's other finished runs:
the runner records which they read (``input_runs``), and one whose inputs changed since runs again
(``inputs_changed``), so a table or figure never lags the runs it shows.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

from .config import FLOOR_METHODS
from .paths import rqvae_name

ENCODE, PRETRAIN, TRAIN = "02_encode_item_text", "03_pretrain_rqvae", "04_train_recommender"
AGGREGATES = ("05_sid_dynamics_figures", "06_results_tables")  # they read the profile's other finished runs


def tokenizer_shape(params: Mapping[str, Any]) -> tuple[int, int]:
    """(K, m) of the tokenizer a step writes or reads: notebook 03's and 04's defaults are 256 codes, 3 levels."""
    return int(params.get("codebook_size", 256)), int(params.get("n_levels", 3))


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def ids_file(artifacts_dir: Path | str, data_root: Path | str, dataset: str, *, ids: str = "ours",
             K: int = 256, m: int = 3) -> Path:
    """The file that fixes a notebook-04 run's semantic IDs: notebook 03's ``codes.npy`` (``ids="ours"``) or
    LETTER's ``<dataset>.index.json`` (``ids="letter"``)."""
    if ids == "letter":
        return Path(data_root) / dataset / f"{dataset}.index.json"
    return Path(artifacts_dir) / dataset / rqvae_name(K, m) / "codes.npy"  # paths.rqvae_dir, without creating it


def stale_reason(stem: str, params: Mapping[str, Any], finished: Mapping[str, Any] | None,
                 artifacts_dir: Path | str) -> str | None:
    """Why a run whose configuration is unchanged must still run again, or None if its outputs are in place.

    ``params``: the run's resolved parameters; ``finished``: its committed ``metrics.json`` (None if unreadable);
    ``artifacts_dir``: the resolved artifacts folder. Notebook 02 needs ``item_emb.npy``; notebook 03 its
    ``rqvae.pt`` and ``codes.npy`` (with the digest it recorded); a notebook-04 training, the tokenizer whose
    ``codes.npy`` digest it recorded (``tokenizer_codes_sha256``). Other notebooks read only committed runs."""
    art, ds = Path(artifacts_dir), str(params.get("dataset", ""))
    if stem == ENCODE:
        emb = art / ds / "item_emb.npy"
        return None if emb.is_file() else f"its embeddings {emb} are not in the artifacts"
    K, m = tokenizer_shape(params)
    if stem == PRETRAIN:
        codes = ids_file(art, "", ds, K=K, m=m)
        missing = [p.name for p in (codes.with_name("rqvae.pt"), codes) if not p.is_file()]
        if missing:
            return f"its tokenizer ({', '.join(missing)} in {codes.parent}) is not in the artifacts"
        recorded = (finished or {}).get("codes_sha256")
        now = sha256_file(codes) if recorded else ""
        if recorded and recorded != now:
            return f"the artifacts hold another tokenizer (codes.npy {now[:12]}, run {recorded[:12]})"
        return None
    if stem != TRAIN or params.get("method") in FLOOR_METHODS:
        return None
    codes = ids_file(art, params.get("data_root", "data"), ds, ids=str(params.get("ids", "ours")), K=K, m=m)
    if not codes.is_file():
        return f"its semantic IDs ({codes}) are not in the artifacts"
    recorded, now = (finished or {}).get("tokenizer_codes_sha256"), sha256_file(codes)
    if recorded != now:
        return (f"it was trained on other semantic IDs (tokenizer_codes_sha256 {str(recorded)[:12]}, the artifacts "
                f"now hold {now[:12]})")
    return None


def input_runs(runs_dir: Path | str) -> dict[str, str]:
    """{folder name: digest of its metrics.json} of every finished run in ``runs_dir`` except notebooks 05/06: what
    an aggregate step reads (recorded in its manifest as ``inputs``)."""
    return {f.parent.name: sha256_file(f)[:16] for f in sorted(Path(runs_dir).glob("*/metrics.json"))
            if not f.parent.name.startswith(".") and f.parent.name.split("__")[0] not in AGGREGATES}


def inputs_changed(recorded: Mapping[str, str] | None, now: Mapping[str, str]) -> str | None:
    """Why an aggregate step that read ``recorded`` must run again now that the runs are ``now`` (None: unchanged)."""
    if recorded is None:
        return "it did not record the runs it read"
    parts = [f"{what} {', '.join(names)}" for what, names in (
        ("new", sorted(set(now) - set(recorded))), ("gone", sorted(set(recorded) - set(now))),
        ("changed", sorted(k for k in set(now) & set(recorded) if now[k] != recorded[k]))) if names]
    return f"the runs it reads changed ({'; '.join(parts)})" if parts else None
