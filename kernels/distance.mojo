# Python binding of the pairwise-distance kernel (compute: aura_kernels/distance.mojo).
#
# cdist(args) with args = (dtype_bits, metric, x_addr, y_addr, out_addr, n, m, d, ldo,
# nthreads): addresses and sizes validated by aura_lab/distance.py beforehand.

from std.python import Python, PythonObject
from std.python.bindings import PythonModuleBuilder
from std.os import abort
from aura_kernels.common import F32, F64
from aura_kernels.distance import _dispatch

@export
def PyInit_distance() abi("C") -> PythonObject:
    try:
        var m = PythonModuleBuilder("distance")
        m.def_function[cdist](
            "cdist",
            docstring="cdist(args: tuple) with args = (dtype_bits, metric, x_addr, y_addr, out_addr, n, m, d, ldo, nthreads)",
        )
        return m.finalize()
    except e:
        abort(String("error creating the aura_lab distance module:", e))


def cdist(args: PythonObject) raises -> PythonObject:
    var bits = Int(py=args[0])
    var metric = Int(py=args[1])
    var x = Int(py=args[2])
    var y = Int(py=args[3])
    var o = Int(py=args[4])
    var n = Int(py=args[5])
    var m = Int(py=args[6])
    var d = Int(py=args[7])
    var ldo = Int(py=args[8])
    var nt = Int(py=args[9])
    if n == 0 or m == 0:
        return PythonObject(None)
    ref cpy = Python().cpython()
    var ts = cpy.PyEval_SaveThread()
    try:
        if bits == 32:
            _dispatch[F32](metric, x, y, o, n, m, d, ldo, nt)
        else:
            _dispatch[F64](metric, x, y, o, n, m, d, ldo, nt)
    except e:
        cpy.PyEval_RestoreThread(ts)
        raise e^
    cpy.PyEval_RestoreThread(ts)
    return PythonObject(None)
