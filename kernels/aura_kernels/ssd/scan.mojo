# Mamba-2 selective scan (SSD) on the CPU: the sequential recurrence, SIMD over the state
# dimension n, both cores. Compute only (no Python): used by the Python binding
# kernels/ssd.mojo (the `mojo` backend) and by the MAX op in ssd_ops.mojo (`max`).
#
#   dt'[t,h]   = clamp(softplus?(dt[t,h] + bias[h]), lo, hi)
#   h_t[p, n]  = exp(min(dt' A[h], 0)) h_{t-1}[p, n] + dt' x[t,h,p] B[t,g,n]
#   y[t,h,p]   = sum_n C[t,g,n] h_t[p,n]  (+ D x)  (* silu(z))
#
# Layout (all C-contiguous, validated by aura_lab/ssd before any address gets here):
#   tokens are flattened over (batch, length): x, z, y (T, h, p); dt (T, h); B, C (T, g, n);
#   sequence s covers tokens [offs[s], offs[s+1]) (int64); init (optional) and fin are
#   (nseq, h, p, n). fin doubles as the working state, so init == fin (the decode step)
#   updates the state in place. n is a multiple of the vector width W (Python pads).
#
# Phase 1 computes dt' and the decay exp(min(dt' A, 0)) once per (token, head) into
# head-major scratch (vectorized over tokens). Phase 2 splits the work into items
# (sequence, head, block of R = 8 channels p) dealt round-robin to the threads
# (max.algorithm.parallelize), all blocks of one (sequence, head) to one thread where there
# are at least two heads per thread (the blocks share y's cache lines). An item keeps its 8 x n state rows (4 KiB for n = 128) in
# L1 for the whole sequence; per token it streams the state once: for each W-lane slice j
# of n, B_j and C_j are loaded once and reused by the 8 rows, each row doing
#     s = fma(B_j, u_row, s * decay);  acc_row = fma(C_j, s, acc_row)
# (u_row = dt' x[t,h,p]: 3 vector ops for 5 flops per lane). The 8 accumulators are
# reduced together by a transpose-reduce (join + deinterleave + add, 3 levels) into one
# 8-lane vector y[t, h, p0:p0+8], so no per-row horizontal sum; D and the silu(z) gate
# are applied on that vector. Channels beyond the last full block of 8 take a one-row
# path with a horizontal sum.
#
# Numerics: float32 compute for float32 inputs (the Python side converts half types), float64
# for float64; every decay exponent clamped to <= 0; NaN propagates (clamps are selects).
#
# Measured on the 2-core Zen 5 VM (b=1, h=24, p=64, n=128, l=4096, float32): 110-150 GFLOP/s
# on one core (5 flops per (token, h, p, n)), 17-38 ms on two cores depending on the other
# tenants. This core's zmm FMA peak measured ~184 GFLOP/s, and an isolated load-fma-store-fma
# loop over an L1 tile reaches the same rate, so the per-token work (broadcasts, the reduce:
# ~14 %, the epilogue) is what remains. Not memory-bound: l=512 (B, C in L2) runs at the same
# rate. A rescaled-state variant (s / P_t: 2 vector ops per lane instead of 3, renormalized
# before P_t < e^-30) measured within noise of this kernel and was dropped.

from std.sys import simd_width_of
from std.math import exp, log1p
from max.algorithm import parallelize
from aura_kernels.common import F32, F64, Control, OwnedArray, ieee_begin, ieee_end, scalar_ptr
from aura_kernels.ssd.abi import SsdParams

comptime R = 8  # channels (rows of the state) per work item
comptime POLL = 256  # tokens between two polls of the cancel flag (well under a millisecond)


@always_inline
def lanes[dtype: DType]() -> Int:
    """The state's vector width: the target's SIMD width, at least R (n is a multiple of it)."""
    comptime w = simd_width_of[dtype]()
    comptime if w >= R:
        return w
    else:
        return R


