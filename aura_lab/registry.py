"""One registry for backends and ops; it imports no backend and no harness.

* **Backends.** ``backends()`` lists numpy / torch / mojo / max with availability, version and
  the reason when unavailable. numpy, torch and the reference gudhi are probed here (an
  import each); the ``mojo`` and ``max`` backend modules register their own probes with
  ``register_backend``.
* **Ops.** Each op module creates an ``Op`` and registers one implementation per backend with
  ``@op.impl("torch")``. Every implementation takes the op's one validated problem object (a
  frozen dataclass with ``size``, a dict of the sizes that calibration and the thread policy
  read, and ``device``) and returns the op's one result type. A backend's own limits sit on
  its implementation (``@op.impl("mojo", check=...)``: raises ``UnsupportedProblem``), run
  only when that backend is tried.
* **Dispatch.** ``op.run(backend, problem)`` resolves ``"auto"`` (through the policy the
  ``auto`` module hands over with ``set_auto_policy``; the op's default order until then),
  raises the precise error for an explicit backend that cannot run (``BackendUnavailable``,
  ``UnsupportedProblem``), falls back with an ``AuraFallbackWarning`` under ``"auto"``, and
  records what ran (``aura_lab.last_dispatch()``).
* **Threads.** ``threads_for`` is the one thread policy of every kernel.
* **Cancellation.** Calls of the ``CANCELLABLE_BACKENDS`` run under an ``aura_lab._control``
  control (``run_op``), whose address their kernels' parameter blocks carry and poll; an
  estimated-long call runs its kernel so that Ctrl-C reaches the main thread at once. An op
  made with ``whole=True`` (the decode step, which advances a caller's state in place) is
  never stopped midway (``run_whole``).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.metadata
import logging
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

from . import _control
from .errors import AuraFallbackWarning, BackendUnavailable, UnsupportedProblem

log = logging.getLogger("aura_lab")

BACKENDS = ("numpy", "torch", "mojo", "max")
# independent references that some ops can also run through (never chosen before a compute
# backend by ``auto`` unless the op says so): listed by ``backend_status``, not ``backends()``
REFERENCE_BACKENDS = ("gudhi",)
# backends whose kernels poll aura_lab._control's cancel flag: their long calls run so that
# Ctrl-C (and a Stop button) stops them within one chunk of work
CANCELLABLE_BACKENDS = ("mojo", "max")


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


def _probe_gudhi() -> BackendStatus:
    try:
        version = importlib.metadata.version("gudhi")
        import gudhi  # noqa: F401
    except Exception as e:
        return BackendStatus("gudhi", False, "", f"cannot import gudhi: {e}")
    return BackendStatus("gudhi", True, version, detail="reference for rips_persistence")


_PROBES: dict[str, Callable[[], BackendStatus]] = {"numpy": _probe_numpy, "torch": _probe_torch, "gudhi": _probe_gudhi}


def register_backend(name: str, probe: Callable[[], BackendStatus]) -> None:
    """A backend module hands over the probe that says whether it can run here."""
    if name not in (*BACKENDS, *REFERENCE_BACKENDS):
        raise ValueError(f"unknown backend {name!r}")
    _PROBES[name] = probe
    backend_status.cache_clear()


def check_backend_name(name: str) -> None:
    """ValueError unless ``name`` is a backend aura_lab knows (compute or reference)."""
    if not isinstance(name, str) or name not in (*BACKENDS, *REFERENCE_BACKENDS):
        raise ValueError(f"unknown backend {name!r}; valid: {', '.join([*BACKENDS, *REFERENCE_BACKENDS])}, or 'auto'")


@lru_cache(maxsize=None)
def backend_status(name: str) -> BackendStatus:
    check_backend_name(name)
    probe = _PROBES.get(name)
    if probe is None:
        return BackendStatus(name, False, "", f"the aura_lab._{name} backend module is not loaded")
    return probe()


def backends() -> list[BackendStatus]:
    """One row per backend: name, available, version, reason (when unavailable), detail."""
    return [backend_status(name) for name in BACKENDS]


# ---------------------------------------------------------------------------- threads

#: Below this estimated single-thread time a kernel runs on one thread. Handing work to the
#: runtime's workers and joining them (`max.algorithm.parallelize`) was measured at ~10 us per
#: call on the 2-core development VM, so two threads pay off only once each has about that
#: much work of its own.
SERIAL_NS = 20_000


#: a per-context cap on ``num_threads`` (``thread_budget``): None when there is none
_thread_budget: contextvars.ContextVar[int | None] = contextvars.ContextVar("aura_thread_budget", default=None)


#: ``$AURA_NUM_THREADS`` above this many threads per core is clamped (each kernel thread owns
#: scratch buffers, and more threads than cores only split the work finer)
THREADS_PER_CORE_MAX = 4


#: why kernels run on one thread in this process (a fork of one whose kernel runtime had
#: started: ``single_thread_after_fork``), None when they need not
_single_thread_why: str | None = None
_single_thread_told = False


def single_thread_after_fork(why: str) -> None:
    """From now on in this (forked) process ``num_threads()`` is 1, and the first call says
    ``why`` with a RuntimeWarning: a kernel on one thread never waits for a runtime worker
    pool that did not survive the fork."""
    global _single_thread_why, _single_thread_told
    _single_thread_why, _single_thread_told = why, False


def num_threads() -> int:
    """Threads a kernel may use: ``$AURA_NUM_THREADS`` (an integer; unset, empty or 0 mean every
    core; values above ``THREADS_PER_CORE_MAX`` x cores are clamped there), else every core;
    at most the ``thread_budget`` of the calling context, if one is set; 1 in a process forked
    after kernels were loaded (``single_thread_after_fork``). A negative or non-integer value
    raises ``ValueError`` naming the variable."""
    cores = os.cpu_count() or 1
    n = _env_threads(os.environ.get("AURA_NUM_THREADS", ""), cores)
    if _single_thread_why is not None:
        _tell_single_thread()
        return 1
    cap = _thread_budget.get()
    return n if cap is None else min(n, cap)


def _tell_single_thread() -> None:
    global _single_thread_told
    if not _single_thread_told:
        _single_thread_told = True
        warnings.warn(f"aura_lab: {_single_thread_why}: kernels run on one thread in this process. To use every core "
                      f"in worker processes, start them with multiprocessing's 'spawn' or 'forkserver' method (or "
                      f"joblib's default loky backend), or fork before the first kernel call.", RuntimeWarning, stacklevel=4)


@lru_cache(maxsize=64)
def _env_threads(env: str, cores: int) -> int:
    text = env.strip()
    try:
        n = int(text) if text else 0
    except ValueError:
        raise ValueError(f"AURA_NUM_THREADS: expected an integer number of threads (0 = every core), got {env!r}") from None
    if n < 0:
        raise ValueError(f"AURA_NUM_THREADS: must be >= 0 (0 = every core), got {n}")
    return min(n, THREADS_PER_CORE_MAX * cores) if n else cores


@contextlib.contextmanager
def thread_budget(n: int):
    """Within the block (this thread / context only) kernels use at most ``n`` threads: how
    one of several workers sharing a machine keeps workers x threads <= cores without touching
    the process-wide $AURA_NUM_THREADS (tasks of a threaded worker share one process)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: a thread budget must be an integer >= 1, got {n!r}")
    token = _thread_budget.set(n)
    try:
        yield
    finally:
        _thread_budget.reset(token)


