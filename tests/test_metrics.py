"""Metrics against hand-computed cases."""
import math

import numpy as np
import pytest
import torch

from diger_lib.metrics import (
    CodeUsage,
    agreement,
    code_usage,
    collision_rate,
    last_items,
    markov1_topk,
    most_popular_topk,
    ranking_metrics,
    sid_drift,
)


# ---------------------------------------------------------------------------------------------- ranking
def test_ranking_metrics_hand_computed():
    # target ranks (0-based): user0 -> 0, user1 -> 3, user2 -> 7, user3 -> not retrieved
    top = np.array([
        [4, 1, 2, 3, 5, 6, 7, 8, 9, 10],
        [1, 2, 3, 9, 5, 6, 7, 8, 0, 10],
        [1, 2, 3, 4, 5, 6, 7, 42, 8, 9],
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    ])
    tgt = np.array([4, 9, 42, 77])
    out = ranking_metrics(top, tgt)
    assert set(out) == {"R@5", "R@10", "N@5", "N@10"}
    # recall: ranks < 5 are users 0 and 1; < 10 adds user 2
    assert out["R@5"] == pytest.approx(2 / 4)
    assert out["R@10"] == pytest.approx(3 / 4)
    # NDCG: rank 0 -> 1, rank 3 -> 1/log2(5), rank 7 -> 1/log2(9)
    assert out["N@5"] == pytest.approx((1.0 + 1 / math.log2(5)) / 4)
    assert out["N@10"] == pytest.approx((1.0 + 1 / math.log2(5) + 1 / math.log2(9)) / 4)


def test_ranking_metrics_rank_boundary_and_torch_input():
    # rank exactly k-1 counts for @k, rank k does not
    top = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]])
    tgt = torch.tensor([4, 5])  # ranks 4 and 5
    out = ranking_metrics(top, tgt, ks=(5, 6))
    assert out["R@5"] == pytest.approx(0.5)
    assert out["R@6"] == pytest.approx(1.0)
    assert out["N@5"] == pytest.approx(1 / math.log2(6) / 2)
    assert out["N@6"] == pytest.approx((1 / math.log2(6) + 1 / math.log2(7)) / 2)


def test_ranking_metrics_duplicates_use_first_hit():
    top = np.array([[3, 7, 7]])
    assert ranking_metrics(top, np.array([7]), ks=(3,))["N@3"] == pytest.approx(1 / math.log2(3))


def test_ranking_metrics_validation():
    top = np.zeros((3, 5), dtype=int)
    with pytest.raises(ValueError, match="k=10"):
        ranking_metrics(top, np.zeros(3, dtype=int))  # default ks includes 10 > 5 columns
    with pytest.raises(ValueError, match="3 users"):
        ranking_metrics(top, np.zeros(2, dtype=int), ks=(5,))
    with pytest.raises(ValueError, match="2-D"):
        ranking_metrics(np.zeros(5, dtype=int), np.zeros(5, dtype=int), ks=(1,))
    with pytest.raises(ValueError, match="integer"):
        ranking_metrics(top.astype(float), np.zeros(3, dtype=int), ks=(5,))


# ---------------------------------------------------------------------------------------------- popularity
def test_most_popular_counts_and_ties():
    seqs = [[3, 1, 3], [2, 1], [0, 3, 2]]  # counts: 0->1, 1->2, 2->2, 3->3, 4->0
    assert most_popular_topk(seqs, n_items=5, k=5).tolist() == [3, 1, 2, 0, 4]
    assert most_popular_topk(iter(seqs), n_items=5, k=2).tolist() == [3, 1]
    # all tied -> ascending ids
    assert most_popular_topk([], n_items=4, k=3).tolist() == [0, 1, 2]


def test_most_popular_validation():
    with pytest.raises(TypeError, match="values"):
        most_popular_topk({"0": [1, 2]}, n_items=3, k=1)
    with pytest.raises(ValueError, match="item id 5"):
        most_popular_topk([[1, 5]], n_items=3, k=1)
    with pytest.raises(ValueError, match="k=4"):
        most_popular_topk([[1]], n_items=3, k=4)


