# MoE expert routing: one fused pass per token, then a counting-sort permutation.
# Compute only (no Python): used by the Python binding kernels/routing.mojo (`mojo`) and by
# the MAX op in routing_ops.mojo (`max`).
#
#   logits (T, E) float32, C-contiguous; bias (E,) float32 (optional);
#   out: weights (T, k) float32, experts (T, k) int32, counts (E,) int64,
#        perm (T*k,) int64, offsets (E+1,) int64, kept (T, k) bool (optional).
# Everything is validated by aura_lab/routing before an address reaches this file; the
# exact math (NaN policy, tie rule, groups, weights) is documented there and in its numpy
# reference, which this kernel reproduces bit for bit in the ids.
#
# Phase 1 (row chunks handed out dynamically to the threads), per token:
#   * selection keys: the logits themselves (no bias), or float64 score + bias computed
#     with the portable exp (bit-identical to numpy/torch), NaN -> -inf;
#   * groups: score each group (max key, or sum of its top-2 keys with a bias), keep the
#     best topk_groups (ties: lower group), candidates = their experts, ascending;
#   * top-k with the tie rule (desc key, then asc index):
#     - rows of at most 64 keys: k rounds of a vector argmax (_select_small);
#     - otherwise (_select_vec, no branch per key): the k-th largest of the per-SIMD-lane
#       maxima bounds the k-th largest key from below; one vector pass packs the few
#       candidates >= the bound (register compress), and each candidate's rank under the
#       tie rule comes from vector compares;
#     - fallback (k wider than a vector, bound -inf, many ties at the bound): a sorted
#       list fed in ascending index order, entered only strictly above its k-th (_offer);
#   * per-chunk histogram; weights for blocks of 16 rows at once (float64 exps,
#     renormalize, scale -> float32).
# Phase 2 (serial, E * chunks): exclusive prefix sums -> counts, offsets, chunk cursors.
# Phase 3 (parallel over the same chunks): perm[cursor[e]++] = t*k + s in token order,
#   so the permutation is stable; kept = position within the expert's segment < capacity.
#
# Measured on the 2-core dev VM (in-cache, one thread): ~90 ns per row at E=256, k=8;
# ~40 ns at E=8, k=2. Things tried and dropped (slower there): a 16-lane bitonic sorting
# network instead of the ranks, four lane-max accumulators, counting before packing,
# packing only the indices, software prefetch.

from std.sys import simd_width_of, llvm_intrinsic
from std.math import exp, isnan, iota, floor
from std.memory import bitcast
from std.bit import count_trailing_zeros
from std.utils.numerics import inf, neg_inf
from aura_kernels.common import F32, F64, Control, OwnedArray, append_packed, ieee_begin, ieee_end, run_chunks
from aura_kernels.routing.abi import RoutingParams, SOFTMAX, SIGMOID

comptime MAX_ROWS = 8192  # rows per chunk at most: a cancel stops the call within one chunk (~2-10 ms)

comptime P32 = Pointer[Float32, MutUntrackedOrigin]
comptime P64 = Pointer[Float64, MutUntrackedOrigin]
comptime PI32 = Pointer[Int32, MutUntrackedOrigin]
comptime PI64 = Pointer[Int64, MutUntrackedOrigin]
comptime PInt = Pointer[Int, MutUntrackedOrigin]
comptime PU8 = Pointer[UInt8, MutUntrackedOrigin]

comptime W = simd_width_of[F32]()
comptime W64 = simd_width_of[F64]()



@fieldwise_init
struct Ctx(ImplicitlyCopyable):
    var logits: P32
    var bias: P32
    var weights: P32
    var experts: PI32
    var T: Int
    var E: Int
    var k: Int
    var renorm: Bool
    var scale: Float64
    var n_groups: Int
    var topk_groups: Int


# ------------------------------------------------------------------------- top-k list

@always_inline
def _offer(topv: P64, topi: PI32, k: Int, n: Int, v: Float64, j: Int) -> Int:
    """Offer key v of index j (larger than every index offered before) to the sorted list
    topv/topi of n <= k entries (desc key, asc index); returns the new length."""
    if n == k and not (v > topv[unsafe_offset=k - 1]):
        return n
    var pos = n if n < k else k - 1
    while pos > 0 and topv[unsafe_offset=pos - 1] < v:
        topv[unsafe_offset=pos] = topv[unsafe_offset=pos - 1]
        topi[unsafe_offset=pos] = topi[unsafe_offset=pos - 1]
        pos -= 1
    topv[unsafe_offset=pos] = v
    topi[unsafe_offset=pos] = Int32(j)
    return n + 1 if n < k else k


