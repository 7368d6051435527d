# Radius graph (neighbour search without an n x n matrix): every ordered pair (i, j), i != j,
# with dist(X[i], X[j]) <= r, written straight into CSR.
#
#   X (n, d) in the work dtype, C-contiguous; out: indptr (n + 1) int64 (Python), indices
#   int32 sorted ascending per row, dists in the output dtype (float32 for float32 input,
#   float64 otherwise). Everything is validated and laid out by aura_lab/neighbors.py.
#
# Distances are computed exactly as the dense kernel (aura_kernels/distance/kernel.mojo: the same
# metric_acc/metric_fin per coordinate, in coordinate order, from 0, then the cast to the output dtype),
# so each stored value is bit for bit the entry of pairwise_distances(X, backend="mojo"), and
# "edge present" is that value <= r (r rounded down to the output dtype by Python): the
# persistence engine's test D[i, j] <= threshold, ties included.
#
# Two stages, two calls: COUNT, then Python sums the counts, checks memory, allocates the CSR
# and the write cursors; FILL writes. Both stages run the same traversal.
#
# TILES (any metric): rows in blocks of RB, the distance kernel's MR x 2W micro-tiles over
# panels of PANEL columns; each row's hits are emitted in column order (panels ascending), so a
# row is written sorted and row-driven: COUNT writes deg[i] into counts[i], FILL writes row i
# from cursor[i] (= indptr[i]).
#
# GRID (euclidean, d <= 5, unrolled per d): cells of side s >= r (slightly larger: see
# neighbors.py), one empty layer of padding cells around the box so no bounds checks; points
# sorted by cell (numpy) into `order` and the coordinate-major copy `ys` (d, ldy), cellstart[c]
# the first sorted position of cell c. Row-driven over the points in cell order (neighbouring
# points share candidates in cache): the candidates of a point of cell c are 3^(d-1) strips
# of 3 consecutive cells along the last axis, each a contiguous range of sorted positions
# [cellstart[c + o - 1], cellstart[c + o + 2]), scanned W at a time against the threshold on
# the sum of squares (acc_radius: no sqrt per candidate, same answer bit for bit). COUNT
# writes the degree; FILL packs the hits into a scratch row (AVX-512 compress), sorts it by
# index (insertion sort for short rows, else LSD radix on 8-bit digits) and writes it at
# cursor[i] = indptr[i].
#
# Threads: work items handed out by common.run_chunks; the cancel flag is polled per chunk of
# rows (tiles: per panel) and every POLL_POINTS points (grid).

from std.sys import simd_width_of
from std.math import iota
from std.bit import count_trailing_zeros
from aura_kernels.common import F32, F64, Control, OwnedArray, append_packed, ieee_begin, ieee_end, run_chunks, chunk_lo
from aura_kernels.distance.kernel import accumulate_4x2, metric_acc, metric_fin, TilePanels, MR, RB, PANEL
from aura_kernels.neighbors.abi import (
    NeighborsParams, EUCLIDEAN, SQEUCLIDEAN, COSINE, CITYBLOCK, CHEBYSHEV, GRID, TILES, COUNT, FILL,
)

comptime PI32 = Pointer[Int32, MutUntrackedOrigin]
comptime PI64 = Pointer[Int64, MutUntrackedOrigin]

# points of the grid traversal between two polls of the cancel flag
comptime POLL_POINTS = 256


@always_inline
def _emit_row[fill: Bool, od: DType, w: Int](
    dout: SIMD[od, w], r: Scalar[od], row: Int, col: Int, end: Int,
    counts: PI64, cursor: PI64, idx: PI32, dst: Pointer[Scalar[od], MutUntrackedOrigin],
):
    """Tiles: the hits of row `row` among columns col .. col + w - 1 (< end, != row)."""
    var lane = iota[DType.int64, w]() + Int64(col)
    var hit = dout.le(SIMD[od, w](r)) & lane.lt(SIMD[DType.int64, w](Int64(end))) & lane.ne(SIMD[DType.int64, w](Int64(row)))
    comptime if not fill:
        counts[unsafe_offset=row] = counts[unsafe_offset=row] + Int64(hit.cast[DType.int64]().reduce_add())
    else:
        var bits = hit.select(SIMD[DType.uint64, w](1) << iota[DType.uint64, w](), SIMD[DType.uint64, w](0)).reduce_or()
        if bits != 0:
            var cur = Int(cursor[unsafe_offset=row])
            while bits != 0:
                var l = Int(count_trailing_zeros(bits))
                idx[unsafe_offset=cur] = Int32(col + l)
                dst[unsafe_offset=cur] = dout[l]
                cur += 1
                bits &= bits - 1
            cursor[unsafe_offset=row] = Int64(cur)


