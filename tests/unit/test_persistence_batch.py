"""aura_lab.persistence.batch: many small problems in one native call give, bit for bit, the
diagrams of one ``rips_persistence`` call each (mixed sizes, dimensions, dtypes, ties,
duplicates, Z/2 and Z/3, maxdim 0-2, thresholds, distance matrices), gudhi's within 1e-6 in
bottleneck distance, in input order; an empty batch; errors naming the input; cancellation;
the progress count."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

import aura_lab
from aura_lab import _control
from aura_lab.errors import Cancelled
from aura_lab.persistence import batch as B
from tests.conftest import kernel_threads_left

pytestmark = pytest.mark.requires("mojo")


def _collection(seed: int, count: int = 40, float32: bool = False) -> list[np.ndarray]:
    """Clouds of 0-60 points in 1-4 dimensions: noisy circles, blobs, integer grids (ties) and
    clouds with duplicated points."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        n = int(rng.integers(0, 60)) if i % 7 else int(rng.integers(0, 4))
        kind = i % 4
        if kind == 0:
            t = rng.uniform(0, 2 * np.pi, n)
            x = np.stack([np.cos(t), np.sin(t)], 1) + 0.05 * rng.standard_normal((n, 2))
        elif kind == 1:
            x = rng.standard_normal((n, int(rng.integers(1, 5))))
        elif kind == 2:
            x = rng.integers(0, 4, (n, 2)).astype(np.float64)  # many equal distances
        else:
            x = rng.standard_normal((n, 3))
            x[n // 2:] = x[:n - n // 2]  # duplicates: zero-length edges
        out.append(x.astype(np.float32) if float32 and i % 2 else x)
    return out


def _assert_same(got, ref, what=""):
    assert len(got) == len(ref), what
    for k, (g, r) in enumerate(zip(got, ref)):
        assert g.dtype == r.dtype == np.float64 and g.shape == r.shape, f"{what} H{k}"
        np.testing.assert_array_equal(g, r, err_msg=f"{what} H{k}")


@pytest.mark.parametrize("maxdim", [0, 1, 2])
@pytest.mark.parametrize("coeff", [2, 3])
@pytest.mark.parametrize("threshold", [np.inf, 0.8])
def test_batch_equals_single_calls_bit_for_bit(maxdim, coeff, threshold):
    X = _collection(seed=maxdim * 10 + coeff, float32=coeff == 3)
    got = B.rips_batch(X, maxdim, threshold, coeff, is_matrix=False)
    for i, x in enumerate(X):
        _assert_same(got[i], aura_lab.rips_persistence(x, maxdim=maxdim, threshold=threshold, coeff=coeff,
                                                       backend="mojo", collapse_edges=False), f"X[{i}]")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_distance_matrices_and_thread_counts(threads):
    rng = np.random.default_rng(7)
    X = []
    for n in (5, 30, 0, 1, 2, 45):
        D = np.round(rng.uniform(0.1, 2, (n, n)), 1)  # rounded: ties
        D = np.minimum(D, D.T)
        np.fill_diagonal(D, 0)
        if n > 4:
            D[0, 1] = D[1, 0] = np.inf  # a missing edge
        X.append(D)
    for threshold in (np.inf, 1.0):
        got = B.rips_batch(X, 2, threshold, 3, is_matrix=True, threads=threads)
        for i, D in enumerate(X):
            ref = aura_lab.rips_persistence(D, maxdim=2, threshold=threshold, coeff=3, distance_matrix=True,
                                            backend="mojo", collapse_edges=False)
            _assert_same(got[i], ref, f"D[{i}] t={threshold}")


@pytest.mark.requires("gudhi")
def test_batch_agrees_with_gudhi():
    from aura_lab.diagrams import bottleneck_distance as bottleneck

    X = _collection(seed=3, count=16)
    got = B.rips_batch(X, 1, np.inf, 2, is_matrix=False)
    for i, x in enumerate(X):
        ref = aura_lab.rips_persistence(x, maxdim=1, backend="gudhi")
        for k in range(2):
            assert bottleneck(got[i][k], ref[k]) <= 1e-6, (i, k)


def test_empty_batch_and_order():
    assert B.rips_batch([], 1, np.inf, 2, is_matrix=False) == []
    pts = [np.array([[0.0], [float(k)]]) for k in range(1, 30)]  # H0 death k: the input's own
    got = B.rips_batch(pts, 1, np.inf, 2, is_matrix=False, threads=2)
    assert [g[0][0, 1] for g in got] == list(range(1, 30))


def test_a_bad_matrix_is_named_by_its_index():
    D = np.array([[0.0, 1.0], [2.0, 0.0]])
    with pytest.raises(ValueError, match=r"X\[1\]: the distance matrix is not symmetric"):
        B.rips_batch([np.zeros((2, 2)), D], 1, np.inf, 2, is_matrix=True)


def test_progress_counts_inputs_done():
    X = _collection(seed=1, count=25)
    seen = []
    with _control.watching(lambda ctl: seen.append(ctl.progress())):
        B.rips_batch(X, 1, np.inf, 2, is_matrix=False)
    stage, done, total = seen[-1]
    assert stage == B.STAGE.enum.BATCH and done == total == sum(x.shape[0] > 0 for x in X)


def test_cancel_stops_a_batched_call():
    rng = np.random.default_rng(0)
    X = [rng.standard_normal((160, 4)) for _ in range(400)]  # maxdim 2: ~10 s on one thread
    with aura_lab.cancellable() as ctl:
        threading.Timer(0.5, ctl.cancel).start()
        t0 = time.perf_counter()
        with pytest.raises(Cancelled):
            B.rips_batch(X, 2, np.inf, 2, is_matrix=False)
        assert time.perf_counter() - t0 < 3.0
    small = B.rips_batch(X[:2], 1, np.inf, 2, is_matrix=False)  # and the next call is right
    _assert_same(small[1], aura_lab.rips_persistence(X[1], maxdim=1, backend="mojo"))


def test_ctrl_c_stops_a_long_batched_call_outside_any_cancellable_block():
    rng = np.random.default_rng(1)
    X = [rng.standard_normal((160, 4)) for _ in range(400)]
    B.rips_batch(X[:1], 1, np.inf, 2, is_matrix=False)  # loaded
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        B.rips_batch(X, 2, np.inf, 2, is_matrix=False)
    timer.join()
    assert time.perf_counter() - t0 < 3.0
    assert not kernel_threads_left()  # the kernel returned
