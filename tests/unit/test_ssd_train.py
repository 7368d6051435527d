"""Training through the scan (aura_lab/ssd/train.py): the Mojo and MAX backwards.

* float64: ``torch.autograd.gradcheck`` on the backend itself (its analytical gradients
  against finite differences of its own forward), over hypothesis-drawn shapes and options.
* float32: every gradient within 2e-3 of a float64 reference (torch autograd through the
  float64 sequential recurrence, written here), relative to that gradient's largest entry or
  to 1e-3 of the case's largest gradient entry, whichever is larger (``_assert_grads_close``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aura_lab
from aura_lab.ssd import selective_scan, selective_state_update
from aura_lab.ssd import train as train_mod
from aura_lab.ssd.problem import validate_scan
from aura_lab.ssd.train import train_op

from .conftest import backend_params

NAMES = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states")
KERNEL_BACKENDS = [p for p in backend_params(train_op) if p.values[0] in ("mojo", "max")]
REL32 = 2e-3


def _seq_ref(x, dt, A, B, C, D=None, z=None, dt_bias=None, initial_states=None, *, softplus=False, limit=(0.0, float("inf")),
             cu=None):
    """The plain recurrence in torch (float64 autograd flows through it): an independent
    reference for the gradients, one token at a time."""
    b, l, h, p = x.shape
    g, n = B.shape[-2:]
    v = dt if dt_bias is None else dt + dt_bias
    if softplus:
        v = torch.nn.functional.softplus(v, threshold=20.0)
    v = v.clamp(*limit)
    Bh, Ch = B.repeat_interleave(h // g, dim=2), C.repeat_interleave(h // g, dim=2)
    runs = [(slice(None), 0, l, slice(None))] if cu is None else [
        (slice(0, 1), int(cu[i]), int(cu[i + 1]), slice(i, i + 1)) for i in range(len(cu) - 1)]
    ys, finals = [None] * l, []
    for bsl, t0, t1, ssl in runs:
        s = x.new_zeros((x[bsl].shape[0], h, p, n)) if initial_states is None else initial_states[ssl]
        for t in range(t0, t1):
            a = torch.exp((v[bsl, t] * A).clamp(max=0.0))
            s = a[..., None, None] * s + (v[bsl, t, :, None] * x[bsl, t])[..., None] * Bh[bsl, t, :, None, :]
            ys[t] = (s @ Ch[bsl, t, :, :, None])[..., 0] if cu is None else (s @ Ch[bsl, t, :, :, None])[..., 0]
        finals.append(s)
    y = torch.stack(ys, dim=1) if l else x.new_zeros((b, 0, h, p))
    if D is not None:
        y = y + (D[:, None] if D.dim() == 1 else D) * x
    if z is not None:
        y = y * torch.nn.functional.silu(z)
    return y, torch.cat(finals, dim=0)


def _assert_grads_close(names, got, ref, tol, what):
    """Each gradient's largest error relative to its largest entry, but never below 1e-3 of the
    largest entry of any gradient of the case: a gradient that cancels to (nearly) 0 is only as
    exact as the terms it sums (dA = 0 exactly on one kernel, -3e-19 on the other, with dt's
    gradient at 2.3), and those are of the size of the case's other gradients."""
    floor = 1e-3 * max(float(r.abs().max()) for r in ref if r is not None and r.numel())
    for name, a, b in zip(names, got, ref):
        scale = max(float(b.abs().max()), floor, 1e-30)
        err = float((a.double() - b.double()).abs().max()) / scale
        assert err <= tol, f"{a.dtype} d{name}: {what} {err:.2e} of its largest entry (tolerance {tol})"


