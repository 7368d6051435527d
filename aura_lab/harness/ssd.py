"""``aura-lab bench ssd`` and ``aura-lab validate ssd`` (Mamba-2 selective scan).

Bench shapes (a Mamba-2 block's): b = 1, h = 24, p = 64, n = 128, g = 1, l in {1024, 4096, 16384},
plus one decode step at b = 16. Every implementation runs the same problem: dt_softplus
with dt_bias, D of shape (h,), no z (the feature set MAX's op supports), float32.

Training rows (``train b=.. l=..``, sizes ``TRAIN_SIZES``): forward + backward of
``(y * w).sum()`` for a fixed random ``w``, gradients of x, dt, A, B, C, D and dt_bias, through
``selective_scan`` on mojo and max (their Mojo kernels; mojo twice: its default, chunked,
forward and backward, and ``SEQUENTIAL_ROW``, the sequential kernels it trained with before)
and torch autograd through the chunked SSD at
each of ``TORCH_CHUNKS`` (``vs_torch_ssd``: against the faster; from l = ``ONE_TORCH_CHUNK_FROM``
on only at the chunk size that was the faster one at the longest shorter l of the same b,
since torch autograd at b=4 l=16384 takes about a minute a call). ``tok/s`` is tokens trained
per second, ``peak_MiB`` the resident memory the first step at that size added in a fresh
process (high-water mark, ``train_step_peak``), ``saved_MiB`` what the forward kept for the backward
(torch: its saved tensors; mojo/max: checkpoints and inputs). The model rows (``MODEL_STEPS``)
time one AdamW step, with the scan on each training backend, of the tiny MambaLM that
``tests/unit/test_models.py`` and notebook 01 train (``LM``, case ``tiny MambaLM step``) and
of one Mamba-2 block (in_proj, causal conv, scan, gated RMSNorm, out_proj; ``BLOCK``: d_model
768, l = 2048, b = 1, case ``Mamba-2 block step ...``).

Peers, measured in the same run:

* ``torch loop``: the ``selective_scan_ref`` style, a Python loop over t with torch ops
  (in place, ``inference_mode``; the per-step form, because precomputing ``deltaB_u`` as
  ``selective_scan_ref`` does would take b*l*h*p*n floats, 13 GB at l = 16384);
* ``torch`` backend: the chunked SSD in torch, at Q = 64 (the fastest chunk size on the
  development VM, ~2.5x faster than Q = 256 there) and at mamba_ssm's default Q = 256;
  ``vs_torch_ssd`` compares with the faster of the two;
* ``max op``: MAX's own Mamba-2 CPU kernel,
  ``max.nn.state_space.mamba2_ssd_chunk_scan_varlen_fwd_inplace``, in a MAX graph with a
  symbolic length (compiled once per process, outside the timings); decode is a batch of
  length-1 sequences continuing their pooled state, as MAX runs it.

The chunk GEMM rows (``GEMM_SHAPES``) time the chunked kernels' matrix-product micro-kernel on
one thread on cache-resident operands; ``vs_scan_1t`` is its GFLOP/s over the one-thread scan
forward's at l = 4096 (the ratio rho of the cost model in shared/notes/ssd-backward.md).

GFLOP/s counts the sequential scan's 5*h*p*n flops per token for every implementation (per
(h, p, n): a multiply and an FMA for the state, an FMA for y), so for the chunked forms it is
an effective rate.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from ..registry import explain
from ..ssd import op, selective_scan, selective_state_update, ssd_sequential_ref, step_op
from ..ssd import train as train_mod
from ..ssd.kernels import chunk_gemm_seconds
from ..ssd.train import train_op
from .core import (BenchResult, Check, PanelSpec, available_backends, compare, machine_info, memory_bandwidth, peak_rss,
                   progress, run_isolated, threads, time_call)

H, P, N, G = 24, 64, 128, 1
LENGTHS = (1024, 4096, 16384)
TRAIN_SIZES = ((1, 1024), (1, 4096), (4, 1024), (4, 4096), (1, 16384), (4, 16384))  # (b, l) of the training rows
#: from this length on, torch autograd runs only at the chunk size that was faster at the
#: longest shorter length of the same b in the run (both at b=4 l=16384 would take ~6 min)
ONE_TORCH_CHUNK_FROM = 16384
DECODE_B = 16
TORCH_CHUNKS = (64, 256)  # the fastest on the 2-core VM, and mamba_ssm's default
#: (M, N, K) of the chunk products the chunked forward and backward run at Q = 64, n = 128, p = 64
GEMM_SHAPES = ((64, 128, 64), (64, 64, 128), (64, 64, 64), (64, 128, 128), (128, 64, 64))
GEMM_REPS = 2000  # products per timing: ~0.1-0.3 s
#: the row whose rate the GEMM rows are compared with (``vs_scan_1t``): the scan forward, one thread
GEMM_SCAN_CASE, GEMM_SCAN_IMPL = "prefill l=4096", "mojo (1 thread)"
COLUMNS = ["case", "impl", "ms", "runs", "tok/s", "GFLOP/s", "GB/s", "peak_MiB", "saved_MiB", "vs_torch_loop",
           "vs_torch_ssd", "vs_max_op", "vs_scan_1t", "note"]


def flops(tokens: int, h: int = H, p: int = P, n: int = N) -> float:
    """The sequential scan's flops: per (token, h, p, n) one mul + one FMA (state) + one FMA (y)."""
    return 5.0 * tokens * h * p * n


