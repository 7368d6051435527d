# Representatives of the bars, written as records to one int buffer for Python
# (aura_lab/persistence/result.py reads them):
#
#   [bar, kind, nv, m, then m entries of nv vertices (ascending) and a coefficient]
#
# bar: the index into the bar buffer; kind: KIND_COCYCLE, KIND_CYCLE or KIND_MERGES (bar -1:
# dimension 0's merges in union-find order, entries (dying root, surviving root or -1 for an
# essential class, bar index or -1 for a zero-length merge), from which Python builds the H0
# representatives). Coefficients follow the alternating-face orientation of simplices with
# ascending vertices (the engine's coboundary signs).
#
# * Cocycles: the V column of a bar's cohomology column (the column simplex plus the stored
#   or working column additions, apparent facets included), from reduce.mojo's pairing phase.
# * Cycles, by involuted persistent homology (Cufar & Virk, arXiv:2105.03629): with the pairs
#   known from cohomology, the boundary column of a death simplex tau is reduced in homology
#   (low = the filtration's latest entry) by adding the reduced columns R of the partners of
#   its lows, computed on demand (an explicit stack of frames) and memoized. The partner of
#   a low rho (a (q-1)-simplex) is the q-simplex it is paired with: from the pivot map of
#   dimension q-1 inverted (PairIndex), else its zero-persistence apparent cofacet. The cycle
#   of a finite bar is R_tau (its low is the bar's birth simplex); of an essential bar with
#   birth simplex sigma, the chain V_sigma (sigma plus the V columns added while the boundary
#   of sigma is reduced to zero).

from aura_kernels.persistence.containers import (
    IntPtr, Entry, Bar, Buffer, MemoryBudget, PivotMap, Scratch, heap_push, PIVOT_COEF_BITS,
)
from aura_kernels.persistence.sort import qsort
from aura_kernels.persistence.simplices import Filtration, insert_vertex
from aura_kernels.persistence.abi import KIND_COCYCLE, KIND_CYCLE, KIND_MERGES, WANT_COCYCLES, WANT_CYCLES  # (h0.mojo imports KIND_MERGES from here)

comptime POLL_FRAMES = 1024  # homology reduction steps between two polls of the cancel flag


@fieldwise_init
struct RepOut(ImplicitlyCopyable):
    """What was asked for (WANT_* flags) and the record buffer."""

    var want: Int
    var out: Buffer[Int]
    var inconsistent: Bool  # a low had no partner: the pairing and the reduction disagree

    @always_inline
    def cocycles(self) -> Bool:
        return (self.want & WANT_COCYCLES) != 0

    @always_inline
    def cycles(self) -> Bool:
        return (self.want & WANT_CYCLES) != 0

    def header(mut self, bar: Int, kind: Int, nv: Int, m: Int, mem: MemoryBudget) -> Bool:
        """Start a record of m entries of nv vertices (room for all of it is reserved)."""
        if not self.out.grow(self.out.size + 4 + m * (nv + 1), mem):
            return False
        self.put(bar)
        self.put(kind)
        self.put(nv)
        self.put(m)
        return True

    @always_inline
    def put(mut self, x: Int):
        """Append to room reserved by header()."""
        self.out.data[unsafe_offset=self.out.size] = x
        self.out.size += 1


def write_record[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], mut reps: RepOut, bar: Int, kind: Int, nv: Int, entries: Buffer[Entry[T]], lo: Int, hi: Int) -> Bool:
    """The record of the chain entries[lo:hi] (simplices of nv vertices)."""
    if not reps.header(bar, kind, nv, hi - lo, filt.mem):
        return False
    var scratch = Scratch()
    var vs = scratch.simplex()
    for i in range(lo, hi):
        var e = entries[i]
        filt.decode(filt.index_of(e.key), nv, vs)
        for q in range(nv):
            reps.put(vs[unsafe_offset=nv - 1 - q])
        reps.put(filt.coef_of(e.key))
    _ = scratch^
    return True


