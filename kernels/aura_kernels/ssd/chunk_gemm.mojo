# Small dense matrix products for the chunked SSD (aura_kernels/ssd/chunked.mojo): the
# chunk-sized products (Q x Q, Q x p, Q x n, p x n with Q = 64) of one (sequence, head) item,
# on one thread, on operands that sit in L1/L2. Row-major; no packing, no library call.
#
#     gemm(M, N, K, A, lda, Bm, ldb, Cm, ldc, accumulate):  C[M x N] (+)= A[M x K] Bm[K x N]
#     (a_trans: A stored transposed, read with strides; tri: skip a triangle's zero terms)
#
# Register block: MR = 8 rows x NV = 2 vectors of W lanes (16 accumulators); per k, 2 vector
# loads of Bm's row, 8 broadcasts of A and 16 FMAs (gemm[dtype, mr, nv] takes others). Edges:
# 1-row blocks for the rows past the last full block, 2- and 1-vector blocks, then scalar
# columns. On the 2-core AVX2 VM (W = 8, 16 ymm registers) 8 x 2 spilled: 23 GFLOP/s against
# 53-78 for 4 x 2. On the Zen 5 VM (AVX-512, 32 zmm; tools/bench_ssd_gemm.py --variants, one
# thread, load ~2.3, noisy) 8 x 2 ran 250-257 GFLOP/s on 64x64.64x128, 64x128.128x64 and
# 64x64.64x64 against 240, 239, 85-260 for 4 x 2 and 130-260 for 4 x 4; the training step
# (tools/ab_ssd_builds.py-style A/B, b=1 l=4096) 0.97x CPU with 8 x 2 against 4 x 2, 0.99x
# with 4 x 4: 8 x 2 is the default.
#
# `gemm_rate` (bench only) times it on L1/L2-resident operands, as the chunked backward uses
# it: tools/bench_ssd_gemm.py compares its flops/s with the sequential scan's.

from std.sys import simd_width_of
from std.time import perf_counter_ns
from aura_kernels.common import OwnedArray

comptime MR = 8
comptime NV = 2

# Which part of a product is needed or nonzero (the causal structure of a chunk's Q x Q
# matrices): FULL; A_UPPER, A_LOWER: A(r, k) is zero for k < r (k > r), so the sum skips
# those k; C_LOWER: only C(r, c) with c <= r is wanted (others may be left unwritten).
comptime FULL = 0
comptime A_UPPER = 1
comptime A_LOWER = 2
comptime C_LOWER = 3


@always_inline
def _tile[dtype: DType, mr: Int, nv: Int](k0: Int, k1: Int, A: Pointer[Scalar[dtype], MutUntrackedOrigin], sr: Int,
                                          sk: Int, Bm: Pointer[Scalar[dtype], MutUntrackedOrigin], ldb: Int,
                                          Cm: Pointer[Scalar[dtype], MutUntrackedOrigin], ldc: Int, accumulate: Bool):
    """C[mr x nv W] (+)= sum over k0 <= k < k1 of A(r, k) Bm[k, :], A(r, k) = A[r sr + k sk],
    the accumulators in registers."""
    comptime W = simd_width_of[dtype]()
    comptime NW = nv * W
    var c = SIMD[dtype, mr * NW](0)
    for k in range(k0, k1):
        var b = Bm.unsafe_load[width=NW](k * ldb)
        comptime for r in range(mr):
            var a = SIMD[dtype, NW](A[unsafe_offset=r * sr + k * sk])
            c = c.insert[offset=r * NW](a.fma(b, c.slice[NW, offset=r * NW]()))
    comptime for r in range(mr):
        var v = c.slice[NW, offset=r * NW]()
        if accumulate:
            v += Cm.unsafe_load[width=NW](r * ldc)
        Cm.unsafe_store(r * ldc, v)


