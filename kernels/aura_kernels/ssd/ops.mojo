# MAX custom op: the Mamba-2 selective scan (aura_kernels/ssd/scan.mojo), also used for the
# decode step (one token per sequence, state in, state out).
#
# Inputs in the layout of ssd.mojo (tokens flattened over batch x length, n padded to the
# vector width by aura_lab/ssd): x (T, h, p), dt (T, h), A (h), B and C (T, g, n),
# D (h, p) or (h, 1), z (T, h, p), dt_bias (h), offsets (nseq + 1) int64, state
# (nseq, h, p, n) = the initial states, and params: the ssd parameter block
# (aura_lab/ssd/problem.py's ABI) as an int64 tensor, whose address fields are presence flags
# (nonzero: present) replaced here by the tensors' addresses. Absent optional inputs are
# passed as 1-element placeholders with their flag 0, so one graph per dtype covers every
# combination; all dimensions are symbolic, and the sizes come from them.
# Outputs: y (T, h, p) and the final states (nseq, h, p, n).
#
# aura_ssd_scan_train: the training forward (aura_kernels/ssd/chunked.mojo, chunked matrix
# products). Inputs: those of the scan, then ckpt_rows (K,) int64 (only its length is read:
# the number of checkpoints, whose dimension the ckpt output takes) and the block (ckpt flag
# set, chunk the checkpoint interval, ypre flagged with z). Outputs: y, the final states, ckpt
# (K, h, p, n) the state before every chunk-th token of each sequence, ypre shaped as z (the
# output before the gate; a placeholder without z).
#
# aura_ssd_scan_grad: the backward (aura_kernels/ssd/chunked.mojo, chunked) from the training
# forward's checkpoints (no forward rerun). Inputs: those of the scan, then ckpt (K, h, p, n),
# ypre (shaped as z), gy (T, h, p), gfin (nseq, h, p, n), the training forward's block and the
# ssd_grad block (flags: which gradients are wanted, whether gfin is given). Outputs, each
# shaped as its input (placeholders where absent): gx, gdt, gA, gB, gC, gD, gz, gbias, ginit.

import extensibility
from extensibility import InputTensor, OutputTensor
from max.gpu.host import DeviceContext
from aura_kernels.common import present_addr
from aura_kernels.ssd.scan import chunk_bases, scan_typed
from aura_kernels.ssd.abi import SsdParams
from aura_kernels.ssd.chunked import scan_chunked_typed, scan_grad_chunked_typed
from aura_kernels.ssd.grad_abi import SsdGradParams


def _bind_scan[dtype: DType](
    mut p: SsdParams,
    who: StaticString,
    x: InputTensor[dtype=dtype, rank=3, ...],
    dt: InputTensor[dtype=dtype, rank=2, ...],
    A: InputTensor[dtype=dtype, rank=1, ...],
    B: InputTensor[dtype=dtype, rank=3, ...],
    C: InputTensor[dtype=dtype, rank=3, ...],
    D: InputTensor[dtype=dtype, rank=2, ...],
    z: InputTensor[dtype=dtype, rank=3, ...],
    dt_bias: InputTensor[dtype=dtype, rank=1, ...],
    offsets: InputTensor[dtype=DType.int64, rank=1, ...],
    state: InputTensor[dtype=dtype, rank=4, ...],
) raises:
    """The scan's input addresses (D, z, dt_bias and state where flagged present) and sizes (from
    the tensors' dimensions) into its block, after checking that the block flags every required
    input present."""
    if p.x == 0 or p.dt == 0 or p.A == 0 or p.B == 0 or p.C == 0 or p.offsets == 0:
        raise Error(String(who, ": x, dt, A, B, C and offsets must be flagged present"))
    p.x = Int(x.unsafe_ptr())
    p.dt = Int(dt.unsafe_ptr())
    p.A = Int(A.unsafe_ptr())
    p.B = Int(B.unsafe_ptr())
    p.C = Int(C.unsafe_ptr())
    p.D = present_addr(p.D, Int(D.unsafe_ptr()))
    p.z = present_addr(p.z, Int(z.unsafe_ptr()))
    p.dt_bias = present_addr(p.dt_bias, Int(dt_bias.unsafe_ptr()))
    p.offsets = Int(offsets.unsafe_ptr())
    p.init = present_addr(p.init, Int(state.unsafe_ptr()))
    p.nseq = offsets.dim_size(0) - 1
    p.h = x.dim_size(1)
    p.p = x.dim_size(2)
    p.n = B.dim_size(2)
    p.g = B.dim_size(1)