def make_inputs(b: int, l: int, seed: int = 0, h: int = H, p: int = P, n: int = N, g: int = G) -> dict:
    """float32 Mamba-2-like inputs (A = -exp(U(0, log 16)), softplus(dt + dt_bias) ~ 0.05)."""
    rng = np.random.default_rng(seed)
    f = np.float32
    return dict(x=rng.standard_normal((b, l, h, p), dtype=f), dt=(rng.standard_normal((b, l, h)) * 0.5 - 3.0).astype(f),
                A=(-np.exp(rng.uniform(0.0, np.log(16.0), h))).astype(f), B=rng.standard_normal((b, l, g, n), dtype=f),
                C=rng.standard_normal((b, l, g, n), dtype=f), D=rng.standard_normal(h).astype(f),
                dt_bias=(rng.uniform(-0.5, 0.5, h)).astype(f))


# ------------------------------------------------------------------------------ peers

def torch_loop_scan(x, dt, A, B, C, D, dt_bias):
    """The selective_scan_ref-style sequential loop in torch (Mamba-2 shapes), float32."""
    import torch
    import torch.nn.functional as F

    b, l, h, p = x.shape
    g, n = B.shape[-2:]
    with torch.inference_mode():
        dtp = F.softplus(dt + dt_bias)  # (b, l, h)
        dA = torch.exp(dtp * A)
        u = x * dtp[..., None]  # (b, l, h, p)
        Bh = B.repeat_interleave(h // g, dim=2)  # (b, l, h, n)
        Ch = C.repeat_interleave(h // g, dim=2)
        s = x.new_zeros((b, h, p, n))
        y = torch.empty_like(x)
        for t in range(l):
            s.mul_(dA[:, t, :, None, None]).add_(u[:, t, :, :, None] * Bh[:, t, :, None, :])
            y[:, t] = (s @ Ch[:, t, :, :, None])[..., 0]
        return y + D[:, None] * x, s


def torch_loop_step(state, x, dt, A, B, C, D, dt_bias):
    """One step of the same loop (the decode peer), in place on ``state``."""
    import torch
    import torch.nn.functional as F

    h = x.shape[1]
    g = B.shape[1]
    with torch.inference_mode():
        dtp = F.softplus(dt + dt_bias)
        Bh, Ch = B.repeat_interleave(h // g, dim=1), C.repeat_interleave(h // g, dim=1)
        state.mul_(torch.exp(dtp * A)[..., None, None]).add_((x * dtp[..., None])[..., None] * Bh[:, :, None, :])
        return (state @ Ch[..., None])[..., 0] + D[:, None] * x


class MaxOp:
    """MAX's CPU Mamba-2 kernel in a one-op graph with symbolic sizes (compiled once)."""

    _model = None

    def __init__(self):
        if MaxOp._model is None:
            from max.driver import CPU
            from max.dtype import DType
            from max.engine import InferenceSession
            from max.graph import BufferType, DeviceRef, Graph, TensorType
            from max.nn.state_space import mamba2_ssd_chunk_scan_varlen_fwd_inplace as mamba2_op

            cpu = DeviceRef.CPU()
            f32 = DType.float32
            types = [TensorType(f32, ["T", H, P], cpu), TensorType(f32, ["T", H], cpu), TensorType(f32, [H], cpu),
                     TensorType(f32, ["T", G, N], cpu), TensorType(f32, ["T", G, N], cpu), TensorType(f32, [H], cpu),
                     TensorType(f32, [H], cpu), BufferType(f32, ["S", H, P, N], cpu),
                     TensorType(DType.int32, ["nb1"], cpu), TensorType(DType.bool, ["nb"], cpu),
                     TensorType(DType.uint32, ["nb"], cpu)]
            with Graph("aura_ssd_max_peer", input_types=types) as graph:
                ins = graph.inputs
                y = mamba2_op(*(v.tensor for v in ins[:7]), ins[7].buffer, *(v.tensor for v in ins[8:]))
                graph.output(y)
            MaxOp._model = InferenceSession(devices=[CPU()]).load(graph)

    def prepare(self, x, dt, A, B, C, D, dt_bias, state, starts, has_init):
        """Device buffers for one call: tokens flattened (T, ...), ``state`` the (S, h, p, n) pool."""
        from max.driver import Buffer

        T = x.shape[0] * x.shape[1]
        flat = [x.reshape(T, H, P), dt.reshape(T, H), A, B.reshape(T, G, N), C.reshape(T, G, N), D, dt_bias]
        nb = len(starts) - 1
        bufs = [Buffer.from_numpy(np.ascontiguousarray(a)) for a in flat]
        pool = Buffer.from_numpy(state)
        meta = [Buffer.from_numpy(np.asarray(starts, np.int32)), Buffer.from_numpy(np.full(nb, has_init, np.bool_)),
                Buffer.from_numpy(np.arange(nb, dtype=np.uint32))]
        return [*bufs, pool, *meta], pool

    def __call__(self, bufs):
        return self._model.execute(*bufs)[0].to_numpy()


def _max_reason(e: Exception) -> str:
    return f"MAX op unavailable: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


# ------------------------------------------------------------------------------ bench

def bench(lengths=None, backends=None, repeats: int = 5, seed: int = 0, show_progress: bool = True,
          decode_b: int = DECODE_B, with_max: bool = True, slow_s: float = 5.0, train_sizes=None,
          with_lm: bool = True) -> BenchResult:
    """Prefill scans at ``lengths``, one decode step at ``decode_b`` and training steps at
    ``train_sizes`` ((b, l) pairs; default ``TRAIN_SIZES``), every backend and peer, and
    (``with_lm``) one training step of each ``MODEL_STEPS`` model (the tiny MambaLM, a Mamba-2
    block) per training backend.

    Rows: ms (median after one warm-up; ``runs=1`` when one call took over ``slow_s``),
    tokens/s, GFLOP/s (5*h*p*n per token), GB/s (decode: state read + written), and the
    speed-up of this row over each peer (``vs_torch_loop``, ``vs_torch_ssd``, ``vs_max_op``).
    """
    import torch

    lengths = list(lengths or LENGTHS)
    bw = memory_bandwidth()
    names = available_backends(op, backends)
    rows: list[dict] = []
    max_peer, max_note = None, ""
    if with_max:
        t0 = time.perf_counter()
        try:
            max_peer = MaxOp()
            max_note = f"graph compiled in {time.perf_counter() - t0:.1f} s (not timed)"
        except Exception as e:  # noqa: BLE001 - any failure means: no MAX peer here, say why
            max_note = _max_reason(e)
    train_sizes = TRAIN_SIZES if train_sizes is None else train_sizes
    jobs = [("prefill", l) for l in lengths] + [("decode", decode_b)] + [("train", bl) for bl in train_sizes]
    jobs += [("lm", None)] if with_lm else []
    jobs += [("gemm", None)] if "mojo" in names else []
    checks = {}
    for kind, size in progress(jobs, desc="bench ssd", enabled=show_progress):
        if kind == "gemm":
            rows += _gemm_rows(repeats)
            continue
        if kind == "train":
            rows += _train_rows(*size, backends, repeats, seed, slow_s, _torch_chunks(rows, *size))
            continue
        if kind == "lm":
            rows += _model_rows(backends, repeats, seed)
            continue
        if kind == "prefill":
            b, l = 1, size
            inp = make_inputs(b, l, seed)
            case = f"prefill l={l}"
            tokens = l
            kw = dict(D=inp["D"], dt_bias=inp["dt_bias"], dt_softplus=True)
            impls = {}
            for be in names:
                for q in (TORCH_CHUNKS if be == "torch" else (TORCH_CHUNKS[0],)):
                    label = f"torch (chunked SSD, Q={q})" if be == "torch" else be
                    impls[label] = (lambda be=be, q=q: selective_scan(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"],
                                                                      **kw, chunk_size=q, backend=be), "backend")
            if "mojo" in names:
                def mojo1():
                    with threads(1):
                        return selective_scan(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], **kw, backend="mojo")
                impls["mojo (1 thread)"] = (mojo1, "backend")
            tt = {k: torch.from_numpy(v) for k, v in inp.items()}
            impls["torch loop"] = (lambda: torch_loop_scan(tt["x"], tt["dt"], tt["A"], tt["B"], tt["C"], tt["D"], tt["dt_bias"]), "peer")
            if max_peer is not None:
                bufs, _ = max_peer.prepare(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], inp["D"], inp["dt_bias"],
                                           np.zeros((1, H, P, N), np.float32), [0, l], False)
                impls["max op"] = (lambda bufs=bufs: max_peer(bufs), "peer")
        else:
            b, l = size, 1
            inp = make_inputs(b, 1, seed)
            case = f"decode b={b}"
            tokens = b
            st0 = np.random.default_rng(seed + 1).standard_normal((b, H, P, N), dtype=np.float32)
            step = {k: (v[:, 0] if k in ("x", "dt", "B", "C") else v) for k, v in inp.items()}
            impls = {}
            for be in available_backends(step_op, backends):
                state = st0.copy()
                impls[be] = (lambda be=be, state=state: selective_state_update(
                    state, step["x"], step["dt"], step["A"], step["B"], step["C"], D=step["D"], dt_bias=step["dt_bias"],
                    dt_softplus=True, backend=be), "backend")
            tt = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in step.items()}
            tstate = torch.from_numpy(st0.copy())
            impls["torch loop"] = (lambda: torch_loop_step(tstate, tt["x"], tt["dt"], tt["A"], tt["B"], tt["C"], tt["D"], tt["dt_bias"]), "peer")
            if max_peer is not None:
                bufs, _ = max_peer.prepare(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], inp["D"], inp["dt_bias"],
                                           st0.copy(), np.arange(b + 1), True)
                impls["max op"] = (lambda bufs=bufs: max_peer(bufs), "peer")
        outs = {}
        for impl, (fn, role) in impls.items():
            t = time_call(fn, repeats=repeats, slow_s=slow_s)
            if kind == "prefill" and l <= 4096:
                r = fn()
                outs[impl] = np.asarray(r[0] if isinstance(r, tuple) else r, np.float32)
            row = {"case": case, "impl": impl, "kind": role, "b": b, "l": l, **t}
            row["tok/s"] = tokens / (t["ms"] * 1e-3)
            row["GFLOP/s"] = flops(tokens) / (t["ms"] * 1e-3) / 1e9
            if kind == "decode":
                row["GB/s"] = 2 * 4 * b * H * P * N / (t["ms"] * 1e-3) / 1e9
            rows.append(row)
        if "numpy" in outs:  # sanity: every implementation computed the same y as the numpy reference
            ref = outs["numpy"]
            checks[case] = {k: float(np.max(np.abs(v.reshape(ref.shape) - ref))) for k, v in outs.items() if k != "numpy"}
    _ratios(rows)
    _gemm_vs_scan(rows)
    for r in rows:
        if r["impl"] == "max op" and max_note:
            r["note"] = max_note
    ctx = {"machine": machine_info(), "bandwidth": bw, "repeats": repeats, "dtype": "float32",
           "shape": {"h": H, "p": P, "n": N, "g": G}, "torch_chunks": TORCH_CHUNKS, "max_peer": max_note,
           "max_abs_diff_vs_numpy": checks, "torch_threads": torch.get_num_threads(),
           "flops_per_token": flops(1), "command": "aura-lab bench ssd"}
    return BenchResult("ssd", rows, ctx)


