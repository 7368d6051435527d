"""Edge collapse: rips_persistence with collapse on vs off vs gudhi, medians after a warm-up, one process.

    PYTHONPATH=$PWD python tools/bench_collapse.py [--repeat 3] [--sets o3_1024,random16,o3_4096]

gudhi: ``gudhi.sklearn.rips_persistence.RipsPersistence(homology_dimensions=range(maxdim + 1),
threshold=t, homology_coeff_field=2)`` on the same float32 cloud (its own collapse, num_collapses="auto").
Ratios are of medians from this run only (the VM is shared: compare nothing across runs).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import aura_lab
from aura_lab import persistence as P
from aura_lab.harness.persistence import load_set

CASES = {"o3_1024": ("standard", {"maxdim": 3, "threshold": 1.8}),
         "random16": ("standard", {"maxdim": 7}),
         "o3_4096": ("large", {"maxdim": 3, "threshold": 1.4})}


def _time(fn, repeat):
    fn()  # warm-up
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sets", default=",".join(CASES))
    args = ap.parse_args()
    from gudhi.sklearn.rips_persistence import RipsPersistence

    print(f"aura_lab {aura_lab.__file__}; repeat {args.repeat} after 1 warm-up; medians in s")
    print(f"{'set':10} {'on':>8} {'off':>8} {'gudhi':>8} {'off/on':>7} {'gudhi/on':>8}  collapse")
    for name in args.sets.split(","):
        kind, kw = CASES[name]
        X = load_set(name)[0]
        on_s, on = _time(lambda: P.rips_persistence(X, collapse_edges=True, progress=False, **kw), args.repeat)
        c = P.last_stats()["collapse"]
        off_s, off = _time(lambda: P.rips_persistence(X, collapse_edges=False, progress=False, **kw), args.repeat)
        rp = RipsPersistence(homology_dimensions=list(range(kw["maxdim"] + 1)), threshold=kw.get("threshold", np.inf),
                             homology_coeff_field=2)
        g_s, _ = _time(lambda: rp.fit_transform([X]), args.repeat)
        assert all(np.array_equal(a, b) for a, b in zip(on, off)), f"{name}: diagrams differ with collapse"
        print(f"{name:10} {on_s:8.3f} {off_s:8.3f} {g_s:8.3f} {off_s / on_s:7.2f} {g_s / on_s:8.2f}  "
              f"{c['edges_before']} -> {c['edges_after']} in {c['seconds']:.3f} s")


if __name__ == "__main__":
    main()
