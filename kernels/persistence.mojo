# Python binding of the persistent-homology engine (compute: aura_kernels/persistence/).
#
#   rips((bits, dist_addr, n, maxdim, threshold, modulus, nthreads, budget, info_addr, stats_addr))
#   free_bars((addr,))
#
# Addresses and sizes are validated by aura_lab/persistence.py beforehand; the layout of info[]
# and stats[] is described in aura_kernels/persistence/__init__.mojo.

from std.python import Python, PythonObject
from std.python.bindings import PythonModuleBuilder
from std.os import abort
from aura_kernels.persistence.containers import IntPtr
from aura_kernels.persistence.engine import RipsParams, run_rips, free_bar_buffer


@export
def PyInit_persistence() abi("C") -> PythonObject:
    try:
        var m = PythonModuleBuilder("persistence")
        m.def_function[rips](
            "rips",
            docstring="rips(args: tuple) with args = (dtype_bits, dist_addr, n, maxdim, threshold, modulus, nthreads, budget_bytes, info_addr, stats_addr)",
        )
        m.def_function[free_bars]("free_bars", docstring="free_bars((addr,)): free the bar buffer rips() returned")
        return m.finalize()
    except e:
        abort(String("error creating the aura_lab persistence module:", e))


def _parse_args(args: PythonObject) raises -> RipsParams:
    """The rips() argument tuple as engine parameters."""
    return RipsParams(
        Int(py=args[0]),
        Int(py=args[1]),
        Int(py=args[2]),
        Int(py=args[3]),
        Float64(py=args[4]),
        Int(py=args[5]),
        Int(py=args[6]),
        Int(py=args[7]),
        IntPtr(unsafe_from_address=Int(py=args[8])),
        IntPtr(unsafe_from_address=Int(py=args[9])),
    )


def rips(args: PythonObject) raises -> PythonObject:
    var params = _parse_args(args)
    ref cpy = Python().cpython()
    var ts = cpy.PyEval_SaveThread()
    run_rips(params)
    cpy.PyEval_RestoreThread(ts)
    return PythonObject(None)


def free_bars(args: PythonObject) raises -> PythonObject:
    free_bar_buffer(Int(py=args[0]))
    return PythonObject(None)