@always_inline
def _select_range[dt: DType](row: Pointer[Scalar[dt], MutUntrackedOrigin], start: Int, end: Int, k: Int, n0: Int, topv: P64, topi: PI32) -> Int:
    """Scalar path: offer row[start:end] (NaN as -inf)."""
    var n = n0
    for j in range(start, end):
        var v = Float64(row[unsafe_offset=j])
        if isnan(v):
            v = neg_inf[F64]()
        n = _offer(topv, topi, k, n, v, j)
    return n


@always_inline
def _select_vec[dt: DType](
    row: Pointer[Scalar[dt], MutUntrackedOrigin], seg: PInt, nseg: Int, seglen: Int, k: Int,
    topv: P64, topi: PI32, cv: Pointer[Scalar[dt], MutUntrackedOrigin], ci: PI32,
) -> Int:
    """Top-k over the segments [seg[s], seg[s] + seglen) (ascending), branch-free for the
    usual case. The k-th largest of the per-lane maxima (2V distinct entries) is a lower
    bound of the k-th largest key: one vector pass compress-stores the few candidates
    >= that bound (in index order), then each candidate's rank (keys strictly greater +
    equal keys at lower index) is computed with vector compares and it is stored at that
    rank if < k. topv/topi need k + 1 slots (slot k takes the losers), cv/ci E + 2V.

    Returns -1 when the bound does not apply (segments shorter than a vector, k wider than
    a vector, or a bound of -inf, where NaN / -inf entries may have to be chosen)."""
    comptime V = simd_width_of[dt]()
    var nvs = seglen // V
    if nvs == 0 or k > V:
        return -1
    var lm = _lane_maxima(row, seg, nseg, nvs)
    var thr = _kth_of_maxima(lm[0], lm[1], k)
    if thr == neg_inf[dt]():
        return -1
    var c = _pack_candidates(row, seg, nseg, seglen, thr, cv, ci)
    if c > 2 * V:  # many entries tied at the bound: insert them one by one, ascending index
        var n = 0
        for i in range(c):
            n = _offer(topv, topi, k, n, Float64(cv[unsafe_offset=i]), Int(ci[unsafe_offset=i]))
        return n
    _rank_candidates(cv, ci, c, k, topv, topi)
    return k


@always_inline
def _lane_maxima[dt: DType](
    row: Pointer[Scalar[dt], MutUntrackedOrigin], seg: PInt, nseg: Int, nvs: Int
) -> Tuple[SIMD[dt, simd_width_of[dt]()], SIMD[dt, simd_width_of[dt]()]]:
    """The per-lane maxima of the segments' first nvs vectors (NaN never wins); for narrow
    (float64) vectors in two accumulators (even / odd vectors): 2V maxima of disjoint sets
    keep the bound tight. The second is all -inf for wide vectors."""
    comptime V = simd_width_of[dt]()
    comptime Vec = SIMD[dt, V]
    comptime TWO = V < 16
    var lm0 = Vec(neg_inf[dt]())
    var lm1 = lm0
    var odd = False
    for s in range(nseg):
        var base = seg[unsafe_offset=s]
        for b in range(nvs):
            var v = row.unsafe_load[width=V](base + b * V)
            comptime if TWO:
                if odd:
                    lm1 = v.gt(lm1).select(v, lm1)
                else:
                    lm0 = v.gt(lm0).select(v, lm0)
                odd = not odd
            else:
                lm0 = v.gt(lm0).select(v, lm0)
    return (lm0, lm1)


@always_inline
def _kth_of_maxima[dt: DType](lm0: SIMD[dt, simd_width_of[dt]()], lm1: SIMD[dt, simd_width_of[dt]()], k: Int) -> Scalar[dt]:
    """The k-th largest of the lane maxima (lm1 only for narrow vectors): the smallest one
    with fewer than k maxima above it."""
    comptime V = simd_width_of[dt]()
    comptime Vec = SIMD[dt, V]
    comptime IV = SIMD[DType.int32, V]
    comptime TWO = V < 16
    var above0 = IV(0)
    var above1 = IV(0)
    for j in range(V):
        var x0 = Vec(lm0[j])
        above0 += x0.gt(lm0).cast[DType.int32]()
        comptime if TWO:
            var x1 = Vec(lm1[j])
            above0 += x1.gt(lm0).cast[DType.int32]()
            above1 += x0.gt(lm1).cast[DType.int32]() + x1.gt(lm1).cast[DType.int32]()
    var thr = above0.lt(IV(Int32(k))).select(lm0, Vec(inf[dt]())).reduce_min()
    comptime if TWO:
        thr = min(thr, above1.lt(IV(Int32(k))).select(lm1, Vec(inf[dt]())).reduce_min())
    return thr


