# Vietoris-Rips persistent homology: the ripser algorithm family, written fresh in Mojo.
#
#   rips((bits, dist_addr, n, maxdim, threshold, modulus, nthreads, budget, info_addr, stats_addr))
#   free_bars((addr,))
#
# Input: the full (n, n) symmetric distance matrix, float32 or float64, zero diagonal, validated
# by aura_lab/persistence.py (which also caps maxdim at n - 2, checks that every binomial
# coefficient C(n, k <= maxdim + 2) fits in 62 - coefficient-bits bits, and rounds the threshold
# to the matrix dtype). Output: info[0] status (0 ok, 1 memory budget exceeded), info[1] the
# address of a malloc'd float64 buffer of (dim, birth, death) triples (death -1 = infinite),
# info[2] their count, info[3] the dimension being built when the budget ran out, info[4] the
# bytes asked for then, info[5] the peak bytes the engine held; stats[dim * NSTATS + f]
# per-dimension counters (see STAT_* below).
#
# Filtration: vertices at 0, a simplex at its largest edge; ties are broken by the simplex
# index in the combinatorial number system, {v_k > ... > v_0} -> sum_i C(v_i, i + 1), larger
# index first (ripser's "reverse colexicographic" order). Cohomology is reduced in reverse
# filtration order: columns = k-simplices sorted by (diameter desc, index asc); the pivot of a
# coboundary column is its (k+1)-cofacet with the smallest (diameter, -index).
#
# * H0: edges <= threshold (generated in index order, radix-sorted by diameter, stable), then
#   union-find from the shortest; merging edges give [0, d).
# * Hk, k >= 1: columns are the k-simplices that are not pivots of dimension k-1 (clearing) and
#   not in a zero-persistence apparent pair. Each column's coboundary is enumerated on the fly
#   (cofacet index = above + C(v, j) + below as the new vertex v sweeps downwards) into a binary
#   heap; a pivot found in the pivot -> column hash map is eliminated by adding that column's
#   coboundary (V-matrix columns are stored, R is implicit); a pivot in an apparent pair is
#   eliminated by adding the coboundary of its apparent facet; otherwise it is a new pair.
#   Emergent pairs: a column whose largest-index equal-diameter cofacet is free is paired at
#   once without enumerating its coboundary.
# * Full-matrix rows make cofacet sweeps SIMD: for all candidate vertices v of a simplex s at
#   once, max_{w in s} D[w, v] is a vector max over the rows of s's vertices. The assembly
#   keeps that row max for s and tests each cofacet s + v against two rows only.
# * Both cores (chunks handed out dynamically): the edge list, the apparent-pair filters, the
#   column assembly, the emergent-pair search, and the reduction, in rounds: a parallel phase
#   reduces a window of columns against the pivots known so far, a short sequential phase pairs
#   them in column order (see reduce()).
# * Memory: every large buffer grows through a byte budget (80% of available memory); running
#   out stops the engine with status 1 instead of an out-of-memory kill.

from std.python import Python, PythonObject
from std.python.bindings import PythonModuleBuilder
from std.os import abort
from std.sys import simd_width_of, size_of
from std.math import iota
from std.time import perf_counter_ns
from std.memory.alloc import unsafe_alloc
from std.atomic import Atomic
from std.memory import bitcast
from max.algorithm import parallelize

comptime F32 = DType.float32
comptime F64 = DType.float64

comptime IntPtr = Pointer[Int, MutUntrackedOrigin]

comptime SCRATCH = 64  # vertices per scratch buffer: simplices up to dimension 62 (Python caps maxdim at 60)
comptime NSTATS = 11
comptime STAT_SIMPLICES = 0  # simplices of this dimension enumerated (edges for dim 0 and 1)
comptime STAT_COLUMNS = 1  # columns handed to the reduction
comptime STAT_APPARENT = 2  # candidates skipped: in a zero-persistence apparent pair
comptime STAT_CLEARED = 3  # candidates skipped: pivot of the previous dimension (clearing)
comptime STAT_EMERGENT = 4  # columns paired by the emergent shortcut
comptime STAT_REDUCED = 5  # columns reduced with a heap
comptime STAT_ADDITIONS = 6  # column / apparent-facet additions
comptime STAT_PUSHES = 7  # cofacets pushed into the heap
comptime STAT_ASSEMBLE_NS = 8  # edges + sort + union-find (dim 0); column assembly (dim >= 1)
comptime STAT_SEARCH_NS = 9  # parallel emergent-pair search
comptime STAT_REDUCE_NS = 10  # sequential reduction


@export
def PyInit_rips() abi("C") -> PythonObject:
    try:
        var m = PythonModuleBuilder("rips")
        m.def_function[rips](
            "rips",
            docstring="rips(args: tuple) with args = (dtype_bits, dist_addr, n, maxdim, threshold, modulus, nthreads, budget_bytes, info_addr, stats_addr)",
        )
        m.def_function[free_bars]("free_bars", docstring="free_bars((addr,)): free the bar buffer rips() returned")
        return m.finalize()
    except e:
        abort(String("error creating the aura_lab rips module:", e))


# ------------------------------------------------------------------------ small containers

@fieldwise_init
struct Entry[T: DType](ImplicitlyCopyable):
    """A simplex: its diameter and key = index (Z/2) or index << cbits | coefficient (Z/p)."""

    var diam: Scalar[Self.T]
    var key: Int


@fieldwise_init
struct Bar(ImplicitlyCopyable):
    var dim: Int
    var birth: Float64
    var death: Float64


@fieldwise_init
struct Mem(ImplicitlyCopyable):
    """Byte accounting against the budget Python passes (80% of available memory)."""

    var used: Pointer[Atomic[Int], MutUntrackedOrigin]
    var failed: Pointer[Atomic[Int], MutUntrackedOrigin]
    var peak: Pointer[Atomic[Int], MutUntrackedOrigin]
    var budget: Int

    def take(self, nbytes: Int) -> Bool:
        var now = self.used[].fetch_add(nbytes) + nbytes
        if now > self.budget:
            _ = self.used[].fetch_sub(nbytes)
            self.failed[].store(now)  # what was asked for, in total
            return False
        if now > self.peak[].load():  # racy, good enough for a statistic
            self.peak[].store(now)
        return True

    def force(self, nbytes: Int):
        var now = self.used[].fetch_add(nbytes) + nbytes
        if now > self.peak[].load():
            self.peak[].store(now)

    def give(self, nbytes: Int):
        _ = self.used[].fetch_sub(nbytes)

    def ok(self) -> Bool:
        return self.failed[].load() == 0


@fieldwise_init
struct Buf[E: ImplicitlyCopyable & Deinitable](ImplicitlyCopyable):
    """A growable array with manual lifetime (``free``) and budget-checked growth."""

    var data: Pointer[Self.E, MutUntrackedOrigin]
    var size: Int
    var cap: Int

    @staticmethod
    def make(mem: Mem) -> Self:
        mem.force(16 * size_of[Self.E]())
        return Self(unsafe_alloc[Self.E](16), 0, 16)

    def grow(mut self, want: Int, mem: Mem) -> Bool:
        if want <= self.cap:
            return True
        var nc = max(want, self.cap * 2)
        if not mem.take((nc - self.cap) * size_of[Self.E]()):
            return False
        var nd = unsafe_alloc[Self.E](nc)
        for i in range(self.size):
            nd[unsafe_offset=i] = self.data[unsafe_offset=i]
        self.data.unsafe_free()
        self.data = nd
        self.cap = nc
        return True

    @always_inline
    def push(mut self, e: Self.E, mem: Mem) -> Bool:
        if self.size == self.cap:
            if not self.grow(self.size + 1, mem):
                return False
        self.data[unsafe_offset=self.size] = e
        self.size += 1
        return True

    @always_inline
    def __getitem__(self, i: Int) -> Self.E:
        return self.data[unsafe_offset=i]

    def free(mut self, mem: Mem):
        mem.give(self.cap * size_of[Self.E]())
        self.data.unsafe_free()
        self.size = 0
        self.cap = 0