def _gemm_rows(repeats: int) -> list[dict]:
    """One row per ``GEMM_SHAPES`` product: the chunk GEMM micro-kernel on one thread, float32,
    cache-resident operands, ``GEMM_REPS`` products per timing, median of ``repeats`` (issue 27's
    first measurement: what the chunked form's products reach, against the scan's own rate)."""
    rows = []
    for m, n, k in GEMM_SHAPES:
        times = [chunk_gemm_seconds(m, n, k, GEMM_REPS) for _ in range(repeats + 1)][1:]  # one warm-up
        sec = statistics.median(times)
        rows.append({"case": f"chunk GEMM {m}x{k} . {k}x{n}", "impl": "mojo (1 thread)", "kind": "backend",
                     "ms": sec / GEMM_REPS * 1e3, "min_ms": min(times) / GEMM_REPS * 1e3, "runs": repeats,
                     "GFLOP/s": 2.0 * m * n * k * GEMM_REPS / sec / 1e9})
    return rows


def _gemm_vs_scan(rows: list[dict]) -> None:
    """Each GEMM row's ``vs_scan_1t``: its GFLOP/s / the one-thread scan forward's (the ratio
    the cost model in shared/notes/ssd-backward.md calls rho)."""
    scan = [r for r in rows if r["case"] == GEMM_SCAN_CASE and r["impl"] == GEMM_SCAN_IMPL]
    for r in rows:
        if scan and r["case"].startswith("chunk GEMM"):
            r["vs_scan_1t"] = r["GFLOP/s"] / scan[0]["GFLOP/s"]


