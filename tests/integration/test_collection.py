"""aura_lab.collection and the RipsPersistence transformer: gudhi's output format, results
identical serial / joblib processes / threads / a dask LocalCluster, the per-worker thread
budget, a killed worker, bad input, and scikit-learn's conventions."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time

import joblib
import numpy as np
import pytest

import aura_lab
from aura_lab import collection
from aura_lab.collection import collection_persistence, last_run
from aura_lab.registry import num_threads

pytestmark = pytest.mark.requires("mojo")


def _clouds(seed=0, count=24):
    """Clouds of several sizes and ambient dimensions: noisy circles, blobs, lines."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        n = int(rng.integers(3, 90))
        kind = i % 3
        if kind == 0:
            t = rng.uniform(0, 2 * np.pi, n)
            x = np.stack([np.cos(t), np.sin(t)], 1) + 0.05 * rng.standard_normal((n, 2))
        elif kind == 1:
            x = rng.standard_normal((n, int(rng.integers(1, 5))))
        else:
            x = np.outer(rng.uniform(0, 3, n), [1.0, 2.0, -1.0])
        out.append(x)
    return out


def _sorted(d):
    d = np.asarray(d, np.float64).reshape(-1, 2)
    return d[np.lexsort((d[:, 1], d[:, 0]))]


def _same(a, b):
    """Exactly the same diagrams (both formats: arrays or lists of arrays)."""
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        xs, ys = (x, y) if isinstance(x, list) else ([x], [y])
        assert isinstance(y, list) == isinstance(x, list), i
        assert len(xs) == len(ys), i
        for u, v in zip(xs, ys):
            assert u.dtype == v.dtype == np.float64 and u.shape == v.shape, i
            np.testing.assert_array_equal(u, v, err_msg=f"input {i}")


# ------------------------------------------------------------------------------ format

def test_same_diagrams_as_rips_persistence_in_gudhis_format():
    X = _clouds()
    out = aura_lab.RipsPersistence(homology_dimensions=[1, 0]).fit_transform(X)
    assert isinstance(out, list) and len(out) == len(X)
    for x, got in zip(X, out):
        ref = aura_lab.rips_persistence(x, maxdim=1)
        assert isinstance(got, list) and len(got) == 2
        np.testing.assert_array_equal(got[0], ref[1])
        np.testing.assert_array_equal(got[1], ref[0])
    one = aura_lab.RipsPersistence(homology_dimensions=1).fit_transform(X)
    assert all(isinstance(d, np.ndarray) and d.shape[1] == 2 for d in one)
    _same(one, [o[0] for o in out])
    # a dimension beyond what a small cloud can have: an empty (0, 2) array, as gudhi
    hi = aura_lab.RipsPersistence(homology_dimensions=[0, 3]).fit_transform([np.array([[0.0, 0.0], [1.0, 0.0]])])
    np.testing.assert_array_equal(hi[0][0], [[0.0, 1.0], [0.0, np.inf]])
    assert hi[0][1].shape == (0, 2)


@pytest.mark.parametrize("coeff", [2, 3])
def test_matches_gudhis_rips_persistence(coeff):
    from gudhi.sklearn.rips_persistence import RipsPersistence as GudhiRips

    X = _clouds(seed=1, count=12)
    dims = [0, 1]
    ours = aura_lab.RipsPersistence(homology_dimensions=dims, coeff=coeff).fit_transform(X)
    theirs = GudhiRips(homology_dimensions=dims, homology_coeff_field=coeff).fit_transform(X)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        for k in range(len(dims)):
            ga, gb = _sorted(a[k]), _sorted(b[k])
            gb = gb[gb[:, 1] > gb[:, 0]]
            assert ga.shape == gb.shape, (i, k)
            np.testing.assert_allclose(ga, gb, rtol=1e-12, atol=1e-12)  # both float64 distances
            assert np.isinf(ga[:, 1]).sum() == (1 if k == 0 else 0)  # one essential class: H0 of a connected cloud
    # distance matrices: the same filtration values on both sides, so the same bars exactly
    from scipy.spatial.distance import pdist, squareform

    Ds = [squareform(pdist(x)) for x in X]
    ours = aura_lab.RipsPersistence(homology_dimensions=1, input_type="distance matrix", coeff=coeff).fit_transform(Ds)
    theirs = GudhiRips(homology_dimensions=1, input_type="full distance matrix",
                       homology_coeff_field=coeff).fit_transform(Ds)
    for a, b in zip(ours, theirs):
        b = _sorted(b)
        np.testing.assert_array_equal(_sorted(a), b[b[:, 1] > b[:, 0]])


