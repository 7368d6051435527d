# The backward of the Mamba-2 selective scan (aura_kernels/ssd/scan.mojo) on the CPU: every
# gradient in one pass over the sequence, from the states the training forward saved at
# chunk boundaries (ckpt), recomputing the states inside each chunk. Used by the binding
# kernels/ssd.mojo (`scan_grad`, the mojo backend) and the MAX op in ssd_ops.mojo.
#
# With u_t = dt'_t x_t[p], a_t = exp(dt'_t A) and ypre_t = C_t . s_t + D x_t (y = ypre silu(z)),
# the adjoint of the state, lam_t = dL/ds_t, runs backwards:
#     gyr_t     = gy_t silu(z_t)                  (gy_t without z)
#     lam_t     = a_{t+1} lam_{t+1} + gyr_t C_t   (lam after the last token: the final state's gradient)
#     gC_t     += sum_p gyr_t[p] s_t[p]           gB_t += sum_p u_t[p] lam_t[p]
#     gx_t[p]   = dt'_t (lam_t[p] . B_t) + D gyr_t[p]
#     gdt'_t   += sum_p x_t[p] (lam_t[p] . B_t) + A a_t (lam_t[p] . s_{t-1}[p])
#     gA       += sum_t sum_p dt'_t a_t (lam_t[p] . s_{t-1}[p])
#     gz_t      = gy_t ypre_t silu'(z_t)          gD += sum_t gyr_t x_t
#     g_init    = a_{t0} lam_{t0}                 (no gradient crosses a sequence boundary)
# and dt' = clamp(softplus?(dt + bias), lo, hi) passes gdt' back where the clamp is not
# active (torch's clamp: lo <= v <= hi) times softplus' (1 above 20, as the forward).
#
# Work items are those of the forward, (sequence, head, block of R channels), dealt
# round-robin to the threads. An item walks its sequence's chunks last to first: it
# recomputes the chunk's states from the chunk's checkpoint into scratch (Q + 1 states of
# R x n), then sweeps the chunk backwards, token by token, row by row. Per token it adds
# its rows' contributions to gB_t and gC_t (shared by the heads of a group and by all the
# channel blocks) into its thread's own (T, g, n) buffers, and its part of gdt'_t into its
# channel block's (T, h) slice: no two threads write one address, and the sums over threads
# and blocks are taken at the end in a fixed order, so results do not depend on timing.
#
# Memory: checkpoints (sum_s ceil(len_s / Q), h, p, n), saved by the forward, plus
# threads x (2 T g n + (Q + 1) R n) and (p / R) T h here: linear in the inputs, not O(T h p n).

from std.math import exp, log1p
from max.algorithm import parallelize
from aura_kernels.common import F32, F64, Control, OwnedArray, ieee_begin, ieee_end, scalar_ptr
from aura_kernels.ssd.scan import R, HeadRates, chunk_bases, fold, lanes, shrink, tokens
from aura_kernels.ssd.abi import SsdParams
from aura_kernels.ssd.grad_abi import SsdGradParams

@always_inline
def _sigmoid[dtype: DType](v: Scalar[dtype]) -> Scalar[dtype] where dtype.is_floating_point():
    return Scalar[dtype](1) / (Scalar[dtype](1) + exp(-v))


@always_inline
def zero_fill[dtype: DType](a: Pointer[Scalar[dtype], MutUntrackedOrigin], count: Int):
    """a[0 .. count) = 0."""
    for i in range(count):
        a[unsafe_offset=i] = 0


