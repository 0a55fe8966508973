"""Trie-constrained beam search: valid IDs only, fast == reference, exact on tiny catalogues, padding."""
from __future__ import annotations

import itertools

import pytest
import torch

from diger_lib.config import RecommenderConfig
from diger_lib.decoding import SIDTrie, constrained_beam_search, recommend, reference_beam_search, score_all_items
from diger_lib.recommender import GenRecModel
from diger_lib.vocab import SIDVocab

CFG = RecommenderConfig(d_model=32, n_heads=2, d_kv=16, d_ff=64, n_encoder_layers=2, n_decoder_layers=2,
                        rel_buckets=8, rel_max_distance=16)


def make_model(vocab: SIDVocab, seed: int = 0) -> GenRecModel:
    torch.manual_seed(seed)
    model = GenRecModel(CFG, vocab).eval()
    with torch.no_grad():  # sharpen the output distribution a little so beams differ clearly
        model.lm_head.weight.mul_(0.5)
    return model


def histories(vocab: SIDVocab, B: int, L: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, L + 1, (B,), generator=g)
    lengths[0] = L
    mask = torch.arange(L)[None, :] < lengths[:, None]
    ids = torch.randint(2, vocab.size, (B, L), generator=g).masked_fill(~mask, 0)
    return ids, mask


