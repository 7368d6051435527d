# Strong edge collapse of a flag filtration: the backward pass of Glisse & Pritam ("Swap,
# shift and trim to edge collapse a filtration", SoCG 2022), the algorithm of gudhi's
# Flag_complex_edge_collapser (2021 rewrite), written fresh here.
#
# Input (CollapseParams, validated by aura_lab/persistence/collapse.py): m edges (u[k], v[k],
# f[k]) of a flag filtration on n vertices, u != v, each pair once, f finite, float32 or
# float64 (dtype_bits; the filtration's dtype, as the engine's); vertices at 0.
# Output: the collapsed edges in u_out, v_out, f_out (capacity m; Python allocates them), their
# count in info[INFO_EDGES], and per pass the edges left after it in info[INFO_PASS0 + pass]
# and its nanoseconds (the sort included) in info[INFO_PASS0 + max_passes + pass].
# The flag filtration of the output has the same persistence diagrams (nonzero bars) as the
# input's; its values are >= the input's, and K'_t is a subcomplex of K_t for every t.
#
# One pass, over the edges by decreasing value (ties: by (u, v), so the result is
# deterministic), with N[x] the closed neighbourhood of x (x itself at -inf), which the pass
# edits as it goes (shorter edges see the longer ones' new values; the order is load-bearing):
#   t = f(uv); A = common neighbours w of u, v with max(N[u][w], N[v][w]) <= t (sorted),
#   L = a min-heap of the later ones (value > t).
#   loop: c = a c in A whose closed neighbourhood holds all of A at t (c dominates uv at t);
#         none: uv is critical at t, stop. Tried first: the c of A with the least
#         max(N[u][c], N[v][c]) (on clifford 1.4 instead of 2.4 candidates per search, 43 %
#         fewer row entries read), then A in order; any dominator gives the same result (t
#         ends at the first event value at which none exists).
#         shift: while c still dominates, t = L's least value, move every w of that value
#         from L to A (c loses uv if N[c][w] > that value); L empty: uv is dominated for
#         ever, trim it.
#   trimmed: erase uv from N; else emit (u, v, t) and, if t > f, set N[u][v] = N[v][u] = t.
# Passes repeat while one removes at least min_removed of the edges left (and up to
# max_passes).
#
# Neighbourhoods: a CSR of sorted (vertex, value) rows built per pass, O(n + m) memory; an
# erased edge leaves both rows (their tails move down a slot: on clifford 2.08 M of the first
# pass's 2.24 M edges are erased, and the later, shorter edges would otherwise merge rows
# mostly of erased entries), a delayed edge's value is overwritten in both rows (binary
# search for the slot). The merge and the dominance walk are written without data-dependent
# branches but their exits (the merge's were mispredicted about every other step).
# Memory: an edge's rows are far apart (the edges come by value, not by place) and cold, and
# the pass mostly waited on their first cache lines: the rows of the edge AHEAD places on are
# prefetched (their bounds 2 AHEAD places on). On clifford (2.24 M edges, 50 000 vertices;
# thread CPU time of the first pass, 2-core VM under load 9-11) 7.4 s -> 6.5 s with the
# erasing and the branch-free loops, -> 5.4 s with the prefetch. Tried and dropped: the
# common neighbours by per-vertex stamps instead of the merge (scatter row u, look row v up;
# also A's membership for the dominance tests): 1.14x slower (random reads of the stamps).
# Cancellation: the control's cancel word is polled every POLL_EDGES edges; progress: stage
# STAGE_COLLAPSE, units = edges processed over all passes (total: m per pass, restarted
# each pass).

from std.sys import size_of
from std.sys.intrinsics import prefetch, PrefetchOptions
from std.time import perf_counter_ns
from std.utils.numerics import inf, neg_inf
from aura_kernels.common import F32, F64, Control
from aura_kernels.persistence.collapse_abi import (
    CollapseParams, INFO_STATUS, INFO_EDGES, INFO_PASSES, INFO_PASS0, STATUS_OK, STATUS_CANCELLED, STAGE_COLLAPSE
)
from aura_kernels.persistence.containers import OwnedArray
from aura_kernels.persistence.sort import quicksort

