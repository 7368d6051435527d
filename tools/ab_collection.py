"""RipsPersistence(n_jobs=2) against its peers on one collection of noisy shapes (the
collection bench's clouds, maxdim 1), alternating in one process, medians after a warm-up (on 16 of the clouds).
A quick check between runs of `aura-lab bench collection`, which stays the stored record.

    python tools/ab_collection.py N_CLOUDS N_POINTS ROUNDS [ROW,ROW,...]   # e.g. 240 70 7

Rows (default aura,gudhi): ``aura`` aura_lab RipsPersistence(n_jobs=2) as its policy runs it,
``aura-processes`` the same forced onto loky worker processes (``PROCESS_MIN_S = 0``),
``aura-in-process`` forced to one batched call in this process on 2 threads, ``gudhi``
gudhi's RipsPersistence(n_jobs=2), ``giotto`` giotto-ph in a loop on 2 loky processes (the
bench's faster giotto row). Prints each row's median and every other row's time over the
first row's (> 1: the first row is faster), with the load average, and the CPU time of this
process (the work of rows that run here -- aura's batch, gudhi's threads -- not of worker
processes).
"""

import os
import statistics
import sys
import time
import warnings

import aura_lab
from aura_lab import collection
from aura_lab.harness.collection import _gudhi_collection, _peers, make_collection


def _aura(X):
    out = aura_lab.RipsPersistence(homology_dimensions=[0, 1], n_jobs=2).fit_transform(X)
    _how[:] = [collection.last_run().how]
    return out


_how: list[str] = []


def _aura_forced(process_min_s: float):
    def run(X):
        saved, collection.PROCESS_MIN_S = collection.PROCESS_MIN_S, process_min_s
        try:
            return aura_lab.RipsPersistence(homology_dimensions=[0, 1], n_jobs=2).fit_transform(X)
        finally:
            collection.PROCESS_MIN_S = saved
    return run


ROWS = {
    "aura": _aura,
    "aura-processes": _aura_forced(0.0),
    "aura-in-process": _aura_forced(float("inf")),
    "gudhi": _gudhi_collection,
    "giotto": lambda X: _peers()["giotto-ph loop (processes, 2)"](X),
}


def main(count: int, n: int, rounds: int, rows: list[str]) -> None:
    warnings.filterwarnings("ignore")
    X, _ = make_collection(count, n, seed=0)
    for name in rows:
        ROWS[name](X[:16])  # warm-up: kernels loaded, pools started
    times = {name: [] for name in rows}
    cpu = {name: [] for name in rows}
    loads = [os.getloadavg()[0]]
    for _ in range(rounds):
        for name in rows:
            t0, c0 = time.perf_counter(), time.process_time()
            ROWS[name](X)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        loads.append(os.getloadavg()[0])
    med = {name: statistics.median(ts) for name, ts in times.items()}
    mcpu = {name: statistics.median(ts) for name, ts in cpu.items()}
    for name, s in med.items():
        print(f"{name:16s} {s * 1e3:9.1f} ms   {name} / {rows[0]} = {s / med[rows[0]]:.2f}   "
              f"CPU of this process {mcpu[name]:.2f} s   each round {', '.join(f'{t:.1f}' for t in times[name])} s")
    print(f"load average (1 min) over the run: {min(loads):.1f}-{max(loads):.1f}")
    if _how:
        print(f"aura's policy: {_how[0]}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]), (sys.argv[4] if len(sys.argv) > 4 else "aura,gudhi").split(","))
