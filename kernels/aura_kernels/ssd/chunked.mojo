# The backward of the Mamba-2 selective scan (aura_kernels/ssd/scan.mojo) as chunked matrix
# products (the SSD block decomposition, Dao & Gu 2024 §6; shared/notes/ssd-backward.md §2).
# Same block, same gradients, same results up to rounding as the sequential adjoint of
# aura_kernels/ssd/grad.mojo, which stays the reference kernel (and MAX's backward). The
# training forward as chunked products is at the end of this file ("forward").
#
# Per (sequence, head) and chunk of Q = pr.chunk tokens (the forward's checkpoint interval,
# so S_c, the state entering chunk c, is the forward's checkpoint c), with local tokens i, j:
#     e_i = min(dt'_i A, 0), cs = inclusive cumsum of e, L_ij = exp(cs_i - cs_j) (i >= j, else 0)
#     U = diag(dt') X, G = C B^T, w_j = exp(cs_last - cs_j), dY = gy silu(z) (gy without z)
# and, given dS = the gradient of the state after the chunk (the final state's gradient for
# the last chunk), every gradient of the chunk is a small matrix product:
#     dG   = (dY U^T) o L                      (Q x Q, masked)
#     dU   = (L o G)^T dY + diag(w) B dS^T      gx = diag(dt') dU + D dY
#     dC  += dG B + diag(exp(cs)) dY S_c        dB += dG^T C + diag(w) U dS
#     dcs_i = C_i . dC_i - B_i . dB_i (this head's own terms) + [i = last] <dS, S_end>
#     de   = reverse cumsum of dcs;  gdt'_j = sum_p dU_jp x_jp + A de_j;  gA += sum_j dt'_j de_j
#     dS  <- exp(cs_last) dS + (diag(exp(cs)) dY)^T C     (the state gradient entering the chunk)
# with <dS, S_end> = exp(cs_last) <dS, S_c> + sum_j B_j . (diag(w) U dS)_j (no S_end needed)
# and C_i . (dG B)_i - B_i . (dG^T C)_i = row sum i - column sum i of dG o G. The chain
# through softplus / dt_limit, the sums over threads and the parameter sums are the
# sequential backward's (dt_chain, sum_threads, sum_params).
#
# Work items: (sequence, head), in a fixed assignment (the sums over threads are taken in a
# fixed order, so results do not depend on timing; _owners): with at least as many sequences
# as threads, and no thread loaded over 9/8 of an even share of the tokens, each sequence
# goes whole to one thread (its heads in order: then no two threads write one gB or gC row,
# so all write the outputs, and the gradients equal one thread's bit for bit); else every
# sequence's heads are dealt round-robin to the threads. A thread walks the chunks of a
# sequence last to first, each chunk for all its items of the sequence in turn (heads in
# lockstep: the chunk's B, C, G and gB, gC rows, shared by the heads of a group, are read
# from memory once and then stay in L1/L2 for the other heads), each item's dS in a p x n
# slot of the thread's own (slot k for its k-th head of the sequence: ceil(h / threads)
# slots per thread, h with whole sequences, whatever the batch), and prefetches the next
# item's x and gy rows and its own gx rows (which otherwise stall pack and token_grads on
# memory: ~30 % of the per-item work's samples in perf). With shared sequences gB, gC go to
# the thread's own (T, g, n) buffers (thread 0's: the outputs), added in thread order at the
# end. No forward is recomputed: the backward reads only the checkpoints and the inputs.
#
# Per chunk and group a thread uses (_ChunkGroups), before its heads: G = C B^T (shared by
# the group's heads) into its own (g, Q, Q); after them: gC += dG B and gB += dG^T C with dG
# summed over its heads of the group (g Q Q of its own), into its gB, gC. These products
# cost per group, not per head (per group and thread with shared sequences: each thread
# computes the G of the groups its heads use).
#
# Memory: threads x (scratch of 7 Q p + 2 Q n + 2 Q^2 + p n + 6 Q, 2 g Q^2 (G, dG) and the
# dS slots: ceil(h / threads) p n, or h p n with whole sequences), T h here, and with shared
# sequences (threads - 1) x 2 T g n (gB, gC).
# The training step's peak against the sequential kernels': the bench's training rows
# (peak_MiB, read in a fresh process, scratch included) and tools/peak_ssd_train.py --fresh.
#
# Measured (tools/bench_ssd_train.py, 2-core AVX2 VM under load 5-10, h=24, p=64, n=128,
# float32, forward + backward): b=1 l=4096 792 ms against 1529 ms with the sequential
# backward (1.93x) and 6385 ms for torch autograd through the chunked SSD at Q=256 (8.1x);
# b=4 2078 ms, 1.73x and 8.1x. The matrix products run at ~2.9x the sequential forward's
# flops/s on one thread (tools/bench_ssd_gemm.py). The chunked forward: the training step
# 0.87x the time with the sequential forward (tools/ab_ssd_forward.py, b=1 l=4096, load ~9).
# Tried and dropped (within noise, A/B of builds in one process, load 7-10): a 6 x 2 register
# block in chunk_gemm (bit-identical, step 0.995x CPU), software prefetch of the next chunk's
# x / gy / gx rows (0.995x CPU; with the heads one after another, on the AVX2 VM). On the
# 2-core Zen 5 VM (perf, b=1 l=4096): the items one after another stalled on memory (B, C,
# G, gB, gC and x, gy, gx lines); the heads in lockstep and the prefetches, in the backward
# and the forward, took the training step to 0.79x wall / 0.81x CPU (in-process A/B of
# builds, alternating, 16 rounds, load ~3; gradients bit-identical). Not yet done: the
# per-token work (pack, decay masks) as wider vectors.

from std.math import exp
from std.sys.intrinsics import prefetch, PrefetchOptions
from std.sys import size_of
from aura_kernels.common import F32, F64, Control, OwnedArray, ieee_begin, ieee_end, scalar_ptr
from aura_kernels.ssd.chunk_gemm import A_LOWER, A_UPPER, C_LOWER, gemm, transpose
from aura_kernels.ssd.scan import HeadRates, chunk_bases, lanes, silu, tokens
from aura_kernels.ssd.abi import SsdParams
from aura_kernels.ssd.grad import ParamParts, ThreadSums, check_blocks, spread, zero_fill
from aura_kernels.ssd.grad_abi import SsdGradParams


def slots(h: Int, nw: Int) -> Int:
    """Items of one sequence a thread holds at once (its heads i = w, w + nw, ... of the
    sequence's h): the p n buffers (dS, the forward's state) each thread owns, slot k for its
    k-th head of the sequence it is on (threads are not synchronised between sequences, so a
    slot belongs to one thread, never to a head)."""
    return (h + nw - 1) // nw


def scratch_size(Q: Int, p: Int, n: Int) -> Int:
    """Elements of one thread's scratch (see _Head; the G phase uses its first Q n)."""
    return 7 * Q * p + 2 * Q * n + 2 * Q * Q + p * n + 6 * Q


