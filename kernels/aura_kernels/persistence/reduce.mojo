# The reduction of one dimension: the parallel emergent-pair search, then the windowed
# reduction in rounds (phase 1: parallel elimination against the known pivots; phase 2:
# sequential pairing in column order).

from std.time import perf_counter_ns
from aura_kernels.common import run_chunks, n_chunks, chunk_lo
from aura_kernels.persistence.containers import (
    IntPtr, Entry, Bar, Buffer, MemoryBudget, OwnedArray, PivotMap, Scratch, heap_push,
    PIVOT_COEF_BITS, PIVOT_COEF_MASK,
)
from aura_kernels.persistence.reps import RepOut, combine_into, write_cocycle
from aura_kernels.persistence.simplices import (
    Filtration, insert_vertex, STAT_COLUMNS, STAT_EMERGENT, STAT_REDUCED, STAT_ADDITIONS,
    STAT_PUSHES, STAT_SEARCH_NS, STAT_REDUCE_NS,
)

# Columns per chunk of the emergent-pair search. Not tuned; chosen as a few hundred
# microseconds of apparent-pair tests per chunk.
comptime EMERGENT_GRAIN = 1024
# A round's window holds up to WINDOW_HARD_PER_THREAD * threads columns that need a heap and
# at most WINDOW_MAX columns in all (one of each on a single thread). More hard columns per
# round means more collisions inside a window (columns sent back to the next round); fewer
# means more rounds, each with a thread wake-up and a barrier. Measured (2 threads, reduction
# time, median of 7, all variants alternating in one process): 4 or 16 per thread cost 11-12%
# on dragon and stay within 4% on o3_1024 and fract-r; WINDOW_MAX 128 or 2048 stays within 5%
# of 512 on all three (not sensitive).
comptime WINDOW_HARD_PER_THREAD = 8
comptime WINDOW_MAX = 512
# A reduction round runs inline for its first millisecond; whatever is left goes to all
# threads. Small rounds thus skip the thread wake-up and barrier (tens of us on an idle
# machine, up to a scheduler slice on a busy one); big ones run in parallel but for the
# columns begun inline. Not tuned beyond that argument.
comptime INLINE_NS = 1000000

# The working coboundary holds only its cofacets of diameter up to the column's band ceiling
# (_band_ceil): first 1/64 of the way from the column's diameter to the threshold, then twice
# as far per band, then all. Most cofacets of the columns a reduction adds lie past the pivot
# that ends it, so they are never pushed, and the heap stays small (its pops, each a walk
# down the heap, were most of the reduction's time on small clouds). Each new band pushes
# the next slice of every added column's coboundary again (_widen). Not tuned beyond
# measuring 1/16 and 1/4 (3 bands) against these 7 on the collection bench's clouds.
comptime BANDS = 7

# Emergent-pair candidates (emergent_cofacet[j] >= 0 is the packed key of the cofacet)
comptime NO_EMERGENT = -1  # no cofacet of equal diameter
comptime APPARENT_EMERGENT = -2  # that cofacet is the cofacet of an apparent pair

# Status of a window column (by column j at slot j % window size)
comptime ST_FAILED = -1  # memory budget exceeded
comptime ST_ZERO = 0  # the column reduced to zero: an essential class
comptime ST_PENDING = 1  # the heap's pivot is in no pivot column seen so far
comptime ST_EMERGENT = 2  # its emergent candidate was free in phase 1; phase 2 confirms
comptime ST_UNSTARTED = 3  # entered the window, not looked at yet
comptime ST_RESTART = 4  # needs a full reduction (its emergent candidate was taken)
comptime ST_RESUME = 5  # its pivot was taken in phase 2: reduce further


