"""Mamba-2 selective scan (SSD): ``selective_scan`` and the decode step ``selective_state_update``.

The recurrence, per head ``h`` (group ``g = h // (H / G)``), head channel ``p`` and state
index ``n`` (``kernels-references.md`` §1.1)::

    dt_t      = clamp(softplus?(dt[t, h] + dt_bias[h]), *dt_limit)
    h_t[p, n] = exp(dt_t * A[h]) * h_{t-1}[p, n] + dt_t * x[t, h, p] * B[t, g, n]
    y[t, h, p] = sum_n C[t, g, n] * h_t[p, n] + D[h(, p)] * x[t, h, p]
    y         *= silu(z[t, h, p])                                   # when z is given

with exactly the arguments and semantics of mamba_ssm's ``mamba_chunk_scan_combined``
(dt is always clamped to ``dt_limit``, default ``(0, inf)``, so dt >= 0).

Implementations (one ``Op`` each for the scan and the decode step):

* ``ssd_sequential_ref``: the plain recurrence in float64, the oracle every backend is
  tested against.
* ``ssd_minimal_discrete``: a 1:1 numpy port of mamba_ssm's ``ssd_minimal.py`` (the
  paper's four-block chunked SSD), generalized to lengths that are not a multiple of the
  chunk size. The ``numpy`` backend is built on it.
* ``torch``: the chunked SSD in torch (CPU and CUDA; autograd flows through it).
* ``mojo``: ``kernels/ssd.mojo`` (compute in ``kernels/aura_kernels/ssd.mojo``), the
  sequential recurrence with the state resident in cache, SIMD over ``n`` and both cores.
* ``max``: the same kernel as a MAX graph custom op (``aura_kernels/ssd_ops.mojo``).

Policies:

* dtypes: float16 / bfloat16 / float32 inputs compute in float32 (dt processing, decays,
  states and accumulations); float64 computes in float64. ``y`` has the dtype of ``x``;
  final states are float32 (float64 for float64 ``x``).
* ``A`` must be <= 0 (the decay ``exp(dt * A)`` never exceeds 1; the Mamba2 module uses
  ``A = -exp(A_log)``). Every exponent of a decay is clamped to <= 0 (upstream fix
  state-spaces/mamba#713), which is then exact rounding protection, not a change of result.
* NaN / inf: inputs are not scanned for finiteness. Non-finite values propagate through
  IEEE arithmetic into ``y`` and the states, and never raise or crash: every output that
  depends on a non-finite input is non-finite. The chunked backends (numpy, torch) can in
  addition turn the earlier outputs of the *same chunk* non-finite (``0 * NaN`` in the
  masked intra-chunk matmul); the sequential mojo kernel never touches earlier outputs.
* ``cu_seqlens`` must start at 0, be non-decreasing and end at ``l``; empty sequences are
  allowed (their final state is their initial state, or zeros).
* Non-contiguous inputs are accepted (copied to contiguous where a backend needs it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _arrays as A_
from ._abi import ADDR, BOOL, FLOAT, INT, KernelABI
from . import _max as max_backend
from ._mojo import num_threads
from ._registry import Op

INF = float("inf")

op = Op("ssd")
#: the scan kernel's parameter block (kernels/aura_kernels/ssd_abi.mojo is generated from it);
#: tokens flattened over (b, l); addresses 0 = absent; init == fin updates a state in place
ABI = KernelABI("ssd", [("dtype_bits", INT), ("x", ADDR), ("dt", ADDR), ("A", ADDR), ("B", ADDR), ("C", ADDR),
                        ("D", ADDR), ("d_per_p", BOOL), ("z", ADDR), ("dt_bias", ADDR), ("softplus", BOOL),
                        ("lo", FLOAT), ("hi", FLOAT), ("offsets", ADDR), ("nseq", INT), ("h", INT), ("p", INT),
                        ("n", INT), ("g", INT), ("init", ADDR), ("fin", ADDR), ("y", ADDR), ("threads", INT)])
step_op = Op("ssd_step")


# ------------------------------------------------------------------------ validation

_FLOAT_NAMES = "float16, bfloat16, float32 or float64"


def _arr(a, name: str):
    """A torch tensor as is, anything else as a numpy array; must be floating point."""
    if a is None:
        return None
    if not A_.is_torch(a):
        a = A_.to_numpy(a, name)
        if a.dtype.kind != "f":
            raise TypeError(f"{name}: expected a floating-point array ({_FLOAT_NAMES}), got dtype {a.dtype}")
        return a
    if not a.dtype.is_floating_point:
        raise TypeError(f"{name}: expected a floating-point tensor ({_FLOAT_NAMES}), got {a.dtype}")
    return a


def _is_f64(a) -> bool:
    if A_.is_torch(a):
        import torch

        return a.dtype == torch.float64
    return a.dtype == np.float64


def _shape(a, name: str, expected: tuple, what: str):
    if tuple(a.shape) != tuple(expected):
        raise ValueError(f"{name}: expected shape {what} = {tuple(expected)}, got {tuple(a.shape)}")


def _ndim(a, name: str, nd: int, what: str):
    if a.ndim != nd:
        raise ValueError(f"{name}: expected a {nd}-D array {what}, got {a.ndim}-D shape {tuple(a.shape)}")


def _check_A(A):
    """A <= 0 (NaN passes and propagates)."""
    bad = bool((A > 0).any())
    if bad:
        raise ValueError("A: must be <= 0 (the decay exp(dt * A) must not exceed 1; Mamba-2 uses A = -exp(A_log))")


def _check_dt_limit(dt_limit) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in dt_limit)
    except (TypeError, ValueError):
        raise TypeError(f"dt_limit: expected a pair of floats (lo, hi), got {dt_limit!r}") from None
    if not (0.0 <= lo <= hi):  # also rejects NaN
        raise ValueError(f"dt_limit: expected 0 <= lo <= hi, got {dt_limit!r}")
    return lo, hi


def _check_cu_seqlens(cu, b: int, l: int) -> np.ndarray:
    if A_.is_torch(cu):
        if cu.is_floating_point() or cu.is_complex():
            raise TypeError(f"cu_seqlens: expected an integer tensor, got {cu.dtype}")
        cu = cu.detach().cpu().numpy()
    else:
        cu = np.asarray(cu)
    if cu.dtype.kind not in "iu":
        raise TypeError(f"cu_seqlens: expected an integer array, got dtype {cu.dtype}")
    if cu.ndim != 1 or cu.shape[0] < 2:
        raise ValueError(f"cu_seqlens: expected a 1-D array (num_seqs + 1,) with at least 2 entries, got shape {cu.shape}")
    if b != 1:
        raise ValueError(f"cu_seqlens: packed sequences need a batch of one (b == 1), got b = {b}")
    cu = cu.astype(np.int64)
    if cu[0] != 0:
        raise ValueError(f"cu_seqlens: must start at 0, got {cu[0]}")
    if np.any(np.diff(cu) < 0):
        raise ValueError("cu_seqlens: must be non-decreasing (empty sequences are allowed)")
    if cu[-1] != l:
        raise ValueError(f"cu_seqlens: must end at the sequence length l = {l}, got {cu[-1]}")
    return cu


@dataclass
class Scan:
    """A validated ``selective_scan`` problem. Arrays are in the caller's kind (numpy arrays
    or torch tensors), not yet cast; ``offsets`` gives the token range of each sequence
    in the flattened ``(b * l)`` token axis."""

    x: object
    dt: object
    A: object
    B: object
    C: object
    D: object
    z: object
    dt_bias: object
    initial_states: object
    dt_softplus: bool
    dt_lo: float
    dt_hi: float
    varlen: bool
    offsets: np.ndarray  # (nseq + 1,) int64
    b: int
    l: int
    h: int
    p: int
    g: int
    n: int
    chunk_size: int
    f64: bool
    kind: str
    device: str

    @property
    def nseq(self) -> int:
        return len(self.offsets) - 1

    @property
    def compute_dtype(self) -> np.dtype:
        return np.dtype(np.float64 if self.f64 else np.float32)


def _validate_scan(x, dt, A, B, C, D, z, dt_bias, dt_softplus, dt_limit, initial_states, cu_seqlens, chunk_size) -> Scan:
    kind = A_.kind_of(x, dt, A, B, C, D, z, dt_bias, initial_states)
    device = A_.device_of(x, dt, A, B, C, D, z, dt_bias, initial_states)
    x, dt, A, B, C = _arr(x, "x"), _arr(dt, "dt"), _arr(A, "A"), _arr(B, "B"), _arr(C, "C")
    D, z, dt_bias, init = _arr(D, "D"), _arr(z, "z"), _arr(dt_bias, "dt_bias"), _arr(initial_states, "initial_states")
    _ndim(x, "x", 4, "(b, l, h, p)")
    b, l, h, p = (int(s) for s in x.shape)
    _ndim(B, "B", 4, "(b, l, g, n)")
    g, n = int(B.shape[2]), int(B.shape[3])
    if min(h, p, g, n) < 1:
        raise ValueError(f"x, B: h, p, g and n must be >= 1, got h={h}, p={p}, g={g}, n={n}")
    _shape(dt, "dt", (b, l, h), "(b, l, h)")
    _shape(A, "A", (h,), "(h,)")
    _shape(B, "B", (b, l, g, n), "(b, l, g, n)")
    _shape(C, "C", (b, l, g, n), "(b, l, g, n)")
    if h % g != 0:
        raise ValueError(f"B, C: the number of heads h = {h} must be a multiple of the number of groups g = {g}")
    if D is not None and tuple(D.shape) not in ((h,), (h, p)):
        raise ValueError(f"D: expected shape (h,) = ({h},) or (h, p) = ({h}, {p}), got {tuple(D.shape)}")
    if z is not None:
        _shape(z, "z", (b, l, h, p), "(b, l, h, p)")
    if dt_bias is not None:
        _shape(dt_bias, "dt_bias", (h,), "(h,)")
    lo, hi = _check_dt_limit(dt_limit)
    if not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
    if cu_seqlens is not None:
        offsets = _check_cu_seqlens(cu_seqlens, b, l)
        nseq = len(offsets) - 1
        if init is not None:
            _shape(init, "initial_states", (nseq, h, p, n), "(num_seqs, h, p, n)")
    else:
        offsets = np.arange(b + 1, dtype=np.int64) * l
        if init is not None:
            _shape(init, "initial_states", (b, h, p, n), "(b, h, p, n)")
    _check_A(A)
    return Scan(x, dt, A, B, C, D, z, dt_bias, init, bool(dt_softplus), lo, hi, cu_seqlens is not None, offsets,
                b, l, h, p, g, n, int(chunk_size), _is_f64(x), kind, device)


def _needs_grad(*arrays) -> bool:
    if not any(A_.is_torch(a) for a in arrays if a is not None):
        return False
    import torch

    return torch.is_grad_enabled() and any(A_.is_torch(a) and a.requires_grad for a in arrays if a is not None)


def _grad_backend(backend: str, what: str) -> str:
    if backend in ("auto", "torch"):
        return "torch"
    raise RuntimeError(f"{what}: backend {backend!r} does not propagate gradients and an input requires grad; "
                       "use backend='torch' (or 'auto'), or call it under torch.no_grad()")


def _out_kind(arr, kind: str, like):
    """Convert a backend result to the caller's kind and the dtype of ``like`` (None: keep)."""
    if kind == "torch":
        import torch

        t = arr if A_.is_torch(arr) else torch.from_numpy(np.ascontiguousarray(arr))
        if like is not None:
            t = t.to(like.dtype if A_.is_torch(like) else _torch_dtype(like.dtype))
        return t
    a = arr.detach().cpu().numpy() if A_.is_torch(arr) else arr
    if like is not None and a.dtype != like.dtype:
        a = a.astype(like.dtype)
    return a