def _inputs(seed, b, l, h, p, g, n, *, D=None, z=False, bias=False, init=False, nseq=None, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=1.0: (torch.randn(*s, generator=gen, dtype=torch.float64) * scale).to(dtype)  # noqa: E731
    kw = dict(x=r(b, l, h, p), dt=r(b, l, h, scale=0.5) - 1.0, A=-torch.rand(h, generator=gen, dtype=torch.float64).to(dtype) - 0.05,
              B=r(b, l, g, n), C=r(b, l, g, n))
    kw["D"] = r(h) if D == "h" else (r(h, p) if D == "hp" else None)
    kw["z"] = r(b, l, h, p) if z else None
    kw["dt_bias"] = r(h, scale=0.3) if bias else None
    kw["initial_states"] = r(nseq or b, h, p, n) if init else None
    return kw


def _call(kw, backend, *, softplus, limit, cu, final):
    return selective_scan(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], D=kw["D"], z=kw["z"], dt_bias=kw["dt_bias"],
                          dt_softplus=softplus, dt_limit=limit, initial_states=kw["initial_states"], cu_seqlens=cu,
                          return_final_states=final, backend=backend)


@st.composite
def problems(draw):
    hg = draw(st.sampled_from([1, 2, 4]))
    g = draw(st.sampled_from([1, 2]))
    h = min(8, hg * g)
    g = g if h % g == 0 else 1
    b = draw(st.integers(1, 3))
    l = draw(st.integers(1, 300))
    cu = None
    if draw(st.booleans()) and b == 1:
        cuts = sorted(draw(st.lists(st.integers(0, l), min_size=1, max_size=3)))
        cu = torch.tensor([0, *cuts, l])
    opts = dict(p=draw(st.integers(1, 16)), n=draw(st.integers(1, 32)), D=draw(st.sampled_from([None, "h", "hp"])),
                z=draw(st.booleans()), bias=draw(st.booleans()), init=draw(st.booleans()))
    softplus = draw(st.booleans())
    limit = draw(st.sampled_from([(0.0, float("inf")), (0.05, 0.6), (0.0, 0.3)]))
    final = draw(st.booleans())
    return dict(b=b, l=l, h=h, g=g, cu=cu, softplus=softplus, limit=limit, final=final, seed=draw(st.integers(0, 2**16)),
                **opts)


def _leaves(kw, which=None):
    return {k: v.requires_grad_() for k, v in kw.items() if v is not None and (which is None or k in which)}


@pytest.mark.requires_mojo
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_gradcheck_float64_on_mojo(pr):
    """The mojo backend's own float64 gradients pass gradcheck against finite differences of
    its forward, over the whole hypothesis range and every option. ``fast_mode`` compares
    random projections v^T J u (Jacobians of up to 10^5 inputs would need 2 forwards each)
    at tolerances tight enough to catch any one gradient 0.1 % off (checked by mutation);
    the slow mode's whole Jacobians are compared on small shapes below."""
    cu = pr["cu"]
    kw = _inputs(pr["seed"], pr["b"], pr["l"], pr["h"], pr["p"], pr["g"], pr["n"], D=pr["D"], z=pr["z"],
                 bias=pr["bias"], init=pr["init"], nseq=None if cu is None else len(cu) - 1)
    leaves = _leaves(kw)
    names = list(leaves)

    def f(*args):
        full = dict(kw, **dict(zip(names, args)))
        return _call(full, "mojo", softplus=pr["softplus"], limit=pr["limit"], cu=cu, final=True)

    assert torch.autograd.gradcheck(f, tuple(leaves.values()), eps=1e-6, atol=1e-10, rtol=1e-6, fast_mode=True)