def test_markov1_successors_by_count_then_popularity_then_popular_fill():
    # pairs: 0->1 (x2), 0->2, 2->0, 1->3; popularity: 0:3, 1:2, 2:2, 3:1, 4:0
    seqs = [[0, 1, 3], [0, 2, 0], [0, 1]]
    top = markov1_topk(seqs, [0, 2, 4, 3, 0], n_items=5, k=4)
    assert top[0].tolist() == [1, 2, 0, 3]  # successors of 0: 1 (twice), 2 (once); then the popular 0 and 3
    assert top[1].tolist() == [0, 1, 2, 3]  # 2 -> 0 once; then the popular ones not yet listed
    assert top[2].tolist() == [0, 1, 2, 3]  # item 4 was never followed: popularity alone (the most-popular floor)
    assert top[3].tolist() == [0, 1, 2, 3]  # 3 is always last in its sequence: no successor
    assert (top[4] == top[0]).all()
    # a successor tie goes to the more popular item, then to the lower id
    tie = markov1_topk([[5, 4], [5, 3], [3, 0], [3, 1]], [5], n_items=6, k=3)
    assert tie[0].tolist() == [3, 4, 5]  # 3 and 4 each follow 5 once, 3 is more popular (3 uses vs 1); then 5 (2 uses)
    # pairs never cross sequences: [1] then [2] makes no 1 -> 2
    assert markov1_topk([[1], [2], [2]], [1], n_items=3, k=2)[0].tolist() == [2, 1]


def test_markov1_validation_and_last_items():
    with pytest.raises(TypeError, match="values"):
        markov1_topk({"0": [1, 2]}, [0], n_items=3, k=1)
    with pytest.raises(ValueError, match="last item 7"):
        markov1_topk([[1, 2]], [7], n_items=3, k=1)
    with pytest.raises(ValueError, match="k=4"):
        markov1_topk([[1]], [0], n_items=3, k=4)
    hist = np.array([[4, 5, -1], [6, -1, -1], [1, 2, 3]])
    assert last_items(hist, np.array([2, 1, 3])).tolist() == [5, 6, 3]
    with pytest.raises(ValueError, match="every user needs a history"):
        last_items(hist, np.array([2, 0, 3]))


# ---------------------------------------------------------------------------------------------- code usage
def test_code_usage_uniform_and_collapsed():
    K = 4
    codes = np.array([[0, 2], [1, 2], [2, 2], [3, 2]])  # level 0 uniform over K, level 1 one code
    u = code_usage(codes, K)
    assert isinstance(u, CodeUsage)
    np.testing.assert_array_equal(u.counts, [[1, 1, 1, 1], [0, 0, 4, 0]])
    np.testing.assert_allclose(u.coverage, [1.0, 0.25])
    np.testing.assert_allclose(u.entropy, [math.log(4), 0.0], atol=1e-12)
    np.testing.assert_allclose(u.effective, [4.0, 1.0])  # Eff(uniform) = K, Eff(one code) = 1


def test_code_usage_skewed_hand_computed():
    # level 0: q = (1/2, 1/4, 1/4, 0) -> H = 1.5 log 2, Eff = 2^1.5
    codes = torch.tensor([[0], [0], [1], [2]])
    u = code_usage(codes, K=4)
    assert u.coverage[0] == pytest.approx(0.75)
    assert u.entropy[0] == pytest.approx(1.5 * math.log(2))
    assert u.effective[0] == pytest.approx(2 ** 1.5)


def test_code_usage_out_of_range():
    with pytest.raises(ValueError, match="code 4"):
        code_usage(np.array([[0, 4]]), K=4)


# ---------------------------------------------------------------------------------------------- collisions / drift
def test_collision_rate():
    codes = np.array([[1, 2], [1, 2], [1, 3], [0, 2], [1, 2]])  # 3 distinct rows among 5
    assert collision_rate(codes) == pytest.approx(1 - 3 / 5)
    assert collision_rate(np.array([[0, 1], [1, 0]])) == 0.0


def test_sid_drift_and_agreement():
    prev = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [0, 0, 0]])
    cur = np.array([[1, 2, 3], [4, 5, 0], [9, 8, 7], [0, 0, 0]])  # items 1 and 2 changed
    assert sid_drift(prev, cur) == pytest.approx(0.5)
    assert agreement(cur, prev) == pytest.approx(0.5)
    assert sid_drift(prev, prev) == 0.0 and agreement(prev, prev) == 1.0
    # a single changed level makes the whole ID differ
    assert sid_drift(torch.tensor([[1, 2]]), torch.tensor([[1, 3]])) == 1.0
    with pytest.raises(ValueError, match="same shape"):
        sid_drift(prev, cur[:3])