struct ReductionWindow[T: DType](Movable):
    """The columns [j0, j1) of a round: per slot (column j at j % size) its status, heap and
    V column; the phase-1 work list and its per-item counters (additions, pushes). Sized
    for at most the dimension's columns."""

    var size: Int
    var max_hard: Int
    var status: OwnedArray[Int]
    var levels: OwnedArray[Int]  # the band of the slot's working coboundary (_band_ceil)
    var heaps: OwnedArray[Buffer[Entry[Self.T]]]
    var works: OwnedArray[Buffer[Entry[Self.T]]]
    var todo: OwnedArray[Int]
    var item_counts: OwnedArray[Int]

    def __init__(out self, threads: Int, columns: Int):
        self.size = 1 if threads <= 1 else min(WINDOW_MAX, columns)
        self.max_hard = 1 if threads <= 1 else WINDOW_HARD_PER_THREAD * threads
        self.status = OwnedArray[Int](self.size)
        self.levels = OwnedArray[Int](self.size)
        self.heaps = OwnedArray[Buffer[Entry[Self.T]]](self.size)
        self.works = OwnedArray[Buffer[Entry[Self.T]]](self.size)
        self.todo = OwnedArray[Int](self.size)
        self.item_counts = OwnedArray[Int](2 * self.size)

    @always_inline
    def holds_heap(self, j: Int) -> Bool:
        var st = self.status[j % self.size]
        return st == ST_PENDING or st == ST_ZERO or st == ST_RESUME or st == ST_FAILED

    def free_heap(self, j: Int, mem: MemoryBudget):
        var h = self.heaps[j % self.size]
        var w = self.works[j % self.size]
        h.free(mem)
        w.free(mem)


@fieldwise_init
struct ReductionCounts(ImplicitlyCopyable):
    var emergent: Int
    var reduced: Int
    var additions: Int
    var pushes: Int


@fieldwise_init
struct VColumns[T: DType](ImplicitlyCopyable):
    """The stored V columns: column j's entries are store[start[j] : start[j + 1]]."""

    var store: Buffer[Entry[Self.T]]
    var start: IntPtr


def reduce[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], dim: Int, cols: Buffer[Entry[T]], mut pivots: PivotMap, mut bars: Buffer[Bar], mut reps: RepOut) -> Bool:
    """Persistent cohomology of dimension dim (columns: dim-simplices, in column order); with
    reps.cocycles() the cocycle record of each bar."""
    var t0 = perf_counter_ns()
    var mem = filt.mem
    var m = cols.size
    filt.stat(dim, STAT_COLUMNS, m)
    if m == 0:
        return True
    if not mem.take(m * 8):
        return False
    var emergent_cofacet = OwnedArray[Int](m)
    _emergent_candidates(filt, dim + 1, cols, emergent_cofacet)
    if not mem.ok():  # cancelled: chunks were skipped, so some candidates were never written
        mem.give(m * 8)
        return False
    var t1 = perf_counter_ns()
    filt.stat(dim, STAT_SEARCH_NS, Int(t1 - t0))
    var counts = ReductionCounts(0, 0, 0, 0)
    var ok = _reduce_columns(filt, dim, cols, emergent_cofacet, pivots, bars, reps, counts)
    mem.give(2 * (m + 1) * 8)  # emergent_cofacet and the V column starts
    filt.stat(dim, STAT_EMERGENT, counts.emergent)
    filt.stat(dim, STAT_REDUCED, counts.reduced)
    filt.stat(dim, STAT_ADDITIONS, counts.additions)
    filt.stat(dim, STAT_PUSHES, counts.pushes)
    filt.stat(dim, STAT_REDUCE_NS, Int(perf_counter_ns() - t1))
    return ok and mem.ok()


def _emergent_candidates[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], nv: Int, cols: Buffer[Entry[T]], emergent_cofacet: OwnedArray[Int]):
    """In parallel, each column's emergent-pair candidate: its largest-index equal-diameter
    cofacet (packed key with the coboundary coefficient) if that is not itself the cofacet of
    an apparent pair (APPARENT_EMERGENT), NO_EMERGENT if there is none."""
    var m = cols.size
    var nch = n_chunks(m, filt.threads, EMERGENT_GRAIN)

    @always_inline
    def task(c: Int) {imm}:
        var scratch = Scratch()
        var vs = scratch.simplex()
        var cofacet = scratch.cofacet()
        for j in range(chunk_lo(c, nch, m), chunk_lo(c + 1, nch, m)):
            var s = cols[j]
            filt.decode(s.key, nv, vs)
            var v = filt.zero_cofacet(vs, nv, s.diam)
            if v < 0:
                emergent_cofacet[j] = NO_EMERGENT
                continue
            var p = insert_vertex(vs, nv, v, cofacet)
            if filt.apparent_facet(cofacet, nv + 1, s.diam, scratch.facet()) >= 0:
                emergent_cofacet[j] = APPARENT_EMERGENT
                continue
            var coef = 1 if ((nv - p) & 1) == 0 else filt.neg(1)
            emergent_cofacet[j] = filt.pack(filt.index_from(cofacet, nv + 1), coef)
        _ = scratch^  # freed here: vs and cofacet are views of it

    run_chunks(task, nch, filt.threads, filt.mem.ctl)


