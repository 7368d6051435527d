# The backward of the Mamba-2 selective scan (aura_kernels/ssd.mojo) as chunked matrix
# products (the SSD block decomposition, Dao & Gu 2024 §6; shared/notes/ssd-backward.md §2).
# Same block, same gradients, same results up to rounding as the sequential adjoint of
# aura_kernels/ssd_grad.mojo, which stays the reference kernel (and MAX's backward).
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
# sequential backward's (_dt_chain, _sum_threads, _sum_params).
#
# Work items: (sequence, head), dealt round-robin to the threads (a fixed assignment: the
# sums over threads are taken in a fixed order, so results do not depend on timing). An item
# walks its chunks last to first with dS in its scratch; gB, gC (shared by the heads of a
# group) go to its thread's own (T, g, n) buffers. No forward is recomputed: the backward
# reads only the checkpoints and the inputs.
#
# Memory: threads x (2 T g n + scratch of 8 Q p + 5 Q n + 4 Q^2 + 2 p n + 4 Q) and T h here.

from std.math import exp
from std.memory.alloc import unsafe_alloc
from max.algorithm import parallelize
from aura_kernels.common import F32, F64, Control, ieee_begin, ieee_end
from aura_kernels.chunk_gemm import gemm, transpose
from aura_kernels.ssd import _lanes, _p, chunk_bases, head_rates, tokens
from aura_kernels.ssd_abi import SsdParams
from aura_kernels.ssd_grad import _dt_chain, _sum_params, _sum_threads, _zero
from aura_kernels.ssd_grad_abi import SsdGradParams


def scratch_size(Q: Int, p: Int, n: Int) -> Int:
    """Elements of one thread's scratch (see _Head)."""
    return 8 * Q * p + 5 * Q * n + 4 * Q * Q + 2 * p * n + 4 * Q