def threads_for(work_ns: float) -> int:
    """The thread policy of every kernel: one thread for a call estimated to take less than
    ``SERIAL_NS`` on one thread, else ``num_threads()``."""
    n = num_threads()  # read (and checked) on every call, also the small ones
    return 1 if work_ns < SERIAL_NS else n


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


#: how ``auto`` orders an op's backends at a size: (op, size) -> (backends, why)
AutoPolicy = Callable[["Op", dict], "tuple[list[str], str]"]
_auto_policy: list[AutoPolicy] = []


def set_auto_policy(policy: AutoPolicy) -> None:
    """The ``auto`` module hands over its policy (the registry never imports it)."""
    _auto_policy[:] = [policy]


@dataclass(frozen=True)
class Impl:
    """One backend's implementation of an op: ``fn(problem) -> result``; ``check(problem)``
    raises ``UnsupportedProblem`` for problems past this backend's limits."""

    backend: str
    fn: Callable
    devices: tuple[str, ...] = ("cpu",)
    check: Callable | None = None


#: the largest work an op reports (``Op.work``): above it every estimate says "long", and a
#: float (max ~1.8e308) still holds it times any ``ns_per_work``
MAX_WORK = 1e300


class Op:
    """One kernel family: its implementations per backend and how ``auto`` chooses.

    ``work(size)`` is a scalar measure of a problem (calibration interpolates over it) and
    ``ns_per_work`` the measured single-thread cost of one unit of it in the Mojo kernel,
    which is what the thread policy reads. ``regime(size)``, when given, splits the sizes into
    classes that calibration never interpolates across (e.g. write-bound and compute-bound
    distances, where the backends rank differently at equal work)."""

    registry: dict[str, "Op"] = {}

    def __init__(self, name: str, *, reference: str = "numpy", auto_order: tuple[str, ...] = ("mojo", "torch", "numpy"),
                 work: Callable[[dict], float] | None = None, ns_per_work: float = 1.0,
                 regime: Callable[[dict], object] | None = None, whole: bool = False):
        self.name = name
        self.whole = whole  # never stopped midway (it updates a caller's buffer in place): see _control.run_whole
        self.reference = reference
        self.auto_order = auto_order
        self._work = work
        self.ns_per_work = ns_per_work
        self.regime = regime
        self.impls: dict[str, Impl] = {}
        Op.registry[name] = self

    def impl(self, backend: str, *, devices: tuple[str, ...] = ("cpu",), check: Callable | None = None):
        check_backend_name(backend)

        def deco(fn):
            self.impls[backend] = Impl(backend, fn, devices, check)
            return fn

        return deco

    def work(self, size: dict) -> float:
        """``work(size)`` (default: the product of the sizes), at most ``MAX_WORK``: a huge
        combinatorial count never overflows the float that the thread policy and ``auto`` read."""
        w = self._work(size) if self._work is not None else math.prod(max(1, int(v)) for v in size.values())
        return float(min(w, MAX_WORK))  # an int compares with a float exactly, without converting

    def estimated_ns(self, size: dict) -> float:
        """The single-thread time the Mojo kernel is estimated to take at ``size``."""
        return self.work(size) * self.ns_per_work

    def threads(self, size: dict) -> int:
        """Threads for a problem of ``size`` (``threads_for`` on the estimated time)."""
        return threads_for(self.estimated_ns(size))

    def is_long(self, size: dict) -> bool:
        """Estimated long enough that its kernel must take Ctrl-C while it runs."""
        return self.estimated_ns(size) >= _control.INTERRUPTIBLE_NS

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
        """Raise ``BackendUnavailable`` with the reason if ``backend`` cannot run this op here."""
        if backend not in self.impls:
            raise BackendUnavailable(f"{self.name}: backend {backend!r} is not implemented (this op has: {', '.join(self.backends)})")
        st = backend_status(backend)
        if not st.available:
            raise BackendUnavailable(f"{self.name}: backend {backend!r} is unavailable: {st.reason}")
        if device not in self.impls[backend].devices:
            raise BackendUnavailable(f"{self.name}: backend {backend!r} does not run on {device} inputs")

    def status(self, backend: str, device: str = "cpu") -> tuple[bool, str]:
        """(can ``backend`` run this op here, and if not why)."""
        try:
            self.check(backend, device)
        except BackendUnavailable as e:
            return False, str(e)
        return True, ""

    def _check_problem(self, backend: str, problem) -> None:
        self.check(backend, problem.device)
        limits = self.impls[backend].check
        if limits is not None:
            limits(problem)

    def auto_candidates(self, size: dict | None = None) -> tuple[list[str], str]:
        """Backends ``auto`` would try, in order, and why."""
        if not _auto_policy:
            return list(self.auto_order), "default order"
        return _auto_policy[0](self, size or {})

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

    def chosen(self, backend: str) -> str:
        """``backend`` with a ``use_backend()`` default applied: a backend name, or "auto"."""
        if backend == "auto":
            backend = _default_backend.get()
            if backend not in self.impls:  # a use_backend() choice this op lacks: stay on auto
                backend = "auto"
        return backend

    def check_backend(self, backend: str) -> None:
        """Raise what ``run(backend, ...)`` would for a backend that cannot run (ValueError
        naming an unknown backend, ``BackendUnavailable``), for a call that returns before it
        dispatches (an empty input)."""
        chosen = self.chosen(backend)
        if chosen != "auto":
            check_backend_name(chosen)
            self.check(chosen)

    def run(self, backend: str, problem):
        """Run the op on ``problem`` with ``backend`` ("auto" or a name); record what ran."""
        requested, backend = backend, self.chosen(backend)
        if backend != "auto":
            check_backend_name(backend)
            self._check_problem(backend, problem)
            return self._call(backend, requested, "explicit", [], problem)
        order, why = self.auto_candidates(problem.size)
        skipped: list[str] = []
        for b in order:
            try:
                self._check_problem(b, problem)
                return self._call(b, requested, why, skipped, problem)
            except (BackendUnavailable, UnsupportedProblem) as e:
                skipped.append(f"{b}: {e}")
                warnings.warn(f"aura_lab {self.name}: auto skipped {b} ({e}); trying the next backend", AuraFallbackWarning, stacklevel=3)
        raise BackendUnavailable(f"{self.name}: no backend could run: " + "; ".join(skipped))

    def _call(self, backend, requested, reason, skipped, problem):
        impl = self.impls[backend]
        t0 = time.perf_counter()
        if backend in CANCELLABLE_BACKENDS and self.whole:
            out = _control.run_whole(lambda: impl.fn(problem))
        elif backend in CANCELLABLE_BACKENDS:
            out = _control.run_op(lambda: impl.fn(problem), long=self.is_long(problem.size))
        else:
            out = impl.fn(problem)
        self.record(backend, requested, reason, time.perf_counter() - t0, skipped)
        return out
