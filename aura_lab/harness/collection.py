"""``aura-lab bench collection`` and ``aura-lab validate collection``: persistence diagrams of
a whole collection of clouds (``aura_lab.RipsPersistence``), not an op family of its own.

The bench: ``CASES`` of N clouds of n points in R^3 (``KINDS``: noisy circles, tori, spheres
and figure-eights in turn, as notebook 04 classifies; and standard normal clouds), maxdim 1,
float64, coefficients Z/2 -- many small clouds (10 000 of 50 points, 240 of 70) and 1000 of
200 -- computed

* by aura_lab: ``RipsPersistence()`` (n_jobs=None: one batched native call, every kernel
  thread), ``RipsPersistence(n_jobs=2)`` (its default choice: in this process unless the
  collection is long enough to pay for worker processes, ``collection.PROCESS_MIN_S``), with
  loky processes forced (2 workers, each chunk one batched call on cores // 2 threads), with
  joblib threads (2), and on a ``dask.distributed.LocalCluster`` of 2 worker processes x 1
  thread through ``joblib.parallel_config(backend="dask")``;
* by gudhi's ``gudhi.sklearn.RipsPersistence(n_jobs=2)`` (its own choice, joblib threads; and
  under loky processes, where it fails: the bound name-mangled ``__transform`` it hands joblib
  does not unpickle in a worker -- the same failure as under dask);
* by giotto-ph's ``ripser_parallel`` (``n_threads=1``) in a joblib loop of 2 worker processes
  -- what giotto-tda's ``VietorisRipsPersistence(n_jobs=2)`` does (giotto-tda itself pins
  ``scikit-learn==1.3.2`` and does not install next to scikit-learn 1.9) -- and in a plain loop
  (``n_threads=2`` per call);
* by ripser.py's ``ripser`` in a plain loop.

A last case, ``single n=70``, times one call on one 70-point cloud: ``rips_persistence``
against gudhi's per-cloud work as its ``RipsPersistence`` does it (``RipsComplex``,
``collapse_edges``, ``expansion``, ``compute_persistence``) and ripser.py's ``ripser``.

Ratios, same run: ``vs_gudhi`` / ``vs_giotto`` = the faster of that peer's rows / this row;
``vs_processes`` = this row / aura_lab's processes row; ``clouds/s`` = N / the median time.
"""

from __future__ import annotations

import numpy as np

from ..collection import collection_persistence, last_run
from .core import BenchResult, Check, PanelSpec, machine_info, progress, time_call

COLUMNS = ["case", "impl", "kind", "workers", "ms", "runs", "clouds/s", "vs_gudhi", "vs_giotto", "vs_processes", "same",
           "note"]
#: (N clouds, n points each)
CASES = ((10_000, 50), (240, 70), (1000, 200))
#: the single-call case: one cloud of this many points
SINGLE_N = 70
#: the clouds: the four shapes of notebook 04 (noisy circles cost ~4x the others: long H1
#: reductions), and standard normal clouds
KINDS = ("shapes",)
N_POINTS = 200
MAXDIM = 1
SHAPES = ("circle", "torus", "sphere", "figure-eight")


def sample_shape(kind: str, n: int, rng, noise: float = 0.05) -> np.ndarray:
    """``n`` points near a shape in R^3 (unit size, random rotation), Gaussian noise."""
    if kind == "circle":
        t = rng.uniform(0, 2 * np.pi, n)
        x = np.stack([np.cos(t), np.sin(t), np.zeros(n)], 1)
    elif kind == "torus":
        u, v = rng.uniform(0, 2 * np.pi, (2, n))
        x = np.stack([(1 + 0.4 * np.cos(v)) * np.cos(u), (1 + 0.4 * np.cos(v)) * np.sin(u), 0.4 * np.sin(v)], 1)
    elif kind == "sphere":
        x = rng.standard_normal((n, 3))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    elif kind == "figure-eight":
        t = rng.uniform(0, 2 * np.pi, n)
        x = np.stack([np.sin(t), np.sin(t) * np.cos(t), np.zeros(n)], 1)
    else:
        raise ValueError(f"kind: unknown shape {kind!r}; valid: {', '.join(SHAPES)}")
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    return x @ q + noise * rng.standard_normal((n, 3))