@always_inline
def _pack_candidates[dt: DType](
    row: Pointer[Scalar[dt], MutUntrackedOrigin], seg: PInt, nseg: Int, seglen: Int, thr: Scalar[dt],
    cv: Pointer[Scalar[dt], MutUntrackedOrigin], ci: PI32,
) -> Int:
    """Compress-store the keys >= thr of the segments and their indices to cv / ci, in
    index order (vectors, then each segment's scalar tail); returns their count."""
    comptime V = simd_width_of[dt]()
    var nvs = seglen // V
    var lane = iota[DType.int32, V]()
    var thrv = SIMD[dt, V](thr)
    var c = 0
    for s in range(nseg):
        var base = seg[unsafe_offset=s]
        for b in range(nvs):
            var at = base + b * V
            var v = row.unsafe_load[width=V](at)
            var m = v.ge(thrv)
            append_packed(v, m, cv.unsafe_offset(c))
            append_packed(lane + Int32(at), m, ci.unsafe_offset(c))
            c += Int(m.cast[DType.int32]().reduce_add())
        for j in range(base + nvs * V, base + seglen):
            var x = row[unsafe_offset=j]
            if x >= thr:
                cv[unsafe_offset=c] = x
                ci[unsafe_offset=c] = Int32(j)
                c += 1
    return c


@always_inline
def _rank_candidates[dt: DType](cv: Pointer[Scalar[dt], MutUntrackedOrigin], ci: PI32, c: Int, k: Int, topv: P64, topi: PI32):
    """Store each of the c <= 2V candidates at its rank under the tie rule (keys strictly
    greater + equal keys at lower index) when < k, else in the losers' slot k."""
    comptime V = simd_width_of[dt]()
    comptime Vec = SIMD[dt, V]
    comptime IV = SIMD[DType.int32, V]
    var lane = iota[DType.int32, V]()
    var nblk = (c + V - 1) // V
    for blk in range(nblk):
        var vals = cv.unsafe_load[width=V](blk * V)
        var ln = lane + Int32(blk * V)
        var r = IV(0)
        for j in range(c):
            var bj = Vec(cv[unsafe_offset=j])
            r += bj.gt(vals).cast[DType.int32]() + (bj.eq(vals) & ln.gt(IV(Int32(j)))).cast[DType.int32]()
        for i in range(min(V, c - blk * V)):
            var dst = min(Int(r[i]), k)
            topv[unsafe_offset=dst] = Float64(vals[i])
            topi[unsafe_offset=dst] = ci[unsafe_offset=blk * V + i]


@always_inline
def _select_small[dt: DType](
    row: Pointer[Scalar[dt], MutUntrackedOrigin], E: Int, k: Int, topv: P64, topi: PI32,
    buf: Pointer[Scalar[dt], MutUntrackedOrigin],
) -> Int:
    """Top-k of a row of E <= 64 keys by k rounds of argmax over a copy in buf (E + V
    slots): NaN keys become -inf, padding and taken lanes are NaN (never > or ==), and
    the first lane equal to the max wins, which is the tie rule."""
    comptime V = simd_width_of[dt]()
    comptime Vec = SIMD[dt, V]
    var nv = (E + V - 1) // V
    var nan = Vec(Scalar[dt](0) / Scalar[dt](0))
    var ninf = Vec(neg_inf[dt]())
    for b in range(nv):
        var v: Vec
        if (b + 1) * V <= E:
            v = row.unsafe_load[width=V](b * V)
            v = isnan(v).select(ninf, v)
        else:
            v = nan
            for i in range(E - b * V):
                var x = row[unsafe_offset=b * V + i]
                v[i] = neg_inf[dt]() if isnan(x) else x
        buf.unsafe_store(b * V, v)
    var pw = SIMD[DType.uint64, V](1) << iota[DType.uint64, V]()
    for s in range(k):
        var mv = ninf
        for b in range(nv):
            var v = buf.unsafe_load[width=V](b * V)
            mv = v.gt(mv).select(v, mv)
        var m = mv.reduce_max()
        var bits = UInt64(0)
        for b in range(nv):
            var hit = buf.unsafe_load[width=V](b * V).eq(Vec(m))
            bits |= hit.select(pw, SIMD[DType.uint64, V](0)).reduce_or() << UInt64(b * V)
        var j = Int(count_trailing_zeros(bits))
        topv[unsafe_offset=s] = Float64(m)
        topi[unsafe_offset=s] = Int32(j)
        buf[unsafe_offset=j] = nan[0]
    return k


# ------------------------------------------------------------------------- row pieces

@always_inline
def _row_max(row: P32, E: Int) -> Float32:
    """max over the row ignoring NaN (-inf if all NaN / -inf)."""
    var mv = SIMD[F32, W](neg_inf[F32]())
    var j = 0
    while j + W <= E:
        var v = row.unsafe_load[width=W](j)
        mv = v.gt(mv).select(v, mv)
        j += W
    var m = mv.reduce_max()
    while j < E:
        var x = row[unsafe_offset=j]
        if x > m:
            m = x
        j += 1
    return m


