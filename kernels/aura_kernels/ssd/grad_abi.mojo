# Generated from the KernelABI 'ssd_grad' (aura_lab/_abi.py): do not edit.
# Regenerate with `python tools/gen_abi.py`; tests/unit/test_abi.py fails while this file is stale.

from aura_kernels.common import checked_block

comptime SSD_GRAD_LAYOUT = 0x15ef5ebd8


@fieldwise_init
struct SsdGradParams(ImplicitlyCopyable):
    """The ssd_grad parameter block (addresses: 0 = absent)."""

    var fwd: Int
    var gy: Int
    var gfin: Int
    var gx: Int
    var gdt: Int
    var gA: Int
    var gB: Int
    var gC: Int
    var gD: Int
    var gz: Int
    var gbias: Int
    var ginit: Int
    var control: Int

    @staticmethod
    def load(address: Int) raises -> Self:
        """Read a block written by Python; raises if its layout word is not this one."""
        var w = checked_block(address, SSD_GRAD_LAYOUT, "ssd_grad")
        return Self(Int(w[unsafe_offset=1]), Int(w[unsafe_offset=2]), Int(w[unsafe_offset=3]),
            Int(w[unsafe_offset=4]), Int(w[unsafe_offset=5]), Int(w[unsafe_offset=6]),
            Int(w[unsafe_offset=7]), Int(w[unsafe_offset=8]), Int(w[unsafe_offset=9]),
            Int(w[unsafe_offset=10]), Int(w[unsafe_offset=11]), Int(w[unsafe_offset=12]),
            Int(w[unsafe_offset=13]))