@always_inline
def _dot[dtype: DType](a: Pointer[Scalar[dtype], MutUntrackedOrigin], b: Pointer[Scalar[dtype], MutUntrackedOrigin],
                       count: Int) -> Scalar[dtype]:
    comptime W = lanes[dtype]()
    var acc = SIMD[dtype, W](0)
    var j = 0
    while j + W <= count:
        acc = a.unsafe_load[width=W](j).fma(b.unsafe_load[width=W](j), acc)
        j += W
    var s = acc.reduce_add()
    while j < count:
        s += a[unsafe_offset=j] * b[unsafe_offset=j]
        j += 1
    return s


@always_inline
def _add_into[dtype: DType](dst: Pointer[Scalar[dtype], MutUntrackedOrigin], src: Pointer[Scalar[dtype], MutUntrackedOrigin],
                            count: Int):
    """dst += src."""
    comptime W = lanes[dtype]()
    var j = 0
    while j + W <= count:
        dst.unsafe_store(j, dst.unsafe_load[width=W](j) + src.unsafe_load[width=W](j))
        j += W
    while j < count:
        dst[unsafe_offset=j] += src[unsafe_offset=j]
        j += 1


@always_inline
def _scale[dtype: DType](dst: Pointer[Scalar[dtype], MutUntrackedOrigin], src: Pointer[Scalar[dtype], MutUntrackedOrigin],
                         f: Scalar[dtype], count: Int):
    """dst = f src (dst may be src)."""
    comptime W = lanes[dtype]()
    var j = 0
    while j + W <= count:
        dst.unsafe_store(j, src.unsafe_load[width=W](j) * SIMD[dtype, W](f))
        j += W
    while j < count:
        dst[unsafe_offset=j] = src[unsafe_offset=j] * f
        j += 1


def _chunk_of(pr: SsdParams, cb: Pointer[Int, MutUntrackedOrigin], cg: Int) -> Tuple[Int, Int]:
    """(first token, length) of chunk cg of all sequences' chunks."""
    var offs = Pointer[Int64, MutUntrackedOrigin](unsafe_from_address=pr.offsets)
    var s = 0
    while cb[unsafe_offset=s + 1] <= cg:
        s += 1
    var t0 = Int(offs[unsafe_offset=s]) + (cg - cb[unsafe_offset=s]) * pr.chunk
    return (t0, min(Int(offs[unsafe_offset=s + 1]), t0 + pr.chunk) - t0)


def _chunk_products[dtype: DType](pr: SsdParams, tc0: Int, L: Int, G: Pointer[Scalar[dtype], MutUntrackedOrigin],
                                  BT: Pointer[Scalar[dtype], MutUntrackedOrigin], gg: Int) where dtype.is_floating_point():
    """G = C B^T (lower triangle, Q x Q) of tokens tc0 .. tc0 + L and group gg, shared by the
    group's heads. BT: Q n scratch."""
    var n = pr.n
    var g = pr.g
    var B = scalar_ptr[dtype](pr.B).unsafe_offset((tc0 * g + gg) * n)
    var C = scalar_ptr[dtype](pr.C).unsafe_offset((tc0 * g + gg) * n)
    transpose[dtype](L, n, B, g * n, BT, pr.chunk)
    gemm[dtype](L, L, n, C, g * n, BT, pr.chunk, G, pr.chunk, False, tri=C_LOWER)


def _group_products[dtype: DType](pr: SsdParams, cb: Pointer[Int, MutUntrackedOrigin],
                                  Gall: Pointer[Scalar[dtype], MutUntrackedOrigin], BT: Pointer[Scalar[dtype], MutUntrackedOrigin],
                                  cg: Int, gg: Int) where dtype.is_floating_point():
    """G of chunk cg (of all sequences' chunks) and group gg into Gall[cg, gg]."""
    var r = _chunk_of(pr, cb, cg)
    _chunk_products[dtype](pr, r[0], r[1], Gall.unsafe_offset((cg * pr.g + gg) * pr.chunk * pr.chunk), BT, gg)


def _chunk_grads[dtype: DType](pr: SsdParams, tc0: Int, L: Int, dG: Pointer[Scalar[dtype], MutUntrackedOrigin],
                               gBw: Pointer[Scalar[dtype], MutUntrackedOrigin], gCw: Pointer[Scalar[dtype], MutUntrackedOrigin],
                               gg: Int) where dtype.is_floating_point():
    """Tokens tc0 .. tc0 + L, group gg: gC += dG B and gB += dG^T C on the rows of gBw, gCw,
    with dG summed over the thread's heads of the group."""
    var n = pr.n
    var gn = pr.g * n
    var row = (tc0 * pr.g + gg) * n
    var B = scalar_ptr[dtype](pr.B).unsafe_offset(row)
    var C = scalar_ptr[dtype](pr.C).unsafe_offset(row)
    gemm[dtype](L, n, L, dG, pr.chunk, B, gn, gCw.unsafe_offset(row), gn, True, tri=A_LOWER)
    gemm[dtype](L, n, L, dG, pr.chunk, C, gn, gBw.unsafe_offset(row), gn, True, a_trans=True, tri=A_UPPER)


struct _ChunkGroups[dtype: DType](ImplicitlyCopyable) where dtype.is_floating_point():
    """A thread's per-chunk group products in the backward: before its heads of a chunk, G =
    C B^T of each group they use (into its own (g, Q, Q)) and their dG sums zeroed; after
    them, gC += dG B and gB += dG^T C into its gB, gC. A group is used when one of its heads
    is the thread's: heads r0, r0 + step, ... of the sequence."""

    comptime P = Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var pr: SsdParams
    var G: Self.P  # (g, Q, Q)
    var dG: Self.P  # (g, Q, Q)
    var BT: Self.P  # Q n (the thread's head scratch, free between chunks)
    var r0: Int
    var step: Int

    def __init__(out self, pr: SsdParams, G: Self.P, dG: Self.P, BT: Self.P, r0: Int, step: Int):
        self.pr = pr
        self.G = G
        self.dG = dG
        self.BT = BT
        self.r0 = r0
        self.step = step

    def used(self, gg: Int) -> Bool:
        var hg = self.pr.h // self.pr.g
        for hh in range(max(gg * hg, self.r0), (gg + 1) * hg):
            if (hh - self.r0) % self.step == 0:
                return True
        return False

    def enter(self, tc0: Int, L: Int):
        var QQ = self.pr.chunk * self.pr.chunk
        for gg in range(self.pr.g):
            if self.used(gg):
                _chunk_products[Self.dtype](self.pr, tc0, L, self.G.unsafe_offset(gg * QQ), self.BT, gg)
                zero_fill(self.dG.unsafe_offset(gg * QQ), L * self.pr.chunk)

    def leave(self, tc0: Int, L: Int, gBw: Self.P, gCw: Self.P):
        var QQ = self.pr.chunk * self.pr.chunk
        for gg in range(self.pr.g):
            if self.used(gg):
                _chunk_grads[Self.dtype](self.pr, tc0, L, self.dG.unsafe_offset(gg * QQ), gBw, gCw, gg)