@fieldwise_init
struct PivotMap(ImplicitlyCopyable):
    """Open addressing, linear probing: pivot simplex index -> column << 16 | coefficient."""

    var keys: IntPtr
    var vals: IntPtr
    var mask: Int
    var shift: Int
    var count: Int

    @staticmethod
    def make(expected: Int, mem: Mem) -> Self:
        var cap = 64
        var bits = 6
        while cap < 4 * expected + 2:  # load <= 1/4: the many lookups that miss end fast
            cap *= 2
            bits += 1
        mem.force(2 * cap * 8)
        var keys = unsafe_alloc[Int](cap)
        for i in range(cap):
            keys[unsafe_offset=i] = -1
        return Self(keys, unsafe_alloc[Int](cap), cap - 1, 64 - bits, 0)

    @always_inline
    def slot(self, key: Int) -> Int:
        var h = (UInt64(key) * UInt64(0x9E3779B97F4A7C15)) >> UInt64(self.shift)
        var i = Int(h)
        while True:
            var k = self.keys[unsafe_offset=i]
            if k == key or k == -1:
                return i
            i = (i + 1) & self.mask

    @always_inline
    def find(self, key: Int) -> Int:
        """The stored value, or -1."""
        var i = self.slot(key)
        if self.keys[unsafe_offset=i] == key:
            return self.vals[unsafe_offset=i]
        return -1

    @always_inline
    def contains(self, key: Int) -> Bool:
        return self.keys[unsafe_offset=self.slot(key)] == key

    @always_inline
    def insert(mut self, key: Int, val: Int):
        var i = self.slot(key)
        if self.keys[unsafe_offset=i] != key:
            self.count += 1
        self.keys[unsafe_offset=i] = key
        self.vals[unsafe_offset=i] = val

    def free(mut self, mem: Mem):
        mem.give(2 * (self.mask + 1) * 8)
        self.keys.unsafe_free()
        self.vals.unsafe_free()


# ------------------------------------------------------------------------ orders and sorting

@always_inline
def col_before[T: DType](a: Entry[T], b: Entry[T]) -> Bool:
    """Column (reverse filtration) order: larger diameter first, then smaller index."""
    return a.diam > b.diam or (a.diam == b.diam and a.key < b.key)


@always_inline
def heap_before[T: DType](a: Entry[T], b: Entry[T]) -> Bool:
    """Pivot order of a coboundary: smaller diameter first, then larger index."""
    return a.diam < b.diam or (a.diam == b.diam and a.key > b.key)


@always_inline
def sort_before[T: DType, BYKEY: Bool](a: Entry[T], b: Entry[T]) -> Bool:
    comptime if BYKEY:
        return a.key < b.key
    else:
        return col_before(a, b)


def qsort[T: DType, BYKEY: Bool](p: Pointer[Entry[T], MutUntrackedOrigin], lo: Int, hi: Int):
    """Sort p[lo:hi]: Hoare quicksort with median-of-three, insertion sort below 24."""
    var l = lo
    var h = hi
    while h - l > 24:
        var m = l + (h - 1 - l) // 2
        if sort_before[T, BYKEY](p[unsafe_offset=m], p[unsafe_offset=l]):
            _swap(p, l, m)
        if sort_before[T, BYKEY](p[unsafe_offset=h - 1], p[unsafe_offset=m]):
            _swap(p, m, h - 1)
            if sort_before[T, BYKEY](p[unsafe_offset=m], p[unsafe_offset=l]):
                _swap(p, l, m)
        var piv = p[unsafe_offset=m]
        var i = l - 1
        var j = h
        while True:
            i += 1
            while sort_before[T, BYKEY](p[unsafe_offset=i], piv):
                i += 1
            j -= 1
            while sort_before[T, BYKEY](piv, p[unsafe_offset=j]):
                j -= 1
            if i >= j:
                break
            _swap(p, i, j)
        # p[l:j+1] <= piv <= p[j+1:h]; recurse into the smaller part
        if j + 1 - l < h - j - 1:
            qsort[T, BYKEY](p, l, j + 1)
            l = j + 1
        else:
            qsort[T, BYKEY](p, j + 1, h)
            h = j + 1
    for i in range(l + 1, h):
        var x = p[unsafe_offset=i]
        var j = i - 1
        while j >= l and sort_before[T, BYKEY](x, p[unsafe_offset=j]):
            p[unsafe_offset=j + 1] = p[unsafe_offset=j]
            j -= 1
        p[unsafe_offset=j + 1] = x


@always_inline
def _swap[T: DType](p: Pointer[Entry[T], MutUntrackedOrigin], i: Int, j: Int):
    var t = p[unsafe_offset=i]
    p[unsafe_offset=i] = p[unsafe_offset=j]
    p[unsafe_offset=j] = t


def sort_columns[T: DType](mut b: Buf[Entry[T]], nt: Int, mem: Mem) -> Bool:
    """Sort into column order; two halves in parallel, then one merge."""
    var n = b.size
    var p = b.data
    if nt < 2 or n < 50000:
        qsort[T, False](p, 0, n)
        return True
    var half = n // 2

    @always_inline
    def task(i: Int) {imm}:
        if i == 0:
            qsort[T, False](p, 0, half)
        else:
            qsort[T, False](p, half, n)

    parallelize(task, 2, 2)
    if not mem.take(n * size_of[Entry[T]]()):
        return False
    var dst = unsafe_alloc[Entry[T]](n)
    var i = 0
    var j = half
    var k = 0
    while i < half and j < n:
        if col_before(p[unsafe_offset=j], p[unsafe_offset=i]):
            dst[unsafe_offset=k] = p[unsafe_offset=j]
            j += 1
        else:
            dst[unsafe_offset=k] = p[unsafe_offset=i]
            i += 1
        k += 1
    while i < half:
        dst[unsafe_offset=k] = p[unsafe_offset=i]
        i += 1
        k += 1
    while j < n:
        dst[unsafe_offset=k] = p[unsafe_offset=j]
        j += 1
        k += 1
    p.unsafe_free()
    b.data = dst
    mem.give(b.cap * size_of[Entry[T]]())
    b.cap = n
    return True


def radix_sort_columns[T: DType](mut b: Buf[Entry[T]], mem: Mem) -> Bool:
    """Stable LSD radix sort by diameter, descending (11-bit digits of the IEEE bits, which
    order like the values for diameters >= 0): entries already in index order end up in
    column order."""
    comptime BITS = 32 if T == DType.float32 else 64
    comptime UT = DType.uint32 if T == DType.float32 else DType.uint64
    var n = b.size
    if n < 2:
        return True
    if not mem.take(n * size_of[Entry[T]]()):
        return False
    var src = b.data
    var dst = unsafe_alloc[Entry[T]](n)
    var count = unsafe_alloc[Int](2048)
    var shift = 0
    while shift < BITS:
        for k in range(2048):
            count[unsafe_offset=k] = 0
        for i in range(n):
            var key = ~bitcast[UT, 1](src[unsafe_offset=i].diam)
            count[unsafe_offset=Int((key >> Scalar[UT](shift)) & 2047)] += 1
        var total = 0
        for k in range(2048):
            var c = count[unsafe_offset=k]
            count[unsafe_offset=k] = total
            total += c
        for i in range(n):
            var e = src[unsafe_offset=i]
            var d = Int((~bitcast[UT, 1](e.diam) >> Scalar[UT](shift)) & 2047)
            dst[unsafe_offset=count[unsafe_offset=d]] = e
            count[unsafe_offset=d] += 1
        var t = src
        src = dst
        dst = t
        shift += 11
    count.unsafe_free()
    if src == b.data:  # an even number of passes: the result is back in the original buffer
        dst.unsafe_free()
        mem.give(n * size_of[Entry[T]]())
    else:
        dst.unsafe_free()
        mem.give(b.cap * size_of[Entry[T]]())
        b.data = src
        b.cap = n
    return True


# ------------------------------------------------------------------------ heap (4-ary)

comptime ARITY = 4  # measured (CPU time): vs binary, reduction -27% on dragon and fract-r, equal on
# sphere3 and o3_1024; 8-ary is faster still on dragon and fract-r but 20% slower on sphere3

