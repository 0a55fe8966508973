"""Collaborative teachers: item embeddings of a conventional recommender that a method distils from (UniGRec's
dual collaborative distillation, its section 3.4, uses SASRec's).

The contract with whoever trains the teacher (the conventional-baselines notebook trains SASRec with cornac):
``<artifacts root>/<dataset>/teachers/<name>/item_emb.npy`` (float32 [n_items, d], row i = the item with internal
index i of ``diger_lib.data``, the indexing of the tokenizer's ``item_emb.npy``) and ``meta.json`` beside it with at
least ``{"model": ..., "n_items": ..., "dim": ...}``. The artifacts root is ``$DIGER_ARTIFACTS`` (``paths``), so one
teacher per dataset serves every profile.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .paths import artifacts_root, display_path

META_KEYS = ("model", "n_items", "dim")


class Teacher(NamedTuple):
    emb: torch.Tensor  # [n_items, d] float32
    meta: dict[str, Any]  # meta.json
    dir: Path


def teacher_dir(dataset: str, name: str, root: Path | str | None = None) -> Path:
    """``<root>/<dataset>/teachers/<name>`` (root: the artifacts root)."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"teacher={name!r} must be a folder name under <artifacts root>/{dataset}/teachers/")
    return Path(artifacts_root() if root is None else root) / dataset / "teachers" / name


def load_teacher(dataset: str, name: str, n_items: int, root: Path | str | None = None) -> Teacher:
    """The teacher's item embeddings, checked against the catalogue (``n_items`` items); a clear error otherwise."""
    d = teacher_dir(dataset, name, root)
    emb_file, meta_file = d / "item_emb.npy", d / "meta.json"
    for f in (emb_file, meta_file):
        if not f.is_file():
            raise FileNotFoundError(
                f"teacher {name!r} for {dataset}: {display_path(f)} not found. UniGRec's collaborative distillation "
                f"(variants M4-M6, parts cdt/cdr) reads a teacher's item embeddings from {display_path(d)}/: "
                f"item_emb.npy (float32 [n_items, d], row i = item i) and meta.json "
                f"({{\"model\", \"n_items\", \"dim\"}}); the conventional-baselines notebook's SASRec writes both. "
                f"Variants M0-M3 need no teacher.")
    meta = json.loads(meta_file.read_text())
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"teacher {name!r}: {display_path(meta_file)} lacks {', '.join(missing)}")
    if int(meta["n_items"]) != n_items:
        raise ValueError(f"teacher {name!r}: {display_path(meta_file)} says n_items={meta['n_items']}, but {dataset} "
                         f"has {n_items} items: the teacher was trained on another dataset or split")
    emb = np.load(emb_file)
    if emb.shape != (n_items, int(meta["dim"])) or not np.issubdtype(emb.dtype, np.floating):
        raise ValueError(f"teacher {name!r}: {display_path(emb_file)} is {emb.dtype} {emb.shape}, expected float "
                         f"[{n_items}, {meta['dim']}] (meta.json's n_items, dim)")
    if not np.isfinite(emb).all():
        raise ValueError(f"teacher {name!r}: {display_path(emb_file)} contains NaN or inf")
    return Teacher(torch.from_numpy(emb.astype(np.float32)), meta, d)