def combine_into[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], mut work: Buffer[Entry[T]], mut dst: Buffer[Entry[T]]) -> Bool:
    """Append the chain in work (sorted here by key) to dst with equal simplices combined
    (zeros dropped)."""
    var n = work.size
    if n == 0:
        return True
    qsort[T, True](work.data, 0, n)
    var i = 0
    while i < n:
        var e = work[i]
        var idx = filt.index_of(e.key)
        var c = filt.coef_of(e.key)
        var k = i + 1
        while k < n and filt.index_of(work[k].key) == idx:
            comptime if Z2:
                c ^= 1
            else:
                c = (c + filt.coef_of(work[k].key)) % filt.modulus
            k += 1
        if c != 0:
            if not dst.push(Entry[T](e.diam, filt.pack(idx, c)), filt.mem):
                return False
        i = k
    return True


def write_cocycle[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], mut reps: RepOut, bar: Int, nv: Int, s: Entry[T], v_column: Buffer[Entry[T]], lo: Int, hi: Int) -> Bool:
    """The cocycle record of bar: column simplex s plus the combined V entries v_column[lo:hi]."""
    var mem = filt.mem
    var chain = Buffer[Entry[T]].make(mem)
    var ok = chain.push(Entry[T](s.diam, filt.pack(s.key, 1)), mem)
    for i in range(lo, hi):
        ok = ok and chain.push(v_column[i], mem)
    ok = ok and write_record(filt, reps, bar, KIND_COCYCLE, nv, chain, 0, chain.size)
    chain.free(mem)
    return ok


# ------------------------------------------------------------------------ pairs

def pair_index[T: DType](cols: Buffer[Entry[T]], pivots: PivotMap, mem: MemoryBudget) -> PivotMap:
    """The pivot map of a dimension inverted: column simplex index -> pivot simplex index."""
    var inv = PivotMap.make(pivots.count, mem)
    for i in range(pivots.mask + 1):
        var k = pivots.keys[unsafe_offset=i]
        if k != -1:
            inv.insert(cols[pivots.vals[unsafe_offset=i] >> PIVOT_COEF_BITS].key, k)
    return inv


def partner[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], q: Int, inv: PivotMap, rho: Entry[T], scratch: Scratch) -> Int:
    """The q-simplex paired with the (q-1)-simplex rho: its entry in inv, else its apparent
    cofacet; -1 if none."""
    var idx = filt.index_of(rho.key)
    var t = inv.find(idx)
    if t >= 0 or q == 1:
        return t
    var vs = scratch.simplex()
    filt.decode(idx, q, vs)
    var v = filt.apparent_cofacet(vs, q, rho.diam)
    if v < 0:
        return -1
    var cf = scratch.cofacet()
    _ = insert_vertex(vs, q, v, cf)
    return filt.index_from(cf, q + 1)


# ------------------------------------------------------------------------ homology columns

@always_inline
def diameter[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], vs: IntPtr, nv: Int) -> Scalar[T]:
    var d = Scalar[T](0)
    for a in range(nv):
        for b in range(a + 1, nv):
            d = max(d, filt.d(vs[unsafe_offset=a], vs[unsafe_offset=b]))
    return d


def push_boundary[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], mut h: Buffer[Entry[T]], idx: Int, nv: Int, coef: Int, scratch: Scratch) -> Bool:
    """Push coef * (boundary of the simplex idx of nv vertices) into the homology heap h."""
    var vs = scratch.simplex()
    var f = scratch.facet()
    filt.decode(idx, nv, vs)
    for j in range(nv):  # the facet without vs[j], at ascending position nv - 1 - j
        var k = 0
        for i in range(nv):
            if i != j:
                f[unsafe_offset=k] = vs[unsafe_offset=i]
                k += 1
        var c = coef if ((nv - 1 - j) & 1) == 0 else filt.neg(coef)
        var e = Entry[T](diameter(filt, f, nv - 1), filt.pack(filt.index_from(f, nv - 1), c))
        if not heap_push[T, True](h, e, filt.mem):
            return False
    return True


