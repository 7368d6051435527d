# Containers of the persistence engine: simplex entries and bars, the memory budget, the
# growable buffer, owned arrays and scratch space, the pivot hash map and the 4-ary heap.

from std.sys import size_of
from std.atomic import Atomic
from aura_kernels import common
from aura_kernels.common import Control, C_HEAP, MAPPING

# The persistence modules' OwnedArray (imported from here): storage on the C heap by default
# (common.mojo, C_HEAP: the engine grows and frees buffers of many sizes on several threads)
comptime OwnedArray[E: ImplicitlyCopyable & Deinitable, STORE: Int = C_HEAP] = common.OwnedArray[E, STORE]

comptime IntPtr = Pointer[Int, MutUntrackedOrigin]

# vertices per scratch slot: simplices up to dimension 62 (Python caps maxdim at 60)
comptime SCRATCH = 64


@fieldwise_init
struct Entry[T: DType](ImplicitlyCopyable):
    """A simplex: its diameter and key = index (Z/2) or index << coef_bits | coefficient (Z/p)."""

    var diam: Scalar[Self.T]
    var key: Int


@fieldwise_init
struct Bar(ImplicitlyCopyable):
    """A bar of H_dim and the simplices that made it: for dim >= 1 the index of its column
    (birth) simplex and of its pivot (death) simplex (-1: essential); for dim 0 the vertex
    whose component dies (the merging edge's younger root) and the surviving root (-1)."""

    var dim: Int
    var birth: Float64
    var death: Float64
    var birth_simplex: Int
    var death_simplex: Int


@always_inline
def col_before[T: DType](a: Entry[T], b: Entry[T]) -> Bool:
    """Column (reverse filtration) order: larger diameter first, then smaller index."""
    return a.diam > b.diam or (a.diam == b.diam and a.key < b.key)


@always_inline
def heap_before[T: DType](a: Entry[T], b: Entry[T]) -> Bool:
    """Pivot order of a coboundary: smaller diameter first, then larger index."""
    return a.diam < b.diam or (a.diam == b.diam and a.key > b.key)


# ------------------------------------------------------------------------ memory budget

@fieldwise_init
struct MemoryBudget(ImplicitlyCopyable):
    """Byte accounting against the budget Python passes (80% of available memory). Copies
    share the counters (atomics owned by the driver). It also carries the caller's control:
    once that is cancelled, take() and ok() fail as if the budget had run out, so every stage
    stops through the same path that frees its memory."""

    var used: Pointer[Atomic[Int], MutUntrackedOrigin]
    var failed: Pointer[Atomic[Int], MutUntrackedOrigin]
    var peak: Pointer[Atomic[Int], MutUntrackedOrigin]
    var budget: Int
    var ctl: Control

    def take(self, nbytes: Int) -> Bool:
        if self.ctl.cancelled():
            return False
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

    def refuse(self, nbytes: Int):
        """The system refused nbytes that the budget had allowed (taken, then given back):
        fail as take() does when the budget runs out."""
        self.give(nbytes)
        self.failed[].store(self.used[].load() + nbytes)

    def ok(self) -> Bool:
        return self.failed[].load() == 0 and not self.ctl.cancelled()


# ------------------------------------------------------------------------ arrays

struct Scratch(Movable):
    """Per-task vertex lists: slot 0 a column's simplex, slot 1 a cofacet (or another column's
    simplex), slot 3 a facet; SCRATCH vertices each."""

    var space: OwnedArray[Int]

    def __init__(out self):
        self.space = OwnedArray[Int](4 * SCRATCH)

    @always_inline
    def simplex(self) -> IntPtr:
        return self.space.data

    @always_inline
    def cofacet(self) -> IntPtr:
        return self.space.data.unsafe_offset(SCRATCH)

    @always_inline
    def facet(self) -> IntPtr:
        return self.space.data.unsafe_offset(3 * SCRATCH)


# Initial capacity of a Buffer (it doubles as it grows). Not tuned; small because there is
# one buffer per chunk and per window column.
comptime BUFFER_INITIAL_CAP = 16
# Buffer storage of at least this many bytes is an anonymous mapping of its own
# (OwnedArray[E, MAPPING]): growth remaps it (mremap: no copy, and no old + new copy alive
# at once) and free unmaps it (the pages go back to the system at once; a heap keeps freed
# storage: under the runtime's allocator the freed spans held in peak RSS as much again as the
# live data, sphere3's 2.2 M-entry reduction heap). Not tuned; large enough that a syscall per growth is
# nothing next to filling the buffer.
comptime MAP_MIN_BYTES = 1 << 20


