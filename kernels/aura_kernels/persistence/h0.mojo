# Dimension 0: the edges under the threshold, union-find for the H0 bars (with vertex birth
# times, ripser.py's elder rule), and the H1 columns (edges that merged nothing and are not
# the facet of an apparent pair).

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


@fieldwise_init
struct Births(ImplicitlyCopyable):
    """Vertex birth times (ripser.py's H0 with births): the address of n float64, 0 = all 0.
    The elder of two components is the one whose root was born first, ties to the smaller
    root (aura_lab/persistence/inputs.py's h0_with_births is the reference)."""

    var addr: Int

    @always_inline
    def at(self, v: Int) -> Float64:
        if self.addr == 0:
            return 0.0
        return Pointer[Float64, MutUntrackedOrigin](unsafe_from_address=self.addr)[unsafe_offset=v]

    @always_inline
    def elder(self, a: Int, b: Int) -> Bool:
        """Whether root a is elder than root b (a != b)."""
        var ba = self.at(a)
        var bb = self.at(b)
        return ba < bb or (ba == bb and a < b)


def dim0[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], births: Births, mut bars: Buffer[Bar], mut edges: Buffer[Entry[T]], mut cols: Buffer[Entry[T]], mut reps: RepOut, mut pairs: PivotMap) -> Bool:
    """H0 bars by union-find; all edges <= threshold (column order) and the H1 columns. With
    representatives, the merges record; with cycles, pairs: vertex -> the edge it is paired
    with in homology (for the cycles of essential H1 bars)."""
    if filt.maxdim == 1:
        return _dim0_h1(filt, births, bars, cols, reps, pairs)
    var t0 = perf_counter_ns()
    var mem = filt.mem
    var counts = SIMD[DType.int64, 2](0)
    if not _scan_edges[False](filt, edges, counts):
        return False
    filt.stat(0, STAT_SIMPLICES, edges.size)
    if not _sort_and_reserve(filt, edges):
        return False
    var merged = OwnedArray[UInt8](edges.size)  # 1 where the edge merged two components
    var ok = _union_find(filt, births, edges, merged, bars, reps, pairs)
    var t1 = perf_counter_ns()
    filt.stat(0, STAT_ASSEMBLE_NS, Int(t1 - t0))
    if ok and filt.maxdim >= 1:
        ok = _edge_columns[True](filt, edges, merged, cols)
        filt.stat(1, STAT_SIMPLICES, edges.size)
        filt.stat(1, STAT_ASSEMBLE_NS, Int(perf_counter_ns() - t1))
    mem.give(edges.size)
    return ok and mem.ok()


def _dim0_h1[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], births: Births, mut bars: Buffer[Bar], mut cols: Buffer[Entry[T]], mut reps: RepOut, mut pairs: PivotMap) -> Bool:
    """dim0 when H1 is the last dimension (no triangles are assembled, so the full edge list
    is never needed): the edges in a zero-persistence apparent pair are dropped during the
    edge scan itself (most of them: 97% of 9.9 M on 200 000 uniform points in the unit cube
    at 0.05, 99.8% of dragon's 1.39 M, whose list held 22 MB and its sort as much again),
    and only the rest is sorted and goes through union-find. An
    apparent edge is paired with its triangle, so it never merges two components: union-find
    over the rest gives the same merges, and the rest that merges nothing are the H1 columns,
    in the same order. Stats as dim0's, except that dim 1's assembly time is the edge scan
    with its apparent-pair tests and dim 0's the sort and union-find."""
    var t0 = perf_counter_ns()
    var mem = filt.mem
    var edges = Buffer[Entry[T]].make(mem)  # the edges in no apparent pair, index order
    var counts = SIMD[DType.int64, 2](0)  # edges <= threshold, apparent ones
    var ok = _scan_edges[True](filt, edges, counts)
    var t1 = perf_counter_ns()
    filt.stat(0, STAT_SIMPLICES, Int(counts[0]))
    filt.stat(1, STAT_SIMPLICES, Int(counts[0]))
    filt.stat(1, STAT_APPARENT, Int(counts[1]))
    filt.stat(1, STAT_ASSEMBLE_NS, Int(t1 - t0))
    if not (ok and _sort_and_reserve(filt, edges)):
        edges.free(mem)
        return False
    var merged = OwnedArray[UInt8](edges.size)  # 1 where the edge merged two components
    ok = _union_find(filt, births, edges, merged, bars, reps, pairs)
    ok = ok and _edge_columns[False](filt, edges, merged, cols)
    mem.give(edges.size)
    _ = merged^  # freed here, after the last read
    edges.free(mem)
    filt.stat(0, STAT_ASSEMBLE_NS, Int(perf_counter_ns() - t1))
    return ok and mem.ok()


