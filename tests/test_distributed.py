"""Data-parallel training (parallel.py, distributed.py): 2 gloo processes under torchrun take the same steps as one
process on the same global batches, for Two-Stage and DIGER, through a checkpoint and a resume."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diger_lib import parallel

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import _ddp_run as R  # noqa: E402


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """One torchrun job (2 gloo processes, one thread each) running both methods; the files rank 0 wrote."""
    out = tmp_path_factory.mktemp("ddp")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE.parent))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "_ddp_run.py"), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("method", R.METHODS)
def test_two_processes_take_the_one_process_steps(method, two_process_run, tmp_path):
    ref = R.run(method, tmp_path / "ref", R.EPOCHS)  # one process, uninterrupted, the same global batches
    got = torch.load(two_process_run / f"{method}.pt", weights_only=False)
    assert got["resumed_from"] == 1  # the second trainer of the job went on from the first one's checkpoint
    # the gradient the optimisers see: all-reduced sum, shards weighted by their share of the batch's label tokens
    assert ref["grads"].keys() == got["grads"].keys()
    for name, g in ref["grads"].items():
        torch.testing.assert_close(got["grads"][name], g, rtol=1e-4, atol=1e-6, msg=lambda m: f"grad {name}: {m}")
    if method == "diger":  # L_gen reached the tokenizer on both sides
        assert any(g.abs().sum() > 0 for k, g in got["grads"].items() if k.startswith("joint.rqvae.encoder"))
    # after two epochs: recommender, W_j, tokenizer, sigma, FrqUD EMA, ID tables
    assert ref["state"].keys() == got["state"].keys()
    for name, t in ref["state"].items():
        torch.testing.assert_close(got["state"][name], t, rtol=1e-5, atol=1e-5, msg=lambda m: f"{name}: {m}")
    if method == "diger":
        assert {"joint.sigma.sigma", "freq"} <= set(got["state"])
    assert len(got["history"]) == len(ref["history"])
    for a, b in zip(ref["history"], got["history"]):  # losses, sharded validation, SID dynamics
        assert a.keys() == b.keys()
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-7, nan_ok=True), (a["epoch"], k)
    assert got["test"] == pytest.approx(ref["test"], abs=1e-9)


def test_world_size_must_divide_the_batch():
    parallel.check_batch_size(64, 2)
    with pytest.raises(ValueError, match="batch_size=64 is not divisible by the 3 processes"):
        parallel.check_batch_size(64, 3)


def test_bad_launch_is_refused(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError, match="not launched by torchrun"):
        parallel.init("cpu")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29999")
    with pytest.raises(ValueError, match="backend='mpi' is not supported"):
        parallel.init("cpu", backend="mpi")
    with pytest.raises(ValueError, match="needs CUDA"):
        parallel.init("cpu", backend="nccl")


def test_rows_cover_the_batch_once():
    for n in (0, 1, 37, 64):
        for world in (1, 2, 3):
            rows = [parallel.Group(r, world, r, "gloo").rows(n) for r in range(world)]
            assert [i for s in rows for i in range(n)[s]] == list(range(n))


def test_notebook_path_launches_torchrun_and_reads_the_result_back(tmp_path, monkeypatch):
    """pipeline.train with n_procs=2 (what notebook 04 calls) gives the 1-process result and a usable trainer."""
    import numpy as np

    from diger_lib import data as D, pipeline
    from diger_lib.config import RQVAEConfig
    from diger_lib.paths import rqvae_dir
    from diger_lib.rqvae import RQVAE, add_conflict_codes

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(HERE.parent))
    params = dict(dataset="Tiny", data_root=str(HERE / "fixtures"), method="two_stage", d_model=16, n_heads=2, d_kv=8,
                  d_ff=32, n_encoder_layers=1, n_decoder_layers=1, dropout=0.0, codebook_size=8, n_levels=2, epochs=1,
                  batch_size=64, micro_batch_size=16, beam_size=10, topk=10, profile="ddp_test")
    split = D.split_leave_one_out(D.load_interactions(params["data_root"], "Tiny"), 20)
    art = tmp_path / "artifacts"
    rq = RQVAE(12, RQVAEConfig(codebook_size=8, n_levels=2, code_dim=4, hidden_dims=(16,)))
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(split.n_items, 12)).astype("float32"))
    rq.kmeans_init_(x, iters=3, seed=0)
    folder = rqvae_dir(art, "Tiny", 8, 2)
    folder.mkdir(parents=True)
    pipeline.save_tokenizer(rq, RQVAEConfig(codebook_size=8, n_levels=2, code_dim=4, hidden_dims=(16,)),
                            folder / "rqvae.pt")
    np.save(folder / "codes.npy", add_conflict_codes(rq.deterministic_codes(x), 8).numpy())
    spec = pipeline.RunSpec.from_params(params)
    lines: list[str] = []
    trainer, res = pipeline.train(spec, split, art, "two", params=params, n_procs=2, log=lines.append)
    assert lines[0].startswith("launching: torchrun") and "diger_ddp_" not in lines[0]  # no temporary path recorded
    one_trainer, one = pipeline.train(spec, split, art, "one", params=params, n_procs=1, log=lambda s: None)
    assert res.test == pytest.approx(one.test, abs=1e-9) and res.best_epoch == one.best_epoch == 1
    assert trainer.state["epoch"] == 1 and (trainer.ckpt_dir / "best.pt").is_file()
    for name, t in one_trainer.model.state_dict().items():  # the rebuilt trainer holds the job's best weights
        torch.testing.assert_close(trainer.model.state_dict()[name], t, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        pipeline.train(spec, split, art, "three", params=params, n_procs=3)
