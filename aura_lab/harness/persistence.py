"""``aura-lab bench persistence`` and ``aura-lab validate persistence``.

Standard sets (the Ripser benchmark, copied into ``data/ph-benchmark/`` with attribution):
sphere3 (dim 2), dragon (dim 1), o3_1024 (dim 3, threshold 1.8), fract-r (distance matrix,
dim 2), random16 (dim 7). Research-scale sets (``LARGE_SETS``, the sparse engine's; minutes
per set with every peer): o3_4096 (dim 3, threshold 1.4), clifford (clifford_torus_50000,
dim 2, threshold 0.15) and r3_200k (200 000 uniform points in the unit cube, seed 0, dim 1,
threshold 0.05). All are run in float32, as ripser and giotto-ph compute.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..diagrams import bottleneck_distance
from ..persistence import last_stats, op, rips_persistence
from ..persistence.collapse import describe as describe_collapse
from ..registry import explain
from .core import BenchResult, Check, PanelSpec, machine_info, peak_rss, progress, run_isolated, time_call

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "ph-benchmark"

#: name -> file, input kind, rips_persistence arguments, published bar counts per dimension
STANDARD_SETS = {
    "sphere3": ("sphere_3_192_points.dat", "points", {"maxdim": 2}, [192, 53, 1]),
    "dragon": ("dragon_vrip.ply.txt_2000_.txt", "points", {"maxdim": 1}, [2000, 576]),
    "o3_1024": ("o3_1024.txt", "points", {"maxdim": 3, "threshold": 1.8}, [1024, 576, 180, 7]),
    "fract-r": ("fractal_9_5_2_random_edge_list.txt_0.19795_distmat.txt", "matrix", {"maxdim": 2, "distance_matrix": True},
                [512, 438, 659]),
    "random16": ("random_point_cloud_50_16_.txt", "points", {"maxdim": 7}, [50, 39, 16, 5, 3, 0, 0, 0]),
}

#: research-scale sets: name -> (file, or None for a generated cloud, rips_persistence arguments,
#: bar counts per dimension: published (o3_4096), giotto-ph's (clifford), or None (r3_200k:
#: the rows' ``bars`` column compares the tools)
LARGE_SETS = {
    "o3_4096": ("o3_4096.txt", {"maxdim": 3, "threshold": 1.4}, [4096, 2466, 811, 33]),
    "clifford": ("clifford_torus_50000.points.txt", {"maxdim": 2, "threshold": 0.15}, [50000, 14006, 136]),
    "r3_200k": (None, {"maxdim": 1, "threshold": 0.05}, None),
}
#: the peers of the research-scale sets (each in its own process; one that cannot hold a set is
#: reported as such: killed, out of memory, or stopped at the bench's ``timeout_s``)
LARGE_PEERS = ("ripser.py", "giotto-ph", "giotto-ph+collapse", "gudhi RipsPersistence")

#: gudhi (edge collapse + expansion) on the standard sets: where it does not run, and why
#: (measured on the 2-core development VM). It finishes on o3_1024 (0.1 s), random16 (0.2 s)
#: and dragon (25 s): edge collapse shrinks those complexes enormously.
GUDHI_SKIP = {
    "sphere3": "not run: gudhi took 130 s and 13.5 GB peak RSS here (the dense complex barely collapses)",
    "fract-r": "not run: gudhi exhausted an 8 GB address-space limit after 73 s here",
}
#: gudhi in `validate` (fast ones only)
GUDHI_VALIDATE = ("o3_1024", "random16")

#: bottleneck tolerance against ripser.py on the standard sets, and against gudhi on random clouds
TOL_RIPSER = 1e-5
TOL_GUDHI = 1e-6

COLUMNS = ["case", "impl", "ms", "runs", "peak_MiB", "bars", "vs_ripser.py", "vs_giotto-ph", "vs_giotto-ph+collapse",
           "vs_gudhi RipsPersistence", "peak_vs_min_peer", "auto_vs_off", "vs_diagrams", "vs_ripser.py_cocycles",
           "collapse", "note"]

#: the representative rows: the mojo engine with cycles and cocycles, ripser.py with cocycles
REPS = "mojo cycles+cocycles"
RIPSER_COCYCLES = "ripser.py cocycles"
#: our rows: name -> rips_persistence arguments on the mojo backend: edge collapse as auto
#: decides (the default), off and on, and the representatives (standard sets only)
AUTO, OFF = "mojo", "mojo collapse off"
OURS = {AUTO: {}, OFF: {"collapse_edges": False}, "mojo collapse on": {"collapse_edges": True},
        REPS: {"return_cycles": True, "return_cocycles": True}}


def load_set(name: str, dtype=np.float32) -> tuple[np.ndarray, dict, list[int] | None]:
    """(data, rips_persistence keyword arguments, expected bar counts or None) of a standard or
    research-scale set."""
    if name not in LARGE_SETS:
        return load_standard_set(name, dtype)
    fname, kw, counts = LARGE_SETS[name]
    if fname is None:
        X = np.random.default_rng(0).random((200_000, 3)).astype(dtype)
    else:
        path = DATA_DIR / fname
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing (the benchmark data ships in the repository's data/ folder)")
        X = np.loadtxt(path, dtype=np.float64).astype(dtype)
    return X, dict(kw), None if counts is None else list(counts)


def load_standard_set(name: str, dtype=np.float32) -> tuple[np.ndarray, dict, list[int]]:
    """(data, rips_persistence keyword arguments, published bar counts) of one standard set."""
    if name not in STANDARD_SETS:
        raise ValueError(f"name: unknown standard set {name!r}; valid: {', '.join(STANDARD_SETS)}")
    fname, _, kw, counts = STANDARD_SETS[name]
    path = DATA_DIR / fname
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (the benchmark data ships in the repository's data/ folder)")
    return np.loadtxt(path, dtype=np.float64).astype(dtype), dict(kw), list(counts)


# ------------------------------------------------------------------------------- peers

def ripser_dgms(X, kw, do_cocycles: bool = False):
    """ripser.py's diagrams of ``X`` with ``rips_persistence`` keyword arguments ``kw`` (and
    with ``do_cocycles`` its cocycles computed too, then dropped)."""
    import ripser

    return ripser.ripser(X, maxdim=kw["maxdim"], thresh=kw.get("threshold", np.inf),
                         distance_matrix=kw.get("distance_matrix", False), do_cocycles=do_cocycles)["dgms"]


def _giotto(X, kw, n_threads=2):
    from gph import ripser_parallel

    return ripser_parallel(X, maxdim=kw["maxdim"], thresh=kw.get("threshold", np.inf),
                           metric="precomputed" if kw.get("distance_matrix") else "euclidean", n_threads=n_threads)["dgms"]


def _giotto_collapse(X, kw):
    from gph import ripser_parallel

    return ripser_parallel(X, maxdim=kw["maxdim"], thresh=kw.get("threshold", np.inf), n_threads=2, collapse_edges=True,
                           metric="precomputed" if kw.get("distance_matrix") else "euclidean")["dgms"]


def _gudhi_rips_persistence(X, kw):
    """gudhi's scikit-learn ``RipsPersistence`` as a user calls it (kd-tree radius graph for a
    finite threshold, its Ripser fork, one edge-collapse pass from maxdim 2 on), over Z/2."""
    from gudhi.sklearn.rips_persistence import RipsPersistence

    rp = RipsPersistence(homology_dimensions=list(range(kw["maxdim"] + 1)), threshold=kw.get("threshold", np.inf),
                         homology_coeff_field=2,
                         input_type="full distance matrix" if kw.get("distance_matrix") else "point cloud")
    return rp.fit_transform([X])[0]


def _peers() -> dict:
    out = {}
    try:
        import ripser  # noqa: F401

        out["ripser.py"] = ripser_dgms
        out[RIPSER_COCYCLES] = lambda X, kw: ripser_dgms(X, kw, do_cocycles=True)
    except ImportError:
        pass
    try:
        import gph  # noqa: F401

        out["giotto-ph"] = _giotto
        out["giotto-ph+collapse"] = _giotto_collapse
    except ImportError:
        pass
    try:
        import gudhi.sklearn.rips_persistence  # noqa: F401

        out["gudhi RipsPersistence"] = _gudhi_rips_persistence
    except ImportError:
        pass
    return out


def _set_peers(name: str) -> list[str]:
    """The peers benched on one set: ``LARGE_PEERS``, and on the standard sets ripser.py with
    cocycles too (gudhi's persistence is also a backend row there)."""
    wanted = LARGE_PEERS if name in LARGE_SETS else (*LARGE_PEERS, RIPSER_COCYCLES)
    return [p for p in wanted if p in _peers()]


def _counts(dgms) -> list[int]:
    return [int(np.sum(np.asarray(d)[:, 1] > np.asarray(d)[:, 0])) if len(d) else 0 for d in dgms]


def _nonzero(d) -> np.ndarray:
    d = np.asarray(d, np.float64).reshape(-1, 2)
    return d[d[:, 1] > d[:, 0]]


def _bottlenecks(a, b) -> list[float]:
    return [bottleneck_distance(_nonzero(x), _nonzero(y)) for x, y in zip(a, b)]


# ------------------------------------------------------------------------------- bench

def _impl_fn(impl: str, X, kw):
    peers = _peers()
    if impl in peers:
        return lambda: peers[impl](X, kw)
    if impl in OURS:
        fn = lambda: rips_persistence(X, backend="mojo", progress=False, **OURS[impl], **kw)  # noqa: E731
        return (lambda: fn().dgms) if impl == REPS else fn
    return lambda: rips_persistence(X, backend=impl, progress=False, **kw)


def measure(name: str, impl: str, repeats: int = 3, slow_s: float = 5.0) -> dict:
    """Time and peak memory of one implementation on one set, in this process (bench runs it
    in a fresh child process per pair so that no earlier run's memory is counted): a warm-up
    on the set's first points with its arguments (``warm_input``) loads libraries, kernels and
    the code paths of the call; the first real call gives the peak memory it
    added; then the median of ``repeats`` calls (or that first call alone when it took longer
    than ``slow_s``)."""
    X, kw, counts = load_set(name)
    _impl_fn(impl, warm_input(X, kw), kw)()
    fn = _impl_fn(impl, X, kw)
    t0 = time.perf_counter()
    dgms, peak = peak_rss(fn)
    first = time.perf_counter() - t0
    if first > slow_s:  # slow peers: the first call is the measurement
        t = {"ms": first * 1e3, "min_ms": first * 1e3, "runs": 1}
    else:
        t = time_call(fn, repeats=repeats, warmup=1, slow_s=slow_s)
    got = _counts(dgms)
    ok = None if counts is None else got == counts
    row = dict(ms=t["ms"], min_ms=t["min_ms"], runs=t["runs"], peak_MiB=peak, bars=str(got), counts_ok=ok,
               note="" if ok in (None, True) else f"bar counts differ from the expected {counts}")
    if impl in OURS and last_stats():
        st = last_stats()
        row.update(engine=st["engine"], columns=sum(st["columns"]), apparent=sum(st["apparent"]),
                   emergent=sum(st["emergent"]))
        if st.get("collapse"):
            row["collapse"] = describe_collapse(st["collapse"])
    if impl == AUTO:
        ratio, pairs, same = auto_vs_off(fn, _impl_fn(OFF, X, kw), work=work_done)
        row.update(auto_vs_off=ratio, auto_vs_off_pairs=pairs, auto_as_off=same)
    return row


def work_done() -> tuple | None:
    """What the last mojo call computed, from ``last_stats()``: its engine, whether it
    collapsed edges, and its columns, apparent and emergent pairs per dimension (two calls
    with equal values ran the same kernels on the same complex)."""
    st = last_stats()
    if not st:
        return None
    return (st["engine"], bool(st.get("collapse")), *(tuple(st[k]) for k in ("columns", "apparent", "emergent")))


#: the auto/off pairs behind ``auto_vs_off``: at least MIN_PAIRS, more while the pairs have
#: taken less than PAIRS_BUDGET_S (a ~40 ms call varied by +-10 % over 5 pairs), at most MAX_PAIRS
MIN_PAIRS, MAX_PAIRS, PAIRS_BUDGET_S = 3, 25, 3.0
#: the warm-up call's points (a sample of the set, run with the set's own arguments)
WARM_N = 12


def warm_input(X: np.ndarray, kw: dict) -> np.ndarray:
    """The first ``WARM_N`` points of ``X`` (of a distance matrix: their block): the warm-up
    call runs the measured call's arguments on it, so that the code the measured call runs
    (its engine, edge collapse, the dense or matrix input path) is loaded and touched before
    its peak memory is read (a warm-up on another path left first-use pages in the peak of
    the smallest sets: random16 read 0.95 and 1.33 MiB in two runs)."""
    k = min(len(X), WARM_N)
    return np.ascontiguousarray(X[:k, :k] if kw.get("distance_matrix") else X[:k])


def auto_vs_off(auto: Callable[[], object], off: Callable[[], object], min_pairs: int = MIN_PAIRS,
                max_pairs: int = MAX_PAIRS, budget_s: float = PAIRS_BUDGET_S,
                work: Callable[[], object] = lambda: None) -> tuple[float, int, bool]:
    """(median time of ``auto`` / median time of ``off``, pairs, same), the two calls
    alternating in this process (auto-off, off-auto, ...; ``min_pairs`` of each, more until the
    pairs have taken ``budget_s``, at most ``max_pairs``), after one warm-up call of ``off``
    (``auto`` ran already): the two rows of the bench run in separate processes, and on a call
    that costs the same either way (auto resolving to off) the spread between two processes
    exceeds the 5 % this ratio is held to. ``same``: every call of ``auto`` did the work of
    every call of ``off`` (``work()`` read after each call: equal and not None, and no edge
    collapse), i.e. auto resolved to off and the ratio compares one computation with itself.
    On a call of ~14 s (r3_200k) that spread is +-5-10 % per call in one process too (ten
    alternating identical calls: 13.3-15.9 s), so a few pairs cannot hold such a call to 5 %."""
    off()
    times: dict[str, list[float]] = {"auto": [], "off": []}
    done: dict[str, set] = {"auto": set(), "off": set()}
    i, spent = 0, 0.0
    while i < max_pairs and (i < min_pairs or spent < budget_s):
        for key in ("auto", "off") if i % 2 == 0 else ("off", "auto"):
            t0 = time.perf_counter()
            (auto if key == "auto" else off)()
            times[key].append(time.perf_counter() - t0)
            spent += times[key][-1]
            done[key].add(work())
        i += 1
    w = done["off"]
    same = done["auto"] == w and len(w) == 1 and None not in w and not next(iter(w))[1]
    return statistics.median(times["auto"]) / statistics.median(times["off"]), i, same


#: the peers every row is compared with (time: ``vs_<peer>``, peer time / this row's)
RATIO_PEERS = ("ripser.py", "giotto-ph", "giotto-ph+collapse", "gudhi RipsPersistence")


def _jobs(sets: list[str], impls: list[str], backends) -> list[tuple[str, str]]:
    jobs = []
    for name in sets:
        ours = [i for i in impls if i != REPS or name not in LARGE_SETS]  # representatives: standard sets
        gudhi = [] if name in LARGE_SETS or (backends is not None and "gudhi" not in backends) else ["gudhi"]
        jobs += [(name, i) for i in [*ours, *_set_peers(name), *gudhi]]
    return jobs


def _add_ratios(rows: list[dict], sets: list[str]) -> None:
    """Per set: each row's ``vs_<peer>`` time ratios; the mojo row's ``peak_vs_min_peer`` (its
    peak memory / the smallest finished peer's)."""
    for name in sets:
        rs = {r["impl"]: r for r in rows if r["case"] == name and r.get("ms")}
        for r in rs.values():
            for peer in RATIO_PEERS:
                if peer in rs and r["impl"] not in (RIPSER_COCYCLES, peer):
                    r[f"vs_{peer}"] = rs[peer]["ms"] / r["ms"]
        peaks = [r["peak_MiB"] for r in rs.values() if r["kind"] == "peer" and r["impl"] != RIPSER_COCYCLES
                 and r.get("peak_MiB")]
        for ours in OURS:
            if ours in rs and peaks and rs[ours].get("peak_MiB") is not None:
                rs[ours]["peak_vs_min_peer"] = rs[ours]["peak_MiB"] / min(peaks)
        if REPS in rs:
            plain = OFF  # representatives never collapse under auto: the same complex
            if plain in rs:
                rs[REPS]["vs_diagrams"] = rs[REPS]["ms"] / rs[plain]["ms"]
            if RIPSER_COCYCLES in rs:
                rs[REPS]["vs_ripser.py_cocycles"] = rs[RIPSER_COCYCLES]["ms"] / rs[REPS]["ms"]


def bench(sets=None, backends=None, repeats: int = 3, show_progress: bool = True, slow_s: float = 5.0,
          isolate: bool = True, timeout_s: float = 600.0) -> BenchResult:
    """Wall time (median after a warm-up; a single run when the first call exceeds ``slow_s``)
    and the peak memory the first call added, per set (default: the standard sets, then the
    research-scale ``LARGE_SETS``), for the mojo engine (``OURS``: edge collapse auto, off and
    on) and the peers ``LARGE_PEERS`` (ripser.py, giotto-ph with ``n_threads=2`` with and
    without collapse, gudhi's ``RipsPersistence`` over Z/2), on the standard sets also the
    gudhi backend where it finishes (see ``GUDHI_SKIP``). Each pair runs in a fresh process
    (``isolate``); one that raises, is killed (out of memory) or runs past ``timeout_s`` is
    reported as such in its row's note. Ratios are peer time / this row's time, same run. The
    representative rows (standard sets): mojo with cycles and cocycles (``vs_diagrams``: its
    time / mojo's diagrams alone without collapse) and ripser.py with ``do_cocycles=True``
    (``vs_ripser.py_cocycles`` on the mojo row: ripser.py's time / ours). The mojo row's
    ``auto_vs_off`` is collapse auto's time / collapse off's, the two alternating in that row's
    process (``auto_vs_off``; ``auto_vs_off_pairs`` of each; ``auto_as_off``: auto resolved to
    off, both calls did the same work)."""
    known = [*STANDARD_SETS, *LARGE_SETS]
    sets = list(sets or known)
    if unknown := [s for s in sets if s not in known]:
        raise ValueError(f"sets: unknown set(s) {', '.join(map(repr, unknown))}; valid: {', '.join(known)}")
    impls = list(OURS) if backends is None or "mojo" in backends else []
    avail = {b: op.status(b)[0] for b in op.backends}
    peers = _peers()
    rows = []
    for name, impl in progress(_jobs(sets, impls, backends), desc="bench persistence", enabled=show_progress):
        row = {"case": name, "impl": impl, "kind": "peer" if impl in peers else "backend"}
        if impl == "gudhi" and name in GUDHI_SKIP:
            rows.append({**row, "note": GUDHI_SKIP[name]})
            continue
        if impl not in peers and not avail.get("mojo" if impl in OURS else impl, False):
            rows.append({**row, "note": f"skipped: {impl} unavailable"})
            continue
        if isolate:
            ok, got = run_isolated(measure, (name, impl, repeats, slow_s), timeout_s)
            row.update(got if ok else {"note": f"did not finish: {got}"})
        else:
            row.update(measure(name, impl, repeats, slow_s))
        rows.append(row)
    _add_ratios(rows, sets)
    ctx = {"machine": machine_info(), "repeats": repeats, "dtype": "float32", "command": "aura-lab bench persistence",
           "threads": {"mojo": "AURA_NUM_THREADS or every core", "giotto-ph": 2, "ripser.py": 1,
                       "gudhi RipsPersistence": 1},
           "timeout_s": timeout_s,
           "note": "vs_X = X's time / this row's time (> 1: this row is faster); peak_MiB = resident memory the "
                   "first call added over the process after imports and a warm-up (fresh process per row); "
                   "peak_vs_min_peer = the mojo row's peak_MiB / the smallest peer's; auto_vs_off = collapse auto's "
                   "time / collapse off's, alternating in the mojo row's process (auto_as_off: auto resolved to "
                   "off and both did the same work)"}
    return BenchResult("persistence", rows, ctx)


# ------------------------------------------------------------------------------- validate

def _random_cases(rng):
    """(name, X, kwargs): random clouds with duplicates and exact ties, the edge cases."""
    grid = rng.integers(0, 3, (40, 3)).astype(np.float64)  # many exact ties and duplicates
    dup = rng.standard_normal((45, 4))
    dup[:15] = dup[30:]
    line = np.concatenate([np.sort(rng.uniform(0, 10, 12)), [3.0, 3.0]])[:, None] * np.array([[1.0, 2.0]])
    return [
        ("random n=60 d=3 dim 2", rng.standard_normal((60, 3)), {"maxdim": 2}),
        ("random n=50 d=5 dim 2 float32", rng.standard_normal((50, 5)).astype(np.float32), {"maxdim": 2}),
        ("random n=60 d=1 dim 1", rng.standard_normal((60, 1)), {"maxdim": 1}),
        ("grid ties n=40 d=3 dim 2", grid, {"maxdim": 2}),
        ("duplicates n=45 d=4 dim 2", dup, {"maxdim": 2}),
        ("random n=40 d=2 dim 2 Z/3", rng.standard_normal((40, 2)), {"maxdim": 2, "coeff": 3}),
        ("random n=40 d=3 dim 2 threshold 1", rng.standard_normal((40, 3)), {"maxdim": 2, "threshold": 1.0}),
        ("collinear n=14", line, {"maxdim": 1}),
        ("all equal n=7", np.ones((7, 3)), {"maxdim": 2}),
        ("n=2", rng.standard_normal((2, 3)), {"maxdim": 1}),
        ("n=1", rng.standard_normal((1, 3)), {"maxdim": 1}),
        ("n=0", np.zeros((0, 3)), {"maxdim": 1}),
    ]


def validate(backends=None, sets=None, seed: int = 0, show_progress: bool = False) -> list[Check]:
    """mojo on the standard sets (published bar counts; bottleneck <= 1e-5 against ripser.py
    per dimension), gudhi on o3_1024 and random16 likewise, and mojo against gudhi on random
    clouds (bottleneck <= 1e-6 per dimension, equal bar counts)."""
    wanted = [b for b in op.backends if backends is None or b in backends]
    avail = {b: op.status(b)[0] for b in op.backends}
    checks: list[Check] = []
    peers = _peers()
    for name in progress(list(sets or STANDARD_SETS), desc="validate persistence", enabled=show_progress):
        X, kw, counts = load_standard_set(name)
        ref = peers["ripser.py"](X, kw) if "ripser.py" in peers else None
        for b in wanted:
            if not avail.get(b) or (b == "gudhi" and name not in GUDHI_VALIDATE):
                continue
            t0 = time.perf_counter()
            got = rips_persistence(X, backend=b, **kw)
            secs = time.perf_counter() - t0
            c = _counts(got)
            errs = _bottlenecks(got, ref) if ref is not None else [float("nan")]
            worst = max(errs)
            diam = float(np.max([np.max(d[np.isfinite(d)]) for d in got if np.isfinite(d).any()]))
            ok = c == counts and (ref is None or worst <= TOL_RIPSER)
            checks.append(Check("persistence", b, f"{name} (dim {kw['maxdim']})", worst, worst / diam,
                                f"bars {counts}; bottleneck vs ripser.py <= {TOL_RIPSER:g}", ok,
                                f"bars {c} in {secs:.2f} s" + ("" if ref is not None else "; ripser.py missing")))
    if "mojo" in wanted and avail.get("mojo") and avail.get("gudhi"):
        rng = np.random.default_rng(seed)
        for name, X, kw in _random_cases(rng):
            ref = rips_persistence(X, backend="gudhi", **kw)
            got = rips_persistence(X, backend="mojo", **kw)
            errs = _bottlenecks(got, ref)
            worst = max(errs)
            ok = _counts(got) == _counts(ref) and worst <= TOL_GUDHI
            checks.append(Check("persistence", "mojo", name, worst, worst, f"gudhi: same bars, bottleneck <= {TOL_GUDHI:g}",
                                ok, f"bars {_counts(got)} vs gudhi {_counts(ref)}"))
    return checks


# ------------------------------------------------------------------------------- panel

def panel_spec() -> PanelSpec:
    """The ComparisonPanel's view: random point clouds, mojo against the gudhi reference."""
    sizes = {f"n={n} d={d} dim {k}": {"n": n, "d": d, "maxdim": k} for n, d, k in ((40, 3, 2), (100, 3, 1), (60, 4, 2))}
    def make(size, dtype, seed):
        return np.random.default_rng(seed).standard_normal((size["n"], size["d"])).astype(dtype), size["maxdim"]

    def call(backend, inputs):
        X, maxdim = inputs
        return rips_persistence(X, maxdim=maxdim, backend=backend)

    def check(out, ref, dtype):
        errs = _bottlenecks(out, ref)
        worst = max(errs)
        return worst, _counts(out) == _counts(ref) and worst <= TOL_GUDHI, f"same bars, bottleneck <= {TOL_GUDHI:g}"

    return PanelSpec(
        name="persistence", backends=list(op.backends), reference="gudhi", sizes=sizes, dtypes=["float32", "float64"],
        make=make, call=call, check=check, work=op.work,
        explain=lambda size: explain("persistence", **size),
    )
