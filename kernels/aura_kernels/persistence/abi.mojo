# Generated from the KernelABI 'persistence' (aura_lab/_abi.py): do not edit.
# Regenerate with `python tools/gen_abi.py`; tests/unit/test_abi.py fails while this file is stale.

from aura_kernels.common import checked_block

comptime PERSISTENCE_LAYOUT = 0x1d6eb35d4

# want ids
comptime WANT_COCYCLES = 1
comptime WANT_CYCLES = 2

# status (written by the kernel)
comptime STATUS_OK = 0
comptime STATUS_OUT_OF_MEMORY = 1
comptime STATUS_CANCELLED = 2
comptime STATUS_INCONSISTENT = 3

# info (written by the kernel)
comptime INFO_STATUS = 0
comptime INFO_BARS = 1
comptime INFO_NBARS = 2
comptime INFO_FAIL_DIM = 3
comptime INFO_FAIL_BYTES = 4
comptime INFO_PEAK_BYTES = 5
comptime INFO_REPS = 6
comptime INFO_NREPS = 7
comptime INFO_WORDS = 8

# stat (written by the kernel)
comptime STAT_SIMPLICES = 0
comptime STAT_COLUMNS = 1
comptime STAT_APPARENT = 2
comptime STAT_CLEARED = 3
comptime STAT_EMERGENT = 4
comptime STAT_REDUCED = 5
comptime STAT_ADDITIONS = 6
comptime STAT_PUSHES = 7
comptime STAT_ASSEMBLE_NS = 8
comptime STAT_SEARCH_NS = 9
comptime STAT_REDUCE_NS = 10
comptime STAT_WORDS = 11

# kind (written by the kernel)
comptime KIND_COCYCLE = 0
comptime KIND_CYCLE = 1
comptime KIND_MERGES = 2


@fieldwise_init
struct PersistenceParams(ImplicitlyCopyable):
    """The persistence parameter block (addresses: 0 = absent)."""

    var dtype_bits: Int
    var dist: Int
    var n: Int
    var maxdim: Int
    var threshold: Float64
    var modulus: Int
    var reps: Int
    var threads: Int
    var budget: Int
    var info: Int
    var stats: Int
    var sparse: Bool
    var indptr: Int
    var indices: Int
    var births: Int
    var control: Int

    @staticmethod
    def load(address: Int) raises -> Self:
        """Read a block written by Python; raises if its layout word is not this one."""
        var w = checked_block(address, PERSISTENCE_LAYOUT, "persistence")
        var f = Pointer[Float64, MutUntrackedOrigin](unsafe_from_address=address)
        return Self(Int(w[unsafe_offset=1]), Int(w[unsafe_offset=2]), Int(w[unsafe_offset=3]),
            Int(w[unsafe_offset=4]), f[unsafe_offset=5], Int(w[unsafe_offset=6]), Int(w[unsafe_offset=7]),
            Int(w[unsafe_offset=8]), Int(w[unsafe_offset=9]), Int(w[unsafe_offset=10]),
            Int(w[unsafe_offset=11]), w[unsafe_offset=12] != 0, Int(w[unsafe_offset=13]),
            Int(w[unsafe_offset=14]), Int(w[unsafe_offset=15]), Int(w[unsafe_offset=16]))