def random_codes(vocab: SIDVocab, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    codes = torch.unique(torch.randint(0, vocab.codebook_size, (3 * n, vocab.n_tokens), generator=g), dim=0)
    return codes[torch.randperm(len(codes), generator=g)[:n]]


# ---------------------------------------------------------------------------------------------------
# Trie
# ---------------------------------------------------------------------------------------------------
def test_trie_tables_follow_every_id_to_its_item_and_nothing_else():
    vocab = SIDVocab(3, 5)
    codes = random_codes(vocab, 40)
    trie = SIDTrie(codes, vocab)
    for item, row in enumerate(codes.tolist()):
        node = 0
        for j, c in enumerate(row):
            node = int(trie.next[j][node, c])
            assert node >= 0
        assert node == item
    # the number of valid transitions at each level equals the number of distinct prefixes one longer
    for j in range(vocab.n_tokens):
        assert int((trie.next[j] >= 0).sum()) == len(torch.unique(codes[:, : j + 1], dim=0))
        # the additive mask the search uses: 0 exactly where a child exists, -inf elsewhere
        assert torch.equal(trie.penalty[j] == 0, trie.next[j] >= 0)
        assert torch.isinf(trie.penalty[j][trie.next[j] < 0]).all()
    assert trie.as_dict()[codes[0, 0].item()][codes[0, 1].item()][codes[0, 2].item()] == 0


def test_trie_rejects_duplicate_ids_naming_them():
    vocab = SIDVocab(3, 4)
    codes = torch.tensor([[0, 1, 2], [1, 1, 1], [0, 1, 2], [3, 3, 3]])
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        SIDTrie(codes, vocab)


def test_trie_rejects_codes_out_of_range_or_wrong_width():
    vocab = SIDVocab(3, 4)
    with pytest.raises(ValueError, match="range"):
        SIDTrie(torch.tensor([[0, 1, 4]]), vocab)
    with pytest.raises(ValueError, match="must be"):
        SIDTrie(torch.tensor([[0, 1]]), vocab)


# ---------------------------------------------------------------------------------------------------
# Beam search
# ---------------------------------------------------------------------------------------------------
def test_fast_equals_reference_and_returns_only_catalogue_items():
    vocab = SIDVocab(4, 6)
    model = make_model(vocab)
    codes = random_codes(vocab, 150)
    trie = SIDTrie(codes, vocab)
    ids, mask = histories(vocab, B=7, L=20)
    extra = 0.3 * torch.randn(*ids.shape, CFG.d_model)
    table = model.embed_weight().detach() + 0.1 * torch.randn_like(model.embed_weight())
    for kwargs in ({}, {"input_extra": extra, "token_table": table}):
        fast = constrained_beam_search(model, ids, mask, trie, beam_size=8, topk=5, **kwargs)
        ref = reference_beam_search(model, ids, mask, trie, beam_size=8, topk=5, **kwargs)
        assert fast.items.shape == fast.scores.shape == (7, 5)
        assert torch.equal(fast.items, ref.items)
        torch.testing.assert_close(fast.scores, ref.scores, atol=1e-4, rtol=0)
        assert ((fast.items >= 0) & (fast.items < len(codes))).all()
        assert all(len(set(row)) == len(row) for row in fast.items.tolist())
        assert (fast.scores[:, :-1] >= fast.scores[:, 1:]).all()  # best first
        # each score is the model's log-probability of the returned item's full ID
        exact = score_all_items(model, ids, mask, codes, **kwargs).gather(1, fast.items)
        torch.testing.assert_close(fast.scores, exact, atol=1e-4, rtol=0)


def test_wide_beam_finds_the_exhaustive_top10():
    """With beam_size >= the number of nodes at every level nothing is pruned, so beam search is exact."""
    vocab = SIDVocab(3, 4)
    model = make_model(vocab, seed=3)
    codes = random_codes(vocab, 30, seed=3)
    trie = SIDTrie(codes, vocab)
    assert max(len(torch.unique(codes[:, : j + 1], dim=0)) for j in range(3)) <= 30
    ids, mask = histories(vocab, B=6, L=12, seed=3)
    best = score_all_items(model, ids, mask, codes).topk(10, dim=1)
    out = constrained_beam_search(model, ids, mask, trie, beam_size=30, topk=10)
    assert torch.equal(out.items, best.indices)
    torch.testing.assert_close(out.scores, best.values, atol=1e-4, rtol=0)


def test_narrow_beam_prunes_like_the_reference():
    """beam_size smaller than a node's children count: the pruning (not only the ranking) must agree."""
    vocab = SIDVocab(3, 8)
    model = make_model(vocab, seed=5)
    codes = torch.tensor(list(itertools.product(range(8), range(3), range(2))))  # 48 items, 8 first tokens
    trie = SIDTrie(codes, vocab)
    ids, mask = histories(vocab, B=5, L=9, seed=5)
    fast = constrained_beam_search(model, ids, mask, trie, beam_size=3, topk=3)
    ref = reference_beam_search(model, ids, mask, trie, beam_size=3, topk=3)
    assert torch.equal(fast.items, ref.items)
    torch.testing.assert_close(fast.scores, ref.scores, atol=1e-4, rtol=0)
    exact = score_all_items(model, ids, mask, codes).gather(1, fast.items)
    torch.testing.assert_close(fast.scores, exact, atol=1e-4, rtol=0)


def test_fewer_items_than_topk_pads_with_minus_one():
    vocab = SIDVocab(3, 4)
    model = make_model(vocab)
    codes = torch.tensor([[0, 1, 2], [0, 1, 3], [2, 0, 0]])
    trie = SIDTrie(codes, vocab)
    ids, mask = histories(vocab, B=4, L=6)
    for search in (constrained_beam_search, reference_beam_search):
        out = search(model, ids, mask, trie, beam_size=5, topk=5)
        assert (out.items[:, 3:] == -1).all() and torch.isinf(out.scores[:, 3:]).all()
        assert sorted(out.items[0, :3].tolist()) == [0, 1, 2]
        assert torch.isfinite(out.scores[:, :3]).all()


def test_search_restores_training_mode_and_builds_no_graph():
    vocab = SIDVocab(3, 4)
    model = make_model(vocab).train()
    trie = SIDTrie(random_codes(vocab, 20), vocab)
    ids, mask = histories(vocab, B=3, L=6)
    a = constrained_beam_search(model, ids, mask, trie, beam_size=6, topk=4)
    assert model.training
    b = constrained_beam_search(model, ids, mask, trie, beam_size=6, topk=4)
    assert torch.equal(a.items, b.items)  # dropout was off during the search
    assert not a.scores.requires_grad
    a.items[0, 0] = -1  # ordinary tensors, not inference-mode ones (those refuse in-place updates)


def test_recommend_chunks_and_restores_user_order():
    vocab = SIDVocab(3, 5)
    model = make_model(vocab, seed=2)
    trie = SIDTrie(random_codes(vocab, 60, seed=2), vocab)
    ids, mask = histories(vocab, B=11, L=15, seed=2)
    whole = constrained_beam_search(model, ids, mask, trie, beam_size=7, topk=4).items
    for bs in (3, 100):
        got = recommend(model, ids, mask, trie, beam_size=7, topk=4, batch_size=bs, progress=False)
        assert torch.equal(got, whole)
    # one user alone (its padding trimmed away) gets the same list as inside the batch
    one = constrained_beam_search(model, ids[4:5, : int(mask[4].sum())], mask[4:5, : int(mask[4].sum())], trie,
                                  beam_size=7, topk=4).items
    assert torch.equal(one[0], whole[4])


def test_recommend_with_concurrent_workers_equals_one_worker_and_restores_state():
    """Chunks searched by 3 threads at once: same lists, dropout off throughout, thread count and mode restored."""
    vocab = SIDVocab(3, 5)
    model = make_model(vocab, seed=4).train()
    trie = SIDTrie(random_codes(vocab, 60, seed=4), vocab)
    ids, mask = histories(vocab, B=23, L=15, seed=4)
    threads = torch.get_num_threads()
    one = recommend(model, ids, mask, trie, beam_size=7, topk=4, batch_size=2, progress=False, workers=1)
    many = recommend(model, ids, mask, trie, beam_size=7, topk=4, batch_size=2, progress=False, workers=3)
    assert torch.equal(many, one)
    assert torch.equal(one, constrained_beam_search(model, ids, mask, trie, beam_size=7, topk=4).items)
    assert model.training and torch.get_num_threads() == threads