@always_inline
def _dt_vec[dtype: DType, w: Int](
    v0: SIMD[dtype, w], bias: Scalar[dtype], a: Scalar[dtype], softplus: Bool, lo: Scalar[dtype], hi: Scalar[dtype]
) -> Tuple[SIMD[dtype, w], SIMD[dtype, w]] where dtype.is_floating_point():
    """(dt', decay) for w tokens of one head."""
    comptime V = SIMD[dtype, w]
    var v = v0 + V(bias)
    if softplus:
        var capped = v.gt(V(20)).select(V(20), v)
        v = v.gt(V(20)).select(v, log1p(exp(capped)))  # the identity above 20, as upstream
    v = v.lt(V(lo)).select(V(lo), v)  # selects keep NaN
    v = v.gt(V(hi)).select(V(hi), v)
    var e = v * V(a)
    e = e.gt(V(0)).select(V(0), e)  # decay exponent <= 0
    return (v, exp(e))


@always_inline
def fold[dtype: DType, w: Int](a: SIMD[dtype, w], b: SIMD[dtype, w]) -> SIMD[dtype, w]:
    """[a_0 | a_1 | ...] blocks of 2k lanes, b likewise -> lanes [a pairs summed | b pairs summed]."""
    var eo = a.join(b).deinterleave()
    return rebind[SIMD[dtype, w]](eo[0] + eo[1])