def _reduce_columns[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], dim: Int, cols: Buffer[Entry[T]], emergent_cofacet: OwnedArray[Int], mut pivots: PivotMap, mut bars: Buffer[Bar], mut reps: RepOut, mut counts: ReductionCounts) -> Bool:
    """The reduction, in rounds over a window of columns [j0, j1). Phase 1 (parallel): every
    window column that needs work is reduced against the pivot map as it stands (frozen
    meanwhile) until its pivot is in no known column, or it is zero; its heap is kept.
    Phase 2 (sequential, column order): columns are paired, and their pivots entered, from
    j0 on, until one whose pivot has meanwhile been taken by a column paired in this phase
    (or whose emergent candidate has): it goes back to phase 1 in the next round, now
    against every column before it, so that round finishes it. Each column is thus reduced
    against exactly the columns to its left, as in the sequential algorithm, and all the
    heavy work happens in phase 1."""
    var mem = filt.mem
    var m = cols.size
    var store = Buffer[Entry[T]].make(mem)
    var ok = mem.take((m + 1) * 8)
    var v_column_start = OwnedArray[Int](m + 1)
    v_column_start[0] = 0
    var window = ReductionWindow[T](filt.threads, m)
    var j0 = 0
    var j1 = 0
    mem.ctl.start_stage(2 * dim + 1, m)  # progress (stage 2 dim + 1: reducing dim): columns done
    while ok and j0 < m:
        j1 = _fill_window(window, emergent_cofacet, j0, j1, m)
        var ntodo = 0
        for j in range(j0, j1):
            var st = window.status[j % window.size]
            if st == ST_UNSTARTED or st == ST_RESTART or st == ST_RESUME:
                window.todo[ntodo] = j
                ntodo += 1
        # phase 1 reads only V columns that exist now
        _phase1(filt, dim + 1, window, ntodo, cols, emergent_cofacet, pivots, VColumns[T](store, v_column_start.data))
        if not mem.ok():  # cancelled: phase 1 skipped work items, phase 2 must not read them
            ok = False
            break
        for i in range(ntodo):
            counts.additions += window.item_counts[2 * i]
            counts.pushes += window.item_counts[2 * i + 1]
        var j_old = j0
        j0 = _phase2(filt, dim, window, j0, j1, cols, emergent_cofacet, pivots, bars, store, v_column_start, reps, counts, ok)
        mem.ctl.add_done(j0 - j_old)
        ok = ok and mem.ok()  # false once cancelled
    # on failure, free the heaps still held by window columns
    for j in range(j0, j1):
        if window.holds_heap(j):
            window.free_heap(j, mem)
    store.free(mem)
    return ok


def _fill_window[T: DType](window: ReductionWindow[T], emergent_cofacet: OwnedArray[Int], j0: Int, j1_old: Int, m: Int) -> Int:
    """Extend the window [j0, j1_old) with unstarted columns while it holds fewer than
    max_hard columns that need a heap and fewer than size in all; returns its new end."""
    var hard = 0
    for j in range(j0, j1_old):
        var st = window.status[j % window.size]
        if st != ST_EMERGENT and not (st == ST_UNSTARTED and emergent_cofacet[j] >= 0):
            hard += 1
    var j1 = j1_old
    while j1 < m and j1 - j0 < window.size and hard < window.max_hard:
        window.status[j1 % window.size] = ST_UNSTARTED
        if emergent_cofacet[j1] < 0:
            hard += 1
        j1 += 1
    return j1