struct _Head[dtype: DType](ImplicitlyCopyable) where dtype.is_floating_point():
    """One work item (sequence, head): the blocks, the thread's scratch regions and buffers,
    and the running sum of gA. Scratch regions (row-major, leading dimension their width):
    X, U, Uw = diag(w) U, dY, dYe = diag(exp(cs)) dY, dU (Q x p); UT, dYeT (p x Q);
    Bc, Cc, dCh, dBh (Q x n), BT (n x Q); G, MT = (L o G)^T, dG, dGT (Q x Q);
    lam = dS (p x n), lamT (n x p); cs, ecs, w, dcs (Q)."""

    var pr: SsdParams
    var gr: SsdGradParams
    var dtp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # dt' of head hh, indexed by token
    var gBw: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # this thread's (T, g, n) gB
    var gCw: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # this thread's (T, g, n) gC
    var gdtp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # (T, h) gdt'
    var gdp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]  # gD of this (sequence, head): p values
    var X: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var U: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var Uw: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var dY: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var dYe: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var dU: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var UT: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var dYeT: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var Bc: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var Cc: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var dCh: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var dBh: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var BT: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var lamT: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var G: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var MT: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var dG: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var dGT: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var lam: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var cs: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var ecs: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var w: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var dcs: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var hh: Int
    var gg: Int
    var ga: Scalar[Self.dtype]

    def __init__(out self, pr: SsdParams, gr: SsdGradParams, dtp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin],
                 scratch: Pointer[Scalar[Self.dtype], MutUntrackedOrigin],
                 gBw: Pointer[Scalar[Self.dtype], MutUntrackedOrigin], gCw: Pointer[Scalar[Self.dtype], MutUntrackedOrigin],
                 gdtp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin], gdp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin],
                 hh: Int):
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
        self.hh = hh
        self.gg = hh // (pr.h // pr.g)
        self.ga = 0
        var o = 0
        self.X = scratch.unsafe_offset(o); o += Q * p
        self.U = scratch.unsafe_offset(o); o += Q * p
        self.Uw = scratch.unsafe_offset(o); o += Q * p
        self.dY = scratch.unsafe_offset(o); o += Q * p
        self.dYe = scratch.unsafe_offset(o); o += Q * p
        self.dU = scratch.unsafe_offset(o); o += Q * p
        self.UT = scratch.unsafe_offset(o); o += Q * p
        self.dYeT = scratch.unsafe_offset(o); o += Q * p
        self.Bc = scratch.unsafe_offset(o); o += Q * n
        self.Cc = scratch.unsafe_offset(o); o += Q * n
        self.dCh = scratch.unsafe_offset(o); o += Q * n
        self.dBh = scratch.unsafe_offset(o); o += Q * n
        self.BT = scratch.unsafe_offset(o); o += Q * n
        self.G = scratch.unsafe_offset(o); o += Q * Q
        self.MT = scratch.unsafe_offset(o); o += Q * Q
        self.dG = scratch.unsafe_offset(o); o += Q * Q
        self.dGT = scratch.unsafe_offset(o); o += Q * Q
        self.lam = scratch.unsafe_offset(o); o += p * n
        self.lamT = scratch.unsafe_offset(o); o += p * n
        self.cs = scratch.unsafe_offset(o); o += Q
        self.ecs = scratch.unsafe_offset(o); o += Q
        self.w = scratch.unsafe_offset(o); o += Q
        self.dcs = scratch.unsafe_offset(o); o += Q

    def pack(mut self, tc0: Int, L: Int):
        """The chunk's rows into scratch: X, dY (gy silu(z); gz and gD on the way), U, B, C,
        the cumulative decay exponents cs and exp(cs), w."""
        comptime Sc = Scalar[Self.dtype]
        var pr = self.pr
        var gr = self.gr
        var p = pr.p
        var n = pr.n
        var h = pr.h
        var g = pr.g
        var hh = self.hh
        var x = _p[Self.dtype](pr.x)
        var z = _p[Self.dtype](pr.z)
        var ypre = _p[Self.dtype](pr.ypre)
        var gy = _p[Self.dtype](gr.gy)
        var gz = _p[Self.dtype](gr.gz)
        var B = _p[Self.dtype](pr.B)
        var C = _p[Self.dtype](pr.C)
        var a_h = _p[Self.dtype](pr.A)[unsafe_offset=hh]
        var acc = Sc(0)
        for i in range(L):
            var t = tc0 + i
            var dtv = self.dtp[unsafe_offset=t]
            var e = dtv * a_h
            if e > Sc(0):  # as the forward's decay exponent (NaN passes)
                e = Sc(0)
            acc += e
            self.cs[unsafe_offset=i] = acc
            for k in range(p):
                var xo = (t * h + hh) * p + k
                var xk = x[unsafe_offset=xo]
                var gyr = Sc(0) if gr.gy == 0 else gy[unsafe_offset=xo]
                if pr.z != 0:
                    var zk = z[unsafe_offset=xo]
                    var sg = Sc(1) / (Sc(1) + exp(-zk))
                    if gr.gz != 0:
                        gz[unsafe_offset=xo] = gyr * ypre[unsafe_offset=xo] * sg * (Sc(1) + zk * (Sc(1) - sg))
                    gyr = gyr * zk * sg
                self.gdp[unsafe_offset=k] += gyr * xk
                self.X[unsafe_offset=i * p + k] = xk
                self.U[unsafe_offset=i * p + k] = dtv * xk
                self.dY[unsafe_offset=i * p + k] = gyr
            var Bp = B.unsafe_offset((t * g + self.gg) * n)
            var Cp = C.unsafe_offset((t * g + self.gg) * n)
            for j in range(n):
                self.Bc[unsafe_offset=i * n + j] = Bp[unsafe_offset=j]
                self.Cc[unsafe_offset=i * n + j] = Cp[unsafe_offset=j]
        var last = self.cs[unsafe_offset=L - 1]
        for i in range(L):
            var ci = self.cs[unsafe_offset=i]
            var ec = exp(ci)
            var wi = exp(last - ci)
            self.ecs[unsafe_offset=i] = ec
            self.w[unsafe_offset=i] = wi
            self.dcs[unsafe_offset=i] = 0
            for k in range(p):
                self.dYe[unsafe_offset=i * p + k] = ec * self.dY[unsafe_offset=i * p + k]
                self.Uw[unsafe_offset=i * p + k] = wi * self.U[unsafe_offset=i * p + k]

    def masks(mut self, L: Int):
        """G = C B^T, dG = (dY U^T) o L, MT = (L o G)^T, dGT = dG^T, and the intra-chunk part
        of dcs (row sums minus column sums of dG o G)."""
        comptime Sc = Scalar[Self.dtype]
        var Q = self.pr.chunk
        var p = self.pr.p
        var n = self.pr.n
        transpose[Self.dtype](L, n, self.Bc, n, self.BT, Q)
        transpose[Self.dtype](L, p, self.U, p, self.UT, Q)
        gemm[Self.dtype](L, L, n, self.Cc, n, self.BT, Q, self.G, Q, False)
        gemm[Self.dtype](L, L, p, self.dY, p, self.UT, Q, self.dG, Q, False)
        for i in range(L):
            var ci = self.cs[unsafe_offset=i]
            for j in range(L):
                var m = Sc(0)
                var d = Sc(0)
                if j <= i:
                    var lij = exp(ci - self.cs[unsafe_offset=j])
                    m = lij * self.G[unsafe_offset=i * Q + j]
                    d = lij * self.dG[unsafe_offset=i * Q + j]
                    var v = d * self.G[unsafe_offset=i * Q + j]
                    self.dcs[unsafe_offset=i] += v
                    self.dcs[unsafe_offset=j] -= v
                self.MT[unsafe_offset=j * Q + i] = m
                self.dG[unsafe_offset=i * Q + j] = d
                self.dGT[unsafe_offset=j * Q + i] = d

    def chunk(mut self, tc0: Int, L: Int, start: Pointer[Scalar[Self.dtype], MutUntrackedOrigin]):
        """Every gradient of tokens tc0 .. tc0 + L given dS in lam; leaves in lam the gradient
        of the state entering the chunk (start: the forward's checkpoint, S_c)."""
        comptime Sc = Scalar[Self.dtype]
        var pr = self.pr
        var Q = pr.chunk
        var p = pr.p
        var n = pr.n
        var h = pr.h
        var g = pr.g
        var hh = self.hh
        self.pack(tc0, L)
        self.masks(L)
        # dC (this head) = dYe S_c + dG B;  dcs_i += C_i . (dYe S_c)_i
        gemm[Self.dtype](L, n, p, self.dYe, p, start, n, self.dCh, n, False)
        for i in range(L):
            var s = Sc(0)
            for j in range(n):
                s += self.Cc[unsafe_offset=i * n + j] * self.dCh[unsafe_offset=i * n + j]
            self.dcs[unsafe_offset=i] += s
        gemm[Self.dtype](L, n, L, self.dG, Q, self.Bc, n, self.dCh, n, True)
        # dB (this head) = Uw dS + dG^T C;  dcs_i -= B_i . (Uw dS)_i, dcs_last += their sum
        gemm[Self.dtype](L, n, p, self.Uw, p, self.lam, n, self.dBh, n, False)
        var tot = Sc(0)
        for i in range(L):
            var s = Sc(0)
            for j in range(n):
                s += self.Bc[unsafe_offset=i * n + j] * self.dBh[unsafe_offset=i * n + j]
            self.dcs[unsafe_offset=i] -= s
            tot += s
        var ls = Sc(0)
        for i in range(p * n):
            ls += self.lam[unsafe_offset=i] * start[unsafe_offset=i]
        var elast = self.ecs[unsafe_offset=L - 1]
        self.dcs[unsafe_offset=L - 1] += tot + elast * ls
        gemm[Self.dtype](L, n, L, self.dGT, Q, self.Cc, n, self.dBh, n, True)
        for i in range(L):
            var t = tc0 + i
            var gBt = self.gBw.unsafe_offset((t * g + self.gg) * n)
            var gCt = self.gCw.unsafe_offset((t * g + self.gg) * n)
            for j in range(n):
                gBt[unsafe_offset=j] += self.dBh[unsafe_offset=i * n + j]
                gCt[unsafe_offset=j] += self.dCh[unsafe_offset=i * n + j]
        # dU = diag(w) B dS^T + (L o G)^T dY
        transpose[Self.dtype](p, n, self.lam, n, self.lamT, p)
        gemm[Self.dtype](L, p, n, self.Bc, n, self.lamT, p, self.dU, p, False)
        for i in range(L):
            var wi = self.w[unsafe_offset=i]
            for k in range(p):
                self.dU[unsafe_offset=i * p + k] *= wi
        gemm[Self.dtype](L, p, L, self.MT, Q, self.dY, p, self.dU, p, True)
        self.token_grads(tc0, L)
        # dS <- exp(cs_last) dS + dYe^T C
        for i in range(p * n):
            self.lam[unsafe_offset=i] *= elast
        transpose[Self.dtype](L, p, self.dYe, p, self.dYeT, Q)
        gemm[Self.dtype](p, n, L, self.dYeT, Q, self.Cc, n, self.lam, n, True)

    def token_grads(mut self, tc0: Int, L: Int):
        """gx, gdt' and gA's terms of the chunk's tokens from dU and dcs."""
        comptime Sc = Scalar[Self.dtype]
        var pr = self.pr
        var p = pr.p
        var h = pr.h
        var hh = self.hh
        var gx = _p[Self.dtype](self.gr.gx)
        var Dp = _p[Self.dtype](pr.D)
        var a_h = _p[Self.dtype](pr.A)[unsafe_offset=hh]
        var de = Sc(0)
        var i = L - 1
        while i >= 0:
            var t = tc0 + i
            var dtv = self.dtp[unsafe_offset=t]
            de += self.dcs[unsafe_offset=i]
            var s = Sc(0)
            for k in range(p):
                var du = self.dU[unsafe_offset=i * p + k]
                s += du * self.X[unsafe_offset=i * p + k]
                var gxk = dtv * du
                if pr.D != 0:
                    var dk = Dp[unsafe_offset=hh * p + k] if pr.d_per_p else Dp[unsafe_offset=hh]
                    gxk += dk * self.dY[unsafe_offset=i * p + k]
                gx[unsafe_offset=(t * h + hh) * p + k] = gxk
            self.gdtp[unsafe_offset=t * h + hh] = s + a_h * de
            self.ga += dtv * de
            i -= 1