comptime POLL_EDGES = 1024
# software prefetch: the rows of the edge this many places ahead, their bounds twice as far;
# the cache line size in bytes
comptime AHEAD = 2
comptime LINE = 64


@fieldwise_init
struct Edge[T: DType](ImplicitlyCopyable):
    var f: Scalar[Self.T]
    var u: Int32
    var v: Int32


@always_inline
def _before[T: DType](a: Edge[T], b: Edge[T]) -> Bool:
    """Processing order: larger value first, then smaller (u, v)."""
    if a.f != b.f:
        return a.f > b.f
    if a.u != b.u:
        return a.u < b.u
    return a.v < b.v


def _open_rows[T: DType](
    n: Int, edges: Pointer[Edge[T], MutUntrackedOrigin], m: Int, ustart: OwnedArray[Int], unbr: OwnedArray[Int32],
    uval: OwnedArray[Scalar[T]], fill: OwnedArray[Int],
):
    """Each edge (f, u, v) into the open, unsorted rows at ustart: v and f to row u, u and f to
    row v (fill: the rows' cursors)."""
    for x in range(n):
        fill[x] = ustart[x]
    for k in range(m):
        var e = edges[unsafe_offset=k]
        var a = Int(e.u)
        var b = Int(e.v)
        unbr[fill[a]] = e.v
        uval[fill[a]] = e.f
        fill[a] = fill[a] + 1
        unbr[fill[b]] = e.u
        uval[fill[b]] = e.f
        fill[b] = fill[b] + 1


