# Dimension 0: the edges under the threshold, union-find for the H0 bars, and the H1 columns
# (edges that merged nothing and are not the facet of an apparent pair).

from std.time import perf_counter_ns
from aura_kernels.common import run_chunks, n_chunks, chunk_lo, area_row
from aura_kernels.persistence.containers import (
    IntPtr, Entry, Bar, Buffer, ChunkBuffers, MemoryBudget, OwnedArray, PivotMap, Scratch,
)
from aura_kernels.persistence.reps import RepOut, KIND_MERGES
from aura_kernels.persistence.sort import radix_sort_columns
from aura_kernels.persistence.simplices import (
    Filtration, STAT_SIMPLICES, STAT_APPARENT, STAT_ASSEMBLE_NS,
)

# Matrix entries (lower triangle) per chunk of the edge scan. Not tuned; chosen as ~64K
# entries (256 KiB of float32 rows), a few hundred microseconds of work per chunk.
comptime EDGE_SCAN_GRAIN = 1 << 16
comptime POLL_EDGES = 1 << 20  # union-find steps between two polls of the cancel flag
# Edges per chunk of the H1 column filter (each runs an apparent-pair test). Not tuned.
comptime EDGE_COLUMN_GRAIN = 4096


def dim0[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], mut bars: Buffer[Bar], mut edges: Buffer[Entry[T]], mut cols: Buffer[Entry[T]], mut reps: RepOut, mut pairs: PivotMap) -> Bool:
    """H0 bars by union-find; all edges <= threshold (column order) and the H1 columns. With
    representatives, the merges record; with cycles, pairs: vertex -> the edge it is paired
    with in homology (for the cycles of essential H1 bars)."""
    comptime if SPARSE:
        if filt.maxdim == 1:
            return _dim0_sparse_h1(filt, bars, cols, reps, pairs)
    var t0 = perf_counter_ns()
    var mem = filt.mem
    if not _edges_below_threshold(filt, edges):
        return False
    if not radix_sort_columns(edges, mem):  # edges come in index order: a stable sort suffices
        return False
    filt.stat(0, STAT_SIMPLICES, edges.size)
    if not mem.take(2 * filt.n * 8 + edges.size):  # parent, largest, merged
        return False
    var merged = OwnedArray[UInt8](edges.size)  # 1 where the edge merged two components
    var ok = _union_find(filt, edges, merged, bars, reps, pairs)
    var t1 = perf_counter_ns()
    filt.stat(0, STAT_ASSEMBLE_NS, Int(t1 - t0))
    if ok and filt.maxdim >= 1:
        ok = _edge_columns(filt, edges, merged, cols)
        filt.stat(1, STAT_ASSEMBLE_NS, Int(perf_counter_ns() - t1))
    mem.give(edges.size)
    return ok and mem.ok()


def _dim0_sparse_h1[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], mut bars: Buffer[Bar], mut cols: Buffer[Entry[T]], mut reps: RepOut, mut pairs: PivotMap) -> Bool:
    """dim0 for the sparse engine when H1 is the last dimension (no triangles are assembled,
    so the full edge list is never needed): the edges in a zero-persistence apparent pair are
    dropped during the edge scan itself (most of them: 97% of 9.9 M on 200 000 uniform points
    in the unit cube at 0.05), and only the rest is sorted and goes through union-find. An
    apparent edge is paired with its triangle, so it never merges two components: union-find
    over the rest gives the same merges, and the rest that merges nothing are the H1 columns,
    in the same order. Stats as dim0's, except that dim 1's assembly time is the edge scan
    with its apparent-pair tests and dim 0's the sort and union-find."""
    var t0 = perf_counter_ns()
    var mem = filt.mem
    var edges = Buffer[Entry[T]].make(mem)  # the edges in no apparent pair, index order
    var counts = SIMD[DType.int64, 2](0)  # edges <= threshold, apparent ones
    var ok = _nonapparent_edges(filt, edges, counts)
    var t1 = perf_counter_ns()
    filt.stat(0, STAT_SIMPLICES, Int(counts[0]))
    filt.stat(1, STAT_SIMPLICES, Int(counts[0]))
    filt.stat(1, STAT_APPARENT, Int(counts[1]))
    filt.stat(1, STAT_ASSEMBLE_NS, Int(t1 - t0))
    ok = ok and radix_sort_columns(edges, mem)  # index order in: a stable sort suffices
    ok = ok and mem.take(2 * filt.n * 8 + edges.size)  # parent, largest, merged
    if not ok:
        edges.free(mem)
        return False
    var merged = OwnedArray[UInt8](edges.size)  # 1 where the edge merged two components
    ok = _union_find(filt, edges, merged, bars, reps, pairs)
    for e in range(edges.size):
        if ok and merged[e] == 0:
            ok = cols.push(edges[e], mem)
    mem.give(edges.size)
    _ = merged^  # freed here, after the last read
    edges.free(mem)
    filt.stat(0, STAT_ASSEMBLE_NS, Int(perf_counter_ns() - t1))
    return ok and mem.ok()


