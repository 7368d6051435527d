# Generated from the KernelABI 'distance' (aura_lab/_abi.py): do not edit.
# Regenerate with `python tools/gen_abi.py`; tests/unit/test_abi.py fails while this file is stale.

from aura_kernels.common import checked_block

comptime DISTANCE_LAYOUT = 0x1b05ff8f2

# metric ids
comptime EUCLIDEAN = 0
comptime SQEUCLIDEAN = 1
comptime COSINE = 2
comptime CITYBLOCK = 3
comptime CHEBYSHEV = 4


@fieldwise_init
struct DistanceParams(ImplicitlyCopyable):
    """The distance parameter block (addresses: 0 = absent)."""

    var dtype_bits: Int
    var metric: Int
    var x: Int
    var y: Int
    var result: Int
    var n: Int
    var m: Int
    var d: Int
    var ldo: Int
    var threads: Int
    var control: Int

    @staticmethod
    def load(address: Int) raises -> Self:
        """Read a block written by Python; raises if its layout word is not this one."""
        var w = checked_block(address, DISTANCE_LAYOUT, "distance")
        return Self(Int(w[unsafe_offset=1]), Int(w[unsafe_offset=2]), Int(w[unsafe_offset=3]),
            Int(w[unsafe_offset=4]), Int(w[unsafe_offset=5]), Int(w[unsafe_offset=6]),
            Int(w[unsafe_offset=7]), Int(w[unsafe_offset=8]), Int(w[unsafe_offset=9]),
            Int(w[unsafe_offset=10]), Int(w[unsafe_offset=11]))
