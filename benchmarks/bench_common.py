"""What both benchmarks share: the data (Beauty with LETTER's IDs, else synthetic), the two models with the same
weights, and peak memory. A plain module beside the scripts: Python puts a script's folder on sys.path."""
from __future__ import annotations

import resource
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from diger_lib import data as D
from diger_lib.config import RecommenderConfig
from diger_lib.pipeline import load_letter_ids
from diger_lib.recommender import GenRecModel, hf_t5_config
from diger_lib.vocab import SIDVocab

ROOT = Path(__file__).resolve().parents[1]


class Bench(NamedTuple):
    samples: D.Samples  # training (or test) samples
    item_codes: torch.Tensor  # [N_items, 4] unique codes
    vocab: SIDVocab
    source: str
    split: D.Split  # the whole leave-one-out split the samples come from


def load_bench_data(data_root: str, dataset: str, split: str = "train", seed: int = 0) -> Bench:
    """Real leave-one-out samples with LETTER's IDs if the dataset is there, else synthetic ones."""
    try:
        seqs = D.load_interactions(data_root, dataset)
    except D.DataError:
        seqs = None
    index = Path(data_root) / dataset / f"{dataset}.index.json"
    if seqs is not None and index.is_file():
        sp = D.split_leave_one_out(seqs, max_history=20)
        codes, K, _ = load_letter_ids(data_root, dataset, sp.n_items)  # the same IDs as notebook 04's ids="letter"
        return Bench(getattr(sp, split), torch.from_numpy(codes), SIDVocab(codes.shape[1], K),
                     f"{dataset} ({split}, LETTER IDs)", sp)
    # synthetic: Beauty-like sequence lengths (geometric-ish, 5 to 50 items), 12,101 items with random IDs
    rng = np.random.default_rng(seed)
    n_items = 12101
    seqs = {u: rng.integers(0, n_items, size=int(min(5 + rng.geometric(0.25), 50))).tolist() for u in range(22363)}
    sp = D.split_leave_one_out(seqs, max_history=20)
    codes = np.unique(rng.integers(0, 256, size=(2 * n_items, 4)), axis=0)[:n_items]
    codes = codes[rng.permutation(len(codes))]
    return Bench(getattr(sp, split), torch.from_numpy(codes), SIDVocab(4, 256), f"synthetic ({split}; no {data_root}/{dataset})",
                 sp)


def build_models(cfg: RecommenderConfig, vocab: SIDVocab, seed: int = 0):
    """HF T5 and ours with the same weights (T5's default tied output layer, as LETTER's TIGER uses)."""
    from transformers import T5ForConditionalGeneration

    torch.manual_seed(seed)
    hf = T5ForConditionalGeneration(hf_t5_config(cfg, vocab))
    return hf, GenRecModel.from_hf_t5(hf, vocab)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
