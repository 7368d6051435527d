# Python binding of the persistent-homology engine (compute: aura_kernels/persistence/).
#
#   rips(params_addr): the address of a persistence parameter block (aura_lab.persistence.ABI,
#     generated Mojo side aura_kernels/persistence_abi.mojo), validated by aura_lab/persistence.py
#   free_bars(addr): free a buffer rips() returned in info[INFO_BARS] or info[INFO_REPS]
#
# The layout of info[] and stats[] is described in aura_kernels/persistence/__init__.mojo.

from std.python import PythonObject
from std.python.bindings import PythonModuleBuilder
from std.os import abort
from _common import without_gil
from aura_kernels.persistence.engine import run_rips, free_bar_buffer
from aura_kernels.persistence_abi import PersistenceParams


@export
def PyInit_persistence() abi("C") -> PythonObject:
    try:
        var m = PythonModuleBuilder("persistence")
        m.def_function[rips]("rips", docstring="rips(params_addr): the address of a persistence parameter block")
        m.def_function[free_bars]("free_bars", docstring="free_bars(addr): free a buffer rips() returned (bars or representative records)")
        return m.finalize()
    except e:
        abort(String("error creating the aura_lab persistence module:", e))


def rips(params_addr: PythonObject) raises -> PythonObject:
    var p = PersistenceParams.load(Int(py=params_addr))

    def body() raises {imm}:
        run_rips(p)

    without_gil(body)
    return PythonObject(None)


def free_bars(addr: PythonObject) raises -> PythonObject:
    free_bar_buffer(Int(py=addr))
    return PythonObject(None)
