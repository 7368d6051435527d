# Column assembly: the columns of dimension k + 1 from the k-simplices (clearing and the
# apparent-pair filters), and the (k + 1)-simplices the next dimension assembles from.

from std.sys import simd_width_of
from std.time import perf_counter_ns
from aura_kernels.common import run_chunks, n_chunks, chunk_lo
from aura_kernels.persistence.containers import (
    IntPtr, Entry, Buffer, ChunkBuffers, OwnedArray, PivotMap, Scratch,
)
from aura_kernels.persistence.sort import sort_columns
from aura_kernels.persistence.simplices import (
    Filtration, STAT_SIMPLICES, STAT_CLEARED, STAT_APPARENT, STAT_ASSEMBLE_NS,
)

# k-simplices per chunk (each enumerates up to n cofacets). Not tuned; chosen small because
# the work per simplex varies a lot (its row max costs nv * n, its cofacets' tests more).
comptime ASSEMBLE_GRAIN = 256

# per-chunk counters
comptime COUNT_TOTAL = 0
comptime COUNT_CLEARED = 1
comptime COUNT_APPARENT = 2
comptime NCOUNTS = 3


def assemble[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], dim: Int, simplices: Buffer[Entry[T]], pivots: PivotMap, need_next: Bool, mut next: Buffer[Entry[T]], mut cols: Buffer[Entry[T]]) -> Bool:
    """Columns of dimension dim + 1 from the dim-simplices: every cofacet s + v with v above s's
    top vertex (each (dim+1)-simplex once), within the threshold, not a pivot of dimension dim
    and not in a zero-persistence apparent pair; sorted into column order. With need_next, all
    those cofacets within the threshold also go to next (in no particular order)."""
    var t0 = perf_counter_ns()
    var mem = filt.mem
    var m = simplices.size
    var nch = n_chunks(m, filt.threads, ASSEMBLE_GRAIN)
    var chunk_columns = ChunkBuffers[T](nch, mem)
    var chunk_next = ChunkBuffers[T](nch, mem)
    var counts = OwnedArray[Int](NCOUNTS * nch, 0)

    @always_inline
    def task(c: Int) {imm}:
        comptime if SPARSE:
            _assemble_chunk_sparse(filt, dim, simplices, c, nch, pivots, need_next, chunk_columns, chunk_next, counts)
        else:
            _assemble_chunk(filt, dim, simplices, c, nch, pivots, need_next, chunk_columns, chunk_next, counts)
        mem.ctl.add_done(chunk_lo(c + 1, nch, m) - chunk_lo(c, nch, m))

    mem.ctl.start_stage(2 * (dim + 1), m)  # progress (stage 2 k: building the k-columns): simplices done

    run_chunks(task, nch, filt.threads, mem.ctl)
    for c in range(nch):
        filt.stat(dim + 1, STAT_SIMPLICES, counts[NCOUNTS * c + COUNT_TOTAL])
        filt.stat(dim + 1, STAT_CLEARED, counts[NCOUNTS * c + COUNT_CLEARED])
        filt.stat(dim + 1, STAT_APPARENT, counts[NCOUNTS * c + COUNT_APPARENT])
    var ok = chunk_columns.gather(cols, mem)
    ok = chunk_next.gather(next, mem) and ok
    if ok:
        ok = sort_columns(cols, filt.threads, mem)
    filt.stat(dim + 1, STAT_ASSEMBLE_NS, Int(perf_counter_ns() - t0))
    return ok and mem.ok()


