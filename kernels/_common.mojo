# Shared helpers for the Python bindings (kernels/<family>.mojo), built by aura_lab/_mojo.py
# with `mojo build <file> --emit shared-lib -I kernels/`. Compute code lives in the
# aura_kernels package (no Python there). The Python wrappers validate shapes, dtypes,
# contiguity and writeability *before* calling in, and pass ONE argument: the address of a
# parameter block (aura_lab/_abi.py), read with the generated <Name>Params.load(address).
#
# GIL: every entry point runs its compute through without_gil, which releases the GIL
# around it and touches no Python object in between.

from std.python import Python


def without_gil[F: def() raises -> None](body: F) raises:
    """Run body() with the GIL released; the GIL is taken back before an error from body is
    re-raised (so raising into Python is safe). body must touch no Python object."""
    ref cpy = Python().cpython()
    var ts = cpy.PyEval_SaveThread()
    try:
        body()
    except e:
        cpy.PyEval_RestoreThread(ts)
        raise e^
    cpy.PyEval_RestoreThread(ts)
