# Shared helpers for aura_lab's Mojo kernels (Mojo 1.2.0, max 26.7.0).
#
# Every kernel module is a Python extension built by aura_lab/_mojo.py with
# `mojo build <file> --emit shared-lib -I kernels/`. The Python wrappers validate
# shapes, dtypes, contiguity and writeability *before* calling in, and pass raw
# addresses and sizes as ints; nothing here re-checks them.
#
# GIL: every entry point releases the GIL around its compute with
#     ref cpy = Python().cpython(); var ts = cpy.PyEval_SaveThread()
#     ...; cpy.PyEval_RestoreThread(ts)
# and touches no Python object in between.

from std.python import PythonObject

comptime F32 = DType.float32
comptime F64 = DType.float64


@always_inline
def ptr[dtype: DType](addr: PythonObject) raises -> Pointer[Scalar[dtype], MutUntrackedOrigin]:
    """A raw pointer from an address passed as a Python int."""
    return Pointer[Scalar[dtype], MutUntrackedOrigin](unsafe_from_address=Int(py=addr))