@always_inline
def _cols[dtype: DType, mr: Int, nv: Int](M0: Int, N: Int, K: Int, A: Pointer[Scalar[dtype], MutUntrackedOrigin], sr: Int,
                                          sk: Int, Bm: Pointer[Scalar[dtype], MutUntrackedOrigin], ldb: Int,
                                          Cm: Pointer[Scalar[dtype], MutUntrackedOrigin], ldc: Int, accumulate: Bool,
                                          tri: Int):
    """Rows M0 .. M0 + mr, every (wanted) column: nv-vector blocks (only wholly wanted ones
    under C_LOWER), then 2-vector and 1-vector blocks, then scalar columns."""
    comptime W = simd_width_of[dtype]()
    var a = A.unsafe_offset(M0 * sr)
    var cr = Cm.unsafe_offset(M0 * ldc)
    var k0 = M0 if tri == A_UPPER else 0
    var k1 = min(K, M0 + mr) if tri == A_LOWER else K
    var n1 = min(N, M0 + mr) if tri == C_LOWER else N
    var j = 0
    while j + nv * W <= n1:
        _tile[dtype, mr, nv](k0, k1, a, sr, sk, Bm.unsafe_offset(j), ldb, cr.unsafe_offset(j), ldc, accumulate)
        j += nv * W
    comptime if nv > 2:
        while j < n1 and j + 2 * W <= N:
            _tile[dtype, mr, 2](k0, k1, a, sr, sk, Bm.unsafe_offset(j), ldb, cr.unsafe_offset(j), ldc, accumulate)
            j += 2 * W
    comptime if nv > 1:
        while j < n1 and j + W <= N:
            _tile[dtype, mr, 1](k0, k1, a, sr, sk, Bm.unsafe_offset(j), ldb, cr.unsafe_offset(j), ldc, accumulate)
            j += W
    while j < n1:
        for r in range(mr):
            var s = Scalar[dtype](0)
            for k in range(k0, k1):
                s += a[unsafe_offset=r * sr + k * sk] * Bm[unsafe_offset=k * ldb + j]
            if accumulate:
                s += cr[unsafe_offset=r * ldc + j]
            cr[unsafe_offset=r * ldc + j] = s
        j += 1


def gemm[dtype: DType, mr: Int = MR, nv: Int = NV](M: Int, N: Int, K: Int, A: Pointer[Scalar[dtype], MutUntrackedOrigin],
                                                   lda: Int, Bm: Pointer[Scalar[dtype], MutUntrackedOrigin], ldb: Int,
                                                   Cm: Pointer[Scalar[dtype], MutUntrackedOrigin], ldc: Int,
                                                   accumulate: Bool, a_trans: Bool = False, tri: Int = FULL):
    """C[M x N] = op(A)[M x K] Bm[K x N] (accumulate: C +=), op(A) = A (M x K, row-major,
    leading dimension lda) or, a_trans, the transpose of A stored K x M; Bm and C row-major
    with leading dimensions ldb, ldc. tri: see FULL .. C_LOWER. Register block: mr rows x nv
    vectors."""
    var sr = 1 if a_trans else lda
    var sk = lda if a_trans else 1
    var i = 0
    while i + mr <= M:
        _cols[dtype, mr, nv](i, N, K, A, sr, sk, Bm, ldb, Cm, ldc, accumulate, tri)
        i += mr
    while i < M:
        _cols[dtype, 1, nv](i, N, K, A, sr, sk, Bm, ldb, Cm, ldc, accumulate, tri)
        i += 1


def _log2(w: Int) -> Int:
    var k = 0
    while (1 << k) < w:
        k += 1
    return k


