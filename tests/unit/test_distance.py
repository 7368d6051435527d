import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

import aura_lab
from aura_lab import pairwise_distances
from aura_lab.distance import METRICS, op
from aura_lab.harness.core import compare
from aura_lab.harness.distance import tolerance

from .conftest import backend_params

BACKENDS = backend_params(op)


def ref(X, Y, metric):
    with np.errstate(all="ignore"):
        return cdist(np.asarray(X, np.float64), np.asarray(X if Y is None else Y, np.float64), metric)


def assert_matches(got, X, Y, metric):
    want_dtype = np.float32 if (X.dtype == np.float32 and (Y is None or Y.dtype == np.float32)) else np.float64
    assert got.dtype == want_dtype
    rtol, atol = tolerance(want_dtype)
    ea, er, ok = compare(got, ref(X, Y, metric), rtol=rtol, atol=atol)
    assert ok, f"{metric}: max abs err {ea:g}, max rel err {er:g}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_matches_scipy(backend, metric, dtype):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((97, 19)).astype(dtype)
    Y = rng.standard_normal((131, 19)).astype(dtype)
    assert_matches(pairwise_distances(X, Y, metric, backend=backend), X, Y, metric)
    assert_matches(pairwise_distances(X, None, metric, backend=backend), X, None, metric)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_near_duplicates_have_no_cancellation(backend):
    rng = np.random.default_rng(2)
    X = (rng.standard_normal((300, 64)) * 1000).astype(np.float32)
    Y = X + (rng.standard_normal(X.shape) * 1e-3).astype(np.float32)
    got = pairwise_distances(X, Y, backend=backend)
    want = cdist(X.astype(np.float64), Y.astype(np.float64))
    err = np.abs(got - want)
    assert np.all((err <= 1e-5 * want) | (err <= 1e-6)), err.max()


@pytest.mark.parametrize("backend", BACKENDS)
def test_self_distances_exactly_symmetric(backend):
    X = np.random.default_rng(3).standard_normal((77, 5)).astype(np.float32)
    for metric in METRICS:
        D = pairwise_distances(X, metric=metric, backend=backend)
        assert np.array_equal(D, D.T), metric
    assert np.all(np.diag(pairwise_distances(X, backend=backend)) == 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", METRICS)
def test_nan_inf_and_zero_vectors_propagate_as_scipy(backend, metric):
    X = np.array([[0, 0, 0], [1, np.nan, 0], [np.inf, 0, 1], [1, 1, 1], [-np.inf, 2, 0], [np.nan, np.nan, np.nan]])
    for dtype in (np.float32, np.float64):
        Xd = X.astype(dtype)
        Y = Xd[::-1].copy()
        assert_matches(pairwise_distances(Xd, Y, metric, backend=backend), Xd, Y, metric)


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_float32_values_do_not_overflow(backend):
    X = np.array([[3e19, 0.0], [0.0, 4e19]], np.float32)
    assert_matches(pairwise_distances(X, backend=backend), X, None, "euclidean")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.int64, np.uint8, np.bool_])
def test_other_dtypes_cast_to_float64(backend, dtype):
    rng = np.random.default_rng(4)
    X = (rng.standard_normal((20, 6)) * 5).astype(dtype)
    Y = (rng.standard_normal((11, 6)) * 5).astype(dtype)
    for metric in METRICS:
        assert_matches(pairwise_distances(X, Y, metric, backend=backend), X, Y, metric)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_float32_float64_gives_float64(backend):
    X = np.ones((3, 2), np.float32)
    Y = np.zeros((4, 2), np.float64)
    assert pairwise_distances(X, Y, backend=backend).dtype == np.float64


@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_and_transposed_inputs(backend):
    rng = np.random.default_rng(5)
    big = rng.standard_normal((40, 30)).astype(np.float32)
    X = big[::3, ::2]  # strided view
    Y = big[:, :15][::-1]  # negative stride
    Z = np.asfortranarray(rng.standard_normal((25, 15)).astype(np.float32))
    assert_matches(pairwise_distances(X, Y, backend=backend), X, Y, "euclidean")
    assert_matches(pairwise_distances(Z, X, "cityblock", backend=backend), Z, X, "cityblock")
    assert_matches(pairwise_distances(big.T[:, :15], backend=backend), big.T[:, :15], None, "euclidean")


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_inputs_give_empty_result(backend):
    assert pairwise_distances(np.zeros((0, 4)), np.ones((3, 4)), backend=backend).shape == (0, 3)
    assert pairwise_distances(np.zeros((2, 4), np.float32), np.ones((0, 4), np.float32), backend=backend).shape == (2, 0)
    assert pairwise_distances(np.zeros((0, 4), np.float32), backend=backend).dtype == np.float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_parameter(backend):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((10, 3)).astype(np.float32)
    out = np.full((10, 10), -1.0, np.float32)
    r = pairwise_distances(X, backend=backend, out=out)
    assert r is out
    assert_matches(out, X, None, "euclidean")
    big = np.zeros((10, 20), np.float32)  # non-contiguous view as out
    view = big[:, ::2]
    pairwise_distances(X, backend=backend, out=view)
    assert_matches(view, X, None, "euclidean")


