"""The ``mojo`` and ``max`` backends of ``pairwise_distances``: ``kernels/aura_kernels/distance/kernel.mojo``
and the same kernel as a MAX graph op (``kernels/aura_kernels/distance/ops.mojo``)."""

from __future__ import annotations

import numpy as np

from .. import _arrays as A
from .. import _max as max_backend
from .. import _control, _mojo
from .problem import ABI, METRIC, DistanceProblem, op


def _kernel_operands(prob: DistanceProblem):
    """(compute dtype, x, y) as C-contiguous arrays for the Mojo kernel (y is x for Y=None)."""
    work = prob.work_dtype
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
    from .api import pairwise_distances

    for dtype in (np.float32, np.float64):
        pairwise_distances(np.zeros((2, 3), dtype), backend="max")


max_backend.WARMUPS["distance"] = _warm_max