def _phase1[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], nv: Int, window: ReductionWindow[T], ntodo: Int, cols: Buffer[Entry[T]], emergent_cofacet: OwnedArray[Int], pivots: PivotMap, frozen: VColumns[T]):
    """Phase 1: the window's work list, inline for INLINE_NS, the rest on all threads."""

    @always_inline
    def item(i: Int) {imm}:
        _phase1_item(filt, nv, window, i, cols, emergent_cofacet, pivots, frozen)

    var t_start = perf_counter_ns()
    var k = 0
    while k < ntodo and Int(perf_counter_ns() - t_start) < INLINE_NS:
        item(k)
        k += 1

    @always_inline
    def rest(i: Int) {imm}:
        item(k + i)

    run_chunks(rest, ntodo - k, filt.threads, filt.mem.ctl)


def _phase1_item[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], nv: Int, window: ReductionWindow[T], i: Int, cols: Buffer[Entry[T]], emergent_cofacet: OwnedArray[Int], pivots: PivotMap, frozen: VColumns[T]):
    """Phase 1 for work item i: confirm a free emergent candidate, or start / resume the
    column's reduction against the frozen pivots; its new status goes to the window."""
    var j = window.todo[i]
    var slot = j % window.size
    var st = window.status[slot]
    var counts = SIMD[DType.int64, 2](0)
    var scratch = Scratch()
    if st == ST_UNSTARTED:
        var cand = emergent_cofacet[j]
        if cand >= 0 and not pivots.contains(filt.index_of(cand)):
            st = ST_EMERGENT  # phase 2 confirms it against the pivots of this round
        else:
            st = ST_RESTART
    if st == ST_RESTART:
        var h = Buffer[Entry[T]].make(filt.mem)
        var w = Buffer[Entry[T]].make(filt.mem)
        var level = 0
        st = _start_column(filt, nv, cols[j], level, h, w, pivots, cols, frozen, scratch, counts)
        window.heaps[slot] = h
        window.works[slot] = w
        window.levels[slot] = level
    elif st == ST_RESUME:
        var h = window.heaps[slot]
        var w = window.works[slot]
        var level = window.levels[slot]
        st = _eliminate(filt, nv, cols[j], level, h, w, pivots, cols, frozen, scratch, counts)
        window.heaps[slot] = h
        window.works[slot] = w
        window.levels[slot] = level
    window.status[slot] = st
    window.item_counts[2 * i] = Int(counts[0])
    window.item_counts[2 * i + 1] = Int(counts[1])


def _phase2[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], dim: Int, window: ReductionWindow[T], j0: Int, j1: Int, cols: Buffer[Entry[T]], emergent_cofacet: OwnedArray[Int], mut pivots: PivotMap, mut bars: Buffer[Bar], mut store: Buffer[Entry[T]], v_column_start: OwnedArray[Int], mut reps: RepOut, mut counts: ReductionCounts, mut ok: Bool) -> Int:
    """Phase 2: pair the window's columns in order from j0 until one whose pivot (or emergent
    candidate) a column paired in this phase took; returns the first column not paired.
    (Emergent pairs have zero persistence: no bar, no cocycle.)"""
    var mem = filt.mem
    var j = j0
    while j < j1:
        var slot = j % window.size
        var st = window.status[slot]
        var s = cols[j]
        if st == ST_EMERGENT:
            var cand = emergent_cofacet[j]
            if pivots.contains(filt.index_of(cand)):
                window.status[slot] = ST_RESTART  # taken this round: reduce in full
                break
            pivots.insert(filt.index_of(cand), (j << PIVOT_COEF_BITS) | filt.coef_of(cand))
            counts.emergent += 1
            v_column_start[j + 1] = store.size
            j += 1
            continue
        if st == ST_FAILED:
            ok = False
            break
        var h = window.heaps[slot]
        var w = window.works[slot]
        if st == ST_PENDING:
            var piv = filt.get_pivot(h)
            if pivots.contains(filt.index_of(piv.key)):
                window.status[slot] = ST_RESUME  # taken this round: reduce further
                break
            # the pivot is in no column to the left: a persistence pair (s, piv)
            pivots.insert(filt.index_of(piv.key), (j << PIVOT_COEF_BITS) | filt.coef_of(piv.key))
            var lo = store.size
            ok = combine_into(filt, w, store) and ok
            if piv.diam > s.diam:
                if reps.cocycles():
                    ok = ok and write_cocycle(filt, reps, bars.size, dim + 1, s, store, lo, store.size)
                ok = ok and bars.push(Bar(dim, Float64(s.diam), Float64(piv.diam), s.key, filt.index_of(piv.key)), mem)
        else:  # ST_ZERO: an essential class
            if reps.cocycles():
                var chain = Buffer[Entry[T]].make(mem)
                ok = combine_into(filt, w, chain) and write_cocycle(filt, reps, bars.size, dim + 1, s, chain, 0, chain.size)
                chain.free(mem)
            ok = ok and bars.push(Bar(dim, Float64(s.diam), -1.0, s.key, -1), mem)
        counts.reduced += 1
        v_column_start[j + 1] = store.size
        h.free(mem)
        w.free(mem)
        j += 1
        if not ok:
            break
    return j


