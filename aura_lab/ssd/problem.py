"""The validated problems of ``selective_scan`` and ``selective_state_update``: every
argument checked once, before any backend runs (see the package docstring for the policies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import _arrays as A_
from .._abi import ADDR, BOOL, FLOAT, INT, KernelABI
from ..registry import Op

INF = float("inf")

#: measured single-thread cost of one (token, head, channel, state) of the mojo scan: 31 ms
#: for l = 4096, h = 24, p = 64, n = 128 (docs/results.md, "mojo (1 thread)")
NS_PER_WORK = 0.04
op = Op("ssd", ns_per_work=NS_PER_WORK)
step_op = Op("ssd_step", ns_per_work=NS_PER_WORK, whole=True)  # never leaves state half advanced
#: the scan kernel's parameter block (kernels/aura_kernels/ssd/abi.mojo is generated from it);
#: tokens flattened over (b, l); addresses 0 = absent; init == fin updates a state in place.
#: For training the forward also saves what the backward needs: ``ckpt`` the state before
#: every ``chunk``-th token of each sequence, ``(chunks, h, p, n)``, and ``ypre`` the output
#: before the silu(z) gate, ``(T, h, p)`` (only with z).
ABI = KernelABI("ssd", [("dtype_bits", INT), ("x", ADDR), ("dt", ADDR), ("A", ADDR), ("B", ADDR), ("C", ADDR),
                        ("D", ADDR), ("d_per_p", BOOL), ("z", ADDR), ("dt_bias", ADDR), ("softplus", BOOL),
                        ("lo", FLOAT), ("hi", FLOAT), ("offsets", ADDR), ("nseq", INT), ("h", INT), ("p", INT),
                        ("n", INT), ("g", INT), ("init", ADDR), ("fin", ADDR), ("y", ADDR), ("threads", INT),
                        ("ckpt", ADDR), ("chunk", INT), ("ypre", ADDR)], version=2)
#: the backward's block (kernels/aura_kernels/ssd/grad_abi.mojo): ``fwd`` is the address of the
#: forward's block (with ``ckpt`` and ``ypre`` filled by that forward), ``gy`` / ``gfin`` the
#: incoming gradients of y and of the final states (0: none), the rest the gradients it
#: writes, each shaped as its input (0: not wanted / input absent)
GRAD_ABI = KernelABI("ssd_grad", [("fwd", ADDR), ("gy", ADDR), ("gfin", ADDR), ("gx", ADDR), ("gdt", ADDR),
                                  ("gA", ADDR), ("gB", ADDR), ("gC", ADDR), ("gD", ADDR), ("gz", ADDR),
                                  ("gbias", ADDR), ("ginit", ADDR)], module="ssd.grad_abi")


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


def _required(**arrays):
    """``_arr`` of each required array; None raises TypeError naming it."""
    for name, a in arrays.items():
        if a is None:
            raise TypeError(f"{name}: required, got None")
    return [_arr(a, name) for name, a in arrays.items()]


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
    except OverflowError:  # an int past float64's range (~1.8e308); not printed: repr() refuses > 4300 digits
        raise ValueError("dt_limit: a bound is an int too large for a float (max ~1.8e308; use float('inf') "
                         "for no upper limit)") from None
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


def _check_heads(h: int, p: int, g: int, n: int, D, dt_bias, dt_limit, A, where: str) -> tuple[float, float]:
    """The checks a scan and a decode step share; returns dt_limit as (lo, hi)."""
    if min(h, p, g, n) < 1:
        raise ValueError(f"{where}: h, p, g and n must be >= 1, got h={h}, p={p}, g={g}, n={n}")
    if h % g != 0:
        raise ValueError(f"B, C: the number of heads h = {h} must be a multiple of the number of groups g = {g}")
    _shape(A, "A", (h,), "(h,)")
    if D is not None and tuple(D.shape) not in ((h,), (h, p)):
        raise ValueError(f"D: expected shape (h,) = ({h},) or (h, p) = ({h}, {p}), got {tuple(D.shape)}")
    if dt_bias is not None:
        _shape(dt_bias, "dt_bias", (h,), "(h,)")
    return _check_dt_limit(dt_limit)


@dataclass(frozen=True)
class _Inputs:
    """What a scan and a decode step share. Arrays are in the caller's kind (numpy arrays or
    torch tensors), not yet cast."""

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

    @property
    def compute_dtype(self) -> np.dtype:
        return np.dtype(np.float64 if self.f64 else np.float32)


@dataclass(frozen=True)
class Scan(_Inputs):
    """A validated ``selective_scan``: ``offsets`` gives the token range of each sequence in
    the flattened ``(b * l)`` token axis."""

    l: int
    initial_states: object
    varlen: bool
    offsets: np.ndarray  # (nseq + 1,) int64
    chunk_size: int

    @property
    def nseq(self) -> int:
        return len(self.offsets) - 1

    @property
    def size(self) -> dict:
        return {"b": self.b, "l": self.l, "h": self.h, "p": self.p, "n": self.n}


@dataclass(frozen=True)
class Step(_Inputs):
    """A validated ``selective_state_update``: ``state (b, h, p, n)`` is updated in place."""

    state: object

    @property
    def size(self) -> dict:
        return {"b": self.b, "h": self.h, "p": self.p, "n": self.n}


class ScanOutput(NamedTuple):
    """What every scan backend returns: ``y (b, l, h, p)`` and the final states, numpy or torch."""

    y: object
    final_states: object


def validate_scan(x, dt, A, B, C, D, z, dt_bias, dt_softplus, dt_limit, initial_states, cu_seqlens, chunk_size) -> Scan:
    kind = A_.kind_of(x, dt, A, B, C, D, z, dt_bias, initial_states)
    device = A_.device_of(x, dt, A, B, C, D, z, dt_bias, initial_states)
    x, dt, A, B, C = _required(x=x, dt=dt, A=A, B=B, C=C)
    D, z, dt_bias, init = _arr(D, "D"), _arr(z, "z"), _arr(dt_bias, "dt_bias"), _arr(initial_states, "initial_states")
    _ndim(x, "x", 4, "(b, l, h, p)")
    b, l, h, p = (int(s) for s in x.shape)
    _ndim(B, "B", 4, "(b, l, g, n)")
    g, n = int(B.shape[2]), int(B.shape[3])
    lo, hi = _check_heads(h, p, g, n, D, dt_bias, dt_limit, A, "x, B")
    _shape(dt, "dt", (b, l, h), "(b, l, h)")
    _shape(B, "B", (b, l, g, n), "(b, l, g, n)")
    _shape(C, "C", (b, l, g, n), "(b, l, g, n)")
    if z is not None:
        _shape(z, "z", (b, l, h, p), "(b, l, h, p)")
    if not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive int, got {chunk_size!r}")
    # a chunk longer than the sequence is one chunk of it (never padding to 2**70 tokens)
    if cu_seqlens is not None:
        offsets = _check_cu_seqlens(cu_seqlens, b, l)
        if init is not None:
            _shape(init, "initial_states", (len(offsets) - 1, h, p, n), "(num_seqs, h, p, n)")
    else:
        offsets = np.arange(b + 1, dtype=np.int64) * l
        if init is not None:
            _shape(init, "initial_states", (b, h, p, n), "(b, h, p, n)")
    _check_A(A)
    return Scan(x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias, dt_softplus=bool(dt_softplus), dt_lo=lo, dt_hi=hi,
                b=b, h=h, p=p, g=g, n=n, f64=_is_f64(x), kind=kind, device=device, l=l, initial_states=init,
                varlen=cu_seqlens is not None, offsets=offsets, chunk_size=min(int(chunk_size), max(l, 1)))


def validate_step(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, dt_limit) -> Step:
    kind = A_.kind_of(state, x, dt, A, B, C, D, z, dt_bias)
    device = A_.device_of(state, x, dt, A, B, C, D, z, dt_bias)
    _check_state(state)
    x, dt, A, B, C = _required(x=x, dt=dt, A=A, B=B, C=C)
    D, z, dt_bias = _arr(D, "D"), _arr(z, "z"), _arr(dt_bias, "dt_bias")
    _ndim(state, "state", 4, "(b, h, p, n)")
    b, h, p, n = (int(s) for s in state.shape)
    _ndim(B, "B", 3, "(b, g, n)")
    g = int(B.shape[1])
    lo, hi = _check_heads(h, p, g, n, D, dt_bias, dt_limit, A, "state, B")
    _shape(x, "x", (b, h, p), "(b, h, p)")
    _shape(dt, "dt", (b, h), "(b, h)")
    _shape(B, "B", (b, g, n), "(b, g, n)")
    _shape(C, "C", (b, g, n), "(b, g, n)")
    if z is not None:
        _shape(z, "z", (b, h, p), "(b, h, p)")
    _check_A(A)
    # state is updated in place while the step reads its inputs
    A_.check_no_overlap(state, "state", x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias)
    return Step(x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias, dt_softplus=bool(dt_softplus), dt_lo=lo, dt_hi=hi,
                b=b, h=h, p=p, g=g, n=n, f64=_is_f64(x), kind=kind, device=device, state=state)


def _check_state(state) -> None:
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


def needs_grad(*arrays) -> bool:
    if not any(A_.is_torch(a) for a in arrays if a is not None):
        return False
    import torch

    return torch.is_grad_enabled() and any(A_.is_torch(a) and a.requires_grad for a in arrays if a is not None)


def check_grad_backend(backend: str, what: str, differentiable: tuple[str, ...]) -> None:
    """An input requires grad: ``backend`` must be ``auto`` or one that propagates gradients."""
    if backend != "auto" and backend not in differentiable:
        names = ", ".join(repr(b) for b in differentiable)
        raise RuntimeError(f"{what}: backend {backend!r} does not propagate gradients and an input requires grad; "
                           f"use one of {names} (or 'auto'), or call it under torch.no_grad()")


def write_state(state, new):
    """Store ``new`` into the caller's ``state`` in place (any layout, its own dtype)."""
    if A_.is_torch(state):
        import torch

        with torch.no_grad():
            state.copy_(new if A_.is_torch(new) else torch.from_numpy(new))
    else:
        state[...] = new.detach().cpu().numpy() if A_.is_torch(new) else new


def as_numpy(a, dtype):
    """``a`` (numpy or torch, or None) as a C-contiguous numpy array of ``dtype``."""
    return None if a is None else np.ascontiguousarray(A_.to_numpy(a, "input"), dtype=dtype)