def test_gudhis_input_type_name_and_point_clouds_agree():
    X = _clouds(seed=2, count=6)
    from scipy.spatial.distance import pdist, squareform

    Ds = [squareform(pdist(x)) for x in X]
    a = collection_persistence(Ds, input_type="distance matrix")
    b = collection_persistence(Ds, input_type="full distance matrix")
    _same(a, b)
    for x, y in zip(collection_persistence(X), a):
        for u, v in zip(x, y):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)


def test_empty_collection_and_torch_and_list_inputs():
    assert aura_lab.RipsPersistence().fit_transform([]) == []
    assert last_run().inputs == 0
    import torch

    x = np.random.default_rng(3).standard_normal((30, 3))
    ref = aura_lab.rips_persistence(x)
    for form in (torch.from_numpy(x), x.tolist(), np.asfortranarray(x)):
        _same(collection_persistence([form]), [ref])
    # a 3-D array is a collection of equal-sized clouds
    stack = np.random.default_rng(4).standard_normal((5, 20, 2))
    _same(collection_persistence(stack), collection_persistence(list(stack)))
    # a generator is consumed once
    _same(collection_persistence(c for c in stack), collection_persistence(list(stack)))


# ------------------------------------------------------------------------------ parallel

def test_processes_and_threads_give_identical_results_in_input_order(monkeypatch):
    X = _clouds(seed=5, count=30)
    serial = collection_persistence(X, n_jobs=1)
    run = last_run()
    assert (run.joblib_backend, run.chunks, run.threads_per_task, run.backends) == ("serial", 1, [num_threads()], ["mojo"])
    assert run.batched == len(X) and run.single == {}
    # a short collection: no worker processes, one batched call on n_jobs threads, and why
    short = collection_persistence(X, n_jobs=2)
    run = last_run()
    assert run.joblib_backend == "serial" and run.threads_per_task == [min(2, num_threads())]
    assert "not worth starting loky worker processes" in run.how and run.how in aura_lab.last_dispatch().reason
    _same(short, serial)
    monkeypatch.setattr(collection, "PROCESS_MIN_S", 0.0)  # processes from any size on
    procs = collection_persistence(X, n_jobs=2)
    run = last_run()
    assert run.joblib_backend == "loky" and run.n_jobs == 2
    assert run.chunks == min(len(X), collection.CHUNKS_PER_JOB * 2)
    assert run.threads_per_task == [max(1, num_threads() // 2)]  # workers x threads <= cores
    assert run.workers >= 1 and run.backends == ["mojo"]
    _same(procs, serial)
    with joblib.parallel_config(backend="threading"):
        thr = collection_persistence(X, n_jobs=2)
    assert last_run().joblib_backend == "threading" and last_run().workers == 1
    _same(thr, serial)
    with joblib.parallel_config(n_jobs=2):  # n_jobs=None follows the joblib context
        ctx = collection_persistence(X)
    assert last_run().n_jobs == 2
    _same(ctx, serial)


def test_worker_processes_only_for_inputs_that_run_one_call_each(monkeypatch):
    """The policy: batched inputs stay in this process on n_jobs threads however long the
    estimate (processes add no core the batch's threads lack); inputs the batch does not take
    (a metric other than euclidean) go to worker processes once their estimated engine work
    reaches PROCESS_MIN_S. What ran and why is in last_run() and last_dispatch()."""
    from aura_lab.persistence import batch

    X = _clouds(seed=7, count=12)
    est = batch.estimated_ns([x.shape[0] for x in X], 1) * 1e-9
    monkeypatch.setattr(collection, "PROCESS_MIN_S", est / 2)  # a "long" collection
    batched = collection_persistence(X, n_jobs=2)
    run = last_run()
    assert run.joblib_backend == "serial" and run.batched == len(X) and run.workers == 1
    assert f"{len(X)} inputs batched" in run.how and "0 s of estimated engine work in calls of their own" in run.how
    assert run.how in aura_lab.last_dispatch().reason
    _same(batched, collection_persistence(X, n_jobs=1))
    one_each = collection_persistence(X, metric="chebyshev", n_jobs=2)
    run = last_run()
    assert run.joblib_backend == "loky" and run.batched == 0
    assert run.single == {"metric='chebyshev' (the batch computes euclidean distances)": len(X)}
    assert f"worker processes: {est:.3g} s of estimated engine work in calls of their own >= PROCESS_MIN_S" in run.how
    assert run.how in aura_lab.last_dispatch().reason
    monkeypatch.setattr(collection, "PROCESS_MIN_S", est * 2)  # the same inputs, a short collection
    _same(collection_persistence(X, metric="chebyshev", n_jobs=2), one_each)
    assert last_run().joblib_backend == "serial" and "not worth starting loky worker processes" in last_run().how


def test_thread_budget_caps_the_kernels_threads_in_this_context_only():
    from aura_lab.persistence import op
    from aura_lab.registry import thread_budget

    big = {"n": 2000, "maxdim": 1}
    full = op.threads(big)
    assert full == num_threads()
    with thread_budget(1):
        assert num_threads() == 1 and op.threads(big) == 1
        seen = []
        t = threading.Thread(target=lambda: seen.append(num_threads()))
        t.start()
        t.join()
        assert seen == [full]  # another thread keeps its own budget
    assert op.threads(big) == full
    with pytest.raises(ValueError, match="thread budget"):
        with thread_budget(0):
            pass


def _workload(seconds: float, seed: int) -> list[np.ndarray]:
    """Clouds of 500 points that take about ``seconds`` serially on this machine (at least 8)."""
    rng = np.random.default_rng(seed)
    probe = [rng.standard_normal((500, 3)) for _ in range(2)]
    collection_persistence(probe[:1])
    t0 = time.perf_counter()
    collection_persistence(probe)
    each = (time.perf_counter() - t0) / 2
    count = int(min(400, max(8, seconds / max(each, 1e-4))))
    return probe + [rng.standard_normal((500, 3)) for _ in range(count - 2)]


def test_a_killed_process_worker_raises_a_clear_error(monkeypatch):
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    monkeypatch.setattr(collection, "PROCESS_MIN_S", 0.0)  # worker processes whatever the estimate

    X = _workload(6.0, seed=6)  # seconds of work per worker: the kill lands mid-run
    # the pids of the (reused) loky workers that the next call runs on
    pids = set(joblib.Parallel(n_jobs=2)(joblib.delayed(os.getpid)() for _ in range(8)))
    res = {}

    def go():
        try:
            res["out"] = collection_persistence(X, n_jobs=2)
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            res["err"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    time.sleep(0.5)
    os.kill(min(pids), signal.SIGKILL)
    t.join(timeout=120)
    assert not t.is_alive(), "collection_persistence hung after a worker was killed"
    assert isinstance(res.get("err"), TerminatedWorkerError), repr(res)
    assert "terminated" in str(res["err"]).lower() and "SIGKILL" in str(res["err"])
    _same(collection_persistence(X[:4], n_jobs=2), collection_persistence(X[:4]))  # the next call works


# ------------------------------------------------------------------------------ dask

def _local_cluster():  # its tests carry requires("distributed")
    import distributed

    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       host="127.0.0.1")
    return cluster, distributed.Client(cluster, timeout=60)


@pytest.fixture
def dask_client():
    """A fresh LocalCluster per test (one at a time: the scheduler's HTTP server takes port
    8787), always torn down."""
    cluster, client = _local_cluster()
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.mark.requires("distributed")
def test_dask_local_cluster_gives_identical_results(dask_client):
    X = _clouds(seed=7, count=30)
    serial = collection_persistence(X, homology_dimensions=[0, 1])
    with joblib.parallel_config(backend="dask"):
        est = aura_lab.RipsPersistence(homology_dimensions=[0, 1])
        out = est.fit_transform(X)
        run = last_run()
        one = aura_lab.RipsPersistence(homology_dimensions=1).fit_transform(X)
    assert run.joblib_backend == "daskdistributed" and run.n_jobs == 2
    assert run.chunks == min(len(X), collection.CHUNKS_PER_JOB * 2)
    # both workers run on this host, one thread each: each task gets cores // 2 kernel threads
    assert run.threads_per_task == [max(1, num_threads() // 2)]
    _same(out, serial)
    _same(one, [s[1] for s in serial])


@pytest.mark.requires("distributed")
def test_dask_worker_killed_mid_run_is_retried_or_raises_never_hangs(dask_client):
    client = dask_client
    X = _workload(4.0, seed=8)
    expected = collection_persistence(X)
    pids = client.run(os.getpid)
    res = {}

    def go():
        try:
            with joblib.parallel_config(backend="dask"):
                res["out"] = collection_persistence(X)
        except BaseException as e:  # noqa: BLE001
            res["err"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    victim, deadline = None, time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        busy = [a for a, tasks in client.processing().items() if tasks]
        victim = busy[0] if busy else None
        time.sleep(0.02)
    assert victim is not None, "no task started within 60 s"
    os.kill(pids[victim], signal.SIGKILL)
    t.join(timeout=180)
    assert not t.is_alive(), "collection_persistence hung after a dask worker was killed"
    if "out" in res:  # dask rescheduled the lost tasks on the surviving / restarted worker
        _same(res["out"], expected)
    else:
        from distributed.scheduler import KilledWorker

        assert isinstance(res["err"], KilledWorker), repr(res["err"])


def test_without_dask_everything_else_works_and_the_dask_backend_says_why():
    code = textwrap.dedent("""
        import sys
        sys.modules["distributed"] = None   # import distributed -> ImportError
        sys.modules["dask"] = None
        import joblib, numpy as np
        from aura_lab.collection import collection_persistence
        X = [np.random.default_rng(0).standard_normal((20, 2))]
        ref = collection_persistence(X)
        out = collection_persistence(X, n_jobs=2)
        assert all(np.array_equal(a, b) for a, b in zip(ref[0], out[0]))
        try:
            with joblib.parallel_config(backend="dask"):
                collection_persistence(X)
        except ValueError as e:
            print("ERR", e)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert r.returncode == 0, r.stderr
    assert "ERR" in r.stdout and "dask is not installed" in r.stdout


# ------------------------------------------------------------------------------ bad input

def test_bad_collections_name_the_index():
    good = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"^X: expected a collection"):
        collection_persistence(3)
    with pytest.raises(ValueError, match=r"^X: expected a collection"):
        collection_persistence("abc")
    with pytest.raises(ValueError, match=r"^X\[0\]: expected a 2-D point cloud .*pass \[cloud\]"):
        collection_persistence(np.zeros((5, 2)))  # one cloud instead of a list of clouds
    with pytest.raises(ValueError, match=r"^X\[2\]: expected a 2-D point cloud \(n, d\), got 3-D"):
        collection_persistence([good, good, np.zeros((2, 2, 2))])
    with pytest.raises(ValueError, match=r"^X\[1\]: cannot convert list to an array"):
        collection_persistence([good, [[1, 2], [3]]])
    with pytest.raises(ValueError, match=r"^X\[1\]: expected a real numeric array"):
        collection_persistence([good, np.array([["a", "b"]])])
    bad = good.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"^X\[1\]: the point cloud contains NaN"):
        collection_persistence([good, bad])
    with pytest.raises(ValueError, match=r"^X\[1\]: a distance matrix must be square"):
        collection_persistence([np.zeros((2, 2)), np.zeros((2, 3))], input_type="distance matrix")


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_errors_found_while_computing_name_the_index(n_jobs):
    D = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
    asym = D.copy()
    asym[0, 2] = 5.0
    with pytest.raises(ValueError, match=r"^X\[3\]: the distance matrix is not symmetric"):
        collection_persistence([D, D, D, asym], input_type="distance matrix", n_jobs=n_jobs)


def test_bad_parameters_name_the_argument():
    X = [np.zeros((3, 2))]
    cases = [
        ({"homology_dimensions": -1}, ValueError, "homology_dimensions"),
        ({"homology_dimensions": []}, ValueError, "homology_dimensions: the list of dimensions is empty"),
        ({"homology_dimensions": True}, TypeError, "homology_dimensions"),
        ({"homology_dimensions": [0, 1.5]}, TypeError, "homology_dimensions"),
        ({"homology_dimensions": "01"}, TypeError, "homology_dimensions"),
        ({"input_type": "lower distance matrix"}, ValueError, "input_type"),
        ({"metric": "hamming"}, ValueError, "metric"),
        ({"metric": "cosine", "input_type": "distance matrix"}, ValueError, "metric"),
        ({"coeff": 4}, ValueError, "coeff"),
        ({"threshold": -1.0}, ValueError, "threshold"),
        ({"backend": "cuda"}, ValueError, "backend"),
        ({"backend": "torch"}, ValueError, "backend"),
        ({"n_jobs": 0}, ValueError, "n_jobs"),
        ({"n_jobs": 1.5}, ValueError, "n_jobs"),
    ]
    for kw, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            collection_persistence(X, **kw)
    with pytest.raises(ValueError, match="input_type"):
        aura_lab.RipsPersistence(input_type="nope").fit(X)


def test_different_ambient_dimensions_each_on_its_own():
    rng = np.random.default_rng(9)
    X = [rng.standard_normal((25, d)) for d in (1, 2, 5, 9)]
    _same(collection_persistence(X), [aura_lab.rips_persistence(x) for x in X])


# ------------------------------------------------------------------------------ scikit-learn

def test_estimator_conventions():
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError
    from sklearn.utils import estimator_checks as ec

    est = aura_lab.RipsPersistence(homology_dimensions=1, threshold=2.0, n_jobs=2)
    assert est.get_params() == {"homology_dimensions": 1, "threshold": 2.0, "input_type": "point cloud",
                                "metric": "euclidean", "coeff": 2, "n_jobs": 2, "backend": "auto",
                                "collapse_edges": "auto"}
    assert est.set_params(coeff=3) is est and est.coeff == 3
    c = clone(est)
    assert c is not est and c.get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        est.transform([np.zeros((3, 2))])
    assert est.fit([np.zeros((3, 2))]) is est and est.dim_list_ == (1,)
    assert list(aura_lab.RipsPersistence().fit(None).get_feature_names_out()) == ["H0", "H1"]
    back = pickle.loads(pickle.dumps(est))
    X = _clouds(seed=10, count=4)
    _same(back.transform(X), est.transform(X))
    # the checks of sklearn.utils.estimator_checks that apply to an estimator whose input is
    # a list of clouds (the others feed it a 2-D numeric array as the whole data set)
    name = "RipsPersistence"
    for check in (ec.check_parameters_default_constructible, ec.check_no_attributes_set_in_init,
                  ec.check_get_params_invariance, ec.check_set_params, ec.check_estimator_cloneable,
                  ec.check_estimator_repr, ec.check_mixin_order, ec.check_estimator_tags_renamed,
                  ec.check_valid_tag_types, ec.check_do_not_raise_errors_in_init_or_set_params,
                  ec.check_transformers_unfitted):
        check(name, aura_lab.RipsPersistence())


def _shapes(seed, per_class):
    """Noisy circles (one H1 class) and noisy blobs (none), 40 points each."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for i in range(2 * per_class):
        if i % 2 == 0:
            t = rng.uniform(0, 2 * np.pi, 40)
            X.append(np.stack([np.cos(t), np.sin(t)], 1) + 0.08 * rng.standard_normal((40, 2)))
        else:
            X.append(0.6 * rng.standard_normal((40, 2)))
        y.append(i % 2)
    return X, np.array(y)


def test_pipeline_with_persistence_image_and_a_classifier_fits_and_predicts():
    from gudhi.representations import DiagramSelector, PersistenceImage
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    X, y = _shapes(0, 20)
    Xt, yt = _shapes(1, 10)
    pipe = make_pipeline(aura_lab.RipsPersistence(homology_dimensions=1, n_jobs=2),
                         DiagramSelector(use=True, point_type="finite"),
                         PersistenceImage(bandwidth=0.05, weight=lambda p: p[1], resolution=[10, 10],
                                          im_range=[0, 1, 0, 1]),
                         LogisticRegression(max_iter=1000))
    pipe.fit(X, y)
    np.testing.assert_array_equal(pipe.predict(Xt), yt)  # circles have a long H1 bar, blobs none


def test_grid_search_over_a_pipeline():
    from gudhi.representations import DiagramSelector, PersistenceImage
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.svm import SVC

    X, y = _shapes(2, 12)
    pipe = Pipeline([("rips", aura_lab.RipsPersistence(homology_dimensions=1)),
                     ("finite", DiagramSelector(use=True, point_type="finite")),
                     ("image", PersistenceImage(bandwidth=0.05, resolution=[8, 8], im_range=[0, 1, 0, 1])),
                     ("svm", SVC())])
    gs = GridSearchCV(pipe, {"rips__coeff": [2, 3], "svm__C": [0.1, 10.0]}, cv=3)
    gs.fit(X, y)
    assert len(gs.cv_results_["params"]) == 4
    assert sorted(gs.cv_results_["param_rips__coeff"]) == [2, 2, 3, 3]
    assert gs.best_score_ == 1.0 and gs.best_estimator_.named_steps["rips"].dim_list_ == (1,)
    np.testing.assert_array_equal(gs.predict(X), y)


# ------------------------------------------------------------------------------ harness

def test_bench_and_validate_collection():
    from aura_lab import harness
    from aura_lab.harness import collection as hc

    res = harness.bench("collection", cases=[(8, 30)], kinds=["gaussian"], repeats=1, show_progress=False)
    rows = {r["impl"]: r for r in res.rows if r["case"] == "gaussian N=8 n=30"}
    ours = [r for r in rows.values() if r["kind"] == "aura"]
    assert [r["impl"] for r in ours] == ["aura RipsPersistence()", "aura RipsPersistence(n_jobs=2)",
                                        "aura processes (loky, 2, forced)", "aura threads (2)",
                                        "aura LocalCluster (2 x 1)"]
    assert all(r["same"] is True and r["ms"] > 0 and r["clouds/s"] == 8 / (r["ms"] * 1e-3) for r in ours)
    forced = rows["aura processes (loky, 2, forced)"]
    assert forced["vs_processes"] == 1.0 and forced["threads_per_task"] == [max(1, num_threads() // 2)]
    assert "not worth starting" in rows["aura RipsPersistence(n_jobs=2)"]["note"]  # 8 tiny clouds: no processes
    g = rows["gudhi RipsPersistence (threads, 2)"]
    first = rows["aura RipsPersistence()"]
    assert g["vs_gudhi"] == 1.0 and first["vs_gudhi"] == g["ms"] / first["ms"]
    assert "__transform" in rows["gudhi RipsPersistence (processes, 2)"]["note"]  # gudhi cannot run in processes
    assert rows["ripser.py loop"]["ms"] > 0 and rows["giotto-ph loop (n_threads=2)"]["ms"] > 0
    single = [r for r in res.rows if r["case"] == "single n=70"]
    assert single[0]["impl"] == "aura rips_persistence" and all(r["ms"] > 0 for r in single)
    assert single[0]["vs_gudhi"] == next(r["ms"] for r in single if r["impl"].startswith("gudhi")) / single[0]["ms"]
    checks = harness.validate("collection")
    assert [c.backend for c in checks] == ["processes (2)", "threads (2)", "LocalCluster (2 x 1)", "serial"]
    assert all(c.passed for c in checks), harness.summarize(checks)
    X, y = hc.make_collection(8, n=30)
    assert [x.shape for x in X] == [(30, 3)] * 8 and y.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    with pytest.raises(ValueError, match="kind"):
        hc.sample_shape("cube", 10, np.random.default_rng(0))


def test_chunks_cover_every_input_once_and_mix_periodic_labels():
    for count, jobs in [(1, 2), (7, 2), (100, 2), (1000, 3)]:
        chunks = collection.plan_chunks(count, jobs)
        assert len(chunks) == min(count, collection.CHUNKS_PER_JOB * jobs)
        assert sorted(i for c in chunks for i in c) == list(range(count))
        assert max(map(len, chunks)) - min(map(len, chunks)) <= 1
    # labels 0, 1, 2, 3, 0, 1, ... (the bench's and notebook 04's shapes): no chunk of one label
    chunks = collection.plan_chunks(1000, 2)
    assert all(len({i % 4 for i in c}) == 4 for c in chunks)
    assert chunks == collection.plan_chunks(1000, 2)  # the same every time


@pytest.mark.requires("distributed")
def test_a_dask_cluster_started_after_aura_lab_prints_no_log_lines():
    """mojo's package lookup logs through ``logging.debug()``, whose implicit ``basicConfig()``
    gave the unconfigured root logger a stderr handler: every INFO record of a LocalCluster
    started afterwards (a dozen lines per start and stop) then printed in notebook 04."""
    code = ("import logging, joblib, numpy as np, aura_lab\n"
            "from aura_lab.harness.collection import _start_cluster\n"
            "if __name__ == '__main__':\n"
            "    X = [np.random.default_rng(i).standard_normal((20, 3)) for i in range(4)]\n"
            "    aura_lab.RipsPersistence(n_jobs=2).fit_transform(X)\n"
            "    assert logging.getLogger().handlers == [], logging.getLogger().handlers\n"
            "    cluster, client = _start_cluster()\n"
            "    with joblib.parallel_config(backend='dask'):\n"
            "        aura_lab.RipsPersistence().fit_transform(X)\n"
            "    client.close(); cluster.close()\n"
            "    print('ran on the cluster')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ran on the cluster" in res.stdout
    assert "distributed." not in res.stderr, res.stderr[:2000]
