"""The ``mojo`` and ``max`` backends of ``route``: ``kernels/routing.mojo`` and the same
kernel as a MAX graph op (``kernels/aura_kernels/routing/ops.mojo``)."""

from __future__ import annotations

import math

import numpy as np

from .. import _max as max_backend
from .. import _control, _mojo
from .problem import ABI, SCORING, RouteArrays, RoutingProblem, op


def _block(spec: RoutingProblem, addr, **arrays):
    """The kernel's parameter block; ``addr`` maps each array (logits, bias and the outputs)
    to its address field."""
    T, E = spec.logits.shape
    return ABI.pack(T=T, E=E, k=spec.k, scoring=SCORING.id(spec.scoring), renormalize=spec.renormalize,
                    scale=spec.scale, bias=addr(spec.bias), n_groups=spec.n_groups or 0,
                    topk_groups=spec.topk_groups or 0, capacity=-1 if spec.capacity is None else spec.capacity,
                    threads=op.threads(spec.size), **{name: addr(a) for name, a in arrays.items()})


@op.impl("max")
def _max_impl(spec: RoutingProblem) -> RouteArrays:
    """kernels/aura_kernels/routing/ops.mojo: the mojo kernel as a MAX graph custom op."""
    max_backend.check_op("routing")
    L = spec.logits
    T, E = L.shape
    k = spec.k
    # addresses are presence flags for the MAX op (1 = given): it substitutes its tensors'
    present = lambda a: 0 if a is None else 1  # noqa: E731
    params = _block(spec, present, logits=L, weights=True, experts=True, counts=True, perm=True, offsets=True,
                    kept=None if spec.capacity is None else True).words()
    inputs = [L, np.zeros(1, np.float32) if spec.bias is None else spec.bias, np.zeros(k, np.int8),
              np.zeros(E + 1, np.int8), params]

    def build(dev, pkg):
        from max.dtype import DType
        from max.graph import Graph, TensorType, ops

        T_ = lambda d, *dims: TensorType(d, list(dims), dev)  # noqa: E731
        types = [T_(DType.float32, "T", "E"), T_(DType.float32, "nb"), T_(DType.int8, "k"), T_(DType.int8, "E1"),
                 T_(DType.int64, len(ABI.fields) + 1)]
        with Graph("aura_route", input_types=types, custom_extensions=[pkg]) as g:
            logits, bias, ks, e1, params = g.inputs
            Tn, En, kn, E1 = logits.tensor.shape[0], logits.tensor.shape[1], ks.tensor.shape[0], e1.tensor.shape[0]
            outs = [T_(DType.float32, Tn, kn), T_(DType.int32, Tn, kn), T_(DType.int64, En), T_(DType.int64, Tn, kn),
                    T_(DType.int64, E1), T_(DType.uint8, Tn, kn)]
            g.output(*ops.custom("aura_route", dev, [logits, bias, ks, e1, params], out_types=outs))
        return g

    weights, experts, counts, perm, offsets, kept = max_backend.run(("routing",), build, *inputs)
    return RouteArrays(weights, experts, counts, perm.reshape(-1), offsets,
                       None if spec.capacity is None else kept.view(np.bool_))


def _warm_max():
    op.run("max", RoutingProblem(np.zeros((4, 8), np.float32), 2))


max_backend.WARMUPS["routing"] = _warm_max


def _out_views(specs):
    """Views into ONE fresh buffer, 64-byte aligned (None specs give None).

    Separate multi-MB arrays were returned to the OS by malloc after each call and paid
    ~1500 page faults (~3 ms at T=65536, k=8) on the next; one allocation of the total is
    recycled. The views keep the buffer alive as long as any of them is referenced."""
    sizes = [0 if sp is None else math.prod(np.atleast_1d(sp[0]).tolist()) * np.dtype(sp[1]).itemsize for sp in specs]
    padded = [(n + 63) // 64 * 64 for n in sizes]
    buf = np.empty(sum(padded) + 64, np.uint8)
    o = (-buf.ctypes.data) % 64
    out = []
    for sp, n, pn in zip(specs, sizes, padded):
        if sp is None:
            out.append(None)
            continue
        out.append(buf[o : o + n].view(sp[1]).reshape(sp[0]))
        o += pn
    return out


@op.impl("mojo")
def _mojo_impl(spec: RoutingProblem) -> RouteArrays:
    kernel = _mojo.load("routing")
    L = spec.logits
    T, E = L.shape
    k = spec.k
    perm, weights, experts, counts, offsets, kept = _out_views(
        [(T * k, np.int64), ((T, k), np.float32), ((T, k), np.int32), (E, np.int64), (E + 1, np.int64),
         None if spec.capacity is None else ((T, k), np.bool_)])
    block = _block(spec, lambda a: a, logits=L, weights=weights, experts=experts,
                   counts=counts, perm=perm, offsets=offsets, kept=kept)
    _control.native(lambda: kernel.route(block.address))
    return RouteArrays(weights, experts, counts, perm, offsets, kept)