def _torch_chunks(rows: list[dict], b: int, l: int) -> tuple:
    """The chunk sizes torch autograd trains at (b, l): ``TORCH_CHUNKS``, from
    ``ONE_TORCH_CHUNK_FROM`` on only the faster one at the longest shorter l of this b in ``rows``."""
    torch_rows = [r for r in rows if r["case"].startswith(f"train b={b} ") and "chunk" in r and r["l"] < l]
    if l < ONE_TORCH_CHUNK_FROM or not torch_rows:
        return TORCH_CHUNKS
    longest = max(r["l"] for r in torch_rows)
    return (min((r for r in torch_rows if r["l"] == longest), key=lambda r: r["ms"])["chunk"],)


#: the mojo training row on the sequential forward and backward kernels (the training step before
#: the chunked kernels), for the ratios and the peak memory against them in the same run
SEQUENTIAL_ROW = "mojo (sequential forward and backward)"
#: the longest a training row's peak-memory child may run (torch autograd at b=4 l=16384 takes ~35-60 s)
PEAK_TIMEOUT_S = 600.0


def _train_inputs(b: int, l: int, seed: int) -> tuple[dict, object]:
    """(the inputs as torch tensors, the fixed random w of the loss (y * w).sum()) at (b, l)."""
    import torch

    inp = {k: torch.from_numpy(v) for k, v in make_inputs(b, l, seed).items()}
    w = torch.from_numpy(np.random.default_rng(seed + 2).standard_normal((b, l, H, P), dtype=np.float32))
    return inp, w


