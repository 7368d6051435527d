"""``aura-lab bench max``: what the MAX graph route costs, separately from the kernels.

For each op with a ``max`` implementation:

* **cold**: a fresh process with an empty MAX/Mojo cache (``MODULAR_CACHE_DIR``) makes its
  first call, which builds and compiles the graph;
* **second process**: another fresh process on that now-warm disk cache makes its first call
  (the graph is found on disk), reported as ``cold / second``;
* **per-call overhead**: the median time of a call on a tiny input once the graph is loaded;
* **steady state**: a medium problem, ``max`` against ``mojo`` (the same kernel called as a
  Python extension) in the same process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import types

import numpy as np

from ..distance import pairwise_distances
from ..routing import route
from ..ssd import selective_scan

from ..registry import Op, backend_status
from .core import BenchResult, machine_info, progress, time_call

COLUMNS = ["op", "cold_s", "second_process_s", "cold/second", "overhead_ms", "steady_case", "max_ms", "mojo_ms", "max/mojo"]

# (tiny first call, medium steady-state case) per op, as code run in a fresh process / here
_FIRST_CALL = {
    "distance": "aura_lab.pairwise_distances(np.ones((64, 3), np.float32), backend='max')",
    "ssd": ("aura_lab.selective_scan(np.ones((1, 8, 2, 4), np.float32), np.ones((1, 8, 2), np.float32), "
            "-np.ones(2, np.float32), np.ones((1, 8, 1, 16), np.float32), np.ones((1, 8, 1, 16), np.float32), backend='max')"),
    "routing": "aura_lab.route(np.ones((64, 8), np.float32), 2, backend='max')",
}


#: the public functions the code strings above call, for running them in this process
_API = types.SimpleNamespace(pairwise_distances=pairwise_distances, selective_scan=selective_scan, route=route)


def _first_call_seconds(op: str, cache: str) -> float:
    code = (
        "import time, numpy as np, aura_lab\n"
        "t0 = time.perf_counter()\n"
        f"{_FIRST_CALL[op]}\n"
        "print('SECONDS', time.perf_counter() - t0)\n"
    )
    env = {**os.environ, "MODULAR_CACHE_DIR": cache}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"{op}: first max call failed in a fresh process:\n{r.stderr[-2000:]}")
    return float(next(ln for ln in r.stdout.splitlines() if ln.startswith("SECONDS")).split()[1])


def _steady(op: str, repeats: int):
    """(case label, {backend: ms}) for a medium problem."""
    rng = np.random.default_rng(0)
    if op == "distance":
        X = rng.standard_normal((2048, 64)).astype(np.float32)
        calls = {b: (lambda b=b: pairwise_distances(X, backend=b)) for b in ("max", "mojo")}
        label = "n=2048 d=64"
    elif op == "ssd":
        b, l, h, p, n = 1, 1024, 24, 64, 128
        x = rng.standard_normal((b, l, h, p)).astype(np.float32)
        dt = rng.random((b, l, h)).astype(np.float32) * 0.1
        A = -rng.random(h).astype(np.float32)
        B = rng.standard_normal((b, l, 1, n)).astype(np.float32)
        C = rng.standard_normal((b, l, 1, n)).astype(np.float32)
        calls = {be: (lambda be=be: selective_scan(x, dt, A, B, C, backend=be)) for be in ("max", "mojo")}
        label = "l=1024 h=24 p=64 n=128"
    else:
        logits = rng.standard_normal((65536, 256)).astype(np.float32)
        calls = {be: (lambda be=be: route(logits, 8, backend=be)) for be in ("max", "mojo")}
        label = "T=65536 E=256 k=8"
    return label, {b: time_call(fn, repeats=repeats)["ms"] for b, fn in calls.items()}


def max_ops() -> list[str]:
    return [fam for fam in _FIRST_CALL if fam in Op.registry and "max" in Op.registry[fam].impls]


def bench(ops=None, repeats: int = 5, show_progress: bool = True, **_) -> BenchResult:
    st = backend_status("max")
    if not st.available:
        raise RuntimeError(f"max backend unavailable: {st.reason}")
    rows = []
    for op in progress(ops or max_ops(), desc="bench max", enabled=show_progress):
        with tempfile.TemporaryDirectory(prefix="aura-max-cold-") as cache:
            cold = _first_call_seconds(op, cache)
            second = _first_call_seconds(op, cache)
        tiny = eval("lambda: " + _FIRST_CALL[op], {"aura_lab": _API, "np": np})
        tiny()  # loads the graph in this process
        overhead = time_call(tiny, repeats=max(repeats, 20))["ms"]
        label, ms = _steady(op, repeats)
        rows.append({"op": op, "cold_s": cold, "second_process_s": second, "cold/second": cold / second,
                     "overhead_ms": overhead, "steady_case": label, "max_ms": ms["max"], "mojo_ms": ms["mojo"],
                     "max/mojo": ms["max"] / ms["mojo"]})
    ctx = {"machine": machine_info(), "repeats": repeats, "command": "aura-lab bench max",
           "note": "cold = first call in a fresh process with an empty MODULAR_CACHE_DIR; second = the next fresh process"}
    return BenchResult("max", rows, ctx)


def validate(backends=None, show_progress: bool = False, **_):
    """The max rows of every family's validation (the same checks as mojo)."""
    from . import validate as run

    return [c for fam in max_ops() for c in run(fam, backends=["max"], show_progress=show_progress)]


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(bench().rows, indent=1))
