# Sorting: a generic quicksort (by a before() parameter: simplex entries in column order or
# by key here, the edges of collapse.mojo), the parallel two-half sort of the columns
# with one merge, and the stable radix sort by diameter.

from std.sys import size_of
from std.memory import bitcast
from max.algorithm import parallelize
from aura_kernels.common import Control
from aura_kernels.persistence.containers import Entry, Buffer, MemoryBudget, OwnedArray, col_before

# Below this many entries quicksort hands over to insertion sort. Not tuned; chosen as the
# usual 16-32 cut-off of Hoare quicksorts.
comptime QSORT_CUTOFF = 24
comptime POLL_SORT = 1 << 16  # partitions larger than this poll the cancel flag first
# Columns below this count are sorted on one thread (two halves + a merge cost an extra copy
# and a thread wake-up). Not tuned; chosen as where a sort takes a few milliseconds.
comptime PARALLEL_SORT_MIN = 50000
# Digit width of the radix sort: 2048 counters fit in L1, 3 passes for float32 keys (6 for
# float64). Not tuned.
comptime RADIX_BITS = 11
comptime RADIX_SIZE = 1 << RADIX_BITS


@always_inline
def sort_before[T: DType, BYKEY: Bool](a: Entry[T], b: Entry[T]) -> Bool:
    comptime if BYKEY:
        return a.key < b.key
    else:
        return col_before(a, b)


def qsort[T: DType, BYKEY: Bool](p: Pointer[Entry[T], MutUntrackedOrigin], lo: Int, hi: Int, ctl: Control = Control(0)):
    """Sort p[lo:hi] (BYKEY: by key, else column order); see quicksort."""
    quicksort[sort_before[T, BYKEY]](p, lo, hi, ctl)


def quicksort[E: ImplicitlyCopyable & Deinitable, //, before: def(E, E) thin -> Bool](
    p: Pointer[E, MutUntrackedOrigin], lo: Int, hi: Int, ctl: Control
):
    """Sort p[lo:hi] by `before` (a strict weak order): Hoare quicksort with median-of-three,
    recursion into the smaller part, insertion sort below QSORT_CUTOFF. Stops, unsorted, once
    ctl is cancelled (polled at every partition of more than POLL_SORT entries)."""
    var l = lo
    var h = hi
    while h - l > QSORT_CUTOFF:
        if h - l > POLL_SORT and ctl.cancelled():
            return
        var j = _partition[before](p, l, h)
        # p[l:j+1] <= pivot <= p[j+1:h]; recurse into the smaller part
        if j + 1 - l < h - j - 1:
            quicksort[before](p, l, j + 1, ctl)
            l = j + 1
        else:
            quicksort[before](p, j + 1, h, ctl)
            h = j + 1
    _insertion_sort[before](p, l, h)


@always_inline
def _partition[E: ImplicitlyCopyable & Deinitable, //, before: def(E, E) thin -> Bool](
    p: Pointer[E, MutUntrackedOrigin], l: Int, h: Int
) -> Int:
    """Hoare partition of p[l:h] around the median of its first, middle and last entries:
    returns j with p[l:j+1] <= pivot <= p[j+1:h]."""
    var m = l + (h - 1 - l) // 2
    if before(p[unsafe_offset=m], p[unsafe_offset=l]):
        _swap(p, l, m)
    if before(p[unsafe_offset=h - 1], p[unsafe_offset=m]):
        _swap(p, m, h - 1)
        if before(p[unsafe_offset=m], p[unsafe_offset=l]):
            _swap(p, l, m)
    var piv = p[unsafe_offset=m]
    var i = l - 1
    var j = h
    while True:
        i += 1
        while before(p[unsafe_offset=i], piv):
            i += 1
        j -= 1
        while before(piv, p[unsafe_offset=j]):
            j -= 1
        if i >= j:
            return j
        _swap(p, i, j)