@fieldwise_init
struct Buffer[E: ImplicitlyCopyable & Deinitable](ImplicitlyCopyable):
    """A growable array with budget-checked growth. Copyable (chunk buffers live in arrays and
    are captured by the parallel tasks), so its lifetime is manual: ``free``. Its storage is
    an OwnedArray's, given up (``alloc_storage``) and taken back to be ended (``free_storage``);
    the capacity says which kind (a code that swaps ``data`` must keep ``cap`` its capacity)."""

    var data: Pointer[Self.E, MutUntrackedOrigin]
    var size: Int
    var cap: Int

    @staticmethod
    def make(mem: MemoryBudget) -> Self:
        mem.force(BUFFER_INITIAL_CAP * size_of[Self.E]())
        return Self(Self.alloc_storage(BUFFER_INITIAL_CAP), 0, BUFFER_INITIAL_CAP)

    @staticmethod
    @always_inline
    def mapped(cap: Int) -> Bool:
        return cap * size_of[Self.E]() >= MAP_MIN_BYTES

    @staticmethod
    def alloc_storage(cap: Int) -> Pointer[Self.E, MutUntrackedOrigin]:
        """Storage for cap elements: a mapping from MAP_MIN_BYTES on; null when refused."""
        if Self.mapped(cap):
            return OwnedArray[Self.E, MAPPING](cap).disown()
        return OwnedArray[Self.E](cap).disown()

    @staticmethod
    def free_storage(p: Pointer[Self.E, MutUntrackedOrigin], cap: Int):
        if Self.mapped(cap):
            _ = OwnedArray[Self.E, MAPPING](adopt=p, size=cap)
        else:
            _ = OwnedArray[Self.E](adopt=p, size=cap)

    def grow(mut self, want: Int, mem: MemoryBudget) -> Bool:
        if want <= self.cap:
            return True
        var nc = max(want, self.cap * 2)
        var nbytes = (nc - self.cap) * size_of[Self.E]()
        if not mem.take(nbytes):
            return False
        if not self._move_storage(nc):  # refused: the old storage is still valid and held
            mem.refuse(nbytes)
            return False
        return True

    def _move_storage(mut self, nc: Int) -> Bool:
        """Storage for nc elements, the elements kept: a mapping is remapped (never copied),
        heap storage copied into new storage of nc's kind."""
        if Self.mapped(self.cap):
            var store = OwnedArray[Self.E, MAPPING](adopt=self.data, size=self.cap)
            var ok = store.resize(nc)
            self.data = store^.disown()
            if ok:
                self.cap = nc
            return ok
        var nd = Self.alloc_storage(nc)
        if Int(nd) == 0:
            return False
        for i in range(self.size):
            nd[unsafe_offset=i] = self.data[unsafe_offset=i]
        Self.free_storage(self.data, self.cap)
        self.data = nd
        self.cap = nc
        return True

    @always_inline
    def push(mut self, e: Self.E, mem: MemoryBudget) -> Bool:
        if self.size == self.cap:
            if not self.grow(self.size + 1, mem):
                return False
        self.data[unsafe_offset=self.size] = e
        self.size += 1
        return True

    @always_inline
    def __getitem__(self, i: Int) -> Self.E:
        return self.data[unsafe_offset=i]

    def free(mut self, mem: MemoryBudget):
        mem.give(self.cap * size_of[Self.E]())
        Self.free_storage(self.data, self.cap)
        self.size = 0
        self.cap = 0

    def detach(mut self, mem: MemoryBudget) -> Pointer[Self.E, MutUntrackedOrigin]:
        """The elements as heap storage given up by an OwnedArray[E], for a caller that ends
        it with OwnedArray(adopt=...) (mapped storage is copied over and unmapped); the
        buffer is left empty."""
        var out = self.data
        if Self.mapped(self.cap):
            out = OwnedArray[Self.E](max(1, self.size)).disown()
            for i in range(self.size):
                out[unsafe_offset=i] = self.data[unsafe_offset=i]
            Self.free_storage(self.data, self.cap)
        mem.give(self.cap * size_of[Self.E]())
        self.size = 0
        self.cap = 0
        return out


