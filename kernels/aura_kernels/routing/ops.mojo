# MAX custom op: MoE routing (aura_kernels/routing/kernel.mojo) as one graph op.
#
# Inputs: logits (T, E) float32; bias (E) or a 1-element placeholder; k_shape (k) and
# e1_shape (E + 1): int8 placeholders that carry the output dimensions k and E + 1 into
# the graph; params: the routing parameter block (aura_lab/routing/problem.py's ABI) as an int64
# tensor, whose address fields are presence flags (nonzero: present; bias and kept may be
# 0) replaced here by the tensors' addresses; T, E and k come from the dimensions. One
# graph serves every variant and size.
# Outputs: weights (T, k) float32, experts (T, k) int32, counts (E) int64,
# perm (T, k) int64 (flattened assignment ids t*k + s sorted by expert), offsets (E + 1)
# int64, kept (T, k) uint8 (written only with a capacity).

import extensibility
from extensibility import InputTensor, OutputTensor
from max.gpu.host import DeviceContext
from aura_kernels.common import present_addr
from aura_kernels.routing.kernel import route_block
from aura_kernels.routing.abi import RoutingParams


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
        params: InputTensor[dtype=DType.int64, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime if target != "cpu":
            raise Error("aura_route: the max backend has no GPU implementation of this op yet")
        var p = RoutingParams.load(Int(params.unsafe_ptr()))
        if p.logits == 0 or p.weights == 0 or p.experts == 0 or p.counts == 0 or p.perm == 0 or p.offsets == 0:
            raise Error("aura_route: logits, weights, experts, counts, perm and offsets must be flagged present")
        p.T = logits.dim_size(0)
        p.E = logits.dim_size(1)
        p.k = k_shape.dim_size(0)
        p.logits = Int(logits.unsafe_ptr())
        p.bias = present_addr(p.bias, Int(bias.unsafe_ptr()))
        p.weights = Int(weights.unsafe_ptr())
        p.experts = Int(experts.unsafe_ptr())
        p.counts = Int(counts.unsafe_ptr())
        p.perm = Int(perm.unsafe_ptr())
        p.offsets = Int(offsets.unsafe_ptr())
        p.kept = present_addr(p.kept, Int(kept.unsafe_ptr()))
        route_block(p)
