"""Determinism (issue 15, item 5): the same input gives bit-identical output on every run, and
across kernel thread counts ($AURA_NUM_THREADS, ``thread_budget``) for distances, routing,
the scan (inference and decode step) and persistence diagrams with their representatives.
The training backward's gB and gC (sums over the heads of a group, one partial sum per
kernel thread) agree within ``GRAD_TOL`` (relative to the largest entry) across thread counts.

Inputs are the ``large`` ones of ``aura_lab.harness.load.CASES``: big enough that the kernels
really split the work (``Op.threads`` > 1), and with 3 or 7 threads into more chunks than cores.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from aura_lab.harness import load as L
from aura_lab.harness.core import threads
from aura_lab.registry import num_threads, thread_budget

from ..conftest import backend_params

#: backends whose kernels take their thread count from aura_lab (the rest: numpy, torch, gudhi)
THREADED = ("mojo", "max")
THREAD_COUNTS = (1, 2, 3, 7, 0)
BIT_IDENTICAL = ("pairwise_distances", "route", "selective_scan", "selective_state_update", "rips_persistence",
                 "rips_persistence (reps)")
#: the training gradients of B and C across thread counts: largest |difference| over largest |entry|
#: (float32; measured <= 2.3e-7, two float32 ulps)
GRAD_TOL = 1e-6
TRAIN_NAMES = ("y", "final_states", "x", "dt", "A", "B", "C", "D", "z", "dt_bias")


def _pairs(names, only=None):
    return [pytest.param(L.CASE[name], p.values[0], marks=p.marks, id=f"{name}-{p.values[0]}")
            for name in names for p in backend_params(L.CASE[name].registry_op)
            if p.values[0] not in L.CASE[name].skip and (only is None or p.values[0] in only)]


@pytest.mark.parametrize("case,backend", _pairs([*BIT_IDENTICAL, "selective_scan (train)"]))
def test_same_input_same_bits_every_run(case, backend):
    x = case.inputs(seed=3, large=True)
    first = case.run(backend, x)
    for _ in range(2):
        assert L.identical(case.run(backend, x), first)


def _at(case, backend, x, n, budget=None):
    """(the result, the kernel threads it used) with $AURA_NUM_THREADS=n and a thread budget:
    every kernel thread the setting allows (the inputs are past the one-thread size)."""
    with threads(n), (thread_budget(budget) if budget else contextlib.nullcontext()):
        used = case.registry_op.threads(case.size(x))
        assert used == num_threads()
        return case.run(backend, x), used


@pytest.mark.parametrize("case,backend", _pairs(BIT_IDENTICAL, THREADED))
def test_bit_identical_across_thread_counts(case, backend):
    x = case.inputs(seed=4, large=True)
    ref, used = _at(case, backend, x, 1)
    assert used == 1
    for n in THREAD_COUNTS[1:]:
        out, used = _at(case, backend, x, n)
        assert used > 1 or n == 0, f"AURA_NUM_THREADS={n}: the kernel would run on {used} thread(s)"
        assert L.identical(out, ref), f"AURA_NUM_THREADS={n} differs from 1 thread"
    out, used = _at(case, backend, x, 7, budget=3)
    assert used == 3 and L.identical(out, ref), "thread_budget(3) differs from 1 thread"


@pytest.mark.parametrize("case,backend", _pairs(["selective_scan (train)"], THREADED))
def test_training_across_thread_counts(case, backend):
    """Forward and every gradient but gB, gC bit-identical; gB, gC within GRAD_TOL."""
    x = case.inputs(seed=5, large=True)
    ref, _ = _at(case, backend, x, 1)
    assert len(ref) == len(TRAIN_NAMES)
    for n in THREAD_COUNTS[1:]:
        out, used = _at(case, backend, x, n)
        assert used > 1 or n == 0
        for name, a, b in zip(TRAIN_NAMES, out, ref):
            if name in ("B", "C"):
                err = float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())
                assert err <= GRAD_TOL, f"grad {name} at {n} threads: {err:.2e}"
            else:
                assert L.identical([a], [b]), f"{name} at {n} threads differs from 1 thread"
