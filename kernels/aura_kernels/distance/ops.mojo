# MAX custom op: pairwise distances, out (n, m) = dist(X (n, d), Y (m, d)).
# `params` is the distance parameter block (aura_lab/distance.py's ABI) as an int64 tensor,
# read at run time; its address fields are flags (nonzero: present) replaced here by the
# tensors' addresses, and the sizes come from the tensor dimensions, which are symbolic in
# the graph: one compiled graph per dtype serves every metric and size.

import extensibility
from extensibility import InputTensor, OutputTensor
from max.gpu.host import DeviceContext
from aura_kernels.distance.kernel import distances_typed
from aura_kernels.distance.abi import DistanceParams


@extensibility.register("aura_pairwise_distances")
struct AuraPairwiseDistances:
    @staticmethod
    def execute[target: StaticString](
        outp: OutputTensor[rank=2, ...],
        X: InputTensor[dtype=outp.dtype, rank=2, ...],
        Y: InputTensor[dtype=outp.dtype, rank=2, ...],
        params: InputTensor[dtype=DType.int64, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime if target != "cpu":
            raise Error("aura_pairwise_distances: the max backend has no GPU implementation of this op yet")
        var p = DistanceParams.load(Int(params.unsafe_ptr()))
        p.n = X.dim_size(0)
        p.d = X.dim_size(1)
        p.m = Y.dim_size(0)
        p.ldo = p.m
        if Y.dim_size(1) != p.d or outp.dim_size(0) != p.n or outp.dim_size(1) != p.m:
            raise Error("aura_pairwise_distances: shape mismatch")
        if p.x == 0 or p.y == 0 or p.result == 0:
            raise Error("aura_pairwise_distances: x, y and result must be flagged present")
        if p.n == 0 or p.m == 0:
            return
        p.x = Int(X.unsafe_ptr())
        p.y = Int(Y.unsafe_ptr())
        p.result = Int(outp.unsafe_ptr())
        comptime if outp.dtype == DType.float32:
            distances_typed[DType.float32](p)
        else:
            distances_typed[DType.float64](p)