@pytest.mark.requires_mojo
@pytest.mark.parametrize("case", [
    dict(b=2, l=70, h=2, g=1, p=3, n=5, D="hp", z=True, bias=True, init=True, softplus=True, limit=(0.0, 0.3), cu=None),
    dict(b=1, l=33, h=4, g=2, p=2, n=3, D="h", z=False, bias=True, init=True, softplus=False, limit=(0.02, 0.5),
         cu=torch.tensor([0, 10, 10, 33])),
], ids=["batch-gate-clamp", "varlen-groups"])
def test_gradcheck_float64_on_mojo_whole_jacobians(case):
    cu = case["cu"]
    kw = _inputs(13, case["b"], case["l"], case["h"], case["p"], case["g"], case["n"], D=case["D"], z=case["z"],
                 bias=case["bias"], init=case["init"], nseq=None if cu is None else len(cu) - 1)
    leaves = _leaves(kw)
    names = list(leaves)

    def f(*args):
        return _call(dict(kw, **dict(zip(names, args))), "mojo", softplus=case["softplus"], limit=case["limit"], cu=cu,
                     final=True)

    assert torch.autograd.gradcheck(f, tuple(leaves.values()), eps=1e-6, atol=1e-7, rtol=1e-5)


def _grads(kw, out_fn, seed=1):
    y, fin = out_fn(kw)
    gen = torch.Generator().manual_seed(seed)
    wy = torch.randn(y.shape, generator=gen, dtype=torch.float64)
    wf = torch.randn(fin.shape, generator=gen, dtype=torch.float64)
    leaves = [v for v in kw.values() if v is not None and v.requires_grad]
    loss = (y.double() * wy).sum() + (fin.double() * wf).sum()
    return y, fin, torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(pr=problems())
def test_float32_gradients_match_a_float64_reference(backend, pr):
    """Hypothesis shapes (b 1-3, l 1-300, h 1-8, p 1-16, g | h, n 1-32) and every option:
    float32 gradients within 2e-3 of the float64 sequential reference, float64 gradients
    within 1e-9 (relative as in ``_assert_grads_close``)."""
    if backend == "max":
        pr = dict(pr, l=min(pr["l"], 64), cu=None)  # every MAX call is a graph execution: keep it small
    nseq = None if pr["cu"] is None else len(pr["cu"]) - 1
    args = (pr["seed"], pr["b"], pr["l"], pr["h"], pr["p"], pr["g"], pr["n"])
    opts = dict(D=pr["D"], z=pr["z"], bias=pr["bias"], init=pr["init"], nseq=nseq)
    ref_kw = _inputs(*args, **opts)
    _leaves(ref_kw)
    call = dict(softplus=pr["softplus"], limit=pr["limit"], cu=pr["cu"])
    y_ref, fin_ref, g_ref = _grads(ref_kw, lambda kw: _seq_ref(**kw, **call))
    for dtype, tol in ((torch.float32, REL32), (torch.float64, 1e-9)):
        kw = _inputs(*args, **opts, dtype=dtype)
        _leaves(kw)
        y, fin, g = _grads(kw, lambda kw: _call(kw, backend, **call, final=True))
        assert aura_lab.last_dispatch().op == "ssd_train" and aura_lab.last_dispatch().backend == backend
        assert y.dtype == dtype and all(gi.dtype == dtype for gi in g)
        names = [k for k, v in kw.items() if v is not None]
        _assert_grads_close(names, g, g_ref, tol, "against the float64 reference")


@pytest.mark.requires_mojo
def test_no_gradient_crosses_a_sequence_boundary_and_empty_sequences_pass_the_state_through():
    cu = torch.tensor([0, 7, 7, 19])
    kw = _inputs(5, 1, 19, 2, 3, 1, 8, init=True, nseq=3)
    _leaves(kw)
    y, fin = _call(kw, "mojo", softplus=False, limit=(0.0, float("inf")), cu=cu, final=True)
    (gx,) = torch.autograd.grad(y[:, 7:].sum(), [kw["x"]], retain_graph=True)
    assert float(gx[:, :7].abs().max()) == 0.0 and float(gx[:, 7:].abs().max()) > 0
    (gi,) = torch.autograd.grad(fin[1].sum(), [kw["initial_states"]])
    assert torch.equal(gi[1], torch.ones_like(gi[1])) and float(gi[[0, 2]].abs().max()) == 0.0  # empty: fin = init


