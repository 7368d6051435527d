"""Persistence diagrams of a whole collection of point clouds (or distance matrices), in
parallel with joblib: ``collection_persistence(X, ...)``, the engine behind the scikit-learn
transformer ``aura_lab.RipsPersistence`` (``aura_lab.estimators``).

* **Output** in the format of gudhi's ``gudhi.sklearn.RipsPersistence``, so that
  ``gudhi.representations`` consumes it: for ``homology_dimensions`` an int ``k``, one
  ``(m, 2)`` array (the H_k diagram) per input; for a list of dimensions, one list of arrays
  per input, in the order of the list. Diagrams are exactly those of
  ``aura_lab.rips_persistence`` (bars with death > birth, sorted; infinite deaths ``inf``).
* **One native call per chunk.** A chunk of inputs runs as one call into the batched engine
  (``aura_lab.persistence.batch``: the engine's own threads over the inputs, no Python per
  input around the engine), bit for bit the diagrams of one ``rips_persistence`` call each.
  Inputs the batch does not take (the gudhi backend, metrics other than euclidean, edge
  collapse, clouds of ``batch.BATCH_MAX_N`` points or more, matrices with vertex births) run
  one ``rips_persistence`` call each; ``last_run()`` and ``last_dispatch()`` count them with
  the reason.
* **Parallelism** through joblib: ``n_jobs`` workers of the active joblib backend, processes
  (loky) unless the caller selected another one with ``joblib.parallel_config`` -- threads,
  or ``backend="dask"`` on a ``dask.distributed`` client, which is how the collection runs on
  a cluster. The collection is cut into chunks (``CHUNKS_PER_JOB`` per worker, slices of a fixed
  shuffle of the inputs: ``plan_chunks``), each one task; results come back in input order,
  identical to a serial run. Local worker processes only where they pay: starting them
  costs ~0.5 s and on one machine they add no core that the batch's threads lack, so a
  collection runs in this process as one batched call on ``n_jobs`` threads unless the inputs
  that run one call each hold ``PROCESS_MIN_S`` estimated seconds of engine work or more
  (``last_run().how`` says which and why).
* **Threads.** A worker's kernels use ``num_threads() // share`` threads (at least 1), where
  ``share`` is the number of tasks that run at once on that worker's machine: ``n_jobs`` for
  the local backends, the sum of the dask workers' threads on that host for dask; so workers
  x threads <= ``$AURA_NUM_THREADS`` (or the cores). A serial run uses every thread. Workers
  forked from a process whose kernel runtime has started (joblib's ``multiprocessing``
  backend with the fork start method) run on one thread each, with a warning here: the
  runtime's worker threads do not survive a fork (``_mojo``).
* **Compilation.** Workers load the kernels from the cache (``$AURA_LAB_CACHE``); a worker
  on a cold cache compiles once under the cache's file lock, so many can start at once.

The function a worker runs (``_run_chunk``) lives at module level with picklable arguments,
which is what dask's scheduler needs (gudhi's ``RipsPersistence`` fails there: it ships a
bound method).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from . import _arrays as A
from . import _mojo
from .errors import UnsupportedProblem
from .persistence import batch as B
from .persistence import op, rips_persistence
from .persistence.collapse import check_choice
from .persistence.problem import _check_coeff, _check_threshold
from .registry import check_backend_name, num_threads, thread_budget, last_dispatch
from .distance import METRICS

#: input kinds: a point cloud (n, d) or a square distance matrix (gudhi's name accepted too)
INPUT_TYPES = ("point cloud", "distance matrix", "full distance matrix")
#: chunks per joblib worker: enough that the workers, taking the next chunk as they finish one,
#: even out unequal clouds (a noisy circle of 200 points costs 5x a sphere's), few enough that a
#: task's overhead (a few ms under dask) stays small next to its work
CHUNKS_PER_JOB = 8
#: local joblib process backends (loky, multiprocessing) run only where the inputs that the
#: batch does not take (one ``rips_persistence`` call each, with Python around every call) hold
#: at least this many seconds of engine work (``batch.estimated_ns``, one thread); otherwise the
#: collection runs in this process, one batched call on n_jobs threads. Batched work never goes
#: to local processes: they add no core that the batch's threads lack, and cost a start (~0.5 s
#: cold) and the pickling (in the collection bench's quiet run, 1000 clouds of 200 points:
#: forced processes 7.09 s, the batch on 2 threads 6.40 s; 10 000 of 50: 2.23 s, 1.32 s)
PROCESS_MIN_S = 10.0
#: the chunks are slices of one fixed pseudo-random permutation of the inputs, so that neither
#: a sorted collection nor a periodic one (labels 0, 1, 2, 3, 0, 1, ...) puts the expensive
#: inputs together; the results go back to input order
CHUNK_SEED = 0


@dataclass(frozen=True)
class CollectionParams:
    """Validated parameters of one collection run (picklable: it travels to the workers)."""

    dims: tuple[int, ...]
    unwrap: bool  # homology_dimensions was an int: one array per input, not a list
    threshold: float
    is_matrix: bool
    metric: str
    coeff: int
    backend: str
    collapse_edges: bool | str = "auto"  # as rips_persistence's

    @property
    def maxdim(self) -> int:
        return max(self.dims)


@dataclass
class CollectionRun:
    """What the last ``collection_persistence`` call in this thread did: the joblib backend
    and its effective number of workers, the chunks (tasks), the kernel threads each task was
    allowed, the aura_lab backends that ran in the workers, the distinct worker processes
    (host, pid) that ran a chunk, and the wall time."""

    inputs: int
    joblib_backend: str
    n_jobs: int
    chunks: int
    threads_per_task: list[int] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    workers: int = 0
    seconds: float = 0.0
    #: where the chunks ran and why (e.g. processes not worth starting for a short collection)
    how: str = ""
    #: inputs computed by the batched engine, and reason -> count of those run one call each
    batched: int = 0
    single: dict = field(default_factory=dict)

    def __str__(self) -> str:
        single = "; ".join(f"{k}: {v}" for k, v in self.single.items()) or "none"
        return (f"{self.inputs} inputs in {self.chunks} chunks on {self.joblib_backend} (n_jobs={self.n_jobs}, "
                f"{self.workers} worker processes, kernel threads per task {self.threads_per_task}, "
                f"backends {self.backends}; {self.how}; {self.batched} batched, one call each: {single}) "
                f"in {self.seconds * 1e3:.1f} ms")


_local = threading.local()


#: the most joblib workers ``n_jobs`` may ask for
MAX_JOBS = 4096


def last_run() -> CollectionRun | None:
    """The record of this thread's last ``collection_persistence`` call (None before any)."""
    return getattr(_local, "run", None)


