# Shared definitions for aura_lab's compute kernels (no Python dependency: this package
# is also precompiled as the MAX custom-op library).

from std.sys import llvm_intrinsic, CompilationTarget
from std.sys.intrinsics import compressed_store
from std.memory.alloc import unsafe_alloc
from std.sys import size_of
from std.ffi import external_call
from std.atomic import Atomic
from max.algorithm import parallelize

comptime F32 = DType.float32
comptime F64 = DType.float64


@always_inline
def present_addr(flag: Int, address: Int) -> Int:
    """A MAX op's parameter block carries presence flags in its address fields: the
    tensor's address where the flag is nonzero, else 0 (absent)."""
    return address if flag != 0 else 0


@always_inline
def scalar_ptr[dtype: DType](address: Int) -> Pointer[Scalar[dtype], MutUntrackedOrigin]:
    """The scalars at a caller's address (a parameter block's array field)."""
    return Pointer[Scalar[dtype], MutUntrackedOrigin](unsafe_from_address=address)


# ------------------------------------------------------------------------ owned memory

# Linux values of the anonymous mappings' flags (mmap, mremap)
comptime _PROT_READ_WRITE = 3
comptime _MAP_PRIVATE_ANONYMOUS = 0x22
comptime _MREMAP_MAYMOVE = 1

# Where an OwnedArray's storage lives (its STORE parameter)
# The Mojo runtime's allocator: it keeps freed storage of each size resident for the next
# allocation of that size, so a repeated call finds its scratch already mapped (the scan kernels).
comptime RUNTIME_HEAP = 0
# The C library's malloc: freed storage coalesces and serves later allocations of any size, so
# resident memory follows what is held at once (the persistence kernels, which grow and free
# buffers of many sizes on several threads. First-call resident memory after a warm-up on 12
# points, measured: random16 0.84-1.30 MiB on the runtime's allocator for a 123 KB peak held,
# 0.55-0.81 MiB on the C heap; o3_1024 4.1-4.6 against 3.3-3.7 MiB).
comptime C_HEAP = 1
# An anonymous mapping of its own (mmap; ``resize`` remaps it without a copy; munmap when
# destroyed: its pages go back to the system at once); a mapping the system refuses leaves
# ``data`` null (check ``ok``).
comptime MAPPING = 2


