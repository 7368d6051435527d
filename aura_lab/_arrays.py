"""Input handling shared by every op: array kinds, dtypes, ``out=``, memory estimates.

Arrays in, same kind out: numpy in -> numpy out; torch tensors in -> torch out (zero-copy
views where the layout allows). Validation happens here, before any backend runs and long
before a raw pointer is formed.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys

import numpy as np


def is_torch(x) -> bool:
    """True for a torch.Tensor, without importing torch when the caller never did."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def kind_of(*arrays) -> str:
    """'torch' if any input is a torch tensor, else 'numpy'."""
    return "torch" if any(is_torch(a) for a in arrays if a is not None) else "numpy"


def device_of(*arrays) -> str:
    for a in arrays:
        if is_torch(a) and a.device.type != "cpu":
            return a.device.type
    return "cpu"


def to_numpy(x, name: str) -> np.ndarray:
    """A numpy view of ``x`` (numpy array, CPU tensor, or anything np.asarray takes)."""
    if is_torch(x):
        if x.device.type != "cpu":
            raise ValueError(f"{name}: a {x.device.type} tensor can only run on the torch backend")
        if x.is_complex():
            raise TypeError(f"{name}: complex tensors are not supported")
        import torch

        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.detach().resolve_conj().numpy()
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as e:
            raise TypeError(f"{name}: cannot convert {type(x).__name__} to an array ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    return arr


def result_float_dtype(*arrays: np.ndarray) -> np.dtype:
    """float32 if every input is float32, else float64 (float16, ints and bools -> float64)."""
    if all(a.dtype == np.float32 for a in arrays if a is not None):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def round_down(t: float, dtype) -> float:
    """The largest value of ``dtype`` (float32 or float64) that is <= ``t``, as a Python float:
    a threshold compared with ``dtype`` distances (``D[i, j] <= t``) then reads the same in
    every backend."""
    if np.dtype(dtype) != np.float32:
        return float(t)
    t32 = np.float32(t)
    if float(t32) > t:
        t32 = np.nextafter(t32, np.float32(-np.inf))
    return float(t32)


def c_contiguous(a: np.ndarray, dtype) -> np.ndarray:
    """``a`` as a C-contiguous array of ``dtype``; copies only when needed."""
    return np.ascontiguousarray(a, dtype=dtype)


def to_torch(a: np.ndarray):
    """A CPU tensor of ``a`` (sharing its memory when C-contiguous). numpy calls a view reversed
    along a size-1 axis contiguous; torch refuses its negative stride, so that one is copied."""
    import torch

    a = np.ascontiguousarray(a)
    return torch.from_numpy(a if min(a.strides, default=0) >= 0 else a.copy())


def wrap(result: np.ndarray, kind: str):
    """Return ``result`` in the caller's array kind."""
    if kind == "torch":
        import torch

        return torch.from_numpy(result)
    return result


def check_out(out, shape: tuple, dtype: np.dtype, kind: str, name: str = "out") -> np.ndarray:
    """Validate a user-supplied output buffer; return a numpy view of it."""
    if is_torch(out):
        if out.device.type != "cpu":
            raise ValueError(f"{name}: must be a CPU tensor")
        if out.requires_grad:
            raise ValueError(f"{name}: must not require grad")
        if out.dtype.is_complex or str(out.dtype) == "torch.bfloat16":  # no numpy view of these
            raise ValueError(f"{name}: expected dtype {np.dtype(dtype).name}, got {out.dtype}")
        arr = out.detach().numpy()
    elif isinstance(out, np.ndarray):
        arr = out
    else:
        raise TypeError(f"{name}: expected a numpy array or torch tensor, got {type(out).__name__}")
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(arr.shape)}")
    if arr.dtype != dtype:
        raise ValueError(f"{name}: expected dtype {np.dtype(dtype).name}, got {arr.dtype.name}")
    if not arr.flags.writeable:
        raise ValueError(f"{name}: array is read-only")
    return arr


