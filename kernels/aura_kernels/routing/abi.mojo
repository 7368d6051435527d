# Generated from the KernelABI 'routing' (aura_lab/_abi.py): do not edit.
# Regenerate with `python tools/gen_abi.py`; tests/unit/test_abi.py fails while this file is stale.

from aura_kernels.common import checked_block

comptime ROUTING_LAYOUT = 0x1e445a89c

# scoring ids
comptime SOFTMAX = 0
comptime SIGMOID = 1


@fieldwise_init
struct RoutingParams(ImplicitlyCopyable):
    """The routing parameter block (addresses: 0 = absent)."""

    var logits: Int
    var T: Int
    var E: Int
    var k: Int
    var scoring: Int
    var renormalize: Bool
    var scale: Float64
    var bias: Int
    var n_groups: Int
    var topk_groups: Int
    var capacity: Int
    var weights: Int
    var experts: Int
    var counts: Int
    var perm: Int
    var offsets: Int
    var kept: Int
    var threads: Int
    var control: Int

    @staticmethod
    def load(address: Int) raises -> Self:
        """Read a block written by Python; raises if its layout word is not this one."""
        var w = checked_block(address, ROUTING_LAYOUT, "routing")
        var f = Pointer[Float64, MutUntrackedOrigin](unsafe_from_address=address)
        return Self(Int(w[unsafe_offset=1]), Int(w[unsafe_offset=2]), Int(w[unsafe_offset=3]),
            Int(w[unsafe_offset=4]), Int(w[unsafe_offset=5]), w[unsafe_offset=6] != 0, f[unsafe_offset=7],
            Int(w[unsafe_offset=8]), Int(w[unsafe_offset=9]), Int(w[unsafe_offset=10]),
            Int(w[unsafe_offset=11]), Int(w[unsafe_offset=12]), Int(w[unsafe_offset=13]),
            Int(w[unsafe_offset=14]), Int(w[unsafe_offset=15]), Int(w[unsafe_offset=16]),
            Int(w[unsafe_offset=17]), Int(w[unsafe_offset=18]), Int(w[unsafe_offset=19]))
