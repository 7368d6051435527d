# Python binding of the Mamba-2 selective scan (compute: aura_kernels/ssd.mojo).
#
# scan(args) with args = (dtype_bits, x, dt, A, B, C, D, d_per_p, z, dt_bias, softplus, lo, hi,
# offsets, nseq, h, p, n, g, init, fin, y, nthreads): addresses as ints (0 = absent),
# validated by aura_lab/ssd.py beforehand. lanes(dtype_bits): the vector width n must be a
# multiple of (Python pads B, C and the state).

from std.python import Python, PythonObject
from std.python.bindings import PythonModuleBuilder
from std.os import abort
from aura_kernels.common import F32, F64
from aura_kernels.ssd import _Problem, _run, _lanes


@export
def PyInit_ssd() abi("C") -> PythonObject:
    try:
        var m = PythonModuleBuilder("ssd")
        m.def_function[scan](
            "scan",
            docstring=(
                "scan(args: tuple) with args = (dtype_bits, x, dt, A, B, C, D, d_per_p, z, dt_bias, softplus, lo, hi,"
                " offsets, nseq, h, p, n, g, init, fin, y, nthreads); addresses as ints, 0 = absent"
            ),
        )
        m.def_function[lanes]("lanes", docstring="lanes(dtype_bits): the vector width n must be a multiple of")
        return m.finalize()
    except e:
        abort(String("error creating the aura_lab ssd module:", e))


def lanes(bits: PythonObject) raises -> PythonObject:
    if Int(py=bits) == 32:
        return _lanes[F32]()
    return _lanes[F64]()


def _problem[dtype: DType](args: PythonObject) raises -> _Problem[dtype]:
    return _Problem[dtype](
        Int(py=args[1]), Int(py=args[2]), Int(py=args[3]), Int(py=args[4]), Int(py=args[5]), Int(py=args[6]),
        Bool(py=args[7]), Int(py=args[8]), Int(py=args[9]), Bool(py=args[10]),
        Scalar[dtype](Float64(py=args[11])), Scalar[dtype](Float64(py=args[12])),
        Int(py=args[13]), Int(py=args[14]), Int(py=args[15]), Int(py=args[16]), Int(py=args[17]), Int(py=args[18]),
        Int(py=args[19]), Int(py=args[20]), Int(py=args[21]), Int(py=args[22]),
    )


def scan(args: PythonObject) raises -> PythonObject:
    var bits = Int(py=args[0])
    if bits == 32:
        var pr = _problem[F32](args)
        ref cpy = Python().cpython()
        var ts = cpy.PyEval_SaveThread()
        try:
            _run[F32](pr)
        except e:
            cpy.PyEval_RestoreThread(ts)
            raise e^
        cpy.PyEval_RestoreThread(ts)
    else:
        var pr = _problem[F64](args)
        ref cpy = Python().cpython()
        var ts = cpy.PyEval_SaveThread()
        try:
            _run[F64](pr)
        except e:
            cpy.PyEval_RestoreThread(ts)
            raise e^
        cpy.PyEval_RestoreThread(ts)
    return PythonObject(None)
