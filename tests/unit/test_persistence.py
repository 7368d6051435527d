"""rips_persistence: the mojo engine against gudhi and ripser, known barcodes, bad input."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aura_lab
from aura_lab import _arrays
from aura_lab import persistence as P
from aura_lab.persistence import problem, reference
from aura_lab.errors import BackendUnavailable, UnsupportedProblem
from aura_lab.diagrams import betti_curves, bottleneck_distance, bottleneck_distances
from aura_lab.harness.persistence import DATA_DIR, STANDARD_SETS, TOL_GUDHI, TOL_RIPSER, load_standard_set, ripser_dgms

from .conftest import backend_params

PH = backend_params(P.op)
MOJO_AVAILABLE = P.op.status("mojo")[0]
needs_mojo = pytest.mark.requires("mojo")


def counts(dgms):
    return [len(d) for d in dgms]


def assert_same(got, ref, tol=TOL_GUDHI):
    assert counts(got) == counts(ref)
    for k, (a, b) in enumerate(zip(got, ref)):
        assert bottleneck_distance(a, b) <= tol, f"H{k}"


# ------------------------------------------------------------------------------ known answers

@pytest.mark.parametrize("backend", PH)
def test_empty_single_and_pair(backend):
    d = aura_lab.rips_persistence(np.zeros((0, 3)), maxdim=2, backend=backend)
    assert len(d) == 3 and all(x.shape == (0, 2) and x.dtype == np.float64 for x in d)
    d = aura_lab.rips_persistence(np.array([[1.0, 2.0]]), maxdim=1, backend=backend)
    np.testing.assert_array_equal(d[0], [[0.0, np.inf]])
    assert d[1].shape == (0, 2)
    d = aura_lab.rips_persistence(np.array([[0.0, 0.0], [3.0, 4.0]]), maxdim=1, backend=backend)
    np.testing.assert_array_equal(d[0], [[0.0, 5.0], [0.0, np.inf]])
    assert d[1].shape == (0, 2)


@pytest.mark.parametrize("backend", PH)
def test_all_points_equal(backend):
    d = aura_lab.rips_persistence(np.full((9, 4), 2.5), maxdim=2, backend=backend)
    np.testing.assert_array_equal(d[0], [[0.0, np.inf]])
    assert d[1].shape == (0, 2) and d[2].shape == (0, 2)


@pytest.mark.parametrize("backend", PH)
def test_collinear_points(backend):
    t = np.array([0.0, 1.0, 1.5, 4.0, 4.0, 7.0, 7.25])  # a duplicate and unequal gaps
    X = t[:, None] * np.array([[3.0, 4.0]]) / 5.0  # on a line through the origin, |direction| = 1
    d = aura_lab.rips_persistence(X, maxdim=2, backend=backend)
    gaps = np.sort(np.diff(t)[np.diff(t) > 0])
    np.testing.assert_allclose(d[0][:-1, 1], gaps, rtol=1e-12)
    assert np.all(d[0][:, 0] == 0) and d[0][-1, 1] == np.inf
    assert d[1].shape == (0, 2) and d[2].shape == (0, 2)


@pytest.mark.parametrize("backend", PH)
def test_square_and_circle(backend):
    sq = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    d = aura_lab.rips_persistence(sq, maxdim=1, backend=backend)
    np.testing.assert_allclose(d[1], [[1.0, math.sqrt(2.0)]], rtol=1e-12)
    np.testing.assert_allclose(d[0], [[0, 1], [0, 1], [0, 1], [0, np.inf]])
    ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    circle = np.stack([np.cos(ang), np.sin(ang)], 1)
    d = aura_lab.rips_persistence(circle, maxdim=2, backend=backend)
    assert len(d[1]) == 1 and 0 < d[1][0, 0] < 0.6 and 1 < d[1][0, 1] < 2  # gudhi's own circle test
    assert len(d[0]) == 24 and np.isinf(d[0][:, 1]).sum() == 1


def _rp2_subdivision() -> np.ndarray:
    """Distance matrix (1 = edge, 2 = no edge) of the barycentric subdivision of the 6-vertex
    real projective plane: a flag complex, so the Rips complex at 1 is RP^2 itself."""
    tri = [(0, 1, 2), (0, 2, 3), (0, 3, 4), (0, 4, 5), (0, 5, 1), (1, 2, 4), (2, 3, 5), (3, 4, 1), (4, 5, 2), (5, 1, 3)]
    faces = sorted({frozenset(c) for t in tri for k in (1, 2, 3) for c in itertools.combinations(t, k)}, key=sorted)
    edges_per_edge = {}
    for t in tri:
        for e in itertools.combinations(t, 2):
            edges_per_edge[frozenset(e)] = edges_per_edge.get(frozenset(e), 0) + 1
    assert len(faces) == 31 and set(edges_per_edge.values()) == {2}  # a closed surface, Euler char 1
    D = np.full((31, 31), 2.0)
    for i, a in enumerate(faces):
        for j, b in enumerate(faces):
            if i == j:
                D[i, j] = 0.0
            elif a < b or b < a:
                D[i, j] = 1.0
    return D


@pytest.mark.parametrize("backend", PH)
def test_coefficient_field_matters(backend):
    """RP^2 has H1 = H2 = Z/2 over Z/2 and no homology over Z/3: the field is really used."""
    D = _rp2_subdivision()
    z2 = aura_lab.rips_persistence(D, distance_matrix=True, maxdim=2, coeff=2, backend=backend)
    z3 = aura_lab.rips_persistence(D, distance_matrix=True, maxdim=2, coeff=3, backend=backend)
    np.testing.assert_array_equal(z2[1], [[1.0, 2.0]])
    np.testing.assert_array_equal(z2[2], [[1.0, 2.0]])
    assert z3[1].shape == (0, 2) and z3[2].shape == (0, 2)
    for d in (z2, z3):
        np.testing.assert_array_equal(d[0], [[0.0, 1.0]] * 30 + [[0.0, np.inf]])


@pytest.mark.parametrize("backend", PH)
def test_threshold(backend):
    X = np.array([[0.0], [1.0], [5.0], [5.5]])
    d = aura_lab.rips_persistence(X, maxdim=1, threshold=2.0, backend=backend)
    np.testing.assert_array_equal(d[0], [[0, 0.5], [0, 1.0], [0, np.inf], [0, np.inf]])
    d0 = aura_lab.rips_persistence(X, maxdim=1, threshold=0.0, backend=backend)
    np.testing.assert_array_equal(d0[0], [[0, np.inf]] * 4)
    full = aura_lab.rips_persistence(X, maxdim=1, backend=backend)
    big = aura_lab.rips_persistence(X, maxdim=1, threshold=1e9, backend=backend)  # capped at the enclosing radius
    np.testing.assert_array_equal(full[0], big[0])
    np.testing.assert_array_equal(full[0], [[0, 0.5], [0, 1.0], [0, 4.0], [0, np.inf]])
    assert P.enclosing_radius(problem._distance_matrix(X, "euclidean", False)) == 4.5


@pytest.mark.parametrize("backend", PH)
def test_bars_sorted_and_float64(backend):
    X = np.random.default_rng(3).standard_normal((30, 3)).astype(np.float32)
    for d in aura_lab.rips_persistence(X, maxdim=2, backend=backend):
        assert d.dtype == np.float64 and d.flags.c_contiguous
        assert np.all(d[:, 1] > d[:, 0])
        assert np.array_equal(d, d[np.lexsort((d[:, 1], d[:, 0]))])


# ------------------------------------------------------------------------------ mojo vs gudhi

clouds = st.tuples(
    st.integers(0, 60), st.integers(1, 5), st.integers(0, 2), st.sampled_from(["normal", "grid", "dups"]),
    st.sampled_from([np.float32, np.float64]), st.sampled_from([2, 2, 3]), st.sampled_from([np.inf, np.inf, 1.0]),
    st.integers(0, 2**31 - 1),
)


@needs_mojo
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clouds)
def test_mojo_matches_gudhi_random_clouds(case):
    n, d, maxdim, kind, dtype, coeff, thr, seed = case
    rng = np.random.default_rng(seed)
    if kind == "grid":  # integer coordinates: exact ties and duplicated points
        X = rng.integers(0, 3, (n, d)).astype(dtype)
    else:
        X = rng.standard_normal((n, d)).astype(dtype)
        if kind == "dups" and n >= 3:
            X[: n // 3] = X[n - n // 3 :]
    if maxdim == 2 and n > 40 and kind == "normal" and d >= 4:
        n = 40  # keep gudhi quick
        X = X[:n]
    ref = aura_lab.rips_persistence(X, maxdim=maxdim, coeff=coeff, threshold=thr, backend="gudhi")
    got = aura_lab.rips_persistence(X, maxdim=maxdim, coeff=coeff, threshold=thr, backend="mojo")
    assert_same(got, ref)


@needs_mojo
@pytest.mark.parametrize("n, d, maxdim, coeff, kind", [
    (150, 2, 1, 2, "normal"), (120, 3, 2, 2, "normal"), (100, 4, 2, 3, "normal"),
    (90, 3, 2, 2, "grid"), (110, 2, 2, 3, "dups"), (70, 5, 2, 2, "dups"),
])
def test_parallel_engine_matches_gudhi_and_serial(monkeypatch, n, d, maxdim, coeff, kind):
    """Clouds of n >= 64 run the engine on both cores (block-parallel reduction): the result is
    bit-identical to one thread and matches gudhi."""
    rng = np.random.default_rng(n * 7 + d)
    X = rng.integers(0, 4, (n, d)).astype(np.float64) if kind == "grid" else rng.standard_normal((n, d))
    if kind == "dups":
        X[: n // 3] = X[n - n // 3 :]
    monkeypatch.setenv("AURA_NUM_THREADS", "2")
    assert P.op.threads({"n": n, "maxdim": maxdim}) == 2  # the thread policy hands this size both cores
    two = aura_lab.rips_persistence(X, maxdim=maxdim, coeff=coeff, backend="mojo")
    monkeypatch.setenv("AURA_NUM_THREADS", "1")
    one = aura_lab.rips_persistence(X, maxdim=maxdim, coeff=coeff, backend="mojo")
    for a, b in zip(two, one):
        np.testing.assert_array_equal(a, b)
    assert_same(two, aura_lab.rips_persistence(X, maxdim=maxdim, coeff=coeff, backend="gudhi"))


@needs_mojo
def test_distance_matrix_input_matches_point_cloud():
    X = np.random.default_rng(1).standard_normal((50, 3))
    D = aura_lab.pairwise_distances(X)
    a = aura_lab.rips_persistence(X, maxdim=2, backend="mojo")
    b = aura_lab.rips_persistence(D, maxdim=2, distance_matrix=True, backend="mojo")
    c = aura_lab.rips_persistence(D, maxdim=2, metric="precomputed", backend="mojo")
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)


@pytest.mark.parametrize("backend", PH)
def test_lower_triangle_and_infinite_entries(backend):
    X = np.random.default_rng(2).standard_normal((25, 2))
    D = aura_lab.pairwise_distances(X)
    Dp = D * (1 + 5e-4 * np.triu(np.ones_like(D), 1))  # upper triangle off by 0.05 %: tolerated, ignored
    a = aura_lab.rips_persistence(D, distance_matrix=True, backend=backend)
    b = aura_lab.rips_persistence(Dp, distance_matrix=True, backend=backend)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    Dinf = np.array([[0, 1, np.inf], [1, 0, np.inf], [np.inf, np.inf, 0]])  # inf: no edge
    d = aura_lab.rips_persistence(Dinf, distance_matrix=True, backend=backend)
    np.testing.assert_array_equal(d[0], [[0, 1], [0, np.inf], [0, np.inf]])


@pytest.mark.requires("mojo", "torch")
def test_torch_input():
    import torch
    X = np.random.default_rng(4).standard_normal((30, 3)).astype(np.float32)
    a = aura_lab.rips_persistence(torch.from_numpy(X), maxdim=1, backend="mojo")
    b = aura_lab.rips_persistence(X, maxdim=1, backend="mojo")
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------------------ standard sets

@needs_mojo
@pytest.mark.parametrize("name", ["sphere3", "random16", "o3_1024", "dragon", "fract-r"])
def test_standard_set_bar_counts(name):
    X, kw, published = load_standard_set(name)
    got = aura_lab.rips_persistence(X, backend="mojo", **kw)
    assert counts(got) == published
    st = P.last_stats()
    assert st["columns"][0] == 0 and sum(st["apparent"]) > 0  # apparent pairs were found and skipped


#: ripser.py's diagrams of the standard sets, made by tools/ripser_reference.py (running ripser.py
#: on them took half a minute or more of every test run, for the same result; the file records its version)
RIPSER_REFERENCE = Path(__file__).resolve().parents[1] / "data" / "ripser_standard_sets.json"


@functools.cache
def _ripser_reference() -> dict:
    return json.loads(RIPSER_REFERENCE.read_text())["sets"]


def stored_ripser_dgms(name: str) -> list[np.ndarray]:
    """ripser.py's stored ``dgms`` of a standard set, after checking that the set's data file
    and arguments are the ones it was computed from."""
    fname, _, kw, _ = STANDARD_SETS[name]
    entry = _ripser_reference()[name]
    sha = hashlib.sha256((DATA_DIR / fname).read_bytes()).hexdigest()
    assert (entry["sha256"], entry["kw"]) == (sha, kw), f"{name} changed since {RIPSER_REFERENCE.name}: run tools/ripser_reference.py"
    read = np.float32 if entry["digits"] == "float32" else np.float64  # float32 digits: through float32
    return [np.array([[b, np.inf if d is None else d] for b, d in dgm], dtype=read).astype(entry["dtype"]).reshape(-1, 2)
            for dgm in entry["dgms"]]


@needs_mojo
@pytest.mark.parametrize("name", ["sphere3", "random16", "o3_1024", "dragon", "fract-r"])
def test_standard_set_matches_ripser(name):
    X, kw, _ = load_standard_set(name)
    got = aura_lab.rips_persistence(X, backend="mojo", **kw)
    ref = [d[d[:, 1] > d[:, 0]] for d in stored_ripser_dgms(name)]
    assert counts(got) == counts(ref)
    assert max(bottleneck_distances(got, ref)) <= TOL_RIPSER


@pytest.mark.requires("ripser")
def test_stored_ripser_reference_is_ripsers_output():
    """The stored reference of test_standard_set_matches_ripser is what ripser.py returns here,
    on the set that ripser.py runs fastest (o3_1024, with a threshold: ~2 s): the same bars,
    within the tolerance the stored diagrams are used at (ripser.py's distances come from the
    BLAS, whose rounding differs between CPUs, so the file is not compared bit for bit)."""
    X, kw, _ = load_standard_set("o3_1024")
    live = [d[d[:, 1] > d[:, 0]] for d in ripser_dgms(X, kw)]
    stored = [d[d[:, 1] > d[:, 0]] for d in stored_ripser_dgms("o3_1024")]
    assert counts(live) == counts(stored)
    assert max(bottleneck_distances(live, stored)) <= TOL_RIPSER


def test_standard_sets_are_bundled():
    for name in STANDARD_SETS:
        X, kw, published = load_standard_set(name)
        assert X.dtype == np.float32 and len(published) == kw["maxdim"] + 1
        assert X.shape[0] == published[0]  # every standard cloud is connected: one H0 bar per point


# ------------------------------------------------------------------------------ dispatch

@needs_mojo
def test_dispatch_records():
    X = np.random.default_rng(5).standard_normal((20, 2))
    aura_lab.rips_persistence(X, backend="gudhi")
    rec = aura_lab.last_dispatch()
    assert (rec.op, rec.backend, rec.requested) == ("persistence", "gudhi", "gudhi")
    aura_lab.rips_persistence(X)
    rec = aura_lab.last_dispatch()
    assert (rec.op, rec.backend, rec.requested) == ("persistence", "mojo", "auto")
    with aura_lab.use_backend("torch"):  # a choice this op lacks: auto's own rule applies
        aura_lab.rips_persistence(X)
    assert aura_lab.last_dispatch().backend == "mojo"


def test_auto_falls_back_to_gudhi(monkeypatch):
    real = P.op.check

    def broken(backend, device="cpu"):
        if backend == "mojo":
            raise BackendUnavailable("persistence: backend 'mojo' is unavailable: compiler missing")
        return real(backend, device)

    monkeypatch.setattr(P.op, "check", broken)
    X = np.random.default_rng(6).standard_normal((15, 2))
    with pytest.warns(aura_lab.AuraFallbackWarning, match="compiler missing"):
        d = aura_lab.rips_persistence(X, maxdim=1)
    rec = aura_lab.last_dispatch()
    assert rec.backend == "gudhi" and rec.requested == "auto" and "compiler missing" in rec.fallbacks[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = aura_lab.rips_persistence(X, maxdim=1, backend="gudhi")
    assert_same(d, ref, tol=0.0)
    with pytest.raises(RuntimeError, match="compiler missing"):
        aura_lab.rips_persistence(X, backend="mojo")


def test_backend_without_rips_raises():
    with pytest.raises(RuntimeError, match="not implemented"):
        aura_lab.rips_persistence(np.zeros((3, 2)), backend="numpy")


# ------------------------------------------------------------------------------ bad input

GOOD = np.random.default_rng(7).standard_normal((6, 2))
DM = aura_lab.pairwise_distances(GOOD).astype(np.float64)


def _with(D, i, j, v, sym=True):
    D = D.copy()
    D[i, j] = v
    if sym:
        D[j, i] = v
    return D


@pytest.mark.parametrize("X, kw, exc, match", [
    (DM[:, :5], {"distance_matrix": True}, ValueError, "must be square"),
    (_with(DM, 1, 2, DM[1, 2] * 1.1, sym=False), {"distance_matrix": True}, ValueError, "not symmetric"),
    (_with(DM, 1, 2, -0.5), {"distance_matrix": True}, ValueError, "negative"),
    (_with(DM, 1, 2, np.nan), {"distance_matrix": True}, ValueError, "NaN"),
    (_with(DM, 3, 3, np.inf), {"distance_matrix": True}, ValueError, "birth time .* infinite"),
    (GOOD, {"maxdim": -1}, ValueError, "maxdim: must be >= 0"),
    (GOOD, {"maxdim": 1.0}, TypeError, "maxdim: expected an integer"),
    (GOOD, {"maxdim": 2**31}, ValueError, "maxdim: at most 1024"),
    (GOOD, {"maxdim": True}, TypeError, "maxdim: expected an integer"),
    (GOOD, {"coeff": 4}, ValueError, "coeff: must be a prime"),
    (GOOD, {"coeff": 1}, ValueError, "coeff: must be a prime"),
    (GOOD, {"coeff": 46349}, ValueError, "coeff: must be a prime"),
    (GOOD, {"threshold": -0.1}, ValueError, "threshold: must be >= 0"),
    (GOOD, {"threshold": np.nan}, ValueError, "threshold: must be >= 0"),
    (GOOD, {"threshold": "big"}, TypeError, "threshold: expected a number"),
    (_with(GOOD, 2, 1, np.inf, sym=False), {}, ValueError, "NaN or infinite coordinates"),
    (np.zeros(5), {}, ValueError, "expected a 2-D point cloud"),
    (np.array([["a", "b"]]), {}, TypeError, "real numeric"),
    (GOOD, {"metric": "hamming"}, ValueError, "metric: unknown metric"),
    (DM, {"distance_matrix": True, "metric": "cosine"}, ValueError, "no effect on a distance matrix"),
    (GOOD, {"backend": "cuda"}, ValueError, "unknown backend .cuda."),
    (np.zeros((2, 3)), {"metric": "cosine"}, ValueError, "undefined"),
])
@pytest.mark.parametrize("backend", PH)
def test_bad_input(X, kw, exc, match, backend):
    kw = {"backend": backend, **kw}
    with pytest.raises(exc, match=match):
        aura_lab.rips_persistence(X, **kw)


@pytest.mark.parametrize("backend", PH)
def test_dimensions_above_n_minus_2_are_empty_and_not_computed(backend):
    # maxdim=2**31 used to grow without bound on gudhi (and auto); a large maxdim on a small
    # cloud is answered from the n - 2 bound, with one diagram per dimension asked for
    X = np.random.default_rng(4).random((6, 3))
    full = aura_lab.rips_persistence(X, maxdim=4, backend=backend)
    many = aura_lab.rips_persistence(X, maxdim=1024, backend=backend)
    assert len(many) == 1025 and all(d.shape == (0, 2) for d in many[5:])
    for a, b in zip(full, many):
        np.testing.assert_array_equal(a, b)


@needs_mojo
def test_index_range_error():
    with pytest.raises(ValueError, match="index range"):
        aura_lab.rips_persistence(np.zeros((20000, 2)), maxdim=6, backend="mojo")


def test_auto_past_the_engine_limits_falls_back_to_gudhi():
    """C(2000, 8) > 2^62: the dense engine cannot index the 7-simplices over 2000 vertices, so
    auto runs gudhi (with a threshold below every distance, which gudhi finishes at once). The
    point cloud itself runs on mojo: its radius graph has no edge, and the sparse engine
    counts only the vertices that have one."""
    X = np.random.default_rng(9).uniform(0, 1000, (2000, 2))
    from scipy.spatial.distance import cdist

    D = cdist(X, X)
    with pytest.raises(UnsupportedProblem, match="maxdim: n=2000 points with maxdim=6 give simplex indices"):
        aura_lab.rips_persistence(D, maxdim=6, threshold=1e-6, distance_matrix=True, backend="mojo")
    with pytest.warns(aura_lab.AuraFallbackWarning, match="auto skipped mojo .*index range"):
        d = aura_lab.rips_persistence(D, maxdim=6, threshold=1e-6, distance_matrix=True)
    rec = aura_lab.last_dispatch()
    assert (rec.backend, rec.requested) == ("gudhi", "auto") and "index range" in rec.fallbacks[0]
    assert len(d) == 7 and d[0].shape == (2000, 2) and all(len(x) == 0 for x in d[1:])
    cloud = aura_lab.rips_persistence(X, maxdim=6, threshold=1e-6)
    assert aura_lab.last_dispatch().backend == "mojo"
    assert all(np.array_equal(a, b) for a, b in zip(cloud, d))


def test_simplex_count_is_exact_then_capped():
    """The work estimate of auto and the thread policy: exact while a float holds it, capped
    at MAX_WORK past that (it used to raise OverflowError from float() of a ~1e330 int)."""
    for n, maxdim in [(0, 0), (1, 0), (2, 0), (7, 10), (50, 3), (1000, 1)]:
        want = sum(math.comb(n, k) for k in range(1, min(maxdim + 2, n) + 1))
        assert problem._simplex_count({"n": n, "maxdim": maxdim}) == float(want)
    from aura_lab.registry import MAX_WORK

    for n, maxdim in [(1100, 600), (1030, 1024), (10**6, 1024)]:
        size = {"n": n, "maxdim": maxdim}
        assert problem._simplex_count(size) == P.op.work(size) == MAX_WORK
        assert P.op.is_long(size) and P.op.threads(size) == aura_lab.registry.num_threads()
    assert aura_lab.explain("persistence", n=1100, maxdim=600).startswith("persistence: auto picks ")


@pytest.mark.parametrize("progress", [False, True, "auto"])
def test_huge_maxdim_runs_on_a_backend_that_can(progress):
    """maxdim=600 on 1100 points (audit finding 7: OverflowError naming nothing): the dense
    engine refuses it naming maxdim, auto falls back to gudhi (a threshold below every
    distance keeps it quick). The point cloud runs on mojo's sparse engine, which has no
    vertex with an edge to index."""
    from scipy.spatial.distance import cdist

    X = np.random.default_rng(12).uniform(0, 1000, (1100, 2))
    D = cdist(X, X)
    if MOJO_AVAILABLE:
        with pytest.raises(UnsupportedProblem, match="^maxdim: the mojo engine computes up to dimension 60, got maxdim=600"):
            aura_lab.rips_persistence(D, maxdim=600, threshold=1e-6, distance_matrix=True, backend="mojo",
                                      progress=progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", aura_lab.AuraFallbackWarning)
        d = aura_lab.rips_persistence(D, maxdim=600, threshold=1e-6, distance_matrix=True, progress=progress)
    assert aura_lab.last_dispatch().backend == "gudhi"
    assert len(d) == 601 and d[0].shape == (1100, 2) and all(len(x) == 0 for x in d[1:])
    if MOJO_AVAILABLE:
        cloud = aura_lab.rips_persistence(X, maxdim=600, threshold=1e-6, progress=progress)
        assert aura_lab.last_dispatch().backend == "mojo" and all(np.array_equal(a, b) for a, b in zip(cloud, d))


@needs_mojo
def test_memory_budget_error(monkeypatch):
    """A complex beyond the budget raises MemoryError from inside the engine, not an OOM kill."""
    monkeypatch.setattr(_arrays, "available_memory", lambda: 8 << 20)  # budget floor: 64 MiB
    X = np.random.default_rng(8).standard_normal((120, 12)).astype(np.float32)  # ~8e6 3-simplices to keep
    with pytest.raises(MemoryError, match="memory budget .* building dimension 3 asked for"):
        # without edge collapse ("auto" collapses at maxdim 4, and the collapsed complex fits)
        aura_lab.rips_persistence(X, maxdim=4, backend="mojo", collapse_edges=False)
    monkeypatch.undo()
    d = aura_lab.rips_persistence(X[:20], maxdim=2, backend="mojo")  # the engine still works after
    assert len(d[0]) == 20


@pytest.mark.requires("gudhi")
def test_gudhi_memory_guard(monkeypatch):
    D = aura_lab.pairwise_distances(np.random.default_rng(9).standard_normal((60, 8)))
    monkeypatch.setattr(reference, "GUDHI_BYTES_PER_SIMPLEX", 1 << 40)  # as if each simplex took a TiB
    with pytest.raises(MemoryError, match=r"rips_persistence \(gudhi\): expanding to dimension 2"):
        aura_lab.rips_persistence(D, distance_matrix=True, maxdim=3, backend="gudhi")


# ------------------------------------------------------------------------------ diagram tools

def test_bottleneck_and_betti():
    a = np.array([[0.0, 1.0], [0.0, np.inf]])
    b = np.array([[0.0, 1.5], [0.0, np.inf]])
    assert bottleneck_distance(a, b) == pytest.approx(0.5)
    assert bottleneck_distance(np.array([[0.0, 1.0]]), np.empty((0, 2))) == pytest.approx(0.5)  # to the diagonal
    assert bottleneck_distance(a, a[:1]) == np.inf  # different numbers of essential bars
    assert bottleneck_distances([a, a[:1]], [b, a[:1]]) == pytest.approx([0.5, 0.0])
    curves = betti_curves([a, np.array([[0.5, 2.0]])], [0.0, 0.5, 1.0, 1.99, 3.0])
    np.testing.assert_array_equal(curves, [[2, 2, 1, 1, 1], [0, 1, 1, 1, 0]])
    with pytest.raises(ValueError, match="every death must be >= its birth"):
        bottleneck_distance(np.array([[2.0, 1.0]]), a)
    with pytest.raises(ValueError, match=r"expected a \(k, 2\) array"):
        betti_curves([np.zeros((3, 3))], [0.0])
    with pytest.raises(ValueError, match="3 diagrams, but dgms_a has 2"):
        bottleneck_distances([a, a], [a, a, a])


def test_plots():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dgms = [np.array([[0.0, 0.5], [0.0, 1.0], [0.0, np.inf]]), np.array([[0.7, 1.2]])]
    ax = aura_lab.plot_barcode(dgms)
    assert len(ax.lines) == 4 + 1  # four bars and one arrow for the infinite bar
    ax = aura_lab.plot_diagram(dgms)
    assert len(ax.collections) == 2
    ys = ax.collections[0].get_offsets()[:, 1]
    assert ys.max() > 1.2 and np.isfinite(ys).all()  # inf drawn above the finite deaths
    ax = aura_lab.plot_betti_curves(dgms, ts=np.linspace(0, 2, 9))
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), betti_curves(dgms, np.linspace(0, 2, 9))[1])
    plt.close("all")


def test_a_small_call_reads_the_available_memory_once(monkeypatch):
    from aura_lab import _arrays

    X = np.random.default_rng(0).standard_normal((70, 3))
    ref = aura_lab.rips_persistence(X)
    reads = []
    real = _arrays._read_available_memory
    monkeypatch.setattr(_arrays, "_read_available_memory", lambda: reads.append(1) or real())
    out = aura_lab.rips_persistence(X)
    assert len(reads) == 1  # the distance matrix's check and the engine's budget share one reading
    assert all(np.array_equal(a, b) for a, b in zip(out, ref))
    with _arrays.one_memory_reading():
        _arrays.available_memory()
        _arrays.available_memory()
    assert len(reads) == 2
    _arrays.available_memory()
    assert len(reads) == 3  # outside a block: read each time
