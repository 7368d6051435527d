"""``aura-lab bench routing`` and ``aura-lab validate routing``."""

from __future__ import annotations

import time

import numpy as np

from ..registry import explain
from ..routing import op, route
from . import rounding
from .core import (BenchResult, Check, PanelSpec, add_ratios, available_backends, compare, machine_info, memory_bandwidth,
                   progress, threads, time_call)

TOKENS = (4096, 65536)
SHAPES = ((8, 2), (64, 2), (256, 8))  # (E, k): Mixtral, a 64-expert top-2, DeepSeek-sized softmax top-8
DSV3 = {"scoring": "sigmoid", "n_groups": 8, "topk_groups": 4, "scale": 2.5}  # + a bias (E=256, k=8)
SETTLE_S = 0.3  # pause before each row: torch's OpenMP workers spin ~0.1 s after a call and steal a core
COLUMNS = ["case", "impl", "kind", "ms", "runs", "GB/s", "%read_bw", "floor_ms", "vs_numpy", "vs_best_peer", "note"]
TIMED = ("backends: aura_lab.route(logits, k, ...) end to end from Python on float32 numpy logits: validation, "
         "output allocation, scores, top-k with the tie rule, weights, counts, the stable permutation and offsets "
         "(balance statistics are lazy and not computed). Peers (torch tensors, torch's default threads): "
         "torch.topk = softmax -> topk -> divide by the sum -> bincount; torch.grouped = DeepSeek-V3 Gate.forward "
         "(sigmoid, bias for selection, top-2 group sums, keep 4 of 8 groups, topk, unbiased weights renormalized "
         "x 2.5) -> bincount. Neither peer builds a permutation. GB/s = 4*T*E bytes of logits / time; floor_ms = "
         "those bytes at the read bandwidth measured in this run. Each row starts after a 0.3 s pause so that the "
         "previous row's thread pools have stopped spinning; one warm-up call, then the median of the repeats.")


def _bias(E: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed + 1).standard_normal(E) * 0.05).astype(np.float32)