@always_inline
def heap_push[T: DType](mut h: Buf[Entry[T]], e: Entry[T], mem: Mem) -> Bool:
    if not h.push(e, mem):
        return False
    var p = h.data
    var i = h.size - 1
    while i > 0:
        var parent = (i - 1) // ARITY
        if not heap_before(e, p[unsafe_offset=parent]):
            break
        p[unsafe_offset=i] = p[unsafe_offset=parent]
        i = parent
    p[unsafe_offset=i] = e
    return True


@always_inline
def heap_pop[T: DType](mut h: Buf[Entry[T]]) -> Entry[T]:
    var p = h.data
    var top = p[unsafe_offset=0]
    h.size -= 1
    var n = h.size
    if n == 0:
        return top
    var x = p[unsafe_offset=n]
    var i = 0
    while True:  # ARITY children side by side: fewer levels (cache misses) than a binary heap
        var c = ARITY * i + 1
        if c >= n:
            break
        var last = min(c + ARITY, n)
        var b = c
        for q in range(c + 1, last):
            if heap_before(p[unsafe_offset=q], p[unsafe_offset=b]):
                b = q
        if not heap_before(p[unsafe_offset=b], x):
            break
        p[unsafe_offset=i] = p[unsafe_offset=b]
        i = b
    p[unsafe_offset=i] = x
    return top


# ------------------------------------------------------------------------ the engine core

