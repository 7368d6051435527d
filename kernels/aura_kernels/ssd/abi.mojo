# Generated from the KernelABI 'ssd' (aura_lab/_abi.py): do not edit.
# Regenerate with `python tools/gen_abi.py`; tests/unit/test_abi.py fails while this file is stale.

from aura_kernels.common import checked_block

comptime SSD_LAYOUT = 0x23307b764


@fieldwise_init
struct SsdParams(ImplicitlyCopyable):
    """The ssd parameter block (addresses: 0 = absent)."""

    var dtype_bits: Int
    var x: Int
    var dt: Int
    var A: Int
    var B: Int
    var C: Int
    var D: Int
    var d_per_p: Bool
    var z: Int
    var dt_bias: Int
    var softplus: Bool
    var lo: Float64
    var hi: Float64
    var offsets: Int
    var nseq: Int
    var h: Int
    var p: Int
    var n: Int
    var g: Int
    var init: Int
    var fin: Int
    var y: Int
    var threads: Int
    var ckpt: Int
    var chunk: Int
    var ypre: Int
    var control: Int

    @staticmethod
    def load(address: Int) raises -> Self:
        """Read a block written by Python; raises if its layout word is not this one."""
        var w = checked_block(address, SSD_LAYOUT, "ssd")
        var f = Pointer[Float64, MutUntrackedOrigin](unsafe_from_address=address)
        return Self(Int(w[unsafe_offset=1]), Int(w[unsafe_offset=2]), Int(w[unsafe_offset=3]),
            Int(w[unsafe_offset=4]), Int(w[unsafe_offset=5]), Int(w[unsafe_offset=6]),
            Int(w[unsafe_offset=7]), w[unsafe_offset=8] != 0, Int(w[unsafe_offset=9]),
            Int(w[unsafe_offset=10]), w[unsafe_offset=11] != 0, f[unsafe_offset=12], f[unsafe_offset=13],
            Int(w[unsafe_offset=14]), Int(w[unsafe_offset=15]), Int(w[unsafe_offset=16]),
            Int(w[unsafe_offset=17]), Int(w[unsafe_offset=18]), Int(w[unsafe_offset=19]),
            Int(w[unsafe_offset=20]), Int(w[unsafe_offset=21]), Int(w[unsafe_offset=22]),
            Int(w[unsafe_offset=23]), Int(w[unsafe_offset=24]), Int(w[unsafe_offset=25]),
            Int(w[unsafe_offset=26]), Int(w[unsafe_offset=27]))
