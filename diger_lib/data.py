"""Datasets: checksummed setup, loading, 5-core check, leave-one-out split, batching.

Protocol (DIGER section 5, following LETTER [42]): each user's interactions in time order; the last item is
the test target, the second to last the validation target, and every prefix of the rest is a training
sample (history = the previous at most ``max_history`` items, target = the next item).
"""
from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .outputs import sha256_file  # noqa: F401 (data.sha256_file: the SHA-256 of a data file)

CHECKSUMS = Path(__file__).parent / "resources" / "SHA256SUMS"
SHIPPED = ("Beauty", "Instruments", "Yelp")
SOURCES_HINT = (
    "The shipped datasets come from public GitHub repositories (LETTER, ICLRec, GRAM, TransRec, PLRec, GenRec, "
    "GAMER); README.md section 'Data' lists each file's repository, commit and path."
)


class DataError(RuntimeError):
    """A dataset file is missing, altered or malformed."""


# ----------------------------------------------------------------------------------------------
# Setup: link/copy the shared data into data/ and verify SHA-256
# ----------------------------------------------------------------------------------------------
def expected_checksums(checksums: Path = CHECKSUMS) -> dict[str, str]:
    """Relative path ('Beauty/Beauty.inter.json') -> SHA-256, from the list kept in the project."""
    out = {}
    for line in checksums.read_text().splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            out[rel.strip().removeprefix("./")] = digest
    return out


def default_source() -> Path:
    env = os.environ.get("DIGER_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def setup_data(source: Path | str | None = None, dest: Path | str = "data", *, copy: bool = False,
               checksums: Path = CHECKSUMS) -> list[Path]:
    """Link (or copy) every checksummed file from ``source`` into ``dest`` and verify it.

    Raises DataError naming the first missing or altered file; a file that fails its check is not left in
    ``dest``.
    """
    source = Path(source) if source is not None else default_source()
    dest = Path(dest)
    if not source.is_dir():
        raise DataError(f"data source folder {source} does not exist. Set DIGER_DATA to the folder holding "
                        f"Beauty/, Instruments/, Yelp/ (see ../shared/data/README.md). {SOURCES_HINT}")
    done = []
    for rel, digest in expected_checksums(checksums).items():
        src = source / rel
        if not src.is_file():
            raise DataError(f"missing data file {src}. {SOURCES_HINT}")
        got = sha256_file(src)
        if got != digest:
            raise DataError(f"checksum mismatch for {src}: expected sha256 {digest}, got {got}. The file is altered "
                            f"or truncated; fetch it again. {SOURCES_HINT}")
        dst = dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.exists():
            if dst.resolve() == src.resolve() or (dst.is_file() and sha256_file(dst) == digest):
                done.append(dst)
                continue
            dst.unlink()
        tmp = dst.with_name(dst.name + ".tmp")
        if copy:
            shutil.copyfile(src, tmp)
        else:
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(src.resolve())
        os.replace(tmp, dst)
        done.append(dst)
    return done


def verify_dataset(root: Path | str, name: str, checksums: Path = CHECKSUMS) -> None:
    """Check a shipped dataset's files under ``root`` against the project's SHA-256 list."""
    for rel, digest in expected_checksums(checksums).items():
        if rel.split("/")[0] != name:
            continue
        path = Path(root) / rel
        if not path.is_file():
            raise DataError(f"missing data file {path}; run `make data` (or set DIGER_DATA). {SOURCES_HINT}")
        if sha256_file(path) != digest:
            raise DataError(f"checksum mismatch for {path}; run `make data` to restore it. {SOURCES_HINT}")


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------
def dataset_dir(root: Path | str, name: str) -> Path:
    d = Path(root) / name
    if not (d / f"{name}.inter.json").is_file():
        available = sorted(p.name for p in Path(root).glob("*") if (p / f"{p.name}.inter.json").is_file()) \
            if Path(root).is_dir() else []
        if name not in SHIPPED and not d.is_dir():
            raise DataError(f"unknown dataset {name!r} under {root}: no folder {d}. Available: {available or 'none'}; "
                            f"a dataset of your own needs {name}/{name}.inter.json (README 'Bring your own dataset').")
        raise DataError(f"missing data file {d / (name + '.inter.json')}; run `make data` for shipped datasets. "
                        f"{SOURCES_HINT}")
    return d


