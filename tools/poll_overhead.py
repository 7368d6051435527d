"""What cancellation and progress cost: each op's mojo call at a bench size, timed as a user
makes it (control words in the block, kernels polling them, long calls on a worker thread
while the main thread waits) against the same call with all of that switched off at run time
(control address 0, so every poll is one never-taken branch; no worker thread). Interleaved
in one process (the order alternating, since the first call of a pair runs slower on this
VM), median of --repeats after a warm-up; prints the ratio per case and, as the noise
floor, the ratio of the polling call to a second copy of itself.

    python tools/poll_overhead.py [--repeats 9] [--json data/results/reliability-poll.json]

The docs' usage page shows the run stored with --json (``<!-- aura:poll -->``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import numpy as np

import aura_lab
from aura_lab import _control, registry
from aura_lab.harness.core import machine_info
from aura_lab.harness.ssd import make_case


@contextlib.contextmanager
def switched_off():
    """No control block in any kernel call and no worker thread."""
    saved = registry.CANCELLABLE_BACKENDS, _control.address
    registry.CANCELLABLE_BACKENDS, _control.address = (), (lambda: 0)
    try:
        yield
    finally:
        registry.CANCELLABLE_BACKENDS, _control.address = saved


def cases():
    """(name, the call, the call to compare with): by default the same call switched off."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4096, 64)).astype(np.float32)
    yield "distance n=4096 d=64 float32", lambda: aura_lab.pairwise_distances(X, backend="mojo"), None
    kw = make_case(rng, b=1, l=4096, h=24, p=64, n=128)
    yield "ssd scan b=1 l=4096 h=24 p=64 n=128", lambda: aura_lab.selective_scan(**kw, backend="mojo"), None
    st = np.zeros((4, 24, 64, 128), np.float32)
    k1 = make_case(rng, b=4, l=1, h=24, p=64, n=128)
    step = (k1["x"][:, 0], k1["dt"][:, 0], k1["A"], k1["B"][:, 0], k1["C"][:, 0])
    yield "ssd decode step b=4 h=24 p=64 n=128", lambda: aura_lab.selective_state_update(st, *step, backend="mojo"), None
    L = rng.standard_normal((65536, 256)).astype(np.float32)
    yield "routing T=65536 E=256 k=8", lambda: aura_lab.route(L, 8, backend="mojo"), None
    P = rng.standard_normal((1000, 3))
    quiet = lambda: aura_lab.rips_persistence(P, maxdim=2, backend="mojo", progress=False)  # noqa: E731
    yield "persistence n=1000 R^3 maxdim 2", quiet, None
    yield ("persistence n=1000 R^3 maxdim 2: progress=True vs progress=False",
           lambda: aura_lab.rips_persistence(P, maxdim=2, backend="mojo", progress=True), quiet)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--json", help="also write the rows here (the docs read data/results/reliability-poll.json)")
    args = ap.parse_args()
    print("| case | with polling (ms) | switched off (ms) | ratio | noise: polling vs itself |\n|---|---|---|---|---|")
    rows = []
    for name, fn, other in cases():
        if other is None:
            def other(fn=fn):
                with switched_off():
                    return fn()
        fn()
        other()
        a, b, a2 = [], [], []
        for i in range(args.repeats):  # ABA / BAA...: the first call of a pair runs slower here
            for which in ((a, fn), (b, other), (a2, fn)) if i % 2 == 0 else ((b, other), (a2, fn), (a, fn)):
                which[0].append(timed(which[1]))
        ma, mb, ma2 = (statistics.median(v) * 1e3 for v in (a, b, a2))
        rows.append({"case": name, "with polling (ms)": ma, "switched off (ms)": mb, "ratio": ma / mb,
                     "noise: polling vs itself": ma / ma2})
        print(f"| {name} | {ma:.3f} | {mb:.3f} | {ma / mb:.3f} | {ma / ma2:.3f} |", flush=True)
    if args.json:
        ctx = {"machine": machine_info(), "repeats": args.repeats,
               "command": f"python tools/poll_overhead.py --repeats {args.repeats}"}
        Path(args.json).write_text(json.dumps({"context": ctx, "rows": rows}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
