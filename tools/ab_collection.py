"""RipsPersistence(n_jobs=2) against gudhi's RipsPersistence(n_jobs=2) on one collection of noisy
shapes (the collection bench's clouds), alternating in one process, medians after a warm-up.
A quick check between runs of `aura-lab bench collection`, which stays the stored record.

    python tools/ab_collection.py N_CLOUDS N_POINTS ROUNDS     # e.g. 240 70 7
"""

import statistics
import sys
import time
import warnings

from gudhi.sklearn.rips_persistence import RipsPersistence as GudhiRips

import aura_lab
from aura_lab.harness.collection import make_collection


def main(count: int, n: int, rounds: int) -> None:
    warnings.filterwarnings("ignore")
    X, _ = make_collection(count, n, seed=0)
    calls = {"aura RipsPersistence(n_jobs=2)": lambda: aura_lab.RipsPersistence(homology_dimensions=[0, 1], n_jobs=2).fit_transform(X),
             "gudhi RipsPersistence(n_jobs=2)": lambda: GudhiRips(homology_dimensions=[0, 1], n_jobs=2).fit_transform(X)}
    for call in calls.values():
        call()  # warm-up: kernels loaded, pools started
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name, s in med.items():
        print(f"{name:34s} {s * 1e3:9.1f} ms")
    print(f"gudhi / aura = {med['gudhi RipsPersistence(n_jobs=2)'] / med['aura RipsPersistence(n_jobs=2)']:.2f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