struct Neighbourhoods[T: DType](Movable):
    """Closed neighbourhoods as sorted CSR rows: row x = start[x] ..< end[x] of (nbr, val),
    ascending nbr, x itself at -inf; an erased edge leaves both rows (the row's tail moves
    down one slot), so the merges and dominance tests read live entries only."""

    var start: OwnedArray[Int]
    var end: OwnedArray[Int]
    var nbr: OwnedArray[Int32]
    var val: OwnedArray[Scalar[Self.T]]

    def __init__(out self, n: Int, edges: Pointer[Edge[Self.T], MutUntrackedOrigin], m: Int):
        var deg = OwnedArray[Int](n + 1)
        for x in range(n + 1):
            deg[x] = 0
        for k in range(m):
            var e = edges[unsafe_offset=k]
            deg[Int(e.u)] = deg[Int(e.u)] + 1
            deg[Int(e.v)] = deg[Int(e.v)] + 1
        # unsorted rows (open), then transposed into sorted closed rows: row r is read in
        # ascending r, each of its entries appended to its neighbour's row
        var ustart = OwnedArray[Int](n + 1)
        var acc = 0
        for x in range(n):
            ustart[x] = acc
            acc += deg[x]
        ustart[n] = acc
        var unbr = OwnedArray[Int32](acc)
        var uval = OwnedArray[Scalar[Self.T]](acc)
        var fill = OwnedArray[Int](n)
        _open_rows(n, edges, m, ustart, unbr, uval, fill)
        self.start = OwnedArray[Int](n + 1)
        acc = 0
        for x in range(n):
            self.start[x] = acc
            acc += deg[x] + 1
        self.start[n] = acc
        self.end = OwnedArray[Int](n)
        for x in range(n):
            self.end[x] = self.start[x + 1]
        self.nbr = OwnedArray[Int32](acc)
        self.val = OwnedArray[Scalar[Self.T]](acc)
        for x in range(n):
            fill[x] = self.start[x]
        for r in range(n):
            # every row x < r has already received its entries from rows < r; row r gets r now
            var s = fill[r]
            self.nbr[s] = Int32(r)
            self.val[s] = neg_inf[Self.T]()
            fill[r] = s + 1
            for q in range(ustart[r], ustart[r + 1]):
                var x = Int(unbr[q])
                var t = fill[x]
                self.nbr[t] = Int32(r)
                self.val[t] = uval[q]
                fill[x] = t + 1

    @always_inline
    def find(self, x: Int, w: Int32) -> Int:
        """The slot of w in row x, or -1."""
        var lo = self.start[x]
        var hi = self.end[x]
        while lo < hi:
            var mid = (lo + hi) >> 1
            var y = self.nbr[mid]
            if y < w:
                lo = mid + 1
            elif y > w:
                hi = mid
            else:
                return mid
        return -1

    @always_inline
    def value(self, x: Int, w: Int32) -> Scalar[Self.T]:
        """N[x][w] (+inf when absent)."""
        var s = self.find(x, w)
        return self.val[s] if s >= 0 else inf[Self.T]()

    def erase(self, u: Int, v: Int):
        """Remove v from row u and u from row v."""
        self._remove(u, self.find(u, Int32(v)))
        self._remove(v, self.find(v, Int32(u)))

    @always_inline
    def _remove(self, x: Int, s: Int):
        var e = self.end[x] - 1
        for q in range(s, e):
            self.nbr[q] = self.nbr[q + 1]
            self.val[q] = self.val[q + 1]
        self.end[x] = e

    def prefetch_bounds(self, x: Int):
        prefetch[PrefetchOptions().for_read().high_locality()](self.start.at(x))
        prefetch[PrefetchOptions().for_read().high_locality()](self.end.at(x))

    def prefetch_row(self, x: Int):
        """Ask for row x's cache lines (the rows of an edge are far apart and cold: the
        merge and the dominance walks otherwise wait on each of their first lines)."""
        _prefetch_lines(self.nbr.data, self.start[x], self.end[x])
        _prefetch_lines(self.val.data, self.start[x], self.end[x])

    def set(self, u: Int, v: Int, f: Scalar[Self.T]):
        var s = self.find(u, Int32(v))
        if s >= 0:
            self.val[s] = f
        s = self.find(v, Int32(u))
        if s >= 0:
            self.val[s] = f

    def dominates(self, c: Int, a: Pointer[Int32, MutUntrackedOrigin], na: Int, t: Scalar[Self.T]) -> Bool:
        """Does the closed neighbourhood of c at t hold all of a[0:na] (sorted)? One walk
        along row c; its only branches are the exits."""
        if na == 0:
            return True
        var k = 0
        var w = a[unsafe_offset=0]
        for ci in range(self.start[c], self.end[c]):
            var y = self.nbr[ci]
            var hit = y == w
            if y > w or (hit and self.val[ci] > t):
                return False  # w is not in N[c] at t
            k += Int(hit)
            if k == na:
                return True
            w = a[unsafe_offset=k]
        return False


@always_inline
def _prefetch_lines[D: DType](p: Pointer[Scalar[D], MutUntrackedOrigin], s: Int, e: Int):
    """Ask for the cache lines of p[s:e], one prefetch per LINE bytes."""
    var q = s
    while q < e:
        prefetch[PrefetchOptions().for_read().high_locality()](p.unsafe_offset(q))
        q += LINE // size_of[Scalar[D]]()


@always_inline
def _heap_less[T: DType](fa: Scalar[T], wa: Int32, fb: Scalar[T], wb: Int32) -> Bool:
    return fa < fb or (fa == fb and wa < wb)