def _train_step(leaves: dict, w, be: str, q: int, fwd: str, kernel: str, keep=lambda t: t):
    """One training step: the gradients of (y * w).sum() into ``leaves`` (the last ones freed
    first), the forward on ``fwd`` and the backward on ``kernel`` (mojo/max; ``keep``: the
    saved-tensors hook); returns the mojo/max node's saved tensors (torch: None)."""
    import torch

    for v in leaves.values():
        v.grad = None
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t), train_mod.forward_kernel_set(fwd):
        y = selective_scan(leaves["x"], leaves["dt"], leaves["A"], leaves["B"], leaves["C"], D=leaves["D"],
                           dt_bias=leaves["dt_bias"], dt_softplus=True, chunk_size=q, backend=be)
    kept = y.grad_fn.saved if be in ("mojo", "max") else None
    with train_mod.grad_kernel_set(kernel):
        (y * w).sum().backward()
    return kept


def train_step_peak(b: int, l: int, seed: int, be: str, q: int, fwd: str, kernel: str) -> float | None:
    """The resident memory (MiB) the first training step at (b, l) of this process added, after
    one step at (1, q) has loaded the libraries and kernels: run in a fresh process, so that
    everything the step allocates, the kernels' scratch included, is counted (a warm step
    reuses scratch kept from the step before, resident already at its baseline; readings of
    one warm step moved by +-2 MiB, with outliers of 15-20 MiB: tools/peak_ssd_train.py)."""
    small, w_small = _train_inputs(1, q, seed)
    _train_step({k: v.clone().requires_grad_() for k, v in small.items()}, w_small, be, q, fwd, kernel)
    inp, w = _train_inputs(b, l, seed)
    leaves = {k: v.requires_grad_() for k, v in inp.items()}
    return peak_rss(lambda: _train_step(leaves, w, be, q, fwd, kernel))[1]


def _train_rows(b: int, l: int, backends, repeats: int, seed: int, slow_s: float,
                torch_chunks: tuple = TORCH_CHUNKS) -> list[dict]:
    """Forward + backward at (b, l) on every differentiable backend (see the module docstring),
    torch autograd at each of ``torch_chunks``; the peak memory of each in a fresh process
    (``train_step_peak``)."""
    inp, w = _train_inputs(b, l, seed)
    case = f"train b={b} l={l}"
    impls = {}
    for be in available_backends(train_op, backends):
        for q in (torch_chunks if be == "torch" else (TORCH_CHUNKS[0],)):
            impls[f"torch autograd (chunked SSD, Q={q})" if be == "torch" else be] = (
                be, q, train_mod.forward_kernel, train_mod.grad_kernel)
        if be == "mojo":  # the default kernels (chunked) and the sequential ones, in the same run
            impls[SEQUENTIAL_ROW] = (be, TORCH_CHUNKS[0], "sequential", "sequential")
    rows, grads = [], {}
    for impl, (be, q, fwd, kernel) in impls.items():
        leaves = {k: v.clone().requires_grad_() for k, v in inp.items()}
        saved, last = {}, {}

        def keep(t):
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()  # each storage once
            return t

        def step():
            saved.clear()
            last["kept"] = _train_step(leaves, w, be, q, fwd, kernel, keep)

        t = time_call(step, repeats=repeats, slow_s=slow_s)
        ok, peak = run_isolated(train_step_peak, (b, l, seed, be, q, fwd, kernel), PEAK_TIMEOUT_S)
        saved_bytes = sum(saved.values()) if last["kept"] is None else _saved_bytes(last["kept"])
        grads[impl] = {k: v.grad.numpy().copy() for k, v in leaves.items()}
        rows.append({"case": case, "impl": impl, "kind": "backend" if be != "torch" or q == torch_chunks[0] else "peer",
                     "b": b, "l": l, **t, "tok/s": b * l / (t["ms"] * 1e-3), "peak_MiB": peak if ok else None,
                     "saved_MiB": saved_bytes / 2**20, **({"chunk": q} if be == "torch" else {}),
                     **({} if ok else {"note": f"peak not measured: {peak}"})})
    ref = next((g for k, g in grads.items() if k.startswith("torch")), None)
    for r in rows:  # every implementation's gradients against torch autograd's (largest-entry relative)
        if ref is not None:
            g = grads[r["impl"]]
            r["grad_rel_err"] = max(float(np.max(np.abs(g[k] - ref[k]))) / max(float(np.max(np.abs(ref[k]))), 1e-30)
                                    for k in ref)
    return rows