struct OwnedArray[E: ImplicitlyCopyable & Deinitable, STORE: Int = RUNTIME_HEAP](Movable):
    """A fixed-size heap array freed when the owner is destroyed: the kernels' one way to
    hold memory of their own (no raw alloc/free elsewhere), so every return and every raised
    error frees what was taken. STORE says where the storage lives (RUNTIME_HEAP, C_HEAP or
    MAPPING, above). Mojo destroys a value right after its last use, and
    evaluating ``f(owner.data)`` is that use: the owner is destroyed before f runs (measured
    with Mojo 1.2). So pass the owner (or a struct holding it) by reference, or end the raw
    accesses with ``_ = owner^``: a raw pointer taken from ``data`` dangles once the owner is
    gone. Elements are not destroyed (only trivially destructible element types are stored)."""

    var data: Pointer[Self.E, MutUntrackedOrigin]
    var size: Int

    def __init__(out self, size: Int):
        self.data = Self._take(max(1, size))
        self.size = size

    def __init__(out self, size: Int, fill: Self.E):
        self = Self(size)
        for i in range(size):
            self.data[unsafe_offset=i] = fill

    def __init__(out self, *, adopt: Pointer[Self.E, MutUntrackedOrigin], size: Int):
        """Take back the `size` elements that an owner of this type gave up (``disown``),
        e.g. a buffer handed to Python that Python now frees."""
        self.data = adopt
        self.size = size

    def __deinit__(deinit self):
        Self._give(self.data, max(1, self.size))

    def disown(deinit self) -> Pointer[Self.E, MutUntrackedOrigin]:
        """Give up ownership: the storage outlives the owner, and whoever holds the pointer
        ends it through ``OwnedArray(adopt=...)`` with the same size and parameters."""
        return self.data

    def ok(self) -> Bool:
        """Is there storage (false where the system refused a mapping, or malloc its C-heap storage)?"""
        return Int(self.data) != 0

    def resize(mut self, size: Int) -> Bool:
        """Storage for `size` elements, the elements kept up to `size` (the mapping is
        remapped: moved or grown in place, never copied); false when refused, the old
        storage still held. Mapped storage only: heap storage is copied by its owner
        (persistence/containers.mojo Buffer._move_storage)."""
        comptime assert Self.STORE == MAPPING, "OwnedArray.resize: mapped storage only"
        var addr = external_call["mremap", Int](Int(self.data), Self._bytes(max(1, self.size)),
                                                Self._bytes(max(1, size)), Int32(_MREMAP_MAYMOVE))
        var nd = Pointer[Self.E, MutUntrackedOrigin](unsafe_from_address=0 if addr == -1 else addr)
        if Int(nd) == 0:
            return False
        self.data = nd
        self.size = size
        return True

    @staticmethod
    @always_inline
    def _bytes(size: Int) -> Int:
        return size * size_of[Self.E]()

    @staticmethod
    def _take(size: Int) -> Pointer[Self.E, MutUntrackedOrigin]:
        comptime assert Self.STORE >= RUNTIME_HEAP and Self.STORE <= MAPPING, "OwnedArray: STORE is RUNTIME_HEAP, C_HEAP or MAPPING"
        comptime if Self.STORE == MAPPING:
            var addr = external_call["mmap", Int](0, Self._bytes(size), Int32(_PROT_READ_WRITE),
                                                  Int32(_MAP_PRIVATE_ANONYMOUS), Int32(-1), 0)
            return Pointer[Self.E, MutUntrackedOrigin](unsafe_from_address=0 if addr == -1 else addr)
        elif Self.STORE == C_HEAP:  # malloc's 16-byte alignment covers every element type stored
            return Pointer[Self.E, MutUntrackedOrigin](unsafe_from_address=external_call["malloc", Int](Self._bytes(size)))
        else:
            return unsafe_alloc[Self.E](size)

    @staticmethod
    def _give(p: Pointer[Self.E, MutUntrackedOrigin], size: Int):
        comptime if Self.STORE == MAPPING:
            if Int(p) != 0:
                _ = external_call["munmap", Int32](Int(p), Self._bytes(size))
        elif Self.STORE == C_HEAP:
            external_call["free", NoneType](Int(p))
        else:
            p.unsafe_free()

    @always_inline
    def __getitem__(self, i: Int) -> Self.E:
        return self.data[unsafe_offset=i]

    @always_inline
    def __setitem__(self, i: Int, v: Self.E):
        self.data[unsafe_offset=i] = v

    @always_inline
    def at(self, i: Int) -> Pointer[Self.E, MutUntrackedOrigin]:
        """The address of element i (valid while the owner lives)."""
        return self.data.unsafe_offset(i)


@always_inline
def append_packed[dt: DType, V: Int](v: SIMD[dt, V], m: SIMD[DType.bool, V], dst: Pointer[Scalar[dt], MutUntrackedOrigin]):
    """Store the lanes of v selected by m, packed, at dst (may write V values past them).
    AVX-512: compress in a register + one plain store (vcompressps to memory is slow)."""
    comptime if CompilationTarget.has_avx512f():
        dst.unsafe_store(0, llvm_intrinsic["llvm.x86.avx512.mask.compress", SIMD[dt, V]](v, SIMD[dt, V](0), m))
    else:
        compressed_store(v, dst, m)


# The runtime's worker threads run with FTZ and DAZ set (MXCSR 0x9FE0 measured, vs 0x1FA0
# on the Python thread): denormal logits would compare as 0 (breaking exact ties against
# the reference) and denormal weights would flush to 0. Each task clears both bits and
# restores the caller's mode when it is done.

@always_inline
def ieee_begin() -> UInt32:
    comptime if CompilationTarget.is_x86():
        var word = UInt32(0)  # the intrinsics read / write MXCSR through memory: a stack word
        llvm_intrinsic["llvm.x86.sse.stmxcsr", NoneType](Pointer(to=word))
        var old = word
        word = old & ~UInt32(0x8040)  # FTZ (bit 15), DAZ (bit 6)
        llvm_intrinsic["llvm.x86.sse.ldmxcsr", NoneType](Pointer(to=word))
        return old
    else:
        return 0


@always_inline
def ieee_end(old: UInt32):
    comptime if CompilationTarget.is_x86():
        var word = old
        llvm_intrinsic["llvm.x86.sse.ldmxcsr", NoneType](Pointer(to=word))


def checked_block(address: Int, layout: Int, name: StaticString) raises -> Pointer[Int64, MutUntrackedOrigin]:
    """The int64 words of a parameter block written by Python (aura_lab/_abi.py), after
    checking its layout word against the one this kernel was generated for."""
    var w = Pointer[Int64, MutUntrackedOrigin](unsafe_from_address=address)
    if Int(w[unsafe_offset=0]) != layout:
        raise Error(String(name, ": the parameter block has layout ", Int(w[unsafe_offset=0]),
                           " but this kernel was built for ", layout))
    return w