def _nonapparent_edges[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], mut edges: Buffer[Entry[T]], mut counts: SIMD[DType.int64, 2]) -> Bool:
    """SPARSE: append the edges (i > j, d(i, j) <= threshold) that are not the facet of a
    zero-persistence apparent pair to edges, in index order; counts += (edges, apparent
    ones). Rows are scanned in chunks of about equal numbers of edges (area_row: row i has
    about i / n of its neighbours below i when labels are random; chunks are claimed
    dynamically anyway), and each row's own neighbour list stays in cache across its edges'
    apparent-pair tests."""
    var n = filt.n
    var mem = filt.mem
    var nch = n_chunks(filt.indptr[unsafe_offset=n] // 2, filt.threads, EDGE_COLUMN_GRAIN)
    var chunks = ChunkBuffers[T](nch, mem)
    var chunk_counts = OwnedArray[Int](2 * nch, 0)
    mem.ctl.start_stage(0, n)  # progress (stage 0: the edges): rows scanned

    @always_inline
    def task(c: Int) {imm}:
        var r0 = area_row(c, nch, n)
        var r1 = area_row(c + 1, nch, n)
        var scratch = Scratch()
        var vs = scratch.simplex()
        var b = chunks[c]
        var thr = filt.threshold
        var total = 0
        var apparent = 0
        for i in range(r0, r1):
            var base = i * (i - 1) // 2
            vs[unsafe_offset=0] = i
            for q in range(filt.indptr[unsafe_offset=i], filt.indptr[unsafe_offset=i + 1]):
                var j = Int(filt.nbr[unsafe_offset=q])
                if j >= i:
                    break
                var dij = filt.dist[unsafe_offset=q]
                if dij > thr:
                    continue
                total += 1
                vs[unsafe_offset=1] = j
                if filt.apparent_cofacet(vs, 2, dij) >= 0:
                    apparent += 1
                elif not b.push(Entry[T](dij, base + j), mem):
                    chunks[c] = b  # out of budget: gather fails
                    return
        mem.ctl.add_done(r1 - r0)
        chunks[c] = b
        chunk_counts[2 * c] = total
        chunk_counts[2 * c + 1] = apparent
        _ = scratch^  # freed here: vs is a view of it

    run_chunks(task, nch, filt.threads, mem.ctl)
    for c in range(nch):
        counts[0] += Int64(chunk_counts[2 * c])
        counts[1] += Int64(chunk_counts[2 * c + 1])
    return chunks.gather(edges, mem)


def _edges_below_threshold[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], mut edges: Buffer[Entry[T]]) -> Bool:
    """Append the edges (i > j, D[i, j] <= threshold) to edges in index order; rows are split
    into chunks of about equal area (SPARSE: equal numbers of rows; the edges of row i are
    the entries j < i at the start of its neighbour list)."""
    var n = filt.n
    var mem = filt.mem
    var nch: Int
    comptime if SPARSE:
        nch = n_chunks(filt.indptr[unsafe_offset=n] // 2, filt.threads, EDGE_SCAN_GRAIN)
    else:
        nch = n_chunks(n * n // 2, filt.threads, EDGE_SCAN_GRAIN)
    var chunks = ChunkBuffers[T](nch, mem)
    mem.ctl.start_stage(0, n)  # progress (stage 0: the edges): rows scanned

    @always_inline
    def edge_task(c: Int) {imm}:
        var r0: Int
        var r1: Int
        comptime if SPARSE:
            r0 = chunk_lo(c, nch, n)
            r1 = chunk_lo(c + 1, nch, n)
        else:
            r0 = area_row(c, nch, n)
            r1 = area_row(c + 1, nch, n)
        mem.ctl.add_done(r1 - r0)
        var b = chunks[c]
        var thr = filt.threshold
        for i in range(r0, r1):
            var base = i * (i - 1) // 2
            comptime if SPARSE:
                for q in range(filt.indptr[unsafe_offset=i], filt.indptr[unsafe_offset=i + 1]):
                    var j = Int(filt.nbr[unsafe_offset=q])
                    if j >= i:
                        break
                    var dij = filt.dist[unsafe_offset=q]
                    if dij <= thr:
                        if not b.push(Entry[T](dij, base + j), mem):
                            chunks[c] = b
                            return
            else:
                var row = filt.dist.unsafe_offset(i * n)
                for j in range(i):
                    var dij = row[unsafe_offset=j]
                    if dij <= thr:
                        if not b.push(Entry[T](dij, base + j), mem):
                            chunks[c] = b
                            return
        chunks[c] = b

    run_chunks(edge_task, nch, filt.threads, mem.ctl)
    return chunks.gather(edges, mem)


def _union_find[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], edges: Buffer[Entry[T]], merged: OwnedArray[UInt8], mut bars: Buffer[Bar], mut reps: RepOut, mut pairs: PivotMap) -> Bool:
    """H0 bars by union-find from the shortest edge (the end of column order); marks the
    merging edges in merged. Roots are the smallest vertex of their component (the larger
    root dies). With representatives, the merges record (reps.mojo; room for n entries);
    with cycles, the homology pairs vertex -> edge in pairs: in the filtration's vertex
    order (larger index first) the elder rule kills the component whose largest vertex is
    smaller, and pairs that vertex with the merging edge."""
    var n = filt.n
    var mem = filt.mem
    var want = reps.cocycles() or reps.cycles()
    var ok = not want or reps.header(-1, KIND_MERGES, 2, n, mem)
    var record = reps.out.size - 1  # its entry count, written at the end
    var merges = 0
    var parent = OwnedArray[Int](n)
    var largest = OwnedArray[Int](n)  # per root, the component's largest vertex
    for i in range(n):
        parent[i] = i
        largest[i] = i
    var e = edges.size - 1
    while e >= 0:
        if e % POLL_EDGES == 0 and not mem.ok():  # cancelled
            ok = False
            break
        var ent = edges[e]
        var i = filt.max_vertex(ent.key, 2, n)
        var j = ent.key - filt.binom(i, 2)
        var a = _find(parent.data, i)
        var b = _find(parent.data, j)
        if a != b and ok:
            var lo = min(a, b)
            var hi = max(a, b)
            parent[hi] = lo
            merged[e] = 1
            if reps.cycles():
                pairs.insert(min(largest[a], largest[b]), ent.key)
                largest[lo] = max(largest[a], largest[b])
            var bar = -1
            if ent.diam > 0:
                bar = bars.size
                ok = bars.push(Bar(0, 0.0, Float64(ent.diam), hi, lo), mem)
            if want:
                _put_merge(reps, hi, lo, bar)
                merges += 1
        elif a == b:
            merged[e] = 0
        e -= 1
    for i in range(n):
        if ok and _find(parent.data, i) == i:
            if want:
                _put_merge(reps, i, -1, bars.size)
                merges += 1
            ok = bars.push(Bar(0, 0.0, -1.0, i, -1), mem)
    if want and record >= 0:
        reps.out.data[unsafe_offset=record] = merges
        reps.out.size = record + 1 + 3 * merges
    _ = parent^  # freed here, after the last _find on its data
    _ = largest^
    mem.give(2 * n * 8)
    return ok


@always_inline
def _put_merge(mut reps: RepOut, dying: Int, surviving: Int, bar: Int):
    reps.put(dying)
    reps.put(surviving)
    reps.put(bar)


@always_inline
def _find(parent: IntPtr, x0: Int) -> Int:
    var x = x0
    while parent[unsafe_offset=x] != x:
        var g = parent[unsafe_offset=parent[unsafe_offset=x]]
        parent[unsafe_offset=x] = g
        x = g
    return x


def _edge_columns[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], edges: Buffer[Entry[T]], merged: OwnedArray[UInt8], mut cols: Buffer[Entry[T]]) -> Bool:
    """H1 columns: edges that merged nothing and are not the facet of an apparent pair."""
    var mem = filt.mem
    var m = edges.size
    var nch = n_chunks(m, filt.threads, EDGE_COLUMN_GRAIN)
    var chunks = ChunkBuffers[T](nch, mem)
    var apparent_per_chunk = OwnedArray[Int](nch, 0)

    @always_inline
    def task(c: Int) {imm}:
        var scratch = Scratch()
        var b = chunks[c]
        var apparent = 0
        for e in range(chunk_lo(c, nch, m), chunk_lo(c + 1, nch, m)):
            if merged[e] != 0:
                continue
            var ent = edges[e]
            filt.decode(ent.key, 2, scratch.simplex())
            if filt.apparent_cofacet(scratch.simplex(), 2, ent.diam) >= 0:
                apparent += 1
                continue
            if not b.push(ent, mem):
                break
        chunks[c] = b
        apparent_per_chunk[c] = apparent

    run_chunks(task, nch, filt.threads, filt.mem.ctl)
    var apparent = 0
    for c in range(nch):
        apparent += apparent_per_chunk[c]
    var ok = chunks.gather(cols, mem)
    filt.stat(1, STAT_APPARENT, apparent)
    filt.stat(1, STAT_SIMPLICES, m)
    return ok