#: the tiny language model of tests/unit/test_models.py and notebook 01 (one step: batch 64, l = 12)
LM = dict(vocab=32, d_model=64, n_layers=1, d_state=32, headdim=16, chunk_size=32)
LM_TASK = dict(n_pairs=4, n_keys=16, n_values=16, n_queries=4)
#: the Mamba-2 block row: one mixer (in_proj, conv, scan, gate + norm, out_proj) at mamba_ssm's
#: 130M sizes (d_state 128, headdim 64, expand 2: h = 24), b = 1, l = 2048
BLOCK = dict(d_model=768, l=2048, chunk_size=256)


def _tiny_lm(be: str, seed: int):
    """(case, impl stem, model, batch, loss, torch threads) of the tiny MambaLM step: torch on one
    thread, as the tests and notebook 01 train it (its tensors are tiny)."""
    import torch.nn.functional as F

    from ..models import MambaLM, associative_recall

    x, y = associative_recall(64, seed=seed + 1, **LM_TASK)
    model = MambaLM(LM["vocab"], backend=be, **{k: v for k, v in LM.items() if k != "vocab"})
    loss = lambda m: F.cross_entropy(m(x).flatten(0, 1), y.flatten(), ignore_index=-100)  # noqa: E731
    return "tiny MambaLM step", "MambaLM step", model, x, loss, 1, LM["chunk_size"]


def _mamba2_block(be: str, seed: int):
    """The same for one Mamba-2 block (``BLOCK``) on a fixed random input, loss (out * w).sum(),
    torch on every thread."""
    import torch

    from ..models import Mamba2

    d, l = BLOCK["d_model"], BLOCK["l"]
    gen = torch.Generator().manual_seed(seed + 3)
    u, w = torch.randn(1, l, d, generator=gen), torch.randn(1, l, d, generator=gen)
    model = Mamba2(d, chunk_size=BLOCK["chunk_size"], backend=be)
    return f"Mamba-2 block step d_model={d} l={l}", "Mamba-2 block step", model, u, lambda m: (m(u) * w).sum(), None, \
        BLOCK["chunk_size"]


#: the model training-step rows: each entry builds (case, impl stem, model, batch, loss, threads, chunk)
MODEL_STEPS = (_tiny_lm, _mamba2_block)


def _model_rows(backends, repeats: int, seed: int) -> list[dict]:
    """One AdamW training step (forward, backward, step) of each ``MODEL_STEPS`` model per
    training backend of the scan; ``vs_torch_ssd`` compares with the scan on torch."""
    import torch

    rows = []
    saved_threads = torch.get_num_threads()
    for make in MODEL_STEPS:
        for be in available_backends(train_op, backends):
            torch.manual_seed(seed)
            case, stem, model, batch, loss_of, nthreads, q = make(be, seed)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-2)

            def step():
                loss = loss_of(model)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            torch.set_num_threads(nthreads or saved_threads)
            try:
                t = time_call(step, repeats=max(repeats, 20) if nthreads == 1 else repeats, warmup=5 if nthreads == 1 else 1)
            finally:
                torch.set_num_threads(saved_threads)
            impl = f"{stem}, scan on {be}" if be != "torch" else f"{stem}, scan on torch (chunked SSD, Q={q})"
            tokens = batch.shape[0] * batch.shape[1]
            rows.append({"case": case, "impl": impl, "kind": "backend", "b": batch.shape[0], "l": batch.shape[1], **t,
                         "tok/s": tokens / (t["ms"] * 1e-3)})
    return rows


def _saved_bytes(saved) -> int:
    """What a mojo/max training forward keeps (aura_lab/ssd/train.py's _Saved)."""
    arrays = [*saved.operands, saved.init, saved.ckpt, saved.ypre, saved.offsets]
    return sum(a.nbytes for a in arrays if a is not None)


def _ratios(rows: list[dict]) -> None:
    """vs_<peer> = peer ms / this ms (how many times faster this row is than the peer)."""
    peers = {"vs_torch_loop": "torch loop",
             "vs_torch_ssd": ("torch (chunked SSD", "torch autograd (chunked SSD", "MambaLM step, scan on torch",
                             "Mamba-2 block step, scan on torch"),
             "vs_max_op": "max op"}
    for case in dict.fromkeys(r["case"] for r in rows):
        rs = [r for r in rows if r["case"] == case]
        for col, name in peers.items():
            times = [r["ms"] for r in rs if r["impl"].startswith(name)]  # the fastest torch SSD chunk size
            if not times:
                continue
            ref = min(times)
            for r in rs:
                r[col] = ref / r["ms"]


# --------------------------------------------------------------------------- validate