struct ChunkBuffers[T: DType](Movable):
    """One Buffer of entries per parallel chunk, concatenated in chunk order by ``gather``."""

    var parts: OwnedArray[Buffer[Entry[Self.T]]]

    def __init__(out self, nch: Int, mem: MemoryBudget):
        self.parts = OwnedArray[Buffer[Entry[Self.T]]](nch)
        for c in range(nch):
            self.parts[c] = Buffer[Entry[Self.T]].make(mem)

    @always_inline
    def __getitem__(self, c: Int) -> Buffer[Entry[Self.T]]:
        return self.parts[c]

    @always_inline
    def __setitem__(self, c: Int, b: Buffer[Entry[Self.T]]):
        self.parts[c] = b

    def gather(self, mut dst: Buffer[Entry[Self.T]], mem: MemoryBudget) -> Bool:
        """Append the chunk buffers in order to dst, freeing them; False when out of budget."""
        var nch = self.parts.size
        var total = 0
        for c in range(nch):
            total += self.parts[c].size
        var ok = mem.ok() and dst.grow(dst.size + total, mem)
        for c in range(nch):
            var b = self.parts[c]
            if ok:
                for i in range(b.size):
                    dst.data[unsafe_offset=dst.size + i] = b.data[unsafe_offset=i]
                dst.size += b.size
            b.free(mem)
        return ok


# ------------------------------------------------------------------------ pivot map

# Slots per expected entry: load <= 1/4, so the many lookups that miss end fast. Not tuned;
# chosen as the usual sparse open-addressing load (the table is small next to the columns).
comptime PIVOT_MAP_SLOTS_PER_ENTRY = 4
# A pivot map value packs the column and the pivot's coefficient: column << 16 | coefficient
comptime PIVOT_COEF_BITS = 16
comptime PIVOT_COEF_MASK = (1 << PIVOT_COEF_BITS) - 1


@fieldwise_init
struct PivotMap(ImplicitlyCopyable):
    """Open addressing, linear probing: pivot simplex index -> column << 16 | coefficient.
    Copyable (captured by the parallel tasks), so its lifetime is manual: ``free`` (the
    tables are OwnedArrays' storage, given up and taken back)."""

    var keys: IntPtr
    var vals: IntPtr
    var mask: Int
    var shift: Int
    var count: Int

    @staticmethod
    def make(expected: Int, mem: MemoryBudget) -> Self:
        var cap = 64
        var bits = 6
        while cap < PIVOT_MAP_SLOTS_PER_ENTRY * expected + 2:
            cap *= 2
            bits += 1
        mem.force(2 * cap * 8)
        return Self(OwnedArray[Int](cap, -1).disown(), OwnedArray[Int](cap).disown(), cap - 1, 64 - bits, 0)

    @always_inline
    def slot(self, key: Int) -> Int:
        var h = (UInt64(key) * UInt64(0x9E3779B97F4A7C15)) >> UInt64(self.shift)  # Fibonacci hashing
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

    def free(mut self, mem: MemoryBudget):
        mem.give(2 * (self.mask + 1) * 8)
        _ = OwnedArray[Int](adopt=self.keys, size=self.mask + 1)
        _ = OwnedArray[Int](adopt=self.vals, size=self.mask + 1)


# ------------------------------------------------------------------------ heap (4-ary)

comptime ARITY = 4  # measured (CPU time): vs binary, reduction -27% on dragon and fract-r, equal on
# sphere3 and o3_1024; 8-ary is faster still on dragon and fract-r but 20% slower on sphere3


@always_inline
def heap_first[T: DType, LOW_FIRST: Bool](a: Entry[T], b: Entry[T]) -> Bool:
    """The heap's order: pivot order (cohomology), or with LOW_FIRST the filtration's latest
    first (larger diameter, then smaller index: the low of a homology column)."""
    comptime if LOW_FIRST:
        return col_before(a, b)
    else:
        return heap_before(a, b)


@always_inline
def heap_push[T: DType, LOW_FIRST: Bool = False](mut h: Buffer[Entry[T]], e: Entry[T], mem: MemoryBudget) -> Bool:
    if not h.push(e, mem):
        return False
    var p = h.data
    var i = h.size - 1
    while i > 0:
        var parent = (i - 1) // ARITY
        if not heap_first[T, LOW_FIRST](e, p[unsafe_offset=parent]):
            break
        p[unsafe_offset=i] = p[unsafe_offset=parent]
        i = parent
    p[unsafe_offset=i] = e
    return True


@always_inline
def heap_pop[T: DType, LOW_FIRST: Bool = False](mut h: Buffer[Entry[T]]) -> Entry[T]:
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
            if heap_first[T, LOW_FIRST](p[unsafe_offset=q], p[unsafe_offset=b]):
                b = q
        if not heap_first[T, LOW_FIRST](p[unsafe_offset=b], x):
            break
        p[unsafe_offset=i] = p[unsafe_offset=b]
        i = b
    p[unsafe_offset=i] = x
    return top
