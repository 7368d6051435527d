"""One tool on one research-scale set, in this process: the comparison behind issue 24's targets.

    /usr/bin/time -f "peak %M KiB" python tools/bench_peers_sparse.py TOOL SET

TOOL: ours (``aura_lab.rips_persistence``, auto: the sparse engine over the radius graph), gph
(giotto-ph ``ripser_parallel``, 2 threads, no collapse), gph_collapse (the same with
``collapse_edges=True``) or ripser (ripser.py). SET: o3_4096 (maxdim 3, threshold 1.4) or
clifford (clifford_torus_50000, maxdim 2, threshold 0.15), float32 as the peers read them.
Prints the tool, the set, the wall time of the call and the bar count per dimension; run each
tool in a fresh process (``/usr/bin/time`` gives its peak RSS).
"""

import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "data" / "ph-benchmark"
SETS = {"o3_4096": ("o3_4096.txt", 3, 1.4), "clifford": ("clifford_torus_50000.points.txt", 2, 0.15)}


def run(tool: str, X: np.ndarray, maxdim: int, thr: float) -> list:
    if tool == "ours":
        import aura_lab

        return aura_lab.rips_persistence(X, maxdim=maxdim, threshold=thr, progress=False)
    if tool in ("gph", "gph_collapse"):
        from gph import ripser_parallel

        return ripser_parallel(X, maxdim=maxdim, thresh=thr, n_threads=2, collapse_edges=tool == "gph_collapse")["dgms"]
    if tool == "ripser":
        import ripser

        return ripser.ripser(X, maxdim=maxdim, thresh=thr)["dgms"]
    raise SystemExit(f"unknown tool {tool!r}: ours, gph, gph_collapse or ripser")


if __name__ == "__main__":
    tool, name = sys.argv[1], sys.argv[2]
    path, maxdim, thr = SETS[name]
    X = np.loadtxt(DATA / path).astype(np.float32)
    t0 = time.perf_counter()
    dgms = run(tool, X, maxdim, thr)
    print(tool, name, f"{time.perf_counter() - t0:.2f} s", [len(d) for d in dgms], flush=True)