def make_case(rng, b=2, l=64, h=4, p=8, g=1, n=16, *, D=None, z=False, bias=False, softplus=False, init=False,
              cu=None, dt_limit=None, dtype=np.float32):
    """Mamba-2-like inputs: A = -exp(U(0, log 16)), dt ~ 0.001..0.1 (or raw before softplus)."""
    f = lambda a: np.asarray(a, dtype)  # noqa: E731
    kw = dict(
        x=f(rng.standard_normal((b, l, h, p))),
        dt=f(rng.standard_normal((b, l, h)) * 0.5 - 3.0 if softplus else rng.uniform(0.001, 0.1, (b, l, h))),
        A=f(-np.exp(rng.uniform(0.0, np.log(16.0), h))),
        B=f(rng.standard_normal((b, l, g, n))),
        C=f(rng.standard_normal((b, l, g, n))),
    )
    if D == "h":
        kw["D"] = f(rng.standard_normal(h))
    elif D == "hp":
        kw["D"] = f(rng.standard_normal((h, p)))
    if z:
        kw["z"] = f(rng.standard_normal((b, l, h, p)))
    if bias:
        kw["dt_bias"] = f(np.log(np.expm1(rng.uniform(0.001, 0.1, h))))  # Mamba2's inverse-softplus init
    if softplus:
        kw["dt_softplus"] = True
    if dt_limit is not None:
        kw["dt_limit"] = dt_limit
    nfin = b
    if cu is not None:
        kw["cu_seqlens"] = np.asarray(cu)
        nfin = len(cu) - 1
    if init:
        kw["initial_states"] = f(rng.standard_normal((nfin, h, p, n)))
    return kw


def _cases(rng):
    lens = rng.integers(1, 200, 5)
    cu = np.concatenate([[0], np.cumsum(lens)])
    return [
        ("plain b=2 l=64", make_case(rng)),
        ("groups g=2, D (h,)", make_case(rng, h=6, g=2, D="h")),
        ("D (h,p), z gate", make_case(rng, D="hp", z=True)),
        ("softplus + dt_bias", make_case(rng, softplus=True, bias=True)),
        ("dt_limit (0.01, 0.05)", make_case(rng, softplus=True, bias=True, dt_limit=(0.01, 0.05))),
        ("initial + final states, l=300", make_case(rng, l=300, g=2, h=4, init=True)),
        ("varlen 5 seqs of 1-199", make_case(rng, b=1, l=int(cu[-1]), h=4, g=2, D="h", z=True, softplus=True, bias=True,
                                         init=True, cu=cu)),
        ("l=1", make_case(rng, l=1, init=True, D="h")),
        ("odd sizes p=13 n=20", make_case(rng, p=13, n=20, z=True, D="hp", init=True)),
        ("bench-like h=24 p=64 n=128 l=256", make_case(rng, b=1, l=256, h=24, p=64, n=128, D="h", softplus=True, bias=True)),
        ("l=8192", make_case(rng, b=1, l=8192, h=2, D="h", z=True, softplus=True, bias=True, init=True)),
        ("float64 everything", make_case(rng, l=70, h=4, g=2, D="hp", z=True, softplus=True, bias=True, init=True,
                                     dtype=np.float64)),
    ]


def validate(backends=None, seed: int = 0, show_progress: bool = False) -> list[Check]:
    """Every backend against the float64 sequential oracle (``ssd_sequential_ref``): y and the
    final states at mamba_ssm's fp32 tolerance (rtol 6e-4, atol 2e-3; float64 inputs at 1e-9),
    plus decode continuity: prefill + 10 ``selective_state_update`` steps vs one scan."""
    rng = np.random.default_rng(seed)
    checks = []
    for name, kw in progress(list(_cases(rng)), desc="validate ssd", enabled=show_progress):
        f64 = kw["x"].dtype == np.float64
        rtol, atol = (1e-9, 1e-9) if f64 else (6e-4, 2e-3)
        yr, fr = ssd_sequential_ref(**kw)
        for b in available_backends(op, backends):
            y, fin = selective_scan(**kw, return_final_states=True, chunk_size=64, backend=b)
            ea, er, ok = compare(y, yr, rtol=rtol, atol=atol)
            fa, fe, fok = compare(fin, fr, rtol=rtol, atol=atol)
            want = np.float64 if f64 else np.float32
            dt_ok = y.dtype == want and fin.dtype == want
            checks.append(Check("ssd", b, name, max(ea, fa), max(er, fe), f"rtol {rtol:g} / atol {atol:g}",
                                ok and fok and dt_ok, f"y err {ea:.2g}, state err {fa:.2g}" + ("" if dt_ok else f"; dtype {y.dtype}")))
    kw = make_case(rng, b=3, l=50, h=6, g=3, D="hp", z=True, softplus=True, bias=True, init=True, dt_limit=(0.002, 0.08))
    yr, fr = ssd_sequential_ref(**kw)
    extra = {k: kw[k] for k in ("D", "dt_bias", "dt_softplus", "dt_limit")}
    for b in available_backends(step_op, backends):
        head = {k: (v[:, :40] if k in ("x", "dt", "B", "C", "z") else v) for k, v in kw.items()}
        _, state = selective_scan(**head, return_final_states=True, backend=b)
        errs = []
        ok = True
        for t in range(40, 50):
            yt = selective_state_update(state, kw["x"][:, t], kw["dt"][:, t], kw["A"], kw["B"][:, t], kw["C"][:, t],
                                        z=kw["z"][:, t], **extra, backend=b)
            ea, _, o = compare(yt, yr[:, t], rtol=6e-4, atol=2e-3)
            errs.append(ea)
            ok &= o
        fa, fe, fok = compare(state, fr, rtol=6e-4, atol=2e-3)
        checks.append(Check("ssd_step", b, "prefill 40 + 10 decode steps = one scan", max(max(errs), fa), fe,
                            "rtol 0.0006 / atol 0.002", ok and fok, f"y err {max(errs):.2g}, state err {fa:.2g}"))
    return checks


