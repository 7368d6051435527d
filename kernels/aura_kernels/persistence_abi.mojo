# Generated from the KernelABI 'persistence' (aura_lab/_abi.py): do not edit.
# Regenerate with `python tools/gen_abi.py`; tests/unit/test_abi.py fails while this file is stale.

from aura_kernels.common import checked_block

comptime PERSISTENCE_LAYOUT = 0x1c80ac283


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
