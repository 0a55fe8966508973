"""The benchmark scripts run (on synthetic data) and their fast paths return HF's answers. Not timed."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, tmp_path: Path) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--threads", "1",
                          "--data-root", str(tmp_path), *args], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.benchmarks  # builds two paper-size models per script
@pytest.mark.parametrize("baseline", ["pointer", "appended"])  # the two frozen earlier searches
def test_bench_decode_runs_and_matches_hf_generate(tmp_path, baseline):
    out = _run("bench_decode.py", "--hf-users", "3", "--hf-batch", "3", "--users", "6", "--batch-size", "4",
               "--compare-batch-size", "6", "--baseline-rounds", "1", "--baseline", baseline, "--chunk-rounds", "1",
               tmp_path=tmp_path)
    assert "synthetic" in out
    assert "identical top-10 lists: 100.0% of users" in out  # our beam search == transformers' generate
    assert "same top-10: 100.0% of users" in out  # call size does not change results
    assert f"speed ratio baseline ({baseline}) / ours" in out  # ours == the frozen search, user for user:
    assert "lists: 100.0% of users (0 differ)" in out
    assert f"per-chunk speed ratio baseline ({baseline}) / ours" in out and "different top-10 lists: 0" in out


@pytest.mark.benchmarks
def test_bench_train_runs(tmp_path):
    out = _run("bench_train.py", "--steps", "1", "--batch-size", "16", "--micro-batch-size", "8", tmp_path=tmp_path)
    assert "micro-batches of 8 samples" in out and "speed-up ours / HF (LETTER-style)" in out


@pytest.mark.benchmarks  # launches a 1-process and a 2-process torchrun job (gloo) of the smoke-sized model
def test_bench_ddp_runs(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_ddp.py"), "--tiny", "--steps", "2",
                          "--batch-size", "16", "--micro-batch-size", "8", "--data-root", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "2 processes (1 threads each)" in out.stdout and "speed-up 2 / 1:" in out.stdout


@pytest.mark.benchmarks  # trains both sides on a few synthetic samples and decodes a few users
def test_bench_peer_tiger_runs(tmp_path):
    out = _run("bench_peer_tiger.py", "--samples", "64", "--users", "4", tmp_path=tmp_path)
    assert "synthetic" in out and "train  peer (cornac), batch 64" in out
    assert "ratio ours / peer: training" in out and "diagnosis budget, peer:" in out


@pytest.mark.benchmarks  # a small synthetic graph, 2 batches
def test_bench_lightgcn_runs(tmp_path):
    out = _run("bench_lightgcn.py", "--batches", "2", "--repeat", "1", "--synthetic-users", "3000", tmp_path=tmp_path)
    assert "synthetic" in out and "same embeddings: True" in out
    assert out.count("ratio") == 3 and "one training epoch (2 batches of 2048)" in out
