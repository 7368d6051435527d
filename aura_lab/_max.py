"""The ``max`` backend: aura_lab's Mojo kernels as MAX graph custom ops.

The compute package ``kernels/aura_kernels/`` registers each family's kernel with
``@extensibility.register`` (``<op>/ops.mojo``); it is precompiled
(``mojo precompile kernels/aura_kernels``) into the same per-user cache as the extension
modules, keyed on the compiler, the CPU and the sources. Graphs are built
with symbolic dimensions, so a new problem size never recompiles; compiled graphs are
cached per process (``_models``) and on disk by MAX itself (``~/.cache/modular``, or
``$MODULAR_CACHE_DIR``), so a second process skips the cold compile.

The device comes from MAX: the CPU here, an accelerator where MAX sees one. Ops without a
GPU implementation raise an error naming the op there rather than running elsewhere.

Fork: MAX's runtime threads do not survive ``os.fork``. In a child forked after the runtime
started (a kernel module or a MAX session in the parent) a graph call would wait for them
forever, even in a new session, so there the backend is unavailable (``BackendUnavailable``
naming the cause; ``auto`` picks another backend).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from . import _control, _mojo
from ._cache import memoized
from .errors import BackendUnavailable, MaxGraphError
from .registry import BackendStatus, register_backend

# ops that have a GPU implementation in kernels/aura_kernels (none yet: they raise on a GPU)
GPU_OPS: frozenset[str] = frozenset()


@dataclass
class CompileRecord:
    key: tuple
    seconds: float
    at: float


_lock = threading.Lock()
_models: dict[tuple, object] = {}
# op family -> a function that runs each of its graphs once on tiny inputs (`aura-lab build`)
WARMUPS: dict[str, Callable[[], None]] = {}
compile_log: list[CompileRecord] = []  # every graph compiled in this process, in order


#: why MAX cannot run in this process (a fork after the runtime started), None when it can
_forked_why: str | None = None


def _after_fork_in_child() -> None:
    global _forked_why
    if _mojo._runtime_started:
        _forked_why = ("this process was forked after the Mojo/MAX runtime had started in its parent, and a MAX graph "
                       "call here would wait forever for runtime threads that did not survive the fork; start worker "
                       "processes with multiprocessing's 'spawn' or 'forkserver' method (or joblib's loky backend)")
        from .registry import backend_status

        backend_status.cache_clear()  # the parent's probe said "available"


os.register_at_fork(after_in_child=_after_fork_in_child)


def _check_not_forked() -> None:
    if _forked_why is not None:
        raise BackendUnavailable(f"max backend: {_forked_why}")


def status() -> tuple[bool, str, str]:
    """(available, reason, detail) for ``aura_lab.backends()``; compiles nothing."""
    ok, _, reason = _mojo.status()
    if not ok:
        return False, reason, ""
    if _forked_why is not None:
        return False, _forked_why, ""
    try:
        import max.driver  # noqa: F401
        import max.engine  # noqa: F401
        import max.graph  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the install
        return False, f"cannot import max.graph/engine/driver: {e}", ""
    if not (_mojo.kernels_dir() / "aura_kernels" / "__init__.mojo").is_file():
        return False, "kernels/aura_kernels is missing", ""
    name, _ = device_name()
    return True, "", f"device: {name}; graph ops: {', '.join(sorted(OP_NAMES))}"


OP_NAMES = {"distance": "aura_pairwise_distances", "ssd": "aura_ssd_scan", "routing": "aura_route"}


def _probe() -> BackendStatus:
    try:
        version = importlib.metadata.version("max")
    except importlib.metadata.PackageNotFoundError:
        return BackendStatus("max", False, "", "the max package is not installed (pip install max==26.7.0)")
    ok, reason, detail = status()
    return BackendStatus("max", ok, version, reason, detail)


register_backend("max", _probe)


@lru_cache(maxsize=1)
def device_name() -> tuple[str, bool]:
    """('cpu' or the accelerator's name, is_gpu)."""
    from max.driver import accelerator_count

    try:
        if accelerator_count() > 0:
            from max.driver import accelerator_architecture_name

            return f"gpu ({accelerator_architecture_name()})", True
    except Exception:
        pass
    return "cpu", False


@lru_cache(maxsize=1)
def _session():
    from max.driver import CPU, Accelerator
    from max.engine import InferenceSession

    _check_not_forked()
    _mojo._mark_runtime_started()
    dev = Accelerator() if device_name()[1] else CPU()
    return InferenceSession(devices=[dev]), dev


def device_ref():
    from max.graph import DeviceRef

    return DeviceRef.GPU() if device_name()[1] else DeviceRef.CPU()


def check_op(op: str) -> None:
    """Raise with the op's name when the device MAX found has no implementation of it."""
    name, is_gpu = device_name()
    if is_gpu and op not in GPU_OPS:
        raise BackendUnavailable(
            f"max backend: op '{op}' ({OP_NAMES.get(op, op)}) has no GPU implementation and MAX targets {name}"
        )


def package() -> Path:
    """``kernels/aura_kernels`` precompiled to a ``.mojoc`` in the per-user cache (built once).
    The file name is the package name the graph compiler imports: <hash dir>/aura_kernels.mojoc."""
    src = _mojo.kernels_dir() / "aura_kernels"
    target = _mojo.build_dir() / f"aura_kernels-{_mojo.files_hash(sorted(src.rglob('*.mojo')))}" / "aura_kernels.mojoc"
    return _mojo.compile_into(target, "aura_kernels", ["precompile", str(src)], what="the MAX op library kernels/aura_kernels")


@contextlib.contextmanager
def _stderr_captured(sink: list[str]):
    """Capture what native code writes to fd 2 (MAX prints compiler errors there), then
    replay it so the user still sees it."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as f:
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            text = f.read().decode(errors="replace")
            sink.append(text)
            if text:
                sys.stderr.write(text)


def model(key: tuple, build: Callable[[object, Path], object]):
    """The compiled model for ``key``, building the graph with ``build(device_ref, package)``
    and compiling it on first use in this process (MAX's disk cache makes later processes fast).
    ``BackendUnavailable`` in a child forked after the runtime started."""
    _check_not_forked()
    return memoized(_models, key, _lock, lambda: _compile(key, build))


def _compile(key: tuple, build: Callable[[object, Path], object]):
    session, _ = _session()
    pkg = package()
    t0 = time.perf_counter()
    native: list[str] = []
    before = _native_threads()
    try:
        with _stderr_captured(native):
            m = session.load(build(device_ref(), pkg))
    except Exception as e:
        _wait_for_native_threads(before)
        chain, c = [], e
        while c is not None:
            chain.append(str(c))
            c = c.__cause__
        diag = "\n".join([*native, *reversed(chain)]).strip()
        raise MaxGraphError(f"max backend: compiling the graph {key} failed:\n{diag}") from e
    compile_log.append(CompileRecord(key, time.perf_counter() - t0, time.time()))
    return m


#: how long a failed compile waits for the compiler's own threads to end
COMPILE_THREADS_WAIT_S = 30.0


def _native_threads() -> set[int]:
    """Ids of this process's OS threads (Linux; elsewhere an empty set)."""
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def _wait_for_native_threads(before: set[int], timeout_s: float = COMPILE_THREADS_WAIT_S) -> None:
    """After a failed ``session.load`` MAX's compiler threads run on for up to a second or
    so; an interpreter that exits while one still runs is aborted by its C++ runtime
    ("terminate called without an active exception", exit 134: 3 of 24 exits right
    after a failed compile, measured). So the failure is raised only once every OS thread started
    during the compile has ended (Python threads started meanwhile excepted)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        python = {t.native_id for t in threading.enumerate()}
        if not (_native_threads() - before - python):
            return
        time.sleep(0.02)


def run(key: tuple, build: Callable[[object, Path], object], *arrays):
    """Execute the graph for ``key`` on numpy arrays; returns numpy arrays."""
    import numpy as np
    from max.driver import Buffer

    m = model(key, build)
    _, dev = _session()
    bufs = [Buffer.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    if device_name()[1]:
        bufs = [b.to(dev) for b in bufs]
    outs = _control.native(lambda: m.execute(*bufs))  # interruptible: the kernels poll the control
    if device_name()[1]:
        from max.driver import CPU

        outs = [o.to(CPU()) for o in outs]
    return [o.to_numpy() for o in outs]
