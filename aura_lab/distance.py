"""Pairwise distances: ``pairwise_distances(X, Y=None, metric="euclidean")``.

The first stage of Vietoris-Rips persistence, and a kernel worth having fast on its own.
Backends: ``numpy`` (the float64 reference), ``torch`` (exact, no GEMM identity),
``mojo`` (``kernels/distance.mojo``: tiled, SIMD, both cores) and ``max`` (the same
kernel as a MAX graph custom op, ``kernels/aura_kernels/distance_ops.mojo``).
"""

from __future__ import annotations


import numpy as np

from . import _arrays as A
from ._abi import ADDR, INT, Enumeration, KernelABI
from . import _max as max_backend
from ._mojo import num_threads
from ._registry import Op

METRICS = ("euclidean", "sqeuclidean", "cosine", "cityblock", "chebyshev")
METRIC = Enumeration("metric", METRICS)
#: the kernel's parameter block (kernels/aura_kernels/distance_abi.mojo is generated from it)
ABI = KernelABI("distance", [("dtype_bits", INT), ("metric", INT), ("x", ADDR), ("y", ADDR), ("result", ADDR),
                             ("n", INT), ("m", INT), ("d", INT), ("ldo", INT), ("threads", INT)], enums=(METRIC,))
# float32 squares overflow past |x - y| ~ 1.8e19; beyond this magnitude (sq)euclidean runs in float64
_F32_SAFE = 1e18

op = Op("distance")


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
        ``(n, m)`` distances. float32 inputs give float32; float64 gives float64; every
        other numeric dtype (float16, ints, bool) is cast to float64, as scipy does.
        numpy in gives numpy out; torch tensors in give a torch tensor out.

    NaN and inf propagate as in ``scipy.spatial.distance.cdist`` (chebyshev skips NaN
    terms, as scipy does). Euclidean distances use the direct formula, never the GEMM
    identity, so near-duplicate points keep full relative precision in float32.
    """
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(f"metric: unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")
    kind = A.kind_of(X, Y, out)
    device = A.device_of(X, Y)
    if device != "cpu":
        return op.run(backend, X, Y, metric, out, device=device)
    Xn = A.to_numpy(X, "X")
    Yn = Xn if Y is None else A.to_numpy(Y, "Y")
    if Xn.ndim != 2:
        raise ValueError(f"X: expected a 2-D array (n, d), got {Xn.ndim}-D shape {Xn.shape}")
    if Yn.ndim != 2:
        raise ValueError(f"Y: expected a 2-D array (m, d), got {Yn.ndim}-D shape {Yn.shape}")
    if Xn.shape[1] != Yn.shape[1]:
        raise ValueError(f"Y: dimension mismatch: X has d={Xn.shape[1]} columns, Y has {Yn.shape[1]}")
    n, m, d = Xn.shape[0], Yn.shape[0], Xn.shape[1]
    dtype = A.result_float_dtype(Xn, Yn)
    if out is not None:
        res = A.check_out(out, (n, m), dtype, kind)
    else:
        A.check_memory(n * m * dtype.itemsize, f"the ({n}, {m}) {dtype.name} distance matrix")
        res = np.empty((n, m), dtype)
    if n and m:
        op.run(backend, Xn, None if Y is None else Yn, metric, res, size={"n": n, "m": m, "d": d})
    if out is not None:
        return out
    return A.wrap(res, kind)


# ------------------------------------------------------------------------- numpy reference

def _numpy_block(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    """The definition, in float64, for a block of rows of x against all of y."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if metric == "cosine":
            dot = x @ y.T
            nx = np.sqrt(np.einsum("ij,ij->i", x, x))
            ny = np.sqrt(np.einsum("ij,ij->i", y, y))
            return np.clip(1.0 - dot / (nx[:, None] * ny[None, :]), 0.0, 2.0)
        diff = x[:, None, :] - y[None, :, :]
        if metric in ("euclidean", "sqeuclidean"):
            s = np.einsum("ijk,ijk->ij", diff, diff)
            return np.sqrt(s) if metric == "euclidean" else s
        a = np.abs(diff)
        if metric == "cityblock":
            return a.sum(axis=-1)
        a[np.isnan(a)] = 0.0  # chebyshev: scipy keeps max(0, |x_k - y_k| ...) and NaN never wins
        return a.max(axis=-1, initial=0.0)