@fieldwise_init
struct Link[T: DType](ImplicitlyCopyable):
    """The link of the edge being processed: A, its common neighbours present at t (sorted),
    and L, a min-heap by (value, vertex) of the later ones. A view: the storage (maxdeg + 1
    entries each) is _one_pass's, reused by every edge; a fresh Link per edge is a local of
    _critical_value, so its counts stay in registers."""

    var a: Pointer[Int32, MutUntrackedOrigin]
    var hf: Pointer[Scalar[Self.T], MutUntrackedOrigin]
    var hw: Pointer[Int32, MutUntrackedOrigin]
    var na: Int
    var nh: Int
    var heapified: Bool

    @always_inline
    def assemble(mut self, nb: Neighbourhoods[Self.T], u: Int, v: Int, t: Scalar[Self.T]) -> Int:
        """A and L of edge uv at t, by a branch-free merge of the closed rows of u and v (skip
        u and v): every step writes its candidate to A and L and counts it where it belongs.
        Returns the vertex of A nearest to u and v (least max(N[u][c], N[v][c])), or -1."""
        var na = 0
        var nh = 0
        var first = -1
        var gfirst = inf[Self.T]()
        var ui = nb.start[u]
        var ue = nb.end[u]
        var vi = nb.start[v]
        var ve = nb.end[v]
        while ui < ue and vi < ve:
            var wu = nb.nbr[ui]
            var wv = nb.nbr[vi]
            var g = max(nb.val[ui], nb.val[vi])
            var common = (wu == wv) & (Int(wu) != u) & (Int(wu) != v)
            var now = common & (g <= t)
            var nearer = now & (g < gfirst)
            gfirst = g if nearer else gfirst
            first = Int(wu) if nearer else first
            self.a[unsafe_offset=na] = wu
            na += Int(now)
            self.hf[unsafe_offset=nh] = g
            self.hw[unsafe_offset=nh] = wu
            nh += Int(common & (g > t))
            ui += Int(wu <= wv)
            vi += Int(wv <= wu)
        self.na = na
        self.nh = nh
        self.heapified = False
        return first

    @always_inline
    def get_dominator(self, nb: Neighbourhoods[Self.T], first: Int, t: Scalar[Self.T]) -> Int:
        """A vertex of A whose closed neighbourhood holds all of A at t (first tried first),
        or -1: none, the edge is critical at t."""
        if first >= 0 and nb.dominates(first, self.a, self.na, t):
            return first
        for q in range(self.na):
            var c = Int(self.a[unsafe_offset=q])
            if c != first and nb.dominates(c, self.a, self.na, t):
                return c
        return -1

    @always_inline
    def shift(mut self, nb: Neighbourhoods[Self.T], dom: Int, t0: Scalar[Self.T]) -> Scalar[Self.T]:
        """While dom still dominates, move every vertex of L's least value into A; returns
        the value at which dom stopped dominating, or +inf: L ran out (dominated for ever)."""
        var t = t0
        var still = True
        while still:
            if self.nh == 0:
                return inf[Self.T]()
            self.heapify_once()
            t = self.hf[unsafe_offset=0]
            while self.nh > 0 and self.hf[unsafe_offset=0] <= t:
                var w = self.hw[unsafe_offset=0]
                if nb.value(dom, w) > self.hf[unsafe_offset=0]:
                    still = False
                self.insert_present(w)
                self.pop_least()
        return t

    @always_inline
    def heapify_once(mut self):
        if not self.heapified:
            var i = self.nh // 2 - 1
            while i >= 0:
                _sift_down(self.hf, self.hw, self.nh, i)
                i -= 1
            self.heapified = True

    @always_inline
    def insert_present(mut self, w: Int32):
        """Insert w into the sorted A."""
        var j = self.na
        while j > 0 and self.a[unsafe_offset=j - 1] > w:
            self.a[unsafe_offset=j] = self.a[unsafe_offset=j - 1]
            j -= 1
        self.a[unsafe_offset=j] = w
        self.na += 1

    @always_inline
    def pop_least(mut self):
        self.nh -= 1
        self.hf[unsafe_offset=0] = self.hf[unsafe_offset=self.nh]
        self.hw[unsafe_offset=0] = self.hw[unsafe_offset=self.nh]
        _sift_down(self.hf, self.hw, self.nh, 0)


