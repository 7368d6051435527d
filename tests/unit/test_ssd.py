"""Mamba-2 selective scan: every backend against the float64 sequential oracle.

Tolerances: float32 compute vs the float64 oracle at mamba_ssm's fp32 tolerance
(rtol 6e-4, atol 2e-3; tests/ops/test_selective_scan.py); float64 inputs at (1e-9, 1e-9).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aura_lab
from aura_lab import ssd
from aura_lab.harness.ssd import SEQUENTIAL_ROW, make_case
from aura_lab.ssd import selective_scan, selective_state_update, ssd_minimal_discrete, ssd_sequential_ref

from aura_lab.registry import backend_status

from .conftest import backend_params

RTOL, ATOL = 6e-4, 2e-3  # mamba_ssm fp32
RTOL64, ATOL64 = 1e-9, 1e-9

BACKENDS = backend_params(ssd.op)
STEP_BACKENDS = backend_params(ssd.step_op)


def oracle(kw):
    return ssd_sequential_ref(**kw)


def close(got, ref, rtol=RTOL, atol=ATOL):
    got = got.detach().cpu().double().numpy() if isinstance(got, torch.Tensor) else np.asarray(got, np.float64)
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)


def random_cu(rng, nseq, lo=1, hi=199):
    lens = rng.integers(lo, hi + 1, nseq)
    return np.concatenate([[0], np.cumsum(lens)])


# ----------------------------------------------------------------------- the oracles

@pytest.mark.parametrize("state_passing", ["matmul", "loop"])
@pytest.mark.parametrize("l,block", [(64, 16), (50, 16), (7, 16), (1, 4), (33, 1)])
def test_ssd_minimal_matches_sequential(l, block, state_passing):
    """The chunked four-block form equals the plain recurrence, also for l % block != 0."""
    rng = np.random.default_rng(l)
    b, h, p, n = 2, 3, 4, 5
    x = rng.standard_normal((b, l, h, p))
    dt = rng.uniform(0.01, 0.2, (b, l, h))
    A = -np.exp(rng.uniform(0, 2, h))
    B, C = rng.standard_normal((b, l, h, n)), rng.standard_normal((b, l, h, n))
    init = rng.standard_normal((b, h, p, n))
    Y, final = ssd_minimal_discrete(x * dt[..., None], A * dt, B, C, block, init, state_passing=state_passing)
    Yr, fr = ssd_sequential_ref(x, dt, A, B, C, initial_states=init)  # B, C per head = g = h groups
    np.testing.assert_allclose(Y, Yr, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(final, fr, rtol=1e-10, atol=1e-10)


def test_sequential_ref_by_hand():
    """One head, p = n = 1: h_t = e^{dt A} h_{t-1} + dt x B, y = C h + D x, times silu(z)."""
    x = np.array([1.0, 2.0, -1.0]).reshape(1, 3, 1, 1)
    dt = np.array([0.5, 0.25, 1.0]).reshape(1, 3, 1)
    A = np.array([-2.0])
    B = np.array([1.0, 3.0, 2.0]).reshape(1, 3, 1, 1)
    C = np.array([2.0, -1.0, 0.5]).reshape(1, 3, 1, 1)
    D = np.array([0.5])
    z = np.array([0.0, 1.0, -2.0]).reshape(1, 3, 1, 1)
    y, fin = ssd_sequential_ref(x, dt, A, B, C, D=D, z=z)
    hs, want = 0.0, []
    for t in range(3):
        hs = np.exp(dt.flat[t] * -2.0) * hs + dt.flat[t] * x.flat[t] * B.flat[t]
        yt = C.flat[t] * hs + 0.5 * x.flat[t]
        want.append(yt * z.flat[t] / (1 + np.exp(-z.flat[t])))
    np.testing.assert_allclose(y.ravel(), want, rtol=1e-14)
    np.testing.assert_allclose(fin.ravel(), [hs], rtol=1e-14)


# --------------------------------------------------------------- the grid, all backends

GRID = {
    "plain": dict(),
    "groups g=2": dict(h=4, g=2),
    "groups g=h": dict(h=4, g=4),
    "D (h,)": dict(D="h"),
    "D (h,p)": dict(D="hp"),
    "z gate": dict(z=True),
    "softplus+bias": dict(softplus=True, bias=True),
    "bias no softplus": dict(bias=True),
    "dt_limit": dict(softplus=True, bias=True, dt_limit=(0.01, 0.05)),
    "initial states": dict(init=True),
    "everything": dict(h=6, g=3, D="hp", z=True, softplus=True, bias=True, init=True, dt_limit=(0.002, 0.08)),
    "l=1": dict(l=1, init=True, D="h"),
    "l=3 b=3": dict(b=3, l=3, z=True),
    "l=300 not a chunk multiple": dict(l=300, g=2, D="h", init=True),
    "p=13 n=20 odd sizes": dict(p=13, n=20, z=True, D="hp", init=True),
    "n=128 p=64": dict(b=1, l=40, h=2, p=64, n=128, init=True),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(GRID))
def test_grid_against_oracle(backend, case):
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    kw = make_case(rng, **GRID[case])
    yr, fr = oracle(kw)
    y, fin = selective_scan(**kw, return_final_states=True, chunk_size=32, backend=backend)
    assert aura_lab.last_dispatch().backend == backend
    assert y.dtype == np.float32 and fin.dtype == np.float32
    assert y.shape == yr.shape and fin.shape == fr.shape
    close(y, yr)
    close(fin, fr)


@pytest.mark.parametrize("backend", BACKENDS)
def test_varlen_against_oracle(backend):
    """Three+ packed sequences of random lengths 1-199, with and without initial states."""
    rng = np.random.default_rng(7)
    for init in (False, True):
        cu = random_cu(rng, 4)
        kw = make_case(rng, b=1, l=int(cu[-1]), h=4, g=2, D="h", z=True, softplus=True, bias=True, cu=cu, init=init)
        yr, fr = oracle(kw)
        y, fin = selective_scan(**kw, return_final_states=True, chunk_size=64, backend=backend)
        assert fin.shape == (4, 4, 8, 16)
        close(y, yr)
        close(fin, fr)
        # each packed sequence equals a separate scan from its own initial state
        for i in range(4):
            a, e = cu[i], cu[i + 1]
            sub = {k: v[:, a:e] for k, v in kw.items() if k in ("x", "dt", "B", "C", "z")}
            one = dict(kw, **sub)
            one.pop("cu_seqlens")
            if init:
                one["initial_states"] = kw["initial_states"][i:i + 1]
            ys, fs = selective_scan(**one, return_final_states=True, backend=backend)
            close(ys, y[:, a:e], rtol=1e-5, atol=1e-5)
            close(fs, fin[i:i + 1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_varlen_empty_sequences(backend):
    """cu_seqlens may repeat an offset: that sequence is empty and keeps its initial state."""
    rng = np.random.default_rng(3)
    cu = np.array([0, 0, 17, 17, 40, 40])
    kw = make_case(rng, b=1, l=40, cu=cu, init=True, D="h")
    yr, fr = oracle(kw)
    y, fin = selective_scan(**kw, return_final_states=True, backend=backend)
    close(y, yr)
    close(fin, fr)
    for i in (0, 2, 4):
        np.testing.assert_array_equal(fin[i], kw["initial_states"][i])
    kw.pop("initial_states")
    _, fin = selective_scan(**kw, return_final_states=True, backend=backend)
    assert not fin[[0, 2, 4]].any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_long_sequence_l8192(backend):
    rng = np.random.default_rng(8192)
    kw = make_case(rng, b=1, l=8192, h=2, p=8, g=1, n=16, D="h", z=True, softplus=True, bias=True, init=True)
    yr, fr = oracle(kw)
    y, fin = selective_scan(**kw, return_final_states=True, backend=backend)
    close(y, yr)
    close(fin, fr)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_is_float64(backend):
    rng = np.random.default_rng(64)
    kw = make_case(rng, l=70, h=4, g=2, D="hp", z=True, softplus=True, bias=True, init=True, dtype=np.float64)
    yr, fr = oracle(kw)
    y, fin = selective_scan(**kw, return_final_states=True, chunk_size=16, backend=backend)
    assert y.dtype == np.float64 and fin.dtype == np.float64
    close(y, yr, RTOL64, ATOL64)
    close(fin, fr, RTOL64, ATOL64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_inputs(backend, dtype):
    """Half inputs compute in float32: y comes back in the input dtype, states in float32."""
    rng = np.random.default_rng(16)
    kw = make_case(rng, l=50, D="h", z=True, softplus=True, bias=True, init=True)
    tdt = getattr(torch, dtype)
    kw_t = {k: (torch.from_numpy(v).to(tdt) if isinstance(v, np.ndarray) and v.dtype == np.float32 else v) for k, v in kw.items()}
    ref_in = {k: (v.float().numpy() if isinstance(v, torch.Tensor) else v) for k, v in kw_t.items()}  # the rounded inputs
    yr, fr = oracle(ref_in)
    y, fin = selective_scan(**kw_t, return_final_states=True, backend=backend)
    assert isinstance(y, torch.Tensor) and y.dtype == tdt and fin.dtype == torch.float32
    rtol, atol = (3e-3, 5e-3) if dtype == "float16" else (3e-2, 5e-2)  # mamba_ssm's fp16 / bf16 tolerances
    close(y, yr, rtol, atol)
    close(fin, fr)  # the state never went through half precision
    if dtype == "float16":  # numpy float16 too
        y16 = selective_scan(**{k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in kw_t.items()}, backend=backend)
        assert isinstance(y16, np.ndarray) and y16.dtype == np.float16
        close(y16, yr, rtol, atol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_in_torch_out_and_non_contiguous(backend):
    rng = np.random.default_rng(11)
    kw = make_case(rng, b=2, l=33, h=4, g=2, D="hp", z=True, init=True)
    yr, fr = oracle(kw)
    # non-contiguous views with the same values: transposed copies transposed back, strided slices
    nc = {}
    for k, v in kw.items():
        if isinstance(v, np.ndarray) and v.ndim >= 2 and k != "cu_seqlens":
            nc[k] = np.ascontiguousarray(np.swapaxes(v, 0, -1)).swapaxes(0, -1)
            assert not nc[k].flags.c_contiguous
        elif isinstance(v, np.ndarray) and v.ndim == 1:
            nc[k] = np.repeat(v, 2)[::2]
            assert not nc[k].flags.c_contiguous
        else:
            nc[k] = v
    y, fin = selective_scan(**nc, return_final_states=True, backend=backend)
    close(y, yr)
    close(fin, fr)
    tk = {k: (torch.from_numpy(v).transpose(0, -1).contiguous().transpose(0, -1) if isinstance(v, np.ndarray) else v)
          for k, v in kw.items()}
    y, fin = selective_scan(**tk, return_final_states=True, backend=backend)
    assert isinstance(y, torch.Tensor) and isinstance(fin, torch.Tensor)
    close(y, yr)
    close(fin, fr)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.id in ("numpy", "torch")])
@pytest.mark.parametrize("chunk_size", [1, 5, 64, 1000])
def test_chunk_size_does_not_change_the_result(backend, chunk_size):
    rng = np.random.default_rng(5)
    kw = make_case(rng, l=77, h=4, g=2, D="h", init=True, dtype=np.float64)
    yr, fr = oracle(kw)
    y, fin = selective_scan(**kw, return_final_states=True, chunk_size=chunk_size, backend=backend)
    close(y, yr, RTOL64, ATOL64)
    close(fin, fr, RTOL64, ATOL64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_length_and_batch(backend):
    rng = np.random.default_rng(0)
    kw = make_case(rng, b=2, l=0, init=True)
    y, fin = selective_scan(**kw, return_final_states=True, backend=backend)
    assert y.shape == (2, 0, 4, 8)
    np.testing.assert_array_equal(fin, kw["initial_states"])
    kw = make_case(rng, b=0, l=5)
    y, fin = selective_scan(**kw, return_final_states=True, backend=backend)
    assert y.shape == (0, 5, 4, 8) and fin.shape == (0, 4, 8, 16)


@settings(max_examples=20, deadline=None)
@given(b=st.integers(1, 2), l=st.integers(1, 40), hg=st.integers(1, 3), g=st.integers(1, 2), p=st.integers(1, 9),
       n=st.integers(1, 33), D=st.sampled_from([None, "h", "hp"]), z=st.booleans(), softplus=st.booleans(),
       init=st.booleans(), chunk=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_property_all_backends_agree_with_oracle(b, l, hg, g, p, n, D, z, softplus, init, chunk, seed):
    rng = np.random.default_rng(seed)
    kw = make_case(rng, b=b, l=l, h=hg * g, p=p, g=g, n=n, D=D, z=z, softplus=softplus, bias=softplus, init=init)
    yr, fr = oracle(kw)
    for param in BACKENDS:
        if param.marks:
            continue
        y, fin = selective_scan(**kw, return_final_states=True, chunk_size=chunk, backend=param.values[0])
        close(y, yr)
        close(fin, fr)


# --------------------------------------------------------------------- NaN / inf policy

@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_propagates_never_crashes(backend):
    """NaN in x[t0, head 1, channel 2] makes y[t >= t0, 1, 2] and that state row NaN; NaN in
    dt[t0, head 1] makes the whole head NaN from t0 on. Everything else stays finite (the
    chunked backends may also poison the earlier tokens of t0's own chunk). inf in dt gives
    non-finite values for that head. No exception either way."""
    rng = np.random.default_rng(1)
    kw = make_case(rng, b=1, l=100, h=3, g=1, D="h")
    yr, _ = oracle(kw)
    t0 = 70  # chunk [64, 96) with chunk_size=32
    for where in ("x", "dt"):
        bad = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        if where == "x":
            bad["x"][0, t0, 1, 2] = np.nan
            hit = (1, [2])
        else:
            bad["dt"][0, t0, 1] = np.nan
            hit = (1, list(range(8)))
        y, fin = selective_scan(**bad, return_final_states=True, chunk_size=32, backend=backend)
        head, chans = hit
        assert np.isnan(y[0, t0:, head][:, chans]).all()
        assert np.isnan(fin[0, head, chans]).all()
        mask = np.ones(y.shape, bool)
        mask[0, 64:, head][:, chans] = False
        assert np.isfinite(y[mask]).all()
        close(y[0, :64], yr[0, :64])
        fmask = np.ones(fin.shape, bool)
        fmask[0, head, chans] = False
        assert np.isfinite(fin[fmask]).all()
    bad = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    bad["dt"][0, 10, 2] = np.inf
    y = selective_scan(**bad, backend=backend)
    assert not np.isfinite(y[0, 10:, 2]).all()
    assert np.isfinite(y[0, :, :2]).all()


# ------------------------------------------------------------------------- decode step

@pytest.mark.parametrize("backend", STEP_BACKENDS)
@pytest.mark.parametrize("case", ["plain", "everything"])
def test_prefill_then_decode_equals_one_scan(backend, case):
    """Prefill's final state followed by N decode steps equals one scan over everything."""
    rng = np.random.default_rng(42)
    opts = dict(h=6, g=3, D="hp", z=True, softplus=True, bias=True, init=True, dt_limit=(0.002, 0.08)) if case == "everything" else {}
    kw = make_case(rng, b=3, l=50, **opts)
    yr, fr = oracle(kw)
    pre, steps = 38, 12
    head = {k: (v[:, :pre] if k in ("x", "dt", "B", "C", "z") else v) for k, v in kw.items()}
    y0, state = selective_scan(**head, return_final_states=True, backend=backend)
    close(y0, yr[:, :pre])
    extra = {k: kw[k] for k in ("D", "dt_bias", "dt_softplus", "dt_limit") if k in kw}
    for t in range(pre, pre + steps):
        yt = selective_state_update(state, kw["x"][:, t], kw["dt"][:, t], kw["A"], kw["B"][:, t], kw["C"][:, t],
                                    z=None if "z" not in kw else kw["z"][:, t], **extra, backend=backend)
        assert aura_lab.last_dispatch().op == "ssd_step" and aura_lab.last_dispatch().backend == backend
        assert yt.shape == (3, kw["x"].shape[2], 8) and yt.dtype == np.float32
        close(yt, yr[:, t])
    close(state, fr)
    # and against the backend's own single scan
    y1, f1 = selective_scan(**kw, return_final_states=True, backend=backend)
    close(state, f1, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", STEP_BACKENDS)
def test_decode_in_place_on_torch_and_strided_state(backend):
    rng = np.random.default_rng(9)
    kw = make_case(rng, b=2, l=2, h=4, g=2, D="h", init=True, softplus=True, bias=True)
    yr, fr = oracle(kw)
    args = lambda t: (kw["x"][:, t], kw["dt"][:, t], kw["A"], kw["B"][:, t], kw["C"][:, t])  # noqa: E731
    opts = dict(D=kw["D"], dt_bias=kw["dt_bias"], dt_softplus=True, backend=backend)
    # torch float32 state, updated in place
    st_t = torch.from_numpy(kw["initial_states"].copy())
    ptr = st_t.data_ptr()
    for t in range(2):
        yt = selective_state_update(st_t, *(torch.from_numpy(np.ascontiguousarray(a)) for a in args(t)), **opts)
        assert isinstance(yt, torch.Tensor)
        close(yt, yr[:, t])
    assert st_t.data_ptr() == ptr
    close(st_t, fr)
    # a non-contiguous float64 numpy state (a transposed view of a bigger buffer)
    buf = np.zeros((16, 8, 4, 2))
    st_n = buf.transpose(3, 2, 1, 0)[:, :, :, :16]  # (2, 4, 8, 16) view
    st_n[...] = kw["initial_states"]
    for t in range(2):
        close(selective_state_update(st_n, *args(t), **opts), yr[:, t])
    close(st_n, fr)
    close(buf.transpose(3, 2, 1, 0), fr)
    # a bfloat16 torch state: computed in float32, stored back rounded to bfloat16
    st_b = torch.from_numpy(kw["initial_states"].copy()).to(torch.bfloat16)
    for t in range(2):
        close(selective_state_update(st_b, *args(t), **opts), yr[:, t], 3e-2, 5e-2)
    assert st_b.dtype == torch.bfloat16
    close(st_b, fr, 3e-2, 5e-2)


def test_decode_rejects_bad_state():
    rng = np.random.default_rng(0)
    kw = make_case(rng, b=1, l=1, init=True)
    args = (kw["x"][:, 0], kw["dt"][:, 0], kw["A"], kw["B"][:, 0], kw["C"][:, 0])
    ro = kw["initial_states"].copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="state: array is read-only"):
        selective_state_update(ro, *args)
    with pytest.raises(TypeError, match="state: expected a numpy array or torch tensor"):
        selective_state_update(kw["initial_states"].tolist(), *args)
    with pytest.raises(ValueError, match=r"state: expected a 4-D array \(b, h, p, n\)"):
        selective_state_update(kw["initial_states"][0], *args)
    with pytest.raises(ValueError, match=r"x: expected shape \(b, h, p\) = \(1, 4, 8\), got \(1, 4, 7\)"):
        selective_state_update(kw["initial_states"], args[0][..., :7], *args[1:])
    with pytest.raises(ValueError, match=r"B: expected a 3-D array \(b, g, n\)"):
        selective_state_update(kw["initial_states"], *args[:3], kw["B"], args[4])
    with pytest.raises(TypeError, match="state: expected a floating-point array"):
        selective_state_update(kw["initial_states"].astype(np.int32), *args)
    leaf = torch.zeros(1, 4, 8, 16, requires_grad=True)
    with pytest.raises(ValueError, match="state: must not require grad"):
        selective_state_update(leaf, *args)


def test_decode_dt_limit_past_float_range_names_it():
    """The decode step converts dt_limit the same way as the scan: an int past float64's range is
    a ValueError naming dt_limit (not a bare OverflowError), and state is left alone."""
    kw = make_case(np.random.default_rng(0), b=1, l=1, init=True)
    args = (kw["x"][:, 0], kw["dt"][:, 0], kw["A"], kw["B"][:, 0], kw["C"][:, 0])
    state = kw["initial_states"].copy()
    with pytest.raises(ValueError, match=r"^dt_limit: a bound is an int too large for a float"):
        selective_state_update(state, *args, dt_limit=(0.0, 10**400))
    np.testing.assert_array_equal(state, kw["initial_states"])


@pytest.mark.parametrize("backend", STEP_BACKENDS)
def test_decode_state_overlapping_an_input_raises(backend):
    """state is updated in place while the step reads its inputs: a state that shares memory
    with one of them is refused before anything is written; a disjoint one still steps."""
    rng = np.random.default_rng(5)
    kw = make_case(rng, b=1, l=1, h=4, g=2, D="h", z=True, init=True)
    args = dict(x=kw["x"][:, 0], dt=kw["dt"][:, 0], A=kw["A"], B=kw["B"][:, 0], C=kw["C"][:, 0], D=kw["D"],
                z=kw["z"][:, 0])
    state = kw["initial_states"].copy()  # (1, 4, 8, 16)
    aliases = {"x": state[..., 0], "B": state[:, :2, 0, :], "C": state[:, 2:, 0, :], "z": state[..., 3],
               "dt": state[:, :, 0, 0], "D": state[0, :, 1, 0]}
    for name, view in aliases.items():
        before = state.copy()
        with pytest.raises(ValueError, match=f"^state: overlaps {name}; pass a separate output buffer$"):
            selective_state_update(state, **dict(args, **{name: view}), backend=backend)
        np.testing.assert_array_equal(state, before)
    st_t = torch.from_numpy(state)
    with pytest.raises(ValueError, match="^state: overlaps x;"):
        selective_state_update(st_t, **dict(args, x=st_t[..., 0]), backend=backend)
    y = selective_state_update(state, **{k: v.copy() for k, v in args.items()}, backend=backend)
    assert y.shape == (1, 4, 8)


# ----------------------------------------------------------------------- autograd / torch

def test_torch_autograd_matches_finite_differences():
    rng = np.random.default_rng(4)
    kw = make_case(rng, b=1, l=9, h=2, p=3, g=1, n=4, D="h", z=True, softplus=True, bias=True, init=True, dtype=np.float64)
    names = ["x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states"]
    ts = [torch.from_numpy(kw[k]).requires_grad_() for k in names]

    def f(*args):
        y, fin = selective_scan(**dict(zip(names, args)), dt_softplus=True, return_final_states=True, chunk_size=4, backend="torch")
        return y, fin

    assert torch.autograd.gradcheck(f, ts, eps=1e-6, atol=1e-6)


def test_grad_runs_the_training_op_and_numpy_refuses():
    """With an input that requires grad the scan runs ``ssd_train`` (mojo first under auto,
    torch where mojo is unavailable: tests/test_ssd_train.py checks its gradients)."""
    rng = np.random.default_rng(2)
    kw = make_case(rng, l=10)
    x = torch.from_numpy(kw.pop("x")).requires_grad_()
    y = selective_scan(x, **kw)
    assert aura_lab.last_dispatch().op == "ssd_train" and y.requires_grad
    assert aura_lab.last_dispatch().backend == ("mojo" if backend_status("mojo").available else "torch")
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(RuntimeError, match="backend 'numpy' does not propagate gradients"):
        selective_scan(x, **kw, backend="numpy")
    with torch.no_grad():  # no grad needed: any backend
        y2 = selective_scan(x, **kw, backend="numpy")
    close(y2, y.detach().double().numpy(), 1e-5, 1e-5)


# ------------------------------------------------------------------------- bad input

def _bad(rng):
    return make_case(rng, b=1, l=10, h=4, p=8, g=2, n=16)


@pytest.mark.parametrize("change,exc,match", [
    (dict(x=np.zeros((1, 10, 4))), ValueError, r"x: expected a 4-D array \(b, l, h, p\), got 3-D"),
    (dict(dt=np.zeros((1, 10, 3), np.float32)), ValueError, r"dt: expected shape \(b, l, h\) = \(1, 10, 4\), got \(1, 10, 3\)"),
    (dict(A=np.zeros(3, np.float32)), ValueError, r"A: expected shape \(h,\) = \(4,\), got \(3,\)"),
    (dict(B=np.zeros((1, 10, 2, 15), np.float32)), ValueError, r"C: expected shape \(b, l, g, n\) = \(1, 10, 2, 15\)"),
    (dict(C=np.zeros((1, 9, 2, 16), np.float32)), ValueError, r"C: expected shape \(b, l, g, n\) = \(1, 10, 2, 16\), got \(1, 9, 2, 16\)"),
    (dict(B=np.zeros((1, 10, 3, 16), np.float32), C=np.zeros((1, 10, 3, 16), np.float32)), ValueError,
     "h = 4 must be a multiple of the number of groups g = 3"),
    (dict(D=np.zeros(8, np.float32)), ValueError, r"D: expected shape \(h,\) = \(4,\) or \(h, p\) = \(4, 8\), got \(8,\)"),
    (dict(z=np.zeros((1, 10, 4, 7), np.float32)), ValueError, r"z: expected shape \(b, l, h, p\) = \(1, 10, 4, 8\)"),
    (dict(dt_bias=np.zeros((4, 1), np.float32)), ValueError, r"dt_bias: expected shape \(h,\) = \(4,\), got \(4, 1\)"),
    (dict(initial_states=np.zeros((1, 4, 8, 15), np.float32)), ValueError,
     r"initial_states: expected shape \(b, h, p, n\) = \(1, 4, 8, 16\)"),
    (dict(A=np.array([-1, 0.5, -1, -1], np.float32)), ValueError, "A: must be <= 0"),
    (dict(dt_limit=(0.1, 0.01)), ValueError, r"dt_limit: expected 0 <= lo <= hi"),
    (dict(dt_limit=(-0.1, 1.0)), ValueError, r"dt_limit: expected 0 <= lo <= hi"),
    (dict(dt_limit=(float("nan"), 1.0)), ValueError, r"dt_limit: expected 0 <= lo <= hi"),
    (dict(dt_limit=0.1), TypeError, "dt_limit: expected a pair of floats"),
    # a float() conversion past float64's range names the argument (the int is not printed)
    (dict(dt_limit=(0, 10**400)), ValueError, r"^dt_limit: a bound is an int too large for a float"),
    (dict(dt_limit=(10**5000, 10**5000)), ValueError, r"^dt_limit: a bound is an int too large for a float"),
    (dict(chunk_size=0), ValueError, "chunk_size: expected a positive int"),
    (dict(x=np.zeros((1, 10, 4, 8), np.int64)), TypeError, "x: expected a floating-point array"),
    (dict(B=np.zeros((1, 10, 2, 16), np.complex64)), TypeError, "B: expected a real numeric array"),
    (dict(x=torch.zeros(1, 10, 4, 8, dtype=torch.int32)), TypeError, "x: expected a floating-point tensor"),
    (dict(x=np.zeros((1, 10, 4, 0), np.float32)), ValueError, "h, p, g and n must be >= 1"),
    (dict(cu_seqlens=np.array([1, 10])), ValueError, "cu_seqlens: must start at 0, got 1"),
    (dict(cu_seqlens=np.array([0, 6, 4, 10])), ValueError, "cu_seqlens: must be non-decreasing"),
    (dict(cu_seqlens=np.array([0, 4, 9])), ValueError, r"cu_seqlens: must end at the sequence length l = 10, got 9"),
    (dict(cu_seqlens=np.array([0.0, 10.0])), TypeError, "cu_seqlens: expected an integer array"),
    (dict(cu_seqlens=np.array([10])), ValueError, r"cu_seqlens: expected a 1-D array \(num_seqs \+ 1,\)"),
    (dict(cu_seqlens=np.array([0, 4, 10]), initial_states=np.zeros((1, 4, 8, 16), np.float32)), ValueError,
     r"initial_states: expected shape \(num_seqs, h, p, n\) = \(2, 4, 8, 16\)"),
])
def test_bad_input(change, exc, match):
    kw = _bad(np.random.default_rng(0))
    kw.update(change)
    with pytest.raises(exc, match=match):
        selective_scan(**kw)


def test_cu_seqlens_needs_batch_of_one():
    kw = make_case(np.random.default_rng(0), b=2, l=10)
    with pytest.raises(ValueError, match=r"cu_seqlens: packed sequences need a batch of one \(b == 1\), got b = 2"):
        selective_scan(**kw, cu_seqlens=np.array([0, 4, 10]))


def test_unknown_and_unavailable_backend(monkeypatch):
    from aura_lab import registry

    kw = make_case(np.random.default_rng(0), l=3)
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        selective_scan(**kw, backend="cuda")
    real = registry.backend_status
    monkeypatch.setattr(registry, "backend_status", lambda b: registry.BackendStatus(b, False, "", "no compiler here")
                        if b == "mojo" else real(b))
    with pytest.raises(RuntimeError, match="ssd: backend 'mojo' is unavailable: no compiler here"):
        selective_scan(**kw, backend="mojo")


# ---------------------------------------------------------------------------- harness

def test_validate_report_passes():
    from aura_lab import harness

    checks = harness.validate("ssd")
    assert checks and all(c.passed for c in checks), harness.summarize(checks)
    assert {c.backend for c in checks} >= {"numpy", "torch"}
    assert any(c.op == "ssd_step" for c in checks)


def test_bench_smoke_rows_and_ratios():
    from aura_lab.harness import ssd as hs

    res = hs.bench(lengths=[32], decode_b=2, repeats=1, with_max=False, show_progress=False, train_sizes=[(2, 40)],
                   with_lm=False)
    cases = {r["case"] for r in res.rows}
    mojo = "mojo" in hs.available_backends(hs.op, None)
    gemm = {f"chunk GEMM {m}x{k} . {k}x{n}" for m, n, k in hs.GEMM_SHAPES} if mojo else set()
    assert cases == {"prefill l=32", "decode b=2", "train b=2 l=40", *gemm}
    for r in (r for r in res.rows if r["case"] in gemm):  # no l=4096 scan row in this run: no ratio to it
        assert r["impl"] == "mojo (1 thread)" and r["GFLOP/s"] > 0 and "vs_scan_1t" not in r
    train = {r["impl"]: r for r in res.rows if r["case"] == "train b=2 l=40"}
    assert {"torch autograd (chunked SSD, Q=64)", "torch autograd (chunked SSD, Q=256)"} <= set(train)
    for r in train.values():  # every backend's gradients agree with torch autograd's
        assert r["grad_rel_err"] < 2e-3 and r["saved_MiB"] > 0 and r["tok/s"] > 0 and r["peak_MiB"] > 0, r
    if "mojo" in train:  # checkpoints every 64 tokens and the inputs: less than torch's saved tensors
        assert train["mojo"]["saved_MiB"] < train["torch autograd (chunked SSD, Q=64)"]["saved_MiB"]
        assert SEQUENTIAL_ROW in train  # the kernels before the chunked ones, for the ratio to them
    pre = {r["impl"]: r for r in res.rows if r["case"] == "prefill l=32"}
    assert {"torch loop", "torch (chunked SSD, Q=64)", "torch (chunked SSD, Q=256)", "numpy"} <= set(pre)
    for r in pre.values():
        assert r["ms"] > 0 and r["GFLOP/s"] > 0
        assert r["vs_torch_loop"] == pytest.approx(pre["torch loop"]["ms"] / r["ms"])
        best = min(pre["torch (chunked SSD, Q=64)"]["ms"], pre["torch (chunked SSD, Q=256)"]["ms"])
        assert r["vs_torch_ssd"] == pytest.approx(best / r["ms"])
    # every implementation computed the same y as the numpy reference
    diffs = res.context["max_abs_diff_vs_numpy"]["prefill l=32"]
    assert set(diffs) == set(pre) - {"numpy"} and all(d < 1e-3 for d in diffs.values()), diffs


def test_bench_gemm_rows_against_the_one_thread_scan():
    from aura_lab.harness import ssd as hs

    rows = [{"case": hs.GEMM_SCAN_CASE, "impl": hs.GEMM_SCAN_IMPL, "GFLOP/s": 20.0},
            {"case": hs.GEMM_SCAN_CASE, "impl": "mojo", "GFLOP/s": 35.0},
            {"case": "chunk GEMM 64x64 . 64x128", "impl": "mojo (1 thread)", "GFLOP/s": 50.0}]
    hs._gemm_vs_scan(rows)
    assert rows[2]["vs_scan_1t"] == 2.5 and "vs_scan_1t" not in rows[0] and "vs_scan_1t" not in rows[1]


@pytest.mark.requires("mojo")
def test_chunk_gemm_seconds_checks_its_arguments():
    from aura_lab.ssd.kernels import chunk_gemm_seconds

    assert chunk_gemm_seconds(8, 8, 8, 3) > 0 and chunk_gemm_seconds(8, 8, 8, 3, np.float64) > 0
    with pytest.raises(ValueError, match="m, n, k and reps must be positive"):
        chunk_gemm_seconds(8, 0, 8, 3)
    with pytest.raises(TypeError, match="dtype: float32 or float64"):
        chunk_gemm_seconds(8, 8, 8, 3, np.float16)
    assert chunk_gemm_seconds(8, 8, 8, 3, variant=1) > 0
    with pytest.raises(ValueError, match=r"variant: one of \(0, 1, 2, 3, 4\), got 5"):
        chunk_gemm_seconds(8, 8, 8, 3, variant=5)


def test_memory_error_before_allocating(monkeypatch):
    """A problem that cannot fit raises MemoryError up front (nothing is allocated)."""
    from aura_lab import _arrays

    kw = make_case(np.random.default_rng(0), l=64)
    monkeypatch.setattr(_arrays, "available_memory", lambda: 1000)
    for b in ("numpy", "torch", "mojo"):
        with pytest.raises(MemoryError, match=r"selective_scan of x \(2, 64, 4, 8\) needs"):
            selective_scan(**kw, backend=b)


def test_cu_seqlens_as_torch_int_tensor():
    rng = np.random.default_rng(12)
    kw = make_case(rng, b=1, l=30, cu=np.array([0, 10, 30]))
    yr, _ = oracle(kw)
    kw["cu_seqlens"] = torch.tensor([0, 10, 30], dtype=torch.int32)
    close(selective_scan(**kw), yr)
    kw["cu_seqlens"] = torch.tensor([0.0, 10.0, 30.0])
    with pytest.raises(TypeError, match="cu_seqlens: expected an integer tensor"):
        selective_scan(**kw)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_chunk_size_past_the_sequence_is_one_chunk(backend):
    """chunk_size=2**70 (no upper limit in the signature) is one chunk of the sequence, not a
    pad to 2**70 tokens: the same result as chunk_size=l."""
    kw = make_case(np.random.default_rng(11), b=2, l=37, h=2, p=3, n=4, g=1)
    whole = aura_lab.selective_scan(**kw, chunk_size=37, backend=backend)
    huge = aura_lab.selective_scan(**kw, chunk_size=2**70, backend=backend)
    np.testing.assert_array_equal(np.asarray(huge), np.asarray(whole))


def test_long_training_rows_run_torch_at_the_chunk_that_was_faster_shorter():
    from aura_lab.harness import ssd as hs

    rows = [{"case": f"train b={b} l={l}", "impl": f"torch autograd (chunked SSD, Q={q})", "b": b, "l": l, "chunk": q,
             "ms": ms} for b, l, q, ms in ((1, 1024, 64, 10.0), (1, 1024, 256, 20.0), (1, 4096, 64, 90.0),
                                           (1, 4096, 256, 50.0), (4, 4096, 64, 1.0), (4, 4096, 256, 2.0))]
    assert hs._torch_chunks(rows, 1, hs.ONE_TORCH_CHUNK_FROM) == (256,)  # the faster at l=4096, not at 1024
    assert hs._torch_chunks(rows, 4, hs.ONE_TORCH_CHUNK_FROM) == (64,)
    assert hs._torch_chunks(rows, 1, 4096) == hs.TORCH_CHUNKS  # shorter lengths: every chunk size
    assert hs._torch_chunks([], 1, hs.ONE_TORCH_CHUNK_FROM) == hs.TORCH_CHUNKS  # nothing shorter measured


def test_mamba2_block_rows_time_a_training_step_per_scan_backend(monkeypatch):
    from aura_lab.harness import ssd as hs

    monkeypatch.setattr(hs, "BLOCK", dict(d_model=32, l=40, chunk_size=16))
    monkeypatch.setattr(hs, "MODEL_STEPS", (hs._mamba2_block,))
    backends = [b for b in ("torch", "mojo") if b in hs.available_backends(hs.train_op, None)]
    rows = hs._model_rows(backends, repeats=1, seed=0)
    hs._ratios(rows)
    assert {r["case"] for r in rows} == {"Mamba-2 block step d_model=32 l=40"}
    impls = {r["impl"]: r for r in rows}
    assert set(impls) == {"Mamba-2 block step, scan on torch (chunked SSD, Q=16)"} | {
        f"Mamba-2 block step, scan on {b}" for b in backends if b != "torch"}
    torch_ms = impls["Mamba-2 block step, scan on torch (chunked SSD, Q=16)"]["ms"]
    for r in rows:
        assert r["tok/s"] == pytest.approx(40 / (r["ms"] * 1e-3)) and r["vs_torch_ssd"] == pytest.approx(torch_ms / r["ms"])


def test_calibration_times_the_training_step_on_every_training_backend():
    from aura_lab.harness import ssd as hs
    from aura_lab.ssd.train import train_op

    ops = {name: (the_op, cases) for name, the_op, cases in hs.calibration(scan_sizes=((1, 70, 2, 4, 8),),
                                                                           step_sizes=((1, 2, 4, 8),))}
    assert list(ops) == ["ssd", "ssd_train", "ssd_step"] and ops["ssd_train"][0] is train_op
    [(size, calls)] = ops["ssd_train"][1]
    assert size == {"b": 1, "l": 70, "h": 2, "p": 4, "n": 8} and set(calls) == set(train_op.backends)
    runnable = [b for b in calls if b in hs.available_backends(train_op, None)]
    ref = calls["torch"]()
    for b in runnable:  # a real training step: the same gradients as torch autograd's
        got = calls[b]()
        for k, g in ref.items():
            assert float((got[k] - g).abs().max()) <= 2e-3 * max(float(g.abs().max()), 1e-6), (b, k)
