# Python binding of the persistent-homology engine (compute: aura_kernels/persistence/).
#
#   rips(params_addr): the address of a persistence parameter block (aura_lab.persistence.ABI,
#     generated Mojo side aura_kernels/persistence/abi.mojo), validated by aura_lab/persistence/
#   free_bars(addr): free a buffer rips() returned in info[INFO_BARS] or info[INFO_REPS]
#     (or rips_batch() in result[1])
#   rips_batch(params_addr): many small problems in one call (aura_lab.persistence.batch.ABI,
#     generated Mojo side aura_kernels/persistence/batch_abi.mojo; compute:
#     aura_kernels/persistence/batch.mojo), validated by aura_lab/persistence/batch.py
#   collapse(params_addr): the strong edge collapse of a flag filtration's edge list
#     (aura_lab.persistence.collapse.ABI, generated Mojo side aura_kernels/persistence/collapse_abi.mojo;
#     compute: aura_kernels/persistence/collapse.mojo), validated by aura_lab/persistence/collapse.py
#   radius_graph(params_addr): one stage (count or fill) of the radius graph of a point cloud
#     into CSR (aura_lab.neighbors.ABI, generated Mojo side aura_kernels/neighbors/abi.mojo;
#     compute: aura_kernels/neighbors/kernel.mojo), validated and laid out by aura_lab/neighbors.py
#
# The layout of info[] and stats[] is described in aura_kernels/persistence/__init__.mojo.

from std.python import PythonObject
from std.python.bindings import PythonModuleBuilder
from std.os import abort
from _common import without_gil
from aura_kernels.persistence.engine import run_rips, free_bar_buffer
from aura_kernels.persistence.abi import PersistenceParams
from aura_kernels.persistence.batch import run_batch
from aura_kernels.persistence.batch_abi import PersistenceBatchParams
from aura_kernels.persistence.collapse import collapse_edges
from aura_kernels.persistence.collapse_abi import CollapseParams
from aura_kernels.neighbors.kernel import radius_graph_stage
from aura_kernels.neighbors.abi import NeighborsParams


@export
def PyInit_persistence() abi("C") -> PythonObject:
    try:
        var m = PythonModuleBuilder("persistence")
        m.def_function[rips]("rips", docstring="rips(params_addr): the address of a persistence parameter block")
        m.def_function[rips_batch]("rips_batch", docstring="rips_batch(params_addr): the address of a persistence_batch parameter block")
        m.def_function[free_bars]("free_bars", docstring="free_bars(addr): free a buffer rips() returned (bars or representative records)")
        m.def_function[collapse]("collapse", docstring="collapse(params_addr): strong edge collapse (aura_lab.persistence.collapse.ABI)")
        m.def_function[radius_graph]("radius_graph", docstring="radius_graph(params_addr): one stage of the radius graph (aura_lab.neighbors.ABI)")
        return m.finalize()
    except e:
        abort(String("error creating the aura_lab persistence module:", e))


def rips(params_addr: PythonObject) raises -> PythonObject:
    var p = PersistenceParams.load(Int(py=params_addr))

    def body() raises {imm}:
        run_rips(p)

    without_gil(body)
    return PythonObject(None)


def rips_batch(params_addr: PythonObject) raises -> PythonObject:
    var p = PersistenceBatchParams.load(Int(py=params_addr))

    def body() raises {imm}:
        run_batch(p)

    without_gil(body)
    return PythonObject(None)


def free_bars(addr: PythonObject) raises -> PythonObject:
    free_bar_buffer(Int(py=addr))
    return PythonObject(None)


def radius_graph(params_addr: PythonObject) raises -> PythonObject:
    var p = NeighborsParams.load(Int(py=params_addr))

    def body() raises {imm}:
        radius_graph_stage(p)

    without_gil(body)
    return PythonObject(None)


def collapse(params_addr: PythonObject) raises -> PythonObject:
    var p = CollapseParams.load(Int(py=params_addr))

    def body() raises {imm}:
        collapse_edges(p)

    without_gil(body)
    return PythonObject(None)
