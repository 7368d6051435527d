"""``aura-lab bench distance`` and ``aura-lab validate distance``."""

from __future__ import annotations


import numpy as np

from ..distance import METRICS, op, pairwise_distances
from ..registry import explain
from .core import (BenchResult, Check, PanelSpec, add_ratios, available_backends, compare, machine_info, memory_bandwidth,
                   progress, threads, time_call)

SIZES = [(n, d) for n in (1024, 4096, 8192) for d in (3, 64)]
COLUMNS = ["case", "impl", "kind", "ms", "runs", "GB/s", "floor_ms", "GFLOP/s", "vs_numpy", "vs_best_peer"]


def _peers():
    from scipy.spatial.distance import cdist

    peers = {"scipy.cdist": lambda X: cdist(X, X)}
    try:
        import torch

        tensors = {}  # one tensor per input array, made outside the timed call

        def torch_cdist(X):
            T = tensors.setdefault(id(X), torch.from_numpy(X))
            with torch.inference_mode():
                return torch.cdist(T, T)

        peers["torch.cdist"] = torch_cdist
    except ImportError:
        pass
    return peers


def bench(sizes=None, backends=None, repeats: int = 5, seed: int = 0, show_progress: bool = True) -> BenchResult:
    """Sweep n x d (float32, X against itself) over the backends and the peers.

    Throughput: GB/s of output written for d <= 16 (write-bound), GFLOP/s (3 flops per
    coordinate pair) otherwise. ``floor_ms`` is the time to write the 4*n*n output bytes at
    the write bandwidth measured in this run.
    """
    sizes = sizes or SIZES
    bw = memory_bandwidth()
    rng = np.random.default_rng(seed)
    names = available_backends(op, backends)
    peers = _peers()
    rows = []
    variants = [*names, *(["mojo 1-thread"] if "mojo" in names else [])]  # shows the second core's share
    jobs = [(n, d, impl) for n, d in sizes for impl in [*variants, *peers]]
    cache = {}
    for n, d, impl in progress(jobs, desc="bench distance", enabled=show_progress):
        X = cache.setdefault((n, d), rng.standard_normal((n, d)).astype(np.float32))
        if impl in peers:
            fn, kind = (lambda f=peers[impl]: f(X)), "peer"
        else:
            out = np.empty((n, n), np.float32)
            fn, kind = (lambda b=impl.split()[0]: pairwise_distances(X, backend=b, out=out)), "backend"
        with threads(1 if impl == "mojo 1-thread" else None):
            t = time_call(fn, repeats=repeats)
        row = {"case": f"n={n} d={d}", "n": n, "d": d, "impl": impl, "kind": kind, **t}
        if d <= 16:
            row["GB/s"] = 4.0 * n * n / (t["ms"] * 1e-3) / 1e9
            row["floor_ms"] = 4.0 * n * n / (bw["write_GBps"] * 1e9) * 1e3
        else:
            row["GFLOP/s"] = 3.0 * n * n * d / (t["ms"] * 1e-3) / 1e9
        rows.append(row)
    add_ratios(rows, ref="numpy")
    ctx = {"machine": machine_info(), "bandwidth": bw, "repeats": repeats, "dtype": "float32",
           "command": "aura-lab bench distance"}
    return BenchResult("distance", rows, ctx)


def _cases(rng):
    """Fixed and random inputs: (name, X, Y)."""
    near = rng.standard_normal((40, 3)).astype(np.float32) * 100
    near2 = near + rng.standard_normal(near.shape).astype(np.float32) * 1e-4  # near-duplicates
    special = np.array([[0, 0, 0], [1, np.nan, 0], [np.inf, 0, 1], [1, 1, 1], [-np.inf, 2, 0], [0, 0, 0]])
    return [
        ("random 37x53 d=5", rng.standard_normal((37, 5)), rng.standard_normal((53, 5))),
        ("random 300x200 d=70", rng.standard_normal((300, 70)), rng.standard_normal((200, 70))),
        ("self 129 d=3", rng.standard_normal((129, 3)), None),
        ("near-duplicates x100 d=3", near, near2),
        ("zero rows", np.zeros((3, 4)), rng.standard_normal((5, 4))),
        ("nan/inf rows", special, special[::-1].copy()),
        ("empty 0x7", np.zeros((0, 7)), rng.standard_normal((4, 7))),
        ("strided transpose", rng.standard_normal((6, 40)).T, rng.standard_normal((9, 6))),
    ]


DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "int64": np.int64}


def tolerance(dtype) -> tuple[float, float]:
    """(rtol, atol) against scipy's float64 cdist."""
    return (1e-5, 1e-6) if np.dtype(dtype) == np.float32 else (1e-10, 1e-12)


def validate(backends=None, seed: int = 0, show_progress: bool = False) -> list[Check]:
    """Every backend against scipy.spatial.distance.cdist, all metrics and dtypes."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(seed)
    checks = []
    for name, X, Y in progress(list(_cases(rng)), desc="validate distance", enabled=show_progress):
        for dname, dt in DTYPES.items():
            if dname == "int64":
                if not np.all(np.isfinite(X)):
                    continue
                Xc, Yc = (X * 10).astype(dt), None if Y is None else (Y * 10).astype(dt)
            else:
                Xc, Yc = X.astype(dt), None if Y is None else Y.astype(dt)
            out_dtype = np.float32 if dt == np.float32 else np.float64
            rtol, atol = tolerance(out_dtype)
            for metric in METRICS:
                with np.errstate(all="ignore"):
                    ref = cdist(Xc.astype(np.float64), (Xc if Yc is None else Yc).astype(np.float64), metric)
                for b in available_backends(op, backends):
                    got = pairwise_distances(Xc, Yc, metric, backend=b)
                    ok_dtype = got.dtype == out_dtype
                    ea, er, ok = compare(got, ref, rtol=rtol, atol=atol)
                    checks.append(Check("distance", b, f"{name} {dname} {metric}", ea, er, f"rtol {rtol:g} / atol {atol:g}",
                                        ok and ok_dtype, "" if ok_dtype else f"dtype {got.dtype}"))
    return checks


def calibration(sizes=((8, 3), (64, 3), (512, 3), (2048, 3), (8, 64), (64, 64), (512, 64), (2048, 64)), seed: int = 0):
    """For ``aura-lab calibrate``: [(op name, op, [(size, {backend: call})])]."""
    rng = np.random.default_rng(seed)
    cases = []
    for n, d in sizes:
        X = rng.standard_normal((n, d)).astype(np.float32)
        out = np.empty((n, n), np.float32)
        calls = {b: (lambda b=b, X=X, out=out: pairwise_distances(X, backend=b, out=out)) for b in op.backends}
        cases.append(({"n": n, "m": n, "d": d}, calls))
    return [("distance", op, cases)]


def panel_spec() -> PanelSpec:
    """The ComparisonPanel's view of pairwise distances (X against itself)."""
    sizes = {f"n={n} d={d}": {"n": n, "m": n, "d": d} for n in (256, 1024, 2048, 4096) for d in (3, 64)}

    def make(size, dtype, seed):
        return np.random.default_rng(seed).standard_normal((size["n"], size["d"])).astype(dtype)

    def check(out, ref, dtype):
        rtol, atol = tolerance(dtype)
        ea, er, ok = compare(out, ref, rtol=rtol, atol=atol)
        return ea, ok, f"rtol {rtol:g} / atol {atol:g}"

    def throughput(size, ms):
        if size["d"] <= 16:
            return 4.0 * size["n"] * size["m"] / (ms * 1e-3) / 1e9, "GB/s"
        return 3.0 * size["n"] * size["m"] * size["d"] / (ms * 1e-3) / 1e9, "GFLOP/s"

    return PanelSpec(
        name="distance", backends=list(op.backends), reference="numpy", sizes=sizes, dtypes=["float32", "float64"],
        make=make, call=lambda b, X: pairwise_distances(X, backend=b), check=check,
        explain=lambda size: explain("distance", **size), throughput=throughput, work=op.work,
    )