@always_inline
def _count_inf(row: P32, E: Int) -> Float64:
    var c = 0
    for j in range(E):
        if row[unsafe_offset=j] == inf[F32]():
            c += 1
    return Float64(c)


def _softmax_norm32(row: P32, E: Int) -> Tuple[Float64, Float64]:
    """(m, Z): row max and sum of exp(l - m) over non-NaN entries (float32 exps, float64
    sum); m = +inf gives Z = number of +inf entries, m = -inf gives Z = 0."""
    var m = _row_max(row, E)
    if m == inf[F32]():
        return (Float64(m), _count_inf(row, E))
    if m == neg_inf[F32]():
        return (Float64(m), 0.0)
    var mv = SIMD[F32, W](m)
    var acc = SIMD[F64, W](0)
    var j = 0
    while j + W <= E:
        var v = row.unsafe_load[width=W](j)
        var e = exp(v - mv)
        acc += isnan(v).select(SIMD[F32, W](0), e).cast[F64]()
        j += W
    var z = acc.reduce_add()
    while j < E:
        var x = row[unsafe_offset=j]
        if not isnan(x):
            z += Float64(exp(x - m))
        j += 1
    return (Float64(m), z)


# portable exp (aura_lab.routing.portable_exp): the same IEEE operations as the numpy and torch
# backends, so selection keys with a bias are bit-identical everywhere. Mojo contracts
# a * b + c into an FMA by default; llvm.arithmetic.fence on each product prevents it.
comptime LOG2E = 1.4426950408889634
comptime LN2_HI = 0.6931471803691238
comptime LN2_LO = 1.9082149292705877e-10
comptime EXP_LIMIT = 708.0


@always_inline
def _fence[w: Int](x: SIMD[F64, w]) -> SIMD[F64, w]:
    return llvm_intrinsic["llvm.arithmetic.fence", SIMD[F64, w]](x)


@always_inline
def portable_exp_simd[w: Int](x: SIMD[F64, w]) -> SIMD[F64, w]:
    comptime V = SIMD[F64, w]
    var xc = min(max(x, V(-EXP_LIMIT)), V(EXP_LIMIT))
    var n = floor(_fence(xc * LOG2E) + 0.5)
    var r = (xc - _fence(n * LN2_HI)) - _fence(n * LN2_LO)
    var p = V(2.08767569878681e-09)
    p = _fence(p * r) + 2.505210838544172e-08
    p = _fence(p * r) + 2.755731922398589e-07
    p = _fence(p * r) + 2.7557319223985893e-06
    p = _fence(p * r) + 2.48015873015873e-05
    p = _fence(p * r) + 0.0001984126984126984
    p = _fence(p * r) + 0.001388888888888889
    p = _fence(p * r) + 0.008333333333333333
    p = _fence(p * r) + 0.041666666666666664
    p = _fence(p * r) + 0.16666666666666666
    p = _fence(p * r) + 0.5
    p = _fence(p * r) + 1.0
    p = _fence(p * r) + 1.0
    var y = p * bitcast[F64, w]((n.cast[DType.int64]() + 1023) << 52)
    return x.lt(V(-EXP_LIMIT)).select(V(0), x.gt(V(EXP_LIMIT)).select(V(inf[F64]()), y))


def _softmax_keys(row: P32, bias: P32, E: Int, keys: P64) -> Tuple[Float64, Float64]:
    """keys = softmax(l) + bias in float64 with portable exps and a sequential sum
    (NaN -> -inf); returns (m, Z) as _softmax_norm32."""
    var m32 = _row_max(row, E)
    var m = Float64(m32)
    var z = 0.0
    if m32 == inf[F32]():
        for j in range(E):
            keys[unsafe_offset=j] = 1.0 if row[unsafe_offset=j] == inf[F32]() else 0.0
    elif m32 == neg_inf[F32]():
        for j in range(E):
            keys[unsafe_offset=j] = 0.0
    else:
        var mv = SIMD[F64, W64](m)
        var j = 0
        while j + W64 <= E:
            var l = row.unsafe_load[width=W64](j).cast[F64]()
            keys.unsafe_store(j, isnan(l).select(SIMD[F64, W64](0), portable_exp_simd(l - mv)))
            j += W64
        while j < E:
            var l = Float64(row[unsafe_offset=j])
            keys[unsafe_offset=j] = 0.0 if isnan(l) else portable_exp_simd[1](l - m)[0]
            j += 1
    for j in range(E):  # in index order, as the reference sums
        z += keys[unsafe_offset=j]
    var j = 0
    var zv = SIMD[F64, W64](z)
    var ninf = SIMD[F64, W64](neg_inf[F64]())
    if z > 0:
        while j + W64 <= E:
            var l = row.unsafe_load[width=W64](j).cast[F64]()
            var p = keys.unsafe_load[width=W64](j) / zv
            keys.unsafe_store(j, isnan(l).select(ninf, p + bias.unsafe_load[width=W64](j).cast[F64]()))
            j += W64
    while j < E:
        var p = keys[unsafe_offset=j] / z if z > 0 else 0.0
        keys[unsafe_offset=j] = neg_inf[F64]() if isnan(row[unsafe_offset=j]) else p + Float64(bias[unsafe_offset=j])
        j += 1
    return (m, z)


