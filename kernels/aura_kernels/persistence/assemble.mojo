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


def assemble[T: DType, Z2: Bool](filt: Filtration[T, Z2], dim: Int, simplices: Buffer[Entry[T]], pivots: PivotMap, need_next: Bool, mut next: Buffer[Entry[T]], mut cols: Buffer[Entry[T]]) -> Bool:
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
        var columns_out = chunk_columns[c]
        var next_out = chunk_next[c]
        var chunk_counts = SIMD[DType.int64, 4](0)
        _assemble_chunk(filt, dim, simplices, chunk_lo(c, nch, m), chunk_lo(c + 1, nch, m), pivots, need_next, columns_out, next_out, chunk_counts)
        chunk_columns[c] = columns_out
        chunk_next[c] = next_out
        for k in range(NCOUNTS):
            counts[NCOUNTS * c + k] = Int(chunk_counts[k])

    run_chunks(task, nch, filt.threads)
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


def _assemble_chunk[T: DType, Z2: Bool](filt: Filtration[T, Z2], dim: Int, simplices: Buffer[Entry[T]], lo: Int, hi: Int, pivots: PivotMap, need_next: Bool, mut columns_out: Buffer[Entry[T]], mut next_out: Buffer[Entry[T]], mut counts: SIMD[DType.int64, 4]):
    """The cofacets of simplices[lo:hi] for assemble: columns to columns_out, all cofacets to
    next_out (with need_next); counts[COUNT_*] += enumerated, cleared, apparent."""
    comptime W = simd_width_of[T]()
    var mem = filt.mem
    var nv = dim + 1
    var n = filt.n
    var scratch = Scratch()
    var vs = scratch.simplex()
    var cofacet_vertices = scratch.cofacet()  # [v, vs...]: slot 0 set per cofacet
    var row_max_owner = OwnedArray[Scalar[T]](n + W)
    var row_max = row_max_owner.data
    var thr = filt.threshold
    var brow = filt.binom_table.unsafe_offset((nv + 1) * filt.binom_stride)
    for q in range(lo, hi):
        if not mem.ok():  # out of budget in another chunk
            break
        var s = simplices[q]
        var ds = s.diam
        filt.decode(s.key, nv, vs)
        var top_vertex = vs[unsafe_offset=0]
        for i in range(nv):
            cofacet_vertices[unsafe_offset=i + 1] = vs[unsafe_offset=i]
        filt.write_row_max(vs, nv, row_max)  # row_max[v] = diameter of s + v, up to ds
        var zero_cofacet = -2  # s's zero cofacet vertex, computed on first need
        var v = n - 1
        while v > top_vertex:
            var mv = row_max[unsafe_offset=v]
            if mv <= thr:
                var dt = max(ds, mv)
                var tidx = brow[unsafe_offset=v] + s.key
                counts[COUNT_TOTAL] += 1
                if need_next and not next_out.push(Entry[T](dt, tidx), mem):
                    return
                if pivots.contains(tidx):
                    counts[COUNT_CLEARED] += 1
                else:
                    cofacet_vertices[unsafe_offset=0] = v
                    if dt == ds and zero_cofacet == -2:
                        zero_cofacet = filt.zero_cofacet_from_row(row_max, vs, nv, ds)
                    if _is_apparent(filt, nv, row_max, v, cofacet_vertices, dt, ds, zero_cofacet, scratch.facet()):
                        counts[COUNT_APPARENT] += 1
                    elif not columns_out.push(Entry[T](dt, tidx), mem):
                        return
            v -= 1
    _ = row_max_owner^  # freed here: row_max is a view of it
    _ = scratch^


@always_inline
def _is_apparent[T: DType, Z2: Bool](filt: Filtration[T, Z2], nv: Int, row_max: Pointer[Scalar[T], MutUntrackedOrigin], v: Int, cofacet_vertices: IntPtr, dt: Scalar[T], ds: Scalar[T], zero_cofacet: Int, facet: IntPtr) -> Bool:
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
