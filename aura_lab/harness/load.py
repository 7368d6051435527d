"""Load: every public op x backend called from many threads at once, and thousands of times in a row.

* ``threads_check(case, backend, threads=8)``: the same inputs run serially, then from
  ``threads`` Python threads at once (a barrier starts them together); every threaded result
  must be bit-identical to its serial one.
* ``soak(case, backend, calls=10000)``: ``calls`` calls in a row on one small input. RSS
  (``/proc/self/status`` VmRSS, after ``release_free_memory``) right after a warm-up of 10 % of
  the calls against the median of the samples after the last three of ten chunks; the bytes
  malloc hands out and never gets back per call (``heap_bytes``: a small leak shows there long
  before it shows in RSS, which reuses resident free memory first); also the growth of the
  Python objects the garbage collector tracks, of the OS threads and of the MAX
  model cache and compile log (a per-call record anywhere would show there).

``CASES`` is the one table of public op x input maker x call, which ``aura-lab soak``, the
tests (``tests/reliability/test_load.py``, ``tests/integration/test_determinism.py``) and these functions share. A
case's ``make(rng, large)`` builds its inputs: small for soaks, large enough that the Mojo
kernels use several threads (``Op.threads``) for the thread and determinism checks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import statistics
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import _max
from ..distance import pairwise_distances
from ..persistence import rips_persistence
from ..routing import route
from ..ssd import selective_scan, selective_state_update
from ..registry import Op, backend_status
from .core import _rss_kib, release_free_memory


# ------------------------------------------------------------------------------ inputs

def _distance_inputs(rng, large):
    n, d = (320, 16) if large else (24, 3)
    return (rng.standard_normal((n, d)).astype(np.float32),)


def _routing_inputs(rng, large):
    T, E = (1024, 64) if large else (32, 16)
    return rng.standard_normal((T, E)).astype(np.float32), (rng.standard_normal(E) * 0.1).astype(np.float32)


def _ssd_dims(large):
    return dict(b=2, l=512, h=4, p=16, g=2, n=16) if large else dict(b=1, l=16, h=2, p=4, g=1, n=8)


def _scan_inputs(rng, large):
    """x, dt, A, B, C, D, z, dt_bias (float32) of a scan with every optional input."""
    s = _ssd_dims(large)
    b, l, h, p, g, n = s["b"], s["l"], s["h"], s["p"], s["g"], s["n"]
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    return (f(b, l, h, p), f(b, l, h) * 0.5, -np.exp(f(h) * 0.5), f(b, l, g, n), f(b, l, g, n), f(h), f(b, l, h, p),
            f(h) * 0.1)


def _step_inputs(rng, large):
    """state, x, dt, A, B, C, D, z, dt_bias of a decode step."""
    b, h, p, g, n = (64, 8, 32, 2, 32) if large else (1, 2, 4, 1, 8)
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    return (f(b, h, p, n), f(b, h, p), f(b, h) * 0.5, -np.exp(f(h) * 0.5), f(b, g, n), f(b, g, n), f(h), f(b, h, p),
            f(h) * 0.1)


def _cloud_inputs(rng, large):
    """Two noisy circles (several H1 bars)."""
    n = 100 if large else 32
    t = rng.uniform(0, 2 * np.pi, n)
    X = np.stack([np.cos(t) + 3 * (np.arange(n) % 2), np.sin(t)], axis=1) + 0.1 * rng.standard_normal((n, 2))
    return (X,)


# ------------------------------------------------------------------------------ calls

def _distance(backend, X):
    return pairwise_distances(X, backend=backend)


def _route(backend, logits, bias):
    return route(logits, 4, bias=bias, n_groups=4, topk_groups=2, capacity_factor=1.25, backend=backend)


#: chunk length of the chunked numpy / torch scans: the default 256 costs a 16-token call as much
#: as a 256-token one (~40 ms, against ~2 ms at 16)
CHUNK = 16


def _scan(backend, x, dt, A, B, C, D, z, bias):
    return selective_scan(x, dt, A, B, C, D=D, z=z, dt_bias=bias, dt_softplus=True, return_final_states=True,
                          chunk_size=CHUNK, backend=backend)


def _scan_train(backend, *inputs):
    """The forward and backward of a loss on y and the final states: (y, final, gradients)."""
    import torch

    ts = [torch.from_numpy(a.copy()).requires_grad_() for a in inputs]
    y, fin = selective_scan(*ts[:5], D=ts[5], z=ts[6], dt_bias=ts[7], dt_softplus=True, return_final_states=True,
                            chunk_size=CHUNK, backend=backend)
    weights = torch.linspace(-1.0, 1.0, y.numel(), dtype=y.dtype).reshape(y.shape)
    ((y * weights).sum() + fin.square().sum()).backward()
    return y, fin, [t.grad for t in ts]


def _step(backend, state, x, dt, A, B, C, D, z, bias):
    """One decode step on a copy of ``state``: (y, the updated state)."""
    st = state.copy()
    y = selective_state_update(st, x, dt, A, B, C, D=D, z=z, dt_bias=bias, dt_softplus=True, backend=backend)
    return y, st


def _persistence(backend, X):
    return rips_persistence(X, maxdim=1, backend=backend, progress=False)


def _persistence_reps(backend, X):
    return rips_persistence(X, maxdim=1, backend=backend, progress=False, return_cycles=True, return_cocycles=True)


@dataclass(frozen=True)
class Case:
    """One public op as the load and determinism checks call it: ``op`` names its registry
    ``Op`` (whose backends it runs on, less those in ``skip``), ``make(rng, large)`` builds
    its inputs, ``call(backend, *inputs)`` runs it."""

    name: str
    op: str
    make: Callable[[np.random.Generator, bool], tuple]
    call: Callable
    skip: tuple[str, ...] = ()

    @property
    def registry_op(self) -> Op:
        return Op.registry[self.op]  # the op modules imported above registered it

    def backends(self) -> list[str]:
        """The backends it runs on here."""
        return [b for b in self.registry_op.backends if b not in self.skip and backend_status(b).available]

    def inputs(self, seed: int = 0, large: bool = False) -> tuple:
        return self.make(np.random.default_rng(seed), large)

    def run(self, backend: str, inputs: tuple) -> list[np.ndarray]:
        """The call's result as a flat list of arrays (see ``arrays``)."""
        return arrays(self.call(backend, *inputs))

    def size(self, inputs: tuple) -> dict:
        """The registry's size of the call on ``inputs`` (what ``Op.threads`` reads)."""
        return _SIZES[self.op](inputs)