def _assemble_chunk[T: DType, Z2: Bool, SPARSE: Bool](filtration: Filtration[T, Z2, SPARSE], dim: Int, simplices: Buffer[Entry[T]], c: Int, nch: Int, pivot_map: PivotMap, need_next: Bool, chunk_columns: ChunkBuffers[T], chunk_next: ChunkBuffers[T], counts: OwnedArray[Int]):
    """The cofacets of chunk c of nch of the simplices for assemble: columns to
    chunk_columns[c], all cofacets to chunk_next[c] (with need_next); counts[NCOUNTS * c +
    COUNT_*] = enumerated, cleared, apparent. (The filtration, pivot map, buffers and
    counters are local copies: through references they would be reloaded, and the
    counters stored, at every push.)"""
    var filt = filtration
    var pivots = pivot_map
    comptime W = simd_width_of[T]()
    var mem = filt.mem
    var nv = dim + 1
    var n = filt.n
    var scratch = Scratch()
    var vs = scratch.simplex()
    var cofacet_vertices = scratch.cofacet()  # [v, vs...]: slot 0 set per cofacet
    var row_max_owner = OwnedArray[Scalar[T]](n + W)
    var row_max = row_max_owner.data
    var brow = filt.binom_table.unsafe_offset((nv + 1) * filt.binom_stride)
    var columns_out = chunk_columns[c]
    var next_out = chunk_next[c]
    var total = 0
    var cleared = 0
    var apparent = 0
    var m = simplices.size
    for q in range(chunk_lo(c, nch, m), chunk_lo(c + 1, nch, m)):
        if not mem.ok():  # out of budget here (a push failed) or in another chunk
            break
        var s = simplices[q]
        filt.decode(s.key, nv, vs)
        for i in range(nv):
            cofacet_vertices[unsafe_offset=i + 1] = vs[unsafe_offset=i]
        filt.write_row_max(vs, nv, row_max)  # row_max[v] = diameter of s + v, up to ds
        _ = _assemble_cofacets(
            filt, s, nv, vs, cofacet_vertices, scratch.facet(), row_max, brow, pivots, need_next,
            columns_out, next_out, total, cleared, apparent,
        )  # False: a push failed, and mem.ok() ends the loop
    chunk_columns[c] = columns_out
    chunk_next[c] = next_out
    counts[NCOUNTS * c + COUNT_TOTAL] = total
    counts[NCOUNTS * c + COUNT_CLEARED] = cleared
    counts[NCOUNTS * c + COUNT_APPARENT] = apparent
    _ = row_max_owner^  # freed here: row_max is a view of it
    _ = scratch^


def _assemble_chunk_sparse[T: DType, Z2: Bool, SPARSE: Bool](filtration: Filtration[T, Z2, SPARSE], dim: Int, simplices: Buffer[Entry[T]], c: Int, nch: Int, pivot_map: PivotMap, need_next: Bool, chunk_columns: ChunkBuffers[T], chunk_next: ChunkBuffers[T], counts: OwnedArray[Int]):
    """_assemble_chunk on the sparse graph. Per simplex s, one sweep lists its common
    neighbours w (descending) with the diameters of s + w (the sparse analogue of the dense
    row max); the cofacets s + v, v above s's top vertex, are that list's head, and the
    apparent-pair tests of each read the list and v's neighbour list only."""
    var filt = filtration
    var pivots = pivot_map
    var mem = filt.mem
    var nv = dim + 1
    var scratch = Scratch()
    var vs = scratch.simplex()
    var cofacet_vertices = scratch.cofacet()  # [v, vs...]: slot 0 set per cofacet
    var pos = OwnedArray[Int](nv)  # the sweep's positions in the neighbour lists
    var cap = filt.max_degree() + 1
    var common = OwnedArray[Int](cap)  # s's common neighbours, descending
    var common_d = OwnedArray[Scalar[T]](cap)  # and the diameters of s + w (up to ds)
    var columns_out = chunk_columns[c]
    var next_out = chunk_next[c]
    var total = 0
    var cleared = 0
    var apparent = 0
    var m = simplices.size
    for q in range(chunk_lo(c, nch, m), chunk_lo(c + 1, nch, m)):
        if not mem.ok():  # out of budget here (a push failed) or in another chunk
            break
        var s = simplices[q]
        filt.decode(s.key, nv, vs)
        var top_vertex = vs[unsafe_offset=0]
        for i in range(nv):
            cofacet_vertices[unsafe_offset=i + 1] = vs[unsafe_offset=i]
        var ncommon = _common_neighbours(filt, vs, nv, pos.data, common.data, common_d.data)
        _ = _assemble_cofacets_sparse(
            filt, s, nv, top_vertex, cofacet_vertices, scratch.facet(), common.data, common_d.data, ncommon,
            pivots, need_next, columns_out, next_out, total, cleared, apparent,
        )  # False: a push failed, and mem.ok() ends the loop
    chunk_columns[c] = columns_out
    chunk_next[c] = next_out
    counts[NCOUNTS * c + COUNT_TOTAL] = total
    counts[NCOUNTS * c + COUNT_CLEARED] = cleared
    counts[NCOUNTS * c + COUNT_APPARENT] = apparent
    _ = pos^  # freed here: the sweep and the tests read their data
    _ = common^
    _ = common_d^
    _ = scratch^