def _sigmoid_keys(row: P32, bias: P32, E: Int, keys: P64):
    """keys = 1/(1+exp(-l)) + bias in float64 with portable exps (NaN -> -inf)."""
    var one = SIMD[F64, W64](1)
    var ninf = SIMD[F64, W64](neg_inf[F64]())
    var j = 0
    while j + W64 <= E:
        var l = row.unsafe_load[width=W64](j).cast[F64]()
        var s = one / (one + portable_exp_simd(-l))
        keys.unsafe_store(j, isnan(l).select(ninf, s + bias.unsafe_load[width=W64](j).cast[F64]()))
        j += W64
    while j < E:
        var l = Float64(row[unsafe_offset=j])
        keys[unsafe_offset=j] = neg_inf[F64]() if isnan(l) else 1.0 / (1.0 + portable_exp_simd[1](-l)[0]) + Float64(bias[unsafe_offset=j])
        j += 1


@always_inline
def _group_max(row: P32, start: Int, size: Int) -> Float64:
    return Float64(_row_max(row.unsafe_offset(start), size))


@always_inline
def _group_top2(keys: P64, start: Int, size: Int) -> Float64:
    """Sum of the two largest keys of the group (the key itself for a group of one)."""
    var t1 = neg_inf[F64]()
    var t2 = neg_inf[F64]()
    var j = start
    if size >= 2 * W64:
        var b1 = SIMD[F64, W64](neg_inf[F64]())
        var b2 = b1
        while j + W64 <= start + size:
            var v = keys.unsafe_load[width=W64](j)
            b2 = max(b2, min(b1, v))
            b1 = max(b1, v)
            j += W64
        # b1 >= b2 lane-wise: top-2 = max of b1, then the larger of b2's max and b1's max
        # without (one occurrence of) its largest lane; keys are never NaN
        t1 = b1.reduce_max()
        var first = count_trailing_zeros(Int(b1.eq(SIMD[F64, W64](t1)).select(
            SIMD[DType.uint32, W64](1) << iota[DType.uint32, W64](), SIMD[DType.uint32, W64](0)).reduce_or()))
        var rest = iota[DType.int32, W64]().eq(SIMD[DType.int32, W64](Int32(first))).select(
            SIMD[F64, W64](neg_inf[F64]()), b1)
        t2 = max(b2.reduce_max(), rest.reduce_max())
    while j < start + size:
        var x = keys[unsafe_offset=j]
        t2 = max(t2, min(t1, x))
        t1 = max(t1, x)
        j += 1
    return t1 if size == 1 else t1 + t2


# ------------------------------------------------------------------------- phase 1

comptime RB = 16  # rows per weight block


struct RouteScratch(Movable):
    """One chunk's working memory (owned: freed when the chunk is done)."""

    var keys: OwnedArray[Float64]  # the row's selection keys (with a bias)
    var topv: OwnedArray[Float64]  # the top-k keys, desc (slot k takes _select_vec's losers)
    var topi: OwnedArray[Int32]  # and their experts
    var cv32: OwnedArray[Float32]  # _select_vec's candidates / _select_small's row copy
    var cv64: OwnedArray[Float64]
    var ci: OwnedArray[Int32]  # the candidates' experts
    var gv: OwnedArray[Float64]  # grouped: the best groups' scores
    var gi: OwnedArray[Int32]  # and their ids
    var keep: OwnedArray[UInt8]  # 1 for a kept group
    var seg: OwnedArray[Int]  # the candidate segments' first experts, ascending
    var sx: OwnedArray[Float64]  # the block's selected logits (NaN -> -inf)
    var sm: OwnedArray[Float64]  # the row's shift for softmax, per selected logit
    var se: OwnedArray[Float64]  # exp(sx - sm) or sigmoid(sx)
    var rm: OwnedArray[Float64]  # softmax: the row's shift (+-inf: limit rules)
    var rz: OwnedArray[Float64]  # softmax without renormalize: the row's sum

    def __init__(out self, E: Int, k: Int, G: Int, has_bias: Bool):
        var top = max(k, W, 16) + 1
        var staged = RB * k + W64
        self.keys = OwnedArray[Float64](E if has_bias else 1)
        self.topv = OwnedArray[Float64](top)
        self.topi = OwnedArray[Int32](top)
        self.cv32 = OwnedArray[Float32](E + 2 * W)
        self.cv64 = OwnedArray[Float64](E + 2 * W64)
        self.ci = OwnedArray[Int32](E + 2 * W)
        self.gv = OwnedArray[Float64](G)
        self.gi = OwnedArray[Int32](G)
        self.keep = OwnedArray[UInt8](G)
        self.seg = OwnedArray[Int](G, 0)  # ungrouped: one segment from expert 0
        self.sx = OwnedArray[Float64](staged, 0.0)
        self.sm = OwnedArray[Float64](staged, 0.0)
        self.se = OwnedArray[Float64](staged)
        self.rm = OwnedArray[Float64](RB)
        self.rz = OwnedArray[Float64](RB)


