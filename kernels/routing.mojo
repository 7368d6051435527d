# Python binding of the MoE routing kernel (compute: aura_kernels/routing.mojo).
#
# route(args) with args = (logits, T, E, k, scoring, renormalize, scale, bias or 0, n_groups or 0,
# topk_groups, capacity or -1, weights, experts, counts, perm, offsets, kept or 0, nthreads):
# addresses as ints, validated by aura_lab/moe.py beforehand.

from std.python import Python, PythonObject
from std.python.bindings import PythonModuleBuilder
from std.os import abort
from aura_kernels.common import F64
from aura_kernels.routing import Ctx, SOFTMAX, SIGMOID, _dispatch, _pexp, P32, P64, PI32, PI64, PU8, W64


@export
def PyInit_routing() abi("C") -> PythonObject:
    try:
        var m = PythonModuleBuilder("routing")
        m.def_function[route](
            "route",
            docstring=(
                "route(args: tuple) with args = (logits, T, E, k, scoring, renormalize, scale, bias or 0,"
                " n_groups or 0, topk_groups, capacity or -1, weights, experts, counts, perm, offsets,"
                " kept or 0, nthreads); addresses as ints"
            ),
        )
        m.def_function[portable_exp](
            "portable_exp",
            docstring="portable_exp(args: tuple) with args = (x_addr, out_addr, n): float64 out[i] = portable exp(x[i])",
        )
        return m.finalize()
    except e:
        abort(String("error creating the aura_lab routing module:", e))


def route(args: PythonObject) raises -> PythonObject:
    var logits = Int(py=args[0])
    var T = Int(py=args[1])
    var E = Int(py=args[2])
    var k = Int(py=args[3])
    var scoring = Int(py=args[4])
    var renorm = Bool(py=args[5])
    var scale = Float64(py=args[6])
    var bias = Int(py=args[7])
    var n_groups = Int(py=args[8])
    var topk_groups = Int(py=args[9])
    var capacity = Int(py=args[10])
    var weights = Int(py=args[11])
    var experts = Int(py=args[12])
    var counts = Int(py=args[13])
    var perm = Int(py=args[14])
    var offsets = Int(py=args[15])
    var kept = Int(py=args[16])
    var nt = Int(py=args[17])
    if T == 0:
        return PythonObject(None)
    var c = Ctx(
        P32(unsafe_from_address=logits), P32(unsafe_from_address=bias), P32(unsafe_from_address=weights),
        PI32(unsafe_from_address=experts), T, E, k, renorm, scale, n_groups, topk_groups,
    )
    var pc = PI64(unsafe_from_address=counts)
    var pp = PI64(unsafe_from_address=perm)
    var po = PI64(unsafe_from_address=offsets)
    var pk = PU8(unsafe_from_address=kept)
    ref cpy = Python().cpython()
    var ts = cpy.PyEval_SaveThread()
    if scoring == SOFTMAX:
        _dispatch[SOFTMAX](c, bias != 0, n_groups > 0, pc, pp, po, pk, capacity, nt)
    else:
        _dispatch[SIGMOID](c, bias != 0, n_groups > 0, pc, pp, po, pk, capacity, nt)
    cpy.PyEval_RestoreThread(ts)
    return PythonObject(None)


def portable_exp(args: PythonObject) raises -> PythonObject:
    """The selection keys' exp over a float64 buffer (lets the tests check its bits)."""
    var x = P64(unsafe_from_address=Int(py=args[0]))
    var o = P64(unsafe_from_address=Int(py=args[1]))
    var n = Int(py=args[2])
    var j = 0
    while j + W64 <= n:
        o.unsafe_store(j, _pexp(x.unsafe_load[width=W64](j)))
        j += W64
    while j < n:
        o[unsafe_offset=j] = _pexp[1](SIMD[F64, 1](x[unsafe_offset=j]))[0]
        j += 1
    return PythonObject(None)