@always_inline
def shrink[dtype: DType, w: Int](r: SIMD[dtype, w]) -> SIMD[dtype, R]:
    """Sum adjacent lane pairs until R lanes are left (the last step of the transpose-reduce)."""
    comptime if w == R:
        return rebind[SIMD[dtype, R]](r)
    else:
        var eo = r.deinterleave()
        return shrink[dtype, w // 2](rebind[SIMD[dtype, w // 2]](eo[0] + eo[1]))


@always_inline
def _upd[dtype: DType, w: Int](
    sp: Pointer[Scalar[dtype], MutUntrackedOrigin], off: Int, decay: SIMD[dtype, w], u: SIMD[dtype, w],
    bj: SIMD[dtype, w], cj: SIMD[dtype, w], acc: SIMD[dtype, w],
) -> SIMD[dtype, w]:
    var s = sp.unsafe_load[width=w](off)
    s = bj.fma(u, s * decay)
    sp.unsafe_store(off, s)
    return cj.fma(s, acc)


def _phase1[dtype: DType](pr: SsdParams, T: Int, dtp: Pointer[Scalar[dtype], MutUntrackedOrigin],
                          dec: Pointer[Scalar[dtype], MutUntrackedOrigin], hh: Int) where dtype.is_floating_point():
    """dt' and decay of head hh for all T tokens, into dtp/dec[hh * T + t]."""
    comptime W = lanes[dtype]()
    var dt = scalar_ptr[dtype](pr.dt)
    var bias = Scalar[dtype](0) if pr.dt_bias == 0 else scalar_ptr[dtype](pr.dt_bias)[unsafe_offset=hh]
    var a = scalar_ptr[dtype](pr.A)[unsafe_offset=hh]
    var h = pr.h
    var lo = Scalar[dtype](pr.lo)
    var hi = Scalar[dtype](pr.hi)
    var t = 0
    while t + W <= T:
        var v = SIMD[dtype, W](0)
        for k in range(W):
            v[k] = dt[unsafe_offset=(t + k) * h + hh]
        var r = _dt_vec[dtype, W](v, bias, a, pr.softplus, lo, hi)
        dtp.unsafe_store(hh * T + t, r[0])
        dec.unsafe_store(hh * T + t, r[1])
        t += W
    while t < T:
        var r = _dt_vec[dtype, 1](SIMD[dtype, 1](dt[unsafe_offset=t * h + hh]), bias, a, pr.softplus, lo, hi)
        dtp[unsafe_offset=hh * T + t] = r[0][0]
        dec[unsafe_offset=hh * T + t] = r[1][0]
        t += 1


@always_inline
def silu[dtype: DType, w: Int](v: SIMD[dtype, w]) -> SIMD[dtype, w] where dtype.is_floating_point():
    return v / (SIMD[dtype, w](1) + exp(-v))


@always_inline
def _save_rows[dtype: DType](src: Pointer[Scalar[dtype], MutUntrackedOrigin], dst: Pointer[Scalar[dtype], MutUntrackedOrigin], count: Int):
    for i in range(count):
        dst[unsafe_offset=i] = src[unsafe_offset=i]


def chunk_bases(pr: SsdParams) -> OwnedArray[Int]:
    """Index of each sequence's first checkpoint: sequence s has ceil(len_s / chunk)
    checkpoints (the state before tokens 0, chunk, 2 chunk, ... of it). nseq + 1 entries,
    the last is the total. All zero when no checkpoints are kept."""
    var offs = Pointer[Int64, MutUntrackedOrigin](unsafe_from_address=pr.offsets)
    var out = OwnedArray[Int](pr.nseq + 1)
    out[0] = 0
    for s in range(pr.nseq):
        var ln = Int(offs[unsafe_offset=s + 1]) - Int(offs[unsafe_offset=s])
        var nc = 0 if pr.chunk <= 0 else (ln + pr.chunk - 1) // pr.chunk
        out[s + 1] = out[s] + nc
    return out^


struct _Rows[dtype: DType](ImplicitlyCopyable) where dtype.is_floating_point():
    """One work item of the forward, set up: sequence s (tokens t0 .. t1), head hh, channels
    [p0, p0 + rows) and where they read and write. The working state is rows p0.. of
    fin[s, hh], initialized from init or zero."""

    comptime P = Pointer[Scalar[Self.dtype], MutUntrackedOrigin]
    var pr: SsdParams
    var x: Self.P
    var B: Self.P
    var C: Self.P
    var y: Self.P
    var z: Self.P
    var ypre: Self.P
    var sp: Self.P  # the working state (rows x n)
    var ck: Self.P  # this sequence's checkpoint 0, rows p0..
    var hd: Self.P  # dt' of head hh, indexed by token
    var hc: Self.P  # decay of head hh, indexed by token
    var dvec: SIMD[Self.dtype, R]
    var t0: Int
    var t1: Int
    var hh: Int
    var gg: Int
    var p0: Int
    var rows: Int

    def __init__(out self, pr: SsdParams, T: Int, dtp: Self.P, dec: Self.P, s: Int, hh: Int, p0: Int, rows: Int,
                 cbase: Int):
        var h = pr.h
        var p = pr.p
        var n = pr.n
        var offs = Pointer[Int64, MutUntrackedOrigin](unsafe_from_address=pr.offsets)
        self.pr = pr
        self.x = scalar_ptr[Self.dtype](pr.x)
        self.B = scalar_ptr[Self.dtype](pr.B)
        self.C = scalar_ptr[Self.dtype](pr.C)
        self.y = scalar_ptr[Self.dtype](pr.y)
        self.z = scalar_ptr[Self.dtype](pr.z)
        self.ypre = scalar_ptr[Self.dtype](pr.ypre)
        self.t0 = Int(offs[unsafe_offset=s])
        self.t1 = Int(offs[unsafe_offset=s + 1])
        self.hh = hh
        self.gg = hh // (h // pr.g)
        self.p0 = p0
        self.rows = rows
        self.hd = dtp.unsafe_offset(hh * T)
        self.hc = dec.unsafe_offset(hh * T)
        self.ck = scalar_ptr[Self.dtype](pr.ckpt).unsafe_offset(((cbase * h + hh) * p + p0) * n)
        var base = ((s * h + hh) * p + p0) * n
        self.sp = scalar_ptr[Self.dtype](pr.fin).unsafe_offset(base)
        if pr.init == 0:
            for i in range(rows * n):
                self.sp[unsafe_offset=i] = 0
        elif pr.init != pr.fin:
            var ip = scalar_ptr[Self.dtype](pr.init).unsafe_offset(base)
            for i in range(rows * n):
                self.sp[unsafe_offset=i] = ip[unsafe_offset=i]
        self.dvec = SIMD[Self.dtype, R](0)
        if pr.D != 0:
            var Dp = scalar_ptr[Self.dtype](pr.D)
            if pr.d_per_p:
                for k in range(rows):
                    self.dvec[k] = Dp[unsafe_offset=hh * p + p0 + k]
            else:
                self.dvec = SIMD[Self.dtype, R](Dp[unsafe_offset=hh])

    @always_inline
    def stop_or_save(self, t: Int) -> Bool:
        """Before token t: True once cancelled (polled every POLL tokens); else saves the
        rows' state into their checkpoint where t starts a chunk of a training forward."""
        var pr = self.pr
        if (t - self.t0) % POLL == 0 and Control(pr.control).cancelled():
            return True
        if pr.ckpt != 0 and pr.chunk > 0 and (t - self.t0) % pr.chunk == 0:
            var k = (t - self.t0) // pr.chunk
            _save_rows(self.sp, self.ck.unsafe_offset(k * pr.h * pr.p * pr.n), self.rows * pr.n)
        return False

    def block(self):
        """The recurrence of a full block of R rows (see the header)."""
        comptime W = lanes[Self.dtype]()
        comptime V = SIMD[Self.dtype, W]
        comptime VR = SIMD[Self.dtype, R]
        var h = self.pr.h
        var n = self.pr.n
        var g = self.pr.g
        var has_d = self.pr.D != 0
        var has_z = self.pr.z != 0
        var keep_ypre = self.pr.ypre != 0
        var x = self.x
        var y = self.y
        var sp = self.sp
        var dvec = self.dvec
        for t in range(self.t0, self.t1):
            if self.stop_or_save(t):
                return
            var dk = V(self.hc[unsafe_offset=t])
            var xo = (t * h + self.hh) * self.pr.p + self.p0
            var xv = x.unsafe_load[width=R](xo)
            var uv = xv * VR(self.hd[unsafe_offset=t])
            var u0 = V(uv[0]); var u1 = V(uv[1]); var u2 = V(uv[2]); var u3 = V(uv[3])
            var u4 = V(uv[4]); var u5 = V(uv[5]); var u6 = V(uv[6]); var u7 = V(uv[7])
            var a0 = V(0); var a1 = V(0); var a2 = V(0); var a3 = V(0)
            var a4 = V(0); var a5 = V(0); var a6 = V(0); var a7 = V(0)
            var Bp = self.B.unsafe_offset((t * g + self.gg) * n)
            var Cp = self.C.unsafe_offset((t * g + self.gg) * n)
            for j in range(0, n, W):
                var bj = Bp.unsafe_load[width=W](j)
                var cj = Cp.unsafe_load[width=W](j)
                a0 = _upd(sp, j, dk, u0, bj, cj, a0)
                a1 = _upd(sp, n + j, dk, u1, bj, cj, a1)
                a2 = _upd(sp, 2 * n + j, dk, u2, bj, cj, a2)
                a3 = _upd(sp, 3 * n + j, dk, u3, bj, cj, a3)
                a4 = _upd(sp, 4 * n + j, dk, u4, bj, cj, a4)
                a5 = _upd(sp, 5 * n + j, dk, u5, bj, cj, a5)
                a6 = _upd(sp, 6 * n + j, dk, u6, bj, cj, a6)
                a7 = _upd(sp, 7 * n + j, dk, u7, bj, cj, a7)
            var yv = shrink[Self.dtype, W](fold(fold(fold(a0, a1), fold(a2, a3)), fold(fold(a4, a5), fold(a6, a7))))
            if has_d:
                yv = dvec.fma(xv, yv)
            if has_z:
                if keep_ypre:
                    self.ypre.unsafe_store(xo, yv)
                yv = yv * silu[Self.dtype, R](self.z.unsafe_load[width=R](xo))
            y.unsafe_store(xo, yv)

    def single_rows(self):
        """The recurrence of fewer than R rows, one row at a time (a horizontal sum each)."""
        comptime W = lanes[Self.dtype]()
        comptime V = SIMD[Self.dtype, W]
        var h = self.pr.h
        var n = self.pr.n
        var g = self.pr.g
        for t in range(self.t0, self.t1):
            if self.stop_or_save(t):
                return
            var dtv = self.hd[unsafe_offset=t]
            var dk = V(self.hc[unsafe_offset=t])
            var Bp = self.B.unsafe_offset((t * g + self.gg) * n)
            var Cp = self.C.unsafe_offset((t * g + self.gg) * n)
            for k in range(self.rows):
                var xo = (t * h + self.hh) * self.pr.p + self.p0 + k
                var xk = self.x[unsafe_offset=xo]
                var u = V(dtv * xk)
                var acc = V(0)
                for j in range(0, n, W):
                    acc = _upd(self.sp, k * n + j, dk, u, Bp.unsafe_load[width=W](j), Cp.unsafe_load[width=W](j), acc)
                var yk = acc.reduce_add()
                if self.pr.D != 0:
                    yk += self.dvec[k] * xk
                if self.pr.z != 0:
                    if self.pr.ypre != 0:
                        self.ypre[unsafe_offset=xo] = yk
                    yk = yk * silu[Self.dtype, 1](SIMD[Self.dtype, 1](self.z[unsafe_offset=xo]))[0]
                self.y[unsafe_offset=xo] = yk


def _item[dtype: DType](pr: SsdParams, T: Int, dtp: Pointer[Scalar[dtype], MutUntrackedOrigin],
                        dec: Pointer[Scalar[dtype], MutUntrackedOrigin], s: Int, hh: Int, p0: Int, rows: Int,
                        cbase: Int) where dtype.is_floating_point():
    """Sequence s, head hh, channels [p0, p0 + rows): the whole recurrence (it stops at a
    multiple of POLL tokens once the caller's control is cancelled). A training forward
    (pr.ckpt) also saves the rows' state before every pr.chunk-th token of the sequence
    into checkpoint cbase + k, and (pr.ypre, with z) the output before the gate."""
    var item = _Rows[dtype](pr, T, dtp, dec, s, hh, p0, rows, cbase)
    if rows == R:
        item.block()
    else:
        item.single_rows()


def tokens(pr: SsdParams) -> Int:
    """T, the number of tokens of all sequences together."""
    return Int(Pointer[Int64, MutUntrackedOrigin](unsafe_from_address=pr.offsets)[unsafe_offset=pr.nseq])


struct HeadRates[dtype: DType](Movable) where dtype.is_floating_point():
    """Phase 1, owned: dt' and the decay of every (head, token), head-major (T * h each),
    computed with the heads spread over the threads."""

    var dt: OwnedArray[Scalar[Self.dtype]]
    var decay: OwnedArray[Scalar[Self.dtype]]

    def __init__(out self, pr: SsdParams, T: Int):
        var h = pr.h
        self.dt = OwnedArray[Scalar[Self.dtype]](T * h)
        self.decay = OwnedArray[Scalar[Self.dtype]](T * h)
        var dtp = self.dt.data
        var dec = self.decay.data
        var hn = min(max(1, pr.threads), h)
        var pt = pr  # a copy for the closure

        @always_inline
        def heads(w: Int) {imm}:
            var mode = ieee_begin()  # worker threads start with FTZ/DAZ set: keep denormals
            var hh = w
            while hh < h:
                _phase1[Self.dtype](pt, T, dtp, dec, hh)
                hh += hn
            ieee_end(mode)

        if hn <= 1 or T * h < 4096:
            for hh in range(h):
                _phase1[Self.dtype](pr, T, dtp, dec, hh)
        else:
            parallelize(heads, hn, hn)


def scan_typed[dtype: DType](pr: SsdParams) raises where dtype.is_floating_point():
    """Run the forward block pr in `dtype` (see the header)."""
    comptime W = lanes[dtype]()
    if pr.n % W != 0:
        raise Error("ssd.scan: n must be a multiple of the vector width")
    var T = tokens(pr)
    var h = pr.h
    var rates = HeadRates[dtype](pr, T)
    var cb = chunk_bases(pr)
    var pt = pr  # a copy for the closures
    var ctl = Control(pr.control)
    var nb = (pr.p + R - 1) // R
    var items = pr.nseq * h * nb
    var p = pr.p
    # A thread takes every channel block of its (sequence, head) when there are heads enough to
    # go round: blocks of one head write the same cache lines of y (R floats are half a line),
    # so dealt to different threads they would contend for those lines token after token.
    var per = nb if pr.nseq * h >= 2 * max(1, pr.threads) else 1
    var units = items // per
    var nw = min(max(1, pr.threads), units)

    @always_inline
    def item(i: Int) {imm}:
        var pb = i % nb
        var rest = i // nb
        var s = rest // h
        _item[dtype](pt, T, rates.dt.data, rates.decay.data, s, rest % h, pb * R, min(R, p - pb * R), cb[s])

    @always_inline
    def work(w: Int) {imm}:
        var mode = ieee_begin()
        var u = w
        while u < units and not ctl.cancelled():
            for k in range(per):
                item(u * per + k)
            u += nw
        ieee_end(mode)

    if nw <= 1 or T * h * p * pr.n < (1 << 16):
        for i in range(items):
            if ctl.cancelled():
                break
            item(i)
    elif items > 0:
        parallelize(work, nw, nw)
    _ = rates^  # the workers read it through raw pointers: alive until they are done
    _ = cb^


def run_scan(pr: SsdParams) raises:
    """Run a block: float32 for dtype_bits 32, else float64."""
    if pr.dtype_bits == 32:
        scan_typed[F32](pr)
    else:
        scan_typed[F64](pr)