@always_inline
def _transpose_block[dtype: DType, w: Int](src: Pointer[Scalar[dtype], MutUntrackedOrigin], lds: Int,
                                           dst: Pointer[Scalar[dtype], MutUntrackedOrigin], ldd: Int):
    """dst[w x w] = src[w x w] transposed (w a power of two) in registers: log2(w) rounds that
    interleave row i with row i + w/2 into rows 2i, 2i + 1; each round rotates the bits of
    (row, column) by one, so log2(w) rounds swap row and column."""
    var m = SIMD[dtype, w * w](0)
    comptime for r in range(w):
        m = m.insert[offset=r * w](src.unsafe_load[width=w](r * lds))
    comptime for _ in range(_log2(w)):
        var nxt = SIMD[dtype, w * w](0)
        comptime for i in range(w // 2):
            nxt = nxt.insert[offset=2 * i * w](m.slice[w, offset=i * w]().interleave(m.slice[w, offset=(i + w // 2) * w]()))
        m = nxt
    comptime for c in range(w):
        dst.unsafe_store(c * ldd, m.slice[w, offset=c * w]())


def transpose[dtype: DType](rows: Int, cols: Int, src: Pointer[Scalar[dtype], MutUntrackedOrigin], lds: Int,
                            dst: Pointer[Scalar[dtype], MutUntrackedOrigin], ldd: Int):
    """dst[cols x rows] = src[rows x cols] transposed: W x W blocks in registers (3x the
    element-by-element loop on a 64 x 128 float32 block, AVX2), the edges element by element."""
    comptime W = simd_width_of[dtype]()
    var r = 0
    while r + W <= rows:
        var c = 0
        while c + W <= cols:
            _transpose_block[dtype, W](src.unsafe_offset(r * lds + c), lds, dst.unsafe_offset(c * ldd + r), ldd)
            c += W
        _transpose_elements(r, r + W, c, cols, src, lds, dst, ldd)
        r += W
    _transpose_elements(r, rows, 0, cols, src, lds, dst, ldd)


def _transpose_elements[dtype: DType](r0: Int, r1: Int, c0: Int, c1: Int, src: Pointer[Scalar[dtype], MutUntrackedOrigin],
                                      lds: Int, dst: Pointer[Scalar[dtype], MutUntrackedOrigin], ldd: Int):
    """dst[c, r] = src[r, c] for r0 <= r < r1, c0 <= c < c1."""
    for r in range(r0, r1):
        for c in range(c0, c1):
            dst[unsafe_offset=c * ldd + r] = src[unsafe_offset=r * lds + c]


def _gemm_variant[dtype: DType](variant: Int, M: Int, N: Int, K: Int, A: Pointer[Scalar[dtype], MutUntrackedOrigin],
                                Bm: Pointer[Scalar[dtype], MutUntrackedOrigin], Cm: Pointer[Scalar[dtype], MutUntrackedOrigin],
                                accumulate: Bool):
    """C = A Bm with register block `variant` of VARIANTS (0: the default, MR x NV)."""
    if variant == 1:
        gemm[dtype, 4, 4](M, N, K, A, K, Bm, N, Cm, N, accumulate)
    elif variant == 2:
        gemm[dtype, 8, 2](M, N, K, A, K, Bm, N, Cm, N, accumulate)
    elif variant == 3:
        gemm[dtype, 2, 4](M, N, K, A, K, Bm, N, Cm, N, accumulate)
    elif variant == 4:
        gemm[dtype, 4, 2](M, N, K, A, K, Bm, N, Cm, N, accumulate)
    else:
        gemm[dtype](M, N, K, A, K, Bm, N, Cm, N, accumulate)


def gemm_rate[dtype: DType](M: Int, N: Int, K: Int, reps: Int, variant: Int = 0) -> Float64:
    """Seconds for `reps` products C = A Bm of the given shape on one thread (operands
    allocated once, filled with small values, resident in cache after the first), with the
    register block `variant` (0: the default; 1: 4 x 4, 2: 8 x 2, 3: 2 x 4, 4: 4 x 2 vectors)."""
    var A = OwnedArray[Scalar[dtype]](M * K)
    var Bm = OwnedArray[Scalar[dtype]](K * N)
    var Cm = OwnedArray[Scalar[dtype]](M * N)
    for i in range(M * K):
        A[i] = Scalar[dtype](Float64(i % 7) * 0.125)
    for i in range(K * N):
        Bm[i] = Scalar[dtype](Float64(i % 5) * 0.25)
    _gemm_variant[dtype](variant, M, N, K, A.data, Bm.data, Cm.data, False)
    var t0 = perf_counter_ns()
    for _ in range(reps):
        _gemm_variant[dtype](variant, M, N, K, A.data, Bm.data, Cm.data, True)
    var secs = Float64(Int(perf_counter_ns() - t0)) * 1e-9
    _ = A^  # read through raw pointers above: alive until here
    _ = Bm^
    if Cm[0] != Cm[0]:  # keep the products alive (never true for these finite values)
        return -1.0
    return secs
