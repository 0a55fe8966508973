"""Where and how reproducibly code runs: the device, its precision, threads, seeds, RNG states, and a module's eval
mode."""
from __future__ import annotations

import contextlib
import random
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from .config import AMP, ConfigError, _enum


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; otherwise the named device (checked to exist)."""
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(f"device={device!r} is not a valid torch device") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(dev)!r} requested but CUDA is not available")
    return dev


def autocast_dtype(amp: AMP | str, device: torch.device, log: Callable[[str], Any] | None = None) -> torch.dtype | None:
    """The dtype the recommender's forward passes autocast to on ``device`` (None: none, plain fp32).

    ``auto`` is bf16 on a CUDA device with native bf16 and nothing elsewhere, so a CPU run is bit for bit the run with
    ``off``. ``bf16`` is refused elsewhere: emulated bf16 (CPU, CUDA before Ampere) is slower than fp32 (this
    machine's CPU included) and would change CPU results. The CUDA check reads the current CUDA device, the rank's
    own under torchrun (``parallel.init`` sets it)."""
    amp = _enum(AMP, amp, "amp")
    native = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    if amp is AMP.BF16 and not native:
        raise ConfigError(f"amp='bf16' needs a CUDA device with native bf16 (Ampere or later), but the device is "
                          f"{device}{' without it' if device.type == 'cuda' else ''}; bf16 autocast is refused there "
                          f"(slower than fp32, and it would change the results): use amp='auto' or 'off'")
    dtype = torch.bfloat16 if native and amp is not AMP.OFF else None
    if dtype is not None and log is not None:
        log(f"recommender forward passes under {dtype} autocast on {device} (amp='{amp.value}')")
    return dtype


def autocast(dtype: torch.dtype | None, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device`` (from :func:`autocast_dtype`); a no-op for None. Autocast is
    per thread: enter it in the thread that runs the model."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (process-wide) and restore the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Run the block with ``torch.use_deterministic_algorithms(True, warn_only=True)`` and restore the previous setting.

    On CPU with more than one thread, the backward of RQ-VAE pretraining otherwise differs between two runs of the same
    seed (a parallel accumulation), so the tokenizer, and every semantic ID after it, changed from run to run (measured:
    2 threads, 3 epochs on Beauty, codebook sums 75.04 vs 75.69; 1 thread or this switch: identical). The cost there is
    about 3%. ``warn_only`` keeps ops without a deterministic kernel (some CUDA ones) running, with a warning."""
    before, before_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, for an exact resume."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module.eval()`` inside the block; its train/eval mode as before afterwards (also on an exception)."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