_SIZES = {
    "distance": lambda a: {"n": a[0].shape[0], "m": a[0].shape[0], "d": a[0].shape[1]},
    "routing": lambda a: {"T": a[0].shape[0], "E": a[0].shape[1]},
    "ssd": lambda a: dict(zip("blhp", a[0].shape), n=a[3].shape[-1]),
    "ssd_train": lambda a: dict(zip("blhp", a[0].shape), n=a[3].shape[-1]),
    "ssd_step": lambda a: dict(zip("bhpn", a[0].shape)),
    "persistence": lambda a: {"n": a[0].shape[0], "maxdim": 1},
}

CASES: tuple[Case, ...] = (
    Case("pairwise_distances", "distance", _distance_inputs, _distance),
    Case("route", "routing", _routing_inputs, _route),
    Case("selective_scan", "ssd", _scan_inputs, _scan),
    Case("selective_scan (train)", "ssd_train", _scan_inputs, _scan_train),
    Case("selective_state_update", "ssd_step", _step_inputs, _step),
    Case("rips_persistence", "persistence", _cloud_inputs, _persistence),
    Case("rips_persistence (reps)", "persistence", _cloud_inputs, _persistence_reps, skip=("gudhi",)),
)
CASE = {c.name: c for c in CASES}


def arrays(result) -> list[np.ndarray]:
    """Every array in an op's result, in a fixed order, as numpy (``Routing`` and
    ``PersistenceResult`` by their fields; lists, tuples and dataclasses flattened; None and
    scalars as 0-d arrays)."""
    from ..persistence import PersistenceResult
    from ..routing import Routing

    if isinstance(result, (list, tuple)):
        return [a for r in result for a in arrays(r)]
    if isinstance(result, Routing):
        return arrays([result.weights, result.experts, result.counts, result.permutation, result.offsets,
                       result.kept, result.dropped, result.capacity])
    if isinstance(result, PersistenceResult):
        return arrays([result.dgms, result.cycles, result.cocycles])
    if hasattr(result, "detach"):  # a torch tensor
        return [result.detach().cpu().numpy()]
    return [np.asarray(-1 if result is None else result)]