@always_inline
def _critical_value[T: DType](nb: Neighbourhoods[T], storage: Link[T], e: Edge[T]) -> Scalar[T]:
    """The value from which edge e is critical (no vertex of its link dominates it), or
    +inf: it is dominated for ever (trim it). Input values are finite. storage: the link's
    arrays."""
    var link = storage
    var t = e.f
    var first = link.assemble(nb, Int(e.u), Int(e.v), t)
    while True:
        var dom = link.get_dominator(nb, first, t)
        first = -1  # after a shift, A is tried in order
        if dom < 0:
            return t
        t = link.shift(nb, dom, t)
        if t == inf[T]():
            return t


@always_inline
def _prefetch_ahead[T: DType](nb: Neighbourhoods[T], edges: Pointer[Edge[T], MutUntrackedOrigin], k: Int, m: Int):
    """The rows of the edge AHEAD places on, the bounds of the one 2 AHEAD places on."""
    if k + 2 * AHEAD < m:
        nb.prefetch_bounds(Int(edges[unsafe_offset=k + 2 * AHEAD].u))
        nb.prefetch_bounds(Int(edges[unsafe_offset=k + 2 * AHEAD].v))
    if k + AHEAD < m:
        nb.prefetch_row(Int(edges[unsafe_offset=k + AHEAD].u))
        nb.prefetch_row(Int(edges[unsafe_offset=k + AHEAD].v))


