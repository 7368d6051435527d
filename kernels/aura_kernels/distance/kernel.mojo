# Pairwise distances: out[i, j] = dist(X[i, :], Y[j, :]).
#
#   X (n, d), Y (m, d), out (n, m) with row stride `ldo`; all C-contiguous, float32 or
#   float64, validated by aura_lab/distance.py before any address reaches this file.
#
# Metrics (ids generated from distance.py's METRIC into distance_abi.mojo; used by name
# only): EUCLIDEAN sqrt(sum (x-y)^2), SQEUCLIDEAN, CITYBLOCK sum |x-y|, CHEBYSHEV max |x-y|
# (NaN terms are skipped, as scipy does), COSINE 1 - x.y / (|x| |y|) clamped to [0, 2]
# (NaN for zero vectors, as scipy).
#
# Exact direct formula, never the GEMM identity |x|^2 + |y|^2 - 2 x.y, so near-duplicate
# points keep full relative precision (the GEMM trick loses ~1e-3 in float32).
#
# Layout: Y is transposed once into yt (d, mp) with mp a multiple of 2*W, zero padded.
# A micro-tile is MR=4 rows x 2 SIMD vectors of columns (8 accumulators); per k it loads
# two yt vectors and broadcasts four x values. Work items are row blocks of RB rows over
# all column panels of PANEL columns (yt panel of d*PANEL values stays in L2), handed out
# to the cores as they free up (common.run_chunks), so a core busy with another program
# costs only its share.
#
# X against itself (Y=None) goes through the same path: every metric's operands commute
# bit for bit (x-y vs y-x squared or abs'd, fma(x, y) vs fma(y, x)), so the result is
# exactly symmetric. A triangular variant that mirrored finished tiles was measured and
# dropped: at n=8192 it saved nothing at d=64 (39 vs 40 ms) and cost 3x at d=3 (the
# mirrored writes are column-strided).

from std.sys import simd_width_of
from std.math import sqrt
from aura_kernels.common import F32, F64, Control, OwnedArray, ieee_begin, ieee_end, run_chunks
from aura_kernels.distance.abi import DistanceParams, EUCLIDEAN, SQEUCLIDEAN, COSINE, CITYBLOCK, CHEBYSHEV

comptime MR = 4
comptime RB = 32
comptime PANEL = 512


@always_inline
def metric_acc[metric: Int, dtype: DType, w: Int](acc: SIMD[dtype, w], x: SIMD[dtype, w], y: SIMD[dtype, w]) -> SIMD[dtype, w]:
    comptime if metric == EUCLIDEAN or metric == SQEUCLIDEAN:
        var t = x - y
        return t.fma(t, acc)
    elif metric == CITYBLOCK:
        return acc + abs(x - y)
    elif metric == CHEBYSHEV:
        var t = abs(x - y)
        return t.gt(acc).select(t, acc)
    else:
        return x.fma(y, acc)


@always_inline
def metric_fin[metric: Int, dtype: DType, w: Int](acc: SIMD[dtype, w], nx: Scalar[dtype], ny: SIMD[dtype, w]) -> SIMD[dtype, w]:
    comptime if metric == EUCLIDEAN:
        return sqrt(acc)
    elif metric == COSINE:
        var c = SIMD[dtype, w](1) - acc / (SIMD[dtype, w](nx) * ny)
        c = c.lt(SIMD[dtype, w](0)).select(SIMD[dtype, w](0), c)
        return c.gt(SIMD[dtype, w](2)).select(SIMD[dtype, w](2), c)
    else:
        return acc


@always_inline
def _store[dtype: DType, w: Int](o: Pointer[Scalar[dtype], MutUntrackedOrigin], at: Int, v: SIMD[dtype, w], count: Int):
    if count >= w:
        o.unsafe_store(at, v)
    else:
        for l in range(count):
            o[unsafe_offset=at + l] = v[l]


