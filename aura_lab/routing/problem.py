"""``route``'s validated problem, its result types and the balance statistics (see the
package docstring for the definitions)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import _arrays as A
from .._abi import ADDR, BOOL, FLOAT, INT, Enumeration, KernelABI
from ..registry import Op

SCORINGS = ("softmax", "sigmoid")
SCORING = Enumeration("scoring", SCORINGS)
#: the kernel's parameter block (kernels/aura_kernels/routing/abi.mojo is generated from it)
ABI = KernelABI("routing", [("logits", ADDR), ("T", INT), ("E", INT), ("k", INT), ("scoring", INT),
                            ("renormalize", BOOL), ("scale", FLOAT), ("bias", ADDR), ("n_groups", INT),
                            ("topk_groups", INT), ("capacity", INT), ("weights", ADDR), ("experts", ADDR),
                            ("counts", ADDR), ("perm", ADDR), ("offsets", ADDR), ("kept", ADDR), ("threads", INT)],
                enums=(SCORING,))

#: measured single-thread cost of one logit in the mojo kernel: 13 ms for T = 65536, E = 256
#: (docs/results.md, "mojo 1-thread")
op = Op("routing", work=lambda size: size["T"] * size["E"], ns_per_work=0.8)


@dataclass(frozen=True)
class RoutingProblem:
    """A validated ``route`` call, handed to every backend: ``logits (T, E)`` float32
    C-contiguous, and the routing parameters (``bias (E,)`` float32 finite or None;
    ``capacity`` slots per expert or None)."""

    logits: np.ndarray
    k: int
    scoring: str = "softmax"
    renormalize: bool = True
    scale: float = 1.0
    bias: np.ndarray | None = None
    n_groups: int | None = None
    topk_groups: int | None = None
    capacity: int | None = None
    device: str = "cpu"

    @property
    def size(self) -> dict:
        T, E = self.logits.shape
        return {"T": T, "E": E, "k": self.k}


class RouteArrays(NamedTuple):
    """What every backend returns (numpy): weights (T, k) float32, experts (T, k) int32,
    counts (E,), permutation (T*k,), offsets (E+1,) int64, kept (T, k) bool or None."""

    weights: np.ndarray
    experts: np.ndarray
    counts: np.ndarray
    permutation: np.ndarray
    offsets: np.ndarray
    kept: np.ndarray | None


def validate(logits, k, scoring, renormalize, scale, bias, n_groups, topk_groups, capacity_factor) -> RoutingProblem:
    """Every argument of ``route`` checked, before any backend runs."""
    L = _logits_array(logits)
    T, E = L.shape
    params = _params(E, T, k, scoring, renormalize, scale, bias, n_groups, topk_groups, capacity_factor)
    if T * params["k"] >= 2**31:
        raise ValueError(f"logits: T*k = {T * params['k']} assignments exceed the 2**31 - 1 limit")
    need = T * params["k"] * 25 + 16 * E
    if need > 64 << 20:  # reading /proc/meminfo costs ~20 us: only for large outputs
        A.check_memory(need, f"routing {T} tokens to {params['k']} experts")
    return RoutingProblem(np.ascontiguousarray(L, np.float32), **params)


def _as_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    return int(v)


def _as_real(v, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a real number, got {type(v).__name__}")
    try:
        f = float(v)
    except OverflowError:  # an int past float64's range (~1.8e308); not printed: str() refuses > 4300 digits
        raise ValueError(f"{name}: an int of {v.bit_length()} bits is too large for a float (max ~1.8e308)") from None
    if not math.isfinite(f):
        if np.isfinite(v):  # a finite np.longdouble past float64's range converts to inf silently
            raise ValueError(f"{name}: {str(v)} is too large for a float (max ~1.8e308)")
        raise ValueError(f"{name}: must be finite, got {f}")
    return f


def _logits_array(logits) -> np.ndarray:
    if A.is_torch(logits) and logits.device.type != "cpu":
        raise ValueError(f"logits: only CPU tensors are supported, got a {logits.device.type} tensor")
    L = A.to_numpy(logits, "logits")
    if L.ndim != 2:
        raise ValueError(f"logits: expected a 2-D array (T, E), got {L.ndim}-D shape {L.shape}")
    return L


def _params(E: int, T: int, k, scoring, renormalize, scale, bias, n_groups, topk_groups, capacity_factor) -> dict:
    k = _as_int(k, "k")
    if not 1 <= k <= E:
        raise ValueError(f"k: must be between 1 and the number of experts E={E}, got {k}")
    if not isinstance(scoring, str) or scoring not in SCORINGS:
        raise ValueError(f"scoring: unknown scoring {scoring!r}; valid: {', '.join(SCORINGS)}")
    if not isinstance(renormalize, (bool, np.bool_)):
        raise TypeError(f"renormalize: expected a bool, got {type(renormalize).__name__}")
    scale = _as_real(scale, "scale")
    b = None
    if bias is not None:
        if A.is_torch(bias) and bias.device.type != "cpu":
            raise ValueError(f"bias: only CPU tensors are supported, got a {bias.device.type} tensor")
        bn = A.to_numpy(bias, "bias")
        if bn.shape != (E,):
            raise ValueError(f"bias: expected shape ({E},) (one value per expert), got {bn.shape}")
        b = np.ascontiguousarray(bn, np.float32)
        if not np.all(np.isfinite(b)):
            raise ValueError("bias: must be finite (no NaN or inf)")
    if n_groups is None and topk_groups is not None:
        raise ValueError("topk_groups: needs n_groups")
    if n_groups is not None:
        n_groups = _as_int(n_groups, "n_groups")
        if n_groups < 1 or E % n_groups:
            raise ValueError(f"n_groups: must be a positive divisor of E={E}, got {n_groups}")
        if topk_groups is None:
            raise ValueError("topk_groups: required with n_groups (how many groups each token keeps)")
        topk_groups = _as_int(topk_groups, "topk_groups")
        if not 1 <= topk_groups <= n_groups:
            raise ValueError(f"topk_groups: must be between 1 and n_groups={n_groups}, got {topk_groups}")
        held = topk_groups * (E // n_groups)
        if k > held:
            raise ValueError(f"k: {k} experts are more than the {topk_groups} kept groups hold ({held})")
    capacity = None
    if capacity_factor is not None:
        cf = _as_real(capacity_factor, "capacity_factor")
        if cf <= 0:
            raise ValueError(f"capacity_factor: must be > 0, got {cf}")
        slots = cf * T * k / E
        if not slots < 2 ** 62:  # inf and NaN too
            raise ValueError(f"capacity_factor: {cf} gives a capacity of {slots:g} slots, past int64")
        capacity = math.ceil(slots)
    return dict(k=k, scoring=scoring, renormalize=bool(renormalize), scale=scale, bias=b, n_groups=n_groups,
                topk_groups=topk_groups, capacity=capacity)


def empty_result(prob: RoutingProblem) -> RouteArrays:
    """The routing of zero tokens."""
    k, E = prob.k, prob.logits.shape[1]
    kept = None if prob.capacity is None else np.zeros((0, k), bool)
    return RouteArrays(np.zeros((0, k), np.float32), np.zeros((0, k), np.int32), np.zeros(E, np.int64),
                       np.zeros(0, np.int64), np.zeros(E + 1, np.int64), kept)
