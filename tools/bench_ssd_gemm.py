"""Issue 27, build item 1: the chunk-sized matrix products of the chunked SSD
(kernels/aura_kernels/ssd/chunk_gemm.mojo) against the sequential scan forward, in flops/s on one
thread, in one process, interleaved (median of --repeats). The ratio rho = GEMM rate / scan
rate is what shared/notes/ssd-backward.md's cost model takes; ``aura-lab bench ssd`` has the
same products as its chunk GEMM rows (``vs_scan_1t``), here at any --length and --reps.

The scan forward is ``selective_scan`` on mojo at the bench shape (b=1, h=24, p=64, n=128,
l = --length) with AURA_NUM_THREADS=1, counted at 5 h p n flops per token; each product
runs --reps times on cache-resident operands (2 M N K flops each).

    AURA_NUM_THREADS=1 python tools/bench_ssd_gemm.py [--length 2048] [--repeats 7] [--variants 0,1,2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ["AURA_NUM_THREADS"] = "1"  # before aura_lab reads it: both sides on one thread

from aura_lab.harness.ssd import GEMM_SHAPES as SHAPES  # noqa: E402
from aura_lab.harness.ssd import H, N, P, flops, make_inputs  # noqa: E402
from aura_lab.ssd import selective_scan  # noqa: E402
from aura_lab.ssd.kernels import chunk_gemm_seconds  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--reps", type=int, default=2000, help="products per timing")
    ap.add_argument("--variants", default="0", help="comma-separated register blocks (chunk_gemm.gemm_rate: 0 the default)")
    args = ap.parse_args()
    inp = make_inputs(1, args.length)

    def scan_s():
        t0 = time.perf_counter()
        selective_scan(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], D=inp["D"], dt_bias=inp["dt_bias"],
                       dt_softplus=True, backend="mojo")
        return time.perf_counter() - t0

    scan_s()  # warm-up
    variants = [int(v) for v in args.variants.split(",")]
    times = {"scan": []} | {(s, v): [] for s in SHAPES for v in variants}
    for _ in range(args.repeats):
        times["scan"].append(scan_s())
        for s in SHAPES:
            for v in variants:
                times[s, v].append(chunk_gemm_seconds(*s, args.reps, variant=v))
    scan_rate = flops(args.length) / statistics.median(times["scan"]) / 1e9
    print(f"load average {os.getloadavg()[0]:.2f}; one thread, float32, median of {args.repeats}")
    print(f"scan forward l={args.length} h={H} p={P} n={N}: {scan_rate:.1f} GFLOP/s")
    for s in SHAPES:
        m, n, k = s
        for v in variants:
            rate = 2 * m * n * k * args.reps / statistics.median(times[s, v]) / 1e9
            print(f"gemm {m}x{k} . {k}x{n} variant {v}: {rate:.1f} GFLOP/s  rho = {rate / scan_rate:.2f}")


if __name__ == "__main__":
    main()