def load_interactions(root: Path | str, name: str) -> dict[int, list[int]]:
    """``{user: [item, ...]}`` in time order, ids as ints; validates the format."""
    path = dataset_dir(root, name) / f"{name}.inter.json"
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{path} must be a non-empty JSON object {{user: [item, ...]}}")
    seqs = {}
    for u, items in raw.items():
        if not isinstance(items, list) or not all(isinstance(i, int) and i >= 0 for i in items):
            raise DataError(f"{path}: user {u!r} must map to a list of non-negative integer item ids")
        seqs[int(u)] = items
    return dict(sorted(seqs.items()))


def load_items(root: Path | str, name: str) -> dict[str, dict] | None:
    path = dataset_dir(root, name) / f"{name}.item.json"
    return json.loads(path.read_text()) if path.is_file() else None


def load_index_codes(path: Path | str, n_items: int) -> np.ndarray:
    """LETTER's published IDs (``X.index.json``: item -> ["<a_183>", "<b_70>", ...]) as int codes [N, L]."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing semantic-ID file {path}")
    raw = json.loads(path.read_text())
    rows = []
    for i in range(n_items):
        toks = raw.get(str(i))
        if toks is None:
            raise DataError(f"{path} has no ID for item {i}")
        rows.append([int(t.split("_")[1].rstrip(">")) for t in toks])
    return np.asarray(rows, dtype=np.int64)


def make_ids_unique(codes: np.ndarray, K: int) -> tuple[np.ndarray, int]:
    """Give every duplicated ID (after its first, lowest-numbered item) the smallest last code unused under
    its prefix, so a trie can map every ID to one item. LETTER's published IDs repeat (Beauty 13, Instruments
    25, Yelp 832 items); returns (unique codes, number of items changed)."""
    codes = np.array(codes, copy=True)
    used: dict[tuple, set[int]] = {}
    for row in codes:
        used.setdefault(tuple(row[:-1]), set()).add(int(row[-1]))
    seen: set[tuple] = set()
    changed = 0
    for i, row in enumerate(codes):
        key = tuple(row)
        if key in seen:
            prefix = key[:-1]
            free = next((c for c in range(K) if c not in used[prefix]), None)
            if free is None:
                raise DataError(f"cannot make item {i}'s ID unique: all {K} last codes under prefix {prefix} are taken")
            codes[i, -1] = free
            used[prefix].add(free)
            key = tuple(codes[i])
            changed += 1
        seen.add(key)
    return codes, changed


# ----------------------------------------------------------------------------------------------
# 5-core check and statistics (Table 1)
# ----------------------------------------------------------------------------------------------
def n_items_of(seqs: dict[int, list[int]]) -> int:
    return 1 + max(max(s) for s in seqs.values())


def k_core_violations(seqs: dict[int, list[int]], k: int) -> tuple[int, int]:
    """(#users with < k interactions, #items with < k interactions); counts interaction events."""
    item_counts = Counter(i for s in seqs.values() for i in s)
    return sum(len(s) < k for s in seqs.values()), sum(c < k for c in item_counts.values())


def apply_k_core(seqs: dict[int, list[int]], k: int) -> dict[int, list[int]]:
    """Iteratively drop users and items with fewer than ``k`` interactions (a no-op on the shipped data)."""
    while True:
        bad_users, bad_items = k_core_violations(seqs, k)
        if not bad_users and not bad_items:
            return seqs
        counts = Counter(i for s in seqs.values() for i in s)
        seqs = {u: [i for i in s if counts[i] >= k] for u, s in seqs.items()}
        seqs = {u: s for u, s in seqs.items() if len(s) >= k}
        if not seqs:
            raise DataError(f"no user survives the {k}-core filter")


def table1_stats(seqs: dict[int, list[int]], n_items: int | None = None) -> dict[str, float]:
    n_users = len(seqs)
    n_items = n_items or n_items_of(seqs)
    events = sum(len(s) for s in seqs.values())
    pairs = sum(len(set(s)) for s in seqs.values())
    return {"users": n_users, "items": n_items, "interactions": pairs, "events": events,
            "avg_length": round(pairs / n_users, 2), "sparsity": round(1 - pairs / (n_users * n_items), 4)}


# ----------------------------------------------------------------------------------------------
# Leave-one-out split
# ----------------------------------------------------------------------------------------------
class Samples(NamedTuple):
    """Fixed-width history matrix (right-aligned order kept, padded with -1 on the right)."""

    user: np.ndarray  # [S] int64
    history: np.ndarray  # [S, max_history] int64, -1 = padding
    length: np.ndarray  # [S] number of real history items
    target: np.ndarray  # [S]

    def __len__(self) -> int:
        return len(self.target)


@dataclass(frozen=True)
class Split:
    train: Samples
    valid: Samples
    test: Samples
    n_items: int
    train_sequences: list[list[int]]  # each user's training part, for popularity and tokenizer statistics


def _pack(rows: list[tuple[int, list[int], int]], max_history: int) -> Samples:
    n = len(rows)
    hist = np.full((n, max_history), -1, dtype=np.int64)
    length = np.zeros(n, dtype=np.int64)
    user = np.zeros(n, dtype=np.int64)
    target = np.zeros(n, dtype=np.int64)
    for r, (u, h, t) in enumerate(rows):
        h = h[-max_history:]
        hist[r, : len(h)] = h
        length[r], user[r], target[r] = len(h), u, t
    return Samples(user, hist, length, target)


def split_leave_one_out(seqs: dict[int, list[int]], max_history: int = 20) -> Split:
    if max_history < 1:
        raise ValueError(f"max_history={max_history} must be >= 1")
    train, valid, test, train_seqs = [], [], [], []
    for u, s in seqs.items():
        if len(s) < 3:
            raise DataError(f"user {u} has {len(s)} interactions; leave-one-out needs at least 3")
        body = s[:-2]
        train_seqs.append(body)
        for t in range(1, len(body)):  # every training prefix is a sample
            train.append((u, body[max(0, t - max_history):t], body[t]))
        valid.append((u, body[-max_history:], s[-2]))
        test.append((u, s[:-1][-max_history:], s[-1]))
    return Split(_pack(train, max_history), _pack(valid, max_history), _pack(test, max_history),
                 n_items_of(seqs), train_seqs)


# ----------------------------------------------------------------------------------------------
# Batching
# ----------------------------------------------------------------------------------------------
def bucket_batches(lengths: np.ndarray, batch_size: int, *, shuffle: bool, seed: int = 0) -> list[np.ndarray]:
    """Batches of sample indices grouped by history length (less padding), in a seeded random order.

    Within a length the order is shuffled too, so an epoch sees different batch compositions.
    """
    rng = np.random.default_rng(seed)
    idx = np.arange(len(lengths))
    if shuffle:
        idx = rng.permutation(idx)
    idx = idx[np.argsort(lengths[idx], kind="stable")]
    batches = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class TokenBatch(NamedTuple):
    input_ids: torch.Tensor  # [B, L*n_tokens]
    attention_mask: torch.Tensor  # [B, L*n_tokens] bool
    labels: torch.Tensor  # [B, n_tokens]
    history: torch.Tensor  # [B, L] item ids, -1 padding (L = longest history in the batch)
    target: torch.Tensor  # [B]


def make_batch(samples: Samples, idx: np.ndarray, item_tokens: torch.Tensor) -> TokenBatch:
    """Token ids for samples ``idx``: history items' SID tokens concatenated (Eq. 2), right-padded with PAD=0."""
    L = int(samples.length[idx].max())
    hist = torch.from_numpy(samples.history[idx, :L])
    valid = hist >= 0
    n_tok = item_tokens.shape[1]
    toks = item_tokens[hist.clamp(min=0)]  # [B, L, n_tok]
    toks = toks.masked_fill(~valid.unsqueeze(-1), 0)
    target = torch.from_numpy(samples.target[idx])
    return TokenBatch(toks.reshape(len(idx), L * n_tok), valid.repeat_interleave(n_tok, dim=1),
                      item_tokens[target], hist, target)