@always_inline
def _tile[metric: Int, dtype: DType](
    xp: Pointer[Scalar[dtype], MutUntrackedOrigin],
    yt: Pointer[Scalar[dtype], MutUntrackedOrigin],
    nx: Pointer[Scalar[dtype], MutUntrackedOrigin],
    ny: Pointer[Scalar[dtype], MutUntrackedOrigin],
    op: Pointer[Scalar[dtype], MutUntrackedOrigin],
    d: Int, mp: Int, ldo: Int,
    r0: Int, r1: Int, c0: Int, c1: Int,
):
    """out[r0:r1, c0:c1] for one panel (c1 - c0 <= PANEL): MR rows x 2 vectors at a time,
    then the leftover rows one vector at a time."""
    comptime W = simd_width_of[dtype]()
    var i = r0
    while i + MR <= r1:
        var c = c0
        while c < c1:
            _block_4x2[metric](xp, yt, nx, ny, op, d, mp, ldo, i, c, c1)
            c += 2 * W
        i += MR
    while i < r1:  # leftover rows, one at a time
        var c = c0
        while c < c1:
            _block_1x1[metric](xp, yt, nx, ny, op, d, mp, ldo, i, c, c1)
            c += W
        i += 1


@fieldwise_init
struct Block4x2[dtype: DType](ImplicitlyCopyable):
    """The 4 x 2 vectors of accumulators of rows i .. i + 3 against columns c .. c + 2W:
    a<row><vector>."""

    comptime V = SIMD[Self.dtype, simd_width_of[Self.dtype]()]
    var a00: Self.V
    var a01: Self.V
    var a10: Self.V
    var a11: Self.V
    var a20: Self.V
    var a21: Self.V
    var a30: Self.V
    var a31: Self.V


@always_inline
def accumulate_4x2[metric: Int, dtype: DType](
    xp: Pointer[Scalar[dtype], MutUntrackedOrigin], yt: Pointer[Scalar[dtype], MutUntrackedOrigin],
    d: Int, mp: Int, i: Int, c: Int,
) -> Block4x2[dtype]:
    """Rows i .. i + 3 of x (d coordinates each) against the columns c .. c + 2W of the
    panel y^T (rows mp apart), metric_acc over the coordinates (also the radius graph's tile)."""
    comptime W = simd_width_of[dtype]()
    comptime V = SIMD[dtype, W]
    var a00 = V(0); var a01 = V(0)
    var a10 = V(0); var a11 = V(0)
    var a20 = V(0); var a21 = V(0)
    var a30 = V(0); var a31 = V(0)
    var xr = xp.unsafe_offset(i * d)
    for k in range(d):
        var y0 = yt.unsafe_load[width=W](k * mp + c)
        var y1 = yt.unsafe_load[width=W](k * mp + c + W)
        var x0 = V(xr[unsafe_offset=k])
        var x1 = V(xr[unsafe_offset=d + k])
        var x2 = V(xr[unsafe_offset=2 * d + k])
        var x3 = V(xr[unsafe_offset=3 * d + k])
        a00 = metric_acc[metric](a00, x0, y0); a01 = metric_acc[metric](a01, x0, y1)
        a10 = metric_acc[metric](a10, x1, y0); a11 = metric_acc[metric](a11, x1, y1)
        a20 = metric_acc[metric](a20, x2, y0); a21 = metric_acc[metric](a21, x2, y1)
        a30 = metric_acc[metric](a30, x3, y0); a31 = metric_acc[metric](a31, x3, y1)
    return Block4x2[dtype](a00, a01, a10, a11, a20, a21, a30, a31)


@always_inline
def _block_4x2[metric: Int, dtype: DType](
    xp: Pointer[Scalar[dtype], MutUntrackedOrigin],
    yt: Pointer[Scalar[dtype], MutUntrackedOrigin],
    nx: Pointer[Scalar[dtype], MutUntrackedOrigin],
    ny: Pointer[Scalar[dtype], MutUntrackedOrigin],
    op: Pointer[Scalar[dtype], MutUntrackedOrigin],
    d: Int, mp: Int, ldo: Int, i: Int, c: Int, c1: Int,
):
    """out[i:i + 4, c:c + 2W] (columns clipped at c1): the 4 x 2 block of accumulators,
    finished (metric_fin) and stored."""
    comptime W = simd_width_of[dtype]()
    var b = accumulate_4x2[metric](xp, yt, d, mp, i, c)
    var ny0 = ny.unsafe_load[width=W](c)
    var ny1 = ny.unsafe_load[width=W](c + W)
    var left0 = c1 - c
    var left1 = c1 - c - W
    _store(op, i * ldo + c, metric_fin[metric](b.a00, nx[unsafe_offset=i], ny0), left0)
    _store(op, (i + 1) * ldo + c, metric_fin[metric](b.a10, nx[unsafe_offset=i + 1], ny0), left0)
    _store(op, (i + 2) * ldo + c, metric_fin[metric](b.a20, nx[unsafe_offset=i + 2], ny0), left0)
    _store(op, (i + 3) * ldo + c, metric_fin[metric](b.a30, nx[unsafe_offset=i + 3], ny0), left0)
    if left1 > 0:
        _store(op, i * ldo + c + W, metric_fin[metric](b.a01, nx[unsafe_offset=i], ny1), left1)
        _store(op, (i + 1) * ldo + c + W, metric_fin[metric](b.a11, nx[unsafe_offset=i + 1], ny1), left1)
        _store(op, (i + 2) * ldo + c + W, metric_fin[metric](b.a21, nx[unsafe_offset=i + 2], ny1), left1)
        _store(op, (i + 3) * ldo + c + W, metric_fin[metric](b.a31, nx[unsafe_offset=i + 3], ny1), left1)