def _torch_dtype(np_dtype):
    import torch

    return {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32,
            np.dtype(np.float64): torch.float64}[np.dtype(np_dtype)]


# ----------------------------------------------------------------------- public API

def selective_scan(x, dt, A, B, C, *, D=None, z=None, dt_bias=None, dt_softplus: bool = False,
                   dt_limit=(0.0, INF), initial_states=None, cu_seqlens=None, return_final_states: bool = False,
                   chunk_size: int = 256, backend: str = "auto"):
    """The Mamba-2 selective scan (``mamba_chunk_scan_combined`` semantics).

    Args:
        x: ``(b, l, h, p)`` input (batch, length, heads, head dim).
        dt: ``(b, l, h)`` time steps (before ``dt_bias`` / softplus / ``dt_limit``).
        A: ``(h,)`` per-head decay rate, ``<= 0``.
        B, C: ``(b, l, g, n)`` input / output projections, ``h % g == 0``; head ``i`` uses
            group ``i // (h // g)``.
        D: ``(h,)`` or ``(h, p)`` skip connection, ``y += D * x``.
        z: ``(b, l, h, p)`` gate, ``y *= silu(z)`` (applied after D).
        dt_bias: ``(h,)`` added to dt (with or without softplus).
        dt_softplus: apply ``softplus`` (identity above 20, as upstream) after the bias.
        dt_limit: ``(lo, hi)``, ``0 <= lo <= hi``; dt is always clamped to it.
        initial_states: ``(b, h, p, n)``, or ``(num_seqs, h, p, n)`` with ``cu_seqlens``.
        cu_seqlens: ``(num_seqs + 1,)`` integer offsets packing variable-length sequences
            into a batch of one (``b == 1``): starts at 0, non-decreasing, ends at ``l``.
            The state restarts at every boundary.
        return_final_states: also return the final states, ``(b, h, p, n)`` or
            ``(num_seqs, h, p, n)`` with ``cu_seqlens``.
        chunk_size: chunk length of the chunked SSD form (numpy and torch backends; the
            result does not depend on it beyond rounding).
        backend: ``"auto"``, ``"numpy"``, ``"torch"`` or ``"mojo"``. With an input that
            requires grad (and grad mode on), ``auto`` runs torch, the only backend that
            propagates gradients; another explicit backend raises ``RuntimeError``.

    Returns:
        ``y (b, l, h, p)`` in the dtype and array kind of ``x`` (torch in, torch out), or
        ``(y, final_states)``; final states are float32 (float64 for float64 ``x``).
    """
    prob = _validate_scan(x, dt, A, B, C, D, z, dt_bias, dt_softplus, dt_limit, initial_states, cu_seqlens, chunk_size)
    if _needs_grad(prob.x, prob.dt, prob.A, prob.B, prob.C, prob.D, prob.z, prob.dt_bias, prob.initial_states):
        backend = _grad_backend(backend, "selective_scan")
    itemsize = 8 if prob.f64 else 4
    A_.check_memory(itemsize * (3 * prob.b * prob.l * prob.h * prob.p + 2 * prob.nseq * prob.h * prob.p * prob.n),
                    f"selective_scan of x {tuple(prob.x.shape)}")
    size = {"b": prob.b, "l": prob.l, "h": prob.h, "p": prob.p, "n": prob.n}
    y, final = op.run(backend, prob, size=size, device=prob.device)
    y = _out_kind(y, prob.kind, prob.x)
    if not return_final_states:
        return y
    return y, _out_kind(final, prob.kind, None)


