# Python binding of the Mamba-2 selective scan (compute: aura_kernels/ssd/scan.mojo).
#
# scan(params_addr), scan_chunked(params_addr) (a training forward as chunked matrix products,
# aura_kernels/ssd/chunked.mojo), scan_grad(params_addr) (the backward, aura_kernels/ssd/grad.mojo),
# scan_grad_chunked(params_addr) (the same backward as chunked matrix products,
# aura_kernels/ssd/chunked.mojo): the address of an ssd parameter block (aura_lab/ssd/problem.py's ABI, generated
# Mojo side aura_kernels/ssd/abi.mojo); addresses 0 = absent, validated by aura_lab/ssd
# beforehand. lanes(dtype_bits): the vector width n must be a multiple of (Python pads B, C
# and the state).

from std.python import PythonObject
from std.python.bindings import PythonModuleBuilder
from std.os import abort
from _common import without_gil
from aura_kernels.common import F32, F64
from aura_kernels.ssd.scan import lanes as state_lanes, run_scan
from aura_kernels.ssd.abi import SsdParams
from aura_kernels.ssd.grad import run_scan_grad
from aura_kernels.ssd.grad_abi import SsdGradParams
from aura_kernels.ssd.chunk_gemm import gemm_rate as _gemm_rate
from aura_kernels.ssd.chunked import run_scan_chunked, run_scan_grad_chunked


@export
def PyInit_ssd() abi("C") -> PythonObject:
    try:
        var m = PythonModuleBuilder("ssd")
        m.def_function[scan](
            "scan",
            docstring="scan(params_addr): the address of an ssd parameter block (aura_lab.ssd.ABI); addresses 0 = absent",
        )
        m.def_function[scan_chunked](
            "scan_chunked",
            docstring="scan_chunked(params_addr): a training forward block (y, fin, ckpt required) as chunked matrix products",
        )
        m.def_function[scan_grad](
            "scan_grad",
            docstring="scan_grad(params_addr): the address of an ssd_grad block (aura_lab.ssd.GRAD_ABI)",
        )
        m.def_function[scan_grad_chunked](
            "scan_grad_chunked",
            docstring="scan_grad_chunked(params_addr): the backward as chunked matrix products (same block as scan_grad)",
        )
        m.def_function[gemm_rate](
            "gemm_rate",
            docstring="gemm_rate([M, N, K, reps, dtype_bits, variant]): seconds for reps chunk-sized products on one thread (bench; variant: the register block, see chunk_gemm.gemm_rate)",
        )
        m.def_function[lanes]("lanes", docstring="lanes(dtype_bits): the vector width n must be a multiple of")
        return m.finalize()
    except e:
        abort(String("error creating the aura_lab ssd module:", e))


def lanes(bits: PythonObject) raises -> PythonObject:
    if Int(py=bits) == 32:
        return state_lanes[F32]()
    return state_lanes[F64]()


def scan(params_addr: PythonObject) raises -> PythonObject:
    var p = SsdParams.load(Int(py=params_addr))

    def body() raises {imm}:
        run_scan(p)

    without_gil(body)
    return PythonObject(None)


def scan_chunked(params_addr: PythonObject) raises -> PythonObject:
    var p = SsdParams.load(Int(py=params_addr))

    def body() raises {imm}:
        run_scan_chunked(p)

    without_gil(body)
    return PythonObject(None)


def scan_grad(params_addr: PythonObject) raises -> PythonObject:
    var p = SsdGradParams.load(Int(py=params_addr))

    def body() raises {imm}:
        run_scan_grad(p)

    without_gil(body)
    return PythonObject(None)


def scan_grad_chunked(params_addr: PythonObject) raises -> PythonObject:
    var p = SsdGradParams.load(Int(py=params_addr))

    def body() raises {imm}:
        run_scan_grad_chunked(p)

    without_gil(body)
    return PythonObject(None)


def gemm_rate(args: PythonObject) raises -> PythonObject:
    var M = Int(py=args[0])
    var N = Int(py=args[1])
    var K = Int(py=args[2])
    var reps = Int(py=args[3])
    if M <= 0 or N <= 0 or K <= 0 or reps <= 0:
        raise Error("gemm_rate: M, N, K and reps must be positive")
    var variant = Int(py=args[5])
    if Int(py=args[4]) == 32:
        return _gemm_rate[F32](M, N, K, reps, variant)
    return _gemm_rate[F64](M, N, K, reps, variant)
