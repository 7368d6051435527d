# The driver: the filtration and its tables, dimension 0, then per dimension the reduction
# and the assembly of the next dimension's columns; the bar buffer and info[] for Python.

from std.atomic import Atomic
from aura_kernels.common import F32, F64, Control
from aura_kernels.persistence.containers import IntPtr, Entry, Bar, Buffer, MemoryBudget, OwnedArray, PivotMap
from aura_kernels.persistence.simplices import Filtration, SimplexTables
from aura_kernels.persistence.h0 import Births, dim0
from aura_kernels.persistence.assemble import assemble
from aura_kernels.persistence.reduce import reduce
from aura_kernels.persistence.reps import RepOut, pair_index, write_cycles
from aura_kernels.persistence.abi import (
    PersistenceParams, INFO_STATUS, INFO_BARS, INFO_NBARS, INFO_FAIL_DIM, INFO_FAIL_BYTES, INFO_PEAK_BYTES, INFO_REPS,
    INFO_NREPS, STATUS_OK, STATUS_OUT_OF_MEMORY, STATUS_CANCELLED, STATUS_INCONSISTENT,
)




def run_rips(p: PersistenceParams):
    """The engine for the graph layout (p.sparse: CSR, else the dense matrix), distance dtype
    and coefficient field of p."""
    if p.sparse:
        _run_layout[True](p)
    else:
        _run_layout[False](p)


def _run_layout[SPARSE: Bool](p: PersistenceParams):
    if p.dtype_bits == 32:
        if p.modulus == 2:
            run[F32, True, SPARSE](p)
        else:
            run[F32, False, SPARSE](p)
    else:
        if p.modulus == 2:
            run[F64, True, SPARSE](p)
        else:
            run[F64, False, SPARSE](p)


def run[T: DType, Z2: Bool, SPARSE: Bool](p: PersistenceParams):
    var used = Atomic[Int](0)
    var failed = Atomic[Int](0)
    var peak = Atomic[Int](0)
    var mem = MemoryBudget(
        Pointer[Atomic[Int], MutUntrackedOrigin](unsafe_from_address=Int(Pointer(to=used))),
        Pointer[Atomic[Int], MutUntrackedOrigin](unsafe_from_address=Int(Pointer(to=failed))),
        Pointer[Atomic[Int], MutUntrackedOrigin](unsafe_from_address=Int(Pointer(to=peak))),
        p.budget,
        Control(p.control),
    )
    var tables = SimplexTables(p.n, p.maxdim + 2, p.modulus)
    var coef_bits = _coef_bits[Z2](p.modulus)
    # dense: indptr / indices are unused (0 from Python); point them at dist, never read
    var indptr = p.indptr if SPARSE else p.dist
    var indices = p.indices if SPARSE else p.dist
    var filt = Filtration[T, Z2, SPARSE](
        p.n, p.n + 1, p.maxdim, p.modulus, coef_bits, (1 << coef_bits) - 1,
        Pointer[Scalar[T], MutUntrackedOrigin](unsafe_from_address=p.dist),
        IntPtr(unsafe_from_address=indptr),
        Pointer[Int32, MutUntrackedOrigin](unsafe_from_address=indices),
        Scalar[T](p.threshold), tables.binom.data, tables.inverse.data, mem, p.threads, IntPtr(unsafe_from_address=p.stats),
    )
    var bars = Buffer[Bar].make(mem)
    var reps = RepOut(p.reps, Buffer[Int].make(mem), False)
    var fail_dim = 0
    var ok = _all_dimensions(filt, Births(p.births), bars, reps, fail_dim)
    _ = tables^  # freed here: filt points into it
    var info = IntPtr(unsafe_from_address=p.info)
    _write_outcome(ok, bars, reps, mem, info, p.reps != 0, fail_dim, failed.load())
    bars.free(mem)
    if not ok or p.reps == 0:
        reps.out.free(mem)
    info[unsafe_offset=INFO_PEAK_BYTES] = peak.load()
    # keep the counters alive until here (Mojo destroys values after their last use)
    _ = used.load()
    _ = failed.load()


@always_inline
def _coef_bits[Z2: Bool](modulus: Int) -> Int:
    """Bits of a coefficient in an entry's key: 0 over Z/2, else the width of modulus."""
    var coef_bits = 0
    comptime if not Z2:
        while (1 << coef_bits) <= modulus:
            coef_bits += 1
    return coef_bits