# ------------------------------------------------------------------- numpy references

def softplus(v):
    """log(1 + exp(v)), the identity above 20 (as mamba_ssm's kernels)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(v <= 20.0, np.log1p(np.exp(np.minimum(v, 20.0))), v)


def silu(v):
    with np.errstate(over="ignore", invalid="ignore"):
        return v / (1.0 + np.exp(-v))


def process_dt(dt, dt_bias=None, dt_softplus=False, dt_limit=(0.0, INF)):
    """dt + dt_bias, softplus, clamp to dt_limit (NaN stays NaN)."""
    v = dt if dt_bias is None else dt + dt_bias
    if dt_softplus:
        v = softplus(v)
    return np.clip(v, dt_limit[0], dt_limit[1])


def _heads(M, h: int):
    """(..., g, n) -> (..., h, n): head i uses group i // (h // g)."""
    return np.repeat(M, h // M.shape[-2], axis=-2)


def _epilogue(y, x, D, z):
    if D is not None:
        y = y + (D[:, None] if D.ndim == 1 else D) * x
    if z is not None:
        y = y * silu(z)
    return y


def ssd_sequential_ref(x, dt, A, B, C, *, D=None, z=None, dt_bias=None, dt_softplus=False, dt_limit=(0.0, INF),
                       initial_states=None, cu_seqlens=None):
    """The oracle: the plain sequential recurrence of the module docstring, in float64.

    Same arguments as ``selective_scan`` (numpy arrays, or anything ``np.asarray`` takes);
    returns ``(y (b, l, h, p), final_states (b or num_seqs, h, p, n))``, both float64.
    """
    f = lambda a: None if a is None else np.asarray(a.detach().cpu().float() if A_.is_torch(a) else a, np.float64)  # noqa: E731
    x, dt, A, B, C, D, z, dt_bias, init = map(f, (x, dt, A, B, C, D, z, dt_bias, initial_states))
    b, l, h, p = x.shape
    n = B.shape[-1]
    dtp = process_dt(dt, dt_bias, dt_softplus, dt_limit)
    Bh, Ch = _heads(B, h), _heads(C, h)  # (b, l, h, n)
    if cu_seqlens is None:
        runs = [(slice(None), 0, l, slice(None))]  # all batches at once
    else:
        cu = np.asarray(cu_seqlens, np.int64)
        runs = [(slice(0, 1), cu[i], cu[i + 1], slice(i, i + 1)) for i in range(len(cu) - 1)]
    nfin = b if cu_seqlens is None else len(runs)
    final = np.zeros((nfin, h, p, n))
    y = np.zeros((b, l, h, p))
    with np.errstate(all="ignore"):
        for bsl, t0, t1, ssl in runs:
            s = np.zeros_like(final[ssl]) if init is None else init[ssl].copy()  # (nb, h, p, n)
            for t in range(t0, t1):
                dA = np.exp(np.minimum(dtp[bsl, t] * A, 0.0))  # (nb, h)
                s = dA[..., None, None] * s + (dtp[bsl, t, :, None] * x[bsl, t])[..., None] * Bh[bsl, t, :, None, :]
                y[bsl, t] = np.einsum("bhpn,bhn->bhp", s, Ch[bsl, t])
            final[ssl] = s
        y = _epilogue(y, x, D, z)
    return y, final


def segsum(x):
    """Stable segment sum (ssd_minimal.py): ``out[..., i, j] = sum(x[..., j+1 : i+1])`` for
    ``i >= j`` and ``-inf`` above the diagonal, computed as a masked cumsum (never the
    difference of two cumsums)."""
    T = x.shape[-1]
    x = np.broadcast_to(x[..., None], (*x.shape, T))  # repeat "... d -> ... d e"
    x = np.where(np.tril(np.ones((T, T), bool), -1), x, 0.0)
    x_segsum = np.cumsum(x, axis=-2)
    return np.where(np.tril(np.ones((T, T), bool), 0), x_segsum, -np.inf)


def ssd_minimal_discrete(X, A, B, C, block_len, initial_states=None, *, state_passing: str = "matmul"):
    """Chunked SSD, a 1:1 port of mamba_ssm ``modules/ssd_minimal.py`` (the paper's Listing 1).

    Inputs are already discretized: ``X = x * dt`` ``(b, l, h, p)``, ``A = A * dt``
    ``(b, l, h)``, ``B, C`` ``(b, l, h, n)`` (per head). ``initial_states (b, h, p, n)``.
    Unlike upstream, ``l`` need not be a multiple of ``block_len``: the tail is padded
    with ``X = A = B = C = 0``, steps that leave the state unchanged (decay 1, no input),
    so the final state is exact. Every decay exponent is clamped to <= 0.

    ``state_passing="matmul"`` is upstream's step 3 (one matmul with the lower-triangular
    chunk-decay matrix); ``"loop"`` runs the same recurrence chunk by chunk, as upstream's
    Triton ``_state_passing_fwd`` does. Same result, but with a NaN/inf in a late chunk the
    matmul form also poisons every earlier chunk (``0 * NaN`` above the diagonal), the loop
    does not; the numpy backend uses the loop.

    Returns ``(Y (b, l, h, p), final_state (b, h, p, n))``.
    """
    b, l = X.shape[:2]
    pad = (-l) % block_len
    if pad:
        X, A, B, C = (np.concatenate([M, np.zeros((b, pad, *M.shape[2:]), M.dtype)], axis=1) for M in (X, A, B, C))
    c = X.shape[1] // block_len
    # rearrange into blocks / chunks: "b (c l) ... -> b c l ..."
    X, A, B, C = (M.reshape(b, c, block_len, *M.shape[2:]) for M in (X, A, B, C))
    A = A.transpose(0, 3, 1, 2)  # "b c l h -> b h c l"
    A_cumsum = np.cumsum(A, axis=-1)
    # 1. the output of each intra-chunk (diagonal blocks)
    L = np.exp(segsum(A))
    Y_diag = np.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", C, B, L, X, optimize=True)
    # 2. the state of each chunk (right term of the low-rank factorization of the off-diagonal blocks)
    decay_states = np.exp(np.minimum(A_cumsum[:, :, :, -1:] - A_cumsum, 0.0))
    states = np.einsum("bclhn,bhcl,bclhp->bchpn", B, decay_states, X, optimize=True)
    # 3. the inter-chunk SSM recurrence: true states at chunk boundaries
    if initial_states is None:
        initial_states = np.zeros((b, 1, *states.shape[2:]), states.dtype)  # (upstream: zeros_like(states[:, :1]), empty when l == 0)
    else:
        initial_states = initial_states[:, None]
    states = np.concatenate([initial_states, states], axis=1)
    if state_passing == "matmul":
        decay_chunk = np.exp(segsum(np.pad(A_cumsum[:, :, :, -1], ((0, 0), (0, 0), (1, 0)))))
        new_states = np.einsum("bhzc,bchpn->bzhpn", decay_chunk, states, optimize=True)
    elif state_passing == "loop":
        new_states = [states[:, 0]]
        for k in range(c):  # h_{k+1} = exp(sum of A over chunk k) h_k + chunk state k
            new_states.append(np.exp(A_cumsum[:, :, k, -1])[..., None, None] * new_states[-1] + states[:, k + 1])
        new_states = np.stack(new_states, axis=1)
    else:
        raise ValueError(f"state_passing: expected 'matmul' or 'loop', got {state_passing!r}")
    states, final_state = new_states[:, :-1], new_states[:, -1]
    # 4. state -> output conversion per chunk (left term of the low-rank factorization)
    state_decay_out = np.exp(A_cumsum)
    Y_off = np.einsum("bclhn,bchpn,bhcl->bclhp", C, states, state_decay_out, optimize=True)
    Y = (Y_diag + Y_off).reshape(b, c * block_len, *X.shape[3:])  # "b c l h p -> b (c l) h p"
    return Y[:, :l], final_state


def _np(a, dtype):
    return None if a is None else np.ascontiguousarray(A_.to_numpy(a, "input"), dtype=dtype)


def _check_chunk_memory(prob: Scan, itemsize: int) -> None:
    """The chunked form holds a few (b, h, l, chunk) decay / score blocks at once."""
    q = min(prob.chunk_size, max(1, prob.l))
    A_.check_memory(6 * itemsize * prob.b * prob.h * (prob.l + q) * q,
                    f"the chunked SSD of x {tuple(prob.x.shape)} with chunk_size={prob.chunk_size}")


@op.impl("numpy")
def _numpy(prob: Scan):
    """The chunked SSD (``ssd_minimal_discrete``) per sequence, in the compute dtype."""
    dtype = prob.compute_dtype
    _check_chunk_memory(prob, dtype.itemsize)
    x, dt, A, B, C, D, z, bias, init = (_np(a, dtype) for a in (prob.x, prob.dt, prob.A, prob.B, prob.C, prob.D,
                                                                  prob.z, prob.dt_bias, prob.initial_states))
    h = prob.h
    with np.errstate(all="ignore"):
        dtp = process_dt(dt, bias, prob.dt_softplus, (prob.dt_lo, prob.dt_hi)).astype(dtype)
        T = prob.b * prob.l
        xf, dtf = x.reshape(T, h, prob.p), dtp.reshape(T, h)
        Bf, Cf = B.reshape(T, prob.g, prob.n), C.reshape(T, prob.g, prob.n)
        y = np.empty((T, h, prob.p), dtype)
        final = np.empty((prob.nseq, h, prob.p, prob.n), dtype)
        runs = [(0, prob.b)] if not prob.varlen else [(i, i + 1) for i in range(prob.nseq)]
        for s0, s1 in runs:  # whole batch at once, or one packed sequence at a time
            if prob.varlen:
                t0, t1 = prob.offsets[s0], prob.offsets[s1]
                shp = lambda M: M[t0:t1][None]  # noqa: E731
            else:
                shp = lambda M: M.reshape(prob.b, prob.l, *M.shape[1:])  # noqa: E731
            xs, ds = shp(xf), shp(dtf)
            Y, fs = ssd_minimal_discrete(xs * ds[..., None], A * ds, _heads(shp(Bf), h), _heads(shp(Cf), h),
                                         prob.chunk_size, None if init is None else init[s0:s1], state_passing="loop")
            y[prob.offsets[s0]:prob.offsets[s1]] = Y.reshape(-1, h, prob.p)
            final[s0:s1] = fs
        y = _epilogue(y.reshape(x.shape), x, D, z).astype(dtype, copy=False)
    return y, final


# ------------------------------------------------------------------------------- torch

def _t(a, device, dtype):
    """A torch tensor on ``device`` in ``dtype`` (autograd flows through ``.to``)."""
    import torch

    if a is None:
        return None
    if not A_.is_torch(a):
        a = torch.from_numpy(np.ascontiguousarray(a))
    return a.to(device=device, dtype=dtype)


def _segsum_torch(x):
    """Stable segment sum (masked cumsum), as ``segsum`` / ssd_minimal.py."""
    import torch

    T = x.size(-1)
    x = x[..., None].expand(*x.shape, T)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=-1)
    x = x.masked_fill(~mask, 0)
    x_segsum = torch.cumsum(x, dim=-2)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=0)
    return x_segsum.masked_fill(~mask, -torch.inf)


