"""Research-scale sets against the peers, each tool in a fresh process, in one run: the
comparison behind issue 24's targets.

    python tools/bench_peers_sparse.py [SET ...] [--tools ours,gph,gph_collapse,ripser] [--timeout S]

SET: o3_4096 (maxdim 3, threshold 1.4), clifford (clifford_torus_50000, maxdim 2,
threshold 0.15), r3_200k (200 000 uniform points in [0, 1]^3, ``np.random.default_rng(0)``,
maxdim 1, threshold 0.05); default all three. Tools: ours (``aura_lab.rips_persistence``,
auto: the sparse engine over the radius graph), gph (giotto-ph ``ripser_parallel``, 2
threads, no collapse), gph_collapse (the same with ``collapse_edges=True``), ripser
(ripser.py), gudhi (``gudhi.sklearn.rips_persistence.RipsPersistence``: cKDTree, no collapse,
its Ripser fork, Z/2). Input float32, as the peers read it. Each tool runs in its own child process (``--child TOOL SET``), which reports the
wall time of the call, the bar count per dimension and its peak RSS; the parent prints one row
per tool with ours / tool ratios of time and peak memory (a tool past ``--timeout`` is reported
as such).
"""

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "data" / "ph-benchmark"
SETS = {"o3_4096": ("o3_4096.txt", 3, 1.4), "clifford": ("clifford_torus_50000.points.txt", 2, 0.15),
        "r3_200k": (None, 1, 0.05)}
TOOLS = ("ours", "gph", "gph_collapse", "ripser", "gudhi")


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
    if tool == "gudhi":
        from gudhi.sklearn.rips_persistence import RipsPersistence

        rp = RipsPersistence(homology_dimensions=list(range(maxdim + 1)), threshold=thr, num_collapses=0,
                             homology_coeff_field=2)
        return rp.fit_transform([X])[0]
    raise SystemExit(f"unknown tool {tool!r}: one of {', '.join(TOOLS)}")


def load(name: str) -> np.ndarray:
    path = SETS[name][0]
    if path is None:  # r3_200k
        return np.random.default_rng(0).random((200000, 3)).astype(np.float32)
    return np.loadtxt(DATA / path).astype(np.float32)


def child(tool: str, name: str) -> None:
    _, maxdim, thr = SETS[name]
    X = load(name)
    t0 = time.perf_counter()
    dgms = run(tool, X, maxdim, thr)
    seconds = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"tool": tool, "set": name, "s": seconds, "bars": [len(d) for d in dgms], "peak_MiB": peak_mib}))


def parent(names: list, tools: list, timeout: float) -> None:
    for name in names:
        rows = {}
        for tool in tools:
            try:
                out = subprocess.run([sys.executable, __file__, "--child", tool, name], capture_output=True, text=True,
                                     timeout=timeout)
                rows[tool] = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else \
                    {"error": ("killed by SIGKILL (e.g. out of memory)" if out.returncode == -9 else
                               f"failed (exit {out.returncode}): {out.stderr.strip()[-200:]}")}
            except subprocess.TimeoutExpired:
                rows[tool] = {"error": f"past the {timeout:g} s timeout"}
        ours = rows.get("ours", {})
        print(f"{name}:")
        for tool, r in rows.items():
            if "error" in r:
                print(f"  {tool:13s} {r['error']}")
                continue
            ratio = "" if tool == "ours" or "s" not in ours else \
                f"  ours/{tool}: time {ours['s'] / r['s']:.2f}, peak memory {ours['peak_MiB'] / r['peak_MiB']:.2f}"
            print(f"  {tool:13s} {r['s']:8.2f} s {r['peak_MiB']:8.0f} MiB  bars {r['bars']}{ratio}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--child"]:
        child(args[1], args[2])
    else:
        tools, timeout, names = list(TOOLS), 600.0, []
        while args:
            a = args.pop(0)
            if a == "--tools":
                tools = args.pop(0).split(",")
            elif a == "--timeout":
                timeout = float(args.pop(0))
            else:
                names.append(a)
        parent(names or list(SETS), tools, timeout)