def identical(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    """Bit-identical: the same number of arrays, each of the same dtype, shape and bytes."""
    return len(a) == len(b) and all(x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
                                    for x, y in zip(a, b))


# ------------------------------------------------------------------------------ threads

def threads_check(case: Case, backend: str, threads: int = 8, calls: int = 16, *, large: bool = True,
                  seed: int = 0) -> dict:
    """``calls`` calls on ``threads`` distinct inputs, first serially, then spread over
    ``threads`` Python threads started together, each beginning at its own input: {op,
    backend, threads, calls, identical, mismatches, error}."""
    inputs = [case.inputs(seed + i, large) for i in range(threads)]
    serial = [case.run(backend, x) for x in inputs]
    start = threading.Barrier(threads)

    def worker(t: int) -> list[tuple[int, list | BaseException]]:
        start.wait()
        out = []
        for j in range(t, t + max(1, calls // threads)):
            i = j % threads
            try:
                out.append((i, case.run(backend, inputs[i])))
            except Exception as e:  # reported, not raised: the other threads' results still count
                out.append((i, e))
        return out

    with ThreadPoolExecutor(threads) as pool:
        results = [r for rs in pool.map(worker, range(threads)) for r in rs]
    errors = [r for _, r in results if isinstance(r, BaseException)]
    mismatches = sum(1 for i, r in results if isinstance(r, BaseException) or not identical(r, serial[i]))
    return {"op": case.name, "backend": backend, "threads": threads, "calls": len(results),
            "identical": mismatches == 0, "mismatches": mismatches,
            "error": f"{type(errors[0]).__name__}: {errors[0]}" if errors else ""}


# ------------------------------------------------------------------------------ soak

#: RSS growth after the warm-up that ``aura-lab soak`` and the tests accept
MAX_GROWTH_PCT = 5.0
#: RSS growth per call over the second half of the calls (``kib_per_call``: a leak grows all
#: along, a warm-up that has not quite ended only early on; the MAX runtime still grows by
#: ~0.5 MiB in the 1000 calls after a warm-up of 100) beyond ``RSS_NOISE_KIB``: a leaked small
#: native buffer (the ~30 bars of a small persistence call not handed back: 0.7 KiB a call) is
#: above it from ~1500 calls
MAX_KIB_PER_CALL = 0.25
RSS_NOISE_KIB = 512
#: malloc'd bytes still held per call after the warm-up: a leaked buffer of the smallest
#: result (24 x 24 float32 distances, 2.3 KiB) is well above it (the Mojo kernels' own
#: allocations are not malloc's: only RSS sees those)
MAX_HEAP_BYTES_PER_CALL = 256


def problems(row: dict) -> list[str]:
    """What a ``soak`` row (with ``threads_identical`` from ``run_all``) fails: [] when flat."""
    out = []
    if row["growth_pct"] > MAX_GROWTH_PCT:
        out.append(f"RSS grew {row['growth_pct']:.2f} % (> {MAX_GROWTH_PCT} %)")
    calls = row["calls"] - row["warmup"]
    if row["kib_per_call"] * calls / 2 > max(RSS_NOISE_KIB, MAX_KIB_PER_CALL * calls / 2):
        out.append(f"RSS grew {row['kib_per_call']:.3f} KiB a call (> {MAX_KIB_PER_CALL})")
    if (row["heap_bytes_per_call"] or 0) > MAX_HEAP_BYTES_PER_CALL:
        out.append(f"malloc kept {row['heap_bytes_per_call']:.0f} bytes a call (> {MAX_HEAP_BYTES_PER_CALL})")
    if row["objects"] >= max(5, calls // 20):
        out.append(f"{row['objects']} more Python objects")
    if row["os_threads"] > 0 or row["max_models"] or row["compile_log"]:
        out.append("threads, MAX models or compiles added after the warm-up")
    if row.get("threads_identical") is False:
        out.append("threaded results differ from serial ones")
    return out


def rss_mib() -> float:
    """Resident memory now, in MiB, after handing free allocator memory back."""
    release_free_memory()
    return _rss_kib("VmRSS") / 1024.0


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_bytes() -> int | None:
    """Bytes malloc has handed out and not had back (glibc ``mallinfo2``: in use in the arenas
    plus mmapped blocks), whether resident or not; None where there is no mallinfo2."""
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _Mallinfo2
    info = fn()
    return int(info.uordblks + info.hblkhd)


def _os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _counts() -> dict:
    gc.collect()
    return {"heap": heap_bytes(), "objects": len(gc.get_objects()), "os_threads": _os_threads(), "max_models": len(_max._models),
            "compile_log": len(_max.compile_log)}


def soak(case: Case, backend: str, calls: int = 10000, *, chunks: int = 10, seed: int = 0) -> dict:
    """``calls`` calls in a row on one small input: the first 10 % warm up, the rest run in
    ``chunks`` chunks with RSS sampled after each. Returns {op, backend, calls, rss_before_mib
    (after the warm-up), rss_after_mib (median of the last three samples), growth_pct,
    kib_per_call (over the last half of the chunks), heap_bytes_per_call (``heap_bytes``), objects, os_threads, max_models,
    compile_log (growth after the warm-up of each)}."""
    inputs = case.inputs(seed)
    warmup = max(1, calls // 10)
    for _ in range(warmup):
        case.call(backend, *inputs)
    before, rss0 = _counts(), rss_mib()
    per_chunk = max(1, (calls - warmup) // chunks)
    samples = []
    for _ in range(chunks):
        for _ in range(per_chunk):
            case.call(backend, *inputs)
        samples.append(rss_mib())
    after = _counts()
    rss1 = statistics.median(samples[-3:])
    heap = None if before["heap"] is None else (after.pop("heap") - before.pop("heap")) / (chunks * per_chunk)
    return {"op": case.name, "backend": backend, "calls": warmup + chunks * per_chunk, "warmup": warmup,
            "rss_before_mib": round(rss0, 2),
            "rss_after_mib": round(rss1, 2), "growth_pct": round(100.0 * (rss1 - rss0) / rss0, 3),
            "kib_per_call": round(1024.0 * (rss1 - statistics.median(samples[3:6])) / (5 * per_chunk), 4),
            "heap_bytes_per_call": heap, **{k: after[k] - before[k] for k in after if k != "heap"}}


def run_all(calls: int = 10000, threads: int = 8, thread_calls: int = 32, cases=CASES, backends=None,
            on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """``threads_check`` then ``soak`` for every case x available backend (optionally only
    ``backends``): one row each, the soak's figures with ``threads_identical``."""
    rows = []
    for case in cases:
        for b in case.backends():
            if backends and b not in backends:
                continue
            th = threads_check(case, b, threads, thread_calls)
            row = {**soak(case, b, calls), "threads": threads, "thread_calls": th["calls"],
                   "threads_identical": th["identical"]}
            if th["error"]:
                row["error"] = th["error"]
            rows.append(row)
            if on_row:
                on_row(row)
    return rows