def _bind_outputs[dtype: DType](
    mut p: SsdParams, who: StaticString, y: OutputTensor[dtype=dtype, rank=3, ...],
    fin: OutputTensor[dtype=dtype, rank=4, ...]
) raises:
    """A forward's outputs y and fin into its block, after checking that it flags them present."""
    if p.y == 0 or p.fin == 0:
        raise Error(String(who, ": y and fin must be flagged present"))
    p.y = Int(y.unsafe_ptr())
    p.fin = Int(fin.unsafe_ptr())


@extensibility.register("aura_ssd_scan")
struct AuraSSDScan:
    @staticmethod
    def execute[target: StaticString](
        y: OutputTensor[rank=3, ...],
        fin: OutputTensor[dtype=y.dtype, rank=4, ...],
        x: InputTensor[dtype=y.dtype, rank=3, ...],
        dt: InputTensor[dtype=y.dtype, rank=2, ...],
        A: InputTensor[dtype=y.dtype, rank=1, ...],
        B: InputTensor[dtype=y.dtype, rank=3, ...],
        C: InputTensor[dtype=y.dtype, rank=3, ...],
        D: InputTensor[dtype=y.dtype, rank=2, ...],
        z: InputTensor[dtype=y.dtype, rank=3, ...],
        dt_bias: InputTensor[dtype=y.dtype, rank=1, ...],
        offsets: InputTensor[dtype=DType.int64, rank=1, ...],
        state: InputTensor[dtype=y.dtype, rank=4, ...],
        params: InputTensor[dtype=DType.int64, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime if target != "cpu":
            raise Error("aura_ssd_scan: the max backend has no GPU implementation of this op yet")
        comptime assert y.dtype.is_floating_point(), "aura_ssd_scan: floating-point tensors only"
        var p = SsdParams.load(Int(params.unsafe_ptr()))
        _bind_scan(p, "aura_ssd_scan", x, dt, A, B, C, D, z, dt_bias, offsets, state)
        _bind_outputs(p, "aura_ssd_scan", y, fin)
        scan_typed[y.dtype](p)


def _bind_training(mut p: SsdParams, ckpt: Int, ckpt_rows: Int, ypre: Int) raises:
    """The training forward's saved tensors into its block (ypre where flagged present), after
    checking that ckpt has a row for every checkpoint of the sequences (bound before)."""
    if p.chunk <= 0 or p.ckpt == 0:
        raise Error("the block must flag ckpt present and give the checkpoint interval (chunk)")
    if ckpt_rows < chunk_bases(p)[p.nseq]:
        raise Error("ckpt has fewer rows than the sequences have checkpoints")
    p.ckpt = ckpt
    p.ypre = present_addr(p.ypre, ypre)


@extensibility.register("aura_ssd_scan_train")
struct AuraSSDScanTrain:
    @staticmethod
    def execute[target: StaticString](
        y: OutputTensor[rank=3, ...],
        fin: OutputTensor[dtype=y.dtype, rank=4, ...],
        ckpt: OutputTensor[dtype=y.dtype, rank=4, ...],
        ypre: OutputTensor[dtype=y.dtype, rank=3, ...],
        x: InputTensor[dtype=y.dtype, rank=3, ...],
        dt: InputTensor[dtype=y.dtype, rank=2, ...],
        A: InputTensor[dtype=y.dtype, rank=1, ...],
        B: InputTensor[dtype=y.dtype, rank=3, ...],
        C: InputTensor[dtype=y.dtype, rank=3, ...],
        D: InputTensor[dtype=y.dtype, rank=2, ...],
        z: InputTensor[dtype=y.dtype, rank=3, ...],
        dt_bias: InputTensor[dtype=y.dtype, rank=1, ...],
        offsets: InputTensor[dtype=DType.int64, rank=1, ...],
        state: InputTensor[dtype=y.dtype, rank=4, ...],
        ckpt_rows: InputTensor[dtype=DType.int64, rank=1, ...],
        params: InputTensor[dtype=DType.int64, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime if target != "cpu":
            raise Error("aura_ssd_scan_train: the max backend has no GPU implementation of this op yet")
        comptime assert y.dtype.is_floating_point(), "aura_ssd_scan_train: floating-point tensors only"
        var p = SsdParams.load(Int(params.unsafe_ptr()))
        _bind_scan(p, "aura_ssd_scan_train", x, dt, A, B, C, D, z, dt_bias, offsets, state)
        _bind_outputs(p, "aura_ssd_scan_train", y, fin)
        _bind_training(p, Int(ckpt.unsafe_ptr()), ckpt.dim_size(0), Int(ypre.unsafe_ptr()))
        scan_chunked_typed[y.dtype](p)


@extensibility.register("aura_ssd_scan_grad")
struct AuraSSDScanGrad:
    @staticmethod
    def execute[target: StaticString](
        gx: OutputTensor[rank=3, ...],
        gdt: OutputTensor[dtype=gx.dtype, rank=2, ...],
        gA: OutputTensor[dtype=gx.dtype, rank=1, ...],
        gB: OutputTensor[dtype=gx.dtype, rank=3, ...],
        gC: OutputTensor[dtype=gx.dtype, rank=3, ...],
        gD: OutputTensor[dtype=gx.dtype, rank=2, ...],
        gz: OutputTensor[dtype=gx.dtype, rank=3, ...],
        gbias: OutputTensor[dtype=gx.dtype, rank=1, ...],
        ginit: OutputTensor[dtype=gx.dtype, rank=4, ...],
        x: InputTensor[dtype=gx.dtype, rank=3, ...],
        dt: InputTensor[dtype=gx.dtype, rank=2, ...],
        A: InputTensor[dtype=gx.dtype, rank=1, ...],
        B: InputTensor[dtype=gx.dtype, rank=3, ...],
        C: InputTensor[dtype=gx.dtype, rank=3, ...],
        D: InputTensor[dtype=gx.dtype, rank=2, ...],
        z: InputTensor[dtype=gx.dtype, rank=3, ...],
        dt_bias: InputTensor[dtype=gx.dtype, rank=1, ...],
        offsets: InputTensor[dtype=DType.int64, rank=1, ...],
        state: InputTensor[dtype=gx.dtype, rank=4, ...],
        ckpt: InputTensor[dtype=gx.dtype, rank=4, ...],
        ypre: InputTensor[dtype=gx.dtype, rank=3, ...],
        gy: InputTensor[dtype=gx.dtype, rank=3, ...],
        gfin: InputTensor[dtype=gx.dtype, rank=4, ...],
        params: InputTensor[dtype=DType.int64, rank=1, ...],
        gparams: InputTensor[dtype=DType.int64, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime if target != "cpu":
            raise Error("aura_ssd_scan_grad: the max backend has no GPU implementation of this op yet")
        comptime assert gx.dtype.is_floating_point(), "aura_ssd_scan_grad: floating-point tensors only"
        comptime dtype = gx.dtype
        var p = SsdParams.load(Int(params.unsafe_ptr()))
        var g = SsdGradParams.load(Int(gparams.unsafe_ptr()))
        _bind_scan(p, "aura_ssd_scan_grad", x, dt, A, B, C, D, z, dt_bias, offsets, state)
        _bind_training(p, Int(ckpt.unsafe_ptr()), ckpt.dim_size(0), Int(ypre.unsafe_ptr()))
        g.gy = Int(gy.unsafe_ptr())
        g.gfin = present_addr(g.gfin, Int(gfin.unsafe_ptr()))
        g.gx = Int(gx.unsafe_ptr())
        g.gdt = present_addr(g.gdt, Int(gdt.unsafe_ptr()))
        g.gA = present_addr(g.gA, Int(gA.unsafe_ptr()))
        g.gB = Int(gB.unsafe_ptr())
        g.gC = Int(gC.unsafe_ptr())
        g.gD = present_addr(g.gD, Int(gD.unsafe_ptr()))
        g.gz = present_addr(g.gz, Int(gz.unsafe_ptr()))
        g.gbias = present_addr(g.gbias, Int(gbias.unsafe_ptr()))
        g.ginit = present_addr(g.ginit, Int(ginit.unsafe_ptr()))
        scan_grad_chunked_typed[dtype](p, g)