def _sort_and_reserve[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], mut edges: Buffer[Entry[T]]) -> Bool:
    """Edges (index order) into column order (a stable radix sort by diameter suffices), and
    the budget of union-find (parent, largest) and of the merged flags."""
    return radix_sort_columns(edges, filt.mem) and filt.mem.take(2 * filt.n * 8 + edges.size)


def _scan_edges[DROP_APPARENT: Bool, T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], mut edges: Buffer[Entry[T]], mut counts: SIMD[DType.int64, 2]) -> Bool:
    """Append the edges (i > j, d(i, j) <= threshold) to edges in index order; counts +=
    (edges <= threshold, apparent ones). DROP_APPARENT: leave out the edges
    that are the facet of a zero-persistence apparent pair. Rows are split into chunks of
    about equal area (area_row; SPARSE: row i's edges are the entries j < i at the start of
    its neighbour list, about i / n of them when labels are random; chunks are claimed
    dynamically anyway), and each row's own neighbour list stays in cache across its
    edges' apparent-pair tests."""
    var n = filt.n
    var mem = filt.mem
    var nch: Int
    comptime if SPARSE:
        nch = n_chunks(filt.indptr[unsafe_offset=n] // 2, filt.threads, EDGE_COLUMN_GRAIN if DROP_APPARENT else EDGE_SCAN_GRAIN)
    else:
        nch = n_chunks(n * n // 2, filt.threads, EDGE_COLUMN_GRAIN if DROP_APPARENT else EDGE_SCAN_GRAIN)
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
            if not _scan_row[DROP_APPARENT](filt, i, thr, vs, b, mem, total, apparent):
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


@always_inline
def _scan_row[DROP_APPARENT: Bool, T: DType, Z2: Bool, SPARSE: Bool](
    filt: Filtration[T, Z2, SPARSE], i: Int, thr: Scalar[T], vs: IntPtr, mut b: Buffer[Entry[T]],
    mem: MemoryBudget, mut total: Int, mut apparent: Int,
) -> Bool:
    """Push row i's edges (j < i, d(i, j) <= thr) to b in index order (see _push_edge);
    False: out of budget."""
    var base = i * (i - 1) // 2
    vs[unsafe_offset=0] = i
    comptime if SPARSE:
        for q in range(filt.indptr[unsafe_offset=i], filt.indptr[unsafe_offset=i + 1]):
            var j = Int(filt.nbr[unsafe_offset=q])
            if j >= i:
                break
            var dij = filt.dist[unsafe_offset=q]
            if dij > thr:
                continue
            if not _push_edge[DROP_APPARENT](filt, vs, j, dij, base, b, mem, total, apparent):
                return False
    else:
        var row = filt.dist.unsafe_offset(i * filt.n)
        for j in range(i):
            var dij = row[unsafe_offset=j]
            if dij <= thr:
                if not _push_edge[DROP_APPARENT](filt, vs, j, dij, base, b, mem, total, apparent):
                    return False
    return True


@always_inline
def _push_edge[DROP_APPARENT: Bool, T: DType, Z2: Bool, SPARSE: Bool](
    filt: Filtration[T, Z2, SPARSE], vs: IntPtr, j: Int, dij: Scalar[T], base: Int, mut b: Buffer[Entry[T]],
    mem: MemoryBudget, mut total: Int, mut apparent: Int,
) -> Bool:
    """Count edge (vs[0], j) in total and push it to b, unless DROP_APPARENT and it is the
    facet of an apparent pair (counted in apparent instead); False: out of budget."""
    total += 1
    comptime if DROP_APPARENT:
        vs[unsafe_offset=1] = j
        if filt.apparent_cofacet(vs, 2, dij) >= 0:
            apparent += 1
            return True
    return b.push(Entry[T](dij, base + j), mem)


def _union_find[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], births: Births, edges: Buffer[Entry[T]], merged: OwnedArray[UInt8], mut bars: Buffer[Bar], mut reps: RepOut, mut pairs: PivotMap) -> Bool:
    """H0 bars by union-find from the shortest edge (the end of column order); marks the
    merging edges in merged. Each root is its component's eldest vertex (births.elder:
    without births the smallest); a merge kills the younger root, with the bar
    [its birth, d) when d > its birth, and every root left gives [its birth, inf). With
    representatives, the merges record (reps.mojo; room for n entries); with cycles, the
    homology pairs vertex -> edge in pairs: in the filtration's vertex order (larger index
    first) the elder rule kills the component whose largest vertex is smaller, and pairs
    that vertex with the merging edge."""
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
            merged[e] = 1
            ok = _kill_younger(births, a, b, ent, parent.data, largest.data, want, bars, reps, pairs, merges, mem)
        elif a == b:
            merged[e] = 0
        e -= 1
    ok = ok and _essential_bars(births, parent.data, n, want, bars, reps, merges, mem)
    if want and record >= 0:
        reps.out.data[unsafe_offset=record] = merges
        reps.out.size = record + 1 + 3 * merges
    _ = parent^  # freed here, after the last _find on its data
    _ = largest^
    mem.give(2 * n * 8)
    return ok


@always_inline
def _kill_younger[T: DType](
    births: Births, a: Int, b: Int, ent: Entry[T], parent: IntPtr, largest: IntPtr, want: Bool,
    mut bars: Buffer[Bar], mut reps: RepOut, mut pairs: PivotMap, mut merges: Int, mem: MemoryBudget,
) -> Bool:
    """Edge ent merges the components of roots a and b: the younger root dies (its bar
    [birth, d) when d > birth), with the pair and merge records asked for; False: out of
    budget."""
    var elder = a if births.elder(a, b) else b
    var younger = b if elder == a else a
    parent[unsafe_offset=younger] = elder
    if reps.cycles():
        pairs.insert(min(largest[unsafe_offset=a], largest[unsafe_offset=b]), ent.key)
        largest[unsafe_offset=elder] = max(largest[unsafe_offset=a], largest[unsafe_offset=b])
    var ok = True
    var bar = -1
    var birth = births.at(younger)
    if Float64(ent.diam) > birth:
        bar = bars.size
        ok = bars.push(Bar(0, birth, Float64(ent.diam), younger, elder), mem)
    if want:
        _put_merge(reps, younger, elder, bar)
        merges += 1
    return ok


def _essential_bars(
    births: Births, parent: IntPtr, n: Int, want: Bool, mut bars: Buffer[Bar], mut reps: RepOut,
    mut merges: Int, mem: MemoryBudget,
) -> Bool:
    """Every root left gives the bar [its birth, inf) (and a merge record without a
    survivor); False: out of budget."""
    var ok = True
    for i in range(n):
        if ok and _find(parent, i) == i:
            if want:
                _put_merge(reps, i, -1, bars.size)
                merges += 1
            ok = bars.push(Bar(0, births.at(i), -1.0, i, -1), mem)
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


def _edge_columns[TEST_APPARENT: Bool, T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], edges: Buffer[Entry[T]], merged: OwnedArray[UInt8], mut cols: Buffer[Entry[T]]) -> Bool:
    """H1 columns: the edges that merged nothing, in order, and with TEST_APPARENT are not the
    facet of an apparent pair (their count goes to dim 1's STAT_APPARENT)."""
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
            comptime if TEST_APPARENT:
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
    comptime if TEST_APPARENT:
        filt.stat(1, STAT_APPARENT, apparent)
    return chunks.gather(cols, mem)