@always_inline
def _row_keys[scoring: Int, has_bias: Bool](c: Ctx, row: P32, s: RouteScratch) -> Tuple[Float64, Float64]:
    """With a bias: the row's selection keys into s.keys, and for softmax the row's (m, Z)
    (_softmax_keys); (0, 0) otherwise."""
    comptime if has_bias:
        comptime if scoring == SOFTMAX:
            return _softmax_keys(row, c.bias, c.E, s.keys.data)
        else:
            _sigmoid_keys(row, c.bias, c.E, s.keys.data)
    return (0.0, 0.0)


@always_inline
def _kept_groups[has_bias: Bool](c: Ctx, row: P32, s: RouteScratch) -> Int:
    """Grouped routing: score each group (its max logit, or with a bias the sum of its top-2
    keys), keep the topk_groups best (ties: lower group); their first experts go to s.seg in
    ascending order. Returns their number."""
    var G = c.n_groups
    var gsize = c.E // G
    var ng = 0
    for g in range(G):
        var gs: Float64
        comptime if has_bias:
            gs = _group_top2(s.keys.data, g * gsize, gsize)
        else:
            gs = _group_max(row, g * gsize, gsize)
        ng = _offer(s.gv.data, s.gi.data, c.topk_groups, ng, gs, g)
    for g in range(G):
        s.keep[g] = 0
    for i in range(c.topk_groups):
        s.keep[Int(s.gi[i])] = 1
    var nseg = 0
    for g in range(G):
        if s.keep[g] != 0:
            s.seg[nseg] = g * gsize
            nseg += 1
    return nseg


@always_inline
def _top_k[dt: DType, grouped: Bool](
    keys: Pointer[Scalar[dt], MutUntrackedOrigin], cv: Pointer[Scalar[dt], MutUntrackedOrigin],
    c: Ctx, s: RouteScratch, nseg: Int, seglen: Int, small: Bool,
):
    """The top-k of the row's keys over the candidate segments into s.topv / s.topi (desc
    key, asc index): _select_small for short ungrouped rows, else _select_vec, with the
    scalar _select_range where its bound does not apply. cv: s.cv32 or s.cv64 (as dt)."""
    var n: Int
    comptime if grouped:
        n = _select_vec[dt](keys, s.seg.data, nseg, seglen, c.k, s.topv.data, s.topi.data, cv, s.ci.data)
    else:
        if small:
            n = _select_small[dt](keys, c.E, c.k, s.topv.data, s.topi.data, cv)
        else:
            n = _select_vec[dt](keys, s.seg.data, nseg, seglen, c.k, s.topv.data, s.topi.data, cv, s.ci.data)
    if n < 0:
        n = 0
        for q in range(nseg):
            var b = s.seg[q]
            n = _select_range[dt](keys, b, b + seglen, c.k, n, s.topv.data, s.topi.data)


@always_inline
def _stage_row[scoring: Int, has_bias: Bool](
    c: Ctx, t: Int, slot: Int, row: P32, m: Float64, z: Float64, s: RouteScratch, hist: PI64
):
    """Row t (slot `slot` of its block) after its top-k: write its experts and count them in
    hist; stage its selected logits in s.sx (without a bias the keys in s.topv are exactly
    them) and, for softmax, its shift in s.sm and s.rm and its sum in s.rz."""
    var k = c.k
    var o = slot * k
    var eout = c.experts.unsafe_offset(t * k)
    var ninf = neg_inf[F64]()
    var mx = ninf
    comptime if not has_bias:
        if k == W64:  # one vector each (DeepSeek-sized k = 8 with AVX-512)
            var xv = s.topv.data.unsafe_load[width=W64](0)
            s.sx.data.unsafe_store(o, xv)
            mx = xv.reduce_max()
            eout.unsafe_store(0, s.topi.data.unsafe_load[width=W64](0))
    if not has_bias and k == W64:
        for q in range(k):
            hist[unsafe_offset=Int(s.topi[q])] += 1
    else:
        for q in range(k):
            var x: Float64
            comptime if has_bias:
                x = Float64(row[unsafe_offset=Int(s.topi[q])])
                x = ninf if isnan(x) else x
            else:
                x = s.topv[q]
            s.sx[o + q] = x
            mx = max(mx, x)
            var e = Int(s.topi[q])
            eout[unsafe_offset=q] = Int32(e)
            hist[unsafe_offset=e] += 1
    comptime if scoring == SOFTMAX:
        var rz = z
        if not c.renorm:
            var rm = m
            comptime if not has_bias:
                var mz = _softmax_norm32(row, c.E)
                rm = mz[0]
                rz = mz[1]
            mx = rm
        s.rm[slot] = mx
        s.rz[slot] = rz
        var sh = mx if (mx != ninf and mx != inf[F64]()) else 0.0
        if k == W64:
            s.sm.data.unsafe_store(o, SIMD[F64, W64](sh))
        else:
            for q in range(k):
                s.sm[o + q] = sh


