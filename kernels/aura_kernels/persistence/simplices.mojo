# Simplices of the Rips filtration: the binomial table (combinatorial number system), the
# Filtration struct (decode / encode, coefficients, the distance lookup and the cofacet sweeps,
# the apparent- and emergent-pair predicates, coboundary enumeration into the heap).
#
# Two graph layouts, chosen at compile time by Filtration's SPARSE parameter:
# * dense: the full (n, n) matrix; the cofacets s + v of a simplex s are found by SIMD scans
#   over the rows of s's vertices (Rows, last_at_most), all n candidates v at once.
# * SPARSE: the radius graph in CSR form (neighbours ascending per vertex, both directions,
#   no self loops, every stored distance <= threshold); the cofacets of s are the common
#   neighbours of its vertices, walked downwards by intersecting their neighbour lists
#   (sweep_start / sweep_next, Ripser's sparse coboundary enumerator): the cost is the
#   degree, not n. A distance d(i, j) is a binary search in i's list (+inf off the graph).
# Everything above this file (assemble, reduce, reps) goes through the same predicates.

from std.sys import simd_width_of
from std.math import iota, sqrt
from std.memory import stack_allocation
from aura_kernels.persistence.containers import (
    IntPtr, Entry, Buffer, MemoryBudget, OwnedArray, heap_push, heap_pop, SCRATCH,
)
from aura_kernels.persistence.abi import (
    STAT_WORDS, STAT_SIMPLICES, STAT_COLUMNS, STAT_APPARENT, STAT_CLEARED, STAT_EMERGENT, STAT_REDUCED, STAT_ADDITIONS,
    STAT_PUSHES, STAT_ASSEMBLE_NS, STAT_SEARCH_NS, STAT_REDUCE_NS,
)

# The per-dimension counters stats[dim * NSTATS + STAT_*] (declared in aura_lab/persistence/problem.py,
# STAT; assemble, h0 and reduce import the STAT_* slots from here).
comptime NSTATS = STAT_WORDS

# Kinds of Rows: which distance rows give the diameters of the cofacets s + v
comptime VERTEX_ROWS = 0  # the rows of D of s's vertices, max over them
comptime ONE_ROW = 1  # one precomputed row (a row max of s)
comptime TWO_ROWS = 2  # the max of two rows (a row max of s and the row of a vertex)


