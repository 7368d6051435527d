# The batched engine: many small dense problems (point clouds or distance matrices) in one
# native call, in parallel over the problems, each on one thread through the single-call
# engine (engine.run_rips) unchanged, so every problem's bars are those of its own call.
#
# Input (aura_lab/persistence/batch.py validates it): b.data holds the problems back to back
# in one dtype (float32 / float64): problem c starts at element starts[c] and is an
# (sizes[c], dims[c]) point cloud (euclidean distances computed here, as distance.distances
# does for Y = None) or, with b.is_matrix, the validated full (sizes[c], sizes[c]) matrix.
# maxdims[c] is the engine's dimension (capped at n - 2), thresholds[c] the threshold: for a
# matrix the one actually used, for a cloud the user's, rounded down to the dtype, which is
# capped here at the enclosing radius as problem.effective_threshold does. order[] is the
# order in which the problems are handed to the threads (largest first balances them).
#
# Output (slots and codes declared in aura_lab/persistence/batch.py, generated into
# persistence_batch_abi.mojo): info[INFO_WORDS c ...] the engine's info[] of problem c
# (status -1 = not run: the batch was cancelled first); after all ran, result[RESULT_STATUS]
# the status (STATUS_OK, else that of the first problem that failed, result[RESULT_FAILED] its
# index), result[RESULT_BARS] the address of one float64 buffer of every problem's (dim, birth,
# death) triples, problem 0's first (count info[INFO_WORDS c + INFO_NBARS] each), each problem's sorted by dimension, birth, then death (-1, infinite,
# last: _sort_bars), result[RESULT_NBARS] their total (free with free_bars). The per-problem buffers
# are freed here; on failure or cancellation no buffer is left.
#
# Progress: stage STAGE_BATCH, problems done out of count; each problem's engine polls the
# same cancel word without reporting its own progress (Control.without_progress).

from std.utils.numerics import inf
from aura_kernels.common import F32, F64, Control, ieee_begin, ieee_end, run_chunks
from aura_kernels.distance.kernel import euclidean_self
from aura_kernels.persistence.containers import IntPtr, OwnedArray
from aura_kernels.persistence.engine import run_rips, free_bar_buffer
from aura_kernels.persistence.simplices import NSTATS
from aura_kernels.persistence.abi import PersistenceParams
from aura_kernels.persistence.batch_abi import (
    PersistenceBatchParams, INFO_STATUS, INFO_BARS, INFO_NBARS, INFO_WORDS, STATUS_OK, STATUS_CANCELLED,
    RESULT_STATUS, RESULT_BARS, RESULT_NBARS, RESULT_FAILED, STAGE_BATCH,
)

comptime F64Ptr = Pointer[Float64, MutUntrackedOrigin]


def run_batch(b: PersistenceBatchParams):
    """Every problem of the batch (see the header)."""
    if b.dtype_bits == 32:
        _run_batch[F32](b)
    else:
        _run_batch[F64](b)


def _run_batch[T: DType](b: PersistenceBatchParams):
    var ctl = Control(b.control)
    var order = IntPtr(unsafe_from_address=b.order)
    ctl.start_stage(STAGE_BATCH, b.count)

    @always_inline
    def task(k: Int) {imm}:
        var mode = ieee_begin()  # runtime workers start with FTZ/DAZ: compare denormals as the single call
        _one[T](b, order[unsafe_offset=k], ctl.without_progress())
        ieee_end(mode)
        ctl.add_done(1)

    run_chunks(task, b.count, b.threads, ctl)
    _gather(b, ctl)


def _one[T: DType](b: PersistenceBatchParams, c: Int, ctl: Control):
    """Problem c through the single-call engine on this thread."""
    var n = IntPtr(unsafe_from_address=b.sizes)[unsafe_offset=c]
    var start = IntPtr(unsafe_from_address=b.starts)[unsafe_offset=c]
    var maxdim = IntPtr(unsafe_from_address=b.maxdims)[unsafe_offset=c]
    var threshold = F64Ptr(unsafe_from_address=b.thresholds)[unsafe_offset=c]
    var src = Pointer[Scalar[T], MutUntrackedOrigin](unsafe_from_address=b.data).unsafe_offset(start)
    var matrix = OwnedArray[Scalar[T]](0 if b.is_matrix else n * n)
    var dist = Int(src)
    if not b.is_matrix:
        var d = IntPtr(unsafe_from_address=b.dims)[unsafe_offset=c]
        euclidean_self[T](src, matrix.data, n, d, ctl)
        dist = Int(matrix.data)
        threshold = _capped_threshold[T](matrix.data, n, threshold)
    var stats = OwnedArray[Int]((maxdim + 1) * NSTATS, 0)
    var info = b.info + 8 * INFO_WORDS * c
    var p = PersistenceParams(b.dtype_bits, dist, n, maxdim, threshold, b.modulus, 0, 1, b.budget, info,
                              Int(stats.data), False, 0, 0, 0, ctl.address)
    run_rips(p)
    var out = IntPtr(unsafe_from_address=info)
    if out[unsafe_offset=INFO_STATUS] == STATUS_OK:
        _sort_bars(F64Ptr(unsafe_from_address=out[unsafe_offset=INFO_BARS]), out[unsafe_offset=INFO_NBARS])
    _ = matrix.size  # alive until the engine is done
    _ = stats.size


