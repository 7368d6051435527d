# MAX custom op: the Mamba-2 selective scan (aura_kernels/ssd.mojo), also used for the
# decode step (one token per sequence, state in, state out).
#
# Inputs in the layout of ssd.mojo (tokens flattened over batch x length, n padded to the
# vector width by aura_lab/ssd.py): x (T, h, p), dt (T, h), A (h), B and C (T, g, n),
# D (h, p) or (h, 1), z (T, h, p), dt_bias (h), offsets (nseq + 1) int64, state
# (nseq, h, p, n) = the initial states, fargs = [lo, hi] float64 and
# iargs = [has_D, D_per_p, has_z, has_bias, softplus, has_init, threads] int64.
# Absent optional inputs are passed as 1-element placeholders with their flag off, so one
# graph per dtype covers every combination; all dimensions are symbolic.
# Outputs: y (T, h, p) and the final states (nseq, h, p, n).

import extensibility
from extensibility import InputTensor, OutputTensor
from max.gpu.host import DeviceContext
from aura_kernels.ssd import _Problem, _run


@always_inline
def _addr(present: Bool, a: Int) -> Int:
    return a if present else 0


@extensibility.register("aura_ssd_scan")
struct AuraSSDScan:
    @staticmethod
    def execute[target: StaticString](
        y: OutputTensor[rank=3, ...],
        fin: OutputTensor[dtype=y.dtype, rank=4, ...],
        x: InputTensor[dtype=y.dtype, rank=3, ...],
        dt: InputTensor[dtype=y.dtype, rank=2, ...],
        A: InputTensor[dtype=y.dtype, rank=1, ...],
        B: InputTensor[dtype=y.dtype, rank=3, ...],
        C: InputTensor[dtype=y.dtype, rank=3, ...],
        D: InputTensor[dtype=y.dtype, rank=2, ...],
        z: InputTensor[dtype=y.dtype, rank=3, ...],
        bias: InputTensor[dtype=y.dtype, rank=1, ...],
        offs: InputTensor[dtype=DType.int64, rank=1, ...],
        state: InputTensor[dtype=y.dtype, rank=4, ...],
        fargs: InputTensor[dtype=DType.float64, rank=1, ...],
        iargs: InputTensor[dtype=DType.int64, rank=1, ...],
        ctx: DeviceContext,
    ) raises:
        comptime if target != "cpu":
            raise Error("aura_ssd_scan: the max backend has no GPU implementation of this op yet")
        comptime assert y.dtype.is_floating_point(), "aura_ssd_scan: floating-point tensors only"
        var ia = Pointer[Int64, MutUntrackedOrigin](unsafe_from_address=Int(iargs.unsafe_ptr()))
        var fa = Pointer[Float64, MutUntrackedOrigin](unsafe_from_address=Int(fargs.unsafe_ptr()))
        var has_init = ia[unsafe_offset=5] != 0
        var pr = _Problem[y.dtype](
            Int(x.unsafe_ptr()), Int(dt.unsafe_ptr()), Int(A.unsafe_ptr()), Int(B.unsafe_ptr()), Int(C.unsafe_ptr()),
            _addr(ia[unsafe_offset=0] != 0, Int(D.unsafe_ptr())), ia[unsafe_offset=1] != 0,
            _addr(ia[unsafe_offset=2] != 0, Int(z.unsafe_ptr())), _addr(ia[unsafe_offset=3] != 0, Int(bias.unsafe_ptr())),
            ia[unsafe_offset=4] != 0, Scalar[y.dtype](fa[unsafe_offset=0]), Scalar[y.dtype](fa[unsafe_offset=1]),
            Int(offs.unsafe_ptr()), offs.dim_size(0) - 1, x.dim_size(1), x.dim_size(2), B.dim_size(2), B.dim_size(1),
            _addr(has_init, Int(state.unsafe_ptr())), Int(fin.unsafe_ptr()), Int(y.unsafe_ptr()), Int(ia[unsafe_offset=6]),
        )
        _run[y.dtype](pr)