@always_inline
def _block_exps[scoring: Int](s: RouteScratch, nel: Int):
    """The block's nel staged logits through exp (softmax: shifted) or the sigmoid, W64 at a
    time (independent across rows: they vectorize and pipeline)."""
    var i = 0
    while i < nel:
        var x = s.sx.data.unsafe_load[width=W64](i)
        comptime if scoring == SOFTMAX:
            s.se.data.unsafe_store(i, exp(x - s.sm.data.unsafe_load[width=W64](i)))
        else:
            s.se.data.unsafe_store(i, SIMD[F64, W64](1) / (SIMD[F64, W64](1) + exp(-x)))
        i += W64


@always_inline
def _weight_factor[scoring: Int](c: Ctx, slot: Int, s: RouteScratch) -> Float64:
    """The factor that turns the staged exps of block slot `slot` into its weights: scale
    over the normalizer (softmax: the row's sum, or with renormalize the selected ones';
    a row max of +inf gives equal mass on its +inf logits, replacing its exps by 0/1;
    -inf gives 0; sigmoid: with renormalize over the selected sum)."""
    var k = c.k
    var o = slot * k
    var f = c.scale
    comptime if scoring == SOFTMAX:
        var mx = s.rm[slot]
        if mx == inf[F64]():  # the limit: equal mass on the +inf logits
            var cnt = 0.0
            if c.renorm:
                for q in range(k):
                    cnt += 1.0 if s.sx[o + q] == mx else 0.0
            else:
                cnt = s.rz[slot]
            for q in range(k):
                s.se[o + q] = 1.0 if s.sx[o + q] == mx else 0.0
            f = f / cnt
        elif mx == neg_inf[F64]():
            f = 0.0
        else:
            var zz = s.rz[slot]
            if c.renorm:
                if k == W64:
                    zz = s.se.data.unsafe_load[width=W64](o).reduce_add()
                else:
                    zz = 0.0
                    for q in range(k):
                        zz += s.se[o + q]
            f = f / zz
    else:
        if c.renorm:
            var sum = 0.0
            for q in range(k):
                sum += s.se[o + q]
            f = f / sum if sum > 0 else 0.0
    return f


@always_inline
def _store_weights[scoring: Int](c: Ctx, tb0: Int, tb1: Int, s: RouteScratch):
    """Normalize, scale and store the weights of rows [tb0, tb1) (one block)."""
    var k = c.k
    for t in range(tb0, tb1):
        var o = (t - tb0) * k
        var wout = c.weights.unsafe_offset(t * k)
        var f = _weight_factor[scoring](c, t - tb0, s)
        if k == W64:
            wout.unsafe_store(0, (s.se.data.unsafe_load[width=W64](o) * f).cast[F32]())
        else:
            for q in range(k):
                wout[unsafe_offset=q] = Float32(s.se[o + q] * f)