def _start_column[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], nv: Int, s: Entry[T], mut level: Int, mut h: Buffer[Entry[T]], mut w: Buffer[Entry[T]], pivots: PivotMap, cols: Buffer[Entry[T]], v_columns: VColumns[T], scratch: Scratch, mut counts: SIMD[DType.int64, 2]) -> Int:
    """Push the coboundary of column s (its band ``level``), then _eliminate."""
    filt.decode(s.key, nv, scratch.simplex())
    var np = filt.push_coboundary(h, scratch.simplex(), nv, s.diam, s.key, 1, ceil_diam=_band_ceil(filt, s, level))
    if np < 0:
        return ST_FAILED
    counts[1] += Int64(np)
    return _eliminate(filt, nv, s, level, h, w, pivots, cols, v_columns, scratch, counts)


@always_inline
def _band_ceil[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], s: Entry[T], level: Int) -> Scalar[T]:
    """The largest cofacet diameter held by column s's working coboundary at band ``level``
    (see BANDS): 2^(level + 1 - BANDS) of the way from diam s to the threshold, then all."""
    if level >= BANDS - 1:
        return Scalar[T].MAX
    return s.diam + (filt.threshold - s.diam) / Scalar[T](1 << (BANDS - 1 - level))


def _widen[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], nv: Int, s: Entry[T], mut level: Int, mut h: Buffer[Entry[T]], w: Buffer[Entry[T]], us: IntPtr) -> Int:
    """The working coboundary of column s (its V column w) into the next band: the cofacets
    of s and of every simplex of w with diameter in (its ceiling, the next], which no floor
    excludes (a floor is a pivot met at or below the ceiling). The cofacets pushed, or -1."""
    var lo = _band_ceil(filt, s, level)
    level += 1
    var hi = _band_ceil(filt, s, level)
    filt.decode(s.key, nv, us)
    var total = filt.push_coboundary(h, us, nv, s.diam, s.key, 1, lo, -1, hi)
    for q in range(w.size):
        if total < 0:
            break
        var e = w[q]
        var ei = filt.index_of(e.key)
        filt.decode(ei, nv, us)
        var np = filt.push_coboundary(h, us, nv, e.diam, ei, filt.coef_of(e.key), lo, -1, hi)
        total = -1 if np < 0 else total + np
    return total


def _eliminate[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], nv: Int, s: Entry[T], mut level: Int, mut h: Buffer[Entry[T]], mut w: Buffer[Entry[T]], pivots: PivotMap, cols: Buffer[Entry[T]], v_columns: VColumns[T], scratch: Scratch, mut counts: SIMD[DType.int64, 2]) -> Int:
    """Add known pivot columns and apparent facets to the working coboundary h (V column in w)
    until it is zero (ST_ZERO) or its pivot is in no column of ``pivots`` (ST_PENDING).
    h holds the cofacets up to the ceiling of band ``level`` (_band_ceil): its top is the
    pivot unless it is empty, and then the next band is pushed (_widen) before the column
    counts as zero. counts += (additions, cofacets pushed). Reads pivots, cols and
    v_columns only."""
    var us = scratch.cofacet()
    var f = scratch.facet()
    var mem = filt.mem
    var ceil = _band_ceil(filt, s, level)
    while True:
        var piv = filt.pop_pivot(h)  # (popped: an addition cancels it; pushed back when it is kept)
        if piv.key < 0:
            if level >= BANDS - 1:
                return ST_ZERO
            var np = _widen(filt, nv, s, level, h, w, us)
            if np < 0:
                return ST_FAILED
            counts[1] += Int64(np)
            ceil = _band_ceil(filt, s, level)
            continue
        var pidx = filt.index_of(piv.key)
        var pc = filt.coef_of(piv.key)
        var hit = pivots.find(pidx)
        if hit >= 0:
            if not _add_pivot_column(filt, nv, hit, pc, piv, pidx, ceil, h, w, cols, v_columns, us, counts):
                return ST_FAILED
            continue
        filt.decode(pidx, nv + 1, us)
        var r = filt.apparent_facet(us, nv + 1, piv.diam, f)
        if r < 0:
            _ = heap_push(h, piv, mem)  # cannot grow: it was just popped
            return ST_PENDING
        if not _add_apparent_facet(filt, nv, r, f, pc, piv, pidx, ceil, h, w, counts):
            return ST_FAILED


