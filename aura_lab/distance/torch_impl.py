"""The ``torch`` backend (CPU and CUDA): each metric's torch form (``metrics.METRIC_INFO``),
exact (no GEMM identity), squares in float64 where float32 could overflow."""

from __future__ import annotations

from .. import _arrays as A
from .metrics import METRIC_INFO
from .problem import DistanceProblem, f32_safe, op


@op.impl("torch", devices=("cpu", "cuda"))
def _torch(prob: DistanceProblem):
    import torch

    X, Y = prob.X, prob.Y
    x = X if A.is_torch(X) else A.to_torch(X)
    y = x if Y is None else (Y if A.is_torch(Y) else A.to_torch(Y))
    out_dtype = torch.float32 if (x.dtype == torch.float32 and y.dtype == torch.float32) else torch.float64
    info = METRIC_INFO[prob.metric]
    dtype = torch.float64 if out_dtype == torch.float32 and info.squares and not f32_safe(x, y) else out_dtype
    with torch.inference_mode():
        r = info.torch(x.to(dtype), y.to(device=x.device, dtype=dtype)).to(out_dtype)
    if prob.out is None:  # a device tensor
        return r
    prob.out[...] = r.numpy()
    return prob.out