def torch_topk(Lt, k: int):
    """Peer: torch softmax -> topk -> normalize -> bincount."""
    import torch

    with torch.inference_mode():
        p = torch.softmax(Lt, dim=-1)
        w, i = torch.topk(p, k, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        return w, i, torch.bincount(i.flatten(), minlength=Lt.shape[1])


def torch_grouped(Lt, bias, k: int, n_groups: int = 8, topk_groups: int = 4, scale: float = 2.5):
    """Peer: DeepSeek-V3 ``Gate.forward`` (deepseek-ai/DeepSeek-V3 inference/model.py), sigmoid
    scoring with a selection bias, then bincount."""
    import torch

    with torch.inference_mode():
        T = Lt.shape[0]
        scores = Lt.sigmoid()
        original = scores
        scores = (scores + bias).view(T, n_groups, -1)
        group_scores = scores.topk(2, dim=-1)[0].sum(dim=-1)
        idx = group_scores.topk(topk_groups, dim=-1)[1]
        mask = scores.new_ones(T, n_groups, dtype=torch.bool).scatter_(1, idx, False)
        scores = scores.masked_fill(mask.unsqueeze(-1), float("-inf")).flatten(1)
        ind = torch.topk(scores, k, dim=-1)[1]
        w = original.gather(1, ind)
        w = w / w.sum(dim=-1, keepdim=True) * scale
        return w, ind, torch.bincount(ind.flatten(), minlength=Lt.shape[1])


def _cases(sizes):
    """(label, T, E, k, route kwargs, peer name)."""
    out = []
    for T, E, k, variant in sizes:
        if variant == "dsv3":
            out.append((f"T={T} DeepSeek-V3 (E=256 k=8, 8 groups keep 4, sigmoid+bias, x2.5)", T, E, k,
                        {**DSV3, "bias": _bias(E)}, "torch.grouped"))
        else:
            out.append((f"T={T} E={E} k={k} softmax", T, E, k, {}, "torch.topk"))
    return out


SIZES = [(T, E, k, "softmax") for T in TOKENS for E, k in SHAPES] + [(T, 256, 8, "dsv3") for T in TOKENS]


def _moe_indices_model():
    """MAX's ``moe_create_indices`` (expert ids -> token order grouped by expert) as a compiled
    one-op graph on the device MAX finds, and its execute-ready callable."""
    from max.driver import CPU, Accelerator, Buffer, accelerator_count
    from max.dtype import DType
    from max.engine import InferenceSession
    from max.graph import DeviceRef, Graph, TensorType
    from max.nn.kernels import moe_create_indices

    gpu = accelerator_count() > 0
    dev = DeviceRef.GPU() if gpu else DeviceRef.CPU()
    with Graph("moe_create_indices", input_types=[TensorType(DType.int32, ["n"], dev)]) as g:
        g.output(*moe_create_indices(g.inputs[0].tensor, 256))
    model = InferenceSession(devices=[Accelerator() if gpu else CPU()]).load(g)
    return lambda ids: model.execute(Buffer.from_numpy(np.ascontiguousarray(ids, np.int32).reshape(-1)))


_PROBE = """
import os, sys
from aura_lab.harness.routing import _moe_indices_model
try:
    _moe_indices_model()
    print("OK")
except Exception as e:
    causes = [str(e)] + [str(c) for c in (e.__cause__, getattr(e.__cause__, "__cause__", None)) if c is not None]
    gpu_only = any("only supported on GPU" in c for c in causes)
    print("FAIL", "MAX: 'Creating MoE indices is only supported on GPU' (kernel constraint at graph compile)"
          if gpu_only else causes[0].splitlines()[0])
sys.stdout.flush()
os._exit(0)  # a failed MAX compile can abort the interpreter at exit
"""


def max_moe_indices():
    """MAX's own MoE op for the permutation step as a peer: (callable on int32 ids, note), or
    (None, why it cannot run here). Probed in a child process first: on the CPU its kernel
    refuses to compile, and a failed MAX compile can abort the interpreter at exit."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=600)
    out = (r.stdout.strip().splitlines() or ["FAIL no answer from the probe process"])[-1]
    if not out.startswith("OK"):
        return None, "not run: " + out.removeprefix("FAIL ").strip()
    return _moe_indices_model(), "MAX moe_create_indices on the mojo backend's expert ids (permutation only)"


def bench(sizes=None, backends=None, repeats: int = 5, seed: int = 0, show_progress: bool = True) -> BenchResult:
    """Routing of random float32 logits: every backend (plus mojo on one thread) against the
    torch peers, ``sizes`` = [(T, E, k, "softmax" | "dsv3")] (default ``SIZES``).

    Throughput is GB/s of logits read; ``%read_bw`` compares it with the read bandwidth
    measured at the start of this run. See ``TIMED`` for exactly what each row times."""
    bw = memory_bandwidth()
    rng = np.random.default_rng(seed)
    names = available_backends(op, backends)
    variants = [*names, *(["mojo 1-thread"] if "mojo" in names else [])]
    try:
        import torch
    except ImportError:
        torch = None
    rows = []
    jobs = [(case, impl) for case in _cases(sizes or SIZES)
            for impl in [*variants, *([case[5]] if torch is not None else [])]]
    cache = {}
    for (label, T, E, k, kw, peer), impl in progress(jobs, desc="bench routing", enabled=show_progress):
        L = cache.get((T, E))
        if L is None:
            cache.clear()
            L = cache[(T, E)] = rng.standard_normal((T, E)).astype(np.float32)
        if impl == peer:
            Lt = torch.from_numpy(L)
            if peer == "torch.topk":
                fn = lambda: torch_topk(Lt, k)  # noqa: E731
            else:
                bt = torch.from_numpy(kw["bias"])
                fn = lambda: torch_grouped(Lt, bt, k)  # noqa: E731
            kind = "peer"
        else:
            fn, kind = (lambda b=impl.split()[0]: route(L, k, backend=b, **kw)), "backend"
        time.sleep(SETTLE_S)  # let the previous row's thread pools (torch OpenMP, OpenBLAS) stop spinning
        with threads(1 if impl == "mojo 1-thread" else None):
            t = time_call(fn, repeats=repeats)
        nbytes = 4.0 * T * E
        gbps = nbytes / (t["ms"] * 1e-3) / 1e9
        rows.append({"case": label, "T": T, "E": E, "k": k, "impl": impl, "kind": kind, **t, "GB/s": gbps,
                     "%read_bw": 100.0 * gbps / bw["read_GBps"], "floor_ms": nbytes / (bw["read_GBps"] * 1e9) * 1e3})
    max_cases = [(label, T, E, k) for label, T, E, k, kw, _ in _cases(sizes or SIZES) if E == 256 and not kw]
    # MAX's op is probed (a MAX import and compile in a child process) only when a case compares it
    max_peer, max_note = max_moe_indices() if max_cases else (None, "not run: no plain-softmax E=256 case")
    for label, T, E, k in max_cases:
        row = {"case": label, "T": T, "E": E, "k": k, "impl": "max.moe_create_indices", "kind": "max op", "note": max_note}
        if max_peer is not None:
            ids = route(rng.standard_normal((T, E)).astype(np.float32), k, backend="mojo").experts
            row.update(time_call(lambda ids=ids: max_peer(ids), repeats=repeats))
        rows.append(row)
    add_ratios(rows, ref="numpy")
    ctx = {"machine": machine_info(), "bandwidth": bw, "repeats": repeats, "dtype": "float32", "timed": TIMED,
           "max_peer": max_note, "command": "aura-lab bench routing"}
    return BenchResult("routing", rows, ctx)


# ---------------------------------------------------------------------------- validate

VARIANTS = {
    "softmax": {},
    "softmax, no renormalize": {"renormalize": False},
    "sigmoid": {"scoring": "sigmoid"},
    "softmax + bias": {"bias": True},
    "sigmoid + bias, no renormalize, x2": {"scoring": "sigmoid", "bias": True, "renormalize": False, "scale": 2.0},
    "grouped max (V2-style)": {"n_groups": 8, "topk_groups": 3},
    "DeepSeek-V3": {**DSV3, "bias": True},
    "softmax, capacity 1.0": {"capacity_factor": 1.0},
    "DeepSeek-V3, capacity 0.8": {**DSV3, "bias": True, "capacity_factor": 0.8},
}


def _inputs(rng):
    """(name, logits (T, E), k): tie-free, tie-heavy and non-finite."""
    T, E = 1500, 64
    rand = rng.standard_normal((T, E)).astype(np.float32)
    nonfinite = rng.standard_normal((T, E)).astype(np.float32)
    nonfinite[rng.random((T, E)) < 0.2] = np.nan
    nonfinite[rng.random((T, E)) < 0.03] = np.inf
    nonfinite[rng.random((T, E)) < 0.05] = -np.inf
    nonfinite[:10] = np.nan
    return [
        ("random 1500x64 k=6", rand, 6),
        ("random 4096x256 k=8", rng.standard_normal((4096, 256)).astype(np.float32), 8),
        ("all-equal rows 300x64 k=6", np.full((300, E), 0.25, np.float32), 6),
        ("quantized (7 levels) 1500x64 k=6", (np.round(rng.standard_normal((T, E)) * 1.5) / 2).astype(np.float32), 6),
        ("NaN/inf rows 1500x64 k=6", nonfinite, 6),
        ("Mixtral 3000x8 k=2", rng.standard_normal((3000, 8)).astype(np.float32), 2),
    ]


def _compare_routing(got, ref) -> tuple[float, float, bool, str]:
    """(max abs / rel weight error, passed, note): ids, counts, permutation, offsets and kept
    exact; weights within 1e-6 relative."""
    issues = []
    if not np.array_equal(got.experts, ref.experts):
        issues.append(f"ids differ in {int((np.asarray(got.experts) != np.asarray(ref.experts)).any(1).sum())} rows")
    for name in ("counts", "permutation", "offsets"):
        if not np.array_equal(getattr(got, name), getattr(ref, name)):
            issues.append(f"{name} differ")
    if (got.kept is None) != (ref.kept is None) or (ref.kept is not None and not np.array_equal(got.kept, ref.kept)):
        issues.append("kept differs")
    if got.dropped != ref.dropped or got.capacity != ref.capacity:
        issues.append("capacity/dropped differ")
    ea, er, ok = compare(got.weights, ref.weights, rtol=1e-6, atol=1e-37)
    if not ok:
        issues.append("weights outside 1e-6 relative")
    return ea, er, not issues, "; ".join(issues) or "ids, counts, permutation, offsets, kept exact"


def validate(backends=None, seed: int = 0, show_progress: bool = False) -> list[Check]:
    """Every backend against the numpy reference (exact ids, counts, permutation, offsets,
    kept; weights 1e-6 relative) on tie-free, tie-heavy and NaN/inf logits for every
    variant; and the reference against the model code it transcribes (torch.topk forms,
    DeepSeek-V3 Gate.forward, HF load_balancing_loss_func) on tie-free logits."""
    rng = np.random.default_rng(seed)
    checks = []
    names = [b for b in available_backends(op, backends) if b != "numpy"]
    for name, L, k in progress(list(_inputs(rng)), desc="validate routing", enabled=show_progress):
        E = L.shape[1]
        for vname, kw in VARIANTS.items():
            kw = dict(kw)
            if kw.get("bias"):
                kw["bias"] = _bias(E) if "quantized" not in name else np.round(_bias(E) * 40) / 40
            if "n_groups" in kw and (E % kw["n_groups"] or k > kw["topk_groups"] * E // kw["n_groups"]):
                continue
            ref = route(L, k, backend="numpy", **kw)
            for b in names:
                ea, er, ok, note = _compare_routing(route(L, k, backend=b, **kw), ref)
                checks.append(Check("routing", b, f"{name} | {vname}", ea, er, "exact ids; weights rtol 1e-6", ok, note))
    checks += _reference_checks(rng)
    return checks


def _reference_checks(rng) -> list[Check]:
    """The numpy reference against transcriptions of the model code (float64, tie-free)."""
    try:
        import torch
    except ImportError:
        return []
    out = []

    def add(case, w_got, w_ref, ids_got, ids_ref):
        ea, er, ok = compare(w_got, w_ref, rtol=1e-6, atol=0.0)
        same = np.array_equal(np.asarray(ids_got), np.asarray(ids_ref))
        out.append(Check("routing", "numpy (reference)", case, ea, er, "exact ids; weights rtol 1e-6", ok and same,
                         "" if same else "ids differ"))

    L = rng.standard_normal((2000, 64)).astype(np.float32)
    lt = torch.from_numpy(L).double()
    top, idx = torch.topk(lt, 2, dim=-1)
    r = route(L, 2, backend="numpy")
    add("vs Mixtral: topk(logits) then softmax, k=2", r.weights, top.softmax(-1).numpy(), r.experts, idx.numpy())
    w, idx = torch.topk(lt.softmax(-1), 6, dim=-1)
    r = route(L, 6, renormalize=False, backend="numpy")
    add("vs vLLM torch_topk: softmax -> topk, k=6", r.weights, w.numpy(), r.experts, idx.numpy())
    L = rng.standard_normal((2000, 256)).astype(np.float32)
    bias = _bias(256)
    w, idx = torch_grouped(torch.from_numpy(L).double(), torch.from_numpy(bias).double(), 8)[:2]
    r = route(L, 8, backend="numpy", bias=bias, **DSV3)
    add("vs DeepSeek-V3 Gate.forward (E=256 k=8, groups 8/4, sigmoid+bias, x2.5)", r.weights, w.numpy(), r.experts,
        idx.numpy())
    # HF load_balancing_loss_func and the z-loss
    L = (rng.standard_normal((3000, 16)) + np.linspace(0, 2, 16)).astype(np.float32)
    lt = torch.from_numpy(L).double()
    p = lt.softmax(-1)
    mask = torch.nn.functional.one_hot(torch.topk(p, 4, dim=-1)[1], 16).double()
    hf = float((mask.mean(0) * p.mean(0).unsqueeze(0)).sum() * 16)
    r = route(L, 4, backend="numpy")
    err = abs(r.hf_aux_loss - hf)
    out.append(Check("routing", "numpy (reference)", "hf_aux_loss vs HF load_balancing_loss_func (k=4)", err, err / hf,
                     "rtol 1e-12", err <= 1e-12 * hf, f"aux_loss {r.aux_loss:.6f} = hf / k"))
    z = float(torch.logsumexp(lt, -1).pow(2).mean())
    err = abs(r.z_loss - z)
    out.append(Check("routing", "numpy (reference)", "z_loss vs mean(logsumexp(logits)**2)", err, err / z, "rtol 1e-12",
                     err <= 1e-12 * z))
    return out


# ------------------------------------------------------------------------- panel, calibration

def panel_spec() -> PanelSpec:
    """The ComparisonPanel's view: softmax top-k routing of random logits, every backend
    against the numpy reference (exact ids, weights within 1e-6 relative)."""
    sizes = {f"T={T} E={E} k={k}": {"T": T, "E": E, "k": k}
             for T, E, k in ((1024, 64, 2), (4096, 256, 8), (16384, 256, 8), (65536, 256, 8))}

    def make(size, dtype, seed):
        return np.random.default_rng(seed).standard_normal((size["T"], size["E"])).astype(dtype), size["k"]

    def call(backend, inputs):
        return route(inputs[0], inputs[1], backend=backend)

    def check(out, ref, dtype):
        ea, _, ok, note = _compare_routing(out, ref)
        return ea, ok, "exact ids; weights rtol 1e-6"

    def throughput(size, ms):
        return 4.0 * size["T"] * size["E"] / (ms * 1e-3) / 1e9, "GB/s"

    return PanelSpec(name="routing", backends=list(op.backends), reference="numpy", sizes=sizes, dtypes=["float32"],
                     make=make, call=call, check=check, explain=lambda size: explain("routing", **size),
                     throughput=throughput, work=op.work)


def calibration(sizes=((64, 8, 2), (1024, 8, 2), (1024, 64, 2), (4096, 256, 8), (32768, 256, 8)), seed: int = 0):
    """For ``aura-lab calibrate``: [(op name, op, [(size, {backend: call})])]."""
    rng = np.random.default_rng(seed)
    cases = []
    for T, E, k in sizes:
        L = rng.standard_normal((T, E)).astype(np.float32)
        calls = {b: (lambda b=b, L=L, k=k: route(L, k, backend=b)) for b in op.backends}
        cases.append(({"T": T, "E": E, "k": k}, calls))
    return [("routing", op, cases)]


def moe_rounding_bound(layer, x, r):
    """(bound, wy), float64 (T, d_model): an elementwise bound on |a float32 evaluation of the
    ``MoELayer`` ``layer`` on ``x`` with routing ``r`` - the exact value|, and wy = sum_s |w_s|
    (|y_s| + |dy_s|), from the layer's own weights and inputs (notebooks/03_moe_routing.py
    derives it): |dh| <= g(d_model+1) (|W1||x| + |b1|); silu is 1.1-Lipschitz and good to 8u,
    so |da| <= 1.1|dh| + 8u(|h| + |dh|); |dy| <= g(d_hidden+1) (|W2|(|a| + |da|) + |b2|) +
    |W2||da|; the combine adds g(k) sum_s |w_s| (|y_s| + |dy_s|). Two evaluations in different
    orders (segment GEMMs, per-token products; any CPU and BLAS) differ by at most twice it."""
    import torch

    X = x.detach().double()
    W1, b1, W2, b2 = (p.detach().double() for p in (layer.w1, layer.b1, layer.w2, layer.b2))
    d_model, d_hidden = W1.shape[2], W1.shape[1]
    experts = np.asarray(r.experts)
    kept = np.ones(experts.shape, bool) if r.kept is None else np.asarray(r.kept)
    w = torch.from_numpy(np.abs(np.asarray(r.weights, np.float64)))
    dout, wy = torch.zeros_like(X), torch.zeros_like(X)
    for s in range(experts.shape[1]):
        for e in np.unique(experts[:, s]):
            t = torch.from_numpy(np.flatnonzero((experts[:, s] == e) & kept[:, s]))
            h = X[t] @ W1[e].T + b1[e]
            dh = rounding.gamma(d_model + 1) * (X[t].abs() @ W1[e].abs().T + b1[e].abs())
            a = torch.nn.functional.silu(h)
            da = 1.1 * dh + 8 * rounding.U32 * (h.abs() + dh)
            y = a @ W2[e].T + b2[e]
            dy = rounding.gamma(d_hidden + 1) * ((a.abs() + da) @ W2[e].abs().T + b2[e].abs()) + da @ W2[e].abs().T
            dout[t] += w[t, s, None] * dy
            wy[t] += w[t, s, None] * (y.abs() + dy)
    return dout + rounding.gamma(experts.shape[1]) * wy, wy