@fieldwise_init
struct Frame[T: DType](ImplicitlyCopyable):
    """A homology column being reduced: the q-simplex tau, the low it stops at (its paired
    birth simplex; -1: reduce to zero), its heap and its V column (with track_v)."""

    var tau: Int
    var stop: Int
    var heap: Buffer[Entry[Self.T]]
    var v: Buffer[Entry[Self.T]]


struct Memo[T: DType](Movable):
    """Reduced columns by q-simplex: memo[tau] -> record r; its R column (low first) is
    store[at[4r] : at[4r+1]], its V column store[at[4r+2] : at[4r+3]]."""

    var index: PivotMap
    var at: Buffer[Int]
    var store: Buffer[Entry[Self.T]]

    def __init__(out self, expected: Int, mem: MemoryBudget):
        self.index = PivotMap.make(expected, mem)
        self.at = Buffer[Int].make(mem)
        self.store = Buffer[Entry[Self.T]].make(mem)

    def free(mut self, mem: MemoryBudget):
        self.index.free(mem)
        self.at.free(mem)
        self.store.free(mem)


def _finish_frame[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], mut memo: Memo[T], mut f: Frame[T], track_v: Bool) -> Int:
    """Memoize the finished frame f (its heap drained low first, its V column with tau
    itself combined) and free its buffers; the record, or -1 when out of budget."""
    var mem = filt.mem
    var r = memo.at.size // 4
    var ok = memo.at.push(memo.store.size, mem)
    while ok:
        var p = filt.pop_pivot[True](f.heap)
        if p.key < 0:
            break
        ok = memo.store.push(p, mem)
    ok = ok and memo.at.push(memo.store.size, mem) and memo.at.push(memo.store.size, mem)
    if ok and track_v:
        ok = f.v.push(Entry[T](0, filt.pack(f.tau, 1)), mem) and combine_into(filt, f.v, memo.store)
    ok = ok and memo.at.push(memo.store.size, mem)
    f.heap.free(mem)
    f.v.free(mem)
    if not ok:
        return -1
    # the table grows with the records (load <= 1/4 of its slots)
    if 4 * (memo.index.count + 1) > memo.index.mask + 1:
        var bigger = PivotMap.make(2 * (memo.index.count + 1), mem)
        for i in range(memo.index.mask + 1):
            var k = memo.index.keys[unsafe_offset=i]
            if k != -1:
                bigger.insert(k, memo.index.vals[unsafe_offset=i])
        memo.index.free(mem)
        memo.index = bigger
    memo.index.insert(f.tau, r)
    return r


def _add_reduced[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], memo: Memo[T], r: Int, c: Int, mut f: Frame[T], track_v: Bool) -> Bool:
    """Eliminate f's low (coefficient c, already popped) with record r: add factor * R_r but
    its low, and factor * V_r (which holds r's simplex) to f's V column."""
    var mem = filt.mem
    var r0 = memo.at[4 * r]
    var r1 = memo.at[4 * r + 1]
    var factor = 1
    comptime if not Z2:
        var low_c = filt.coef_of(memo.store[r0].key)
        factor = (filt.modulus - c * filt.inverse[unsafe_offset=low_c] % filt.modulus) % filt.modulus
    for i in range(r0 + 1, r1):
        var e = memo.store[i]
        var ce = filt.coef_of(e.key)
        comptime if not Z2:
            ce = ce * factor % filt.modulus
        if not heap_push[T, True](f.heap, Entry[T](e.diam, filt.pack(filt.index_of(e.key), ce)), mem):
            return False
    if track_v:
        for i in range(memo.at[4 * r + 2], memo.at[4 * r + 3]):
            var e = memo.store[i]
            var ce = filt.coef_of(e.key)
            comptime if not Z2:
                ce = ce * factor % filt.modulus
            if not f.v.push(Entry[T](e.diam, filt.pack(filt.index_of(e.key), ce)), mem):
                return False
    return True