@fieldwise_init
struct Cx[T: DType, Z2: Bool](ImplicitlyCopyable):
    """Everything the enumeration needs; trivially copyable so closures can capture it."""

    var n: Int
    var n1: Int  # n + 1: stride of the binomial table
    var maxdim: Int
    var modulus: Int
    var cbits: Int
    var cmask: Int
    var dist: Pointer[Scalar[Self.T], MutUntrackedOrigin]  # (n, n) row-major
    var thr: Scalar[Self.T]
    var binom: IntPtr  # binom[k * n1 + v] = C(v, k), k <= maxdim + 2
    var inv: IntPtr  # multiplicative inverses mod p
    var mem: Mem
    var nt: Int
    var stats: IntPtr

    @always_inline
    def C(self, v: Int, k: Int) -> Int:
        return self.binom[unsafe_offset=k * self.n1 + v]

    @always_inline
    def pack(self, idx: Int, coef: Int) -> Int:
        comptime if Self.Z2:
            return idx
        else:
            return (idx << self.cbits) | coef

    @always_inline
    def index_of(self, key: Int) -> Int:
        comptime if Self.Z2:
            return key
        else:
            return key >> self.cbits

    @always_inline
    def coef_of(self, key: Int) -> Int:
        comptime if Self.Z2:
            return 1
        else:
            return key & self.cmask

    @always_inline
    def neg(self, c: Int) -> Int:
        comptime if Self.Z2:
            return 1
        else:
            return (self.modulus - c) % self.modulus

    @always_inline
    def d(self, i: Int, j: Int) -> Scalar[Self.T]:
        return self.dist[unsafe_offset=i * self.n + j]

    @always_inline
    def max_vertex(self, idx: Int, k: Int, hi: Int) -> Int:
        """The largest v < hi with C(v, k) <= idx."""
        var row = self.binom.unsafe_offset(k * self.n1)
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
            idx -= self.C(v, k)
            hi = v

    @always_inline
    def index_from(self, vs: IntPtr, nv: Int) -> Int:
        var idx = 0
        for i in range(nv):
            idx += self.C(vs[unsafe_offset=i], nv - i)
        return idx

    @always_inline
    def scan_first(self, vs: IntPtr, nv: Int, lo: Int, hi: Int, bound: Scalar[Self.T]) -> Int:
        """The largest v in (lo, hi) with max_i D[vs[i], v] <= bound, else -1."""
        comptime W = simd_width_of[Self.T]()
        var n = self.n
        var top = hi
        while top - 2 * W > lo:  # two vectors per step, one test
            var base = top - 2 * W
            var r = self.dist.unsafe_offset(vs[unsafe_offset=0] * n + base)
            var a = r.unsafe_load[width=W](0)
            var b = r.unsafe_load[width=W](W)
            for i in range(1, nv):
                r = self.dist.unsafe_offset(vs[unsafe_offset=i] * n + base)
                a = max(a, r.unsafe_load[width=W](0))
                b = max(b, r.unsafe_load[width=W](W))
            var mb = b.le(bound)
            if (mb | a.le(bound)).reduce_or():
                if mb.reduce_or():
                    return base + W + _last_lane(mb)
                return base + _last_lane(a.le(bound))
            top = base
        while top - W > lo:
            var base = top - W
            var mx = self.dist.unsafe_load[width=W](vs[unsafe_offset=0] * n + base)
            for i in range(1, nv):
                mx = max(mx, self.dist.unsafe_load[width=W](vs[unsafe_offset=i] * n + base))
            var m = mx.le(bound)
            if m.reduce_or():
                return base + _last_lane(m)
            top = base
        var v = top - 1
        while v > lo:
            var mx = self.d(vs[unsafe_offset=0], v)
            for i in range(1, nv):
                mx = max(mx, self.d(vs[unsafe_offset=i], v))
            if mx <= bound:
                return v
            v -= 1
        return -1

    @always_inline
    def scan_rows[TWO: Bool](self, r0: Pointer[Scalar[Self.T], MutUntrackedOrigin], r1: Pointer[Scalar[Self.T], MutUntrackedOrigin], lo: Int, hi: Int, bound: Scalar[Self.T]) -> Int:
        """The largest v in (lo, hi) with r0[v] <= bound (and r1[v] <= bound when TWO), else -1."""
        comptime W = simd_width_of[Self.T]()
        var top = hi
        while top - 2 * W > lo:  # two vectors per step, one test
            var base = top - 2 * W
            var a = r0.unsafe_load[width=W](base)
            var b = r0.unsafe_load[width=W](base + W)
            comptime if TWO:
                a = max(a, r1.unsafe_load[width=W](base))
                b = max(b, r1.unsafe_load[width=W](base + W))
            var mb = b.le(bound)
            if (mb | a.le(bound)).reduce_or():
                if mb.reduce_or():
                    return base + W + _last_lane(mb)
                return base + _last_lane(a.le(bound))
            top = base
        while top - W > lo:
            var base = top - W
            var mx = r0.unsafe_load[width=W](base)
            comptime if TWO:
                mx = max(mx, r1.unsafe_load[width=W](base))
            var m = mx.le(bound)
            if m.reduce_or():
                return base + _last_lane(m)
            top = base
        var v = top - 1
        while v > lo:
            var mx = r0[unsafe_offset=v]
            comptime if TWO:
                mx = max(mx, r1[unsafe_offset=v])
            if mx <= bound:
                return v
            v -= 1
        return -1

    def row_max(self, vs: IntPtr, nv: Int, dst: Pointer[Scalar[Self.T], MutUntrackedOrigin]):
        """Write max_i D[vs[i], x] into dst[x] for all x < n: the diameters of s + x (up to diam s)."""
        comptime W = simd_width_of[Self.T]()
        var n = self.n
        var base = 0
        while base + W <= n:
            var mx = self.dist.unsafe_load[width=W](vs[unsafe_offset=0] * n + base)
            for i in range(1, nv):
                mx = max(mx, self.dist.unsafe_load[width=W](vs[unsafe_offset=i] * n + base))
            dst.unsafe_store(base, mx)
            base += W
        while base < n:
            var mx = self.d(vs[unsafe_offset=0], base)
            for i in range(1, nv):
                mx = max(mx, self.d(vs[unsafe_offset=i], base))
            dst[unsafe_offset=base] = mx
            base += 1

    def apparent_cofacet_rows(self, ms: Pointer[Scalar[Self.T], MutUntrackedOrigin], v: Int, tv: IntPtr, nt: Int, dd: Scalar[Self.T]) -> Int:
        """The apparent_cofacet of t = s + v (vertices tv, diameter dd) given ms = row_max(s): the
        cofacet diameters of t are max(ms, D[v, .]), two rows instead of nt."""
        var rv = self.dist.unsafe_offset(v * self.n)
        var hi = self.n
        var x = -1
        for i in range(nt + 1):
            var lo = tv[unsafe_offset=i] if i < nt else -1
            x = self.scan_rows[True](ms, rv, lo, hi, dd)
            if x >= 0:
                break
            hi = lo
        if x < 0:
            return -1
        return x if self.is_zero_facet(tv, nt, x, dd) else -1

    @always_inline
    def zero_cofacet(self, vs: IntPtr, nv: Int, dd: Scalar[Self.T]) -> Int:
        """The vertex v whose cofacet s + v is s's largest-index cofacet of equal diameter, or -1."""
        var hi = self.n
        for i in range(nv + 1):
            var lo = vs[unsafe_offset=i] if i < nv else -1
            var v = self.scan_first(vs, nv, lo, hi, dd)
            if v >= 0:
                return v
            hi = lo
        return -1

    @always_inline
    def zero_facet_pos(self, us: IntPtr, nu: Int, dd: Scalar[Self.T]) -> Int:
        """Position r of the vertex whose removal gives t's smallest-index facet of equal
        diameter dd = diam(t) (facet indices grow as the removed vertex gets smaller), or -1:
        the first r that some edge of length dd (a "max pair") avoids."""
        var n = self.n
        for a in range(1, nu):  # a max pair avoiding us[0]: r = 0 (the common case)
            var ra = us[unsafe_offset=a] * n
            for b in range(a + 1, nu):
                if self.dist[unsafe_offset=ra + us[unsafe_offset=b]] == dd:
                    return 0
        # every max pair is (us[0], us[b])
        var r0 = us[unsafe_offset=0] * n
        var first = -1
        for b in range(1, nu):
            if self.dist[unsafe_offset=r0 + us[unsafe_offset=b]] == dd:
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
        var n = self.n
        var rx = x * n
        var r0 = tv[unsafe_offset=0] * n
        for b in range(1, nt):
            if self.dist[unsafe_offset=rx + tv[unsafe_offset=b]] == dd:
                return False  # (x, tb): misses c[0] (p = 1) or is not (c[0], c[1]) (p = 2)
            if p == 2 and b >= 2 and self.dist[unsafe_offset=r0 + tv[unsafe_offset=b]] == dd:
                return False  # (t0, tb), b >= 2, is not (c[0], c[1]); for p = 1 it holds c[0]
        if p == 2 and self.dist[unsafe_offset=rx + tv[unsafe_offset=0]] == dd:
            return False  # (x, t0) is not (c[0], c[1])
        for a in range(1, nt):  # edges (ta, tb) with a >= 1 miss c[0]
            var ra = tv[unsafe_offset=a] * n
            for b in range(a + 1, nt):
                if self.dist[unsafe_offset=ra + tv[unsafe_offset=b]] == dd:
                    return False
        return True

    def apparent_facet(self, us: IntPtr, nu: Int, dd: Scalar[Self.T], f: IntPtr) -> Int:
        """If t (vertices us, diameter dd) is the cofacet side of a zero-persistence apparent pair,
        the position r of the vertex whose removal gives the facet; else -1."""
        var r = self.zero_facet_pos(us, nu, dd)
        if r < 0:
            return -1
        var k = 0
        for i in range(nu):
            if i != r:
                f[unsafe_offset=k] = us[unsafe_offset=i]
                k += 1
        # t must be the facet's largest-index equal-diameter cofacet: nothing above us[r]
        var hi = self.n
        for i in range(r + 1):
            var lo = us[unsafe_offset=i]
            if self.scan_first(f, nu - 1, lo, hi, dd) >= 0:
                return -1
            hi = lo
        return r

    def apparent_cofacet(self, vs: IntPtr, nv: Int, dd: Scalar[Self.T]) -> Int:
        """If s (vertices vs, diameter dd) is the facet side of a zero-persistence apparent pair,
        the vertex v with s + v its cofacet; else -1."""
        var v = self.zero_cofacet(vs, nv, dd)
        if v < 0:
            return -1
        return v if self.is_zero_facet(vs, nv, v, dd) else -1

    @always_inline
    def cofacet_index(self, vs: IntPtr, nv: Int, idx: Int, v: Int) -> Int:
        var above = 0
        var below = idx
        var j = 0
        while j < nv and vs[unsafe_offset=j] > v:
            above += self.C(vs[unsafe_offset=j], nv + 1 - j)
            below -= self.C(vs[unsafe_offset=j], nv - j)
            j += 1
        return above + self.C(v, nv + 1 - j) + below

    def push_coboundary(self, mut h: Buf[Entry[Self.T]], vs: IntPtr, nv: Int, ds: Scalar[Self.T], idx: Int, coef: Int) -> Int:
        """Push coef * (coboundary of s) restricted to the threshold into the heap h; returns
        the number of cofacets pushed, -1 when the memory budget ran out."""
        var pushed = h.size
        comptime W = simd_width_of[Self.T]()
        var n = self.n
        var thr = self.thr
        var above = 0
        var below = idx
        var hi = n
        for j in range(nv + 1):
            var lo = vs[unsafe_offset=j] if j < nv else -1
            var c = coef if ((nv - j) & 1) == 0 else self.neg(coef)
            var base_key = above + below
            var brow = self.binom.unsafe_offset((nv + 1 - j) * self.n1)
            var top = hi
            while top - W > lo:
                var base = top - W
                var mx = self.dist.unsafe_load[width=W](vs[unsafe_offset=0] * n + base)
                for i in range(1, nv):
                    mx = max(mx, self.dist.unsafe_load[width=W](vs[unsafe_offset=i] * n + base))
                var m = mx.le(thr)
                if m.reduce_or():
                    for l in range(W):
                        if m[l]:
                            var e = Entry[Self.T](max(ds, mx[l]), self.pack(base_key + brow[unsafe_offset=base + l], c))
                            if not heap_push(h, e, self.mem):
                                return -1
                top = base
            var v = top - 1
            while v > lo:
                var mx = self.d(vs[unsafe_offset=0], v)
                for i in range(1, nv):
                    mx = max(mx, self.d(vs[unsafe_offset=i], v))
                if mx <= thr:
                    if not heap_push(h, Entry[Self.T](max(ds, mx), self.pack(base_key + brow[unsafe_offset=v], c)), self.mem):
                        return -1
                v -= 1
            if j < nv:
                var w = vs[unsafe_offset=j]
                above += self.C(w, nv + 1 - j)
                below -= self.C(w, nv - j)
                hi = w
        return h.size - pushed

    @always_inline
    def pop_pivot(self, mut h: Buf[Entry[Self.T]]) -> Entry[Self.T]:
        """Pop the pivot with its coefficients summed; key -1 when the column is zero."""
        comptime if Self.Z2:
            while h.size > 0:
                var p = heap_pop(h)
                if h.size == 0 or h.data[unsafe_offset=0].key != p.key:
                    return p
                _ = heap_pop(h)
        else:
            while h.size > 0:
                var p = heap_pop(h)
                var idx = self.index_of(p.key)
                var c = self.coef_of(p.key)
                while h.size > 0 and self.index_of(h.data[unsafe_offset=0].key) == idx:
                    c = (c + self.coef_of(heap_pop(h).key)) % self.modulus
                if c != 0:
                    return Entry[Self.T](p.diam, self.pack(idx, c))
        return Entry[Self.T](0, -1)

    @always_inline
    def get_pivot(self, mut h: Buf[Entry[Self.T]]) -> Entry[Self.T]:
        var p = self.pop_pivot(h)
        if p.key >= 0:
            _ = heap_push(h, p, self.mem)  # cannot grow: one entry was just popped
        return p

    @always_inline
    def stat(self, dim: Int, f: Int, v: Int):
        self.stats[unsafe_offset=dim * NSTATS + f] += v


@always_inline
def _last_lane[W: Int](m: SIMD[DType.bool, W]) -> Int:
    """Index of the highest true lane of a nonzero mask."""
    return Int(m.select(iota[DType.int64, W](), SIMD[DType.int64, W](-1)).reduce_max())


@always_inline
def insert_vertex(vs: IntPtr, nv: Int, v: Int, c: IntPtr) -> Int:
    """Write vs + {v} (descending) into c; return the position of v."""
    var j = 0
    var p = -1
    for i in range(nv):
        var w = vs[unsafe_offset=i]
        if p < 0 and v > w:
            p = j
            c[unsafe_offset=j] = v
            j += 1
        c[unsafe_offset=j] = w
        j += 1
    if p < 0:
        p = j
        c[unsafe_offset=j] = v
    return p