def make_collection(count: int, n: int = N_POINTS, seed: int = 0, kind: str = "shapes") -> tuple[list[np.ndarray], np.ndarray]:
    """``count`` clouds of ``n`` points in R^3 and their labels: ``kind="shapes"`` cycles
    through ``SHAPES`` (labels: indices into SHAPES); ``"gaussian"``: standard normal clouds
    (labels 0)."""
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return [rng.standard_normal((n, 3)) for _ in range(count)], np.zeros(count, np.int64)
    if kind != "shapes":
        raise ValueError(f"kind: expected 'shapes' or 'gaussian', got {kind!r}")
    labels = np.arange(count) % len(SHAPES)
    return [sample_shape(SHAPES[k], n, rng) for k in labels], labels


# ------------------------------------------------------------------------------- peers

def _giotto_one(x):
    from gph import ripser_parallel

    return ripser_parallel(x, maxdim=MAXDIM, n_threads=1)["dgms"]


def _peers() -> dict:
    """name -> (kind, fn(X)); only the installed ones."""
    import joblib

    out = {}
    try:
        import gudhi  # noqa: F401

        def gudhi_rows(backend):
            def run(X):
                if backend is None:
                    return _gudhi_collection(X)
                with joblib.parallel_config(backend=backend):
                    return _gudhi_collection(X)
            return run

        out["gudhi RipsPersistence (threads, 2)"] = gudhi_rows(None)
        out["gudhi RipsPersistence (processes, 2)"] = gudhi_rows("loky")
    except ImportError:
        pass
    try:
        import gph  # noqa: F401

        def giotto_rows(prefer):
            return lambda X: joblib.Parallel(n_jobs=2, prefer=prefer)(joblib.delayed(_giotto_one)(x) for x in X)

        # processes only: with threads the loop was 2x slower (gph holds the GIL for part of a
        # call: 14.9 against 6.9 ms per gaussian cloud, in one run of 300 here)
        out["giotto-ph loop (processes, 2)"] = giotto_rows("processes")
        out["giotto-ph loop (n_threads=2)"] = lambda X: [_giotto_threads(x) for x in X]
    except ImportError:
        pass
    try:
        from ripser import ripser

        out["ripser.py loop"] = lambda X: [ripser(x, maxdim=MAXDIM)["dgms"] for x in X]
    except ImportError:
        pass
    return out


def _gudhi_collection(X):
    from gudhi.sklearn.rips_persistence import RipsPersistence as GudhiRips

    return GudhiRips(homology_dimensions=list(range(MAXDIM + 1)), homology_coeff_field=2, n_jobs=2).fit_transform(X)


def _giotto_threads(x):
    from gph import ripser_parallel

    return ripser_parallel(x, maxdim=MAXDIM, n_threads=2)["dgms"]


def _gudhi_single(x):
    """One cloud as gudhi's RipsPersistence computes it (gudhi/sklearn/rips_persistence.py)."""
    import gudhi

    st = gudhi.RipsComplex(points=x).create_simplex_tree(max_dimension=1)
    st.collapse_edges()
    st.expansion(MAXDIM + 1)
    st.compute_persistence(homology_coeff_field=2, persistence_dim_max=True)
    return [st.persistence_intervals_in_dimension(d) for d in range(MAXDIM + 1)]


def _single_rows() -> dict:
    """The single-call case: name -> fn(x)."""
    from ..persistence import rips_persistence

    out = {"aura rips_persistence": lambda x: rips_persistence(x, maxdim=MAXDIM)}
    try:
        import gudhi  # noqa: F401

        out["gudhi (RipsComplex, collapse, expansion, persistence)"] = _gudhi_single
    except ImportError:
        pass
    try:
        from ripser import ripser

        out["ripser.py ripser"] = lambda x: ripser(x, maxdim=MAXDIM)["dgms"]
    except ImportError:
        pass
    return out


def _same(a, b) -> bool:
    return len(a) == len(b) and all(len(x) == len(y) and all(np.array_equal(u, v) for u, v in zip(x, y))
                                    for x, y in zip(a, b))