@always_inline
def _tile_hits[metric: Int, wd: DType, od: DType, fill: Bool](
    xp: Pointer[Scalar[wd], MutUntrackedOrigin],
    yt: Pointer[Scalar[wd], MutUntrackedOrigin],
    nx: Pointer[Scalar[wd], MutUntrackedOrigin],
    ny: Pointer[Scalar[wd], MutUntrackedOrigin],
    d: Int, mp: Int, r0: Int, r1: Int, c0: Int, c1: Int, r: Scalar[od],
    counts: PI64, cursor: PI64, idx: PI32, dst: Pointer[Scalar[od], MutUntrackedOrigin],
):
    """distance.mojo's _tile with the store replaced by the hit test (rows r0:r1, one panel)."""
    comptime W = simd_width_of[wd]()
    comptime V = SIMD[wd, W]
    var i = r0
    while i + MR <= r1:
        var c = c0
        while c < c1:
            var b = accumulate_4x2[metric](xp, yt, d, mp, i, c)
            var ny0 = ny.unsafe_load[width=W](c)
            var ny1 = ny.unsafe_load[width=W](c + W)
            # row by row, both column vectors in order: each row's hits ascend
            _emit_row[fill](metric_fin[metric](b.a00, nx[unsafe_offset=i], ny0).cast[od](), r, i, c, c1, counts, cursor, idx, dst)
            _emit_row[fill](metric_fin[metric](b.a01, nx[unsafe_offset=i], ny1).cast[od](), r, i, c + W, c1, counts, cursor, idx, dst)
            _emit_row[fill](metric_fin[metric](b.a10, nx[unsafe_offset=i + 1], ny0).cast[od](), r, i + 1, c, c1, counts, cursor, idx, dst)
            _emit_row[fill](metric_fin[metric](b.a11, nx[unsafe_offset=i + 1], ny1).cast[od](), r, i + 1, c + W, c1, counts, cursor, idx, dst)
            _emit_row[fill](metric_fin[metric](b.a20, nx[unsafe_offset=i + 2], ny0).cast[od](), r, i + 2, c, c1, counts, cursor, idx, dst)
            _emit_row[fill](metric_fin[metric](b.a21, nx[unsafe_offset=i + 2], ny1).cast[od](), r, i + 2, c + W, c1, counts, cursor, idx, dst)
            _emit_row[fill](metric_fin[metric](b.a30, nx[unsafe_offset=i + 3], ny0).cast[od](), r, i + 3, c, c1, counts, cursor, idx, dst)
            _emit_row[fill](metric_fin[metric](b.a31, nx[unsafe_offset=i + 3], ny1).cast[od](), r, i + 3, c + W, c1, counts, cursor, idx, dst)
            c += 2 * W
        i += MR
    while i < r1:  # leftover rows, one at a time
        var c = c0
        while c < c1:
            var a0 = V(0)
            var xr = xp.unsafe_offset(i * d)
            for k in range(d):
                a0 = metric_acc[metric](a0, V(xr[unsafe_offset=k]), yt.unsafe_load[width=W](k * mp + c))
            _emit_row[fill](metric_fin[metric](a0, nx[unsafe_offset=i], ny.unsafe_load[width=W](c)).cast[od](), r, i, c, c1,
                            counts, cursor, idx, dst)
            c += W
        i += 1


