# Generated from the KernelABI 'collapse' (aura_lab/_abi.py): do not edit.
# Regenerate with `python tools/gen_abi.py`; tests/unit/test_abi.py fails while this file is stale.

from aura_kernels.common import checked_block

comptime COLLAPSE_LAYOUT = 0x11350048a

# status (written by the kernel)
comptime STATUS_OK = 0
comptime STATUS_OUT_OF_MEMORY = 1
comptime STATUS_CANCELLED = 2
comptime STATUS_INCONSISTENT = 3

# info (written by the kernel)
comptime INFO_STATUS = 0
comptime INFO_EDGES = 1
comptime INFO_PASSES = 2
comptime INFO_PASS0 = 3
comptime INFO_WORDS = 4

# stage (written by the kernel)
comptime STAGE_COLLAPSE = 2050
comptime STAGE_BATCH = 2051


@fieldwise_init
struct CollapseParams(ImplicitlyCopyable):
    """The collapse parameter block (addresses: 0 = absent)."""

    var dtype_bits: Int
    var n: Int
    var m: Int
    var u: Int
    var v: Int
    var f: Int
    var max_passes: Int
    var min_removed: Float64
    var info: Int
    var u_out: Int
    var v_out: Int
    var f_out: Int
    var control: Int

    @staticmethod
    def load(address: Int) raises -> Self:
        """Read a block written by Python; raises if its layout word is not this one."""
        var w = checked_block(address, COLLAPSE_LAYOUT, "collapse")
        var f = Pointer[Float64, MutUntrackedOrigin](unsafe_from_address=address)
        return Self(Int(w[unsafe_offset=1]), Int(w[unsafe_offset=2]), Int(w[unsafe_offset=3]),
            Int(w[unsafe_offset=4]), Int(w[unsafe_offset=5]), Int(w[unsafe_offset=6]),
            Int(w[unsafe_offset=7]), f[unsafe_offset=8], Int(w[unsafe_offset=9]), Int(w[unsafe_offset=10]),
            Int(w[unsafe_offset=11]), Int(w[unsafe_offset=12]), Int(w[unsafe_offset=13]))