def _route_rows[scoring: Int, has_bias: Bool, grouped: Bool](c: Ctx, r0: Int, r1: Int, hist: PI64):
    """Route rows [r0, r1): select per row, then weights for blocks of RB rows at once
    (the exps of a block are independent, so they vectorize and pipeline across rows)."""
    var s = RouteScratch(c.E, c.k, c.n_groups if grouped else 1, has_bias)
    var seglen = c.E // c.n_groups if grouped else c.E
    # short rows (at most 64 keys, few vectors times k): k rounds of a vector argmax
    comptime VK = W64 if has_bias else W
    var small = c.E <= 64 and c.k * ((c.E + VK - 1) // VK) <= 16
    var tb0 = r0
    while tb0 < r1:
        var tb1 = min(r1, tb0 + RB)
        for t in range(tb0, tb1):
            var row = c.logits.unsafe_offset(t * c.E)
            var mz = _row_keys[scoring, has_bias](c, row, s)
            var nseg = 1
            comptime if grouped:
                nseg = _kept_groups[has_bias](c, row, s)
            comptime if has_bias:
                _top_k[F64, grouped](s.keys.data, s.cv64.data, c, s, nseg, seglen, small)
            else:
                _top_k[F32, grouped](row, s.cv32.data, c, s, nseg, seglen, small)
            _stage_row[scoring, has_bias](c, t, t - tb0, row, mz[0], mz[1], s, hist)
        _block_exps[scoring](s, (tb1 - tb0) * c.k)
        _store_weights[scoring](c, tb0, tb1, s)
        tb0 = tb1


# ------------------------------------------------------------------------- driver

def _run[scoring: Int, has_bias: Bool, grouped: Bool](
    c: Ctx, counts: PI64, perm: PI64, offsets: PI64, kept: PU8, capacity: Int, nthreads: Int, ctl: Control
):
    """Route rows in chunks (at most MAX_ROWS rows each, so that a cancel stops the call
    within one chunk), count per expert, then place each assignment in its expert's run;
    returns early, outputs partial, once ctl is cancelled."""
    var T = c.T
    var E = c.E
    var k = c.k
    var nchunks = 1 if nthreads <= 1 else min(T // 64 + 1, nthreads * 16)
    nchunks = max(nchunks, (T + MAX_ROWS - 1) // MAX_ROWS)
    var rows = (T + nchunks - 1) // nchunks
    nchunks = (T + rows - 1) // rows
    var hist = OwnedArray[Int64](nchunks * E, 0)  # per chunk and expert: counts, then cursors

    @always_inline
    def phase1(ch: Int) {imm}:
        var r0 = ch * rows
        var mode = ieee_begin()
        _route_rows[scoring, has_bias, grouped](c, r0, min(T, r0 + rows), hist.at(ch * E))
        ieee_end(mode)

    run_chunks(phase1, nchunks, nthreads, ctl)
    if ctl.cancelled():
        return

    # exclusive prefix sums: hist becomes each chunk's first slot per expert
    var run = Int64(0)
    for e in range(E):
        offsets[unsafe_offset=e] = run
        for ch in range(nchunks):
            var h = hist[ch * E + e]
            hist[ch * E + e] = run
            run += h
        counts[unsafe_offset=e] = run - offsets[unsafe_offset=e]
    offsets[unsafe_offset=E] = run

    var ex = c.experts

    @always_inline
    def phase3(ch: Int) {imm}:
        var cur = hist.at(ch * E)
        var a0 = ch * rows * k
        var a1 = min(T, (ch + 1) * rows) * k
        for a in range(a0, a1):
            var e = Int(ex[unsafe_offset=a])
            var pos = cur[unsafe_offset=e]
            cur[unsafe_offset=e] = pos + 1
            perm[unsafe_offset=Int(pos)] = Int64(a)
            if capacity >= 0:
                kept[unsafe_offset=a] = 1 if Int(pos - offsets[unsafe_offset=e]) < capacity else 0

    run_chunks(phase3, nchunks, nthreads, ctl)


def _dispatch[scoring: Int](c: Ctx, has_bias: Bool, grouped: Bool, counts: PI64, perm: PI64, offsets: PI64, kept: PU8, capacity: Int, nt: Int, ctl: Control):
    if has_bias:
        if grouped:
            _run[scoring, True, True](c, counts, perm, offsets, kept, capacity, nt, ctl)
        else:
            _run[scoring, True, False](c, counts, perm, offsets, kept, capacity, nt, ctl)
    else:
        if grouped:
            _run[scoring, False, True](c, counts, perm, offsets, kept, capacity, nt, ctl)
        else:
            _run[scoring, False, False](c, counts, perm, offsets, kept, capacity, nt, ctl)


def route_block(p: RoutingParams) raises:
    """Route a block (aura_lab/routing/problem.py's ABI; addresses validated there, bias and kept 0 when
    absent, capacity -1 for none); nothing for T == 0."""
    if p.T == 0:
        return
    var c = Ctx(
        P32(unsafe_from_address=p.logits), P32(unsafe_from_address=p.bias), P32(unsafe_from_address=p.weights),
        PI32(unsafe_from_address=p.experts), p.T, p.E, p.k, p.renormalize, p.scale, p.n_groups, p.topk_groups,
    )
    var counts = PI64(unsafe_from_address=p.counts)
    var perm = PI64(unsafe_from_address=p.perm)
    var offsets = PI64(unsafe_from_address=p.offsets)
    var kept = PU8(unsafe_from_address=p.kept)
    if p.capacity >= 0 and p.kept == 0:
        raise Error("routing: a capacity needs the kept output")
    if p.scoring == SOFTMAX:
        _dispatch[SOFTMAX](c, p.bias != 0, p.n_groups > 0, counts, perm, offsets, kept, p.capacity, p.threads, Control(p.control))
    elif p.scoring == SIGMOID:
        _dispatch[SIGMOID](c, p.bias != 0, p.n_groups > 0, counts, perm, offsets, kept, p.capacity, p.threads, Control(p.control))
    else:
        raise Error(String("routing: unknown scoring id ", p.scoring))
