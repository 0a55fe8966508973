"""The runner's scheduler for ``--workers N``: which steps of a profile may run beside each other, and a loop that
starts them as their dependencies finish. Kept apart from the runner so it can be tested on a clock."""
from __future__ import annotations

import time
from typing import Any, Callable

from .outputs import ENCODE, PRETRAIN, TRAIN, tokenizer_shape
from .profiles import Step


class SchedulingError(RuntimeError):
    """Steps wait for steps that never finish (a dependency graph that does not point backwards)."""


def label_of(stem: str, variant: str) -> str:
    return f"{stem}__{variant}" if variant else stem


# Trainings share the cores (``cores // N`` threads each, runner.child_threads); every other step gets them all.
PARALLEL_STEMS = frozenset({TRAIN})

# What waits for what is read off the artifacts each step writes and reads:
# - notebook 02 writes a dataset's embeddings (artifacts folder, dataset): it waits for every earlier step of that
#   dataset, which may still read the old file;
# - notebook 03 writes one tokenizer (folder, dataset, K, m) from the embeddings: it waits for the latest notebook 02
#   of its dataset and for every earlier step of its tokenizer;
# - a training (04) reads its dataset's embeddings and its tokenizer: it waits for the latest 02 and 03 before it
#   (and for the run it warm-starts from, ``init_from``); it writes only its own run and checkpoint folders;
# - every other notebook (01, 03b, 04b, 05, 06) is a barrier: it waits for every earlier step, and every later step
#   waits for it (05/06 read the runs).
# So Table 5's tokenizer for K = 128 starts while K = 256 trainings still run, and its training beside them.


def _keys(params: dict[str, Any]) -> tuple[tuple, tuple]:
    """(dataset key, tokenizer key) of a step's artifacts."""
    ds = (str(params.get("artifacts_dir", "")), str(params.get("dataset", "")))
    return ds, ds + tokenizer_shape(params)


def dependencies(steps: list[Step], resolve: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None
                 ) -> list[set[int]]:
    """For each step, the indices of the earlier steps it must wait for (the rules above). ``resolve(stem, params)``
    fills in the notebook's defaults (runner.resolved_parameters) so that an unset K or m reads as the notebook's."""
    deps: list[set[int]] = []
    barrier: int | None = None
    seen_ds: dict[tuple, list[int]] = {}  # every step since the last barrier, by dataset key and by tokenizer key
    seen_tok: dict[tuple, list[int]] = {}
    last_encode: dict[tuple, int] = {}
    last_pretrain: dict[tuple, int] = {}
    labels = {label_of(stem, variant): i for i, (stem, variant, _) in enumerate(steps)}
    for i, (stem, _, params) in enumerate(steps):
        full = resolve(stem, params) if resolve else params
        ds, tok = _keys(full)
        d = {barrier} if barrier is not None else set()
        if stem == ENCODE:
            d |= set(seen_ds.get(ds, []))
            last_encode[ds] = i
        elif stem == PRETRAIN:
            d |= set(seen_tok.get(tok, [])) | ({last_encode[ds]} if ds in last_encode else set())
            last_pretrain[tok] = i
        elif stem == TRAIN:
            d |= {j for j in (last_encode.get(ds), last_pretrain.get(tok)) if j is not None}
            src = params.get("init_from") or ""
            if src in labels and labels[src] < i:
                d.add(labels[src])
        else:  # a barrier
            d = set(range(i))
            barrier, seen_ds, seen_tok, last_encode, last_pretrain = i, {}, {}, {}, {}
            deps.append(d)
            continue
        seen_ds.setdefault(ds, []).append(i)
        seen_tok.setdefault(tok, []).append(i)
        deps.append(d)
    return deps


def run_parallel(labels: list[str], deps: list[set[int]], start: Callable[[int], Any], workers: int,
                 poll: Callable[[Any], int | None], wait: Callable[[], None] = lambda: time.sleep(2.0),
                 log: Callable[[str], None] = print) -> int:
    """Start step i with ``start(i)`` (returns a handle) once its dependencies have finished, at most ``workers`` at a
    time, in list order; ``poll(handle)`` is None while it runs, else its exit code. After a failure nothing new
    starts; the running steps finish. Returns 0 if every step succeeded, else 1."""
    done: set[int] = set()
    running: dict[int, Any] = {}
    pending = list(range(len(labels)))
    failed = False
    while pending or running:
        for i, h in list(running.items()):
            code = poll(h)
            if code is not None:
                del running[i]
                if code == 0:
                    done.add(i)
                else:
                    failed = True
                    log(f"error: {labels[i]} failed (exit {code}); no new step starts")
        if failed:
            pending = []
        for i in list(pending):
            if len(running) >= workers:
                break
            if deps[i] <= done:
                running[i] = start(i)
                pending.remove(i)
        if pending and not running:  # cannot happen with dependencies() (each points backwards): fail loudly
            raise SchedulingError(f"steps {[labels[i] for i in pending]} wait for steps that never finish")
        if running:
            wait()
    return 1 if failed else 0