# ------------------------------------------------------------------------------ panel

def panel_spec() -> PanelSpec:
    """The ComparisonPanel's view: prefill scans (dt_softplus, dt_bias, D), every backend
    against the numpy chunked SSD at the fp32 (rtol 6e-4, atol 2e-3) / fp64 (1e-9) tolerance."""
    sizes = {f"l={l} h={h} p={p} n={n}": {"b": 1, "l": l, "h": h, "p": p, "n": n}
             for l, h, p, n in ((128, 8, 32, 64), (1024, 24, 64, 128), (4096, 24, 64, 128))}

    def make(size, dtype, seed):
        inp = make_inputs(size["b"], size["l"], seed, h=size["h"], p=size["p"], n=size["n"])
        return {k: v.astype(dtype) for k, v in inp.items()}

    def call(backend, inp):
        return selective_scan(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], D=inp["D"], dt_bias=inp["dt_bias"],
                              dt_softplus=True, chunk_size=TORCH_CHUNKS[0], backend=backend)

    def check(out, ref, dtype):
        rtol, atol = (1e-9, 1e-9) if np.dtype(dtype) == np.float64 else (6e-4, 2e-3)
        ea, _, ok = compare(out, ref, rtol=rtol, atol=atol)
        return ea, ok, f"rtol {rtol:g} / atol {atol:g}"

    def throughput(size, ms):
        return flops(size["b"] * size["l"], size["h"], size["p"], size["n"]) / (ms * 1e-3) / 1e9, "GFLOP/s"

    return PanelSpec(name="ssd", backends=list(op.backends), reference="numpy", sizes=sizes, dtypes=["float32", "float64"],
                     make=make, call=call, check=check, explain=lambda size: explain("ssd", **size), throughput=throughput,
                     work=lambda size: flops(size["b"] * size["l"], size["h"], size["p"], size["n"]))


def _train_call(kw: dict, seed: int, backend: str):
    """One training step through the scan on ``backend``, for calibration: a call that returns
    the gradients of every input of ``kw`` from ``(y * w).sum()``."""
    import torch

    leaves = {k: torch.from_numpy(v).requires_grad_() for k, v in kw.items()}
    w = torch.from_numpy(np.random.default_rng(seed + 2).standard_normal(kw["x"].shape, dtype=np.float32))

    def call():
        for v in leaves.values():
            v.grad = None
        (selective_scan(**leaves, backend=backend) * w).sum().backward()
        return {k: v.grad for k, v in leaves.items()}

    return call


def calibration(scan_sizes=((1, 64, 4, 16, 16), (1, 512, 8, 64, 64), (1, 1024, 24, 64, 128), (1, 2048, 24, 64, 128)),
                step_sizes=((1, 4, 16, 16), (4, 24, 64, 128), (16, 24, 64, 128)), seed: int = 0):
    """For ``aura-lab calibrate``: the scan, its training step (forward + backward) and the
    decode step over small-to-bench sizes."""
    scan_cases, train_cases = [], []
    for b, l, h, p, n in scan_sizes:
        kw = make_inputs(b, l, seed, h=h, p=p, n=n, g=1)
        size = {"b": b, "l": l, "h": h, "p": p, "n": n}
        scan_cases.append((size, {be: (lambda be=be, kw=kw: selective_scan(**kw, backend=be)) for be in op.backends}))
        train_cases.append((size, {be: _train_call(kw, seed, be) for be in train_op.backends}))
    step_cases = []
    rng = np.random.default_rng(seed)
    for b, h, p, n in step_sizes:
        kw = make_inputs(b, 1, seed, h=h, p=p, n=n, g=1)
        one = {k: (v[:, 0] if k in ("x", "dt", "B", "C") else v) for k, v in kw.items() if k not in ("z", "initial_states")}
        state = rng.standard_normal((b, h, p, n)).astype(np.float32)
        calls = {be: (lambda be=be, one=one, state=state: selective_state_update(state.copy(), **one, backend=be))
                 for be in step_op.backends}
        step_cases.append(({"b": b, "h": h, "p": p, "n": n}, calls))
    return [("ssd", op, scan_cases), ("ssd_train", train_op, train_cases), ("ssd_step", step_op, step_cases)]