@always_inline
def _assemble_cofacets[T: DType, Z2: Bool, SPARSE: Bool](
    filt: Filtration[T, Z2, SPARSE], s: Entry[T], nv: Int, vs: IntPtr, cofacet_vertices: IntPtr, facet: IntPtr,
    row_max: Pointer[Scalar[T], MutUntrackedOrigin], brow: IntPtr, pivots: PivotMap, need_next: Bool,
    mut columns_out: Buffer[Entry[T]], mut next_out: Buffer[Entry[T]], mut total: Int, mut cleared: Int, mut apparent: Int,
) -> Bool:
    """The cofacets s + v (v from n - 1 down to above s's top vertex vs[0], within the
    threshold by row_max): all to next_out (with need_next), those neither cleared (a pivot)
    nor apparent to columns_out; counted in total, cleared, apparent. False: a push failed."""
    var mem = filt.mem
    var thr = filt.threshold
    var ds = s.diam
    var zero_cofacet = -2  # s's zero cofacet vertex, computed on first need
    var v = filt.n - 1
    while v > vs[unsafe_offset=0]:
        var mv = row_max[unsafe_offset=v]
        if mv <= thr:
            var dt = max(ds, mv)
            var tidx = brow[unsafe_offset=v] + s.key
            total += 1
            if need_next and not next_out.push(Entry[T](dt, tidx), mem):
                return False
            if pivots.contains(tidx):
                cleared += 1
            else:
                cofacet_vertices[unsafe_offset=0] = v
                if dt == ds and zero_cofacet == -2:
                    zero_cofacet = filt.zero_cofacet_from_row(row_max, vs, nv, ds)
                if _is_apparent(filt, nv, row_max, v, cofacet_vertices, dt, ds, zero_cofacet, facet):
                    apparent += 1
                elif not columns_out.push(Entry[T](dt, tidx), mem):
                    return False
        v -= 1
    return True


@always_inline
def _assemble_cofacets_sparse[T: DType, Z2: Bool, SPARSE: Bool](
    filt: Filtration[T, Z2, SPARSE], s: Entry[T], nv: Int, top_vertex: Int, cofacet_vertices: IntPtr, facet: IntPtr,
    common: IntPtr, common_d: Pointer[Scalar[T], MutUntrackedOrigin], ncommon: Int, pivots: PivotMap, need_next: Bool,
    mut columns_out: Buffer[Entry[T]], mut next_out: Buffer[Entry[T]], mut total: Int, mut cleared: Int, mut apparent: Int,
) -> Bool:
    """_assemble_cofacets on the sparse graph: the cofacets s + v are the head of s's common
    neighbours (descending, v above top_vertex) with their diameters in common_d."""
    var mem = filt.mem
    var thr = filt.threshold
    var ds = s.diam
    var zero_cofacet = -1  # s's zero cofacet vertex: its largest common neighbour within ds
    for k in range(ncommon):
        if common_d[unsafe_offset=k] <= ds:
            zero_cofacet = common[unsafe_offset=k]
            break
    for k in range(ncommon):
        var v = common[unsafe_offset=k]
        if v < top_vertex:
            break
        var mv = common_d[unsafe_offset=k]
        if mv > thr:
            continue
        var dt = max(ds, mv)
        var tidx = filt.binom(v, nv + 1) + s.key
        total += 1
        if need_next and not next_out.push(Entry[T](dt, tidx), mem):
            return False
        if pivots.contains(tidx):
            cleared += 1
            continue
        cofacet_vertices[unsafe_offset=0] = v
        if _is_apparent_sparse(filt, nv, v, cofacet_vertices, dt, ds, zero_cofacet, common, common_d, ncommon, facet):
            apparent += 1
        elif not columns_out.push(Entry[T](dt, tidx), mem):
            return False
    return True