@pytest.mark.requires_mojo
def test_the_clamp_passes_no_gradient_where_it_is_active():
    kw = _inputs(6, 1, 40, 3, 4, 1, 8)
    kw["dt"] = torch.linspace(-3, 3, 120, dtype=torch.float64).reshape(1, 40, 3)
    _leaves(kw, {"dt"})
    lo, hi = 0.2, 1.5
    y = _call(kw, "mojo", softplus=True, limit=(lo, hi), cu=None, final=False)
    (gdt,) = torch.autograd.grad(y.sum(), [kw["dt"]])
    sp = torch.nn.functional.softplus(kw["dt"].detach())
    active = (sp < lo) | (sp > hi)
    assert active.any() and (~active).any()
    assert float(gdt[active].abs().max()) == 0.0 and float(gdt[~active].abs().min()) > 0


@pytest.mark.requires_mojo
def test_auto_trains_on_mojo_and_gradients_equal_torchs():
    kw = _inputs(7, 2, 50, 4, 8, 2, 16, D="h", z=True, bias=True, init=True, dtype=torch.float32)
    _leaves(kw)
    call = dict(softplus=True, limit=(0.0, float("inf")), cu=None)
    _, _, g_auto = _grads(kw, lambda kw: _call(kw, "auto", **call, final=True))
    assert aura_lab.last_dispatch().backend == "mojo"
    _, _, g_torch = _grads(kw, lambda kw: _call(kw, "torch", **call, final=True))
    for a, t in zip(g_auto, g_torch):
        assert float((a - t).abs().max()) <= REL32 * float(t.abs().max())


def test_backends_without_gradients_refuse_and_the_decode_step_stays_inference_only():
    kw = _inputs(8, 1, 10, 2, 4, 1, 8, dtype=torch.float32)
    _leaves(kw, {"x"})
    with pytest.raises(RuntimeError, match="backend 'numpy' does not propagate gradients.*use one of 'torch', 'mojo', 'max'"):
        _call(kw, "numpy", softplus=False, limit=(0.0, float("inf")), cu=None, final=False)
    state = torch.zeros(1, 2, 4, 8)
    for b in ("mojo", "max"):
        with pytest.raises(RuntimeError, match=f"selective_state_update .inference only on mojo and max.: backend '{b}'"):
            selective_state_update(state, kw["x"][:, 0], kw["dt"][:, 0], kw["A"], kw["B"][:, 0], kw["C"][:, 0], backend=b)


@pytest.mark.requires_mojo
def test_bad_input_is_rejected_before_any_graph_is_built():
    kw = _inputs(9, 1, 10, 2, 4, 1, 8, dtype=torch.float32)
    _leaves(kw, {"x"})
    with pytest.raises(ValueError, match=r"A: must be <= 0"):
        selective_scan(kw["x"], kw["dt"], -kw["A"], kw["B"], kw["C"], backend="mojo")
    with pytest.raises(ValueError, match=r"dt: expected shape"):
        selective_scan(kw["x"], kw["dt"][:, :5], kw["A"], kw["B"], kw["C"], backend="mojo")


@pytest.mark.requires_mojo
def test_a_gradient_of_the_wrong_shape_or_dtype_gets_a_clear_error():
    kw = _inputs(10, 1, 12, 2, 4, 1, 8, dtype=torch.float32)
    _leaves(kw, {"x"})
    y = _call(kw, "mojo", softplus=False, limit=(0.0, float("inf")), cu=None, final=False)
    fn = y.grad_fn
    with pytest.raises(ValueError, match=r"the gradient of y has shape \(1, 12, 2\), expected \(1, 12, 2, 4\)"):
        fn.apply(torch.ones(1, 12, 2), None)
    with pytest.raises(TypeError, match="the gradient of y must be floating point, got torch.int64"):
        fn.apply(torch.ones(1, 12, 2, 4, dtype=torch.int64), None)


