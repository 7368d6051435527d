"""One registry for backends and ops.

* ``backends()`` lists numpy / torch / mojo / max with availability, version and the
  reason when unavailable.
* Each op module creates an ``Op`` and registers one implementation per backend with
  ``@op.impl("torch")``. Public functions call ``op.run(backend, ...)``, which resolves
  ``"auto"``, raises ``RuntimeError`` with the reason for an explicit backend that cannot
  run, falls back with an ``AuraFallbackWarning`` under ``"auto"``, and records what ran
  (``aura_lab.last_dispatch()``).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.metadata
import logging
import math
import threading
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

log = logging.getLogger("aura_lab")

BACKENDS = ("numpy", "torch", "mojo", "max")
# independent references that some ops can also run through (never chosen before a compute
# backend by ``auto`` unless the op says so): listed by ``backend_status``, not ``backends()``
REFERENCE_BACKENDS = ("gudhi",)


class AuraFallbackWarning(RuntimeWarning):
    """``backend="auto"`` could not use its first choice and fell back."""


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    version: str
    reason: str = ""
    detail: str = ""

    def __str__(self) -> str:
        state = "available" if self.available else f"unavailable: {self.reason}"
        ver = f" {self.version}" if self.version else ""
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.name}{ver}: {state}{extra}"


def _probe_numpy() -> BackendStatus:
    import numpy

    return BackendStatus("numpy", True, numpy.__version__, detail="reference")


def _probe_torch() -> BackendStatus:
    try:
        import torch
    except Exception as e:  # ImportError or a broken install
        return BackendStatus("torch", False, "", f"cannot import torch: {e}")
    devices = "cpu" + (", cuda" if torch.cuda.is_available() else "")
    return BackendStatus("torch", True, torch.__version__, detail=f"devices: {devices}; threads: {torch.get_num_threads()}")


def _probe_mojo() -> BackendStatus:
    from . import _mojo

    ok, version, reason = _mojo.status()
    if not ok:
        return BackendStatus("mojo", False, "", reason)
    built = [k for k in _mojo.kernel_names() if _mojo.is_built(k)]
    detail = f"kernels built: {', '.join(built) or 'none yet (compiled on first use)'}"
    return BackendStatus("mojo", True, version, detail=detail)


def _probe_max() -> BackendStatus:
    try:
        version = importlib.metadata.version("max")
    except importlib.metadata.PackageNotFoundError:
        return BackendStatus("max", False, "", "the max package is not installed (pip install max==26.7.0)")
    try:
        from . import _max  # noqa: F401  (added by the MAX backend)
    except ImportError:
        return BackendStatus("max", False, version, "aura_lab has no MAX graph ops yet")
    ok, reason, detail = _max.status()
    return BackendStatus("max", ok, version, reason, detail)


def _probe_gudhi() -> BackendStatus:
    try:
        import gudhi
    except Exception as e:
        return BackendStatus("gudhi", False, "", f"cannot import gudhi: {e}")
    return BackendStatus("gudhi", True, gudhi.__version__, detail="reference for rips_persistence")


_PROBES = {"numpy": _probe_numpy, "torch": _probe_torch, "mojo": _probe_mojo, "max": _probe_max, "gudhi": _probe_gudhi}


def check_backend_name(name: str) -> None:
    """ValueError unless ``name`` is a backend aura_lab knows (compute or reference)."""
    if not isinstance(name, str) or name not in _PROBES:
        raise ValueError(f"unknown backend {name!r}; valid: {', '.join([*BACKENDS, *REFERENCE_BACKENDS])}, or 'auto'")


@lru_cache(maxsize=None)
def backend_status(name: str) -> BackendStatus:
    check_backend_name(name)
    return _PROBES[name]()


def backends() -> list[BackendStatus]:
    """One row per backend: name, available, version, reason (when unavailable), detail."""
    return [backend_status(name) for name in BACKENDS]


# ---------------------------------------------------------------------------- dispatch

@dataclass
class Dispatch:
    """What ran for the last call in this thread (see ``aura_lab.last_dispatch()``)."""

    op: str
    backend: str
    requested: str
    reason: str
    seconds: float = 0.0
    fallbacks: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        s = f"{self.op}: ran {self.backend} (requested {self.requested}; {self.reason}) in {self.seconds * 1e3:.3f} ms"
        if self.fallbacks:
            s += "; skipped " + "; ".join(self.fallbacks)
        return s


_last = threading.local()
_default_backend: contextvars.ContextVar[str] = contextvars.ContextVar("aura_backend", default="auto")


def last_dispatch() -> Dispatch | None:
    """The record of the most recent op call in this thread: op, backend, why, seconds."""
    return getattr(_last, "record", None)


@contextlib.contextmanager
def use_backend(name: str):
    """Within the block, calls that say ``backend="auto"`` use ``name`` instead (ops that
    lack ``name`` keep choosing automatically)."""
    if name != "auto":
        check_backend_name(name)
    token = _default_backend.set(name)
    try:
        yield
    finally:
        _default_backend.reset(token)


def explain(op: str, **size) -> str:
    """Which backend ``backend="auto"`` picks for ``op`` at ``size`` and why, e.g.
    ``explain("distance", n=4096, m=4096, d=64)``."""
    if op not in Op.registry:
        raise ValueError(f"op: unknown op {op!r}; known ops: {', '.join(sorted(Op.registry))}")
    return Op.registry[op].explain(size)


class BackendUnavailable(RuntimeError):
    """A backend that cannot run here; raised for explicit requests, caught by ``auto``."""


@dataclass
class Impl:
    backend: str
    fn: Callable
    devices: tuple[str, ...] = ("cpu",)


class Op:
    """One kernel family: its implementations per backend and how ``auto`` chooses."""

    registry: dict[str, "Op"] = {}

    def __init__(self, name: str, *, reference: str = "numpy", auto_order: tuple[str, ...] = ("mojo", "torch", "numpy"),
                 work: Callable[[dict], float] | None = None):
        self.name = name
        self.reference = reference
        self.auto_order = auto_order
        self._work = work
        self.impls: dict[str, Impl] = {}
        Op.registry[name] = self

    def impl(self, backend: str, *, devices: tuple[str, ...] = ("cpu",)):
        check_backend_name(backend)

        def deco(fn):
            self.impls[backend] = Impl(backend, fn, devices)
            return fn

        return deco

    def work(self, size: dict) -> float:
        """A scalar measure of the problem size (calibration interpolates over it)."""
        if self._work is not None:
            return float(self._work(size))
        return float(math.prod(max(1, int(v)) for v in size.values()))

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(b for b in (*BACKENDS, *REFERENCE_BACKENDS) if b in self.impls)

    def record(self, backend: str, requested: str, reason: str, seconds: float, fallbacks=()) -> Dispatch:
        """Store what ran as ``aura_lab.last_dispatch()``."""
        rec = Dispatch(self.name, backend, requested, reason, seconds, list(fallbacks))
        _last.record = rec
        log.debug("%s", rec)
        return rec

    def check(self, backend: str, device: str = "cpu") -> None:
        """Raise ``BackendUnavailable`` with the reason if ``backend`` cannot run this op."""
        if backend not in self.impls:
            raise BackendUnavailable(f"{self.name}: backend {backend!r} is not implemented (this op has: {', '.join(self.backends)})")
        st = backend_status(backend)
        if not st.available:
            raise BackendUnavailable(f"{self.name}: backend {backend!r} is unavailable: {st.reason}")
        if device not in self.impls[backend].devices:
            raise BackendUnavailable(f"{self.name}: backend {backend!r} does not run on {device} inputs")

    def auto_candidates(self, size: dict | None = None) -> tuple[list[str], str]:
        """Backends ``auto`` would try, in order, and why."""
        try:
            from . import _auto
        except ImportError:
            return list(self.auto_order), "default order"
        return _auto.order(self, size or {})

    def explain(self, size: dict | None = None, device: str = "cpu") -> str:
        order, why = self.auto_candidates(size)
        for b in order:
            try:
                self.check(b, device)
            except BackendUnavailable as e:
                why += f"; skip {b}: {e}"
                continue
            return f"{self.name}: auto picks {b} ({why})"
        return f"{self.name}: no backend can run ({why})"

    def run(self, backend: str, *args, size: dict | None = None, device: str = "cpu", **kwargs):
        """Run the op with ``backend`` ("auto" or a name); record what ran."""
        requested = backend
        if backend == "auto":
            backend = _default_backend.get()
            if backend not in self.impls:  # a use_backend() choice this op lacks: stay on auto
                backend = "auto"
        if backend != "auto":
            check_backend_name(backend)
            try:
                self.check(backend, device)
            except BackendUnavailable as e:
                raise RuntimeError(str(e)) from None
            return self._call(backend, requested, "explicit", [], args, kwargs)
        order, why = self.auto_candidates(size)
        skipped: list[str] = []
        for b in order:
            try:
                self.check(b, device)
                return self._call(b, requested, why, skipped, args, kwargs)
            except BackendUnavailable as e:
                skipped.append(f"{b}: {e}")
                warnings.warn(f"aura_lab {self.name}: auto skipped {b} ({e}); trying the next backend", AuraFallbackWarning, stacklevel=3)
        raise RuntimeError(f"{self.name}: no backend could run: " + "; ".join(skipped))

    def _call(self, backend, requested, reason, skipped, args, kwargs):
        t0 = time.perf_counter()
        out = self.impls[backend].fn(*args, **kwargs)
        self.record(backend, requested, reason, time.perf_counter() - t0, skipped)
        return out
