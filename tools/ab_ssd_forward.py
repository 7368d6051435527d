"""In-process A/B of the mojo training forward's kernels (``aura_lab.ssd.train.forward_kernel``:
the sequential kernel with checkpoints against the chunked one, kernels/aura_kernels/ssd/chunked.mojo):
the training forward alone and the training step (forward + the chunked backward), on one
build, interleaved (the order alternates each round), at the bench shape h=24, p=64, n=128,
l=4096, float32. Prints y's largest difference between the kernels, then per case the median
wall and CPU time (all threads) and the median over rounds of the per-round ratio to the
sequential forward: on a shared machine quote the ratios, with the load average.

    python tools/ab_ssd_forward.py [--rounds 9] [--batch 1]
"""

from __future__ import annotations

import argparse
import os


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    import numpy as np
    from ab_kernels import ratio_line, ssd_calls, ssd_inputs, time_rounds

    from aura_lab.ssd import train
    from aura_lab.ssd.problem import validate_scan

    inp = ssd_inputs(args.batch)
    step = ssd_calls(inp)["chunked"]
    prob = validate_scan(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], inp["D"], None, inp["dt_bias"], True,
                         (0.0, float("inf")), None, None, 256)

    def on(kernel, call):
        def run():
            with train.forward_kernel_set(kernel):
                return call()
        return run

    kernels = list(train.FORWARD_CALLS)[::-1]  # the sequential forward first: the ratios' base
    cases = {(what, k): on(k, call) for what, call in (("forward", lambda: train._mojo_forward(prob)), ("step", step))
             for k in kernels}
    ys = {k: cases[("forward", k)]()[0] for k in kernels}
    print(f"max |y {kernels[1]} - y {kernels[0]}| / max |y| = "
          f"{float(np.abs(ys[kernels[1]] - ys[kernels[0]]).max() / np.abs(ys[kernels[0]]).max()):.3g}")
    for call in cases.values():  # warm-up
        call()
    order = list(cases)
    wall, cpu = time_rounds(cases, [order if r % 2 == 0 else order[::-1] for r in range(args.rounds)])
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    for what, k in cases:
        print(ratio_line(f"{what:<8} forward={k:<11}", wall, cpu, (what, k), (what, kernels[0])))


if __name__ == "__main__":
    main()
