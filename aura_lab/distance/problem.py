"""A ``pairwise_distances`` call validated into one ``DistanceProblem``; the kernel's ABI; the
dtype the kernels compute in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _arrays as A
from .._abi import ADDR, INT, Enumeration, KernelABI
from ..registry import Op
from .metrics import METRIC_INFO, METRICS

#: float32 squares overflow past |x - y| ~ 1.8e19; beyond this magnitude (sq)euclidean runs in float64
F32_SAFE = 1e18

METRIC = Enumeration("metric", METRICS)
#: the kernel's parameter block (kernels/aura_kernels/distance/abi.mojo is generated from it)
ABI = KernelABI("distance", [("dtype_bits", INT), ("metric", INT), ("x", ADDR), ("y", ADDR), ("result", ADDR),
                             ("n", INT), ("m", INT), ("d", INT), ("ldo", INT), ("threads", INT)], enums=(METRIC,))

#: measured single-thread cost of one (row, column, coordinate) of the mojo kernel: 80 ms for
#: n = 8192, d = 64 (docs/results.md, "mojo 1-thread"). Two regimes for calibration: up to
#: d = 16 the output write bounds every backend (docs/results.md: mojo at the write-bandwidth floor at
#: d = 3), above it the arithmetic, and the backends rank differently at equal n * m * d.
op = Op("distance", ns_per_work=0.02, regime=lambda size: "write-bound" if size["d"] <= 16 else "compute-bound")


@dataclass(frozen=True)
class DistanceProblem:
    """A validated ``pairwise_distances`` call.

    ``X (n, d)``, ``Y (m, d)`` or None (X against itself): numpy arrays of any real dtype on
    the CPU, torch tensors on another device; ``out``: the ``(n, m)`` result buffer (CPU),
    which every implementation fills and returns (on a device: None, the tensor is returned)."""

    X: object
    Y: object
    metric: str
    out: np.ndarray | None
    device: str = "cpu"

    @property
    def size(self) -> dict:
        return {"n": self.X.shape[0], "m": (self.X if self.Y is None else self.Y).shape[0], "d": self.X.shape[1]}

    @property
    def work_dtype(self) -> np.dtype:
        return work_dtype(self.out.dtype, self.metric, self.X, self.Y)


def check_metric(metric) -> None:
    if not isinstance(metric, str) or metric not in METRIC_INFO:
        raise ValueError(f"metric: unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")


def validate(X, Y, metric: str, out, kind: str) -> tuple[DistanceProblem, np.ndarray]:
    """The CPU call as one problem, and the result array it fills (``out`` or a new one)."""
    Xn = A.to_numpy(X, "X")
    Yn = Xn if Y is None else A.to_numpy(Y, "Y")
    if Xn.ndim != 2:
        raise ValueError(f"X: expected a 2-D array (n, d), got {Xn.ndim}-D shape {Xn.shape}")
    if Yn.ndim != 2:
        raise ValueError(f"Y: expected a 2-D array (m, d), got {Yn.ndim}-D shape {Yn.shape}")
    if Xn.shape[1] != Yn.shape[1]:
        raise ValueError(f"Y: dimension mismatch: X has d={Xn.shape[1]} columns, Y has {Yn.shape[1]}")
    n, m = Xn.shape[0], Yn.shape[0]
    dtype = A.result_float_dtype(Xn, Yn)
    if out is not None:
        res = A.check_out(out, (n, m), dtype, kind)
        A.check_no_overlap(out, X=(X, Xn), Y=None if Y is None else (Y, Yn))
    else:
        A.check_memory(n * m * dtype.itemsize, f"the ({n}, {m}) {dtype.name} distance matrix")
        res = np.empty((n, m), dtype)
    return DistanceProblem(Xn, None if Y is None else Yn, metric, res), res


def work_dtype(out_dtype, metric: str, X: np.ndarray, Y: np.ndarray | None = None) -> np.dtype:
    """The dtype the kernels compute ``metric`` between the rows of X and Y (None: X) in, for
    an ``out_dtype`` result: float32 output runs in float64 for metrics whose ``MetricInfo``
    says so, and for squares whose float32 values could overflow."""
    info = METRIC_INFO[metric]
    if out_dtype == np.float32 and (info.float64 or (info.squares and not f32_safe(X, Y))):
        return np.dtype(np.float64)
    return np.dtype(out_dtype)


def f32_safe(X, Y) -> bool:
    """True when float32 squares of coordinate differences cannot overflow (also False
    for NaN/inf maxima, which are harmless to compute in float64)."""
    for a in (X, Y):
        if a is None or a.shape[0] * a.shape[1] == 0:
            continue
        big = float(a.abs().max()) if A.is_torch(a) else float(np.max(np.abs(a)))
        if not big < F32_SAFE:
            return False
    return True