# ------------------------------------------------------------------------------ validation

def check_params(homology_dimensions=(0, 1), threshold=np.inf, input_type="point cloud", metric="euclidean",
                 coeff=2, backend="auto", collapse_edges="auto") -> CollectionParams:
    """The parameters checked once (ValueError/TypeError naming the argument)."""
    if isinstance(homology_dimensions, (bool, np.bool_)):
        raise TypeError("homology_dimensions: expected an int or a list of ints, got a bool")
    if isinstance(homology_dimensions, (int, np.integer)):
        dims, unwrap = (int(homology_dimensions),), True
    else:
        try:
            items = list(homology_dimensions)
        except TypeError:
            raise TypeError(f"homology_dimensions: expected an int or a list of ints, got "
                            f"{type(homology_dimensions).__name__}") from None
        if not items:
            raise ValueError("homology_dimensions: the list of dimensions is empty")
        for d in items:
            if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)):
                raise TypeError(f"homology_dimensions: expected ints, got {d!r} ({type(d).__name__})")
        dims, unwrap = tuple(int(d) for d in items), False
    if min(dims) < 0:
        raise ValueError(f"homology_dimensions: dimensions must be >= 0, got {list(dims)}")
    if not isinstance(input_type, str) or input_type not in INPUT_TYPES:
        raise ValueError(f"input_type: expected one of {', '.join(map(repr, INPUT_TYPES))}, got {input_type!r}")
    is_matrix = input_type != "point cloud"
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(f"metric: unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    if is_matrix and metric != "euclidean":
        raise ValueError(f"metric: {metric!r} has no effect on distance matrices (input_type={input_type!r}); leave the default")
    if not isinstance(backend, str):
        raise TypeError(f"backend: expected a backend name, got {type(backend).__name__}")
    if backend != "auto":
        check_backend_name(backend)
        if backend not in op.backends:
            raise ValueError(f"backend: {backend!r} does not compute persistence; valid: auto, {', '.join(op.backends)}")
    return CollectionParams(dims, unwrap, _check_threshold(threshold), is_matrix, metric, _check_coeff(coeff), backend,
                            check_choice(collapse_edges))


def check_collection(X, is_matrix: bool) -> list[np.ndarray]:
    """The inputs as a list of numpy arrays, each checked for its shape (and, for point
    clouds, finite coordinates); ValueError naming the index of the first bad one."""
    if isinstance(X, (str, bytes)) or not hasattr(X, "__iter__"):
        raise ValueError(f"X: expected a collection (a list) of {'distance matrices' if is_matrix else 'point clouds'}, "
                         f"got {type(X).__name__}")
    out = []
    for i, x in enumerate(X):
        name = f"X[{i}]"
        try:
            a = A.to_numpy(x, name)
        except (TypeError, ValueError) as e:
            msg = str(e)
            raise ValueError(msg if msg.startswith(name + ":") else f"{name}: not a numeric array ({msg})") from None
        if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise ValueError(f"{name}: expected a numeric 2-D array, got dtype {a.dtype}")
        if is_matrix:
            if a.ndim != 2 or a.shape[0] != a.shape[1]:
                raise ValueError(f"{name}: a distance matrix must be square (n, n), got shape {a.shape}")
        else:
            if a.ndim != 2:
                hint = " (X is a collection: to transform one cloud, pass [cloud])" if i == 0 and a.ndim == 1 else ""
                raise ValueError(f"{name}: expected a 2-D point cloud (n, d), got {a.ndim}-D shape {a.shape}{hint}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name}: the point cloud contains NaN or infinite coordinates")
        out.append(a)
    return out


# ------------------------------------------------------------------------------ the workers

def _pick(dgms: list[np.ndarray], p: CollectionParams):
    picked = [dgms[d] if d < len(dgms) else np.empty((0, 2)) for d in p.dims]
    return picked[0] if p.unwrap else picked


def _one(x: np.ndarray, p: CollectionParams):
    return _pick(rips_persistence(x, maxdim=p.maxdim, threshold=p.threshold, metric=p.metric,
                                  distance_matrix=p.is_matrix, coeff=p.coeff, backend=p.backend, progress=False,
                                  collapse_edges=p.collapse_edges), p)


def _named(i: int, e: Exception) -> Exception:
    """``e`` with its message prefixed by the input's index (once)."""
    msg = str(e)
    if msg.startswith(f"X[{i}]:"):
        return e
    msg = msg[3:] if msg.startswith("X: ") else msg
    return type(e)(f"X[{i}]: {msg}")


def _share_here(share: int, host_shares: dict | None) -> int:
    """Tasks that run at once on this machine: under dask the threads of the workers on this
    worker's host (from the scheduler, when the parent asked), else ``share``."""
    if host_shares:
        try:
            from distributed import get_worker
            from distributed.comm import get_address_host

            w = get_worker()
            return int(host_shares.get(get_address_host(w.address), w.state.nthreads))
        except (ImportError, ValueError):
            pass
    return share


def _run_chunk(xs: list[np.ndarray], index: list[int], p: CollectionParams, share: int, host_shares: dict | None):
    """One task: the diagrams of ``xs`` (inputs ``index`` of the collection) with a per-task
    thread budget, the batched engine's in one native call. Returns (results, threads,
    backends that ran, (host, pid), inputs batched, reason -> inputs run one call each)."""
    threads = max(1, num_threads() // max(1, _share_here(share, host_shares)))
    with thread_budget(threads):
        results, backends, batched, single = _compute(xs, index, p, threads)
    return results, threads, sorted(backends), (os.uname().nodename, os.getpid()), batched, single


def _why_single(xs: list[np.ndarray], p: CollectionParams) -> list[str | None]:
    """Per input, why it runs one call of its own rather than in the batch (None: batched)."""
    whole = B.batch_limits(p.backend, p.metric, p.is_matrix, p.maxdim, p.collapse_edges)
    return [whole or B.input_limit(x, p.is_matrix) for x in xs]


def _compute(xs, index, p: CollectionParams, threads: int):
    """(results, backends, inputs batched, reason -> count of inputs run one call each)."""
    results, backends, single, todo = [None] * len(xs), set(), Counter(), []
    for k, (x, why) in enumerate(zip(xs, _why_single(xs, p))):
        if why is None:
            todo.append(k)
            continue
        single[why] += 1
        results[k] = _single(x, index[k], p, backends)
    if todo:
        try:
            dgms = B.rips_batch([xs[k] for k in todo], p.maxdim, p.threshold, p.coeff, p.is_matrix, threads=threads,
                                index=[index[k] for k in todo])
        except UnsupportedProblem as e:  # past the engine's index range: each on its own (gudhi under auto)
            single[str(e)] += len(todo)
            for k in todo:
                results[k] = _single(xs[k], index[k], p, backends)
            todo = []
        else:
            backends.add("mojo")
            for k, d in zip(todo, dgms):
                results[k] = _pick(d, p)
    return results, backends, len(todo), dict(single)


def _single(x: np.ndarray, i: int, p: CollectionParams, backends: set):
    """One ``rips_persistence`` call (errors name input ``i``); its backend into ``backends``."""
    try:
        out = _one(x, p)
    except (ValueError, TypeError, MemoryError, UnsupportedProblem) as e:
        raise _named(i, e) from e
    d = last_dispatch()
    if d is not None and d.op == "persistence":
        backends.add(d.backend)
    return out


# ------------------------------------------------------------------------------ the driver

def _active_joblib(n_jobs):
    """(backend object, its name, effective n_jobs) under the caller's joblib context,
    preferring processes."""
    import joblib
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend(prefer="processes")
    name = type(backend).__name__.removesuffix("Backend").lower()
    return backend, name, int(joblib.effective_n_jobs(n_jobs))


def _forks_a_started_runtime(jb_name: str) -> bool:
    """Whether joblib's ``jb_name`` backend forks this process while its Mojo runtime runs
    (``multiprocessing`` with joblib's, else multiprocessing's, default start method)."""
    if jb_name != "multiprocessing" or not _mojo._runtime_started:
        return False
    from joblib import parallel

    ctx = parallel.DEFAULT_MP_CONTEXT or multiprocessing.get_context()
    return ctx.get_start_method() == "fork"


def _dask_host_shares(backend) -> dict:
    """host -> threads of all the dask workers on that host (the scheduler's view)."""
    client = backend.client
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # older distributed: every worker by default
        info = client.scheduler_info()
    shares = Counter()
    for w in info.get("workers", {}).values():
        shares[w.get("host")] += int(w.get("nthreads", 1))
    return dict(shares)


def plan_chunks(count: int, jobs: int) -> list[list[int]]:
    """The inputs of each task: ``min(count, CHUNKS_PER_JOB * jobs)`` near-equal slices of a
    fixed permutation of ``range(count)`` (the same for the same count, every run)."""
    k = min(count, CHUNKS_PER_JOB * jobs)
    order = np.random.default_rng(CHUNK_SEED).permutation(count)
    return [sorted(int(i) for i in part) for part in np.array_split(order, k)]


def collection_persistence(X, *, homology_dimensions=(0, 1), threshold: float = np.inf, input_type: str = "point cloud",
                           metric: str = "euclidean", coeff: int = 2, n_jobs: int | None = None, backend: str = "auto",
                           collapse_edges: bool | str = "auto", params: CollectionParams | None = None) -> list:
    """Rips persistence diagrams of every input of ``X``, in parallel with joblib.

    Args:
        X: an iterable of ``(n_i, d_i)`` point clouds (sizes and ambient dimensions may differ),
            or with ``input_type="distance matrix"`` of ``(n_i, n_i)`` distance matrices; numpy
            arrays, torch CPU tensors or nested lists.
        homology_dimensions: an int k (one H_k array per input) or a list of dimensions (one
            list of arrays per input, in that order).
        threshold: as ``aura_lab.rips_persistence``.
        metric: as ``aura_lab.rips_persistence``.
        coeff: as ``aura_lab.rips_persistence``.
        backend: the aura_lab backend each worker runs: auto, mojo or gudhi.
        input_type: ``"point cloud"`` or ``"distance matrix"`` (``"full distance matrix"``, as
            gudhi names it, is the same).
        n_jobs: joblib workers (at most ``MAX_JOBS``); ``None`` follows the joblib context (1 outside any, every
            thread of the cluster under ``parallel_config(backend="dask")``), ``-1`` every core.
        collapse_edges: as ``aura_lab.rips_persistence`` (``"auto"``: its rule, per input).
        params: already validated parameters (``check_params``), instead of the keywords.

    Returns:
        a list with one entry per input, in input order: an ``(m, 2)`` float64 array, or a list
        of them (see ``homology_dimensions``). An empty collection gives ``[]``.

    Bad input: a non-iterable ``X``, or an element that is not a 2-D (square, for matrices)
    numeric array, raises ``ValueError`` naming the index (``X[3]: ...``); errors found while
    computing an element (an asymmetric matrix, a complex beyond memory) name it too.

    Examples:
        >>> import numpy as np, aura_lab
        >>> square = np.array([[0., 0.], [1., 0.], [1., 1.], [0., 1.]])
        >>> [np.round(h1, 4) for h1 in aura_lab.collection_persistence([square, 2 * square], homology_dimensions=1)]
        [array([[1.    , 1.4142]]), array([[2.    , 2.8284]])]
    """
    t0 = time.perf_counter()
    p = params or check_params(homology_dimensions, threshold, input_type, metric, coeff, backend, collapse_edges)
    xs = check_collection(X, p.is_matrix)
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0):
        raise ValueError(f"n_jobs: expected None, -1 or a nonzero integer, got {n_jobs!r}")
    if n_jobs is not None and abs(n_jobs) > MAX_JOBS:  # joblib overflows a C int past 2**31
        raise ValueError(f"n_jobs: at most {MAX_JOBS} workers (or -{MAX_JOBS}), got {n_jobs!r}")
    jb, jb_name, jobs = _active_joblib(n_jobs)
    if not xs:
        _local.run = CollectionRun(0, jb_name if jobs > 1 else "serial", jobs, 0, seconds=time.perf_counter() - t0,
                                   how="nothing to compute")
        return []
    here, how = _where(xs, p, jb_name, jobs)
    if here:  # in this process, no pickling: one batched call on every kernel thread we may use
        with thread_budget(min(jobs, num_threads())) if jobs > 1 else contextlib.nullcontext():
            parts = [_run_chunk(xs, list(range(len(xs))), p, 1, None)]
        chunks, jb_name = [list(range(len(xs)))], "serial"
    else:
        from joblib import Parallel, delayed

        chunks = plan_chunks(len(xs), jobs)
        if _forks_a_started_runtime(jb_name):
            warnings.warn("collection_persistence: joblib's 'multiprocessing' backend forks this process after its Mojo "
                          "runtime started, so each worker runs its kernels on one thread (the runtime's threads do "
                          "not survive a fork); joblib's default loky backend, or JOBLIB_START_METHOD=forkserver, "
                          "keeps every thread", RuntimeWarning, stacklevel=2)
        host_shares = _dask_host_shares(jb) if jb_name == "daskdistributed" else None
        share = jobs if host_shares is None else 1
        parts = Parallel(n_jobs=n_jobs, prefer="processes", batch_size=1)(
            delayed(_run_chunk)([xs[i] for i in c], c, p, share, host_shares) for c in chunks)
    out = [None] * len(xs)
    threads, backends, workers, batched, single = set(), set(), set(), 0, Counter()
    for c, (res, th, bk, who, nb, one) in zip(chunks, parts):
        for i, r in zip(c, res):
            out[i] = r
        threads.add(th)
        backends.update(bk)
        workers.add(who)
        batched += nb
        single.update(one)
    run = CollectionRun(len(xs), jb_name, jobs, len(chunks), sorted(threads), sorted(backends), len(workers),
                        time.perf_counter() - t0, how, batched, dict(single))
    _local.run = run
    _record(run, p)
    return out


def _where(xs: list[np.ndarray], p: CollectionParams, jb_name: str, jobs: int) -> tuple[bool, str]:
    """(run in this process, why): serially for n_jobs 1; on local worker processes only where
    the inputs that run one call each (Python around every call) hold ``PROCESS_MIN_S``
    estimated seconds or more of engine work; threads and dask as asked."""
    if jobs == 1:
        return True, "in this process (n_jobs=1)"
    if jb_name not in _PROCESS_BACKENDS:
        return False, f"{jobs} joblib {jb_name} workers"
    single = [x.shape[0] for x, why in zip(xs, _why_single(xs, p)) if why is not None]
    est = B.estimated_ns(single, p.maxdim) * 1e-9
    if est < PROCESS_MIN_S:
        return True, (f"in this process on {min(jobs, num_threads())} kernel threads: {len(xs) - len(single)} inputs "
                      f"batched (the batch's threads use every core {jb_name} workers would), {est:.3g} s of estimated "
                      f"engine work in calls of their own < PROCESS_MIN_S = {PROCESS_MIN_S:g} s, not worth starting "
                      f"{jb_name} worker processes")
    return False, (f"{jobs} joblib {jb_name} worker processes: {est:.3g} s of estimated engine work in calls of their "
                   f"own >= PROCESS_MIN_S")


#: joblib backends that start worker processes on this machine
_PROCESS_BACKENDS = ("loky", "multiprocessing")


def _record(run: CollectionRun, p: CollectionParams) -> None:
    """The collection as ``last_dispatch()``: what ran, where, and why inputs ran one call each."""
    single = "; ".join(f"{v} one call each ({k})" for k, v in run.single.items())
    batched = f"{run.batched} inputs batched (one native call per chunk)" if run.batched else ""
    reason = "; ".join(r for r in (f"collection of {run.inputs} inputs", batched, single, run.how) if r)
    op.record("+".join(run.backends) or "none", p.backend, reason, run.seconds)
