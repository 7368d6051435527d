"""Time the mojo persistence engine, dense vs sparse mode, on one set in this process.

    python tools/bench_sparse_engine.py SET ENGINE [REPEATS]

SET: a standard set of ``aura_lab.harness.persistence`` (sphere3, dragon, o3_1024, fract-r,
random16), ``o3_4096`` (maxdim 3, threshold 1.4), ``clifford`` (data/ph-benchmark's
clifford_torus_50000, maxdim 2, threshold 0.15) or ``clifford-synthetic`` (50 000 points,
angles uniform, seed 0, (cos a, sin a, cos b, sin b) / sqrt 2; same arguments). ENGINE:
dense, sparse or auto (``persistence.kernels._ENGINE``, ``persistence._ENGINE`` in a build from
before the package split; ignored by a build without the switch).
Prints one JSON line: median and min wall seconds, median CPU seconds (process_time: steadier
than wall time on a busy machine; set AURA_NUM_THREADS=1 to compare single-thread work), all
wall seconds, bar counts, the engine's peak bytes, and
this process's peak RSS (resource.getrusage: run each set in a fresh process).
"""

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

import aura_lab
from aura_lab import persistence as P
from aura_lab.harness.persistence import DATA_DIR, STANDARD_SETS, load_standard_set


def load(name: str):
    if name in STANDARD_SETS:
        X, kw, _ = load_standard_set(name)
        return X, kw
    if name == "o3_4096":
        return np.loadtxt(DATA_DIR / "o3_4096.txt").astype(np.float32), {"maxdim": 3, "threshold": 1.4}
    if name == "clifford":
        return np.loadtxt(DATA_DIR / "clifford_torus_50000.points.txt").astype(np.float32), {"maxdim": 2, "threshold": 0.15}
    if name == "clifford-synthetic":
        a, b = np.random.default_rng(0).uniform(0, 2 * np.pi, (2, 50000))
        X = np.stack([np.cos(a), np.sin(a), np.cos(b), np.sin(b)], axis=1) / np.sqrt(2)
        return X.astype(np.float32), {"maxdim": 2, "threshold": 0.15}
    raise SystemExit(f"unknown set {name!r}")


def main(argv) -> int:
    name, engine = argv[0], argv[1]
    repeats = int(argv[2]) if len(argv) > 2 else 3
    X, kw = load(name)
    switch = getattr(P, "kernels", P)  # the module that reads _ENGINE (the package's kernels, or the old module)
    if hasattr(switch, "_ENGINE"):
        switch._ENGINE = engine
    seconds, cpu, counts = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        dgms = P.rips_persistence(X, backend="mojo", progress=False, **kw)
        seconds.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        counts = [len(d) for d in dgms]
    st = P.last_stats()
    print(json.dumps({"set": name, "engine": st.get("engine", "dense (old build)"), "median_s": float(np.median(seconds)), "min_s": min(seconds),
                      "median_cpu_s": float(np.median(cpu)),
                      "seconds": [round(s, 3) for s in seconds], "bars": counts, "engine_peak_MiB": st["peak_bytes"] / 2**20,
                      "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "stage_s": [round(s, 3) for s in st["seconds"]], "build": str(Path(aura_lab.__file__).parents[1])}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