# The control words of aura_lab/_control.py (one int64 each).
comptime CONTROL_CANCEL = 0
comptime CONTROL_STAGE = 1
comptime CONTROL_DONE = 2
comptime CONTROL_TOTAL = 3


@fieldwise_init
struct Control(ImplicitlyCopyable):
    """The caller's control words (address 0: none): Python sets the cancel word to stop a
    kernel, which polls it between chunks of work and returns early; long kernels report
    their progress in the stage/done/total words, which Python reads while it waits.
    An address with bit 0 set (``without_progress``; the words are 8-byte aligned) polls
    the same cancel word but reports no progress: the batched persistence engine's
    per-cloud runs, whose progress is the batch's count of clouds done."""

    var address: Int

    @always_inline
    def _word(self, i: Int) -> Pointer[Atomic[Int], MutUntrackedOrigin]:
        return Pointer[Atomic[Int], MutUntrackedOrigin](unsafe_from_address=(self.address & ~1) + 8 * i)

    def without_progress(self) -> Control:
        """The same cancel word, no progress reports."""
        return Control(self.address | 1) if self.address != 0 else self

    @always_inline
    def _reports(self) -> Bool:
        return self.address != 0 and (self.address & 1) == 0

    @always_inline
    def cancelled(self) -> Bool:
        """Has the caller asked this kernel to stop? (an atomic load: cheap, poll per chunk)"""
        if self.address == 0:
            return False
        return self._word(CONTROL_CANCEL)[].load() != 0

    def start_stage(self, stage: Int, total: Int):
        """Progress: a new stage (e.g. a dimension) of `total` units, none done yet."""
        if not self._reports():
            return
        self._word(CONTROL_DONE)[].store(0)
        self._word(CONTROL_TOTAL)[].store(total)
        self._word(CONTROL_STAGE)[].store(stage)

    @always_inline
    def add_done(self, count: Int):
        """Progress: `count` more units of the current stage are done."""
        if self._reports():
            _ = self._word(CONTROL_DONE)[].fetch_add(count)


def run_chunks[F: def(Int) -> None](task: F, nch: Int, nt: Int, ctl: Control):
    """task(0) ... task(nch - 1) on up to nt threads, each worker taking the next chunk when
    it gets free: a core busy with something else then costs its share of chunks, not the
    whole call (max.algorithm.parallelize gives each worker one fixed contiguous range).
    Once ctl is cancelled no further chunk starts (the caller then returns early)."""
    if nt <= 1 or nch <= 1:
        for ch in range(nch):
            if ctl.cancelled():
                return
            task(ch)
        return
    var counter = Atomic[Int](0)
    var next = Pointer[Atomic[Int], MutUntrackedOrigin](unsafe_from_address=Int(Pointer(to=counter)))

    @always_inline
    def worker(w: Int) {imm}:
        while True:
            var ch = next[].fetch_add(1)
            if ch >= nch or ctl.cancelled():
                break
            task(ch)

    var workers = min(nt, nch)
    parallelize(worker, workers, workers)
    _ = counter.load()  # alive until the workers are done


# Chunking of a loop of `total` items for run_chunks: about `grain` items per chunk, at most
# CHUNKS_PER_THREAD chunks per thread (more chunks balance a shared machine better, each costs
# an atomic fetch and the chunk's set-up). Chosen as enough chunks for a core that stalls to
# hand its share to the others. Measured once (persistence engine, 2 threads, total time,
# median of 7, alternating in one process): 4 or 64 within 4% of 16 on o3_1024, sphere3 and
# dragon; 64 was 17% faster on random16 (uneven work per simplex in high dimensions), 4 was
# 7% slower: a candidate for a separate, wider measurement.
comptime CHUNKS_PER_THREAD = 16


def n_chunks(total: Int, nt: Int, grain: Int) -> Int:
    """The number of chunks for `total` items: one on a single thread."""
    if nt <= 1:
        return 1
    return max(1, min(total // grain, nt * CHUNKS_PER_THREAD))


@always_inline
def chunk_lo(c: Int, nch: Int, total: Int) -> Int:
    """First item of chunk c of nch equal chunks of range(total) (chunk_lo(nch) = total)."""
    return c * total // nch


def area_row(c: Int, nch: Int, n: Int) -> Int:
    """Row boundary c of nch chunks splitting the lower triangle of an (n, n) matrix into
    equal areas (area_row(nch) = n)."""
    if c >= nch:
        return n
    var f = Float64(c) / Float64(nch)
    return min(n, Int(Float64(n) * (f ** 0.5)))