def _recompute_chunk[dtype: DType](pr: SsdParams, dtp: Pointer[Scalar[dtype], MutUntrackedOrigin],
                                   dec: Pointer[Scalar[dtype], MutUntrackedOrigin],
                                   start: Pointer[Scalar[dtype], MutUntrackedOrigin],
                                   S: Pointer[Scalar[dtype], MutUntrackedOrigin], tc0: Int, tc1: Int, hh: Int,
                                   p0: Int, rows: Int) where dtype.is_floating_point():
    """S[0] = the chunk's start state (rows x n), S[i + 1] = the state after token tc0 + i,
    exactly as the forward computed it (same operations, same order)."""
    comptime W = lanes[dtype]()
    comptime V = SIMD[dtype, W]
    var n = pr.n
    var h = pr.h
    var p = pr.p
    var gg = hh // (h // pr.g)
    var x = scalar_ptr[dtype](pr.x)
    var B = scalar_ptr[dtype](pr.B)
    var m = rows * n
    for i in range(m):
        S[unsafe_offset=i] = start[unsafe_offset=i]
    for t in range(tc0, tc1):
        var src = S.unsafe_offset((t - tc0) * m)
        var dst = src.unsafe_offset(m)
        var a = V(dec[unsafe_offset=t])
        var dtv = dtp[unsafe_offset=t]
        var Bp = B.unsafe_offset((t * pr.g + gg) * n)
        for k in range(rows):
            var u = V(dtv * x[unsafe_offset=(t * h + hh) * p + p0 + k])
            for j in range(0, n, W):
                dst.unsafe_store(k * n + j, Bp.unsafe_load[width=W](j).fma(u, src.unsafe_load[width=W](k * n + j) * a))