@always_inline
def _insertion_sort[E: ImplicitlyCopyable & Deinitable, //, before: def(E, E) thin -> Bool](
    p: Pointer[E, MutUntrackedOrigin], l: Int, h: Int
):
    for i in range(l + 1, h):
        var x = p[unsafe_offset=i]
        var j = i - 1
        while j >= l and before(x, p[unsafe_offset=j]):
            p[unsafe_offset=j + 1] = p[unsafe_offset=j]
            j -= 1
        p[unsafe_offset=j + 1] = x


@always_inline
def _swap[E: ImplicitlyCopyable & Deinitable](p: Pointer[E, MutUntrackedOrigin], i: Int, j: Int):
    var t = p[unsafe_offset=i]
    p[unsafe_offset=i] = p[unsafe_offset=j]
    p[unsafe_offset=j] = t


def sort_columns[T: DType](mut b: Buffer[Entry[T]], nt: Int, mem: MemoryBudget) -> Bool:
    """Sort into column order; two halves in parallel, then one merge."""
    var n = b.size
    var p = b.data
    if nt < 2 or n < PARALLEL_SORT_MIN:
        qsort[T, False](p, 0, n, mem.ctl)
        return mem.ok()
    var half = n // 2

    @always_inline
    def task(i: Int) {imm}:
        if i == 0:
            qsort[T, False](p, 0, half, mem.ctl)
        else:
            qsort[T, False](p, half, n, mem.ctl)

    parallelize(task, 2, 2)
    if not mem.take(n * size_of[Entry[T]]()):
        return False
    var dst = Buffer[Entry[T]].alloc_storage(n)  # becomes b's storage
    if Int(dst) == 0:
        mem.refuse(n * size_of[Entry[T]]())
        return False
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
    Buffer[Entry[T]].free_storage(p, b.cap)
    b.data = dst
    mem.give(b.cap * size_of[Entry[T]]())
    b.cap = n
    return True


def radix_sort_columns[T: DType](mut b: Buffer[Entry[T]], mem: MemoryBudget) -> Bool:
    """Stable LSD radix sort by diameter, descending (RADIX_BITS-bit digits of the IEEE bits,
    which order like the values for diameters >= 0): entries already in index order end up
    in column order."""
    comptime BITS = 32 if T == DType.float32 else 64
    comptime UT = DType.uint32 if T == DType.float32 else DType.uint64
    var n = b.size
    if n < 2:
        return True
    if not mem.take(n * size_of[Entry[T]]()):
        return False
    var src = b.data
    var dst = Buffer[Entry[T]].alloc_storage(n)  # the two buffers swap roles each pass; one is kept
    if Int(dst) == 0:
        mem.refuse(n * size_of[Entry[T]]())
        return False
    var count = OwnedArray[Int](RADIX_SIZE)
    var shift = 0
    while shift < BITS and mem.ok():  # a pass takes a few milliseconds per million entries
        for k in range(RADIX_SIZE):
            count[k] = 0
        for i in range(n):
            var key = ~bitcast[UT, 1](src[unsafe_offset=i].diam)
            var d = Int((key >> Scalar[UT](shift)) & (RADIX_SIZE - 1))
            count[d] = count[d] + 1
        var total = 0
        for k in range(RADIX_SIZE):
            var c = count[k]
            count[k] = total
            total += c
        for i in range(n):
            var e = src[unsafe_offset=i]
            var d = Int((~bitcast[UT, 1](e.diam) >> Scalar[UT](shift)) & (RADIX_SIZE - 1))
            dst[unsafe_offset=count[d]] = e
            count[d] = count[d] + 1
        var t = src
        src = dst
        dst = t
        shift += RADIX_BITS
    if src == b.data:  # an even number of passes: the result is back in the original buffer
        Buffer[Entry[T]].free_storage(dst, n)
        mem.give(n * size_of[Entry[T]]())
    else:
        Buffer[Entry[T]].free_storage(dst, b.cap)
        mem.give(b.cap * size_of[Entry[T]]())
        b.data = src
        b.cap = n
    return mem.ok()  # false once cancelled (then unsorted)