def ssd_chunked_torch(x, dt, A, B, C, chunk_size: int, initial_states=None):
    """Chunked SSD in torch with groups, for already processed ``dt``.

    x ``(b, l, h, p)``, dt ``(b, l, h)`` (after bias / softplus / clamp), A ``(h,)``,
    B, C ``(b, l, g, n)``, initial_states ``(b, h, p, n)``. Returns ``(y, final_states)``.
    The four blocks of ``ssd_minimal_discrete``, with ``C^T B`` computed once per group
    and every contraction a batched matmul; decay exponents clamped to <= 0.
    """
    import torch
    import torch.nn.functional as F

    b, l, h, p = x.shape
    g, n = B.shape[-2:]
    if l == 0:
        return x.new_zeros((b, 0, h, p)), (x.new_zeros((b, h, p, n)) if initial_states is None else initial_states.clone())
    Q = chunk_size
    pad = (-l) % Q
    if pad:  # zero steps at the end: decay 1, no input (exact, see ssd_minimal_discrete)
        x, B, C = (F.pad(M, (0, 0, 0, 0, 0, pad)) for M in (x, B, C))
        dt = F.pad(dt, (0, 0, 0, pad))
    c = x.shape[1] // Q
    hg = h // g
    a = (dt * A).reshape(b, c, Q, h).permute(0, 3, 1, 2)  # (b, h, c, Q)
    a_cs = torch.cumsum(a, dim=-1)
    X = (x * dt[..., None]).reshape(b, c, Q, g, hg, p).permute(0, 1, 3, 4, 2, 5)  # (b, c, g, hg, Q, p)
    Bc = B.reshape(b, c, Q, g, n).permute(0, 1, 3, 2, 4)  # (b, c, g, Q, n)
    Cc = C.reshape(b, c, Q, g, n).permute(0, 1, 3, 2, 4)
    per_head = lambda M: M.permute(0, 2, 1, *range(3, M.dim())).reshape(b, c, g, hg, *M.shape[3:])  # noqa: E731
    # 1. diagonal blocks: y = (C B^T * L) X
    L = per_head(torch.exp(_segsum_torch(a)))  # (b, c, g, hg, Q, Q)
    CB = (Cc @ Bc.transpose(-1, -2))[:, :, :, None]  # (b, c, g, 1, Q, Q)
    Y = (CB * L) @ X
    # 2. chunk states: sum_s decay(s -> end) B_s X_s
    decay_states = per_head(torch.exp(torch.clamp(a_cs[..., -1:] - a_cs, max=0.0)))  # (b, c, g, hg, Q)
    states = (X * decay_states[..., None]).transpose(-1, -2) @ Bc[:, :, :, None]  # (b, c, g, hg, p, n)
    states = states.reshape(b, c, h, p, n)
    # 3. inter-chunk recurrence
    init = states.new_zeros((b, 1, h, p, n)) if initial_states is None else initial_states[:, None]
    states = torch.cat([init, states], dim=1)  # (b, c + 1, h, p, n)
    chunk_decay = torch.exp(a_cs[..., -1])  # (b, h, c): decay across each whole chunk
    new_states = [states[:, 0]]
    for k in range(c):  # chunk by chunk, as upstream's _state_passing_fwd (no 0 * NaN from later chunks)
        new_states.append(chunk_decay[:, :, k, None, None] * new_states[-1] + states[:, k + 1])
    final = new_states[-1]
    prev = torch.stack(new_states[:-1], dim=1).reshape(b, c, g, hg, p, n)
    # 4. off-diagonal blocks: y += exp(a_cs) C h_prev
    Y = Y + (Cc[:, :, :, None] @ prev.transpose(-1, -2)) * per_head(torch.exp(a_cs))[..., None]
    y = Y.reshape(b, c, h, Q, p).permute(0, 1, 3, 2, 4).reshape(b, c * Q, h, p)[:, :l]
    return y, final


