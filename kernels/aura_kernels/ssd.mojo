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
from std.memory.alloc import unsafe_alloc
from max.algorithm import parallelize
from aura_kernels.common import F32, F64, Control, ieee_begin, ieee_end
from aura_kernels.ssd_abi import SsdParams

comptime R = 8  # channels (rows of the state) per work item
comptime POLL = 256  # tokens between two polls of the cancel flag (well under a millisecond)


@always_inline
def _lanes[dtype: DType]() -> Int:
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
def _fold[dtype: DType, w: Int](a: SIMD[dtype, w], b: SIMD[dtype, w]) -> SIMD[dtype, w]:
    """[a_0 | a_1 | ...] blocks of 2k lanes, b likewise -> lanes [a pairs summed | b pairs summed]."""
    var eo = a.join(b).deinterleave()
    return rebind[SIMD[dtype, w]](eo[0] + eo[1])


@always_inline
def _shrink[dtype: DType, w: Int](r: SIMD[dtype, w]) -> SIMD[dtype, R]:
    comptime if w == R:
        return rebind[SIMD[dtype, R]](r)
    else:
        var eo = r.deinterleave()
        return _shrink[dtype, w // 2](rebind[SIMD[dtype, w // 2]](eo[0] + eo[1]))


@always_inline
def _upd[dtype: DType, w: Int](
    sp: Pointer[Scalar[dtype], MutUntrackedOrigin], off: Int, decay: SIMD[dtype, w], u: SIMD[dtype, w],
    bj: SIMD[dtype, w], cj: SIMD[dtype, w], acc: SIMD[dtype, w],
) -> SIMD[dtype, w]:
    var s = sp.unsafe_load[width=w](off)
    s = bj.fma(u, s * decay)
    sp.unsafe_store(off, s)
    return cj.fma(s, acc)


@always_inline
def _p[dtype: DType](addr: Int) -> Pointer[Scalar[dtype], MutUntrackedOrigin]:
    return Pointer[Scalar[dtype], MutUntrackedOrigin](unsafe_from_address=addr)


def _phase1[dtype: DType](pr: SsdParams, T: Int, dtp: Pointer[Scalar[dtype], MutUntrackedOrigin],
                          dec: Pointer[Scalar[dtype], MutUntrackedOrigin], hh: Int) where dtype.is_floating_point():
    """dt' and decay of head hh for all T tokens, into dtp/dec[hh * T + t]."""
    comptime W = _lanes[dtype]()
    var dt = _p[dtype](pr.dt)
    var bias = Scalar[dtype](0) if pr.dt_bias == 0 else _p[dtype](pr.dt_bias)[unsafe_offset=hh]
    var a = _p[dtype](pr.A)[unsafe_offset=hh]
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
def _silu[dtype: DType, w: Int](v: SIMD[dtype, w]) -> SIMD[dtype, w] where dtype.is_floating_point():
    return v / (SIMD[dtype, w](1) + exp(-v))


@always_inline
def _save_rows[dtype: DType](src: Pointer[Scalar[dtype], MutUntrackedOrigin], dst: Pointer[Scalar[dtype], MutUntrackedOrigin], count: Int):
    for i in range(count):
        dst[unsafe_offset=i] = src[unsafe_offset=i]


def chunk_bases(pr: SsdParams) -> Pointer[Int, MutUntrackedOrigin]:
    """Index of each sequence's first checkpoint: sequence s has ceil(len_s / chunk)
    checkpoints (the state before tokens 0, chunk, 2 chunk, ... of it). nseq + 1 entries,
    the last is the total; the caller frees it. All zero when no checkpoints are kept."""
    var offs = Pointer[Int64, MutUntrackedOrigin](unsafe_from_address=pr.offsets)
    var out = unsafe_alloc[Int](pr.nseq + 1)
    out[unsafe_offset=0] = 0
    for s in range(pr.nseq):
        var ln = Int(offs[unsafe_offset=s + 1]) - Int(offs[unsafe_offset=s])
        var nc = 0 if pr.chunk <= 0 else (ln + pr.chunk - 1) // pr.chunk
        out[unsafe_offset=s + 1] = out[unsafe_offset=s] + nc
    return out


def _item[dtype: DType](pr: SsdParams, T: Int, dtp: Pointer[Scalar[dtype], MutUntrackedOrigin],
                        dec: Pointer[Scalar[dtype], MutUntrackedOrigin], s: Int, hh: Int, p0: Int, rows: Int,
                        cbase: Int) where dtype.is_floating_point():
    """Sequence s, head hh, channels [p0, p0 + rows): the whole recurrence (it stops at a
    multiple of POLL tokens once the caller's control is cancelled). A training forward
    (pr.ckpt) also saves the rows' state before every pr.chunk-th token of the sequence
    into checkpoint cbase + k, and (pr.ypre, with z) the output before the gate."""
    var ctl = Control(pr.control)
    comptime W = _lanes[dtype]()
    comptime V = SIMD[dtype, W]
    comptime VR = SIMD[dtype, R]
    var h = pr.h
    var p = pr.p
    var n = pr.n
    var g = pr.g
    var gg = hh // (h // g)
    var x = _p[dtype](pr.x)
    var B = _p[dtype](pr.B)
    var C = _p[dtype](pr.C)
    var y = _p[dtype](pr.y)
    var z = _p[dtype](pr.z)
    var offs = Pointer[Int64, MutUntrackedOrigin](unsafe_from_address=pr.offsets)
    var t0 = Int(offs[unsafe_offset=s])
    var t1 = Int(offs[unsafe_offset=s + 1])
    # the working state: rows p0.. of fin[s, hh], initialized from init or zero
    var base = ((s * h + hh) * p + p0) * n
    var sp = _p[dtype](pr.fin).unsafe_offset(base)
    if pr.init != 0:
        if pr.init != pr.fin:
            var ip = _p[dtype](pr.init).unsafe_offset(base)
            for i in range(rows * n):
                sp[unsafe_offset=i] = ip[unsafe_offset=i]
    else:
        for i in range(rows * n):
            sp[unsafe_offset=i] = 0
    var has_d = pr.D != 0
    var has_z = pr.z != 0
    var dvec = VR(0)
    if has_d:
        var Dp = _p[dtype](pr.D)
        if pr.d_per_p:
            for k in range(rows):
                dvec[k] = Dp[unsafe_offset=hh * p + p0 + k]
        else:
            dvec = VR(Dp[unsafe_offset=hh])
    var hd = dtp.unsafe_offset(hh * T)
    var hc = dec.unsafe_offset(hh * T)
    var ypre = _p[dtype](pr.ypre)
    var save = pr.ckpt != 0 and pr.chunk > 0
    var ck = _p[dtype](pr.ckpt).unsafe_offset(((cbase * h + hh) * p + p0) * n)  # chunk 0 of this sequence
    if rows == R:
        for t in range(t0, t1):
            if (t - t0) % POLL == 0 and ctl.cancelled():
                return
            if save and (t - t0) % pr.chunk == 0:
                _save_rows(sp, ck.unsafe_offset((t - t0) // pr.chunk * h * p * n), rows * n)
            var dtv = hd[unsafe_offset=t]
            var dk = V(hc[unsafe_offset=t])
            var xo = (t * h + hh) * p + p0
            var xv = x.unsafe_load[width=R](xo)
            var uv = xv * VR(dtv)
            var u0 = V(uv[0]); var u1 = V(uv[1]); var u2 = V(uv[2]); var u3 = V(uv[3])
            var u4 = V(uv[4]); var u5 = V(uv[5]); var u6 = V(uv[6]); var u7 = V(uv[7])
            var a0 = V(0); var a1 = V(0); var a2 = V(0); var a3 = V(0)
            var a4 = V(0); var a5 = V(0); var a6 = V(0); var a7 = V(0)
            var Bp = B.unsafe_offset((t * g + gg) * n)
            var Cp = C.unsafe_offset((t * g + gg) * n)
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
            var yv = _shrink[dtype, W](_fold(_fold(_fold(a0, a1), _fold(a2, a3)), _fold(_fold(a4, a5), _fold(a6, a7))))
            if has_d:
                yv = dvec.fma(xv, yv)
            if has_z:
                if pr.ypre != 0:
                    ypre.unsafe_store(xo, yv)
                yv = yv * _silu[dtype, R](z.unsafe_load[width=R](xo))
            y.unsafe_store(xo, yv)
    else:  # fewer than R channels left: one row at a time
        for t in range(t0, t1):
            if (t - t0) % POLL == 0 and ctl.cancelled():
                return
            if save and (t - t0) % pr.chunk == 0:
                _save_rows(sp, ck.unsafe_offset((t - t0) // pr.chunk * h * p * n), rows * n)
            var dtv = hd[unsafe_offset=t]
            var dk = V(hc[unsafe_offset=t])
            var Bp = B.unsafe_offset((t * g + gg) * n)
            var Cp = C.unsafe_offset((t * g + gg) * n)
            for k in range(rows):
                var xo = (t * h + hh) * p + p0 + k
                var xk = x[unsafe_offset=xo]
                var u = V(dtv * xk)
                var acc = V(0)
                for j in range(0, n, W):
                    acc = _upd(sp, k * n + j, dk, u, Bp.unsafe_load[width=W](j), Cp.unsafe_load[width=W](j), acc)
                var yk = acc.reduce_add()
                if has_d:
                    yk += dvec[k] * xk
                if has_z:
                    if pr.ypre != 0:
                        ypre[unsafe_offset=xo] = yk
                    yk = yk * _silu[dtype, 1](SIMD[dtype, 1](z[unsafe_offset=xo]))[0]
                y[unsafe_offset=xo] = yk


def tokens(pr: SsdParams) -> Int:
    """T, the number of tokens of all sequences together."""
    return Int(Pointer[Int64, MutUntrackedOrigin](unsafe_from_address=pr.offsets)[unsafe_offset=pr.nseq])


def head_rates[dtype: DType](pr: SsdParams, T: Int, dtp: Pointer[Scalar[dtype], MutUntrackedOrigin],
                             dec: Pointer[Scalar[dtype], MutUntrackedOrigin]) where dtype.is_floating_point():
    """Phase 1: dt' and the decay of every (head, token), head-major into dtp / dec (T * h
    each), heads spread over the threads."""
    var h = pr.h
    var hn = min(max(1, pr.threads), h)
    var pt = pr  # a copy for the closure

    @always_inline
    def heads(w: Int) {imm}:
        var mode = ieee_begin()  # worker threads start with FTZ/DAZ set: keep denormals
        var hh = w
        while hh < h:
            _phase1[dtype](pt, T, dtp, dec, hh)
            hh += hn
        ieee_end(mode)

    if hn <= 1 or T * h < 4096:
        for hh in range(h):
            _phase1[dtype](pr, T, dtp, dec, hh)
    else:
        parallelize(heads, hn, hn)


def _run[dtype: DType](pr: SsdParams) raises where dtype.is_floating_point():
    comptime W = _lanes[dtype]()
    if pr.n % W != 0:
        raise Error("ssd.scan: n must be a multiple of the vector width")
    var T = tokens(pr)
    var h = pr.h
    var dtp = unsafe_alloc[Scalar[dtype]](max(1, T * h))
    var dec = unsafe_alloc[Scalar[dtype]](max(1, T * h))
    var cb = chunk_bases(pr)
    var pt = pr  # copies for the closures
    var ctl = Control(pr.control)
    head_rates[dtype](pr, T, dtp, dec)

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
        _item[dtype](pt, T, dtp, dec, s, rest % h, pb * R, min(R, p - pb * R), cb[unsafe_offset=s])

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
    dtp.unsafe_free()
    dec.unsafe_free()
    cb.unsafe_free()


def run_scan(pr: SsdParams) raises:
    """Run a block: float32 for dtype_bits 32, else float64."""
    if pr.dtype_bits == 32:
        _run[F32](pr)
    else:
        _run[F64](pr)
