# Generated from the KernelABI 'neighbors' (aura_lab/_abi.py): do not edit.
# Regenerate with `python tools/gen_abi.py`; tests/unit/test_abi.py fails while this file is stale.

from aura_kernels.common import checked_block

comptime NEIGHBORS_LAYOUT = 0x186ff5797

# metric ids
comptime EUCLIDEAN = 0
comptime SQEUCLIDEAN = 1
comptime COSINE = 2
comptime CITYBLOCK = 3
comptime CHEBYSHEV = 4

# path ids
comptime GRID = 0
comptime TILES = 1

# stage ids
comptime COUNT = 0
comptime FILL = 1


@fieldwise_init
struct NeighborsParams(ImplicitlyCopyable):
    """The neighbors parameter block (addresses: 0 = absent)."""

    var work_bits: Int
    var out_bits: Int
    var metric: Int
    var path: Int
    var stage: Int
    var x: Int
    var n: Int
    var d: Int
    var radius: Float64
    var acc_radius: Float64
    var threads: Int
    var order: Int
    var ys: Int
    var ldy: Int
    var cellstart: Int
    var pcell: Int
    var strips: Int
    var nstrips: Int
    var maxdeg: Int
    var counts: Int
    var cursor: Int
    var indices: Int
    var dists: Int
    var control: Int

    @staticmethod
    def load(address: Int) raises -> Self:
        """Read a block written by Python; raises if its layout word is not this one."""
        var w = checked_block(address, NEIGHBORS_LAYOUT, "neighbors")
        var f = Pointer[Float64, MutUntrackedOrigin](unsafe_from_address=address)
        return Self(Int(w[unsafe_offset=1]), Int(w[unsafe_offset=2]), Int(w[unsafe_offset=3]),
            Int(w[unsafe_offset=4]), Int(w[unsafe_offset=5]), Int(w[unsafe_offset=6]),
            Int(w[unsafe_offset=7]), Int(w[unsafe_offset=8]), f[unsafe_offset=9], f[unsafe_offset=10],
            Int(w[unsafe_offset=11]), Int(w[unsafe_offset=12]), Int(w[unsafe_offset=13]),
            Int(w[unsafe_offset=14]), Int(w[unsafe_offset=15]), Int(w[unsafe_offset=16]),
            Int(w[unsafe_offset=17]), Int(w[unsafe_offset=18]), Int(w[unsafe_offset=19]),
            Int(w[unsafe_offset=20]), Int(w[unsafe_offset=21]), Int(w[unsafe_offset=22]),
            Int(w[unsafe_offset=23]), Int(w[unsafe_offset=24]))