def check_no_overlap(out, name: str = "out", **inputs) -> None:
    """Raise ``ValueError`` naming ``name`` if the output buffer ``out`` (the numpy array or
    CPU tensor the call writes, as the caller passed it) is an input or shares memory with one.

    Each keyword names an input argument; its value is the array or tensor itself, or a tuple
    of what stands for it (the caller's object and the numpy view the kernels read), ``None``
    for an absent one. Kernels write their output in blocks while later blocks still read the
    inputs, so an overlapping output gives silently wrong results (``pairwise_distances(X,
    out=X)``). The very same object is refused even when empty."""
    for arg, objs in inputs.items():
        for x in objs if isinstance(objs, tuple) else (objs,):
            if x is not None and (x is out or _overlaps(out, x)):
                raise ValueError(f"{name}: overlaps {arg}; pass a separate output buffer")


#: ``np.shares_memory``'s work limit: past it the exact test gives up and the buffers count as overlapping
_OVERLAP_MAX_WORK = 100_000
_TooHardError = getattr(np, "exceptions", np).TooHardError  # numpy < 1.25 has no np.exceptions


def _overlaps(a, b) -> bool:
    """Whether ``a`` and ``b`` (numpy arrays or torch tensors) may touch the same bytes: exact
    for numpy arrays and the numpy views of CPU tensors (a layout too hard to decide within
    ``_OVERLAP_MAX_WORK`` counts as overlapping), by address range for a tensor with no numpy
    view (bfloat16). Anything else (a list, a device tensor) holds no host memory of the caller's."""
    a, b = _host_memory(a), _host_memory(b)
    if a is None or b is None:
        return False
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        try:
            return bool(np.shares_memory(a, b, max_work=_OVERLAP_MAX_WORK))
        except _TooHardError:
            return True
    (alo, ahi), (blo, bhi) = _span(a), _span(b)
    return alo < bhi and blo < ahi


def _host_memory(x):
    """``x`` as a numpy array (a view for a CPU tensor), or the CPU tensor itself where it has
    no numpy view; None for what is neither."""
    if is_torch(x):
        if x.device.type != "cpu":
            return None
        try:
            return x.detach().numpy()
        except (TypeError, RuntimeError):  # bfloat16, a conjugate view: compare address ranges
            return x
    return x if isinstance(x, np.ndarray) else None


def _span(x) -> tuple[int, int]:
    """[first byte, one past the last byte) that a numpy array or CPU tensor addresses; (0, 0) if empty."""
    if is_torch(x):
        ptr, size = x.data_ptr(), x.element_size()
        shape, strides = tuple(x.shape), [s * size for s in x.stride()]
    else:
        ptr, size, shape, strides = x.ctypes.data, x.itemsize, x.shape, x.strides
    if 0 in shape:
        return 0, 0
    lo, hi = ptr, ptr + size
    for n, stride in zip(shape, strides):
        reach = (n - 1) * stride
        lo, hi = (lo + reach, hi) if reach < 0 else (lo, hi + reach)
    return lo, hi


#: the reading ``one_memory_reading`` holds for the calls inside its block (None: read each time)
_memory_reading: contextvars.ContextVar = contextvars.ContextVar("aura_memory_reading", default=None)


@contextlib.contextmanager
def one_memory_reading():
    """Within the block (this thread / context) ``available_memory`` reads /proc/meminfo once
    and returns that reading after (~20 us saved per further check): for calls whose own
    allocations are small next to the memory available (a small persistence problem checks
    it three times). Nested blocks keep the outer reading."""
    if _memory_reading.get() is not None:
        yield
        return
    token = _memory_reading.set(_read_available_memory())
    try:
        yield
    finally:
        _memory_reading.reset(token)


def available_memory() -> int:
    """Bytes of memory available to allocate (MemAvailable), or a large number if unknown;
    inside ``one_memory_reading`` its one reading."""
    held = _memory_reading.get()
    return held if held is not None else _read_available_memory()


def _read_available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 1 << 62


def check_memory(nbytes: int, what: str) -> None:
    """Raise ``MemoryError`` before allocating ``nbytes`` if they would not fit."""
    avail = available_memory()
    if nbytes > avail:
        raise MemoryError(
            f"{what} needs {nbytes / 2**30:.2f} GiB but only {avail / 2**30:.2f} GiB of memory is available"
        )


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
