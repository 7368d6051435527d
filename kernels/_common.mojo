# Shared helpers for the Python bindings (kernels/<family>.mojo), built by aura_lab/_mojo.py
# with `mojo build <file> --emit shared-lib -I kernels/`. Compute code lives in the
# aura_kernels package. The Python wrappers validate shapes, dtypes, contiguity and
# writeability *before* calling in, and pass raw addresses and sizes as ints.
#
# GIL: every entry point releases the GIL around its compute with
#     ref cpy = Python().cpython(); var ts = cpy.PyEval_SaveThread()
#     ...; cpy.PyEval_RestoreThread(ts)
# and touches no Python object in between.

from std.python import PythonObject


@always_inline
def ptr[dtype: DType](addr: PythonObject) raises -> Pointer[Scalar[dtype], MutUntrackedOrigin]:
    """A raw pointer from an address passed as a Python int."""
    return Pointer[Scalar[dtype], MutUntrackedOrigin](unsafe_from_address=Int(py=addr))