def _tiles[metric: Int, wd: DType, od: DType, fill: Bool](p: NeighborsParams, ctl: Control):
    var n = p.n
    var d = p.d
    var xp = Pointer[Scalar[wd], MutUntrackedOrigin](unsafe_from_address=p.x)
    var counts = PI64(unsafe_from_address=p.counts)
    var cursor = PI64(unsafe_from_address=p.cursor)
    var idx = PI32(unsafe_from_address=p.indices)
    var dst = Pointer[Scalar[od], MutUntrackedOrigin](unsafe_from_address=p.dists)
    var r = Scalar[od](p.radius)
    var pan = TilePanels[wd](xp, n, xp, n, d, metric == COSINE, ctl)  # the dense kernel's layout and norms

    var nb = (n + RB - 1) // RB
    var npanels = (n + PANEL - 1) // PANEL

    @always_inline
    def row_block(b: Int) {imm}:
        var mode = ieee_begin()
        var r0 = b * RB
        var r1 = min(n, r0 + RB)
        for q in range(npanels):  # ascending: every row's hits are emitted in column order
            if ctl.cancelled():
                break
            var c0 = q * PANEL
            _tile_hits[metric, wd, od, fill](xp, pan.yt.data, pan.nx.data, pan.ny.data, d, pan.mp, r0, r1, c0,
                                             min(n, c0 + PANEL), r,
                                             counts, cursor, idx, dst)
        ieee_end(mode)

    run_chunks(row_block, nb, p.threads, ctl)


# rows of at most this many entries are sorted by insertion, longer ones by the radix sort
comptime INSERTION_MAX = 24


struct RowHits[od: DType](Movable):
    """A grid chunk's scratch row (owned): the hits of one point in scan order (sid, sd:
    `cap` slots) and the radix sort's keys (ka, kb) and digit counts (cnt)."""

    var sid: OwnedArray[Int32]
    var sd: OwnedArray[Scalar[Self.od]]
    var ka: OwnedArray[UInt64]
    var kb: OwnedArray[UInt64]
    var cnt: OwnedArray[Int32]

    def __init__(out self, cap: Int):
        self.sid = OwnedArray[Int32](cap)
        self.sd = OwnedArray[Scalar[Self.od]](cap)
        self.ka = OwnedArray[UInt64](cap)
        self.kb = OwnedArray[UInt64](cap)
        self.cnt = OwnedArray[Int32](256)


def _write_sorted[od: DType](
    h: RowHits[od], m: Int, idx: PI32, dst: Pointer[Scalar[od], MutUntrackedOrigin], at: Int,
):
    """Write the m hits (h.sid[t], h.sd[t]) (distinct ids, in scan order) to idx/dst[at:at + m]
    sorted by id: insertion sort for short rows, else an LSD radix sort on 8-bit digits of
    id - min(id) (2 passes for n <= 65536, 3 up to 2^24), keys (id - min) << 32 | t."""
    var sid = h.sid.data
    var sd = h.sd.data
    if m <= INSERTION_MAX:
        _insertion_sort_hits(sid, sd, m)
        for t in range(m):
            idx[unsafe_offset=at + t] = sid[unsafe_offset=t]
            dst[unsafe_offset=at + t] = sd[unsafe_offset=t]
        return
    var lo = sid[unsafe_offset=0]
    var hi = lo
    for t in range(1, m):
        var v = sid[unsafe_offset=t]
        lo = min(lo, v)
        hi = max(hi, v)
    var ka = h.ka.data
    for t in range(m):
        ka[unsafe_offset=t] = (UInt64(sid[unsafe_offset=t] - lo) << 32) | UInt64(t)
    ka = _radix_sort_keys(ka, h.kb.data, h.cnt.data, m, UInt64(hi - lo))
    for t in range(m):
        var key = ka[unsafe_offset=t]
        idx[unsafe_offset=at + t] = Int32(key >> 32) + lo
        dst[unsafe_offset=at + t] = sd[unsafe_offset=Int(key & 0xFFFFFFFF)]


@always_inline
def _insertion_sort_hits[od: DType](sid: PI32, sd: Pointer[Scalar[od], MutUntrackedOrigin], m: Int):
    """Sort the m hits (sid[t], sd[t]) by id in place (the ids are distinct)."""
    for k in range(1, m):
        var key = sid[unsafe_offset=k]
        var val = sd[unsafe_offset=k]
        var q = k - 1
        while q >= 0 and sid[unsafe_offset=q] > key:
            sid[unsafe_offset=q + 1] = sid[unsafe_offset=q]
            sd[unsafe_offset=q + 1] = sd[unsafe_offset=q]
            q -= 1
        sid[unsafe_offset=q + 1] = key
        sd[unsafe_offset=q + 1] = val


