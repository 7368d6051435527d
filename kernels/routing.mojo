# Python binding of the MoE routing kernel (compute: aura_kernels/routing/kernel.mojo).
#
# route(params_addr): the address of a routing parameter block (aura_lab/routing/problem.py's ABI,
# generated Mojo side aura_kernels/routing/abi.mojo); addresses 0 = absent (bias, kept),
# capacity -1 for none, validated by aura_lab/routing beforehand.
# portable_exp(args) with args = (x_addr, out_addr, n): a test helper.

from std.python import PythonObject
from std.python.bindings import PythonModuleBuilder
from std.os import abort
from _common import without_gil
from aura_kernels.common import F64
from aura_kernels.routing.kernel import route_block, portable_exp_simd, P64, W64
from aura_kernels.routing.abi import RoutingParams


@export
def PyInit_routing() abi("C") -> PythonObject:
    try:
        var m = PythonModuleBuilder("routing")
        m.def_function[route](
            "route",
            docstring="route(params_addr): the address of a routing parameter block (aura_lab.routing.ABI); addresses 0 = absent",
        )
        m.def_function[portable_exp](
            "portable_exp",
            docstring="portable_exp(args: tuple) with args = (x_addr, out_addr, n): float64 out[i] = portable exp(x[i])",
        )
        return m.finalize()
    except e:
        abort(String("error creating the aura_lab routing module:", e))


def route(params_addr: PythonObject) raises -> PythonObject:
    var p = RoutingParams.load(Int(py=params_addr))

    def body() raises {imm}:
        route_block(p)

    without_gil(body)
    return PythonObject(None)


def portable_exp(args: PythonObject) raises -> PythonObject:
    """The selection keys' exp over a float64 buffer (lets the tests check its bits)."""
    var x = P64(unsafe_from_address=Int(py=args[0]))
    var o = P64(unsafe_from_address=Int(py=args[1]))
    var n = Int(py=args[2])
    var j = 0
    while j + W64 <= n:
        o.unsafe_store(j, portable_exp_simd(x.unsafe_load[width=W64](j)))
        j += W64
    while j < n:
        o[unsafe_offset=j] = portable_exp_simd[1](SIMD[F64, 1](x[unsafe_offset=j]))[0]
        j += 1
    return PythonObject(None)