struct SimplexTables(Movable):
    """Owns the binomial table binom[k * (n + 1) + v] = C(v, k), k <= kmax, and the
    multiplicative inverses mod the modulus."""

    var binom: OwnedArray[Int]
    var inverse: OwnedArray[Int]

    def __init__(out self, n: Int, kmax: Int, modulus: Int):
        var stride = n + 1
        self.binom = OwnedArray[Int]((kmax + 1) * stride)
        for k in range(kmax + 1):
            for v in range(stride):
                var val = 0
                if k == 0:
                    val = 1
                elif v > 0:
                    val = self.binom[(k - 1) * stride + v - 1] + self.binom[k * stride + v - 1]
                self.binom[k * stride + v] = val
        self.inverse = OwnedArray[Int](modulus)
        self.inverse[0] = 0
        if modulus > 1:
            self.inverse[1] = 1
        for a in range(2, modulus):
            self.inverse[a] = (modulus - (modulus // a) * self.inverse[modulus % a] % modulus) % modulus


@fieldwise_init
struct Rows[T: DType, KIND: Int](ImplicitlyCopyable):
    """A set of distance rows whose elementwise max at x is the diameter of s + x (up to
    diam s): the rows of D of the vertices vs (VERTEX_ROWS), or the precomputed rows r0
    (ONE_ROW) or r0 and r1 (TWO_ROWS)."""

    var r0: Pointer[Scalar[Self.T], MutUntrackedOrigin]  # VERTEX_ROWS: the (n, n) matrix
    var r1: Pointer[Scalar[Self.T], MutUntrackedOrigin]
    var vs: IntPtr
    var nv: Int
    var stride: Int

    @always_inline
    def max_at[w: Int](self, x: Int) -> SIMD[Self.T, w]:
        """The row max at x, ..., x + w - 1."""
        comptime if Self.KIND == VERTEX_ROWS:
            var mx = self.r0.unsafe_load[width=w](self.vs[unsafe_offset=0] * self.stride + x)
            for i in range(1, self.nv):
                mx = max(mx, self.r0.unsafe_load[width=w](self.vs[unsafe_offset=i] * self.stride + x))
            return mx
        else:
            var mx = self.r0.unsafe_load[width=w](x)
            comptime if Self.KIND == TWO_ROWS:
                mx = max(mx, self.r1.unsafe_load[width=w](x))
            return mx


# (Pointer is non-nullable: the vertex list of ONE_ROW / TWO_ROWS, never read, is the
# simplex's own.)

@always_inline
def one_row[T: DType](r0: Pointer[Scalar[T], MutUntrackedOrigin], vs: IntPtr) -> Rows[T, ONE_ROW]:
    return Rows[T, ONE_ROW](r0, r0, vs, 0, 0)


@always_inline
def two_rows[T: DType](r0: Pointer[Scalar[T], MutUntrackedOrigin], r1: Pointer[Scalar[T], MutUntrackedOrigin], vs: IntPtr) -> Rows[T, TWO_ROWS]:
    return Rows[T, TWO_ROWS](r0, r1, vs, 0, 0)


@always_inline
def last_at_most[T: DType, KIND: Int](rows: Rows[T, KIND], lo: Int, hi: Int, bound: Scalar[T]) -> Int:
    """The largest v in (lo, hi) with rows.max_at(v) <= bound, else -1."""
    comptime W = simd_width_of[T]()
    var top = hi
    while top - 2 * W > lo:  # two vectors per step, one test
        var base = top - 2 * W
        var mx = rows.max_at[2 * W](base)
        var upper = mx.slice[W, offset=W]().le(bound)
        var lower = mx.slice[W, offset=0]().le(bound)
        if (upper | lower).reduce_or():
            if upper.reduce_or():
                return base + W + last_lane(upper)
            return base + last_lane(lower)
        top = base
    while top - W > lo:
        var base = top - W
        var m = rows.max_at[W](base).le(bound)
        if m.reduce_or():
            return base + last_lane(m)
        top = base
    var v = top - 1
    while v > lo:
        if rows.max_at[1](v)[0] <= bound:
            return v
        v -= 1
    return -1


@always_inline
def last_lane[W: Int](m: SIMD[DType.bool, W]) -> Int:
    """Index of the highest true lane of a nonzero mask."""
    return Int(m.select(iota[DType.int64, W](), SIMD[DType.int64, W](-1)).reduce_max())


@always_inline
def insert_vertex(vs: IntPtr, nv: Int, v: Int, dst: IntPtr) -> Int:
    """Write vs + {v} (descending) into dst; return the position of v."""
    var j = 0
    var p = -1
    for i in range(nv):
        var w = vs[unsafe_offset=i]
        if p < 0 and v > w:
            p = j
            dst[unsafe_offset=j] = v
            j += 1
        dst[unsafe_offset=j] = w
        j += 1
    if p < 0:
        p = j
        dst[unsafe_offset=j] = v
    return p


@fieldwise_init
struct Filtration[T: DType, Z2: Bool, SPARSE: Bool](ImplicitlyCopyable):
    """Everything the enumeration needs; trivially copyable so closures can capture it. The
    tables it points to are owned by a SimplexTables that outlives it; the graph (dist, and
    with SPARSE indptr and nbr) by the caller."""

    var n: Int
    var binom_stride: Int  # n + 1
    var maxdim: Int
    var modulus: Int
    var coef_bits: Int
    var coef_mask: Int
    var dist: Pointer[Scalar[Self.T], MutUntrackedOrigin]  # dense: (n, n) row-major; SPARSE: CSR distances
    var indptr: IntPtr  # SPARSE: vertex i's neighbours are nbr[indptr[i] : indptr[i + 1]] (dense: unused)
    var nbr: Pointer[Int32, MutUntrackedOrigin]  # SPARSE: neighbour vertices, ascending per vertex (dense: unused)
    var threshold: Scalar[Self.T]
    var binom_table: IntPtr  # binom_table[k * binom_stride + v] = C(v, k), k <= maxdim + 2
    var inverse: IntPtr  # multiplicative inverses mod p
    var mem: MemoryBudget
    var threads: Int
    var stats: IntPtr

    # ---------------------------------------------------------------- keys and coefficients

    @always_inline
    def binom(self, v: Int, k: Int) -> Int:
        """C(v, k): closed forms for k <= 3 (the sparse engine's sweeps look up C(w, k) for
        scattered vertices w, and a table row of a large n misses the cache), else the table.
        Exact: Python checks that C(n, k) fits in 62 bits for every k <= maxdim + 2, so
        3 C(v, 3) < 2^64."""
        if k == 2:
            return (v * (v - 1)) >> 1
        if k == 1:
            return v
        if k == 3:
            return Int(UInt64((v * (v - 1)) >> 1) * UInt64(v - 2) // 3) if v >= 2 else 0
        return self.binom_table[unsafe_offset=k * self.binom_stride + v]

    @always_inline
    def pack(self, idx: Int, coef: Int) -> Int:
        comptime if Self.Z2:
            return idx
        else:
            return (idx << self.coef_bits) | coef

    @always_inline
    def index_of(self, key: Int) -> Int:
        comptime if Self.Z2:
            return key
        else:
            return key >> self.coef_bits

    @always_inline
    def coef_of(self, key: Int) -> Int:
        comptime if Self.Z2:
            return 1
        else:
            return key & self.coef_mask

    @always_inline
    def neg(self, c: Int) -> Int:
        comptime if Self.Z2:
            return 1
        else:
            return (self.modulus - c) % self.modulus

    @always_inline
    def d(self, i: Int, j: Int) -> Scalar[Self.T]:
        """The distance between vertices i and j (SPARSE: +inf when they are not neighbours)."""
        comptime if Self.SPARSE:
            if i == j:
                return 0
            var end = self.indptr[unsafe_offset=i + 1]
            var lo = self.indptr[unsafe_offset=i]
            var hi = end
            while lo < hi:  # the first entry >= j
                var mid = (lo + hi) >> 1
                if Int(self.nbr[unsafe_offset=mid]) < j:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < end and Int(self.nbr[unsafe_offset=lo]) == j:
                return self.dist[unsafe_offset=lo]
            return Scalar[Self.T].MAX
        else:
            return self.dist[unsafe_offset=i * self.n + j]

    @always_inline
    def stat(self, dim: Int, f: Int, v: Int):
        self.stats[unsafe_offset=dim * NSTATS + f] += v

    # ---------------------------------------------------------------- combinatorial number system

    @always_inline
    def max_vertex(self, idx: Int, k: Int, hi: Int) -> Int:
        """The largest v < hi with C(v, k) <= idx (k = 1, 2: closed forms; else a binary
        search in the table)."""
        if k == 1:
            return min(idx, hi - 1)
        if k == 2:  # v = floor((1 + sqrt(1 + 8 idx)) / 2), corrected for rounding
            var v = Int((1.0 + sqrt(1.0 + 8.0 * Float64(idx))) * 0.5)
            while v > 1 and ((v * (v - 1)) >> 1) > idx:
                v -= 1
            while ((v * (v + 1)) >> 1) <= idx:
                v += 1
            return min(v, hi - 1)
        var row = self.binom_table.unsafe_offset(k * self.binom_stride)
        var lo = k - 1
        var count = hi - lo
        while count > 1:
            var step = count >> 1
            var mid = lo + step
            if row[unsafe_offset=mid] <= idx:
                lo = mid
                count -= step
            else:
                count = step
        return lo

    @always_inline
    def decode(self, idx0: Int, nv: Int, vs: IntPtr):
        """Vertices of the simplex with index idx0 and nv vertices, descending, into vs."""
        var idx = idx0
        var hi = self.n
        for i in range(nv):
            var k = nv - i
            var v = self.max_vertex(idx, k, hi)
            vs[unsafe_offset=i] = v
            idx -= self.binom(v, k)
            hi = v

    @always_inline
    def index_from(self, vs: IntPtr, nv: Int) -> Int:
        var idx = 0
        for i in range(nv):
            idx += self.binom(vs[unsafe_offset=i], nv - i)
        return idx

    # ---------------------------------------------------------------- sparse: common-neighbour sweeps

    @always_inline
    def sweep_start(self, vs: IntPtr, nv: Int, pos: IntPtr):
        """SPARSE: start a downward sweep over the common neighbours of vs (nv >= 1 vertices):
        pos[i] = the last entry of vs[i]'s neighbour list."""
        for i in range(nv):
            pos[unsafe_offset=i] = self.indptr[unsafe_offset=vs[unsafe_offset=i] + 1] - 1

    @always_inline
    def sweep_next(self, vs: IntPtr, nv: Int, pos: IntPtr, mut w: Int, mut dw: Scalar[Self.T]) -> Bool:
        """SPARSE: the next (smaller) common neighbour w of vs and dw = max_i d(vs[i], w), the
        diameter of s + w up to diam s; False when there is none left. The candidate walks
        down vs[0]'s list; every other list is advanced past the entries above it, and a list
        that holds a smaller entry instead lets vs[0]'s list skip down to that entry."""
        var lo0 = self.indptr[unsafe_offset=vs[unsafe_offset=0]]
        var p0 = pos[unsafe_offset=0]
        while p0 >= lo0:
            var cand = Int(self.nbr[unsafe_offset=p0])
            var dmax = self.dist[unsafe_offset=p0]
            p0 -= 1
            var cap = cand  # the next candidate is at most cap
            for i in range(1, nv):
                var lo = self.indptr[unsafe_offset=vs[unsafe_offset=i]]
                var p = pos[unsafe_offset=i]
                while p >= lo and Int(self.nbr[unsafe_offset=p]) > cand:
                    p -= 1
                pos[unsafe_offset=i] = p
                if p < lo:  # vs[i] has no neighbour <= cand: the sweep is over
                    pos[unsafe_offset=0] = lo0 - 1
                    return False
                var u = Int(self.nbr[unsafe_offset=p])
                if u != cand:
                    cap = u
                    break
                dmax = max(dmax, self.dist[unsafe_offset=p])
            if cap == cand:
                pos[unsafe_offset=0] = p0
                w = cand
                dw = dmax
                return True
            while p0 >= lo0 and Int(self.nbr[unsafe_offset=p0]) > cap:
                p0 -= 1
        pos[unsafe_offset=0] = p0
        return False

    def max_degree(self) -> Int:
        """SPARSE: the largest number of neighbours of a vertex."""
        var best = 0
        for i in range(self.n):
            best = max(best, self.indptr[unsafe_offset=i + 1] - self.indptr[unsafe_offset=i])
        return best

    def last_common_neighbour(self, vs: IntPtr, nv: Int, above: Int, bound: Scalar[Self.T]) -> Int:
        """SPARSE: the largest common neighbour w > above of the vertices vs with
        max_i d(vs[i], w) <= bound, else -1."""
        var pos = stack_allocation[SCRATCH, Int]()
        self.sweep_start(vs, nv, pos)
        var w = -1
        var dw = Scalar[Self.T](0)
        while self.sweep_next(vs, nv, pos, w, dw):
            if w <= above:
                return -1
            if dw <= bound:
                return w
        return -1

    # ---------------------------------------------------------------- dense: row scans

    @always_inline
    def vertex_rows(self, vs: IntPtr, nv: Int) -> Rows[Self.T, VERTEX_ROWS]:
        """The rows of D of the vertices vs: their max at x is the diameter of vs + x."""
        return Rows[Self.T, VERTEX_ROWS](self.dist, self.dist, vs, nv, self.n)

    @always_inline
    def last_free_vertex[KIND: Int](self, rows: Rows[Self.T, KIND], gaps: IntPtr, nv: Int, ngaps: Int, bound: Scalar[Self.T]) -> Int:
        """The largest v with rows.max_at(v) <= bound in the first ngaps of the gaps
        n > v > gaps[0], gaps[0] > v > gaps[1], ..., gaps[nv - 1] > v > -1 of the descending
        vertex list gaps (nv vertices), else -1."""
        var hi = self.n
        for i in range(ngaps):
            var lo = gaps[unsafe_offset=i] if i < nv else -1
            var v = last_at_most(rows, lo, hi, bound)
            if v >= 0:
                return v
            hi = lo
        return -1

    def write_row_max(self, vs: IntPtr, nv: Int, dst: Pointer[Scalar[Self.T], MutUntrackedOrigin]):
        """Write max_i D[vs[i], x] into dst[x] for all x < n: the diameters of s + x (up to diam s)."""
        comptime W = simd_width_of[Self.T]()
        var rows = self.vertex_rows(vs, nv)
        var base = 0
        while base + W <= self.n:
            dst.unsafe_store(base, rows.max_at[W](base))
            base += W
        while base < self.n:
            dst[unsafe_offset=base] = rows.max_at[1](base)[0]
            base += 1

    # ---------------------------------------------------------------- apparent pairs

    @always_inline
    def zero_cofacet(self, vs: IntPtr, nv: Int, dd: Scalar[Self.T]) -> Int:
        """The vertex v whose cofacet s + v is s's largest-index cofacet of equal diameter, or -1."""
        comptime if Self.SPARSE:
            return self.last_common_neighbour(vs, nv, -1, dd)
        else:
            return self.last_free_vertex(self.vertex_rows(vs, nv), vs, nv, nv + 1, dd)

    def zero_cofacet_from_row(self, row_max: Pointer[Scalar[Self.T], MutUntrackedOrigin], vs: IntPtr, nv: Int, dd: Scalar[Self.T]) -> Int:
        """zero_cofacet of s from row_max = its row max (write_row_max)."""
        return self.last_free_vertex(one_row(row_max, vs), vs, nv, nv + 1, dd)

    def apparent_cofacet_from_rows(self, row_max: Pointer[Scalar[Self.T], MutUntrackedOrigin], v: Int, tv: IntPtr, nt: Int, dd: Scalar[Self.T]) -> Int:
        """The apparent_cofacet of t = s + v (vertices tv, diameter dd) given row_max = the row
        max of s: the cofacet diameters of t are max(row_max, D[v, .]), two rows instead of nt."""
        var x = self.last_free_vertex(two_rows(row_max, self.dist.unsafe_offset(v * self.n), tv), tv, nt, nt + 1, dd)
        if x < 0:
            return -1
        return x if self.is_zero_facet(tv, nt, x, dd) else -1

    @always_inline
    def zero_facet_pos(self, us: IntPtr, nu: Int, dd: Scalar[Self.T]) -> Int:
        """Position r of the vertex whose removal gives t's smallest-index facet of equal
        diameter dd = diam(t) (facet indices grow as the removed vertex gets smaller), or -1:
        the first r that some edge of length dd (a "max pair") avoids."""
        for a in range(1, nu):  # a max pair avoiding us[0]: r = 0 (the common case)
            var ua = us[unsafe_offset=a]
            for b in range(a + 1, nu):
                if self.d(ua, us[unsafe_offset=b]) == dd:
                    return 0
        # every max pair is (us[0], us[b])
        var u0 = us[unsafe_offset=0]
        var first = -1
        for b in range(1, nu):
            if self.d(u0, us[unsafe_offset=b]) == dd:
                if first < 0:
                    first = b
                else:
                    return 1  # two max pairs (0, first), (0, b): one of them avoids us[1]
        if first < 0:
            return -1
        if first != 1:
            return 1
        return 2 if nu > 2 else -1  # the only max pair is (us[0], us[1])

    @always_inline
    def is_zero_facet(self, tv: IntPtr, nt: Int, x: Int, dd: Scalar[Self.T]) -> Bool:
        """Whether t (vertices tv, descending; diameter dd) is the smallest-index facet of
        equal diameter of its cofacet c = t + x (diam c = dd): every edge of length dd ("max
        pair") of c must contain each vertex of c above x, so at most two lie above x."""
        var p = 0
        while p < nt and tv[unsafe_offset=p] > x:
            p += 1
        if p == 0:
            return True
        if p >= 3:
            return False
        var t0 = tv[unsafe_offset=0]
        for b in range(1, nt):
            var tb = tv[unsafe_offset=b]
            if self.d(x, tb) == dd:
                return False  # (x, tb): misses c[0] (p = 1) or is not (c[0], c[1]) (p = 2)
            if p == 2 and b >= 2 and self.d(t0, tb) == dd:
                return False  # (t0, tb), b >= 2, is not (c[0], c[1]); for p = 1 it holds c[0]
        if p == 2 and self.d(x, t0) == dd:
            return False  # (x, t0) is not (c[0], c[1])
        for a in range(1, nt):  # edges (ta, tb) with a >= 1 miss c[0]
            var ta = tv[unsafe_offset=a]
            for b in range(a + 1, nt):
                if self.d(ta, tv[unsafe_offset=b]) == dd:
                    return False
        return True

    def apparent_facet(self, us: IntPtr, nu: Int, dd: Scalar[Self.T], f: IntPtr) -> Int:
        """If t (vertices us, diameter dd) is the cofacet side of a zero-persistence apparent pair,
        the position r of the vertex whose removal gives the facet (written to f); else -1."""
        var r = self.zero_facet_pos(us, nu, dd)
        if r < 0:
            return -1
        var k = 0
        for i in range(nu):
            if i != r:
                f[unsafe_offset=k] = us[unsafe_offset=i]
                k += 1
        # t must be the facet's largest-index equal-diameter cofacet: no cofacet of f of
        # diameter dd with its new vertex above us[r]
        comptime if Self.SPARSE:
            if self.last_common_neighbour(f, nu - 1, us[unsafe_offset=r], dd) >= 0:
                return -1
        else:
            if self.last_free_vertex(self.vertex_rows(f, nu - 1), us, nu, r + 1, dd) >= 0:
                return -1
        return r

    def apparent_cofacet(self, vs: IntPtr, nv: Int, dd: Scalar[Self.T]) -> Int:
        """If s (vertices vs, diameter dd) is the facet side of a zero-persistence apparent pair,
        the vertex v with s + v its cofacet; else -1."""
        var v = self.zero_cofacet(vs, nv, dd)
        if v < 0:
            return -1
        return v if self.is_zero_facet(vs, nv, v, dd) else -1

    # ---------------------------------------------------------------- coboundaries

    def push_coboundary(self, mut h: Buffer[Entry[Self.T]], vs: IntPtr, nv: Int, ds: Scalar[Self.T], idx: Int, coef: Int, floor_diam: Scalar[Self.T] = -1, floor_idx: Int = -1, ceil_diam: Scalar[Self.T] = Scalar[Self.T].MAX) -> Int:
        """Push coef * (coboundary of s) restricted to the threshold into the heap h; returns
        the number of cofacets pushed, -1 when the memory budget ran out. As the new vertex v
        sweeps down, cofacet index = above + C(v, nv + 1 - j) + below (j: vertices above v).
        Cofacets at or before (floor_diam, floor_idx) in pivot order are not pushed (the
        reduction adds whole reduced columns, whose entries there cancel: see _eliminate;
        the default floor is below every diameter), nor those of diameter above ceil_diam
        (the reduction's diameter bands: see _eliminate)."""
        comptime if Self.SPARSE:
            return self.push_coboundary_sparse(h, vs, nv, ds, idx, coef, floor_diam, floor_idx, ceil_diam)
        if ds > ceil_diam:
            return 0
        var pushed = h.size
        comptime W = simd_width_of[Self.T]()
        var thr = min(self.threshold, ceil_diam)
        var rows = self.vertex_rows(vs, nv)
        var above = 0
        var below = idx
        var hi = self.n
        for j in range(nv + 1):
            var lo = vs[unsafe_offset=j] if j < nv else -1
            var c = coef if ((nv - j) & 1) == 0 else self.neg(coef)
            var base_key = above + below
            var brow = self.binom_table.unsafe_offset((nv + 1 - j) * self.binom_stride)
            var top = hi
            while top - W > lo:
                var base = top - W
                var mx = rows.max_at[W](base)
                var m = mx.le(thr)
                if m.reduce_or():
                    for l in range(W):
                        if m[l]:
                            var ci = base_key + brow[unsafe_offset=base + l]
                            var cd = max(ds, mx[l])
                            if cd < floor_diam or (cd == floor_diam and ci >= floor_idx):
                                continue
                            var e = Entry[Self.T](cd, self.pack(ci, c))
                            if not heap_push(h, e, self.mem):
                                return -1
                top = base
            var v = top - 1
            while v > lo:
                var mx = rows.max_at[1](v)[0]
                var ci = base_key + brow[unsafe_offset=v]
                var cd = max(ds, mx)
                if mx <= thr and not (cd < floor_diam or (cd == floor_diam and ci >= floor_idx)):
                    if not heap_push(h, Entry[Self.T](cd, self.pack(ci, c)), self.mem):
                        return -1
                v -= 1
            if j < nv:
                var w = vs[unsafe_offset=j]
                above += self.binom(w, nv + 1 - j)
                below -= self.binom(w, nv - j)
                hi = w
        return h.size - pushed

    def push_coboundary_sparse(self, mut h: Buffer[Entry[Self.T]], vs: IntPtr, nv: Int, ds: Scalar[Self.T], idx: Int, coef: Int, floor_diam: Scalar[Self.T], floor_idx: Int, ceil_diam: Scalar[Self.T]) -> Int:
        """push_coboundary over the common neighbours of s's vertices (SPARSE)."""
        if ds > ceil_diam:
            return 0
        var pushed = h.size
        var thr = min(self.threshold, ceil_diam)
        var pos = stack_allocation[SCRATCH, Int]()
        self.sweep_start(vs, nv, pos)
        var above = 0
        var below = idx
        var j = 0  # vertices of s above the new vertex w
        var w = -1
        var dw = Scalar[Self.T](0)
        while self.sweep_next(vs, nv, pos, w, dw):
            while j < nv and vs[unsafe_offset=j] > w:
                var u = vs[unsafe_offset=j]
                above += self.binom(u, nv + 1 - j)
                below -= self.binom(u, nv - j)
                j += 1
            if dw <= thr:
                var cd = max(ds, dw)
                if cd < floor_diam:
                    continue
                var ci = above + self.binom(w, nv + 1 - j) + below
                if cd == floor_diam and ci >= floor_idx:
                    continue
                var c = coef if ((nv - j) & 1) == 0 else self.neg(coef)
                var e = Entry[Self.T](cd, self.pack(ci, c))
                if not heap_push(h, e, self.mem):
                    return -1
        return h.size - pushed

    @always_inline
    def pop_pivot[LOW_FIRST: Bool = False](self, mut h: Buffer[Entry[Self.T]]) -> Entry[Self.T]:
        """Pop the pivot with its coefficients summed; key -1 when the column is zero. With
        LOW_FIRST (a homology column's heap) the pivot is the low: the filtration's latest."""
        comptime if Self.Z2:
            while h.size > 0:
                var p = heap_pop[Self.T, LOW_FIRST](h)
                if h.size == 0 or h.data[unsafe_offset=0].key != p.key:
                    return p
                _ = heap_pop[Self.T, LOW_FIRST](h)
        else:
            while h.size > 0:
                var p = heap_pop[Self.T, LOW_FIRST](h)
                var idx = self.index_of(p.key)
                var c = self.coef_of(p.key)
                while h.size > 0 and self.index_of(h.data[unsafe_offset=0].key) == idx:
                    c = (c + self.coef_of(heap_pop[Self.T, LOW_FIRST](h).key)) % self.modulus
                if c != 0:
                    return Entry[Self.T](p.diam, self.pack(idx, c))
        return Entry[Self.T](0, -1)

    @always_inline
    def get_pivot(self, mut h: Buffer[Entry[Self.T]]) -> Entry[Self.T]:
        var p = self.pop_pivot(h)
        if p.key >= 0:
            _ = heap_push(h, p, self.mem)  # cannot grow: one entry was just popped
        return p