struct _Item[dtype: DType](ImplicitlyCopyable) where dtype.is_floating_point():
    """What one work item reads and accumulates: the blocks, its thread's scratch and
    buffers, and the running sums of gA and gD over its sequence."""

    var pr: SsdParams
    var gr: SsdGradParams
    var dtp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # dt' of head hh, indexed by token
    var dec: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # decay of head hh, indexed by token
    var S: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # (Q + 1) x rows x n recomputed states
    var lam: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # rows x n adjoint
    var G: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # Q x R: gy silu(z) of the chunk's tokens (R-row path)
    var gBw: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # this thread's (T, g, n) gB
    var gCw: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # this thread's (T, g, n) gC
    var gdtp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # this channel block's (T, h) gdt'
    var hh: Int
    var p0: Int
    var rows: Int
    var ga: Scalar[Self.dtype]
    var gd: SIMD[Self.dtype, R]

    def __init__(out self, pr: SsdParams, gr: SsdGradParams, dtp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin],
                 dec: Pointer[Scalar[Self.dtype], MutUntrackedOrigin], S: Pointer[Scalar[Self.dtype], MutUntrackedOrigin],
                 lam: Pointer[Scalar[Self.dtype], MutUntrackedOrigin], gBw: Pointer[Scalar[Self.dtype], MutUntrackedOrigin],
                 gCw: Pointer[Scalar[Self.dtype], MutUntrackedOrigin], gdtp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin],
                 hh: Int, p0: Int, rows: Int):
        self.pr = pr
        self.gr = gr
        self.dtp = dtp
        self.dec = dec
        self.S = S
        self.lam = lam
        self.G = lam.unsafe_offset(R * pr.n)
        self.gBw = gBw
        self.gCw = gCw
        self.gdtp = gdtp
        self.hh = hh
        self.p0 = p0
        self.rows = rows
        self.ga = 0
        self.gd = SIMD[Self.dtype, R](0)

    def recompute_rows(mut self, start: Pointer[Scalar[Self.dtype], MutUntrackedOrigin], tc0: Int, tc1: Int):
        """The R-row path, first pass over a chunk: per token the rows' gy silu(z) (into G),
        gz and gD; the states as _recompute_chunk, slice by slice with the R rows unrolled,
        adding gC_t = sum_p gyr_t[p] s_t[p] on the way (it needs no adjoint)."""
        comptime W = lanes[Self.dtype]()
        comptime V = SIMD[Self.dtype, W]
        comptime VR = SIMD[Self.dtype, R]
        var pr = self.pr
        var gr = self.gr
        var n = pr.n
        var h = pr.h
        var p = pr.p
        var g = pr.g
        var hh = self.hh
        var gg = hh // (h // g)
        var m = R * n
        var x = scalar_ptr[Self.dtype](pr.x)
        var B = scalar_ptr[Self.dtype](pr.B)
        var z = scalar_ptr[Self.dtype](pr.z)
        var ypre = scalar_ptr[Self.dtype](pr.ypre)
        var gy = scalar_ptr[Self.dtype](gr.gy)
        var gz = scalar_ptr[Self.dtype](gr.gz)
        var S = self.S
        var G = self.G
        var gCw = self.gCw
        for i in range(m):
            S[unsafe_offset=i] = start[unsafe_offset=i]
        var gd = self.gd
        for t in range(tc0, tc1):
            var xo = (t * h + hh) * p + self.p0
            var xv = x.unsafe_load[width=R](xo)
            var gyr = VR(0) if gr.gy == 0 else gy.unsafe_load[width=R](xo)
            if pr.z != 0:
                var zv = z.unsafe_load[width=R](xo)
                var sg = VR(1) / (VR(1) + exp(-zv))
                if gr.gz != 0:
                    gz.unsafe_store(xo, gyr * ypre.unsafe_load[width=R](xo) * sg * (VR(1) + zv * (VR(1) - sg)))
                gyr = gyr * zv * sg
            gd = gyr.fma(xv, gd)
            var Gt = G.unsafe_offset((t - tc0) * R)
            Gt.unsafe_store(0, gyr)
            var uv = xv * VR(self.dtp[unsafe_offset=t])
            var a = V(self.dec[unsafe_offset=t])
            var src = S.unsafe_offset((t - tc0) * m)
            var dst = src.unsafe_offset(m)
            var Bp = B.unsafe_offset((t * g + gg) * n)
            var gCt = gCw.unsafe_offset((t * g + gg) * n)
            for j in range(0, n, W):
                var bj = Bp.unsafe_load[width=W](j)
                var gcj = gCt.unsafe_load[width=W](j)
                comptime for k in range(R):
                    var st = bj.fma(V(uv[k]), src.unsafe_load[width=W](k * n + j) * a)
                    dst.unsafe_store(k * n + j, st)
                    gcj = st.fma(V(Gt[unsafe_offset=k]), gcj)
                gCt.unsafe_store(j, gcj)
        self.gd = gd

    def sweep_rows(mut self, tc0: Int, tc1: Int):
        """The R-row path, second pass: tokens tc1 - 1 down to tc0, slice by slice with the
        R rows unrolled. B, C and gB_t are loaded once per slice; the rows' lam . B go to 8
        accumulators reduced together by the forward's transpose-reduce; lam . s_{t-1} is
        only needed summed over the rows (gdt', gA), so one accumulator serves them all."""
        comptime W = lanes[Self.dtype]()
        comptime V = SIMD[Self.dtype, W]
        comptime VR = SIMD[Self.dtype, R]
        comptime Sc = Scalar[Self.dtype]
        var pr = self.pr
        var gr = self.gr
        var n = pr.n
        var h = pr.h
        var p = pr.p
        var g = pr.g
        var hh = self.hh
        var gg = hh // (h // g)
        var m = R * n
        var x = scalar_ptr[Self.dtype](pr.x)
        var B = scalar_ptr[Self.dtype](pr.B)
        var C = scalar_ptr[Self.dtype](pr.C)
        var gx = scalar_ptr[Self.dtype](gr.gx)
        var lam = self.lam
        var S = self.S
        var G = self.G
        var gBw = self.gBw
        var gdtp = self.gdtp
        var a_h = scalar_ptr[Self.dtype](pr.A)[unsafe_offset=hh]
        var dvec = VR(0)
        if pr.D != 0:
            var Dp = scalar_ptr[Self.dtype](pr.D)
            dvec = Dp.unsafe_load[width=R](hh * p + self.p0) if pr.d_per_p else VR(Dp[unsafe_offset=hh])
        var ga = Sc(0)
        var t = tc1 - 1
        while t >= tc0:
            var dtv = self.dtp[unsafe_offset=t]
            var av = self.dec[unsafe_offset=t]
            var xo = (t * h + hh) * p + self.p0
            var xv = x.unsafe_load[width=R](xo)
            var uv = xv * VR(dtv)
            var Gt = G.unsafe_offset((t - tc0) * R)
            var a = V(av)
            var Bp = B.unsafe_offset((t * g + gg) * n)
            var Cp = C.unsafe_offset((t * g + gg) * n)
            var gBt = gBw.unsafe_offset((t * g + gg) * n)
            var s_p = S.unsafe_offset((t - tc0) * m)
            var sums = _lam_rows_step[Self.dtype](n, Bp, Cp, gBt, Gt, uv, lam, s_p, a)
            var lbs = sums[0]
            var lss = sums[1]
            gx.unsafe_store(xo, lbs.fma(VR(dtv), Gt.unsafe_load[width=R](0) * dvec))
            gdtp[unsafe_offset=t * h + hh] = (xv * lbs).reduce_add() + a_h * av * lss
            ga += dtv * av * lss
            t -= 1
        self.ga += ga

    def sweep_chunk(mut self, tc0: Int, tc1: Int):
        """Tokens tc1 - 1 down to tc0, with S holding the chunk's states (see the header).
        Rows one after the other, for the channels past the last full block of R (full
        blocks take recompute_rows + sweep_rows)."""
        comptime Sc = Scalar[Self.dtype]
        var t = tc1 - 1
        while t >= tc0:
            var gdt_sum = Sc(0)
            var ga_sum = Sc(0)
            for k in range(self.rows):
                var r = self.sweep_row(t, tc0, k)
                gdt_sum += r[0]
                ga_sum += r[1]
            self.gdtp[unsafe_offset=t * self.pr.h + self.hh] = gdt_sum
            self.ga += ga_sum
            t -= 1

    def sweep_row(mut self, t: Int, tc0: Int, k: Int) -> Tuple[Scalar[Self.dtype], Scalar[Self.dtype]]:
        """Row k at token t (sweep_chunk): gx, gz, gD, gB_t, gC_t and the adjoint; returns the
        row's terms of gdt'_t and of gA."""
        comptime W = lanes[Self.dtype]()
        comptime V = SIMD[Self.dtype, W]
        comptime Sc = Scalar[Self.dtype]
        var pr = self.pr
        var gr = self.gr
        var n = pr.n
        var hh = self.hh
        var row = (t * pr.g + hh // (pr.h // pr.g)) * n
        var dtv = self.dtp[unsafe_offset=t]
        var av = self.dec[unsafe_offset=t]
        var xo = (t * pr.h + hh) * pr.p + self.p0 + k
        var xk = scalar_ptr[Self.dtype](pr.x)[unsafe_offset=xo]
        var gyr = Sc(0) if gr.gy == 0 else scalar_ptr[Self.dtype](gr.gy)[unsafe_offset=xo]
        if pr.z != 0:
            var zk = scalar_ptr[Self.dtype](pr.z)[unsafe_offset=xo]
            var sg = _sigmoid[Self.dtype](zk)
            if gr.gz != 0:
                var yp = scalar_ptr[Self.dtype](pr.ypre)[unsafe_offset=xo]
                scalar_ptr[Self.dtype](gr.gz)[unsafe_offset=xo] = gyr * yp * sg * (Sc(1) + zk * (Sc(1) - sg))
            gyr = gyr * zk * sg
        var gxk = Sc(0)
        if pr.D != 0:
            var Dp = scalar_ptr[Self.dtype](pr.D)
            self.gd[k] += gyr * xk
            gxk = gyr * (Dp[unsafe_offset=hh * pr.p + self.p0 + k] if pr.d_per_p else Dp[unsafe_offset=hh])
        var Bp = scalar_ptr[Self.dtype](pr.B).unsafe_offset(row)
        var Cp = scalar_ptr[Self.dtype](pr.C).unsafe_offset(row)
        var gBt = self.gBw.unsafe_offset(row)
        var gCt = self.gCw.unsafe_offset(row)
        var s_t = self.S.unsafe_offset(((t - tc0 + 1) * self.rows + k) * n)
        var s_p = self.S.unsafe_offset(((t - tc0) * self.rows + k) * n)
        var gv = V(gyr)
        var u = V(dtv * xk)
        var lk = self.lam.unsafe_offset(k * n)
        var lb = V(0)
        var ls = V(0)
        for j in range(0, n, W):
            var l = Cp.unsafe_load[width=W](j).fma(gv, lk.unsafe_load[width=W](j))
            gCt.unsafe_store(j, s_t.unsafe_load[width=W](j).fma(gv, gCt.unsafe_load[width=W](j)))
            gBt.unsafe_store(j, l.fma(u, gBt.unsafe_load[width=W](j)))
            lb = l.fma(Bp.unsafe_load[width=W](j), lb)
            ls = l.fma(s_p.unsafe_load[width=W](j), ls)
            lk.unsafe_store(j, l * V(av))
        var lbs = lb.reduce_add()
        var lss = ls.reduce_add()
        scalar_ptr[Self.dtype](gr.gx)[unsafe_offset=xo] = dtv * lbs + gxk
        return (xk * lbs + self.a_h() * av * lss, dtv * av * lss)

    @always_inline
    def a_h(self) -> Scalar[Self.dtype]:
        """A of the item's head."""
        return scalar_ptr[Self.dtype](self.pr.A)[unsafe_offset=self.hh]


@always_inline
def _lam_rows_step[dtype: DType](
    n: Int, Bp: Pointer[Scalar[dtype], MutUntrackedOrigin], Cp: Pointer[Scalar[dtype], MutUntrackedOrigin],
    gBt: Pointer[Scalar[dtype], MutUntrackedOrigin], Gt: Pointer[Scalar[dtype], MutUntrackedOrigin],
    uv: SIMD[dtype, R], lam: Pointer[Scalar[dtype], MutUntrackedOrigin], s_p: Pointer[Scalar[dtype], MutUntrackedOrigin],
    a: SIMD[dtype, lanes[dtype]()],
) -> Tuple[SIMD[dtype, R], Scalar[dtype]] where dtype.is_floating_point():
    """One token of the R-row sweep, slice by slice over n: the rows' lam += C gy_t (Gt),
    gB_t += lam u_t, then lam decays by a; returns (each row's lam . B, the rows' summed
    lam . s_{t-1} (s_p))."""
    comptime W = lanes[dtype]()
    comptime V = SIMD[dtype, W]
    var lb = SIMD[dtype, R * W](0)
    var ls = V(0)
    for j in range(0, n, W):
        var bj = Bp.unsafe_load[width=W](j)
        var cj = Cp.unsafe_load[width=W](j)
        var gbj = gBt.unsafe_load[width=W](j)
        comptime for k in range(R):
            var l = cj.fma(V(Gt[unsafe_offset=k]), lam.unsafe_load[width=W](k * n + j))
            gbj = l.fma(V(uv[k]), gbj)
            lb = lb.insert[offset=k * W](l.fma(bj, lb.slice[W, offset=k * W]()))
            ls = l.fma(s_p.unsafe_load[width=W](k * n + j), ls)
            lam.unsafe_store(k * n + j, l * a)
        gBt.unsafe_store(j, gbj)
    return (_row_sums[dtype, W](lb), ls.reduce_add())


@always_inline
def _row_sums[dtype: DType, w: Int](acc: SIMD[dtype, R * w]) -> SIMD[dtype, R]:
    """The R lane sums of R accumulators of w lanes laid end to end."""
    comptime assert R == 8, "_row_sums folds exactly 8 rows"
    var a0 = acc.slice[w, offset=0]()
    var a1 = acc.slice[w, offset=w]()
    var a2 = acc.slice[w, offset=2 * w]()
    var a3 = acc.slice[w, offset=3 * w]()
    var a4 = acc.slice[w, offset=4 * w]()
    var a5 = acc.slice[w, offset=5 * w]()
    var a6 = acc.slice[w, offset=6 * w]()
    var a7 = acc.slice[w, offset=7 * w]()
    return shrink[dtype, w](fold(fold(fold(a0, a1), fold(a2, a3)), fold(fold(a4, a5), fold(a6, a7))))


def _grad_item[dtype: DType](mut it: _Item[dtype], s: Int, cbase: Int) where dtype.is_floating_point():
    """Sequence s for the item's head and channels: the adjoint from the final state's
    gradient back to the initial state's, chunk by chunk (last first). Stops between chunks
    once the caller's control is cancelled."""
    var pr = it.pr
    var gr = it.gr
    var ctl = Control(gr.control)
    var n = pr.n
    var h = pr.h
    var p = pr.p
    var Q = pr.chunk
    var offs = Pointer[Int64, MutUntrackedOrigin](unsafe_from_address=pr.offsets)
    var t0 = Int(offs[unsafe_offset=s])
    var t1 = Int(offs[unsafe_offset=s + 1])
    var m = it.rows * n
    var base = ((s * h + it.hh) * p + it.p0) * n  # rows p0.. of state [s, hh]
    if gr.gfin != 0:
        var gf = scalar_ptr[dtype](gr.gfin).unsafe_offset(base)
        for i in range(m):
            it.lam[unsafe_offset=i] = gf[unsafe_offset=i]
    else:
        zero_fill(it.lam, m)
    var ck = scalar_ptr[dtype](pr.ckpt)
    var c = (t1 - t0 + Q - 1) // Q - 1
    while c >= 0:
        if ctl.cancelled():
            return
        var tc0 = t0 + c * Q
        var start = ck.unsafe_offset((((cbase + c) * h + it.hh) * p + it.p0) * n)
        if it.rows == R:
            it.recompute_rows(start, tc0, min(t1, tc0 + Q))
            it.sweep_rows(tc0, min(t1, tc0 + Q))
        else:
            _recompute_chunk[dtype](pr, it.dtp, it.dec, start, it.S, tc0, min(t1, tc0 + Q), it.hh, it.p0, it.rows)
            it.sweep_chunk(tc0, min(t1, tc0 + Q))
        c -= 1
    if gr.ginit != 0:
        var gi = scalar_ptr[dtype](gr.ginit).unsafe_offset(base)
        for i in range(m):
            gi[unsafe_offset=i] = it.lam[unsafe_offset=i]


def _dt_chain_head[dtype: DType](pr: SsdParams, gr: SsdGradParams, T: Int, nb: Int,
                                  gdtp: Pointer[Scalar[dtype], MutUntrackedOrigin], hh: Int) where dtype.is_floating_point():
    """dt_chain of head hh."""
    comptime Sc = Scalar[dtype]
    var h = pr.h
    var dt = scalar_ptr[dtype](pr.dt)
    var gdt = scalar_ptr[dtype](gr.gdt)
    var lo = Sc(pr.lo)
    var hi = Sc(pr.hi)
    var b = Sc(0) if pr.dt_bias == 0 else scalar_ptr[dtype](pr.dt_bias)[unsafe_offset=hh]
    var gb = Sc(0)
    for t in range(T):
        var gsum = Sc(0)
        for pb in range(nb):
            gsum += gdtp[unsafe_offset=(pb * T + t) * h + hh]
        var v = dt[unsafe_offset=t * h + hh] + b
        var dsp = Sc(1)
        if pr.softplus and v <= Sc(20):
            dsp = _sigmoid[dtype](v)
            v = log1p(exp(v))  # softplus below 20, as the forward's _dt_vec
        var gv = gsum * dsp if (v >= lo and v <= hi) else Sc(0)
        if gr.gdt != 0:
            gdt[unsafe_offset=t * h + hh] = gv
        gb += gv
    if gr.gbias != 0:
        scalar_ptr[dtype](gr.gbias)[unsafe_offset=hh] = gb


def dt_chain[dtype: DType](pr: SsdParams, gr: SsdGradParams, T: Int, nb: Int,
                            gdtp: Pointer[Scalar[dtype], MutUntrackedOrigin]) where dtype.is_floating_point():
    """gdt = (sum over channel blocks of gdt') * [lo <= v <= hi] * softplus'(dt + bias), and
    gbias = sum over tokens of gdt; the heads spread over the threads (each head's sums in
    one thread, in token order: the results do not depend on the split)."""
    var h = pr.h
    var hn = min(max(1, pr.threads), h)
    var pt = pr
    var gt = gr

    @always_inline
    def heads(w: Int) {imm}:
        var mode = ieee_begin()
        var hh = w
        while hh < h:
            _dt_chain_head[dtype](pt, gt, T, nb, gdtp, hh)
            hh += hn
        ieee_end(mode)

    if hn <= 1 or T * h < 4096:
        for hh in range(h):
            _dt_chain_head[dtype](pr, gr, T, nb, gdtp, hh)
    else:
        parallelize(heads, hn, hn)


def sum_params[dtype: DType](pr: SsdParams, gr: SsdGradParams, nb: Int,
                              gAp: Pointer[Scalar[dtype], MutUntrackedOrigin],
                              gDp: Pointer[Scalar[dtype], MutUntrackedOrigin]) where dtype.is_floating_point():
    """gA[h] = sum over sequences and channel blocks; gD[h(, p)] = sum over sequences (and
    channels for a per-head D)."""
    var h = pr.h
    var p = pr.p
    if gr.gA != 0:
        var gA = scalar_ptr[dtype](gr.gA)
        for hh in range(h):
            var acc = Scalar[dtype](0)
            for s in range(pr.nseq):
                for pb in range(nb):
                    acc += gAp[unsafe_offset=(s * h + hh) * nb + pb]
            gA[unsafe_offset=hh] = acc
    if gr.gD != 0 and pr.D != 0:
        var gD = scalar_ptr[dtype](gr.gD)
        for hh in range(h):
            var per_head = Scalar[dtype](0)
            for pp in range(p):
                var acc = Scalar[dtype](0)
                for s in range(pr.nseq):
                    acc += gDp[unsafe_offset=(s * h + hh) * p + pp]
                if pr.d_per_p:
                    gD[unsafe_offset=hh * p + pp] = acc
                per_head += acc
            if not pr.d_per_p:
                gD[unsafe_offset=hh] = per_head


def sum_threads[dtype: DType](out_: Pointer[Scalar[dtype], MutUntrackedOrigin],
                               bufs: Pointer[Scalar[dtype], MutUntrackedOrigin], nw: Int, count: Int):
    """out_ += the nw - 1 buffers of count values after it (thread 0 wrote into out_)."""
    for w in range(1, nw):
        var b = bufs.unsafe_offset((w - 1) * count)
        for i in range(count):
            out_[unsafe_offset=i] += b[unsafe_offset=i]


def check_blocks(pr: SsdParams, gr: SsdGradParams, kernel: StaticString, W: Int) raises:
    """What a backward needs of its blocks (raised before anything is allocated)."""
    if pr.n % W != 0:
        raise Error(String(kernel, ": n must be a multiple of the vector width"))
    if pr.ckpt == 0 or pr.chunk <= 0:
        raise Error(String(kernel, ": the forward block has no checkpoints"))
    if pr.z != 0 and pr.ypre == 0:
        raise Error(String(kernel, ": a gated forward must have saved ypre"))
    if gr.gx == 0 or gr.gB == 0 or gr.gC == 0:
        raise Error(String(kernel, ": gx, gB and gC are required"))


struct ThreadSums[dtype: DType](Movable) where dtype.is_floating_point():
    """gB and gC summed per thread: thread 0 writes the outputs themselves, threads 1 .. nw - 1
    their own (T, g, n) buffers (owned here), added in thread order at the end, so no two
    threads write one address and the result does not depend on timing."""

    var extra: OwnedArray[Scalar[Self.dtype]]  # threads 1.. gB, then their gC
    var gB: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var gC: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var nw: Int
    var tgn: Int

    def __init__(out self, gr: SsdGradParams, nw: Int, tgn: Int):
        self.extra = OwnedArray[Scalar[Self.dtype]](2 * (nw - 1) * tgn)
        self.gB = scalar_ptr[Self.dtype](gr.gB)
        self.gC = scalar_ptr[Self.dtype](gr.gC)
        self.nw = nw
        self.tgn = tgn

    def gB_of(self, w: Int) -> Pointer[Scalar[Self.dtype], MutUntrackedOrigin]:
        """Thread w's gB buffer (valid while self lives)."""
        return self.gB if w == 0 else self.extra.at((w - 1) * self.tgn)

    def gC_of(self, w: Int) -> Pointer[Scalar[Self.dtype], MutUntrackedOrigin]:
        """Thread w's gC buffer (valid while self lives)."""
        return self.gC if w == 0 else self.extra.at((self.nw - 1 + w - 1) * self.tgn)

    def add_up(self):
        """The threads' buffers into gB and gC, in thread order."""
        sum_threads[Self.dtype](self.gB, self.extra.data, self.nw, self.tgn)
        sum_threads[Self.dtype](self.gC, self.extra.at((self.nw - 1) * self.tgn), self.nw, self.tgn)


struct ParamParts[dtype: DType](Movable) where dtype.is_floating_point():
    """The per-item parts of the parameter gradients, owned, zeroed: gdt' per channel block,
    token and head (tokens of no sequence stay 0), gA per (sequence, head, block) and gD per
    (sequence, head, channel); `finish` turns them and the threads' gB, gC into the outputs."""

    var gdtp: OwnedArray[Scalar[Self.dtype]]  # (nb, T, h)
    var gAp: OwnedArray[Scalar[Self.dtype]]  # (nseq, h, nb)
    var gDp: OwnedArray[Scalar[Self.dtype]]  # (nseq, h, p)
    var T: Int
    var nb: Int

    def __init__(out self, pr: SsdParams, T: Int, nb: Int):
        """nb: channel blocks per head (1: one item per (sequence, head))."""
        self.gdtp = OwnedArray[Scalar[Self.dtype]](nb * T * pr.h, 0)
        self.gAp = OwnedArray[Scalar[Self.dtype]](pr.nseq * pr.h * nb, 0)
        self.gDp = OwnedArray[Scalar[Self.dtype]](pr.nseq * pr.h * pr.p, 0)
        self.T = T
        self.nb = nb

    def finish(self, pr: SsdParams, gr: SsdGradParams, sums: ThreadSums[Self.dtype]):
        """gB and gC added up over the threads, gdt and gdt_bias down the dt chain, gA and gD."""
        sums.add_up()
        dt_chain[Self.dtype](pr, gr, self.T, self.nb, self.gdtp.data)
        sum_params[Self.dtype](pr, gr, self.nb, self.gAp.data, self.gDp.data)


def spread[F: def(Int) -> None](work: F, nw: Int):
    """work(0) .. work(nw - 1), on nw threads when there are several."""
    if nw <= 1:
        work(0)
    else:
        parallelize(work, nw, nw)


def scan_grad_typed[dtype: DType](pr: SsdParams, gr: SsdGradParams) raises where dtype.is_floating_point():
    """The backward of the forward block pr in `dtype` (gr.fwd is not read: pr is that block)."""
    check_blocks(pr, gr, "ssd.scan_grad", lanes[dtype]())
    var T = tokens(pr)
    var h = pr.h
    var p = pr.p
    var n = pr.n
    var Q = pr.chunk
    var nb = (p + R - 1) // R
    var items = pr.nseq * h * nb
    var nw = max(1, min(max(1, pr.threads), items))
    var rates = HeadRates[dtype](pr, T)
    var parts = ParamParts[dtype](pr, T, nb)
    var per_worker = (Q + 1) * R * n + R * n + Q * R
    var scratch = OwnedArray[Scalar[dtype]](nw * per_worker)
    var sums = ThreadSums[dtype](gr, nw, T * pr.g * n)
    var cb = chunk_bases(pr)
    var pt = pr
    var gt = gr
    var ctl = Control(gr.control)

    @always_inline
    def worker(w: Int) {imm}:
        var mode = ieee_begin()
        var gBw = sums.gB_of(w)
        var gCw = sums.gC_of(w)
        zero_fill(gBw, sums.tgn)
        zero_fill(gCw, sums.tgn)
        var S = scratch.at(w * per_worker)
        var lam = S.unsafe_offset((Q + 1) * R * n)
        var i = w
        while i < items and not ctl.cancelled():
            var pb = i % nb
            var rest = i // nb
            var hh = rest % h
            var s = rest // h
            var p0 = pb * R
            var it = _Item[dtype](pt, gt, rates.dt.at(hh * T), rates.decay.at(hh * T), S, lam, gBw, gCw,
                                  parts.gdtp.at(pb * T * h), hh, p0, min(R, p - p0))
            _grad_item[dtype](it, s, cb[s])
            parts.gAp[i] = it.ga
            for k in range(it.rows):
                parts.gDp[(s * h + hh) * p + p0 + k] = it.gd[k]
            i += nw
        ieee_end(mode)

    spread(worker, nw)
    if not ctl.cancelled():
        parts.finish(pr, gr, sums)
    _ = rates^  # read through raw pointers above: the owners live until here
    _ = parts^
    _ = scratch^
    _ = sums^
    _ = cb^


def run_scan_grad(gr: SsdGradParams) raises:
    """Run a backward block: float32 when the forward's dtype_bits is 32, else float64."""
    var pr = SsdParams.load(gr.fwd)
    if pr.dtype_bits == 32:
        scan_grad_typed[F32](pr, gr)
    else:
        scan_grad_typed[F64](pr, gr)