@always_inline
def _radix_sort_keys(
    ka0: Pointer[UInt64, MutUntrackedOrigin], kb0: Pointer[UInt64, MutUntrackedOrigin], cnt: PI32, m: Int, span: UInt64,
) -> Pointer[UInt64, MutUntrackedOrigin]:
    """LSD radix sort of the keys ka0[0:m] on the 8-bit digits from bit 32 up, while span
    (the largest id - min) has digits left; kb0 is the other buffer, cnt 256 counters.
    Returns the buffer holding the sorted keys (ka0 or kb0)."""
    var ka = ka0
    var kb = kb0
    var shift = UInt64(32)
    while (span >> (shift - 32)) != 0:
        for c in range(256):
            cnt[unsafe_offset=c] = 0
        for t in range(m):
            var dg = Int((ka[unsafe_offset=t] >> shift) & 255)
            cnt[unsafe_offset=dg] = cnt[unsafe_offset=dg] + 1
        var run = Int32(0)
        for c in range(256):
            var h = cnt[unsafe_offset=c]
            cnt[unsafe_offset=c] = run
            run += h
        for t in range(m):
            var key = ka[unsafe_offset=t]
            var dg = Int((key >> shift) & 255)
            var to = Int(cnt[unsafe_offset=dg])
            cnt[unsafe_offset=dg] = Int32(to + 1)
            kb[unsafe_offset=to] = key
        var tmp = ka
        ka = kb
        kb = tmp
        shift += 8
    return ka