def reduce_homology[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], q: Int, inv: PivotMap, mut memo: Memo[T], tau: Int, stop: Int, track_v: Bool, mut reps: RepOut) -> Int:
    """Reduce the boundary column of the q-simplex tau until its low is stop (or it is zero),
    reducing the partners of its lows first; the memo record of tau, -1 on failure (budget,
    cancel, or an inconsistent pairing: reps.inconsistent)."""
    var mem = filt.mem
    var found = memo.index.find(tau)
    if found >= 0:
        return found
    var scratch = Scratch()
    var stack = Buffer[Frame[T]].make(mem)
    var first = Frame[T](tau, stop, Buffer[Entry[T]].make(mem), Buffer[Entry[T]].make(mem))
    var result = -1
    var ok = push_boundary(filt, first.heap, tau, q + 1, 1, scratch) and stack.push(first, mem)
    var steps = 0
    while ok and stack.size > 0:
        steps += 1
        if steps % POLL_FRAMES == 0 and not mem.ok():
            ok = False
            break
        var f = stack[stack.size - 1]
        var piv = filt.pop_pivot[True](f.heap)
        if piv.key < 0 or filt.index_of(piv.key) == f.stop:
            if piv.key >= 0:
                _ = heap_push[T, True](f.heap, piv, mem)  # cannot grow: it was just popped
            stack.size -= 1
            var r = _finish_frame(filt, memo, f, track_v)
            ok = r >= 0
            if stack.size == 0:
                result = r
            continue
        var p = partner(filt, q, inv, piv, scratch)
        if p < 0:
            reps.inconsistent = True
            ok = False
        else:
            var r = memo.index.find(p)
            if r >= 0:
                ok = _add_reduced(filt, memo, r, filt.coef_of(piv.key), f, track_v)
            else:  # reduce the partner first, then come back to this low
                _ = heap_push[T, True](f.heap, piv, mem)
                var child = Frame[T](p, filt.index_of(piv.key), Buffer[Entry[T]].make(mem), Buffer[Entry[T]].make(mem))
                ok = push_boundary(filt, child.heap, p, q + 1, 1, scratch)
                stack.data[unsafe_offset=stack.size - 1] = f
                ok = ok and stack.push(child, mem)
                continue
        stack.data[unsafe_offset=stack.size - 1] = f
    for i in range(stack.size):  # on failure, the frames still held
        var f = stack[i]
        f.heap.free(mem)
        f.v.free(mem)
    stack.free(mem)
    _ = scratch^
    return result if ok else -1


def write_cycles[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], q: Int, inv: PivotMap, bars: Buffer[Bar], finite_lo: Int, finite_hi: Int, essential_lo: Int, essential_hi: Int, mut reps: RepOut) -> Bool:
    """Cycle records of the finite bars of H_{q-1} in bars[finite_lo:finite_hi] (R of their
    death q-simplex) and the essential bars of H_q in bars[essential_lo:essential_hi] (V of
    their birth q-simplex), all through one memo of reduced q-columns."""
    var mem = filt.mem
    var track_v = False
    for b in range(essential_lo, essential_hi):
        if bars[b].death_simplex < 0:
            track_v = True
    var memo = Memo[T](64, mem)
    var ok = True
    for b in range(finite_lo, finite_hi):
        var bar = bars[b]
        if bar.death_simplex < 0:
            continue
        var r = reduce_homology(filt, q, inv, memo, bar.death_simplex, bar.birth_simplex, track_v, reps)
        ok = r >= 0 and write_record(filt, reps, b, KIND_CYCLE, q, memo.store, memo.at[4 * r], memo.at[4 * r + 1])
        if not ok:
            break
    for b in range(essential_lo, essential_hi):
        var bar = bars[b]
        if not ok or bar.death_simplex >= 0:
            continue
        var r = reduce_homology(filt, q, inv, memo, bar.birth_simplex, -1, True, reps)
        ok = r >= 0 and write_record(filt, reps, b, KIND_CYCLE, q + 1, memo.store, memo.at[4 * r + 2], memo.at[4 * r + 3])
    memo.free(mem)
    return ok and mem.ok()