def _write_outcome(
    ok: Bool, bars: Buffer[Bar], mut reps: RepOut, mem: MemoryBudget, info: IntPtr, want_reps: Bool, fail_dim: Int,
    fail_bytes: Int,
):
    """info[] for Python: on success the bars and (want_reps) the representatives, handed
    over (free_bars); else the status (inconsistent, cancelled or out of memory, with the
    dimension and the bytes of the allocation refused) and no bars."""
    info[unsafe_offset=INFO_REPS] = 0
    info[unsafe_offset=INFO_NREPS] = 0
    if ok:
        _write_bars(bars, info)
        if want_reps:  # handed over to Python (free_bars), not freed here
            info[unsafe_offset=INFO_NREPS] = reps.out.size
            info[unsafe_offset=INFO_REPS] = Int(reps.out.detach(mem))
        return
    info[unsafe_offset=INFO_BARS] = 0
    info[unsafe_offset=INFO_NBARS] = 0
    if reps.inconsistent:
        info[unsafe_offset=INFO_STATUS] = STATUS_INCONSISTENT
    elif mem.ctl.cancelled():
        info[unsafe_offset=INFO_STATUS] = STATUS_CANCELLED
    else:
        info[unsafe_offset=INFO_STATUS] = STATUS_OUT_OF_MEMORY
        info[unsafe_offset=INFO_FAIL_DIM] = fail_dim
        info[unsafe_offset=INFO_FAIL_BYTES] = fail_bytes


def _all_dimensions[T: DType, Z2: Bool, SPARSE: Bool](filt: Filtration[T, Z2, SPARSE], births: Births, mut bars: Buffer[Bar], mut reps: RepOut, mut fail_dim: Int) -> Bool:
    """H0, then per dimension 1..maxdim the reduction and the next dimension's columns; on
    failure fail_dim is the dimension being built. With cycles, after the reduction of dim:
    the cycles of the finite H_{dim-1} bars (dim >= 2; H0's are vertices, from the merges)
    and of the essential H_dim bars, through the pairs of dimension dim - 1; at the end the
    cycles of the finite H_maxdim bars."""
    var mem = filt.mem
    var simplices = Buffer[Entry[T]].make(mem)
    var cols = Buffer[Entry[T]].make(mem)
    var lower_pairs = PivotMap.make(filt.n if reps.cycles() else 0, mem)  # pairs of dimension dim - 1
    var ok = dim0(filt, births, bars, simplices, cols, reps, lower_pairs)
    var lower_lo = 0  # the bars of dimension dim - 1: bars[lower_lo:lower_hi]
    var lower_hi = bars.size
    for dim in range(1, filt.maxdim + 1):
        if not ok:
            break
        fail_dim = dim
        if dim == filt.maxdim:  # the last dimension assembles nothing: its simplices can go now
            simplices.free(mem)
            simplices = Buffer[Entry[T]].make(mem)
        var pivots = PivotMap.make(cols.size, mem)
        ok = reduce(filt, dim, cols, pivots, bars, reps)
        if ok and reps.cycles():
            var finite_lo = lower_lo if dim >= 2 else lower_hi
            ok = write_cycles(filt, dim, lower_pairs, bars, finite_lo, lower_hi, lower_hi, bars.size, reps)
            lower_pairs.free(mem)
            lower_pairs = pair_index(cols, pivots, mem)
        lower_lo = lower_hi
        lower_hi = bars.size
        cols.free(mem)
        cols = Buffer[Entry[T]].make(mem)
        if ok and dim < filt.maxdim:
            fail_dim = dim + 1
            var next = Buffer[Entry[T]].make(mem)
            ok = assemble(filt, dim, simplices, pivots, dim + 1 < filt.maxdim, next, cols)
            simplices.free(mem)
            simplices = next
        pivots.free(mem)
    if ok and reps.cycles() and filt.maxdim >= 1:
        ok = write_cycles(filt, filt.maxdim + 1, lower_pairs, bars, lower_lo, lower_hi, 0, 0, reps)
    lower_pairs.free(mem)
    simplices.free(mem)
    cols.free(mem)
    return ok


def _write_bars(bars: Buffer[Bar], info: IntPtr):
    """The bars as float64 (dim, birth, death) triples, an OwnedArray's storage handed to
    Python (freed by free_bars)."""
    var out = OwnedArray[Float64](3 * bars.size).disown()
    for i in range(bars.size):
        var b = bars[i]
        out[unsafe_offset=3 * i] = Float64(b.dim)
        out[unsafe_offset=3 * i + 1] = b.birth
        out[unsafe_offset=3 * i + 2] = b.death
    info[unsafe_offset=INFO_STATUS] = STATUS_OK
    info[unsafe_offset=INFO_BARS] = Int(out)
    info[unsafe_offset=INFO_NBARS] = bars.size


def free_bar_buffer(addr: Int):
    """Free a buffer run() wrote to info[INFO_BARS] or info[INFO_REPS] (heap storage given up
    by an OwnedArray: its size does not matter to the heap)."""
    if addr != 0:
        _ = OwnedArray[Float64](adopt=Pointer[Float64, MutUntrackedOrigin](unsafe_from_address=addr), size=1)
