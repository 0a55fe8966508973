"""runtime: device resolution, seeds and RNG states for exact resumes, the eval-mode context manager."""
import random

import numpy as np
import pytest
import torch
from torch import nn

from diger_lib.runtime import eval_mode, resolve_device, rng_state, seed_everything, set_rng_state


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda"}
    with pytest.raises(ValueError, match="not a valid"):
        resolve_device("gpu0")


def test_rng_state_round_trip_replays_every_generator():
    seed_everything(3)
    state = rng_state()
    first = (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)])
    set_rng_state(state)
    assert (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]) == first


@pytest.mark.parametrize("start_training", [True, False])
def test_eval_mode_restores_the_mode_even_on_error(start_training):
    m = nn.Sequential(nn.Dropout(0.5))
    m.train(start_training)
    with eval_mode(m):
        assert not m.training and not m[0].training
    assert m.training is start_training and m[0].training is start_training
    with pytest.raises(RuntimeError):
        with eval_mode(m):
            raise RuntimeError("boom")
    assert m.training is start_training
