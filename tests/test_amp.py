"""Mixed precision (``TrainConfig.amp``): bf16 autocast only on CUDA with native bf16, CPU results unchanged.

This machine has no GPU: the CUDA decision is tested with a faked device capability, and the wiring (autocast
reaches the recommender's training and beam-search forward passes, the losses stay fp32) with bf16 forced on CPU for
one tiny epoch, which the library itself refuses to do."""
import sys
from pathlib import Path

import pytest
import torch

from diger_lib import decoding, evaluation, pipeline, training
from diger_lib.config import ConfigError, TrainConfig
from diger_lib.runtime import autocast_dtype

sys.path.insert(0, str(Path(__file__).parent))
from _tiny_run import build  # noqa: E402
from test_pipeline import PINNED, TINY, notebook_params  # noqa: E402

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
FAST_UNIGREC = dict(pre_epochs=2, pre_batch_size=64)  # as tests/test_unigrec.py: two short stage-1 epochs


def _trainer(method: str, tmp_path, amp: str):
    unigrec = FAST_UNIGREC if method == "unigrec" else None
    return build(method, tmp_path / amp, epochs=1, unigrec=unigrec,
                 train={"amp": amp, "samples_per_epoch": 128, "micro_batch_size": 32})


def _autocast_seen(tr, monkeypatch) -> list:
    """Record (kind, CPU autocast dtype or None, loss dtype or None) at every training forward of ``tr``'s model
    (``forward_states``: every method's training step goes through it) and every beam-search call."""
    seen: list = []

    def now():
        return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None

    forward_states, search = tr.model.forward_states, decoding.constrained_beam_search

    def spy_forward(*args, **kw):
        out = forward_states(*args, **kw)
        seen.append(("train", now(), out.loss.dtype))
        return out

    def spy_search(*args, **kw):
        seen.append(("search", now(), None))
        return search(*args, **kw)

    monkeypatch.setattr(tr.model, "forward_states", spy_forward)
    monkeypatch.setattr(decoding, "constrained_beam_search", spy_search)
    return seen


def _epoch(tr) -> tuple[dict, dict, dict]:
    """One training epoch and a validation pass: (train record, validation metrics, parameters after the epoch)."""
    rec = tr.train_epoch(1)
    met, _, _ = tr.validate()
    return rec, met, {k: v.detach().clone() for k, v in tr.model.state_dict().items()}


@pytest.mark.parametrize("method", ["two_stage", "diger", "unigrec"])
def test_auto_on_cpu_is_bit_identical_to_off(method, tmp_path, monkeypatch):
    runs = {}
    for amp in ("off", "auto"):
        tr = _trainer(method, tmp_path, amp)
        assert tr.amp_dtype is None
        seen = _autocast_seen(tr, monkeypatch)
        runs[amp] = _epoch(tr)
        assert {kind for kind, _, _ in seen} == {"train", "search"} and all(dt is None for _, dt, _ in seen), amp
    (rec_off, met_off, par_off), (rec_auto, met_auto, par_auto) = runs["off"], runs["auto"]
    assert rec_auto == rec_off and met_auto == met_off  # exact: losses and validation metrics
    assert par_auto.keys() == par_off.keys()
    assert all(torch.equal(par_auto[k], par_off[k]) for k in par_off)


@pytest.mark.parametrize("method", ["two_stage", "diger", "unigrec"])
def test_forced_bf16_reaches_training_and_decoding_losses_stay_fp32(method, tmp_path, monkeypatch):
    """What ``auto`` does on a CUDA device with bf16, played on CPU: the test above would see this difference."""
    ref_rec, _, _ = _epoch(_trainer(method, tmp_path / "ref", "off"))
    monkeypatch.setattr(training, "autocast_dtype", lambda amp, device, log=None: torch.bfloat16)
    monkeypatch.setattr(evaluation, "autocast_dtype", lambda amp, device: torch.bfloat16)
    tr = _trainer(method, tmp_path, "off")
    assert tr.amp_dtype is torch.bfloat16
    seen = _autocast_seen(tr, monkeypatch)
    rec, met, params = _epoch(tr)
    assert {kind for kind, _, _ in seen} == {"train", "search"}
    assert all(dt is torch.bfloat16 for _, dt, _ in seen)
    assert all(loss is torch.float32 for kind, _, loss in seen if kind == "train")  # L_gen from fp32 logits
    assert all(torch.isfinite(torch.tensor(v)) for k, v in rec.items() if k.startswith("loss"))
    assert all(p.dtype == torch.float32 for p in params.values())  # weights (and checkpoints) stay fp32
    assert rec["loss_gen"] != ref_rec["loss_gen"]  # bf16 matmuls: not the fp32 numbers ...
    assert rec["loss_gen"] == pytest.approx(ref_rec["loss_gen"], rel=0.05)  # ... but close to them
    assert 0.0 <= met["N@10"] <= 1.0


def test_decision_without_cuda():
    assert autocast_dtype("auto", CPU) is None and autocast_dtype("off", CPU) is None
    with pytest.raises(ConfigError, match=r"amp='bf16' needs a CUDA device with native bf16.*device is cpu;"):
        autocast_dtype("bf16", CPU)
    with pytest.raises(ConfigError, match="amp='bf16'.*device is mps;"):
        autocast_dtype("bf16", torch.device("mps"))


def test_bf16_on_cpu_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match="amp='bf16' needs a CUDA device"):
        build("two_stage", tmp_path, train={"amp": "bf16", "device": "cpu"})
    assert not any(tmp_path.iterdir())  # stopped before anything was written


@pytest.mark.parametrize("native,emulated,expected", [(True, True, torch.bfloat16), (False, True, None),
                                                      (False, False, None)])
def test_decision_on_cuda_follows_native_bf16(native, emulated, expected, monkeypatch):
    """Ampere or later (native): bf16 under ``auto``; emulated bf16 (older GPUs) is slower than fp32: none."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: native or (including_emulation and emulated))
    assert autocast_dtype("auto", CUDA) is expected
    assert autocast_dtype("off", CUDA) is None
    assert autocast_dtype("auto", CPU) is None  # never on CPU, whatever the GPU can do
    if native:
        assert autocast_dtype("bf16", CUDA) is torch.bfloat16
    else:
        with pytest.raises(ConfigError, match="device is cuda without it"):
            autocast_dtype("bf16", CUDA)


def test_amp_is_validated_and_not_fingerprinted():
    assert TrainConfig().amp.value == "auto"
    with pytest.raises(ConfigError, match="amp='fp16' is not one of 'auto', 'off', 'bf16'"):
        TrainConfig(amp="fp16")
    given, expected = PINNED[0]
    for amp in ("auto", "off", "bf16"):  # a run continues from its checkpoints whatever the precision switch says
        spec = pipeline.RunSpec.from_params(notebook_params(**given, amp=amp))
        assert spec.train.amp.value == amp and spec.fingerprint() == expected
    assert notebook_params(**TINY)["amp"] == "auto"  # the notebook's default is the library's