@pytest.mark.requires_mojo
def test_nan_propagates_through_the_backward_without_a_crash():
    kw = _inputs(11, 1, 20, 2, 4, 1, 8, dtype=torch.float32)
    kw["x"][0, 5, 1, 2] = float("nan")
    _leaves(kw)
    y = _call(kw, "mojo", softplus=False, limit=(0.0, float("inf")), cu=None, final=False)
    g = torch.autograd.grad(y.sum(), [kw["x"], kw["B"]])
    assert torch.isnan(g[1]).any()  # B of head 1's tokens meets the NaN state
    assert torch.isfinite(g[0][0, :, 0]).all()  # head 0 never sees it


@pytest.mark.requires_mojo
def test_memory_saved_for_the_backward_is_checkpoints_not_every_state():
    """What the training forward keeps grows as l / CHECKPOINT states per sequence."""
    kw = _inputs(12, 1, 1000, 2, 8, 1, 16, dtype=torch.float32)
    _leaves(kw, {"x"})
    y = _call(kw, "mojo", softplus=False, limit=(0.0, float("inf")), cu=None, final=False)
    saved = y.grad_fn.saved
    assert saved.ckpt.shape == (-(-1000 // train_mod.CHECKPOINT), 2, 8, 16)


def _mojo_grads(kw, call, kernel, seed=1):
    """(gradients, the backward kernel that ran) of the mojo backend with ``kernel``."""
    kw = {k: (None if v is None else v.detach().clone()) for k, v in kw.items()}
    _leaves(kw)
    kept = {}

    def out(kw):
        y, fin = _call(kw, "mojo", **call, final=True)
        kept["saved"] = y.grad_fn.saved
        return y, fin

    with train_mod.grad_kernel_set(kernel):
        _, _, g = _grads(kw, out, seed)
    return g, kept["saved"].grad_kernel


def _compare_kernels(pr, dtype, tol):
    nseq = None if pr["cu"] is None else len(pr["cu"]) - 1
    kw = _inputs(pr["seed"], pr["b"], pr["l"], pr["h"], pr["p"], pr["g"], pr["n"], D=pr["D"], z=pr["z"],
                 bias=pr["bias"], init=pr["init"], nseq=nseq, dtype=dtype)
    call = dict(softplus=pr["softplus"], limit=pr["limit"], cu=pr["cu"])
    g_seq, ran_seq = _mojo_grads(kw, call, "sequential")
    g_chk, ran_chk = _mojo_grads(kw, call, "chunked")
    assert (ran_seq, ran_chk) == ("sequential", "chunked")
    names = [k for k, v in kw.items() if v is not None]
    _assert_grads_close(names, g_chk, g_seq, tol, "chunked vs sequential")


@pytest.mark.requires_mojo
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_the_chunked_backward_equals_the_sequential_one(pr):
    """The chunked backward (the default) against the sequential adjoint on hypothesis shapes
    and every option: float64 within 1e-10, float32 within 2e-4 of each gradient's largest
    entry (the float32 kernels round differently: products per chunk vs per token)."""
    _compare_kernels(pr, torch.float64, 1e-10)
    _compare_kernels(pr, torch.float32, 2e-4)


def _training_forwards(pr, dtype):
    """{kernel: {y, fin, ckpt, ypre}} of the mojo training forward with each forward kernel."""
    cu = pr["cu"]
    kw = _inputs(pr["seed"], pr["b"], pr["l"], pr["h"], pr["p"], pr["g"], pr["n"], D=pr["D"], z=pr["z"],
                 bias=pr["bias"], init=pr["init"], nseq=None if cu is None else len(cu) - 1, dtype=dtype)
    prob = validate_scan(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], kw["D"], kw["z"], kw["dt_bias"], pr["softplus"],
                         pr["limit"], kw["initial_states"], cu, 256)
    outs = {}
    for kernel in train_mod.FORWARD_CALLS:
        with train_mod.forward_kernel_set(kernel):
            y, fin, saved = train_mod._mojo_forward(prob)
        outs[kernel] = dict(y=y, fin=fin, ckpt=saved.ckpt, ypre=saved.ypre)
    assert train_mod.forward_kernel == "chunked"  # the default, back after each block
    return outs


@pytest.mark.requires_mojo
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pr=problems())
def test_the_chunked_training_forward_equals_the_sequential_one(pr):
    """y, the final states, the checkpoints and ypre (with z) of the chunked training forward
    (the default) against the sequential kernel's on hypothesis shapes and every option:
    float64 within 1e-10, float32 within 1e-4 of each output's largest entry (products per
    chunk round differently from the recurrence per token)."""
    assert train_mod.forward_kernel == "chunked"
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        outs = _training_forwards(pr, dtype)
        for name, ref in outs["sequential"].items():
            got = outs["chunked"][name]
            assert (got is None) == (ref is None) == (name == "ypre" and not pr["z"])
            if ref is not None:
                assert got.shape == ref.shape and got.dtype == ref.dtype
                err = float(np.abs(got - ref).max(initial=0.0)) / max(float(np.abs(ref).max(initial=0.0)), 1e-30)
                assert err <= tol, f"{dtype} {name}: chunked vs sequential {err:.2e} of its largest entry (tolerance {tol})"


