import json
from pathlib import Path

import numpy as np
import pytest
import torch

from diger_lib import data as D
from diger_lib.vocab import SIDVocab

ROOT = Path(__file__).resolve().parents[1]


def test_leave_one_out_hand_case():
    seqs = {0: [10, 11, 12, 13, 14], 1: [20, 21, 22]}
    sp = D.split_leave_one_out(seqs, max_history=2)
    tr = [(int(u), [int(i) for i in h[:n]], int(t)) for u, h, n, t in zip(*sp.train)]
    assert tr == [(0, [10], 11), (0, [10, 11], 12)]  # user 1's training part [20] has no prefix sample
    assert [int(i) for i in sp.valid.history[0][: sp.valid.length[0]]] == [11, 12] and sp.valid.target[0] == 13
    assert [int(i) for i in sp.test.history[0][: sp.test.length[0]]] == [12, 13] and sp.test.target[0] == 14
    assert [int(i) for i in sp.test.history[1][: sp.test.length[1]]] == [20, 21] and sp.test.target[1] == 22
    assert sp.train.history[0, 1] == -1  # right padding
    assert sp.train_sequences == [[10, 11, 12], [20]]


def test_split_rejects_short_users_and_bad_history():
    with pytest.raises(D.DataError, match="user 3 has 2"):
        D.split_leave_one_out({3: [1, 2]})
    with pytest.raises(ValueError, match="max_history"):
        D.split_leave_one_out({0: [1, 2, 3]}, max_history=0)


def test_bucket_batches_cover_every_sample_once_and_are_seeded():
    lengths = np.random.default_rng(0).integers(1, 21, size=1000)
    b1 = D.bucket_batches(lengths, 64, shuffle=True, seed=3)
    b2 = D.bucket_batches(lengths, 64, shuffle=True, seed=3)
    b3 = D.bucket_batches(lengths, 64, shuffle=True, seed=4)
    flat = np.concatenate(b1)
    assert sorted(flat.tolist()) == list(range(1000))
    assert all((x == y).all() for x, y in zip(b1, b2))
    assert any(len(x) != len(y) or (x != y).any() for x, y in zip(b1, b3))
    spread = np.mean([np.ptp(lengths[b]) for b in b1])
    random_spread = np.mean([np.ptp(lengths[i:i + 64]) for i in range(0, 1000, 64)])
    assert spread < 1.5 and random_spread > 10  # bucketing: a batch holds one or two adjacent lengths


def test_make_batch_tokens():
    seqs = {0: [0, 1, 2, 3, 4]}
    sp = D.split_leave_one_out(seqs, 20)
    vocab = SIDVocab(2, 4)
    codes = torch.tensor([[0, 0], [1, 2], [3, 3], [2, 1], [0, 3]])
    tok = vocab.codes_to_tokens(codes)
    b = D.make_batch(sp.train, np.array([0, 1]), tok)
    # sample 0: history [0] -> tokens of item 0 then padding; sample 1: history [0, 1]
    assert b.input_ids.tolist() == [[2, 6, 0, 0], [2, 6, 3, 8]]
    assert b.attention_mask.tolist() == [[True, True, False, False], [True] * 4]
    assert b.labels.tolist() == tok[[1, 2]].tolist()


def test_shipped_beauty_matches_table1():
    seqs = D.load_interactions(ROOT / "data", "Beauty")
    st = D.table1_stats(seqs)
    assert (st["users"], st["items"], st["interactions"], st["avg_length"], st["sparsity"]) == (22363, 12101, 198502, 8.88, 0.9993)
    assert D.k_core_violations(seqs, 5) == (0, 0)


def test_k_core_filter():
    seqs = {0: [0, 1, 2], 1: [0, 1, 2], 2: [0, 1, 3]}
    out = D.apply_k_core(seqs, 2)
    assert out == {0: [0, 1, 2], 1: [0, 1, 2], 2: [0, 1]}


def _fake_source(tmp_path):
    src = tmp_path / "src" / "Foo"
    src.mkdir(parents=True)
    (src / "Foo.inter.json").write_text(json.dumps({"0": [0, 1, 2]}))
    sums = tmp_path / "SUMS"
    sums.write_text(f"{D.sha256_file(src / 'Foo.inter.json')}  ./Foo/Foo.inter.json\n")
    return tmp_path / "src", sums


def test_setup_data_links_and_verifies(tmp_path):
    src, sums = _fake_source(tmp_path)
    done = D.setup_data(src, tmp_path / "data", checksums=sums)
    assert done[0].is_symlink() and json.loads(done[0].read_text()) == {"0": [0, 1, 2]}
    D.setup_data(src, tmp_path / "data", checksums=sums)  # idempotent


def test_setup_data_checksum_mismatch_names_file(tmp_path):
    src, sums = _fake_source(tmp_path)
    (src / "Foo" / "Foo.inter.json").write_text("{}")
    with pytest.raises(D.DataError, match=r"checksum mismatch for .*Foo\.inter\.json"):
        D.setup_data(src, tmp_path / "data", checksums=sums)
    assert not (tmp_path / "data" / "Foo" / "Foo.inter.json").exists()


def test_setup_data_missing_file_and_folder(tmp_path):
    src, sums = _fake_source(tmp_path)
    (src / "Foo" / "Foo.inter.json").unlink()
    with pytest.raises(D.DataError, match=r"missing data file .*Foo\.inter\.json"):
        D.setup_data(src, tmp_path / "data", checksums=sums)
    with pytest.raises(D.DataError, match="does not exist"):
        D.setup_data(tmp_path / "nope", tmp_path / "data", checksums=sums)


def test_unknown_dataset_and_bad_json(tmp_path):
    with pytest.raises(D.DataError, match="unknown dataset 'Beuaty'"):
        D.load_interactions(ROOT / "data", "Beuaty")
    (tmp_path / "Bad").mkdir()
    (tmp_path / "Bad" / "Bad.inter.json").write_text("{not json")
    with pytest.raises(D.DataError, match="not valid JSON"):
        D.load_interactions(tmp_path, "Bad")


def test_letter_index_codes():
    codes = D.load_index_codes(ROOT / "data" / "Beauty" / "Beauty.index.json", 12101)
    assert codes.shape == (12101, 4) and codes[0].tolist() == [183, 70, 232, 6]
    assert len(np.unique(codes, axis=0)) == 12088  # LETTER's published Beauty IDs repeat for 13 items
    fixed, changed = D.make_ids_unique(codes, 256)
    assert changed == 13 and len(np.unique(fixed, axis=0)) == 12101
    assert (fixed[:, :3] == codes[:, :3]).all() and (fixed != codes).any(axis=1).sum() == 13


def test_make_ids_unique_hand_case():
    codes = np.array([[0, 0, 1], [0, 0, 1], [0, 0, 0], [1, 0, 1]])
    fixed, changed = D.make_ids_unique(codes, 3)
    assert changed == 1 and fixed.tolist() == [[0, 0, 1], [0, 0, 2], [0, 0, 0], [1, 0, 1]]
    with pytest.raises(D.DataError, match="prefix"):
        D.make_ids_unique(np.array([[0, 0], [0, 0], [0, 1]]), 2)