def _start_cluster(workers: int = 2):
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           host="127.0.0.1")
    return cluster, Client(cluster)


# ------------------------------------------------------------------------------- bench

def bench(cases=None, kinds=None, repeats: int = 3, show_progress: bool = True, seed: int = 0) -> BenchResult:
    """Wall time of the whole collection (median of ``repeats`` after a warm-up that also
    starts the worker pools) per implementation and case ``(N, n)``; ``same``: aura_lab's
    diagrams are identical (bit for bit) to its first row's (``RipsPersistence()``)."""
    import joblib

    cases = [tuple(c) for c in (cases or CASES)]
    kinds = list(kinds or KINDS)
    peers = _peers()
    try:
        cluster, client = _start_cluster()
        cluster_note = ""
    except ImportError as e:
        cluster = client = None
        cluster_note = f"skipped: dask.distributed is not installed ({e})"
    dims = list(range(MAXDIM + 1))

    def dask_run(X):
        with joblib.parallel_config(backend="dask"):
            return collection_persistence(X, homology_dimensions=dims)

    ours = {
        "aura RipsPersistence()": lambda X: collection_persistence(X, homology_dimensions=dims),
        "aura RipsPersistence(n_jobs=2)": lambda X: collection_persistence(X, homology_dimensions=dims, n_jobs=2),
        "aura processes (loky, 2, forced)": lambda X: _forced_processes(X),
        "aura threads (2)": lambda X: _threads(X),
        "aura LocalCluster (2 x 1)": dask_run,
    }
    rows = []
    try:
        jobs = [(clouds, N, n, name) for clouds in kinds for N, n in cases for name in [*ours, *peers]]
        data = {}
        for clouds, N, n, name in progress(jobs, desc="bench collection", enabled=show_progress):
            if (clouds, N, n) not in data:
                data = {(clouds, N, n): make_collection(N, n=n, seed=seed, kind=clouds)[0]}
            X = data[clouds, N, n]
            kind = "peer" if name in peers else "aura"
            row = {"case": f"{clouds} N={N} n={n}", "impl": name, "kind": kind, "N": N}
            if name == "aura LocalCluster (2 x 1)" and client is None:
                rows.append({**row, "note": cluster_note})
                continue
            row.update(_timed(peers.get(name) or ours[name], X, N, repeats))
            if kind == "aura" and "ms" in row:
                run = last_run()
                row["workers"] = run.workers if run.joblib_backend != "serial" else 1
                row["threads_per_task"] = run.threads_per_task
                row["chunks"] = run.chunks
                row["note"] = run.how
            elif "ms" in row:
                row["workers"] = 1 if "loop" in name and "processes" not in name else 2
            rows.append(row)
    finally:
        if client is not None:
            client.close()
            cluster.close()
    rows += _single_case(seed, repeats)
    _ratios(rows)
    ctx = {"machine": machine_info(), "repeats": repeats, "command": "aura-lab bench collection",
           "cases": [list(c) for c in cases], "kinds": kinds, "maxdim": MAXDIM, "dtype": "float64", "coeff": 2,
           "shapes": list(SHAPES), "seed": seed,
           "note": "vs_gudhi / vs_giotto = the faster row of that peer / this row (> 1: this row is faster); "
                   "vs_processes = this row / aura processes; clouds/s = N / median time; "
                   "same = identical diagrams to aura RipsPersistence(); giotto-tda not installable here "
                   "(pins scikit-learn==1.3.2)"}
    return BenchResult("collection", rows, ctx)


def _timed(fn, X, N: int, repeats: int) -> dict:
    """ms, runs, clouds/s and the result (``res``) of fn(X), or a note saying why it failed."""
    out = {}
    try:
        t = time_call(lambda: out.__setitem__("res", fn(X)), repeats=repeats, warmup=1, slow_s=600.0)
    except Exception as e:  # noqa: BLE001 - a peer that cannot run this way: say why
        return {"note": f"failed: {type(e).__name__}: {_cause(e)}"}
    return {"ms": t["ms"], "min_ms": t["min_ms"], "runs": t["runs"], "clouds/s": N / (t["ms"] * 1e-3),
            "res": out["res"]}