def _grid[wd: DType, od: DType, fill: Bool, D: Int](p: NeighborsParams, ctl: Control):
    # Euclidean in D dimensions (unrolled), row-driven over the points in cell order. A
    # candidate is a hit iff its sum of squares is <= p.acc_radius, the largest value whose
    # sqrt, cast to the output dtype, is <= r (found by Python: the same test as sqrt(acc) <= r,
    # without a square root per candidate). COUNT: counts[i] = degree; FILL: the hits of row i
    # packed into a scratch row (compress stores), sorted, written at cursor[i].
    comptime W = simd_width_of[wd]()
    comptime V = SIMD[wd, W]
    comptime IV = SIMD[DType.int32, W]
    var n = p.n
    var ldy = p.ldy
    var nstrips = p.nstrips
    var ys = Pointer[Scalar[wd], MutUntrackedOrigin](unsafe_from_address=p.ys)
    var order = PI32(unsafe_from_address=p.order)
    var cellstart = PI64(unsafe_from_address=p.cellstart)
    var pcell = PI64(unsafe_from_address=p.pcell)
    var strips = PI64(unsafe_from_address=p.strips)
    var counts = PI64(unsafe_from_address=p.counts)
    var cursor = PI64(unsafe_from_address=p.cursor)
    var idx = PI32(unsafe_from_address=p.indices)
    var dst = Pointer[Scalar[od], MutUntrackedOrigin](unsafe_from_address=p.dists)
    var amax = Scalar[wd](p.acc_radius)
    var nch = max(1, min(n // 2048, p.threads * 16)) if p.threads > 1 else 1

    @always_inline
    def chunk(ch: Int) {imm}:
        var mode = ieee_begin()
        var lo = chunk_lo(ch, nch, n)
        var hi = chunk_lo(ch + 1, nch, n)
        var mx = p.maxdeg + 2 * W
        var hits = RowHits[od](mx)
        for P in range(lo, hi):  # sorted positions: neighbouring points share their candidates
            if (P - lo) % POLL_POINTS == 0 and ctl.cancelled():
                break
            var i = Int(order[unsafe_offset=P])
            var cell = Int(pcell[unsafe_offset=i])
            var xv = SIMD[wd, 8](0)
            comptime for k in range(D):
                xv[k] = ys[unsafe_offset=k * ldy + P]
            var deg = 0  # hits so far (fill: in the scratch sid/sd, in scan order)
            for s in range(nstrips):
                var cc = cell + Int(strips[unsafe_offset=s])
                var a = Int(cellstart[unsafe_offset=cc - 1])
                var b = Int(cellstart[unsafe_offset=cc + 2])
                deg = _scan_span[wd, od, fill, D](ys, ldy, order, a, b, xv, Int32(i), amax, hits, deg)
            comptime if fill:
                _write_sorted[od](hits, deg, idx, dst, Int(cursor[unsafe_offset=i]))
            else:
                counts[unsafe_offset=i] = Int64(deg)
        ieee_end(mode)

    run_chunks(chunk, nch, p.threads, ctl)


@always_inline
def _scan_span[wd: DType, od: DType, fill: Bool, D: Int](
    ys: Pointer[Scalar[wd], MutUntrackedOrigin], ldy: Int, order: PI32, a: Int, b: Int, xv: SIMD[wd, 8], i: Int32,
    amax: Scalar[wd], hits: RowHits[od], deg0: Int,
) -> Int:
    """The hits of point xv (id i, not itself one) among the sorted positions a..<b, W at a
    time: acc <= amax. Returns deg0 + their count; fill: also packed (id, distance) into
    hits at deg0 (compress stores, in scan order)."""
    comptime W = simd_width_of[wd]()
    comptime V = SIMD[wd, W]
    comptime IV = SIMD[DType.int32, W]
    var av = V(amax)
    var iv = IV(i)
    var bv = IV(Int32(b))
    var deg = deg0
    var q = a
    while q < b:
        var acc = V(0)
        comptime for k in range(D):
            acc = metric_acc[EUCLIDEAN](acc, V(xv[k]), ys.unsafe_load[width=W](k * ldy + q))
        var ids = order.unsafe_load[width=W](q)
        var lane = iota[DType.int32, W]() + Int32(q)
        var hit = acc.le(av) & lane.lt(bv) & ids.ne(iv)
        comptime if fill:
            if hit.reduce_or():
                var dout = metric_fin[EUCLIDEAN](acc, Scalar[wd](1), V(1)).cast[od]()
                append_packed(ids, hit, hits.sid.at(deg))
                append_packed(dout, hit, hits.sd.at(deg))
                deg += Int(hit.cast[DType.int32]().reduce_add())
        else:
            deg += Int(hit.cast[DType.int32]().reduce_add())
        q += W
    return deg


def _grid_d[wd: DType, od: DType, fill: Bool](p: NeighborsParams, ctl: Control) raises:
    if p.d == 1:
        _grid[wd, od, fill, 1](p, ctl)
    elif p.d == 2:
        _grid[wd, od, fill, 2](p, ctl)
    elif p.d == 3:
        _grid[wd, od, fill, 3](p, ctl)
    elif p.d == 4:
        _grid[wd, od, fill, 4](p, ctl)
    elif p.d == 5:
        _grid[wd, od, fill, 5](p, ctl)
    else:
        raise Error(String("radius_graph: the grid path takes d <= 5, got d = ", p.d))


def _by_stage[metric: Int, wd: DType, od: DType](p: NeighborsParams, ctl: Control) raises:
    if p.path == TILES:
        if p.stage == COUNT:
            _tiles[metric, wd, od, False](p, ctl)
        else:
            _tiles[metric, wd, od, True](p, ctl)
    elif p.path == GRID:
        comptime if metric == EUCLIDEAN:
            if p.stage == COUNT:
                _grid_d[wd, od, False](p, ctl)
            else:
                _grid_d[wd, od, True](p, ctl)
        else:
            raise Error("radius_graph: the grid path takes the euclidean metric only")
    else:
        raise Error(String("radius_graph: unknown path id ", p.path))


def _by_metric[wd: DType, od: DType](p: NeighborsParams) raises:
    var ctl = Control(p.control)
    if p.metric == EUCLIDEAN:
        _by_stage[EUCLIDEAN, wd, od](p, ctl)
    elif p.metric == SQEUCLIDEAN:
        _by_stage[SQEUCLIDEAN, wd, od](p, ctl)
    elif p.metric == CITYBLOCK:
        _by_stage[CITYBLOCK, wd, od](p, ctl)
    elif p.metric == CHEBYSHEV:
        _by_stage[CHEBYSHEV, wd, od](p, ctl)
    elif p.metric == COSINE:
        _by_stage[COSINE, wd, od](p, ctl)
    else:
        raise Error(String("radius_graph: unknown metric id ", p.metric))


def radius_graph_stage(p: NeighborsParams) raises:
    """One stage (COUNT or FILL) of one path; work dtype by work_bits, output by out_bits
    (float64 work with float32 output: metrics and magnitudes that distance.py computes in
    float64). Nothing for n < 2."""
    if p.n < 2:
        return
    if p.stage != COUNT and p.stage != FILL:
        raise Error(String("radius_graph: unknown stage id ", p.stage))
    if p.work_bits == 32:
        if p.out_bits != 32:
            raise Error("radius_graph: float32 work needs float32 output")
        _by_metric[F32, F32](p)
    elif p.out_bits == 32:
        _by_metric[F64, F32](p)
    else:
        _by_metric[F64, F64](p)
