"""The max backend beyond the per-op correctness tests (which run it like every backend):
device policy, diagnostics, torch in/out, availability reporting."""

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import aura_lab
from aura_lab.harness.rounding import U32, gamma
from aura_lab import _max
from aura_lab.registry import backend_status

pytestmark = pytest.mark.requires("max")


def test_status_lists_the_graph_ops():
    st = backend_status("max")
    assert st.version == "26.7.0"
    for name in ("distance", "ssd", "routing"):
        assert name in st.detail
    assert st.detail.startswith(f"device: {_max.device_name()[0]};")


def test_accelerator_without_a_gpu_kernel_raises_naming_the_op(monkeypatch):
    monkeypatch.setattr(_max, "device_name", lambda: ("gpu (test)", True))
    X = np.ones((4, 3), np.float32)
    with pytest.raises(RuntimeError, match=r"max backend: op 'distance' \(aura_pairwise_distances\) has no GPU implementation"):
        aura_lab.pairwise_distances(X, backend="max")
    with pytest.raises(RuntimeError, match=r"op 'routing' \(aura_route\) has no GPU implementation"):
        aura_lab.route(np.ones((4, 8), np.float32), 2, backend="max")
    from aura_lab.distance import op

    monkeypatch.setattr(op, "auto_candidates", lambda size=None: (["max", "mojo", "numpy"], "test order"))
    with pytest.warns(aura_lab.AuraFallbackWarning, match="no GPU implementation"):
        D = aura_lab.pairwise_distances(X)
    assert aura_lab.last_dispatch().backend != "max" and D.shape == (4, 4)


#: a child interpreter compiling a one-op graph: argv = op name, dtype, custom-op package
#: ("ours": aura_lab's); prints TYPE and MESSAGE of the MaxGraphError, then exits normally
_FAILING_COMPILE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from aura_lab import _max

    name, dtype, ext = sys.argv[1:]

    def build(dev, pkg):
        from max.dtype import DType
        from max.graph import Graph, TensorType, ops
        t = TensorType(getattr(DType, dtype), ["n"], dev)
        with Graph("failing", input_types=[t], custom_extensions=[pkg if ext == "ours" else Path(ext)]) as g:
            g.output(ops.custom(name, dev, [g.inputs[0]], out_types=[t])[0])
        return g

    try:
        _max.model(("failing",), build)
        print("NO ERROR")
    except _max.MaxGraphError as e:
        print("TYPE", isinstance(e, RuntimeError))
        print("MESSAGE", str(e).replace(chr(10), " | "))