@op.impl("numpy")
def _numpy(X, Y, metric, res):
    x = np.asarray(X, np.float64)
    y = x if Y is None else np.asarray(Y, np.float64)
    rows = max(1, (8 << 20) // max(1, y.shape[0] * max(1, x.shape[1])))  # ~64 MiB temporaries
    for i in range(0, x.shape[0], rows):
        res[i : i + rows] = _numpy_block(x[i : i + rows], y, metric)


# ------------------------------------------------------------------------------- torch

@op.impl("torch", devices=("cpu", "cuda"))
def _torch(X, Y, metric, res):
    import torch

    on_device = A.is_torch(X) and X.device.type != "cpu"
    x = X if A.is_torch(X) else torch.from_numpy(np.ascontiguousarray(X))
    y = x if Y is None else (Y if A.is_torch(Y) else torch.from_numpy(np.ascontiguousarray(Y)))
    dtype = torch.float32 if (x.dtype == torch.float32 and y.dtype == torch.float32) else torch.float64
    with torch.inference_mode():
        out_dtype = dtype
        if dtype == torch.float32 and metric in ("euclidean", "sqeuclidean") and not _f32_safe(x, y):
            dtype = torch.float64
        x, y = x.to(dtype), y.to(device=x.device, dtype=dtype)
        if metric in ("euclidean", "sqeuclidean"):
            r = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
            r = r * r if metric == "sqeuclidean" else r
        elif metric == "cityblock":
            r = torch.cdist(x, y, p=1.0)
        elif metric == "chebyshev":
            r = _torch_chebyshev(x, y)
        else:
            x64, y64 = x.double(), y.double()
            nx, ny = x64.norm(dim=1), y64.norm(dim=1)
            r = (1.0 - (x64 @ y64.T) / (nx[:, None] * ny[None, :])).clamp(0.0, 2.0)
        r = r.to(out_dtype)
    if on_device:
        return r
    res[...] = r.numpy()


def _torch_chebyshev(x, y):
    """max_k |x_k - y_k| skipping NaN terms as scipy does (torch's p=inf propagates NaN)."""
    import torch

    rows = max(1, (8 << 20) // max(1, y.shape[0] * x.shape[1]))
    parts = [x.new_zeros((x.shape[0], y.shape[0]))] if x.shape[1] == 0 else [
        (x[i : i + rows, None, :] - y[None]).abs().nan_to_num(nan=0.0, posinf=float("inf")).amax(-1)
        for i in range(0, x.shape[0], rows)
    ]
    return torch.cat(parts)


# -------------------------------------------------------------------------------- mojo

@op.impl("mojo")
def _mojo(X, Y, metric, res):
    from . import _mojo as M

    kernel = M.load("distance")
    work = _work_dtype(X, Y, metric, res.dtype)
    x = A.c_contiguous(X, work)
    y = x if Y is None else A.c_contiguous(Y, work)
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    direct = res.dtype == work and res.flags.c_contiguous
    tgt = res if direct else np.empty((n, m), work)
    threads = 1 if n * m * max(d, 1) < (1 << 16) else num_threads()
    block = ABI.pack(dtype_bits=work.itemsize * 8, metric=METRIC.id(metric), x=x.ctypes.data, y=y.ctypes.data,
                     result=tgt.ctypes.data, n=n, m=m, d=d, ldo=m, threads=threads)
    kernel.cdist(block.address)
    if not direct:
        res[...] = tgt


@op.impl("max")
def _max(X, Y, metric, res):
    from . import _max as MX

    MX.check_op("distance")
    work = _work_dtype(X, Y, metric, res.dtype)

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

    x = A.c_contiguous(X, work)
    y = x if Y is None else A.c_contiguous(Y, work)
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    # addresses are presence flags here: the op substitutes its tensors' addresses
    params = ABI.pack(dtype_bits=work.itemsize * 8, metric=METRIC.id(metric), x=1, y=1, result=1,
                      n=n, m=m, d=d, ldo=m, threads=num_threads()).words()
    (r,) = MX.run(("distance", work.name), build, x, y, params)
    res[...] = r


def _warm_max():
    for dtype in (np.float32, np.float64):
        pairwise_distances(np.zeros((2, 3), dtype), backend="max")


max_backend.WARMUPS["distance"] = _warm_max


def _work_dtype(X, Y, metric: str, out_dtype: np.dtype) -> np.dtype:
    """The dtype the kernels compute in: float32 output runs in float64 for cosine
    (1 - cos near 0 cancels; scipy computes it in float64) and for (sq)euclidean inputs
    whose float32 squares could overflow."""
    if out_dtype == np.float32 and (metric == "cosine" or (metric in ("euclidean", "sqeuclidean") and not _f32_safe(X, Y))):
        return np.dtype(np.float64)
    return out_dtype


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