def _single_case(seed: int, repeats: int) -> list[dict]:
    """One call on one ``SINGLE_N``-point shape, per implementation (many repeats: ~1 ms each)."""
    x = make_collection(1, n=SINGLE_N, seed=seed)[0][0]
    rows = []
    for name, fn in _single_rows().items():
        row = {"case": f"single n={SINGLE_N}", "impl": name, "kind": "aura" if name.startswith("aura") else "peer",
               "N": 1, "workers": 1}
        row.update(_timed(fn, x, 1, max(50, 20 * repeats)))
        row.pop("res", None)
        rows.append(row)
    return rows


def _ratios(rows: list[dict]) -> None:
    """vs_gudhi, vs_giotto, vs_processes and same, per case (see the module docstring)."""
    for case in dict.fromkeys(r["case"] for r in rows):
        rs = [r for r in rows if r["case"] == case and r.get("ms")]
        first = next((r for r in rs if r["kind"] == "aura" and "res" in r), None)
        procs = next((r for r in rs if r["impl"].startswith("aura processes")), None)
        best = {p: min((r["ms"] for r in rs if r["impl"].startswith(p)), default=None) for p in ("gudhi", "giotto")}
        for r in rs:
            for p, ms in best.items():
                if ms:
                    r[f"vs_{p}"] = ms / r["ms"]
            if r["kind"] == "aura":
                if procs:
                    r["vs_processes"] = r["ms"] / procs["ms"]
                if first and "res" in r:
                    r["same"] = _same(r["res"], first["res"])
    for r in rows:
        r.pop("res", None)


def _forced_processes(X):
    from .. import collection

    saved, collection.PROCESS_MIN_S = collection.PROCESS_MIN_S, 0.0
    try:
        return collection_persistence(X, homology_dimensions=list(range(MAXDIM + 1)), n_jobs=2)
    finally:
        collection.PROCESS_MIN_S = saved


def _cause(e: BaseException) -> str:
    """The innermost message of a chained exception (what a worker raised), one line."""
    while e.__cause__ is not None:
        e = e.__cause__
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and ln.strip() != '"""']
    return (lines[-1] if lines else type(e).__name__)[:160]  # a worker's traceback: its last line


def _threads(X):
    import joblib

    with joblib.parallel_config(backend="threading"):
        return collection_persistence(X, homology_dimensions=list(range(MAXDIM + 1)), n_jobs=2)


# ------------------------------------------------------------------------------- validate

def validate(seed: int = 0, show_progress: bool = False, count: int = 24) -> list[Check]:
    """aura_lab.RipsPersistence on a small collection: joblib processes, threads and (when
    dask is installed) a LocalCluster give exactly the serial diagrams; serial against gudhi's
    RipsPersistence (bottleneck distance per diagram, <= 1e-9; equal bar counts)."""
    import joblib

    X, _ = make_collection(count, n=60, seed=seed)
    dims = list(range(MAXDIM + 1))
    serial = collection_persistence(X, homology_dimensions=dims)
    checks = []
    runs = {"processes (2)": lambda: collection_persistence(X, homology_dimensions=dims, n_jobs=2),
            "threads (2)": lambda: _threads(X)}
    try:
        cluster, client = _start_cluster()
    except ImportError:
        cluster = client = None
    try:
        if client is not None:
            def on_dask():
                with joblib.parallel_config(backend="dask"):
                    return collection_persistence(X, homology_dimensions=dims)
            runs["LocalCluster (2 x 1)"] = on_dask
        for name, fn in progress(list(runs.items()), desc="validate collection", enabled=show_progress):
            ok = _same(fn(), serial)
            checks.append(Check("collection", name, f"{count} clouds vs serial", 0.0 if ok else float("inf"),
                                0.0 if ok else float("inf"), "identical", ok))
    finally:
        if client is not None:
            client.close()
            cluster.close()
    try:
        from gudhi.sklearn.rips_persistence import RipsPersistence as GudhiRips
    except ImportError:
        return checks
    ref = GudhiRips(homology_dimensions=dims, homology_coeff_field=2).fit_transform(X)
    worst, counts_ok = _worst_bottleneck(serial, ref)
    checks.append(Check("collection", "serial", f"{count} clouds vs gudhi RipsPersistence", worst, 0.0, "bottleneck <= 1e-9",
                        counts_ok and worst <= 1e-9, "" if counts_ok else "bar counts differ"))
    return checks