@always_inline
def _block_1x1[metric: Int, dtype: DType](
    xp: Pointer[Scalar[dtype], MutUntrackedOrigin],
    yt: Pointer[Scalar[dtype], MutUntrackedOrigin],
    nx: Pointer[Scalar[dtype], MutUntrackedOrigin],
    ny: Pointer[Scalar[dtype], MutUntrackedOrigin],
    op: Pointer[Scalar[dtype], MutUntrackedOrigin],
    d: Int, mp: Int, ldo: Int, i: Int, c: Int, c1: Int,
):
    """out[i, c:c + W] (clipped at c1): one row, one vector."""
    comptime W = simd_width_of[dtype]()
    comptime V = SIMD[dtype, W]
    var a0 = V(0)
    var xr = xp.unsafe_offset(i * d)
    for k in range(d):
        a0 = metric_acc[metric](a0, V(xr[unsafe_offset=k]), yt.unsafe_load[width=W](k * mp + c))
    _store(op, i * ldo + c, metric_fin[metric](a0, nx[unsafe_offset=i], ny.unsafe_load[width=W](c)), c1 - c)


def row_norms[dtype: DType](
    p: Pointer[Scalar[dtype], MutUntrackedOrigin], rows: Int, d: Int, dst: Pointer[Scalar[dtype], MutUntrackedOrigin],
    ctl: Control,
):
    """dst[i] = sqrt(sum_k p[i, k]^2) for the rows of a (rows, d) array (stops early once ctl
    is cancelled)."""
    for i in range(rows):
        if ctl.cancelled():
            return
        var s = Scalar[dtype](0)
        for k in range(d):
            var v = p[unsafe_offset=i * d + k]
            s += v * v
        dst[unsafe_offset=i] = sqrt(s)


def transpose_padded[dtype: DType](
    yp: Pointer[Scalar[dtype], MutUntrackedOrigin], m: Int, d: Int, mp: Int,
    yt: Pointer[Scalar[dtype], MutUntrackedOrigin], ctl: Control,
):
    """yt[k, j] = yp[j, k] for the (m, d) array yp into the zero-padded (d, mp) yt (stops
    early once ctl is cancelled: at (4096, 8192) this loop alone takes ~0.3 s)."""
    for k in range(d):
        if ctl.cancelled():
            return
        for j in range(m):
            yt[unsafe_offset=k * mp + j] = yp[unsafe_offset=j * d + k]
        for j in range(m, mp):
            yt[unsafe_offset=k * mp + j] = 0


