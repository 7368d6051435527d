# Python binding of the pairwise-distance kernel (compute: aura_kernels/distance/kernel.mojo).
#
# cdist(params_addr): the address of a distance parameter block (aura_lab/distance.py's ABI,
# generated Mojo side aura_kernels/distance/abi.mojo); addresses and sizes validated by
# aura_lab/distance.py beforehand.

from std.python import PythonObject
from std.python.bindings import PythonModuleBuilder
from std.os import abort
from _common import without_gil
from aura_kernels.distance.kernel import distances
from aura_kernels.distance.abi import DistanceParams


@export
def PyInit_distance() abi("C") -> PythonObject:
    try:
        var m = PythonModuleBuilder("distance")
        m.def_function[cdist](
            "cdist",
            docstring="cdist(params_addr): the address of a distance parameter block (aura_lab.distance.ABI)",
        )
        return m.finalize()
    except e:
        abort(String("error creating the aura_lab distance module:", e))


def cdist(params_addr: PythonObject) raises -> PythonObject:
    var p = DistanceParams.load(Int(py=params_addr))

    def body() raises {imm}:
        distances(p)

    without_gil(body)
    return PythonObject(None)