# ------------------------------------------------------------------------------- panel

#: the panel's collections: label -> (N clouds, n points each), small to large
PANEL_SIZES = {f"{N} clouds x {n} points": {"N": N, "n": n} for N, n in ((60, 70), (240, 70), (1000, 50), (100, 200))}
PANEL_REFERENCE = "gudhi RipsPersistence(n_jobs=2)"
#: bottleneck distance per diagram allowed against the reference (both are exact: float64
#: distances rounded differently by the two engines at most)
PANEL_TOL = 1e-6


def _panel_calls() -> dict:
    """The panel's rows: name -> (fn(X) -> diagrams per cloud, module it needs or None)."""
    import joblib

    dims = list(range(MAXDIM + 1))

    def giotto_loop(X):
        return joblib.Parallel(n_jobs=2, prefer="processes")(joblib.delayed(_giotto_one)(x) for x in X)

    def ripser_loop(X):
        from ripser import ripser

        return [ripser(x, maxdim=MAXDIM)["dgms"] for x in X]

    return {
        "aura RipsPersistence()": (lambda X: collection_persistence(X, homology_dimensions=dims), None),
        "aura RipsPersistence(n_jobs=2)": (lambda X: collection_persistence(X, homology_dimensions=dims, n_jobs=2),
                                           None),
        PANEL_REFERENCE: (_gudhi_collection, "gudhi"),
        "giotto-ph loop (processes, 2)": (giotto_loop, "gph"),
        "ripser.py loop": (ripser_loop, "ripser"),
    }


def _finite_bars(d) -> np.ndarray:
    d = np.asarray(d, dtype=np.float64).reshape(-1, 2)
    return d[d[:, 1] > d[:, 0]]


def _worst_bottleneck(out, ref) -> tuple[float, bool]:
    """(largest bottleneck distance over clouds and dimensions, every bar count equal)."""
    from ..diagrams import bottleneck_distance

    worst, counts_ok = 0.0, len(out) == len(ref)
    for a, b in zip(out, ref):
        for da, db in zip(a, b):
            da, db = _finite_bars(da), _finite_bars(db)
            counts_ok &= len(da) == len(db)
            same = len(da) == len(db) and np.array_equal(np.sort(da, 0), np.sort(db, 0))
            worst = max(worst, 0.0 if same else bottleneck_distance(da, db))
    return worst, counts_ok


def panel_spec() -> PanelSpec:
    """The ComparisonPanel's view of a collection: aura_lab's RipsPersistence (batched, and
    with its ``n_jobs=2`` policy) against gudhi's ``RipsPersistence(n_jobs=2)`` (the reference),
    giotto-ph and ripser.py in loops, on collections of noisy shapes (maxdim 1, float64, Z/2);
    clouds/s per row. A peer that is not installed is shown disabled with the reason."""
    import importlib.util

    calls = _panel_calls()

    def status(name):
        module = calls[name][1]
        if module is None or importlib.util.find_spec(module) is not None:
            return True, ""
        return False, f"the {module} package is not installed"

    def make(size, dtype, seed):
        X, _ = make_collection(size["N"], n=size["n"], seed=seed)
        return [x.astype(dtype) for x in X]

    def check(out, ref, dtype):
        worst, counts_ok = _worst_bottleneck(out, ref)
        return worst, counts_ok and worst <= PANEL_TOL, f"same bars, bottleneck <= {PANEL_TOL:g}"

    return PanelSpec(
        name="collection", backends=list(calls), reference=PANEL_REFERENCE, sizes=PANEL_SIZES, dtypes=["float64"],
        make=make, call=lambda name, X: calls[name][0](X), check=check, status=status,
        throughput=lambda size, ms: (size["N"] / (ms * 1e-3), "clouds/s"),
        work=lambda size: size["N"] * size["n"] ** 2,
    )