def _process_dt_torch(dt, bias, softplus_: bool, lo: float, hi: float):
    import torch.nn.functional as F

    v = dt if bias is None else dt + bias
    if softplus_:
        v = F.softplus(v, beta=1.0, threshold=20.0)
    return v.clamp(lo, hi)


def _epilogue_torch(y, x, D, z):
    import torch.nn.functional as F

    if D is not None:
        y = y + (D[:, None] if D.dim() == 1 else D) * x
    if z is not None:
        y = y * F.silu(z)
    return y


@op.impl("torch", devices=("cpu", "cuda"))
def _torch(prob: Scan):
    import torch

    dev = torch.device(prob.device) if prob.device != "cpu" else torch.device("cpu")
    if prob.device != "cpu":
        dev = next(a.device for a in (prob.x, prob.dt, prob.A, prob.B, prob.C, prob.D, prob.z, prob.dt_bias,
                                      prob.initial_states) if A_.is_torch(a) and a.device.type != "cpu")
    dtype = torch.float64 if prob.f64 else torch.float32
    if dev.type == "cpu":
        _check_chunk_memory(prob, 8 if prob.f64 else 4)
    x, dt, A, B, C, D, z, bias, init = (_t(a, dev, dtype) for a in (prob.x, prob.dt, prob.A, prob.B, prob.C, prob.D,
                                                                     prob.z, prob.dt_bias, prob.initial_states))
    dtp = _process_dt_torch(dt, bias, prob.dt_softplus, prob.dt_lo, prob.dt_hi)
    if not prob.varlen:
        y, final = ssd_chunked_torch(x, dtp, A, B, C, prob.chunk_size, init)
    else:
        ys, finals = [], []
        for i in range(prob.nseq):
            t0, t1 = int(prob.offsets[i]), int(prob.offsets[i + 1])
            yi, fi = ssd_chunked_torch(x[:, t0:t1], dtp[:, t0:t1], A, B[:, t0:t1], C[:, t0:t1], prob.chunk_size,
                                       None if init is None else init[i:i + 1])
            ys.append(yi)
            finals.append(fi)
        y, final = torch.cat(ys, dim=1), torch.cat(finals, dim=0)
    return _epilogue_torch(y, x, D, z), final