@pytest.mark.requires_mojo
@pytest.mark.parametrize("l", [1, 63, 64, 65, 128, 130, 200])
def test_the_chunked_backward_at_lengths_around_the_chunk(l):
    """Lengths one below, at and one above multiples of the chunk (CHECKPOINT = 64), with
    every option on: against the sequential backward (float64) and the float64 oracle
    (float32 within REL32)."""
    assert train_mod.CHECKPOINT == 64
    pr = dict(seed=l, b=2, l=l, h=4, p=12, g=2, n=24, D="hp", z=True, bias=True, init=True, softplus=True,
              limit=(0.0, float("inf")), cu=None)
    _compare_kernels(pr, torch.float64, 1e-10)
    args = (pr["seed"], pr["b"], l, pr["h"], pr["p"], pr["g"], pr["n"])
    opts = dict(D="hp", z=True, bias=True, init=True)
    ref_kw = _inputs(*args, **opts)
    _leaves(ref_kw)
    _, _, g_ref = _grads(ref_kw, lambda kw: _seq_ref(**kw, softplus=True))
    g32, ran = _mojo_grads(_inputs(*args, **opts, dtype=torch.float32), dict(softplus=True, limit=(0.0, float("inf")),
                                                                             cu=None), "chunked")
    assert ran == "chunked"
    _assert_grads_close(NAMES, g32, g_ref, REL32, "against the float64 reference")


@pytest.mark.requires_mojo
def test_the_default_backward_is_the_chunked_kernel_last_dispatch_names_it_and_an_unknown_kernel_is_refused():
    kw = _inputs(14, 1, 70, 2, 4, 1, 8, dtype=torch.float32)
    _leaves(kw, {"x"})
    y = _call(kw, "mojo", softplus=False, limit=(0.0, float("inf")), cu=None, final=False)
    y.sum().backward()
    assert y.grad_fn.saved.grad_kernel == "chunked"
    rec = aura_lab.last_dispatch()
    assert (rec.op, rec.backend) == ("ssd_train", "mojo")
    assert rec.reason == "backward: chunked (kernels/aura_kernels/ssd/chunked.mojo)"
    with train_mod.grad_kernel_set("sequential"):
        y = _call(kw, "mojo", softplus=False, limit=(0.0, float("inf")), cu=None, final=False)
        y.sum().backward()
    assert aura_lab.last_dispatch().reason == "backward: sequential (kernels/aura_kernels/ssd/grad.mojo)"
    with pytest.raises(ValueError, match=r"grad_kernel_set: expected one of \('chunked', 'sequential'\), got 'fast'"):
        with train_mod.grad_kernel_set("fast"):
            pass