def run_chunks[F: def(Int) -> None](task: F, nch: Int, nt: Int):
    """Run task(0) ... task(nch - 1) on up to nt threads, each taking the next chunk as it gets free
    (max.algorithm.parallelize alone hands every worker one fixed contiguous range)."""
    if nt <= 1 or nch <= 1:
        for c in range(nch):
            task(c)
        return
    var counter = Atomic[Int](0)
    var next = Pointer[Atomic[Int], MutUntrackedOrigin](unsafe_from_address=Int(Pointer(to=counter)))

    @always_inline
    def worker(w: Int) {imm}:
        while True:
            var c = next[].fetch_add(1)
            if c >= nch:
                break
            task(c)

    var workers = min(nt, nch)
    parallelize(worker, workers, workers)
    _ = counter.load()  # alive until the workers are done


@always_inline
def chunk_lo(c: Int, nchunks: Int, total: Int) -> Int:
    return c * total // nchunks


def n_chunks(total: Int, nt: Int, grain: Int) -> Int:
    if nt <= 1:
        return 1
    return max(1, min(total // grain, nt * 16))


# ------------------------------------------------------------------------ dimension 0

def dim0[T: DType, Z2: Bool](cx: Cx[T, Z2], mut bars: Buf[Bar], mut edges: Buf[Entry[T]], mut cols: Buf[Entry[T]]) -> Bool:
    """H0 bars by union-find; all edges <= threshold (column order) and the H1 columns."""
    var t0 = perf_counter_ns()
    var n = cx.n
    var mem = cx.mem
    # edges, rows split into chunks of about equal area
    var nch = n_chunks(n * n // 2, cx.nt, 1 << 16)
    var parts = unsafe_alloc[Buf[Entry[T]]](nch)
    for c in range(nch):
        parts[unsafe_offset=c] = Buf[Entry[T]].make(mem)

    @always_inline
    def edge_task(c: Int) {imm}:
        var r0 = _area_row(c, nch, n)
        var r1 = _area_row(c + 1, nch, n)
        var b = parts[unsafe_offset=c]
        var thr = cx.thr
        for i in range(r0, r1):
            var base = i * (i - 1) // 2
            var row = cx.dist.unsafe_offset(i * n)
            for j in range(i):
                var dij = row[unsafe_offset=j]
                if dij <= thr:
                    if not b.push(Entry[T](dij, base + j), mem):
                        parts[unsafe_offset=c] = b
                        return
        parts[unsafe_offset=c] = b

    run_chunks(edge_task, nch, cx.nt)
    var ok = _gather(parts, nch, edges, mem)
    if not ok:
        return False
    if not radix_sort_columns(edges, mem):  # edges come in index order: a stable sort suffices
        return False
    cx.stat(0, STAT_SIMPLICES, edges.size)
    # union-find from the shortest edge (the end of column order)
    if not mem.take(n * 8 + edges.size):
        return False
    var parent = unsafe_alloc[Int](n)
    for i in range(n):
        parent[unsafe_offset=i] = i
    var merged = unsafe_alloc[UInt8](max(1, edges.size))
    var e = edges.size - 1
    while e >= 0:
        var ent = edges[e]
        var i = cx.max_vertex(ent.key, 2, n)
        var j = ent.key - cx.C(i, 2)
        var a = _find(parent, i)
        var b = _find(parent, j)
        if a != b:
            if a < b:
                parent[unsafe_offset=b] = a
            else:
                parent[unsafe_offset=a] = b
            merged[unsafe_offset=e] = 1
            if ent.diam > 0:
                if not bars.push(Bar(0, 0.0, Float64(ent.diam)), mem):
                    ok = False
        else:
            merged[unsafe_offset=e] = 0
        e -= 1
    for i in range(n):
        if _find(parent, i) == i:
            if not bars.push(Bar(0, 0.0, -1.0), mem):
                ok = False
    parent.unsafe_free()
    mem.give(n * 8)
    var t1 = perf_counter_ns()
    cx.stat(0, STAT_ASSEMBLE_NS, Int(t1 - t0))
    if ok and cx.maxdim >= 1:
        ok = _edge_columns(cx, edges, merged, cols)
        cx.stat(1, STAT_ASSEMBLE_NS, Int(perf_counter_ns() - t1))
    merged.unsafe_free()
    mem.give(edges.size)
    return ok and mem.ok()


def _area_row(c: Int, nch: Int, n: Int) -> Int:
    """Row boundary c of nch chunks splitting the lower triangle into equal areas."""
    if c >= nch:
        return n
    var f = Float64(c) / Float64(nch)
    return min(n, Int(Float64(n) * (f ** 0.5)))


@always_inline
def _find(parent: IntPtr, x0: Int) -> Int:
    var x = x0
    while parent[unsafe_offset=x] != x:
        var g = parent[unsafe_offset=parent[unsafe_offset=x]]
        parent[unsafe_offset=x] = g
        x = g
    return x


def _gather[T: DType](parts: Pointer[Buf[Entry[T]], MutUntrackedOrigin], nch: Int, mut out: Buf[Entry[T]], mem: Mem) -> Bool:
    """Concatenate the chunk buffers in order into out (freeing them)."""
    var total = 0
    for c in range(nch):
        total += parts[unsafe_offset=c].size
    var ok = mem.ok() and out.grow(out.size + total, mem)
    for c in range(nch):
        var b = parts[unsafe_offset=c]
        if ok:
            for i in range(b.size):
                out.data[unsafe_offset=out.size + i] = b.data[unsafe_offset=i]
            out.size += b.size
        b.free(mem)
    parts.unsafe_free()
    return ok


def _edge_columns[T: DType, Z2: Bool](cx: Cx[T, Z2], edges: Buf[Entry[T]], merged: Pointer[UInt8, MutUntrackedOrigin], mut cols: Buf[Entry[T]]) -> Bool:
    """H1 columns: edges that merged nothing and are not the facet of an apparent pair."""
    var mem = cx.mem
    var m = edges.size
    var nch = n_chunks(m, cx.nt, 4096)
    var parts = unsafe_alloc[Buf[Entry[T]]](nch)
    var napp = unsafe_alloc[Int](nch)
    for c in range(nch):
        parts[unsafe_offset=c] = Buf[Entry[T]].make(mem)
        napp[unsafe_offset=c] = 0

    @always_inline
    def task(c: Int) {imm}:
        var sc = unsafe_alloc[Int](4 * SCRATCH)
        var b = parts[unsafe_offset=c]
        var apparent = 0
        for e in range(chunk_lo(c, nch, m), chunk_lo(c + 1, nch, m)):
            if merged[unsafe_offset=e] != 0:
                continue
            var ent = edges[e]
            cx.decode(ent.key, 2, sc)
            if cx.apparent_cofacet(sc, 2, ent.diam) >= 0:
                apparent += 1
                continue
            if not b.push(ent, mem):
                break
        parts[unsafe_offset=c] = b
        napp[unsafe_offset=c] = apparent
        sc.unsafe_free()

    run_chunks(task, nch, cx.nt)
    var apparent = 0
    for c in range(nch):
        apparent += napp[unsafe_offset=c]
    napp.unsafe_free()
    var ok = _gather(parts, nch, cols, mem)
    cx.stat(1, STAT_APPARENT, apparent)
    cx.stat(1, STAT_SIMPLICES, m)
    return ok


# ------------------------------------------------------------------------ reduction

def reduce[T: DType, Z2: Bool](cx: Cx[T, Z2], dim: Int, cols: Buf[Entry[T]], mut pivots: PivotMap, mut bars: Buf[Bar]) -> Bool:
    """Persistent cohomology of dimension dim (columns: dim-simplices, in column order)."""
    var t0 = perf_counter_ns()
    var mem = cx.mem
    var m = cols.size
    var nv = dim + 1
    cx.stat(dim, STAT_COLUMNS, m)
    if m == 0:
        return True
    # 1. emergent-pair candidates, in parallel: the largest-index equal-diameter cofacet, if
    #    it is not itself the cofacet of an apparent pair (-1: none; -2: apparent)
    if not mem.take(m * 8):
        return False
    var emer = unsafe_alloc[Int](m)
    var nch = n_chunks(m, cx.nt, 1024)

    @always_inline
    def cand_task(c: Int) {imm}:
        var sc = unsafe_alloc[Int](4 * SCRATCH)
        var vs = sc
        var cv = sc.unsafe_offset(SCRATCH)
        var f = sc.unsafe_offset(3 * SCRATCH)
        for j in range(chunk_lo(c, nch, m), chunk_lo(c + 1, nch, m)):
            var s = cols[j]
            cx.decode(s.key, nv, vs)
            var v = cx.zero_cofacet(vs, nv, s.diam)
            if v < 0:
                emer[unsafe_offset=j] = -1
                continue
            var p = insert_vertex(vs, nv, v, cv)
            if cx.apparent_facet(cv, nv + 1, s.diam, f) >= 0:
                emer[unsafe_offset=j] = -2
                continue
            var coef = 1 if ((nv - p) & 1) == 0 else cx.neg(1)
            emer[unsafe_offset=j] = cx.pack(cx.index_from(cv, nv + 1), coef)
        sc.unsafe_free()

    run_chunks(cand_task, nch, cx.nt)

    var t1 = perf_counter_ns()
    cx.stat(dim, STAT_SEARCH_NS, Int(t1 - t0))

    # 2. the reduction, in rounds over a window of columns [j0, j1). Phase 1 (parallel): every
    #    window column that needs work is reduced against the pivot map as it stands (frozen
    #    meanwhile) until its pivot is in no known column, or it is zero; its heap is kept.
    #    Phase 2 (sequential, column order): columns are paired, and their pivots entered, from
    #    j0 on, until one whose pivot has meanwhile been taken by a column paired in this phase
    #    (or whose emergent candidate has): it goes back to phase 1 in the next round, now
    #    against every column before it, so that round finishes it. Each column is thus reduced
    #    against exactly the columns to its left, as in the sequential algorithm, and all the
    #    heavy work happens in phase 1. The window holds up to B columns that need a heap
    #    (B = 8 per thread; more means more collisions inside a window) and at most L in all.
    var vstore = Buf[Entry[T]].make(mem)
    var ok = mem.take((m + 1) * 8)
    var voff = unsafe_alloc[Int](m + 1)
    voff[unsafe_offset=0] = 0
    var B = 1 if cx.nt <= 1 else 8 * cx.nt
    var L = 1 if cx.nt <= 1 else 512
    var heaps = unsafe_alloc[Buf[Entry[T]]](L)
    var works = unsafe_alloc[Buf[Entry[T]]](L)
    var status = unsafe_alloc[Int](L)  # by column j at slot j % L
    var todo = unsafe_alloc[Int](L)
    var tcounts = unsafe_alloc[Int](2 * L)  # per todo item: additions, pushes
    var sc = unsafe_alloc[Int](4 * SCRATCH)
    var emergent = 0
    var reduced = 0
    var additions = 0
    var pushes = 0
    var j0 = 0
    var j1 = 0
    while ok and j0 < m:
        var hard = 0
        for j in range(j0, j1):
            var st = status[unsafe_offset=j % L]
            if st != ST_EMERGENT and not (st == ST_UNSTARTED and emer[unsafe_offset=j] >= 0):
                hard += 1
        while j1 < m and j1 - j0 < L and hard < B:
            status[unsafe_offset=j1 % L] = ST_UNSTARTED
            if emer[unsafe_offset=j1] < 0:
                hard += 1
            j1 += 1
        var ntodo = 0
        for j in range(j0, j1):
            var st = status[unsafe_offset=j % L]
            if st == ST_UNSTARTED or st == ST_RESTART or st == ST_RESUME:
                todo[unsafe_offset=ntodo] = j
                ntodo += 1
        var frozen = vstore  # phase 1 reads only V columns that exist now

        @always_inline
        def phase1(i: Int) {imm}:
            var j = todo[unsafe_offset=i]
            var slot = j % L
            var st = status[unsafe_offset=slot]
            var counts = SIMD[DType.int64, 2](0)
            var scr = unsafe_alloc[Int](4 * SCRATCH)
            if st == ST_UNSTARTED:
                var cand = emer[unsafe_offset=j]
                if cand >= 0 and not pivots.contains(cx.index_of(cand)):
                    st = ST_EMERGENT  # phase 2 confirms it against the pivots of this round
                else:
                    st = ST_RESTART
            if st == ST_RESTART:
                var h = Buf[Entry[T]].make(mem)
                var w = Buf[Entry[T]].make(mem)
                st = _start_column(cx, nv, cols[j], h, w, pivots, cols, frozen, voff, scr, counts)
                heaps[unsafe_offset=slot] = h
                works[unsafe_offset=slot] = w
            elif st == ST_RESUME:
                var h = heaps[unsafe_offset=slot]
                var w = works[unsafe_offset=slot]
                st = _eliminate(cx, nv, h, w, pivots, cols, frozen, voff, scr, counts)
                heaps[unsafe_offset=slot] = h
                works[unsafe_offset=slot] = w
            status[unsafe_offset=slot] = st
            tcounts[unsafe_offset=2 * i] = Int(counts[0])
            tcounts[unsafe_offset=2 * i + 1] = Int(counts[1])
            scr.unsafe_free()

        # Start the round inline; whatever is left after INLINE_NS goes to all threads. Small
        # rounds thus skip the thread wake-up and barrier (tens of us on an idle machine, up to
        # a scheduler slice on a busy one); big ones run in parallel but for the columns begun
        # inline.
        var tp = perf_counter_ns()
        var k = 0
        while k < ntodo and Int(perf_counter_ns() - tp) < INLINE_NS:
            phase1(k)
            k += 1

        @always_inline
        def rest(i: Int) {imm}:
            phase1(k + i)

        run_chunks(rest, ntodo - k, cx.nt)
        for i in range(ntodo):
            additions += tcounts[unsafe_offset=2 * i]
            pushes += tcounts[unsafe_offset=2 * i + 1]
        var j = j0
        while j < j1:
            var slot = j % L
            var st = status[unsafe_offset=slot]
            var s = cols[j]
            if st == ST_EMERGENT:
                var cand = emer[unsafe_offset=j]
                if pivots.contains(cx.index_of(cand)):
                    status[unsafe_offset=slot] = ST_RESTART  # taken this round: reduce in full
                    break
                pivots.insert(cx.index_of(cand), (j << 16) | cx.coef_of(cand))
                emergent += 1
                voff[unsafe_offset=j + 1] = vstore.size
                j += 1
                continue
            if st == ST_FAILED:
                ok = False
                break
            var h = heaps[unsafe_offset=slot]
            var w = works[unsafe_offset=slot]
            if st == ST_PENDING:
                var piv = cx.get_pivot(h)
                if pivots.contains(cx.index_of(piv.key)):
                    status[unsafe_offset=slot] = ST_RESUME  # taken this round: reduce further
                    break
                # the pivot is in no column to the left: a persistence pair (s, piv)
                if piv.diam > s.diam:
                    ok = bars.push(Bar(dim, Float64(s.diam), Float64(piv.diam)), mem)
                pivots.insert(cx.index_of(piv.key), (j << 16) | cx.coef_of(piv.key))
                ok = _store_column(cx, w, vstore) and ok
            else:  # ST_ZERO: an essential class
                ok = bars.push(Bar(dim, Float64(s.diam), -1.0), mem)
            reduced += 1
            voff[unsafe_offset=j + 1] = vstore.size
            h.free(mem)
            w.free(mem)
            j += 1
            if not ok:
                break
        j0 = j
    # on failure, free the heaps still held by window columns
    for j in range(j0, j1):
        var st = status[unsafe_offset=j % L]
        if st == ST_PENDING or st == ST_ZERO or st == ST_RESUME or st == ST_FAILED:
            heaps[unsafe_offset=j % L].free(mem)
            works[unsafe_offset=j % L].free(mem)
    sc.unsafe_free()
    heaps.unsafe_free()
    works.unsafe_free()
    status.unsafe_free()
    todo.unsafe_free()
    tcounts.unsafe_free()
    emer.unsafe_free()
    voff.unsafe_free()
    mem.give(2 * (m + 1) * 8)
    vstore.free(mem)
    cx.stat(dim, STAT_EMERGENT, emergent)
    cx.stat(dim, STAT_REDUCED, reduced)
    cx.stat(dim, STAT_ADDITIONS, additions)
    cx.stat(dim, STAT_PUSHES, pushes)
    cx.stat(dim, STAT_REDUCE_NS, Int(perf_counter_ns() - t1))
    return ok and mem.ok()


comptime INLINE_NS = 1000000  # a reduction round runs inline for its first millisecond
comptime ST_FAILED = -1  # memory budget exceeded
comptime ST_ZERO = 0  # the column reduced to zero: an essential class
comptime ST_PENDING = 1  # the heap's pivot is in no pivot column seen so far
comptime ST_EMERGENT = 2  # its emergent candidate was free in phase 1; phase 2 confirms
comptime ST_UNSTARTED = 3  # entered the window, not looked at yet
comptime ST_RESTART = 4  # needs a full reduction (its emergent candidate was taken)
comptime ST_RESUME = 5  # its pivot was taken in phase 2: reduce further


def _start_column[T: DType, Z2: Bool](cx: Cx[T, Z2], nv: Int, s: Entry[T], mut h: Buf[Entry[T]], mut w: Buf[Entry[T]], pivots: PivotMap, cols: Buf[Entry[T]], vstore: Buf[Entry[T]], voff: IntPtr, sc: IntPtr, mut counts: SIMD[DType.int64, 2]) -> Int:
    """Push the coboundary of column s, then _eliminate."""
    cx.decode(s.key, nv, sc)
    var np = cx.push_coboundary(h, sc, nv, s.diam, s.key, 1)
    if np < 0:
        return ST_FAILED
    counts[1] += Int64(np)
    return _eliminate(cx, nv, h, w, pivots, cols, vstore, voff, sc, counts)


def _eliminate[T: DType, Z2: Bool](cx: Cx[T, Z2], nv: Int, mut h: Buf[Entry[T]], mut w: Buf[Entry[T]], pivots: PivotMap, cols: Buf[Entry[T]], vstore: Buf[Entry[T]], voff: IntPtr, sc: IntPtr, mut counts: SIMD[DType.int64, 2]) -> Int:
    """Add known pivot columns and apparent facets to the working coboundary h (V column in w)
    until it is zero (ST_ZERO) or its pivot is in no column of ``pivots`` (ST_PENDING).
    counts += (additions, cofacets pushed). Reads pivots, cols, vstore and voff only."""
    var us = sc.unsafe_offset(SCRATCH)
    var f = sc.unsafe_offset(3 * SCRATCH)
    var mem = cx.mem
    while True:
        var piv = cx.get_pivot(h)
        if piv.key < 0:
            return ST_ZERO
        var pidx = cx.index_of(piv.key)
        var pc = cx.coef_of(piv.key)
        var hit = pivots.find(pidx)
        if hit >= 0:
            var jj = hit >> 16
            var factor = 1
            comptime if not Z2:
                factor = (cx.modulus - pc * cx.inv[unsafe_offset=hit & 0xFFFF] % cx.modulus) % cx.modulus
            var t = cols[jj]
            cx.decode(t.key, nv, us)
            var np = cx.push_coboundary(h, us, nv, t.diam, t.key, factor)
            if np < 0 or not w.push(Entry[T](t.diam, cx.pack(t.key, factor)), mem):
                return ST_FAILED
            counts[1] += Int64(np)
            for q in range(voff[unsafe_offset=jj], voff[unsafe_offset=jj + 1]):
                var e = vstore[q]
                var ce = cx.coef_of(e.key)
                comptime if not Z2:
                    ce = ce * factor % cx.modulus
                var ei = cx.index_of(e.key)
                cx.decode(ei, nv, us)
                np = cx.push_coboundary(h, us, nv, e.diam, ei, ce)
                if np < 0 or not w.push(Entry[T](e.diam, cx.pack(ei, ce)), mem):
                    return ST_FAILED
                counts[1] += Int64(np)
            counts[0] += 1
            continue
        cx.decode(pidx, nv + 1, us)
        var r = cx.apparent_facet(us, nv + 1, piv.diam, f)
        if r < 0:
            return ST_PENDING
        # eliminate the pivot with the coboundary of its apparent facet f = piv - us[r]
        var fidx = cx.index_from(f, nv)
        var factor = cx.neg(pc) if ((nv - r) & 1) == 0 else pc
        var np = cx.push_coboundary(h, f, nv, piv.diam, fidx, factor)
        if np < 0 or not w.push(Entry[T](piv.diam, cx.pack(fidx, factor)), mem):
            return ST_FAILED
        counts[1] += Int64(np)
        counts[0] += 1


def _store_column[T: DType, Z2: Bool](cx: Cx[T, Z2], mut work: Buf[Entry[T]], mut vstore: Buf[Entry[T]]) -> Bool:
    """Append the V column in work to vstore with equal simplices combined (zeros dropped)."""
    var n = work.size
    if n == 0:
        return True
    qsort[T, True](work.data, 0, n)
    var i = 0
    while i < n:
        var e = work[i]
        var idx = cx.index_of(e.key)
        var c = cx.coef_of(e.key)
        var k = i + 1
        while k < n and cx.index_of(work[k].key) == idx:
            comptime if Z2:
                c ^= 1
            else:
                c = (c + cx.coef_of(work[k].key)) % cx.modulus
            k += 1
        if c != 0:
            if not vstore.push(Entry[T](e.diam, cx.pack(idx, c)), cx.mem):
                return False
        i = k
    return True


# ------------------------------------------------------------------------ column assembly

def _zero_cofacet_row[T: DType, Z2: Bool](cx: Cx[T, Z2], ms: Pointer[Scalar[T], MutUntrackedOrigin], vs: IntPtr, nv: Int, dd: Scalar[T]) -> Int:
    """The zero_cofacet of s from ms = row_max(s): the largest v not in s with ms[v] <= dd, or -1."""
    var hi = cx.n
    for i in range(nv + 1):
        var lo = vs[unsafe_offset=i] if i < nv else -1
        var v = cx.scan_rows[False](ms, ms, lo, hi, dd)
        if v >= 0:
            return v
        hi = lo
    return -1


def assemble[T: DType, Z2: Bool](cx: Cx[T, Z2], dim: Int, simplices: Buf[Entry[T]], pivots: PivotMap, need_next: Bool, mut next: Buf[Entry[T]], mut cols: Buf[Entry[T]]) -> Bool:
    """Columns of dimension dim + 1 from the dim-simplices: every cofacet s + v with v above s's
    top vertex (each (dim+1)-simplex once), within the threshold, not a pivot of dimension dim
    and not in a zero-persistence apparent pair; sorted into column order."""
    var t0 = perf_counter_ns()
    var mem = cx.mem
    var m = simplices.size
    var nv = dim + 1
    var n = cx.n
    comptime W = simd_width_of[T]()
    var nch = n_chunks(m, cx.nt, 256)
    var pcols = unsafe_alloc[Buf[Entry[T]]](nch)
    var pnext = unsafe_alloc[Buf[Entry[T]]](nch)
    var counts = unsafe_alloc[Int](3 * nch)
    for c in range(nch):
        pcols[unsafe_offset=c] = Buf[Entry[T]].make(mem)
        pnext[unsafe_offset=c] = Buf[Entry[T]].make(mem)
        counts[unsafe_offset=3 * c] = 0
        counts[unsafe_offset=3 * c + 1] = 0
        counts[unsafe_offset=3 * c + 2] = 0

    @always_inline
    def task(c: Int) {imm}:
        var sc = unsafe_alloc[Int](4 * SCRATCH)
        var vs = sc
        var tv = sc.unsafe_offset(SCRATCH)
        var f = sc.unsafe_offset(3 * SCRATCH)
        var bc = pcols[unsafe_offset=c]
        var bn = pnext[unsafe_offset=c]
        var ms = unsafe_alloc[Scalar[T]](n + W)
        var total = 0
        var cleared = 0
        var apparent = 0
        var good = True
        var thr = cx.thr
        var brow = cx.binom.unsafe_offset((nv + 1) * cx.n1)
        for q in range(chunk_lo(c, nch, m), chunk_lo(c + 1, nch, m)):
            if not good or not mem.ok():  # out of budget here or in another chunk
                break
            var s = simplices[q]
            var ds = s.diam
            cx.decode(s.key, nv, vs)
            var top_vertex = vs[unsafe_offset=0]
            for i in range(nv):
                tv[unsafe_offset=i + 1] = vs[unsafe_offset=i]
            cx.row_max(vs, nv, ms)  # ms[v] = diameter of s + v, up to ds
            var zc = -2  # s's zero cofacet vertex, computed on first need
            var v = n - 1
            while v > top_vertex:
                var mv = ms[unsafe_offset=v]
                if mv <= thr:
                    var dt = max(ds, mv)
                    var tidx = brow[unsafe_offset=v] + s.key
                    total += 1
                    if need_next and not bn.push(Entry[T](dt, tidx), mem):
                        good = False
                        break
                    if pivots.contains(tidx):
                        cleared += 1
                    else:
                        tv[unsafe_offset=0] = v
                        var app = False
                        if dt == ds:
                            # s is t's smallest-index facet of equal diameter (v is t's top
                            # vertex): (s, t) is apparent iff t is s's zero cofacet
                            if zc == -2:
                                zc = _zero_cofacet_row(cx, ms, vs, nv, ds)
                            app = zc == v
                        # t paired with a cofacet is the common case (there are far fewer
                        # dim-simplices than cofacets to pair with): test it first
                        if not app:
                            app = cx.apparent_cofacet_rows(ms, v, tv, nv + 1, dt) >= 0
                        if not app and dt != ds:
                            app = cx.apparent_facet(tv, nv + 1, dt, f) >= 0
                        if app:
                            apparent += 1
                        elif not bc.push(Entry[T](dt, tidx), mem):
                            good = False
                            break
                v -= 1
        ms.unsafe_free()
        pcols[unsafe_offset=c] = bc
        pnext[unsafe_offset=c] = bn
        counts[unsafe_offset=3 * c] = total
        counts[unsafe_offset=3 * c + 1] = cleared
        counts[unsafe_offset=3 * c + 2] = apparent
        sc.unsafe_free()

    run_chunks(task, nch, cx.nt)
    for c in range(nch):
        cx.stat(dim + 1, STAT_SIMPLICES, counts[unsafe_offset=3 * c])
        cx.stat(dim + 1, STAT_CLEARED, counts[unsafe_offset=3 * c + 1])
        cx.stat(dim + 1, STAT_APPARENT, counts[unsafe_offset=3 * c + 2])
    counts.unsafe_free()
    var ok = _gather(pcols, nch, cols, mem)
    ok = _gather(pnext, nch, next, mem) and ok
    if ok:
        ok = sort_columns(cols, cx.nt, mem)
    cx.stat(dim + 1, STAT_ASSEMBLE_NS, Int(perf_counter_ns() - t0))
    return ok and mem.ok()


# ------------------------------------------------------------------------ driver

def run[T: DType, Z2: Bool](daddr: Int, n: Int, maxdim: Int, thr: Float64, modulus: Int, nt: Int, budget: Int, info: IntPtr, stats: IntPtr):
    var used = Atomic[Int](0)
    var failed = Atomic[Int](0)
    var peak = Atomic[Int](0)
    var mem = Mem(
        Pointer[Atomic[Int], MutUntrackedOrigin](unsafe_from_address=Int(Pointer(to=used))),
        Pointer[Atomic[Int], MutUntrackedOrigin](unsafe_from_address=Int(Pointer(to=failed))),
        Pointer[Atomic[Int], MutUntrackedOrigin](unsafe_from_address=Int(Pointer(to=peak))),
        budget,
    )
    var K = maxdim + 2
    var n1 = n + 1
    var binom = unsafe_alloc[Int]((K + 1) * n1)
    for k in range(K + 1):
        for v in range(n1):
            var val = 0
            if k == 0:
                val = 1
            elif v > 0:
                val = binom[unsafe_offset=(k - 1) * n1 + v - 1] + binom[unsafe_offset=k * n1 + v - 1]
            binom[unsafe_offset=k * n1 + v] = val
    var inv = unsafe_alloc[Int](modulus)
    inv[unsafe_offset=0] = 0
    if modulus > 1:
        inv[unsafe_offset=1] = 1
    for a in range(2, modulus):
        inv[unsafe_offset=a] = (modulus - (modulus // a) * inv[unsafe_offset=modulus % a] % modulus) % modulus
    var cbits = 0
    if not Z2:
        while (1 << cbits) <= modulus:
            cbits += 1
    var cx = Cx[T, Z2](
        n, n1, maxdim, modulus, cbits, (1 << cbits) - 1,
        Pointer[Scalar[T], MutUntrackedOrigin](unsafe_from_address=daddr),
        Scalar[T](thr), binom, inv, mem, nt, stats,
    )
    var bars = Buf[Bar].make(mem)
    var simplices = Buf[Entry[T]].make(mem)
    var cols = Buf[Entry[T]].make(mem)
    var fail_dim = 0
    var ok = dim0(cx, bars, simplices, cols)
    for dim in range(1, maxdim + 1):
        if not ok:
            break
        fail_dim = dim
        if dim == maxdim:  # the last dimension assembles nothing: its simplices can go now
            simplices.free(mem)
            simplices = Buf[Entry[T]].make(mem)
        var pivots = PivotMap.make(cols.size, mem)
        ok = reduce(cx, dim, cols, pivots, bars)
        cols.free(mem)
        cols = Buf[Entry[T]].make(mem)
        if ok and dim < maxdim:
            fail_dim = dim + 1
            var next = Buf[Entry[T]].make(mem)
            ok = assemble(cx, dim, simplices, pivots, dim + 1 < maxdim, next, cols)
            simplices.free(mem)
            simplices = next
        pivots.free(mem)
    simplices.free(mem)
    cols.free(mem)
    binom.unsafe_free()
    inv.unsafe_free()
    if ok:
        var out = unsafe_alloc[Float64](max(1, 3 * bars.size))
        for i in range(bars.size):
            var b = bars[i]
            out[unsafe_offset=3 * i] = Float64(b.dim)
            out[unsafe_offset=3 * i + 1] = b.birth
            out[unsafe_offset=3 * i + 2] = b.death
        info[unsafe_offset=0] = 0
        info[unsafe_offset=1] = Int(out)
        info[unsafe_offset=2] = bars.size
    else:
        info[unsafe_offset=0] = 1
        info[unsafe_offset=1] = 0
        info[unsafe_offset=2] = 0
        info[unsafe_offset=3] = fail_dim
        info[unsafe_offset=4] = failed.load()
    bars.free(mem)
    info[unsafe_offset=5] = peak.load()
    # keep the counters alive until here (Mojo destroys values after their last use)
    _ = used.load()
    _ = failed.load()


def rips(args: PythonObject) raises -> PythonObject:
    var bits = Int(py=args[0])
    var daddr = Int(py=args[1])
    var n = Int(py=args[2])
    var maxdim = Int(py=args[3])
    var thr = Float64(py=args[4])
    var modulus = Int(py=args[5])
    var nt = Int(py=args[6])
    var budget = Int(py=args[7])
    var info = IntPtr(unsafe_from_address=Int(py=args[8]))
    var stats = IntPtr(unsafe_from_address=Int(py=args[9]))
    ref cpy = Python().cpython()
    var ts = cpy.PyEval_SaveThread()
    if bits == 32:
        if modulus == 2:
            run[F32, True](daddr, n, maxdim, thr, modulus, nt, budget, info, stats)
        else:
            run[F32, False](daddr, n, maxdim, thr, modulus, nt, budget, info, stats)
    else:
        if modulus == 2:
            run[F64, True](daddr, n, maxdim, thr, modulus, nt, budget, info, stats)
        else:
            run[F64, False](daddr, n, maxdim, thr, modulus, nt, budget, info, stats)
    cpy.PyEval_RestoreThread(ts)
    return PythonObject(None)


def free_bars(args: PythonObject) raises -> PythonObject:
    var addr = Int(py=args[0])
    if addr != 0:
        Pointer[Float64, MutUntrackedOrigin](unsafe_from_address=addr).unsafe_free()
    return PythonObject(None)
