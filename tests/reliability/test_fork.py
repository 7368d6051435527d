"""Fork safety: the Mojo runtime's worker threads do not survive os.fork, so a child forked
after a kernel was loaded would hang for good on its first multi-threaded kernel call. Such a
child runs its kernels on one thread (with a warning) and gets the same results; the MAX
backend, which would hang there too, is unavailable in it with an error naming the cause.

Every forked or spawned process here runs under a timeout and is killed after it, so a
regression fails instead of hanging the suite."""

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import aura_lab
from aura_lab import _max, _mojo, distance, persistence
from aura_lab.registry import num_threads

pytestmark = pytest.mark.requires("mojo")

#: how long a forked child may take before the test calls it hung (each call here takes < 1 s)
TIMEOUT_S = 120

X = np.random.default_rng(0).standard_normal((600, 32))
CLOUD = np.random.default_rng(1).standard_normal((120, 3))


def _in_fork(fn, *args):
    """``fn(*args)`` in a child made by multiprocessing's fork start method; the test fails if
    no result comes within ``TIMEOUT_S`` (the pool then kills the child)."""
    with multiprocessing.get_context("fork").Pool(1) as pool:
        try:
            return pool.apply_async(fn, args).get(timeout=TIMEOUT_S)
        except multiprocessing.TimeoutError:
            pytest.fail(f"{fn.__name__} in a forked child gave no result in {TIMEOUT_S} s (hung)")


def _kernel_calls():
    """The multi-threaded calls of the parent, in the child: (results, the child's thread
    count, the warnings it gave)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        D = aura_lab.pairwise_distances(X, backend="mojo")
        dgms = aura_lab.rips_persistence(CLOUD, maxdim=2, backend="mojo")
        threads = num_threads()
    return D, dgms, threads, [str(w.message) for w in caught]


@pytest.fixture
def two_threads(monkeypatch):
    """Kernels loaded and a 2-thread call made in this process, AURA_NUM_THREADS=2."""
    monkeypatch.setenv("AURA_NUM_THREADS", "2")
    assert distance.op.threads({"n": 600, "m": 600, "d": 32}) == 2  # these sizes use 2 threads here
    assert persistence.op.threads({"n": 120, "maxdim": 2}) == 2
    D = aura_lab.pairwise_distances(X, backend="mojo")
    dgms = aura_lab.rips_persistence(CLOUD, maxdim=2, backend="mojo")
    assert _mojo._runtime_started
    return D, dgms


def test_a_forked_child_runs_multithreaded_calls_on_one_thread(two_threads):
    D, dgms = two_threads
    D_child, dgms_child, threads, told = _in_fork(_kernel_calls)
    np.testing.assert_allclose(D_child, D, rtol=1e-12, atol=1e-12)
    assert len(dgms_child) == len(dgms) == 3
    for a, b in zip(dgms_child, dgms):
        np.testing.assert_array_equal(a, b)
    assert threads == 1
    assert len([m for m in told if "kernels run on one thread in this process" in m]) == 1
    assert "'spawn' or 'forkserver'" in told[0]
    assert num_threads() == 2  # the parent keeps its threads


def _max_calls():
    """In the child: the max backend's error, and the backend ``auto`` ran instead."""
    try:
        aura_lab.pairwise_distances(X[:50], backend="max")
        error = None
    except aura_lab.BackendUnavailable as e:
        error = str(e)
    aura_lab.pairwise_distances(X[:50])
    return error, aura_lab.last_dispatch().backend


@pytest.mark.requires("max")
def test_the_max_backend_is_unavailable_in_a_forked_child_not_hung(two_threads):
    _max._session()  # MAX's runtime started in the parent too
    error, auto_ran = _in_fork(_max_calls)
    assert error is not None and "forked after the Mojo/MAX runtime had started" in error
    assert "'spawn' or 'forkserver'" in error
    assert auto_ran != "max"
    assert _max.status()[0]  # the parent keeps it


# ------------------------------------------------------------------------------ joblib

_JOBLIB_SCRIPT = textwrap.dedent("""
    import json, warnings
    import joblib, numpy as np
    import aura_lab

    rng = np.random.default_rng(2)
    clouds = [rng.standard_normal((n, 3)) for n in (150, 90, 130, 110)]
    serial = aura_lab.collection_persistence(clouds, n_jobs=1, backend="mojo")  # kernels loaded, 4 threads
    aura_lab.collection.PROCESS_MIN_S = 0.0  # worker processes even for this small collection: the fork is the point
    with warnings.catch_warnings(record=True) as caught, joblib.parallel_config(backend="multiprocessing"):
        warnings.simplefilter("always")
        forked = aura_lab.collection_persistence(clouds, n_jobs=2, backend="mojo")
    run = aura_lab.collection.last_run()
    same = all(np.array_equal(a, b) for s, f in zip(serial, forked) for a, b in zip(s, f))
    print(json.dumps({"same": same, "backend": run.joblib_backend, "workers": run.workers,
                      "threads": run.threads_per_task, "warnings": [str(w.message) for w in caught]}))
""")


def test_joblib_multiprocessing_collection_finishes_with_the_serial_diagrams(tmp_path):
    # a fresh interpreter in its own session: when it hangs, it and its pool workers are killed
    env = {**os.environ, "AURA_NUM_THREADS": "4"}
    p = subprocess.Popen([sys.executable, "-c", _JOBLIB_SCRIPT], env=env, cwd=tmp_path, start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=TIMEOUT_S + 60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"collection_persistence under joblib's multiprocessing backend hung ({TIMEOUT_S + 60} s)")
    finally:
        with contextlib.suppress(ProcessLookupError):  # nothing it started outlives the test
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 0, err
    r = json.loads(out.strip().splitlines()[-1])
    assert r["same"] and r["backend"] == "multiprocessing" and r["workers"] >= 1
    assert r["threads"] == [1]  # forked after the runtime started: one thread per worker
    assert any("'multiprocessing' backend forks this process" in w for w in r["warnings"])