""")


def _failing_compile(*argv) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _FAILING_COMPILE, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _answer(proc: subprocess.Popen) -> tuple[int, dict, str]:
    out, err = proc.communicate(timeout=600)
    return proc.returncode, dict(ln.split(" ", 1) for ln in out.splitlines() if " " in ln), err[-500:]


def test_failed_graph_compile_carries_max_diagnostics():
    rc, lines, err = _answer(_failing_compile("aura_no_such_op", "float32", "ours"))
    assert lines.get("TYPE") == "True", (lines, err)
    msg = lines["MESSAGE"]
    assert "max backend: compiling the graph ('failing',) failed" in msg
    assert "aura_no_such_op" in msg  # MAX's own diagnostic, not just our summary


#: interpreters that must exit cleanly after a graph compile that failed in a kernel constraint:
#: (full, with --full-rounds as for docs/reliability.md; quick, by default: one pair exiting at once);
#: each is a MAX import and compile (4 took 468 s wall at load 12 on the 2-core VM)
EXITS_AFTER_FAILED_COMPILE = (20, 2)


def test_interpreter_exits_cleanly_after_a_failed_graph_compile(tmp_path, rounds):
    # MAX's compiler threads outlive the failure by up to a second; an exit meanwhile aborted the
    # interpreter (exit 134, "terminate called without an active exception", 3 of 24 exits
    # measured): _max waits for them before raising. Each run is a fresh interpreter exiting at once.
    from aura_lab import _mojo

    exits = rounds(*EXITS_AFTER_FAILED_COMPILE)
    src = Path(__file__).resolve().parents[1] / "data" / "max_refusing_op"
    pkg = tmp_path / "max_refusing_op.mojoc"
    r = subprocess.run([str(_mojo.mojo_binary()), "precompile", str(src), "-o", str(pkg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    runs, at_once = [], max(2, os.cpu_count() or 1)
    while len(runs) < exits:
        procs = [_failing_compile("aura_test_refuses_int32", "int32", str(pkg)) for _ in range(min(at_once, exits - len(runs)))]
        runs += [_answer(p) for p in procs]
    refused = [(rc, "int32 is refused at graph compile" in lines.get("MESSAGE", "")) for rc, lines, _ in runs]
    assert refused == [(0, True)] * len(runs), runs


#: slack for the float64 side of a comparison (its own rounding, exact vs float64 reference):
#: a relative 2^-40 is >100x the float64 error of any computation here (at most ~100 terms)
F64_SLACK = 2.0**-40


def euclidean_f32_bound(d, D64):
    """Elementwise bound on |a float32 direct-difference euclidean distance - the exact one|.
    kernels/aura_kernels/distance/kernel.mojo never uses the GEMM identity: t = fl(x - y) is within u of
    x - y, the d squares are accumulated by fma (one rounding each), so every term of the sum of
    squares carries at most d + 2 roundings and, the terms being >= 0, |dS| <= gamma_{d+2} S; sqrt
    halves that and adds one rounding: |dD| <= gamma_{d+3} D. D64 is the float64 distance."""
    return (gamma(d + 3) + F64_SLACK) * D64


#: float32 exp in the scan kernel taken as good to 4 ulp (8u relative); libm-quality exps are
#: within 1 ulp, so this leaves room for a faster vectorized one
EXP_ULP_U = 8


def scan_f32_bound(x, dt, A, B, C):
    """Elementwise bound on |the float32 scan kernel's y - the exact y| (no D, z, bias, softplus;
    dt_limit (0, inf); g = 1), from kernels/aura_kernels/ssd/scan.mojo's sequential recurrence
    s = fma(B, dt x, s * decay); y = sum_n C s. A term B_tau dt_tau x_tau of s_t carries: 1 rounding
    for dt x, 1 for the fma that adds it, then per later step sigma the decay's error (dt A rounded:
    exp(v(1 + delta)) is within |v| u of exp(v); the exp itself EXP_ULP_U u) and 2 roundings
    (s * decay, the fma). The C . s sum adds n. With S_t = a_t S_{t-1} + |B_t| |dt_t x_t| (the same
    recurrence on absolute values, float64) the error is <= gamma_K sum_n |C| S_t,
    K = 2 + l (2 + EXP_ULP_U + max |dt A|) + n."""
    x, dt, A, B, C = (t.double().numpy() for t in (x, dt, A, B, C))
    b, l, h, p = x.shape
    n = B.shape[-1]
    v = dt * A  # (b, l, h), <= 0
    K = np.ceil(2 + l * (2 + EXP_ULP_U + np.abs(v).max(initial=0.0)) + n)
    S = np.zeros((b, h, p, n))
    Yabs = np.zeros(x.shape)
    for t in range(l):
        S = np.exp(v[:, t, :, None, None]) * S + np.abs(B[:, t, 0, None, None, :] * (dt[:, t, :, None] * x[:, t])[..., None])
        Yabs[:, t] = np.einsum("bhpn,bn->bhp", S, np.abs(C[:, t, 0]))
    return (gamma(K) + F64_SLACK) * Yabs


def test_torch_tensors_in_and_out():
    from scipy.spatial.distance import cdist

    X = torch.rand(6, 3)
    D = aura_lab.pairwise_distances(X, backend="max")
    assert isinstance(D, torch.Tensor) and D.dtype == torch.float32
    # float32 max vs the numpy backend (the float64 definition rounded to float32, within u of it):
    # each within its rounding bound of the exact distance, on any CPU (no tolerance fitted to one)
    D64 = cdist(X.double().numpy(), X.double().numpy())
    Dn = aura_lab.pairwise_distances(X, backend="numpy")
    err = (D - Dn).abs().double().numpy()
    assert np.all(err <= euclidean_f32_bound(3, D64) + (U32 + F64_SLACK) * D64), err.max()
    b, l, h, p, n = 1, 5, 2, 4, 16
    g = torch.Generator().manual_seed(0)
    x, dt = torch.randn(b, l, h, p, generator=g), torch.rand(b, l, h, generator=g)
    A, B, C = -torch.rand(h, generator=g), torch.randn(b, l, 1, n, generator=g), torch.randn(b, l, 1, n, generator=g)
    y = aura_lab.selective_scan(x, dt, A, B, C, backend="max")
    assert isinstance(y, torch.Tensor)
    # max and mojo run the same kernel source, each within the rounding bound of the exact scan
    ym = aura_lab.selective_scan(x, dt, A, B, C, backend="mojo")
    err = (y - ym).abs().double().numpy()
    assert np.all(err <= 2 * scan_f32_bound(x, dt, A, B, C)), err.max()
    logits = torch.randn(7, 8, generator=g)
    r = aura_lab.route(logits, 2, backend="max")
    ref = aura_lab.route(logits.numpy(), 2, backend="numpy")
    assert np.array_equal(np.asarray(r.experts), ref.experts)  # selection by the float32 logits: exact
    # weights: float64 softmax (error ~k 2^-53) rounded to float32 (u) on both sides -> within 2u
    assert np.all(np.abs(np.asarray(r.weights, np.float64) - ref.weights) <= (2 * U32 + F64_SLACK) * np.abs(ref.weights))


def test_rounding_bounds_are_tight_enough_to_mean_something():
    """The worst-case bounds above are small against the quantities they guard: a distance off by
    one float32 step in its last coordinate difference, or a scan with one token's B perturbed by
    1e-4, falls outside them."""
    X = torch.rand(6, 3, generator=torch.Generator().manual_seed(1)).double().numpy()
    from scipy.spatial.distance import cdist

    D64 = cdist(X, X)
    assert np.all(euclidean_f32_bound(3, D64) <= 1e-6 * D64)
    b, l, h, p, n = 1, 5, 2, 4, 16
    g = torch.Generator().manual_seed(0)
    x, dt = torch.randn(b, l, h, p, generator=g), torch.rand(b, l, h, generator=g)
    A, B, C = -torch.rand(h, generator=g), torch.randn(b, l, 1, n, generator=g), torch.randn(b, l, 1, n, generator=g)
    y = aura_lab.selective_scan(x, dt, A, B, C, backend="numpy")
    B2 = B.clone()
    B2[0, 2] += 1e-4
    y2 = aura_lab.selective_scan(x, dt, A, B2, C, backend="numpy")
    assert not bool(((y2 - y).abs().double().numpy() <= 2 * scan_f32_bound(x, dt, A, B, C)).all())


def test_new_sizes_do_not_recompile():
    before = len(_max.compile_log)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in (3, 17, 130):
            aura_lab.pairwise_distances(np.ones((n, 5), np.float32), backend="max")
    assert len(_max.compile_log) - before <= 1  # at most the float32 graph, once per process