def _one_pass[T: DType](n: Int, edges: Pointer[Edge[T], MutUntrackedOrigin], m: Int, maxdeg: Int, ctl: Control) -> Int:
    """One backward pass over edges[0:m] (sorted in processing order); the survivors are
    compacted to edges[0:result] in the same order, with their new values. -1: cancelled."""
    var nb = Neighbourhoods[T](n, edges, m)
    var a = OwnedArray[Int32](maxdeg + 1)
    var hf = OwnedArray[Scalar[T]](maxdeg + 1)
    var hw = OwnedArray[Int32](maxdeg + 1)
    var link = Link[T](a.data, hf.data, hw.data, 0, 0, False)
    var out = 0
    for k in range(m):
        if k % POLL_EDGES == 0:
            if ctl.cancelled():
                return -1
            if k > 0:
                ctl.add_done(POLL_EDGES)
        _prefetch_ahead(nb, edges, k, m)
        var e = edges[unsafe_offset=k]
        var t = _critical_value(nb, link, e)
        if t == inf[T]():
            nb.erase(Int(e.u), Int(e.v))
        else:
            if t > e.f:
                nb.set(Int(e.u), Int(e.v), t)
            edges[unsafe_offset=out] = Edge[T](t, e.u, e.v)
            out += 1
    ctl.add_done(m - ((m - 1) // POLL_EDGES) * POLL_EDGES)  # the rest since the last poll (m >= 1)
    _ = a^  # freed here: link is a view of them
    _ = hf^
    _ = hw^
    return out


@always_inline
def _sift_down[T: DType](hf: Pointer[Scalar[T], MutUntrackedOrigin], hw: Pointer[Int32, MutUntrackedOrigin], nh: Int, i0: Int):
    var i = i0
    while True:
        var l = 2 * i + 1
        if l >= nh:
            return
        var best = l
        var r = l + 1
        if r < nh and _heap_less(hf[unsafe_offset=r], hw[unsafe_offset=r], hf[unsafe_offset=l], hw[unsafe_offset=l]):
            best = r
        if not _heap_less(hf[unsafe_offset=best], hw[unsafe_offset=best], hf[unsafe_offset=i], hw[unsafe_offset=i]):
            return
        var tf = hf[unsafe_offset=i]
        var tw = hw[unsafe_offset=i]
        hf[unsafe_offset=i] = hf[unsafe_offset=best]
        hw[unsafe_offset=i] = hw[unsafe_offset=best]
        hf[unsafe_offset=best] = tf
        hw[unsafe_offset=best] = tw
        i = best


def _read_edges[T: DType](
    n: Int, m: Int, uin: Pointer[Int32, MutUntrackedOrigin], vin: Pointer[Int32, MutUntrackedOrigin],
    fin: Pointer[Scalar[T], MutUntrackedOrigin], edges: OwnedArray[Edge[T]],
) -> Int:
    """The m input edges into edges as (f, min(u, v), max(u, v)); returns the largest
    vertex degree."""
    var deg = OwnedArray[Int](n)
    for x in range(n):
        deg[x] = 0
    for k in range(m):
        var a = uin[unsafe_offset=k]
        var b = vin[unsafe_offset=k]
        if a > b:
            var s = a
            a = b
            b = s
        edges[k] = Edge[T](fin[unsafe_offset=k], a, b)
        deg[Int(a)] = deg[Int(a)] + 1
        deg[Int(b)] = deg[Int(b)] + 1
    var maxdeg = 0
    for x in range(n):
        maxdeg = max(maxdeg, deg[x])
    return maxdeg


def _collapse[T: DType](p: CollapseParams):
    var ctl = Control(p.control)
    var info = Pointer[Int, MutUntrackedOrigin](unsafe_from_address=p.info)
    var n = p.n
    var m = p.m
    var uin = Pointer[Int32, MutUntrackedOrigin](unsafe_from_address=p.u)
    var vin = Pointer[Int32, MutUntrackedOrigin](unsafe_from_address=p.v)
    var fin = Pointer[Scalar[T], MutUntrackedOrigin](unsafe_from_address=p.f)
    var edges = OwnedArray[Edge[T]](m)
    var maxdeg = _read_edges(n, m, uin, vin, fin, edges)
    info[unsafe_offset=INFO_STATUS] = STATUS_OK
    info[unsafe_offset=INFO_PASSES] = 0
    var left = m
    var passes = 0
    while passes < p.max_passes and left > 0:
        var t0 = perf_counter_ns()
        ctl.start_stage(STAGE_COLLAPSE, left)
        quicksort[_before[T]](edges.data, 0, left, ctl)
        if ctl.cancelled():
            info[unsafe_offset=INFO_STATUS] = STATUS_CANCELLED
            return
        var after = _one_pass[T](n, edges.data, left, maxdeg, ctl)
        if after < 0:
            info[unsafe_offset=INFO_STATUS] = STATUS_CANCELLED
            return
        info[unsafe_offset=INFO_PASS0 + passes] = after
        info[unsafe_offset=INFO_PASS0 + p.max_passes + passes] = Int(perf_counter_ns() - t0)
        passes += 1
        var removed = left - after
        left = after
        if Float64(removed) < p.min_removed * Float64(left + removed):
            break
    info[unsafe_offset=INFO_PASSES] = passes
    info[unsafe_offset=INFO_EDGES] = left
    var uo = Pointer[Int32, MutUntrackedOrigin](unsafe_from_address=p.u_out)
    var vo = Pointer[Int32, MutUntrackedOrigin](unsafe_from_address=p.v_out)
    var fo = Pointer[Scalar[T], MutUntrackedOrigin](unsafe_from_address=p.f_out)
    for k in range(left):
        var e = edges[k]
        uo[unsafe_offset=k] = e.u
        vo[unsafe_offset=k] = e.v
        fo[unsafe_offset=k] = e.f


def collapse_edges(p: CollapseParams) raises:
    """Collapse p's edge list (see the file header); float32 or float64 by p.dtype_bits."""
    if p.dtype_bits == 32:
        _collapse[F32](p)
    elif p.dtype_bits == 64:
        _collapse[F64](p)
    else:
        raise Error(String("collapse_edges: dtype_bits must be 32 or 64, got ", p.dtype_bits))