@always_inline
def _add_pivot_column[T: DType, Z2: Bool, SPARSE: Bool](
    filt: Filtration[T, Z2, SPARSE], nv: Int, hit: Int, pc: Int, piv: Entry[T], pidx: Int, ceil: Scalar[T],
    mut h: Buffer[Entry[T]], mut w: Buffer[Entry[T]], cols: Buffer[Entry[T]], v_columns: VColumns[T], us: IntPtr,
    mut counts: SIMD[DType.int64, 2],
) -> Bool:
    """Add factor * R_jj to h and factor * (column jj + its V column) to w, where jj is the
    column of pivot piv (``hit``, from the pivot map) and factor cancels the working pivot
    (coefficient pc). False: out of budget."""
    var mem = filt.mem
    var jj = hit >> PIVOT_COEF_BITS
    var factor = 1
    comptime if not Z2:
        factor = (filt.modulus - pc * filt.inverse[unsafe_offset=hit & PIVOT_COEF_MASK] % filt.modulus) % filt.modulus
    # column jj's reduced coboundary R_jj = its coboundary + those of its V column has
    # pivot piv: every entry before piv cancels within the sum, and factor * R_jj
    # cancels the working pivot (popped with its coefficients summed by pop_pivot).
    # So only the entries after it are pushed.
    var t = cols[jj]
    filt.decode(t.key, nv, us)
    var np = filt.push_coboundary(h, us, nv, t.diam, t.key, factor, piv.diam, pidx, ceil)
    if np < 0 or not w.push(Entry[T](t.diam, filt.pack(t.key, factor)), mem):
        return False
    counts[1] += Int64(np)
    for q in range(v_columns.start[unsafe_offset=jj], v_columns.start[unsafe_offset=jj + 1]):
        var e = v_columns.store[q]
        var ce = filt.coef_of(e.key)
        comptime if not Z2:
            ce = ce * factor % filt.modulus
        var ei = filt.index_of(e.key)
        filt.decode(ei, nv, us)
        np = filt.push_coboundary(h, us, nv, e.diam, ei, ce, piv.diam, pidx, ceil)
        if np < 0 or not w.push(Entry[T](e.diam, filt.pack(ei, ce)), mem):
            return False
        counts[1] += Int64(np)
    counts[0] += 1
    return True


@always_inline
def _add_apparent_facet[T: DType, Z2: Bool, SPARSE: Bool](
    filt: Filtration[T, Z2, SPARSE], nv: Int, r: Int, f: IntPtr, pc: Int, piv: Entry[T], pidx: Int, ceil: Scalar[T],
    mut h: Buffer[Entry[T]], mut w: Buffer[Entry[T]], mut counts: SIMD[DType.int64, 2],
) -> Bool:
    """Eliminate the working pivot piv (coefficient pc) with the coboundary of its apparent
    facet f = piv - vertex r: to h, f to w. False: out of budget."""
    var fidx = filt.index_from(f, nv)
    var factor = filt.neg(pc) if ((nv - r) & 1) == 0 else pc
    # piv is the first cofacet of f in pivot order (f's zero cofacet): it cancels the
    # working pivot (popped); push the rest
    var np = filt.push_coboundary(h, f, nv, piv.diam, fidx, factor, piv.diam, pidx, ceil)
    if np < 0 or not w.push(Entry[T](piv.diam, filt.pack(fidx, factor)), filt.mem):
        return False
    counts[1] += Int64(np)
    counts[0] += 1
    return True