def test_out_validation():
    X = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"out: expected shape \(4, 4\), got \(4, 5\)"):
        pairwise_distances(X, out=np.empty((4, 5), np.float32))
    with pytest.raises(ValueError, match="out: expected dtype float32, got float64"):
        pairwise_distances(X, out=np.empty((4, 4)))
    ro = np.empty((4, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out: array is read-only"):
        pairwise_distances(X, out=ro)
    with pytest.raises(TypeError, match="out: expected a numpy array or torch tensor"):
        pairwise_distances(X, out=[[0.0] * 4] * 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_overlapping_an_input_raises(backend):
    """Kernels write out in row blocks while later blocks still read X and Y: an out that
    shares memory with either is refused (audit finding 6: out=X came out off by 3e12)."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((6, 6))
    Y = rng.standard_normal((6, 6))
    for out, name in [(X, "X"), (Y, "Y"), (X.T, "X"), (Y[::-1], "Y")]:
        before = out.copy()
        with pytest.raises(ValueError, match=f"^out: overlaps {name}; pass a separate output buffer$"):
            pairwise_distances(X, Y, backend=backend, out=out)
        np.testing.assert_array_equal(out, before)  # refused before anything ran
    with pytest.raises(ValueError, match="^out: overlaps X;"):  # Y=None: X against itself
        pairwise_distances(X, backend=backend, out=X)
    for empty, other in ((np.zeros((0, 0)), None), (np.zeros((3, 0)), np.zeros((0, 0)))):
        with pytest.raises(ValueError, match="^out: overlaps X;"):  # the same array, even with nothing to write
            pairwise_distances(empty, other, backend=backend, out=empty)
    buf = np.zeros((6, 9))
    buf[:, :6] = X
    with pytest.raises(ValueError, match="^out: overlaps X;"):  # a view sharing columns 3-5 with X
        pairwise_distances(buf[:, :6], Y, backend=backend, out=buf[:, 3:])
    # interleaved with X in one buffer but sharing no element: accepted, and correct
    inter = np.zeros((6, 12))
    inter[:, ::2] = X
    assert pairwise_distances(inter[:, ::2], Y, backend=backend, out=inter[:, 1::2]) is not None
    assert_matches(inter[:, 1::2], X, Y, "euclidean")
    np.testing.assert_array_equal(inter[:, ::2], X)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_overlapping_a_torch_input_raises(backend):
    g = torch.Generator().manual_seed(3)
    X = torch.randn(5, 5, generator=g)
    Y = torch.randn(5, 5, generator=g)
    for out, name in [(X, "X"), (Y, "Y"), (Y.T, "Y"), (X.narrow(0, 0, 5).t(), "X")]:
        with pytest.raises(ValueError, match=f"^out: overlaps {name};"):
            pairwise_distances(X, Y, backend=backend, out=out)
    # mixed kinds: a numpy out viewing a tensor input's memory, a tensor out viewing a numpy input's
    with pytest.raises(ValueError, match="^out: overlaps X;"):
        pairwise_distances(X, Y, backend=backend, out=X.numpy())
    Yn = Y.numpy().copy()
    with pytest.raises(ValueError, match="^out: overlaps Y;"):
        pairwise_distances(X.numpy().copy(), Yn, backend=backend, out=torch.from_numpy(Yn))
    # a bfloat16 input (read as a float32 copy) whose storage the float32 out reuses: by address range
    raw = torch.zeros(5, 10, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="^out: overlaps X;"):
        pairwise_distances(raw[:, :5], backend=backend, out=raw.view(torch.float32))
    out = torch.empty(5, 5)
    assert pairwise_distances(X, Y, backend=backend, out=out) is out
    assert_matches(out.numpy(), X.numpy(), Y.numpy(), "euclidean")


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_in_torch_out(backend):
    X = torch.rand(12, 4)
    Y = torch.rand(7, 4, dtype=torch.float64)
    D = pairwise_distances(X, backend=backend)
    assert isinstance(D, torch.Tensor) and D.dtype == torch.float32 and D.shape == (12, 12)
    assert_matches(D.numpy(), X.numpy(), None, "euclidean")
    D2 = pairwise_distances(X, Y, "cosine", backend=backend)
    assert isinstance(D2, torch.Tensor) and D2.dtype == torch.float64
    out = torch.empty(12, 7, dtype=torch.float64)
    assert pairwise_distances(X.double(), Y, backend=backend, out=out) is out
    assert_matches(out.numpy(), X.double().numpy(), Y.numpy(), "euclidean")


def test_numpy_in_numpy_out():
    assert type(pairwise_distances(np.ones((2, 2)))) is np.ndarray


def test_bad_inputs_raise_clear_errors():
    X = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"X: expected a 2-D array \(n, d\), got 1-D"):
        pairwise_distances(np.ones(3))
    with pytest.raises(ValueError, match=r"Y: expected a 2-D array \(m, d\), got 3-D"):
        pairwise_distances(X, np.ones((2, 2, 3)))
    with pytest.raises(ValueError, match="Y: dimension mismatch: X has d=3 columns, Y has 4"):
        pairwise_distances(X, np.ones((2, 4)))
    with pytest.raises(ValueError, match="metric: unknown metric 'minkowski'; valid metrics: euclidean, sqeuclidean, cosine, cityblock, chebyshev"):
        pairwise_distances(X, metric="minkowski")
    with pytest.raises(TypeError, match="X: expected a real numeric array, got dtype complex128"):
        pairwise_distances(X + 1j)
    with pytest.raises(TypeError, match="X: expected a real numeric array, got dtype <U1"):
        pairwise_distances([["a", "b"]])
    with pytest.raises(ValueError, match="unknown backend 'fortran'"):
        pairwise_distances(X, backend="fortran")


def test_result_larger_than_memory_raises_before_allocating():
    X = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=(2_000_000, 3), strides=(0, 0))
    with pytest.raises(MemoryError, match=r"the \(2000000, 2000000\) float32 distance matrix needs 14901.16 GiB"):
        pairwise_distances(X)


def test_last_dispatch_says_which_backend_ran():
    pairwise_distances(np.ones((3, 2)), backend="numpy")
    rec = aura_lab.last_dispatch()
    assert (rec.op, rec.backend, rec.requested, rec.reason) == ("distance", "numpy", "numpy", "explicit")
    with aura_lab.use_backend("torch"):
        pairwise_distances(np.ones((3, 2)))
    assert aura_lab.last_dispatch().backend == "torch"
    assert aura_lab.last_dispatch().requested == "auto"


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def point_sets(draw):
    n = draw(st.integers(0, 300))
    m = draw(st.integers(0, 300))
    d = draw(st.integers(1, 70))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.bool_]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    X = rng.standard_normal((n, d)) * scale
    Y = rng.standard_normal((m, d)) * scale
    if n and m and draw(st.booleans()):  # near-duplicates and exact duplicates
        k = min(n, m)
        Y[:k] = X[:k] + rng.standard_normal((k, d)) * scale * draw(st.sampled_from([0.0, 1e-6, 1e-3]))
    if dtype in (np.int32,):
        X, Y = np.round(X / scale * 10), np.round(Y / scale * 10)
    elif dtype is np.bool_:
        X, Y = X > 0, Y > 0
    return X.astype(dtype), Y.astype(dtype), draw(st.sampled_from(METRICS))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=point_sets())
def test_property_against_scipy(backend, case):
    X, Y, metric = case
    assert_matches(pairwise_distances(X, Y, metric, backend=backend), X, Y, metric)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_dimensional_points(backend):
    D = pairwise_distances(np.zeros((2, 0), np.float32), np.zeros((3, 0), np.float32), backend=backend)
    assert D.shape == (2, 3) and np.all(D == 0)
    assert np.all(np.isnan(pairwise_distances(np.zeros((2, 0)), metric="cosine", backend=backend)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_denormal_inputs_are_not_flushed_on_worker_threads(backend):
    """The Mojo runtime's worker threads start with FTZ/DAZ set; the kernels clear it."""
    rng = np.random.default_rng(7)
    X = (rng.random((256, 64)) * 1e-41).astype(np.float32)  # float32 denormals, big enough to thread
    got = pairwise_distances(X, metric="cityblock", backend=backend)
    want = cdist(X.astype(np.float64), X.astype(np.float64), "cityblock")
    off = ~np.eye(256, dtype=bool)
    assert np.all(got[off] > 0)
    assert np.max(np.abs(got[off] - want[off]) / want[off]) < 1e-3