# -------------------------------------------------------------------------------- mojo

def _kernel():
    from . import _mojo as M

    return M.load("ssd")


def _padded(a: np.ndarray, npad: int) -> np.ndarray:
    """Zero-pad the last axis (n) to npad: zero B, C and state lanes never change the result."""
    if a.shape[-1] == npad:
        return a
    out = np.zeros((*a.shape[:-1], npad), a.dtype)
    out[..., : a.shape[-1]] = a
    return out


def _kernel_inputs(prob, dtype):
    """(dtype, padded n, contiguous x, dt, A, B, C, D, z, dt_bias of ``dtype``) for the Mojo
    kernel of a scan or a decode step: B and C zero-padded on n to the kernel's vector width."""
    dtype = np.dtype(dtype)
    lanes = _kernel().lanes(8 * dtype.itemsize)
    npad = -(-prob.n // lanes) * lanes
    x, dt, A, D, z, bias = (_np(a, dtype) for a in (prob.x, prob.dt, prob.A, prob.D, prob.z, prob.dt_bias))
    B, C = (_padded(_np(a, dtype), npad) for a in (prob.B, prob.C))
    return dtype, npad, (x, dt, A, B, C, D, z, bias)


def _mojo_call(dtype, x, dt, A, B, C, D, z, bias, softplus, lo, hi, offsets, h, p, g, n, init, fin, y, tokens):
    """Run kernels/ssd.mojo on validated, C-contiguous arrays of ``dtype`` (n already padded)."""
    addr = lambda a: 0 if a is None else a.ctypes.data  # noqa: E731
    threads = 1 if tokens * h * p * n < (1 << 16) else num_threads()
    block = ABI.pack(dtype_bits=8 * dtype.itemsize, x=addr(x), dt=addr(dt), A=addr(A), B=addr(B), C=addr(C),
                     D=addr(D), d_per_p=D is not None and D.ndim == 2, z=addr(z), dt_bias=addr(bias),
                     softplus=bool(softplus), lo=float(lo), hi=float(hi), offsets=offsets.ctypes.data,
                     nseq=len(offsets) - 1, h=h, p=p, n=n, g=g, init=addr(init), fin=fin.ctypes.data,
                     y=y.ctypes.data, threads=threads)
    _kernel().scan(block.address)


@op.impl("mojo")
def _mojo(prob: Scan):
    """kernels/ssd.mojo: the sequential recurrence, SIMD over n, both cores."""
    dtype, npad, (x, dt, A, B, C, D, z, bias) = _kernel_inputs(prob, prob.compute_dtype)
    init = None if prob.initial_states is None else _padded(_np(prob.initial_states, dtype), npad)
    y = np.empty((prob.b, prob.l, prob.h, prob.p), dtype)
    fin = np.empty((prob.nseq, prob.h, prob.p, npad), dtype)
    offsets = np.ascontiguousarray(prob.offsets, np.int64)
    _mojo_call(dtype, x, dt, A, B, C, D, z, bias, prob.dt_softplus, prob.dt_lo, prob.dt_hi, offsets,
               prob.h, prob.p, prob.g, npad, init, fin, y, prob.b * prob.l)
    return y, (fin if npad == prob.n else np.ascontiguousarray(fin[..., : prob.n]))


# --------------------------------------------------------------------------------- max

def _max_call(dtype, x, dt, A, B, C, D, z, bias, softplus, lo, hi, offsets, h, p, g, n, init, tokens):
    """The same kernel as a MAX graph op (kernels/aura_kernels/ssd_ops.mojo): returns (y, fin).

    Arrays as for ``_mojo_call``, with x/z/y seen as (tokens, h, p). Absent optional inputs
    go in as 1-element placeholders with their flag off, so one graph per dtype serves all.
    """
    from . import _max as MX

    MX.check_op("ssd")
    nseq = len(offsets) - 1
    one = lambda a, shape: np.zeros(shape, dtype) if a is None else a  # noqa: E731
    D2 = None if D is None else D.reshape(h, -1)
    state = np.zeros((nseq, h, p, n), dtype) if init is None else init
    # addresses are presence flags here (1 present, 0 absent): the op substitutes its tensors' addresses
    params = ABI.pack(dtype_bits=8 * dtype.itemsize, x=1, dt=1, A=1, B=1, C=1, D=D is not None,
                      d_per_p=D is not None and D.ndim == 2, z=z is not None, dt_bias=bias is not None,
                      softplus=bool(softplus), lo=float(lo), hi=float(hi), offsets=1, nseq=nseq, h=h, p=p, n=n, g=g,
                      init=init is not None, fin=1, y=1,
                      threads=1 if tokens * h * p * n < (1 << 16) else num_threads()).words()
    inputs = [x.reshape(tokens, h, p), dt.reshape(tokens, h), A, B.reshape(tokens, g, n), C.reshape(tokens, g, n),
              one(D2, (1, 1)), one(None if z is None else z.reshape(tokens, h, p), (1, 1, 1)), one(bias, (1,)),
              offsets, state, params]

    def build(dev, pkg):
        from max.dtype import DType
        from max.graph import Graph, TensorType, ops

        dt_ = DType.float32 if dtype == np.float32 else DType.float64
        T = lambda *dims, d=dt_: TensorType(d, list(dims), dev)  # noqa: E731
        types = [T("T", "h", "p"), T("T", "h"), T("h"), T("T", "g", "n"), T("T", "g", "n"), T("dh", "dp"),
                 T("zT", "zh", "zp"), T("bh"), T("S1", d=DType.int64), T("S", "h", "p", "n"),
                 T(len(ABI.fields) + 1, d=DType.int64)]
        with Graph(f"aura_ssd_{dtype.name}", input_types=types, custom_extensions=[pkg]) as gr:
            vals = list(gr.inputs)
            outs = ops.custom("aura_ssd_scan", dev, vals, out_types=[vals[0].type, vals[9].type])
            gr.output(*outs)
        return gr

    y, fin = MX.run(("ssd", dtype.name), build, *inputs)
    return y, fin


@op.impl("max")
def _max(prob: Scan):
    """kernels/aura_kernels/ssd_ops.mojo: the mojo kernel as a MAX graph custom op."""
    dtype, npad, (x, dt, A, B, C, D, z, bias) = _kernel_inputs(prob, prob.compute_dtype)
    init = None if prob.initial_states is None else _padded(_np(prob.initial_states, dtype), npad)
    offsets = np.ascontiguousarray(prob.offsets, np.int64)
    y, fin = _max_call(dtype, x, dt, A, B, C, D, z, bias, prob.dt_softplus, prob.dt_lo, prob.dt_hi, offsets,
                       prob.h, prob.p, prob.g, npad, init, prob.b * prob.l)
    return y.reshape(prob.b, prob.l, prob.h, prob.p), np.ascontiguousarray(fin[..., : prob.n])


def _warm_max():
    for dtype in (np.float32, np.float64):
        z = lambda *s: np.zeros(s, dtype)  # noqa: E731
        selective_scan(z(1, 2, 2, 4), z(1, 2, 2), -np.ones(2, dtype), z(1, 2, 1, 4), z(1, 2, 1, 4), backend="max")


max_backend.WARMUPS["ssd"] = _warm_max


# ------------------------------------------------------------------------ decode step

@dataclass
class Step:
    """A validated ``selective_state_update`` problem (arrays in the caller's kind)."""

    state: object
    x: object
    dt: object
    A: object
    B: object
    C: object
    D: object
    z: object
    dt_bias: object
    dt_softplus: bool
    dt_lo: float
    dt_hi: float
    b: int
    h: int
    p: int
    g: int
    n: int
    f64: bool
    kind: str
    device: str


def selective_state_update(state, x, dt, A, B, C, *, D=None, z=None, dt_bias=None, dt_softplus: bool = False,
                           dt_limit=(0.0, INF), backend: str = "auto"):
    """One decode step of the scan: updates ``state`` in place and returns ``y``.

    Args:
        state: ``(b, h, p, n)`` writable numpy array or torch tensor (floating point),
            e.g. the final states of a prefill ``selective_scan``; updated in place.
        x: ``(b, h, p)``; dt: ``(b, h)``; A: ``(h,)``, ``<= 0``; B, C: ``(b, g, n)``;
        D: ``(h,)`` or ``(h, p)``; z: ``(b, h, p)``; dt_bias: ``(h,)``.
        dt_softplus, dt_limit: as in ``selective_scan`` (dt is clamped to ``dt_limit`` here
            too, so that a prefill followed by decode steps equals one scan).
        backend: ``"auto"``, ``"numpy"``, ``"torch"`` or ``"mojo"``.

    Returns:
        ``y (b, h, p)`` in the dtype and kind of ``x``. Computes in float32 (float64 for
        float64 ``x``) and stores the new state in ``state``'s own dtype.
    """
    kind = A_.kind_of(state, x, dt, A, B, C, D, z, dt_bias)
    device = A_.device_of(state, x, dt, A, B, C, D, z, dt_bias)
    if A_.is_torch(state):
        if not state.dtype.is_floating_point:
            raise TypeError(f"state: expected a floating-point tensor ({_FLOAT_NAMES}), got {state.dtype}")
        if state.requires_grad and state.is_leaf:
            raise ValueError("state: must not require grad (it is updated in place)")
    elif isinstance(state, np.ndarray):
        if state.dtype.kind != "f":
            raise TypeError(f"state: expected a floating-point array ({_FLOAT_NAMES}), got dtype {state.dtype}")
        if not state.flags.writeable:
            raise ValueError("state: array is read-only (it is updated in place)")
    else:
        raise TypeError(f"state: expected a numpy array or torch tensor (updated in place), got {type(state).__name__}")
    x, dt, A, B, C = _arr(x, "x"), _arr(dt, "dt"), _arr(A, "A"), _arr(B, "B"), _arr(C, "C")
    D, z, dt_bias = _arr(D, "D"), _arr(z, "z"), _arr(dt_bias, "dt_bias")
    _ndim(state, "state", 4, "(b, h, p, n)")
    b, h, p, n = (int(s) for s in state.shape)
    _ndim(B, "B", 3, "(b, g, n)")
    g = int(B.shape[1])
    if min(h, p, g, n) < 1:
        raise ValueError(f"state, B: h, p, g and n must be >= 1, got h={h}, p={p}, g={g}, n={n}")
    _shape(x, "x", (b, h, p), "(b, h, p)")
    _shape(dt, "dt", (b, h), "(b, h)")
    _shape(A, "A", (h,), "(h,)")
    _shape(B, "B", (b, g, n), "(b, g, n)")
    _shape(C, "C", (b, g, n), "(b, g, n)")
    if h % g != 0:
        raise ValueError(f"B, C: the number of heads h = {h} must be a multiple of the number of groups g = {g}")
    if D is not None and tuple(D.shape) not in ((h,), (h, p)):
        raise ValueError(f"D: expected shape (h,) = ({h},) or (h, p) = ({h}, {p}), got {tuple(D.shape)}")
    if z is not None:
        _shape(z, "z", (b, h, p), "(b, h, p)")
    if dt_bias is not None:
        _shape(dt_bias, "dt_bias", (h,), "(h,)")
    lo, hi = _check_dt_limit(dt_limit)
    _check_A(A)
    prob = Step(state, x, dt, A, B, C, D, z, dt_bias, bool(dt_softplus), lo, hi, b, h, p, g, n, _is_f64(x), kind, device)
    if _needs_grad(x, dt, A, B, C, D, z, dt_bias):
        backend = _grad_backend(backend, "selective_state_update")
    y = step_op.run(backend, prob, size={"b": b, "h": h, "p": p, "n": n}, device=device)
    return _out_kind(y, kind, x)


def _write_state(state, new):
    """Store ``new`` into the caller's ``state`` in place (any layout, its own dtype)."""
    if A_.is_torch(state):
        import torch

        with torch.no_grad():
            state.copy_(new if A_.is_torch(new) else torch.from_numpy(new))
    else:
        state[...] = new.detach().cpu().numpy() if A_.is_torch(new) else new


@step_op.impl("numpy")
def _step_numpy(prob: Step):
    """The recurrence of one step, in the compute dtype."""
    dtype = np.dtype(np.float64 if prob.f64 else np.float32)
    s, x, dt, A, B, C, D, z, bias = (_np(a, dtype) for a in (prob.state, prob.x, prob.dt, prob.A, prob.B, prob.C,
                                                              prob.D, prob.z, prob.dt_bias))
    with np.errstate(all="ignore"):
        dtp = process_dt(dt, bias, prob.dt_softplus, (prob.dt_lo, prob.dt_hi)).astype(dtype)  # (b, h)
        dA = np.exp(np.minimum(dtp * A, 0.0))
        Bh, Ch = _heads(B, prob.h), _heads(C, prob.h)  # (b, h, n)
        s = dA[..., None, None] * s + (dtp[..., None] * x)[..., None] * Bh[:, :, None, :]
        y = np.einsum("bhpn,bhn->bhp", s, Ch)
        y = _epilogue(y, x, D, z).astype(dtype, copy=False)
    _write_state(prob.state, s)
    return y


@step_op.impl("torch", devices=("cpu", "cuda"))
def _step_torch(prob: Step):
    """In place on the state when it already has the compute dtype and no gradient is needed;
    otherwise out of place (autograd flows to y) and copied back."""
    import torch

    st = prob.state
    dev = st.device if A_.is_torch(st) else torch.device("cpu")
    dtype = torch.float64 if prob.f64 else torch.float32
    x, dt, A, B, C, D, z, bias = (_t(a, dev, dtype) for a in (prob.x, prob.dt, prob.A, prob.B, prob.C, prob.D,
                                                               prob.z, prob.dt_bias))
    dtp = _process_dt_torch(dt, bias, prob.dt_softplus, prob.dt_lo, prob.dt_hi)
    dA = torch.exp(torch.clamp(dtp * A, max=0.0))[..., None, None]
    rep = prob.h // prob.g
    Bh, Ch = B.repeat_interleave(rep, dim=1)[:, :, None, :], C.repeat_interleave(rep, dim=1)[..., None]
    u = (dtp[..., None] * x)[..., None]  # (b, h, p, 1)
    view = st if A_.is_torch(st) else (torch.from_numpy(st) if st.dtype in (np.float32, np.float64) else None)
    grad = _needs_grad(x, dt, A, B, C)
    if view is not None and view.dtype == dtype and not grad:
        with torch.no_grad():
            view.mul_(dA).addcmul_(u, Bh)
            y = (view @ Ch)[..., 0]
    else:
        s = _t(st, dev, dtype).detach() * dA + u * Bh
        y = (s @ Ch)[..., 0]
        _write_state(st, s.detach())
    return _epilogue_torch(y, x, D, z)


@step_op.impl("max")
def _step_max(prob: Step):
    """The MAX scan op with one token per sequence; the final states are written back."""
    dtype, npad, (x, dt, A, B, C, D, z, bias) = _kernel_inputs(prob, np.float64 if prob.f64 else np.float32)
    init = _padded(np.ascontiguousarray(A_.to_numpy(prob.state, "state"), dtype), npad)
    y, fin = _max_call(dtype, x, dt, A, B, C, D, z, bias, prob.dt_softplus, prob.dt_lo, prob.dt_hi,
                       np.arange(prob.b + 1, dtype=np.int64), prob.h, prob.p, prob.g, npad, init, prob.b)
    _write_state(prob.state, fin[..., : prob.n])
    return y.reshape(prob.b, prob.h, prob.p)


@step_op.impl("mojo")
def _step_mojo(prob: Step):
    """The scan kernel with one token per sequence, updating the state in place (init == fin)."""
    dtype, npad, (x, dt, A, B, C, D, z, bias) = _kernel_inputs(prob, np.float64 if prob.f64 else np.float32)
    st = prob.state
    view = st
    if A_.is_torch(st):  # a zero-copy numpy view where numpy has the dtype (not bfloat16)
        view = st.detach().numpy() if str(st.dtype) in ("torch.float16", "torch.float32", "torch.float64") else None
    direct = (view is not None and view.dtype == dtype and view.flags.c_contiguous and view.flags.writeable
              and npad == prob.n)
    work = view if direct else _padded(np.ascontiguousarray(A_.to_numpy(st, "state"), dtype), npad)
    y = np.empty((prob.b, prob.h, prob.p), dtype)
    offsets = np.arange(prob.b + 1, dtype=np.int64)
    _mojo_call(dtype, x, dt, A, B, C, D, z, bias, prob.dt_softplus, prob.dt_lo, prob.dt_hi, offsets,
               prob.h, prob.p, prob.g, npad, work, work, y, prob.b)
    if not direct:
        _write_state(st, work[..., : prob.n])
    return y