def _grad_head[dtype: DType](mut it: _Head[dtype], s: Int, cbase: Int) where dtype.is_floating_point():
    """Sequence s for the item's head: dS from the final state's gradient back to the initial
    state's, chunk by chunk (last first). Stops between chunks once cancelled."""
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
    var base = (s * h + it.hh) * p * n
    if gr.gfin != 0:
        var gf = _p[dtype](gr.gfin).unsafe_offset(base)
        for i in range(p * n):
            it.lam[unsafe_offset=i] = gf[unsafe_offset=i]
    else:
        _zero(it.lam, p * n)
    var ck = _p[dtype](pr.ckpt)
    var c = (t1 - t0 + Q - 1) // Q - 1
    while c >= 0:
        if ctl.cancelled():
            return
        var tc0 = t0 + c * Q
        it.chunk(tc0, min(t1, tc0 + Q) - tc0, ck.unsafe_offset(((cbase + c) * h + it.hh) * p * n))
        c -= 1
    if gr.ginit != 0:
        var gi = _p[dtype](gr.ginit).unsafe_offset(base)
        for i in range(p * n):
            gi[unsafe_offset=i] = it.lam[unsafe_offset=i]


def _run_chunked[dtype: DType](pr: SsdParams, gr: SsdGradParams) raises where dtype.is_floating_point():
    """The backward of the forward block pr, chunked (gr.fwd is not read: pr is that block)."""
    comptime W = _lanes[dtype]()
    if pr.n % W != 0:
        raise Error("ssd.scan_grad_chunked: n must be a multiple of the vector width")
    if pr.ckpt == 0 or pr.chunk <= 0:
        raise Error("ssd.scan_grad_chunked: the forward block has no checkpoints")
    if pr.z != 0 and pr.ypre == 0:
        raise Error("ssd.scan_grad_chunked: a gated forward must have saved ypre")
    if gr.gx == 0 or gr.gB == 0 or gr.gC == 0:
        raise Error("ssd.scan_grad_chunked: gx, gB and gC are required")
    var T = tokens(pr)
    var h = pr.h
    var p = pr.p
    var n = pr.n
    var Q = pr.chunk
    var items = pr.nseq * h
    var nw = max(1, min(max(1, pr.threads), items))
    var tgn = T * pr.g * n
    var per_worker = scratch_size(Q, p, n)
    var dtp = unsafe_alloc[Scalar[dtype]](max(1, T * h))
    var dec = unsafe_alloc[Scalar[dtype]](max(1, T * h))
    var gdtp = unsafe_alloc[Scalar[dtype]](max(1, T * h))
    var gAp = unsafe_alloc[Scalar[dtype]](max(1, items))
    var gDp = unsafe_alloc[Scalar[dtype]](max(1, items * p))
    var scratch = unsafe_alloc[Scalar[dtype]](nw * per_worker)
    var extra = unsafe_alloc[Scalar[dtype]](max(1, 2 * (nw - 1) * tgn))  # threads 1.. gB then gC
    var cb = chunk_bases(pr)
    var gB = _p[dtype](gr.gB)
    var gC = _p[dtype](gr.gC)
    head_rates[dtype](pr, T, dtp, dec)
    _zero(gdtp, T * h)  # tokens of no sequence stay 0
    _zero(gDp, items * p)
    var pt = pr
    var gt = gr
    var ctl = Control(gr.control)

    @always_inline
    def worker(w: Int) {imm}:
        var mode = ieee_begin()
        var gBw = gB if w == 0 else extra.unsafe_offset((w - 1) * tgn)
        var gCw = gC if w == 0 else extra.unsafe_offset((nw - 1 + w - 1) * tgn)
        _zero(gBw, tgn)
        _zero(gCw, tgn)
        var i = w
        while i < items and not ctl.cancelled():
            var hh = i % h
            var s = i // h
            var it = _Head[dtype](pt, gt, dtp.unsafe_offset(hh * T), scratch.unsafe_offset(w * per_worker), gBw, gCw,
                                  gdtp, gDp.unsafe_offset(i * p), hh)
            _grad_head[dtype](it, s, cb[unsafe_offset=s])
            gAp[unsafe_offset=i] = it.ga
            i += nw
        ieee_end(mode)

    if nw <= 1:
        worker(0)
    else:
        parallelize(worker, nw, nw)
    if not ctl.cancelled():
        _sum_threads[dtype](gB, extra, nw, tgn)
        _sum_threads[dtype](gC, extra.unsafe_offset((nw - 1) * tgn), nw, tgn)
        _dt_chain[dtype](pr, gr, T, 1, gdtp)
        _sum_params[dtype](pr, gr, 1, gAp, gDp)
    dtp.unsafe_free()
    dec.unsafe_free()
    gdtp.unsafe_free()
    gAp.unsafe_free()
    gDp.unsafe_free()
    scratch.unsafe_free()
    extra.unsafe_free()
    cb.unsafe_free()


def run_scan_grad_chunked(gr: SsdGradParams) raises:
    """Run a backward block, chunked: float32 when the forward's dtype_bits is 32, else float64."""
    var pr = SsdParams.load(gr.fwd)
    if pr.dtype_bits == 32:
        _run_chunked[F32](pr, gr)
    else:
        _run_chunked[F64](pr, gr)