struct _Head[dtype: DType](ImplicitlyCopyable) where dtype.is_floating_point():
    """One work item (sequence, head): the blocks, the thread's scratch regions and buffers,
    and the running sum of gA. Scratch regions (row-major, leading dimension their width):
    X, U, Uw = diag(w) U, dY, dYe = diag(exp(cs)) dY, dU (Q x p); UT (p x Q); dCh, dBh
    (Q x n); M = L o G, dG (Q x Q); lamT (n x p); cs, ecs, w, dcs,
    colacc (column sums), idx (0, 1, ..., Q - 1) (Q). B and C are read in place (rows g n
    apart), G from the thread's _ChunkGroups. lam = dS (p x n) is the item's own (it lives from
    chunk to chunk while the thread's other items take their turns)."""

    var pr: SsdParams
    var gr: SsdGradParams
    var dtp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # dt' of head hh, indexed by token
    var gBw: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # this thread's (T, g, n) gB
    var gCw: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # this thread's (T, g, n) gC
    var gdtp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # (T, h) gdt'
    var gdp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # gD of this (sequence, head): p values
    var Gall: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # this thread's (g, Q, Q) C B^T of the chunk
    var dGw: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # this thread's (g, Q, Q) sum of the chunk's dG
    var X: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var U: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var Uw: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var dY: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var dYe: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var dU: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var UT: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var dCh: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var dBh: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var M: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var dG: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var lam: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var lamT: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var cs: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var ecs: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var w: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var dcs: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var colacc: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var idx: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var hh: Int
    var gg: Int
    var nxt: Int  # the head of the thread's next item in this chunk (its rows are prefetched), or -1
    var ga: Scalar[Self.dtype]

    def __init__(out self, pr: SsdParams, gr: SsdGradParams, dtp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin],
                 scratch: Pointer[Scalar[Self.dtype], MutUntrackedOrigin],
                 gBw: Pointer[Scalar[Self.dtype], MutUntrackedOrigin], gCw: Pointer[Scalar[Self.dtype], MutUntrackedOrigin],
                 gdtp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin], gdp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin],
                 Gall: Pointer[Scalar[Self.dtype], MutUntrackedOrigin],
                 dGw: Pointer[Scalar[Self.dtype], MutUntrackedOrigin],
                 lam: Pointer[Scalar[Self.dtype], MutUntrackedOrigin], hh: Int):
        var Q = pr.chunk
        var p = pr.p
        var n = pr.n
        self.pr = pr
        self.gr = gr
        self.dtp = dtp
        self.gBw = gBw
        self.gCw = gCw
        self.gdtp = gdtp
        self.gdp = gdp
        self.Gall = Gall
        self.dGw = dGw
        self.hh = hh
        self.gg = hh // (pr.h // pr.g)
        self.nxt = -1
        self.ga = 0
        var o = 0
        self.X = scratch.unsafe_offset(o); o += Q * p
        self.U = scratch.unsafe_offset(o); o += Q * p
        self.Uw = scratch.unsafe_offset(o); o += Q * p
        self.dY = scratch.unsafe_offset(o); o += Q * p
        self.dYe = scratch.unsafe_offset(o); o += Q * p
        self.dU = scratch.unsafe_offset(o); o += Q * p
        self.UT = scratch.unsafe_offset(o); o += Q * p
        self.dCh = scratch.unsafe_offset(o); o += Q * n
        self.dBh = scratch.unsafe_offset(o); o += Q * n
        self.M = scratch.unsafe_offset(o); o += Q * Q
        self.dG = scratch.unsafe_offset(o); o += Q * Q
        self.lam = lam
        self.lamT = scratch.unsafe_offset(o); o += p * n
        self.cs = scratch.unsafe_offset(o); o += Q
        self.ecs = scratch.unsafe_offset(o); o += Q
        self.w = scratch.unsafe_offset(o); o += Q
        self.dcs = scratch.unsafe_offset(o); o += Q
        self.colacc = scratch.unsafe_offset(o); o += Q
        self.idx = scratch.unsafe_offset(o); o += Q
        for i in range(Q):
            self.idx[unsafe_offset=i] = Scalar[Self.dtype](i)

    @always_inline
    def pack_lanes[w: Int](mut self, i: Int, xo: Int, k: Int, dtv: Scalar[Self.dtype]):
        """Channels k .. k + w of local token i (x offset xo): X, U, dY (gy silu(z)), gz, gD."""
        comptime V = SIMD[Self.dtype, w]
        var pr = self.pr
        var gr = self.gr
        var p = pr.p
        var xv = scalar_ptr[Self.dtype](pr.x).unsafe_load[width=w](xo)
        var gyr = V(0) if gr.gy == 0 else scalar_ptr[Self.dtype](gr.gy).unsafe_load[width=w](xo)
        if pr.z != 0:
            var zv = scalar_ptr[Self.dtype](pr.z).unsafe_load[width=w](xo)
            var sg = V(1) / (V(1) + exp(-zv))
            if gr.gz != 0:
                var yp = scalar_ptr[Self.dtype](pr.ypre).unsafe_load[width=w](xo)
                scalar_ptr[Self.dtype](gr.gz).unsafe_store(xo, gyr * yp * sg * (V(1) + zv * (V(1) - sg)))
            gyr = gyr * zv * sg
        self.gdp.unsafe_store(k, gyr.fma(xv, self.gdp.unsafe_load[width=w](k)))
        self.X.unsafe_store(i * p + k, xv)
        self.U.unsafe_store(i * p + k, xv * V(dtv))
        self.dY.unsafe_store(i * p + k, gyr)

    def pack(mut self, tc0: Int, L: Int):
        """The chunk's rows into scratch: X, dY (gy silu(z); gz and gD on the way), U, the
        cumulative decay exponents cs and exp(cs), w, dYe, Uw."""
        comptime Sc = Scalar[Self.dtype]
        comptime W = lanes[Self.dtype]()
        var pr = self.pr
        var p = pr.p
        var h = pr.h
        var a_h = scalar_ptr[Self.dtype](pr.A)[unsafe_offset=self.hh]
        var acc = Sc(0)
        for i in range(L):
            var t = tc0 + i
            var dtv = self.dtp[unsafe_offset=t]
            var e = dtv * a_h
            if e > Sc(0):  # as the forward's decay exponent (NaN passes)
                e = Sc(0)
            acc += e
            self.cs[unsafe_offset=i] = acc
            var xo = (t * h + self.hh) * p
            var k = 0
            while k + W <= p:
                self.pack_lanes[W](i, xo + k, k, dtv)
                k += W
            while k < p:
                self.pack_lanes[1](i, xo + k, k, dtv)
                k += 1
        var last = self.cs[unsafe_offset=L - 1]
        for i in range(L):
            var ci = self.cs[unsafe_offset=i]
            var ec = exp(ci)
            var wi = exp(last - ci)
            self.ecs[unsafe_offset=i] = ec
            self.w[unsafe_offset=i] = wi
            self.dcs[unsafe_offset=i] = 0
            _scale(self.dYe.unsafe_offset(i * p), self.dY.unsafe_offset(i * p), ec, p)
            _scale(self.Uw.unsafe_offset(i * p), self.U.unsafe_offset(i * p), wi, p)

    def masks(mut self, L: Int, G: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]):
        """dG = (dY U^T) o L and M = L o G (zero above the diagonal, rows padded to Q with
        zeros), and the intra-chunk part of dcs: row sums minus column sums of dG o G."""
        comptime W = lanes[Self.dtype]()
        comptime V = SIMD[Self.dtype, W]
        var Q = self.pr.chunk
        var p = self.pr.p
        transpose[Self.dtype](L, p, self.U, p, self.UT, Q)
        gemm[Self.dtype](L, L, p, self.dY, p, self.UT, Q, self.dG, Q, False, tri=C_LOWER)
        for j in range(0, Q, W):
            self.colacc.unsafe_store(j, V(0))
        for i in range(L):
            var ci = V(self.cs[unsafe_offset=i])
            var row = V(0)
            var Gi = G.unsafe_offset(i * Q)
            var Mi = self.M.unsafe_offset(i * Q)
            var dGi = self.dG.unsafe_offset(i * Q)
            var j = 0
            while j <= i:  # the blocks holding columns 0 .. i
                var keep = self.idx.unsafe_load[width=W](j).le(V(Scalar[Self.dtype](i)))
                var lij = exp(ci - self.cs.unsafe_load[width=W](j))
                var gv = Gi.unsafe_load[width=W](j)
                var m = keep.select(lij * gv, V(0))
                var d = keep.select(lij * dGi.unsafe_load[width=W](j), V(0))
                var v = keep.select(d * gv, V(0))  # lanes past i may hold garbage (C_LOWER)
                row += v
                self.colacc.unsafe_store(j, self.colacc.unsafe_load[width=W](j) - v)
                Mi.unsafe_store(j, m)
                dGi.unsafe_store(j, d)
                j += W
            while j < Q:
                Mi.unsafe_store(j, V(0))
                dGi.unsafe_store(j, V(0))
                j += W
            self.dcs[unsafe_offset=i] += row.reduce_add()
        for i in range(L):
            self.dcs[unsafe_offset=i] += self.colacc[unsafe_offset=i]

    def prefetch_rows(self, tc0: Int, i0: Int, i1: Int):
        """Ask for the cache lines of the next item's x and gy rows, local tokens i0 .. i1 (and
        this item's gx rows, for writing): they come from memory, and pack and token_grads
        otherwise wait on each line."""
        comptime LINE = 64 // size_of[Scalar[Self.dtype]]()
        var pr = self.pr
        var p = pr.p
        var x = scalar_ptr[Self.dtype](pr.x)
        var gy = scalar_ptr[Self.dtype](self.gr.gy)
        var gx = scalar_ptr[Self.dtype](self.gr.gx)
        for i in range(i0, i1):
            var row = (tc0 + i) * pr.h
            var k = 0
            while k < p:
                if self.nxt >= 0:
                    prefetch[PrefetchOptions().for_read().high_locality()](x.unsafe_offset((row + self.nxt) * p + k))
                    if self.gr.gy != 0:
                        prefetch[PrefetchOptions().for_read().high_locality()](gy.unsafe_offset((row + self.nxt) * p + k))
                prefetch[PrefetchOptions().for_write().high_locality()](gx.unsafe_offset((row + self.hh) * p + k))
                k += LINE

    def chunk(mut self, cg: Int, tc0: Int, L: Int, start: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]):
        """Every gradient of tokens tc0 .. tc0 + L (chunk cg of all) given dS in lam; leaves in
        lam the gradient of the state entering the chunk (start: the forward's checkpoint, S_c)."""
        comptime Sc = Scalar[Self.dtype]
        var pr = self.pr
        var Q = pr.chunk
        var p = pr.p
        var n = pr.n
        var g = pr.g
        var gn = g * n
        var Bc = scalar_ptr[Self.dtype](pr.B).unsafe_offset((tc0 * g + self.gg) * n)  # rows gn apart
        var Cc = scalar_ptr[Self.dtype](pr.C).unsafe_offset((tc0 * g + self.gg) * n)
        self.pack(tc0, L)
        self.prefetch_rows(tc0, 0, L // 4)
        self.masks(L, self.Gall.unsafe_offset(self.gg * Q * Q))
        self.prefetch_rows(tc0, L // 4, L // 2)
        # dC (this head) = dYe S_c (+ dG B, summed over the group's heads: _ChunkGroups.leave)
        # dcs_i += C_i . (dYe S_c)_i
        gemm[Self.dtype](L, n, p, self.dYe, p, start, n, self.dCh, n, False)
        for i in range(L):
            self.dcs[unsafe_offset=i] += _dot(Cc.unsafe_offset(i * gn), self.dCh.unsafe_offset(i * n), n)
        _add_into(self.dGw.unsafe_offset(self.gg * Q * Q), self.dG, L * Q)  # dG B: _ChunkGroups.leave
        # dB (this head) = Uw dS (+ dG^T C, as dG B);  dcs_i -= B_i . (Uw dS)_i, dcs_last += their sum
        self.prefetch_rows(tc0, L // 2, 3 * L // 4)
        gemm[Self.dtype](L, n, p, self.Uw, p, self.lam, n, self.dBh, n, False)
        self.prefetch_rows(tc0, 3 * L // 4, L)
        var tot = Sc(0)
        for i in range(L):
            var s = _dot(Bc.unsafe_offset(i * gn), self.dBh.unsafe_offset(i * n), n)
            self.dcs[unsafe_offset=i] -= s
            tot += s
        var elast = self.ecs[unsafe_offset=L - 1]
        self.dcs[unsafe_offset=L - 1] += tot + elast * _dot(self.lam, start, p * n)
        for i in range(L):
            _add_into(self.gBw.unsafe_offset((tc0 + i) * gn + self.gg * n), self.dBh.unsafe_offset(i * n), n)
            _add_into(self.gCw.unsafe_offset((tc0 + i) * gn + self.gg * n), self.dCh.unsafe_offset(i * n), n)
        # dU = diag(w) B dS^T + (L o G)^T dY
        transpose[Self.dtype](p, n, self.lam, n, self.lamT, p)
        gemm[Self.dtype](L, p, n, Bc, gn, self.lamT, p, self.dU, p, False)
        for i in range(L):
            _scale(self.dU.unsafe_offset(i * p), self.dU.unsafe_offset(i * p), self.w[unsafe_offset=i], p)
        gemm[Self.dtype](L, p, L, self.M, Q, self.dY, p, self.dU, p, True, a_trans=True, tri=A_UPPER)
        self.token_grads(tc0, L)
        # dS <- exp(cs_last) dS + dYe^T C
        _scale(self.lam, self.lam, elast, p * n)
        gemm[Self.dtype](p, n, L, self.dYe, p, Cc, gn, self.lam, n, True, a_trans=True)

    def token_grads(mut self, tc0: Int, L: Int):
        """gx, gdt' and gA's terms of the chunk's tokens from dU and dcs."""
        comptime Sc = Scalar[Self.dtype]
        comptime W = lanes[Self.dtype]()
        comptime V = SIMD[Self.dtype, W]
        var pr = self.pr
        var p = pr.p
        var h = pr.h
        var hh = self.hh
        var gx = scalar_ptr[Self.dtype](self.gr.gx)
        var Dp = scalar_ptr[Self.dtype](pr.D)
        var a_h = scalar_ptr[Self.dtype](pr.A)[unsafe_offset=hh]
        var de = Sc(0)
        var i = L - 1
        while i >= 0:
            var t = tc0 + i
            var dtv = self.dtp[unsafe_offset=t]
            de += self.dcs[unsafe_offset=i]
            var sv = V(0)
            var gxr = gx.unsafe_offset((t * h + hh) * p)
            var k = 0
            while k + W <= p:  # W channels at a time, then one at a time
                var du = self.dU.unsafe_load[width=W](i * p + k)
                sv = du.fma(self.X.unsafe_load[width=W](i * p + k), sv)
                var gxv = du * V(dtv)
                if pr.D != 0:
                    var dv = Dp.unsafe_load[width=W](hh * p + k) if pr.d_per_p else V(Dp[unsafe_offset=hh])
                    gxv = dv.fma(self.dY.unsafe_load[width=W](i * p + k), gxv)
                gxr.unsafe_store(k, gxv)
                k += W
            var s = sv.reduce_add()
            while k < p:
                var du = self.dU[unsafe_offset=i * p + k]
                s += du * self.X[unsafe_offset=i * p + k]
                var gxk = dtv * du
                if pr.D != 0:
                    var dk = Dp[unsafe_offset=hh * p + k] if pr.d_per_p else Dp[unsafe_offset=hh]
                    gxk += dk * self.dY[unsafe_offset=i * p + k]
                gxr[unsafe_offset=k] = gxk
                k += 1
            self.gdtp[unsafe_offset=t * h + hh] = s + a_h * de
            self.ga += dtv * de
            i -= 1


def _seq_span(pr: SsdParams, s: Int) -> Tuple[Int, Int]:
    """(first token, end) of sequence s."""
    var offs = Pointer[Int64, MutUntrackedOrigin](unsafe_from_address=pr.offsets)
    return (Int(offs[unsafe_offset=s]), Int(offs[unsafe_offset=s + 1]))


def _grad_start[dtype: DType](mut it: _Head[dtype], s: Int) where dtype.is_floating_point():
    """The item's dS before its last chunk: the final state's gradient (or zero)."""
    var pn = it.pr.p * it.pr.n
    if it.gr.gfin != 0:
        var gf = scalar_ptr[dtype](it.gr.gfin).unsafe_offset((s * it.pr.h + it.hh) * pn)
        for i in range(pn):
            it.lam[unsafe_offset=i] = gf[unsafe_offset=i]
    else:
        zero_fill(it.lam, pn)


def _grad_chunk[dtype: DType](mut it: _Head[dtype], s: Int, cbase: Int, c: Int) where dtype.is_floating_point():
    """Chunk c of sequence s (chunk cbase + c of all) for the item's head."""
    var pr = it.pr
    var Q = pr.chunk
    var span = _seq_span(pr, s)
    var tc0 = span[0] + c * Q
    var ck = scalar_ptr[dtype](pr.ckpt).unsafe_offset(((cbase + c) * pr.h + it.hh) * pr.p * pr.n)
    it.chunk(cbase + c, tc0, min(span[1], tc0 + Q) - tc0, ck)


def _grad_end[dtype: DType](it: _Head[dtype], s: Int) where dtype.is_floating_point():
    """dS after the first chunk: the initial state's gradient (when wanted)."""
    var pn = it.pr.p * it.pr.n
    if it.gr.ginit != 0:
        var gi = scalar_ptr[dtype](it.gr.ginit).unsafe_offset((s * it.pr.h + it.hh) * pn)
        for i in range(pn):
            gi[unsafe_offset=i] = it.lam[unsafe_offset=i]


def _first_item(h: Int, s: Int, w: Int, nw: Int, owner: Int) -> Tuple[Int, Int]:
    """(first item, step) of thread w in sequence s: its heads round-robin (owner -1: every
    thread shares the sequence), all the heads (w owns it) or none (first past the last)."""
    if owner < 0:
        return (s * h + ((w - s * h) % nw + nw) % nw, nw)
    return (s * h if owner == w else (s + 1) * h, 1)


def _grad_thread[dtype: DType](pr: SsdParams, gr: SsdGradParams, T: Int, dt: Pointer[Scalar[dtype], MutUntrackedOrigin],
                               scratch: Pointer[Scalar[dtype], MutUntrackedOrigin],
                               gBw: Pointer[Scalar[dtype], MutUntrackedOrigin], gCw: Pointer[Scalar[dtype], MutUntrackedOrigin],
                               gdtp: Pointer[Scalar[dtype], MutUntrackedOrigin], gDp: Pointer[Scalar[dtype], MutUntrackedOrigin],
                               G: Pointer[Scalar[dtype], MutUntrackedOrigin], dGw: Pointer[Scalar[dtype], MutUntrackedOrigin],
                               lams: Pointer[Scalar[dtype], MutUntrackedOrigin], gAp: Pointer[Scalar[dtype], MutUntrackedOrigin],
                               cb: Pointer[Int, MutUntrackedOrigin], owners: Pointer[Int, MutUntrackedOrigin], ctl: Control,
                               w: Int, nw: Int) where dtype.is_floating_point():
    """Thread w's items of each sequence (_first_item: its heads i = w, w + nw, ... or all the
    heads of the sequences it owns), a sequence at a time: every item's dS from the final
    state's gradient, then the chunks last to first, each chunk for all the thread's items of
    the sequence in turn (they share the chunk's B, C, G and gB, gC rows, which so stay in
    cache; _ChunkGroups: G before them, dG B and dG^T C after), then the initial states'
    gradients. G, dGw: the thread's (g, Q, Q) each. Stops between chunks once cancelled."""
    var h = pr.h
    var p = pr.p
    var pn = p * pr.n
    var s = 0
    while s < pr.nseq and not ctl.cancelled():
        var fs = _first_item(h, s, w, nw, owners[unsafe_offset=s])
        var first = fs[0]
        var step = fs[1]
        var i = first
        while i < (s + 1) * h:
            var it = _Head[dtype](pr, gr, dt.unsafe_offset((i % h) * T), scratch, gBw, gCw, gdtp, gDp.unsafe_offset(i * p),
                                  G, dGw, lams.unsafe_offset((i - first) // step * pn), i % h)
            _grad_start[dtype](it, s)
            i += step
        var span = _seq_span(pr, s)
        var c = (span[1] - span[0] + pr.chunk - 1) // pr.chunk - 1
        var groups = _ChunkGroups[dtype](pr, G, dGw, scratch, first - s * h, step)
        while c >= 0 and first < (s + 1) * h and not ctl.cancelled():
            var tc0 = span[0] + c * pr.chunk
            groups.enter(tc0, min(span[1], tc0 + pr.chunk) - tc0)
            i = first
            while i < (s + 1) * h:
                var it = _Head[dtype](pr, gr, dt.unsafe_offset((i % h) * T), scratch, gBw, gCw, gdtp,
                                      gDp.unsafe_offset(i * p), G, dGw, lams.unsafe_offset((i - first) // step * pn), i % h)
                it.ga = gAp[unsafe_offset=i]
                it.nxt = (i + step) % h if i + step < (s + 1) * h else -1
                _grad_chunk[dtype](it, s, cb[unsafe_offset=s], c)
                gAp[unsafe_offset=i] = it.ga
                i += step
            groups.leave(tc0, min(span[1], tc0 + pr.chunk) - tc0, gBw, gCw)
            c -= 1
        i = first
        while i < (s + 1) * h:
            var it = _Head[dtype](pr, gr, dt.unsafe_offset((i % h) * T), scratch, gBw, gCw, gdtp, gDp.unsafe_offset(i * p),
                                  G, dGw, lams.unsafe_offset((i - first) // step * pn), i % h)
            _grad_end[dtype](it, s)
            i += step
        s += 1


def _owners(pr: SsdParams, nw: Int) -> OwnedArray[Int]:
    """Each sequence's thread when whole sequences go to threads (in order, each to the
    least loaded thread by tokens, ties to the lowest: fixed by the lengths), or all -1
    (every thread takes its share of every sequence's heads) when there are fewer sequences
    than threads or the whole sequences load some thread more than 9/8 of an even share."""
    var owners = OwnedArray[Int](pr.nseq, -1)
    if nw <= 1 or pr.nseq < nw:
        return owners^
    var load = OwnedArray[Int](nw, 0)
    var total = 0
    for s in range(pr.nseq):
        var span = _seq_span(pr, s)
        var best = 0
        for w in range(1, nw):
            if load[w] < load[best]:
                best = w
        owners[s] = best
        load[best] += span[1] - span[0]
        total += span[1] - span[0]
    var most = 0
    for w in range(nw):
        most = max(most, load[w])
    if 8 * most * nw > 9 * total:
        for s in range(pr.nseq):
            owners[s] = -1
    return owners^


struct _GroupWork[dtype: DType](Movable) where dtype.is_floating_point():
    """The forward's per-(chunk, group) products, owned: G = C B^T of every chunk and group
    (shared by the group's heads), in parallel over (chunk, group) before the heads."""

    var G: OwnedArray[Scalar[Self.dtype]]  # (chunks, g, Q, Q)
    var size: Int  # chunks g Q Q
    var items: Int  # chunks g
    var nw: Int  # threads

    def __init__(out self, pr: SsdParams, nch: Int, nw: Int):
        self.items = nch * pr.g
        self.size = self.items * pr.chunk * pr.chunk
        self.G = OwnedArray[Scalar[Self.dtype]](self.size)
        self.nw = max(1, min(nw, self.items))

    def products(self, pr: SsdParams, cb: OwnedArray[Int], scratch: OwnedArray[Scalar[Self.dtype]], per_worker: Int):
        """G of every (chunk, group); a thread's first Q n of scratch holds B^T."""
        var G = self.G.data
        var S = scratch.data
        var cbp = cb.data
        var gw = self.nw
        var items = self.items

        @always_inline
        def work(w: Int) {imm}:
            var mode = ieee_begin()
            var i = w
            while i < items:
                _group_products[Self.dtype](pr, cbp, G, S.unsafe_offset(w * per_worker), i // pr.g, i % pr.g)
                i += gw
            ieee_end(mode)

        spread(work, gw)


def scan_grad_chunked_typed[dtype: DType](pr: SsdParams, gr: SsdGradParams) raises where dtype.is_floating_point():
    """The backward of the forward block pr, chunked, in `dtype` (gr.fwd is not read: pr is
    that block)."""
    comptime W = lanes[dtype]()
    if pr.chunk % W != 0:
        raise Error("ssd.scan_grad_chunked: the chunk must be a multiple of the vector width")
    check_blocks(pr, gr, "ssd.scan_grad_chunked", W)
    var T = tokens(pr)
    var h = pr.h
    var p = pr.p
    var items = pr.nseq * h
    var nw = max(1, min(max(1, pr.threads), items))
    var per_worker = scratch_size(pr.chunk, p, pr.n)
    var rates = HeadRates[dtype](pr, T)
    var parts = ParamParts[dtype](pr, T, 1)
    var owners = _owners(pr, nw)
    var whole = pr.nseq > 0 and owners[0] >= 0  # whole sequences per thread: one gB, gC
    var copies = 1 if whole else nw  # of gB and gC, added in thread order at the end
    var per_lams = (h if whole else slots(h, nw)) * p * pr.n
    var lams = OwnedArray[Scalar[dtype]](nw * per_lams)  # each thread's slots of dS
    var scratch = OwnedArray[Scalar[dtype]](nw * per_worker)
    var gsize = pr.g * pr.chunk * pr.chunk
    var grp = OwnedArray[Scalar[dtype]](nw * 2 * gsize)  # each thread's G and dG of its chunk
    var sums = ThreadSums[dtype](gr, copies, T * pr.g * pr.n)
    var cb = chunk_bases(pr)
    var gt = gr
    var ctl = Control(gr.control)
    if whole:  # shared by the threads: zeroed before they start
        zero_fill(sums.gB_of(0), sums.tgn)
        zero_fill(sums.gC_of(0), sums.tgn)

    @always_inline
    def worker(w: Int) {imm}:
        var mode = ieee_begin()
        var wc = 0 if whole else w  # the thread's copy of gB, gC
        if not whole:
            zero_fill(sums.gB_of(w), sums.tgn)
            zero_fill(sums.gC_of(w), sums.tgn)
        _grad_thread[dtype](pr, gt, T, rates.dt.data, scratch.at(w * per_worker), sums.gB_of(wc), sums.gC_of(wc),
                            parts.gdtp.data, parts.gDp.data, grp.at(2 * w * gsize), grp.at((2 * w + 1) * gsize),
                            lams.at(w * per_lams), parts.gAp.data, cb.data, owners.data, ctl, w, nw)
        ieee_end(mode)

    spread(worker, nw)
    if not ctl.cancelled():
        parts.finish(pr, gr, sums)
    _ = rates^  # read through raw pointers above: the owners live until here
    _ = parts^
    _ = lams^
    _ = scratch^
    _ = grp^
    _ = sums^
    _ = cb^
    _ = owners^


def run_scan_grad_chunked(gr: SsdGradParams) raises:
    """Run a backward block, chunked: float32 when the forward's dtype_bits is 32, else float64."""
    var pr = SsdParams.load(gr.fwd)
    if pr.dtype_bits == 32:
        scan_grad_chunked_typed[F32](pr, gr)
    else:
        scan_grad_chunked_typed[F64](pr, gr)


# ------------------------------------------------------------------------------ forward
#
# The training forward as chunked products (Dao & Gu 2024 §6, the forward of the header's
# notation), per (sequence, head) and chunk, with S_c^T (n x p) carried from chunk to chunk:
#     ckpt[c] = S_c;  Y = diag(exp(cs)) C S_c^T + (L o G) U  (+ D X, ypre, * silu(z))
#     S_{c+1}^T = exp(cs_last) S_c^T + B^T diag(w) U
# y, fin and the checkpoints as the sequential kernel (aura_kernels/ssd/scan.mojo) writes them, up
# to rounding; G = C B^T per chunk and group first, as in the backward. The heads of a thread
# walk the chunks in lockstep as in the backward, every sequence's heads dealt round-robin
# (each item's S^T in an n x p slot of the thread's own, threads x ceil(h / threads) p n in
# all), prefetching the next item's x rows and their own y rows. The sequential kernel stays
# the inference and decode forward.


struct _FwdHead[dtype: DType](ImplicitlyCopyable) where dtype.is_floating_point():
    """One work item (sequence, head) of the chunked forward. Scratch regions (row-major):
    U = diag(dt') X, Uw = diag(w) U (Q x p); M = L o G (Q x Q); cs, ecs = exp(cs), w, idx (Q).
    ST = the state, transposed (n x p), is the item's own (it lives from chunk to chunk while
    the thread's other items take their turns)."""

    comptime P = Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var pr: SsdParams
    var dtp: Self.P  # dt' of head hh, indexed by token
    var Gall: Self.P  # (chunks, g, Q, Q) C B^T
    var U: Self.P
    var Uw: Self.P
    var M: Self.P
    var ST: Self.P
    var cs: Self.P
    var ecs: Self.P
    var w: Self.P
    var idx: Self.P
    var hh: Int
    var gg: Int
    var nxt: Int  # the head of the thread's next item in this chunk (its x rows are prefetched), or -1

    def __init__(out self, pr: SsdParams, dtp: Self.P, scratch: Self.P, Gall: Self.P, ST: Self.P, hh: Int):
        var Q = pr.chunk
        self.pr = pr
        self.dtp = dtp
        self.Gall = Gall
        self.hh = hh
        self.gg = hh // (pr.h // pr.g)
        self.nxt = -1
        var o = 0
        self.U = scratch.unsafe_offset(o); o += Q * pr.p
        self.Uw = scratch.unsafe_offset(o); o += Q * pr.p
        self.M = scratch.unsafe_offset(o); o += Q * Q
        self.ST = ST
        self.cs = scratch.unsafe_offset(o); o += Q
        self.ecs = scratch.unsafe_offset(o); o += Q
        self.w = scratch.unsafe_offset(o); o += Q
        self.idx = scratch.unsafe_offset(o); o += Q
        for i in range(Q):
            self.idx[unsafe_offset=i] = Scalar[Self.dtype](i)

    def pack(mut self, tc0: Int, L: Int):
        """cs (as the backward's pack), exp(cs), w, U and Uw of the chunk's tokens."""
        comptime Sc = Scalar[Self.dtype]
        var p = self.pr.p
        var x = scalar_ptr[Self.dtype](self.pr.x)
        var a_h = scalar_ptr[Self.dtype](self.pr.A)[unsafe_offset=self.hh]
        var acc = Sc(0)
        for i in range(L):
            var e = self.dtp[unsafe_offset=tc0 + i] * a_h
            if e > Sc(0):  # as the forward's decay exponent (NaN passes)
                e = Sc(0)
            acc += e
            self.cs[unsafe_offset=i] = acc
        var last = self.cs[unsafe_offset=L - 1]
        for i in range(L):
            var ci = self.cs[unsafe_offset=i]
            var wi = exp(last - ci)
            self.ecs[unsafe_offset=i] = exp(ci)
            self.w[unsafe_offset=i] = wi
            var xr = x.unsafe_offset(((tc0 + i) * self.pr.h + self.hh) * p)
            _scale(self.U.unsafe_offset(i * p), xr, self.dtp[unsafe_offset=tc0 + i], p)
            _scale(self.Uw.unsafe_offset(i * p), self.U.unsafe_offset(i * p), wi, p)

    def mask(mut self, L: Int, G: Self.P):
        """M = L o G: exp(cs_i - cs_j) G_ij for j <= i, zero above the diagonal (rows padded
        to Q with zeros)."""
        comptime W = lanes[Self.dtype]()
        comptime V = SIMD[Self.dtype, W]
        var Q = self.pr.chunk
        for i in range(L):
            var ci = V(self.cs[unsafe_offset=i])
            var Gi = G.unsafe_offset(i * Q)
            var Mi = self.M.unsafe_offset(i * Q)
            var j = 0
            while j <= i:  # the blocks holding columns 0 .. i (lanes past i may hold garbage)
                var keep = self.idx.unsafe_load[width=W](j).le(V(Scalar[Self.dtype](i)))
                var lij = exp(ci - self.cs.unsafe_load[width=W](j))
                Mi.unsafe_store(j, keep.select(lij * Gi.unsafe_load[width=W](j), V(0)))
                j += W
            while j < Q:
                Mi.unsafe_store(j, V(0))
                j += W

    @always_inline
    def finish_lanes[w: Int](self, xo: Int, k: Int):
        """Channels k .. k + w at offset xo of y: y += D x; with z, ypre = y and y *= silu(z)
        (the sequential kernel's epilogue)."""
        comptime V = SIMD[Self.dtype, w]
        var pr = self.pr
        var y = scalar_ptr[Self.dtype](pr.y)
        var yv = y.unsafe_load[width=w](xo)
        if pr.D != 0:
            var Dp = scalar_ptr[Self.dtype](pr.D)
            var dv = Dp.unsafe_load[width=w](self.hh * pr.p + k) if pr.d_per_p else V(Dp[unsafe_offset=self.hh])
            yv = dv.fma(scalar_ptr[Self.dtype](pr.x).unsafe_load[width=w](xo), yv)
        if pr.z != 0:
            if pr.ypre != 0:
                scalar_ptr[Self.dtype](pr.ypre).unsafe_store(xo, yv)
            yv = yv * silu[Self.dtype, w](scalar_ptr[Self.dtype](pr.z).unsafe_load[width=w](xo))
        y.unsafe_store(xo, yv)

    def prefetch_rows(self, tc0: Int, i0: Int, i1: Int):
        """Ask for the lines of the next item's x rows, local tokens i0 .. i1, and of this
        item's y rows, for writing (both come from memory)."""
        comptime LINE = 64 // size_of[Scalar[Self.dtype]]()
        var pr = self.pr
        var p = pr.p
        var x = scalar_ptr[Self.dtype](pr.x)
        var y = scalar_ptr[Self.dtype](pr.y)
        for i in range(i0, i1):
            var row = (tc0 + i) * pr.h
            var k = 0
            while k < p:
                if self.nxt >= 0:
                    prefetch[PrefetchOptions().for_read().high_locality()](x.unsafe_offset((row + self.nxt) * p + k))
                prefetch[PrefetchOptions().for_write().high_locality()](y.unsafe_offset((row + self.hh) * p + k))
                k += LINE

    def chunk(mut self, cg: Int, tc0: Int, L: Int, ck: Self.P):
        """Tokens tc0 .. tc0 + L (chunk cg of all): the checkpoint ck = S_c, y, then ST = S_{c+1}^T."""
        comptime W = lanes[Self.dtype]()
        var pr = self.pr
        var Q = pr.chunk
        var p = pr.p
        var n = pr.n
        var gn = pr.g * n
        var hp = pr.h * p
        var Bc = scalar_ptr[Self.dtype](pr.B).unsafe_offset((tc0 * pr.g + self.gg) * n)  # rows gn apart
        var Cc = scalar_ptr[Self.dtype](pr.C).unsafe_offset((tc0 * pr.g + self.gg) * n)
        var yo = (tc0 * pr.h + self.hh) * p  # rows hp apart
        var yc = scalar_ptr[Self.dtype](pr.y).unsafe_offset(yo)
        transpose[Self.dtype](n, p, self.ST, p, ck, n)
        self.pack(tc0, L)
        self.prefetch_rows(tc0, 0, L // 2)
        self.mask(L, self.Gall.unsafe_offset((cg * pr.g + self.gg) * Q * Q))
        self.prefetch_rows(tc0, L // 2, L)
        gemm[Self.dtype](L, p, n, Cc, gn, self.ST, p, yc, hp, False)
        for i in range(L):
            _scale(yc.unsafe_offset(i * hp), yc.unsafe_offset(i * hp), self.ecs[unsafe_offset=i], p)
        gemm[Self.dtype](L, p, L, self.M, Q, self.U, p, yc, hp, True, tri=A_LOWER)
        if pr.D != 0 or pr.z != 0:
            for i in range(L):
                var k = 0
                while k + W <= p:
                    self.finish_lanes[W](yo + i * hp + k, k)
                    k += W
                while k < p:
                    self.finish_lanes[1](yo + i * hp + k, k)
                    k += 1
        _scale(self.ST, self.ST, self.ecs[unsafe_offset=L - 1], n * p)
        gemm[Self.dtype](n, p, L, Bc, gn, self.Uw, p, self.ST, p, True, a_trans=True)


def _fwd_thread[dtype: DType](pr: SsdParams, T: Int, dt: Pointer[Scalar[dtype], MutUntrackedOrigin],
                              scratch: Pointer[Scalar[dtype], MutUntrackedOrigin], G: Pointer[Scalar[dtype], MutUntrackedOrigin],
                              STs: Pointer[Scalar[dtype], MutUntrackedOrigin], cb: Pointer[Int, MutUntrackedOrigin],
                              ctl: Control, w: Int, nw: Int) where dtype.is_floating_point():
    """Thread w's items (i = w, w + nw, ...), a sequence at a time: every item's state from
    init (or zero), then the chunks first to last, each chunk for all the thread's items of the
    sequence in turn (they share the chunk's B, C and G, which so stay in cache), then the
    final states into fin. Stops between chunks once cancelled."""
    var h = pr.h
    var p = pr.p
    var n = pr.n
    var Q = pr.chunk
    var pn = p * n
    var ck = scalar_ptr[dtype](pr.ckpt)
    var s = 0
    while s < pr.nseq and not ctl.cancelled():
        var first = s * h + ((w - s * h) % nw + nw) % nw  # the thread's first item of sequence s
        var i = first
        while i < (s + 1) * h:
            var ST = STs.unsafe_offset((i - first) // nw * pn)
            if pr.init != 0:
                transpose[dtype](p, n, scalar_ptr[dtype](pr.init).unsafe_offset(i * pn), n, ST, p)
            else:
                zero_fill(ST, pn)
            i += nw
        var span = _seq_span(pr, s)
        for c in range((span[1] - span[0] + Q - 1) // Q):
            if ctl.cancelled():
                return
            var tc0 = span[0] + c * Q
            i = first
            while i < (s + 1) * h:
                var it = _FwdHead[dtype](pr, dt.unsafe_offset((i % h) * T), scratch, G,
                                         STs.unsafe_offset((i - first) // nw * pn), i % h)
                it.nxt = (i + nw) % h if i + nw < (s + 1) * h else -1
                it.chunk(cb[unsafe_offset=s] + c, tc0, min(span[1], tc0 + Q) - tc0,
                         ck.unsafe_offset(((cb[unsafe_offset=s] + c) * h + i % h) * pn))
                i += nw
        i = first
        while i < (s + 1) * h:
            transpose[dtype](n, p, STs.unsafe_offset((i - first) // nw * pn), p,
                             scalar_ptr[dtype](pr.fin).unsafe_offset(i * pn), n)
            i += nw
        s += 1


def scan_chunked_typed[dtype: DType](pr: SsdParams) raises where dtype.is_floating_point():
    """The training forward block pr (y, fin and the checkpoints required) as chunked products."""
    comptime W = lanes[dtype]()
    if pr.chunk <= 0 or pr.chunk % W != 0 or pr.n % W != 0:
        raise Error("ssd.scan_chunked: the chunk and n must be positive multiples of the vector width")
    if pr.y == 0 or pr.fin == 0 or pr.ckpt == 0:
        raise Error("ssd.scan_chunked: y, fin and ckpt are required")
    var T = tokens(pr)
    var h = pr.h
    var items = pr.nseq * h
    var nw = max(1, min(max(1, pr.threads), items))
    var per_worker = scratch_size(pr.chunk, pr.p, pr.n)
    var rates = HeadRates[dtype](pr, T)
    var scratch = OwnedArray[Scalar[dtype]](nw * per_worker)
    var STs = OwnedArray[Scalar[dtype]](nw * slots(h, nw) * pr.p * pr.n)  # each thread's items' states, transposed
    var cb = chunk_bases(pr)
    var groups = _GroupWork[dtype](pr, cb[pr.nseq], nw)
    groups.products(pr, cb, scratch, per_worker)
    var ctl = Control(pr.control)

    @always_inline
    def worker(w: Int) {imm}:
        var mode = ieee_begin()
        _fwd_thread[dtype](pr, T, rates.dt.data, scratch.at(w * per_worker), groups.G.data,
                            STs.at(w * slots(h, nw) * pr.p * pr.n), cb.data, ctl, w, nw)
        ieee_end(mode)

    spread(worker, nw)
    _ = rates^  # read through raw pointers above: the owners live until here
    _ = scratch^
    _ = STs^
    _ = groups^
    _ = cb^


def run_scan_chunked(pr: SsdParams) raises:
    """Run a training forward block, chunked: float32 when dtype_bits is 32, else float64."""
    if pr.dtype_bits == 32:
        scan_chunked_typed[F32](pr)
    else:
        scan_chunked_typed[F64](pr)
