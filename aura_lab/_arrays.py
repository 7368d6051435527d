"""Input handling shared by every op: array kinds, dtypes, ``out=``, memory estimates.

Arrays in, same kind out: numpy in -> numpy out; torch tensors in -> torch out (zero-copy
views where the layout allows). Validation happens here, before any backend runs and long
before a raw pointer is formed.
"""

from __future__ import annotations

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


def available_memory() -> int:
    """Bytes of memory available to allocate (MemAvailable), or a large number if unknown."""
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
