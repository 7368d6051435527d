"""Pairwise distances: ``pairwise_distances(X, Y=None, metric="euclidean")``.

The first stage of Vietoris-Rips persistence, and a kernel worth having fast on its own.
Backends: ``numpy`` (the float64 reference), ``torch`` (exact, no GEMM identity),
``mojo`` (``kernels/distance.mojo``: tiled, SIMD, both cores) and ``max`` (the same
kernel as a MAX graph custom op, ``kernels/aura_kernels/distance_ops.mojo``).

Every metric is one row of ``METRIC_INFO`` (as scipy's ``MetricInfo``), which both the
dispatch and the checks read: its float64 numpy definition, its torch form, and whether
float32 output must be computed in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import _arrays as A
from . import _max as max_backend
from . import _control, _mojo
from ._abi import ADDR, INT, Enumeration, KernelABI
from .registry import Op

# float32 squares overflow past |x - y| ~ 1.8e19; beyond this magnitude (sq)euclidean runs in float64
_F32_SAFE = 1e18


def _cosine(x, y):
    dot = x @ y.T
    nx = np.sqrt(np.einsum("ij,ij->i", x, x))
    ny = np.sqrt(np.einsum("ij,ij->i", y, y))
    return np.clip(1.0 - dot / (nx[:, None] * ny[None, :]), 0.0, 2.0)


def _sq_sum(x, y):
    diff = x[:, None, :] - y[None, :, :]
    return np.einsum("ijk,ijk->ij", diff, diff)


def _chebyshev(x, y):
    a = np.abs(x[:, None, :] - y[None, :, :])
    a[np.isnan(a)] = 0.0  # scipy keeps max(0, |x_k - y_k| ...) and NaN never wins
    return a.max(axis=-1, initial=0.0)


def _torch_cosine(x, y):
    x64, y64 = x.double(), y.double()
    nx, ny = x64.norm(dim=1), y64.norm(dim=1)
    return (1.0 - (x64 @ y64.T) / (nx[:, None] * ny[None, :])).clamp(0.0, 2.0)


def _torch_euclidean(x, y):
    import torch

    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")


def _torch_cityblock(x, y):
    import torch

    return torch.cdist(x, y, p=1.0)


def _torch_chebyshev(x, y):
    """max_k |x_k - y_k| skipping NaN terms as scipy does (torch's p=inf propagates NaN)."""
    import torch

    rows = max(1, (8 << 20) // max(1, y.shape[0] * x.shape[1]))
    parts = [x.new_zeros((x.shape[0], y.shape[0]))] if x.shape[1] == 0 else [
        (x[i : i + rows, None, :] - y[None]).abs().nan_to_num(nan=0.0, posinf=float("inf")).amax(-1)
        for i in range(0, x.shape[0], rows)
    ]
    return torch.cat(parts)


@dataclass(frozen=True)
class MetricInfo:
    """One metric: ``numpy(x, y)`` is its float64 definition on a block of rows, ``torch(x, y)``
    its torch form; ``squares``: sums squares (float32 can overflow, see ``_F32_SAFE``);
    ``float64``: float32 results are computed in float64 (1 - cos near 0 cancels; scipy too)."""

    name: str
    numpy: Callable
    torch: Callable
    squares: bool = False
    float64: bool = False


_METRIC_INFOS = (
    MetricInfo("euclidean", lambda x, y: np.sqrt(_sq_sum(x, y)), _torch_euclidean, squares=True),
    MetricInfo("sqeuclidean", _sq_sum, lambda x, y: _torch_euclidean(x, y) ** 2, squares=True),
    MetricInfo("cosine", _cosine, _torch_cosine, float64=True),
    MetricInfo("cityblock", lambda x, y: np.abs(x[:, None, :] - y[None, :, :]).sum(axis=-1), _torch_cityblock),
    MetricInfo("chebyshev", _chebyshev, _torch_chebyshev),
)
METRIC_INFO = {m.name: m for m in _METRIC_INFOS}
METRICS = tuple(METRIC_INFO)
METRIC = Enumeration("metric", METRICS)
#: the kernel's parameter block (kernels/aura_kernels/distance_abi.mojo is generated from it)
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


def pairwise_distances(X, Y=None, metric: str = "euclidean", *, backend: str = "auto", out=None):
    """Distances between the rows of ``X`` and the rows of ``Y``.

    Args:
        X: ``(n, d)`` numpy array or torch tensor.
        Y: ``(m, d)``, or None for ``X`` against itself (the result is exactly symmetric).
        metric: ``euclidean``, ``sqeuclidean``, ``cosine`` (1 - cosine similarity, clamped to
            [0, 2]; NaN for a zero vector, as scipy), ``cityblock`` or ``chebyshev``.
        backend: ``"auto"``, ``"numpy"``, ``"torch"``, ``"mojo"`` or ``"max"``.
        out: optional ``(n, m)`` array (or CPU tensor) of the result dtype to write into.

    Returns:
        ``(n, m)`` distances. float32 inputs give float32 (bfloat16 tensors count as float32:
        they are read as float32); float64 gives float64; every other numeric dtype (float16,
        ints, bool) is cast to float64, as scipy does.
        numpy in gives numpy out; torch tensors in give a torch tensor out.

    NaN and inf propagate as in ``scipy.spatial.distance.cdist`` (chebyshev skips NaN
    terms, as scipy does). Euclidean distances use the direct formula, never the GEMM
    identity, so near-duplicate points keep full relative precision in float32.

    Examples:
        >>> import numpy as np, aura_lab
        >>> aura_lab.pairwise_distances(np.array([[0., 0.], [3., 4.]]), backend="numpy")
        array([[0., 5.],
               [5., 0.]])
    """
    if not isinstance(metric, str) or metric not in METRIC_INFO:
        raise ValueError(f"metric: unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")
    kind = A.kind_of(X, Y, out)
    device = A.device_of(X, Y)
    if device != "cpu":
        return op.run(backend, DistanceProblem(X, Y, metric, None, device))
    prob, res = _validate(X, Y, metric, out, kind)
    if res.size:
        op.run(backend, prob)
    else:
        op.check_backend(backend)
    if out is not None:
        return out
    return A.wrap(res, kind)


def _validate(X, Y, metric: str, out, kind: str) -> tuple[DistanceProblem, np.ndarray]:
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


# ------------------------------------------------------------------------- numpy reference

@op.impl("numpy")
def _numpy(prob: DistanceProblem) -> np.ndarray:
    """The definition, in float64, ~64 MiB of temporaries per block of rows."""
    x = np.asarray(prob.X, np.float64)
    y = x if prob.Y is None else np.asarray(prob.Y, np.float64)
    rows = max(1, (8 << 20) // max(1, y.shape[0] * max(1, x.shape[1])))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for i in range(0, x.shape[0], rows):
            prob.out[i : i + rows] = METRIC_INFO[prob.metric].numpy(x[i : i + rows], y)
    return prob.out


# ------------------------------------------------------------------------------- torch

@op.impl("torch", devices=("cpu", "cuda"))
def _torch(prob: DistanceProblem):
    import torch

    X, Y = prob.X, prob.Y
    x = X if A.is_torch(X) else A.to_torch(X)
    y = x if Y is None else (Y if A.is_torch(Y) else A.to_torch(Y))
    out_dtype = torch.float32 if (x.dtype == torch.float32 and y.dtype == torch.float32) else torch.float64
    info = METRIC_INFO[prob.metric]
    dtype = torch.float64 if out_dtype == torch.float32 and info.squares and not _f32_safe(x, y) else out_dtype
    with torch.inference_mode():
        r = info.torch(x.to(dtype), y.to(device=x.device, dtype=dtype)).to(out_dtype)
    if prob.out is None:  # a device tensor
        return r
    prob.out[...] = r.numpy()
    return prob.out


# -------------------------------------------------------------------------------- mojo

def _kernel_operands(prob: DistanceProblem):
    """(compute dtype, x, y) as C-contiguous arrays for the Mojo kernel (y is x for Y=None)."""
    work = _work_dtype(prob)
    x = A.c_contiguous(prob.X, work)
    y = x if prob.Y is None else A.c_contiguous(prob.Y, work)
    return work, x, y


@op.impl("mojo")
def _mojo_impl(prob: DistanceProblem) -> np.ndarray:
    kernel = _mojo.load("distance")
    work, x, y = _kernel_operands(prob)
    res = prob.out
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    direct = res.dtype == work and res.flags.c_contiguous
    tgt = res if direct else np.empty((n, m), work)
    block = ABI.pack(dtype_bits=work.itemsize * 8, metric=METRIC.id(prob.metric), x=x, y=y,
                     result=tgt, n=n, m=m, d=d, ldo=m, threads=op.threads(prob.size))
    _control.native(lambda: kernel.cdist(block.address))
    if not direct:
        res[...] = tgt
    return res


@op.impl("max")
def _max_impl(prob: DistanceProblem) -> np.ndarray:
    max_backend.check_op("distance")
    work, x, y = _kernel_operands(prob)

    def build(dev, pkg):
        from max.dtype import DType
        from max.graph import Graph, TensorType, ops

        dt = DType.float32 if work == np.float32 else DType.float64
        types = [TensorType(dt, ["n", "d"], dev), TensorType(dt, ["m", "d"], dev),
                 TensorType(DType.int64, [len(ABI.fields) + 1], dev)]
        with Graph(f"aura_distance_{work.name}", input_types=types, custom_extensions=[pkg]) as g:
            a, b, params = g.inputs
            out_t = TensorType(dt, [a.tensor.shape[0], b.tensor.shape[0]], dev)
            g.output(ops.custom("aura_pairwise_distances", dev, [a, b, params], out_types=[out_t])[0])
        return g

    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    # addresses are presence flags for the MAX op (1 = given): it substitutes its tensors'
    params = ABI.pack(dtype_bits=work.itemsize * 8, metric=METRIC.id(prob.metric), x=1, y=1, result=1,
                      n=n, m=m, d=d, ldo=m, threads=op.threads(prob.size)).words()
    (r,) = max_backend.run(("distance", work.name), build, x, y, params)
    prob.out[...] = r
    return prob.out


def _warm_max():
    for dtype in (np.float32, np.float64):
        pairwise_distances(np.zeros((2, 3), dtype), backend="max")


max_backend.WARMUPS["distance"] = _warm_max


def _work_dtype(prob: DistanceProblem) -> np.dtype:
    return work_dtype(prob.out.dtype, prob.metric, prob.X, prob.Y)


def work_dtype(out_dtype, metric: str, X: np.ndarray, Y: np.ndarray | None = None) -> np.dtype:
    """The dtype the kernels compute ``metric`` between the rows of X and Y (None: X) in, for
    an ``out_dtype`` result: float32 output runs in float64 for metrics whose ``MetricInfo``
    says so, and for squares whose float32 values could overflow."""
    info = METRIC_INFO[metric]
    if out_dtype == np.float32 and (info.float64 or (info.squares and not _f32_safe(X, Y))):
        return np.dtype(np.float64)
    return np.dtype(out_dtype)


def _f32_safe(X, Y) -> bool:
    """True when float32 squares of coordinate differences cannot overflow (also False
    for NaN/inf maxima, which are harmless to compute in float64)."""
    for a in (X, Y):
        if a is None or a.shape[0] * a.shape[1] == 0:
            continue
        big = float(a.abs().max()) if A.is_torch(a) else float(np.max(np.abs(a)))
        if not big < _F32_SAFE:
            return False
    return True
