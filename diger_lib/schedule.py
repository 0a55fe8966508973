"""The runner's scheduler for ``--workers N``: which steps of a profile may run beside each other, and a loop that
starts them as their dependencies finish. Kept apart from the runner so it can be tested on a clock."""
from __future__ import annotations

import time
from typing import Any, Callable

from .profiles import Step


class SchedulingError(RuntimeError):
    """Steps wait for steps that never finish (a dependency graph that does not point backwards)."""


def label_of(stem: str, variant: str) -> str:
    return f"{stem}__{variant}" if variant else stem


# Steps that may run beside each other: trainings read the artifacts of earlier steps and write only their own run
# folder and checkpoint folder. Every other notebook is a barrier: it starts when everything before it has finished,
# and nothing after it starts before it has finished (notebook 03 writes the tokenizer 04 reads; 05/06 read the runs).
PARALLEL_STEMS = frozenset({"04_train_recommender"})


def dependencies(steps: list[Step]) -> list[set[int]]:
    """For each step, the indices of the earlier steps it must wait for (see PARALLEL_STEMS); a warm start
    (``init_from``) also waits for the run it starts from."""
    deps: list[set[int]] = []
    barrier: int | None = None
    since_barrier: list[int] = []
    labels = {label_of(stem, variant): i for i, (stem, variant, _) in enumerate(steps)}
    for i, (stem, _, params) in enumerate(steps):
        if stem in PARALLEL_STEMS:
            d = {barrier} if barrier is not None else set()
            src = params.get("init_from") or ""
            if src in labels and labels[src] < i:
                d.add(labels[src])
            since_barrier.append(i)
        else:
            d = set(since_barrier) | ({barrier} if barrier is not None else set())
            barrier, since_barrier = i, []
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