def _capped_threshold[T: DType](D: Pointer[Scalar[T], MutUntrackedOrigin], n: Int, threshold: Float64) -> Float64:
    """problem.effective_threshold: min(threshold, enclosing radius min_i max_j D[i, j]) (0 for
    n <= 1); if that is infinite the largest finite distance (0 if none). threshold is
    already a value of T (or inf), so the result is one too."""
    var enclosing = Float64(0)
    if n > 1:
        enclosing = inf[F64]()
        for i in range(n):
            var row = Scalar[T](0)
            for j in range(n):
                row = max(row, D[unsafe_offset=i * n + j])
            enclosing = min(enclosing, Float64(row))
    var t = min(threshold, enclosing)
    if t == inf[F64]():
        t = 0
        for i in range(n * n):
            var v = Float64(D[unsafe_offset=i])
            if v < inf[F64]():
                t = max(t, v)
    return t


def _gather(b: PersistenceBatchParams, ctl: Control):
    """Every problem's bars into one buffer (see the header), the per-problem buffers freed."""
    var info = IntPtr(unsafe_from_address=b.info)
    var result = IntPtr(unsafe_from_address=b.result)
    var total = 0
    var status = STATUS_OK
    var failed = -1
    for c in range(b.count):
        var s = info[unsafe_offset=INFO_WORDS * c + INFO_STATUS]
        if s != STATUS_OK and failed < 0:
            status, failed = s, c
        total += info[unsafe_offset=INFO_WORDS * c + INFO_NBARS] if s == STATUS_OK else 0
    if ctl.cancelled() and status == STATUS_OK:
        status = STATUS_CANCELLED  # a cancel after the last problem ran
    var out = OwnedArray[Float64](3 * total if status == STATUS_OK else 1)
    var at = 0
    for c in range(b.count):
        var addr = info[unsafe_offset=INFO_WORDS * c + INFO_BARS]
        if addr == 0:
            continue
        var m = 3 * info[unsafe_offset=INFO_WORDS * c + INFO_NBARS]
        var src = F64Ptr(unsafe_from_address=addr)
        if status == STATUS_OK:
            for i in range(m):
                out[at + i] = src[unsafe_offset=i]
            at += m
        free_bar_buffer(addr)
        info[unsafe_offset=INFO_WORDS * c + INFO_BARS] = 0
    result[unsafe_offset=RESULT_STATUS] = status
    result[unsafe_offset=RESULT_BARS] = 0
    if status == STATUS_OK:  # handed over to Python (free_bars); else freed here
        result[unsafe_offset=RESULT_BARS] = Int(out^.disown())
    result[unsafe_offset=RESULT_NBARS] = total if status == STATUS_OK else 0
    result[unsafe_offset=RESULT_FAILED] = failed


def _sort_bars(bars: F64Ptr, m: Int):
    """The m (dim, birth, death) triples at bars in result order: by dimension, then birth,
    then death (-1, infinite, last), as result._sorted orders a diagram. Insertion sort: the
    engine writes H0 sorted already (union-find order) and the bars of a higher dimension in
    column order, by birth descending; a problem here has at most BATCH_MAX_N points."""
    for i in range(1, m):
        var d = bars[unsafe_offset=3 * i]
        var b = bars[unsafe_offset=3 * i + 1]
        var e = bars[unsafe_offset=3 * i + 2]
        var j = i - 1
        while j >= 0 and _bar_after(bars, j, d, b, e):
            bars[unsafe_offset=3 * j + 3] = bars[unsafe_offset=3 * j]
            bars[unsafe_offset=3 * j + 4] = bars[unsafe_offset=3 * j + 1]
            bars[unsafe_offset=3 * j + 5] = bars[unsafe_offset=3 * j + 2]
            j -= 1
        bars[unsafe_offset=3 * j + 3] = d
        bars[unsafe_offset=3 * j + 4] = b
        bars[unsafe_offset=3 * j + 5] = e


@always_inline
def _bar_after(bars: F64Ptr, j: Int, d: Float64, b: Float64, e: Float64) -> Bool:
    """Whether bar j comes after the bar (d, b, e) in result order (death -1: infinite)."""
    var dj = bars[unsafe_offset=3 * j]
    var bj = bars[unsafe_offset=3 * j + 1]
    if dj != d:
        return dj > d
    if bj != b:
        return bj > b
    var ej = bars[unsafe_offset=3 * j + 2]
    return (ej < 0 and e >= 0) or (ej >= 0 and e >= 0 and ej > e)
