# MAX custom op: pairwise distances, out (n, m) = dist(X (n, d), Y (m, d)).
# `args` is a small int32 tensor (metric id as in distance.mojo, thread count) read at run
# time, and dimensions are symbolic in the graph: one compiled graph per dtype serves every
# metric and size.

import extensibility
from extensibility import InputTensor, OutputTensor
from max.gpu.host import DeviceContext
from aura_kernels.distance import _dispatch


@extensibility.register("aura_pairwise_distances")
struct AuraPairwiseDistances:
    @staticmethod
    def execute[target: StaticString](
        outp: OutputTensor[rank=2, ...],
        X: InputTensor[dtype=outp.dtype, rank=2, ...],
        Y: InputTensor[dtype=outp.dtype, rank=2, ...],
        args: InputTensor[dtype=DType.int32, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime if target != "cpu":
            raise Error("aura_pairwise_distances: the max backend has no GPU implementation of this op yet")
        var n = X.dim_size(0)
        var d = X.dim_size(1)
        var m = Y.dim_size(0)
        if Y.dim_size(1) != d or outp.dim_size(0) != n or outp.dim_size(1) != m:
            raise Error("aura_pairwise_distances: shape mismatch")
        if n == 0 or m == 0:
            return
        var a = Pointer[Int32, MutUntrackedOrigin](unsafe_from_address=Int(args.unsafe_ptr()))
        var metric = Int(a[unsafe_offset=0])
        var threads = Int(a[unsafe_offset=1])
        var x = Int(X.unsafe_ptr())
        var y = Int(Y.unsafe_ptr())
        var o = Int(outp.unsafe_ptr())
        comptime if outp.dtype == DType.float32:
            _dispatch[DType.float32](metric, x, y, o, n, m, d, m, threads)
        else:
            _dispatch[DType.float64](metric, x, y, o, n, m, d, m, threads)