struct TilePanels[dtype: DType](Movable):
    """The column operand Y (m, d) laid out once for the tiles (owned): yt (d, mp) = Y
    transposed and zero padded to mp columns (a multiple of 2W); the norms of Y's rows ny
    (mp) and of X's rows nx (n) for COSINE, else ones (unused by the other metrics)."""

    var yt: OwnedArray[Scalar[Self.dtype]]
    var nx: OwnedArray[Scalar[Self.dtype]]
    var ny: OwnedArray[Scalar[Self.dtype]]
    var mp: Int

    def __init__(
        out self, xp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin], n: Int,
        yp: Pointer[Scalar[Self.dtype], MutUntrackedOrigin], m: Int, d: Int, cosine: Bool, ctl: Control,
    ):
        comptime W = simd_width_of[Self.dtype]()
        self.mp = ((m + 2 * W - 1) // (2 * W)) * (2 * W)
        self.yt = OwnedArray[Scalar[Self.dtype]](d * self.mp)
        self.nx = OwnedArray[Scalar[Self.dtype]](n, 1)
        self.ny = OwnedArray[Scalar[Self.dtype]](self.mp, 1)
        transpose_padded(yp, m, d, self.mp, self.yt.data, ctl)
        if cosine:  # norms as scipy: 1 - x.y / (sqrt(x.x) * sqrt(y.y))
            row_norms(yp, m, d, self.ny.data, ctl)
            row_norms(xp, n, d, self.nx.data, ctl)


def _run[metric: Int, dtype: DType](
    xp: Pointer[Scalar[dtype], MutUntrackedOrigin],
    yp: Pointer[Scalar[dtype], MutUntrackedOrigin],
    op: Pointer[Scalar[dtype], MutUntrackedOrigin],
    n: Int, m: Int, d: Int, ldo: Int, nthreads: Int, ctl: Control,
):
    var pan = TilePanels[dtype](xp, n, yp, m, d, metric == COSINE, ctl)
    var nb = (n + RB - 1) // RB
    var npanels = (m + PANEL - 1) // PANEL

    @always_inline
    def row_block(b: Int) {imm}:
        var mode = ieee_begin()  # worker threads start with FTZ/DAZ set: keep denormals
        var r0 = b * RB
        var r1 = min(n, r0 + RB)
        for p in range(npanels):
            if ctl.cancelled():  # a row block is 32 x m x d: poll per panel of it too
                break
            var c0 = p * PANEL
            _tile[metric, dtype](xp, pan.yt.data, pan.nx.data, pan.ny.data, op, d, pan.mp, ldo, r0, r1, c0,
                                 min(m, c0 + PANEL))
        ieee_end(mode)

    run_chunks(row_block, nb, nthreads, ctl)  # row blocks handed out as workers free up; none after a cancel


def euclidean_self[dtype: DType](
    xp: Pointer[Scalar[dtype], MutUntrackedOrigin], op: Pointer[Scalar[dtype], MutUntrackedOrigin],
    n: Int, d: Int, ctl: Control,
):
    """The (n, n) euclidean distances of X (n, d) against itself on this thread: the values
    distances() gives for Y = None (any thread count computes every tile the same way)."""
    if n > 0:
        _run[EUCLIDEAN, dtype](xp, xp, op, n, n, d, n, 1, ctl)


def distances_typed[dtype: DType](p: DistanceParams) raises:
    """One block of distances (p.x, p.y, p.result of ``dtype``; see the header)."""
    var xp = Pointer[Scalar[dtype], MutUntrackedOrigin](unsafe_from_address=p.x)
    var yp = Pointer[Scalar[dtype], MutUntrackedOrigin](unsafe_from_address=p.y)
    var op = Pointer[Scalar[dtype], MutUntrackedOrigin](unsafe_from_address=p.result)
    if p.metric == EUCLIDEAN:
        _run[EUCLIDEAN, dtype](xp, yp, op, p.n, p.m, p.d, p.ldo, p.threads, Control(p.control))
    elif p.metric == SQEUCLIDEAN:
        _run[SQEUCLIDEAN, dtype](xp, yp, op, p.n, p.m, p.d, p.ldo, p.threads, Control(p.control))
    elif p.metric == CITYBLOCK:
        _run[CITYBLOCK, dtype](xp, yp, op, p.n, p.m, p.d, p.ldo, p.threads, Control(p.control))
    elif p.metric == CHEBYSHEV:
        _run[CHEBYSHEV, dtype](xp, yp, op, p.n, p.m, p.d, p.ldo, p.threads, Control(p.control))
    elif p.metric == COSINE:
        _run[COSINE, dtype](xp, yp, op, p.n, p.m, p.d, p.ldo, p.threads, Control(p.control))
    else:
        raise Error(String("distance: unknown metric id ", p.metric))


def distances(p: DistanceParams) raises:
    """Run a block: float32 for dtype_bits 32, else float64; nothing for an empty result."""
    if p.n == 0 or p.m == 0:
        return
    if p.dtype_bits == 32:
        distances_typed[F32](p)
    else:
        distances_typed[F64](p)