@pytest.mark.requires("max")
def test_the_max_training_forward_saves_the_checkpoints_mojos_does():
    """max's forward op keeps what the chunked backward reads (no forward rerun in its backward)."""
    from aura_lab.harness.ssd import make_case

    kw = make_case(np.random.default_rng(5), b=1, l=200, h=4, p=8, g=2, n=16, D="h", z=True, softplus=True, bias=True,
                   init=True, cu=[0, 70, 70, 200])
    prob = validate_scan(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], kw["D"], kw["z"], kw["dt_bias"], True,
                         (0.0, float("inf")), kw["initial_states"], kw["cu_seqlens"], 64)
    with train_mod.forward_kernel_set("chunked"):
        y_m, fin_m, saved_m = train_mod._mojo_forward(prob)
    y_x, fin_x, saved_x = train_mod._max_forward(prob)
    assert saved_x.ckpt.shape == saved_m.ckpt.shape == (5, 4, 8, 16)  # ceil(70 / 64) + 0 + ceil(130 / 64) chunks
    for got, want in ((y_x, y_m), (fin_x, fin_m), (saved_x.ckpt, saved_m.ckpt), (saved_x.ypre, saved_m.ypre)):
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


def _threaded_grads(monkeypatch, kw, cu, threads):
    """float32 gradients of the chunked backward on ``threads`` kernel threads (the serial
    threshold lifted, so that this small case runs threaded)."""
    from aura_lab import registry

    monkeypatch.setattr(registry, "SERIAL_NS", 0)
    monkeypatch.setenv("AURA_NUM_THREADS", str(threads))
    g, ran = _mojo_grads(kw, dict(softplus=True, limit=(0.0, float("inf")), cu=cu), "chunked")
    assert ran == "chunked"
    return g


@pytest.mark.requires_mojo
@pytest.mark.parametrize("b, l, cu, threads, whole", [
    (4, 130, None, (2, 4), True),  # as many sequences as threads or more, even: whole sequences per thread
    (1, 300, [0, 90, 150, 240, 300], (2,), True),  # packed: 90 + 60 tokens to each of 2 threads
    (3, 130, None, (2,), False),  # 2 + 1 sequences would load one thread 4/3 of an even share: heads are shared
    (1, 300, [0, 90, 150, 240, 300], (3,), False),  # 90, 60 + 60, 90 tokens: 120 of 100 on average
])
def test_the_chunked_backward_on_several_threads_matches_the_oracle_and_whole_sequences_match_one_thread(
        monkeypatch, b, l, cu, threads, whole):
    """The chunked backward on several threads (float32, every option on) within REL32 of the
    float64 oracle. Where the threads take whole sequences (``_owners`` in
    kernels/aura_kernels/ssd/chunked.mojo: no two threads write one gB, gC or dG row, so each
    row sums its heads in order as on one thread) the gradients equal one thread's bit for
    bit; where they share every sequence's heads, gB and gC add the threads' sums, which
    rounds differently."""
    cu = None if cu is None else torch.tensor(cu)
    nseq = b if cu is None else len(cu) - 1
    args = (7, b, l, 4, 8, 1, 16)  # one group: a gB row sums 4 heads, 2 per thread when they share
    opts = dict(D="hp", z=True, bias=True, init=True, nseq=nseq)
    ref_kw = _inputs(*args, **opts)
    _leaves(ref_kw)
    _, _, g_ref = _grads(ref_kw, lambda kw: _seq_ref(**kw, softplus=True, cu=cu))
    kw32 = _inputs(*args, **opts, dtype=torch.float32)
    one = _threaded_grads(monkeypatch, kw32, cu, 1)
    for t in threads:
        got = _threaded_grads(monkeypatch, kw32, cu, t)
        _assert_grads_close(NAMES, got, g_ref, REL32, f"{t} threads against the float64 reference")
        same = [a.equal(c) for a, c in zip(got, one)]
        assert all(same) if whole else not all(same), f"{t} threads: {dict(zip(NAMES, same))} equal to 1 thread's"
