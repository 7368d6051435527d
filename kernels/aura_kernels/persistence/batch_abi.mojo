# Generated from the KernelABI 'persistence_batch' (aura_lab/_abi.py): do not edit.
# Regenerate with `python tools/gen_abi.py`; tests/unit/test_abi.py fails while this file is stale.

from aura_kernels.common import checked_block

comptime PERSISTENCE_BATCH_LAYOUT = 0x1d5e2190c

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

# result (written by the kernel)
comptime RESULT_STATUS = 0
comptime RESULT_BARS = 1
comptime RESULT_NBARS = 2
comptime RESULT_FAILED = 3
comptime RESULT_WORDS = 4

# stage (written by the kernel)
comptime STAGE_COLLAPSE = 2050
comptime STAGE_BATCH = 2051


@fieldwise_init
struct PersistenceBatchParams(ImplicitlyCopyable):
    """The persistence_batch parameter block (addresses: 0 = absent)."""

    var dtype_bits: Int
    var is_matrix: Bool
    var data: Int
    var starts: Int
    var sizes: Int
    var dims: Int
    var maxdims: Int
    var thresholds: Int
    var order: Int
    var count: Int
    var modulus: Int
    var threads: Int
    var budget: Int
    var info: Int
    var result: Int
    var control: Int

    @staticmethod
    def load(address: Int) raises -> Self:
        """Read a block written by Python; raises if its layout word is not this one."""
        var w = checked_block(address, PERSISTENCE_BATCH_LAYOUT, "persistence_batch")
        return Self(Int(w[unsafe_offset=1]), w[unsafe_offset=2] != 0, Int(w[unsafe_offset=3]),
            Int(w[unsafe_offset=4]), Int(w[unsafe_offset=5]), Int(w[unsafe_offset=6]),
            Int(w[unsafe_offset=7]), Int(w[unsafe_offset=8]), Int(w[unsafe_offset=9]),
            Int(w[unsafe_offset=10]), Int(w[unsafe_offset=11]), Int(w[unsafe_offset=12]),
            Int(w[unsafe_offset=13]), Int(w[unsafe_offset=14]), Int(w[unsafe_offset=15]),
            Int(w[unsafe_offset=16]))