def _common_neighbours[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], vs: IntPtr, nv: Int, pos: IntPtr, common: IntPtr, common_d: Pointer[Scalar[T], MutUntrackedOrigin]) -> Int:
    """The common neighbours w of vs, descending, into common, and max_i d(vs[i], w) into
    common_d; returns their count (at most the smallest degree among vs)."""
    filt.sweep_start(vs, nv, pos)
    var w = -1
    var dw = Scalar[T](0)
    var count = 0
    while filt.sweep_next(vs, nv, pos, w, dw):
        common[unsafe_offset=count] = w
        common_d[unsafe_offset=count] = dw
        count += 1
    return count


@always_inline
def _zero_cofacet_of_cofacet[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], v: Int, common: IntPtr, common_d: Pointer[Scalar[T], MutUntrackedOrigin], ncommon: Int, dd: Scalar[T]) -> Int:
    """filt.zero_cofacet of t = s + v (diameter dd) from s's common neighbours: the largest
    w != v among them that is v's neighbour, with max(common_d, d(v, w)) <= dd; else -1.
    Each candidate is a binary search in v's list below the previous one (the first
    candidate usually answers: a full merge would walk v's list from its top)."""
    var lo = filt.indptr[unsafe_offset=v]
    var hi = filt.indptr[unsafe_offset=v + 1]  # candidates descend: search nbr[lo:hi]
    for k in range(ncommon):
        var w = common[unsafe_offset=k]
        if w == v or common_d[unsafe_offset=k] > dd:
            continue
        var a = lo
        var b = hi
        while a < b:  # the first entry >= w
            var mid = (a + b) >> 1
            if Int(filt.nbr[unsafe_offset=mid]) < w:
                a = mid + 1
            else:
                b = mid
        if a < hi and Int(filt.nbr[unsafe_offset=a]) == w and filt.dist[unsafe_offset=a] <= dd:
            return w
        hi = a
        if hi == lo:
            return -1
    return -1


@always_inline
def _is_apparent_sparse[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], nv: Int, v: Int, cofacet_vertices: IntPtr, dt: Scalar[T], ds: Scalar[T], zero_cofacet: Int, common: IntPtr, common_d: Pointer[Scalar[T], MutUntrackedOrigin], ncommon: Int, facet: IntPtr) -> Bool:
    """_is_apparent from s's common neighbours instead of its row max: the same three tests."""
    if dt == ds and zero_cofacet == v:
        return True
    var x = _zero_cofacet_of_cofacet(filt, v, common, common_d, ncommon, dt)
    if x >= 0 and filt.is_zero_facet(cofacet_vertices, nv + 1, x, dt):
        return True
    if dt != ds:
        return filt.apparent_facet(cofacet_vertices, nv + 1, dt, facet) >= 0
    return False


@always_inline
def _is_apparent[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], nv: Int, row_max: Pointer[Scalar[T], MutUntrackedOrigin], v: Int, cofacet_vertices: IntPtr, dt: Scalar[T], ds: Scalar[T], zero_cofacet: Int, facet: IntPtr) -> Bool:
    """Whether t = s + v (vertices cofacet_vertices, diameter dt; s of diameter ds with row max
    row_max and zero cofacet vertex zero_cofacet when dt == ds) is in a zero-persistence
    apparent pair."""
    if dt == ds:
        # s is t's smallest-index facet of equal diameter (v is t's top vertex): (s, t) is
        # apparent iff t is s's zero cofacet
        if zero_cofacet == v:
            return True
    # t paired with a cofacet is the common case (there are far fewer dim-simplices than
    # cofacets to pair with): test it first
    if filt.apparent_cofacet_from_rows(row_max, v, cofacet_vertices, nv + 1, dt) >= 0:
        return True
    if dt != ds:
        return filt.apparent_facet(cofacet_vertices, nv + 1, dt, facet) >= 0
    return False
