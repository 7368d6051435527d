# MAX custom op: MoE routing (aura_kernels/routing.mojo) as one graph op.
#
# Inputs: logits (T, E) float32; bias (E) or a 1-element placeholder; k_shape (k) and
# e1_shape (E + 1): int8 placeholders that carry the output dimensions k and E + 1 into
# the graph; fargs = [scale] float64; iargs = [scoring, renormalize, has_bias, n_groups,
# topk_groups, capacity (-1: none), threads] int64. One graph serves every variant and size.
# Outputs: weights (T, k) float32, experts (T, k) int32, counts (E) int64,
# perm (T, k) int64 (flattened assignment ids t*k + s sorted by expert), offsets (E + 1)
# int64, kept (T, k) uint8 (written only with a capacity).

import extensibility
from extensibility import InputTensor, OutputTensor
from max.gpu.host import DeviceContext
from aura_kernels.routing import Ctx, SOFTMAX, _dispatch, P32, PI32, PI64, PU8


@extensibility.register("aura_route")
struct AuraRoute:
    @staticmethod
    def execute[target: StaticString](
        weights: OutputTensor[dtype=DType.float32, rank=2, ...],
        experts: OutputTensor[dtype=DType.int32, rank=2, ...],
        counts: OutputTensor[dtype=DType.int64, rank=1, ...],
        perm: OutputTensor[dtype=DType.int64, rank=2, ...],
        offsets: OutputTensor[dtype=DType.int64, rank=1, ...],
        kept: OutputTensor[dtype=DType.uint8, rank=2, ...],
        logits: InputTensor[dtype=DType.float32, rank=2, ...],
        bias: InputTensor[dtype=DType.float32, rank=1, ...],
        k_shape: InputTensor[dtype=DType.int8, rank=1, ...],
        e1_shape: InputTensor[dtype=DType.int8, rank=1, ...],
        fargs: InputTensor[dtype=DType.float64, rank=1, ...],
        iargs: InputTensor[dtype=DType.int64, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime if target != "cpu":
            raise Error("aura_route: the max backend has no GPU implementation of this op yet")
        var T = logits.dim_size(0)
        var E = logits.dim_size(1)
        var k = k_shape.dim_size(0)
        if T == 0:
            return
        var ia = PI64(unsafe_from_address=Int(iargs.unsafe_ptr()))
        var scale = Pointer[Float64, MutUntrackedOrigin](unsafe_from_address=Int(fargs.unsafe_ptr()))[unsafe_offset=0]
        var has_bias = ia[unsafe_offset=2] != 0
        var n_groups = Int(ia[unsafe_offset=3])
        var c = Ctx(
            P32(unsafe_from_address=Int(logits.unsafe_ptr())),
            P32(unsafe_from_address=Int(bias.unsafe_ptr()) if has_bias else 0),
            P32(unsafe_from_address=Int(weights.unsafe_ptr())), PI32(unsafe_from_address=Int(experts.unsafe_ptr())),
            T, E, k, ia[unsafe_offset=1] != 0, scale, n_groups, Int(ia[unsafe_offset=4]),
        )
        var cnt = PI64(unsafe_from_address=Int(counts.unsafe_ptr()))
        var pp = PI64(unsafe_from_address=Int(perm.unsafe_ptr()))
        var po = PI64(unsafe_from_address=Int(offsets.unsafe_ptr()))
        var pk = PU8(unsafe_from_address=Int(kept.unsafe_ptr()))
        var cap = Int(ia[unsafe_offset=5])
        var nt = Int(ia[unsafe_offset=6])
        if ia[unsafe_offset=0] == SOFTMAX:
            _dispatch[SOFTMAX](c, has_bias, n_groups > 0, cnt, pp, po, pk, cap, nt)
        else:
            _dispatch[1](c, has_bias, n_groups > 0, cnt, pp, po, pk, cap, nt)
