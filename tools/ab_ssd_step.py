"""In-process A/B of builds of the ssd kernels on the bench's training call (issue 27): the
``train b=B l=L`` row's step (selective_scan with D, dt_bias, softplus at h=24, p=64, n=128,
float32, then ``(y * w).sum().backward()``), the training forward alone, and the inference
forward (prefill). Each build's compiled ``ssd-*.so`` (copied aside) is swapped into
``aura_lab._mojo``'s module cache between calls (as tools/ab_ssd_builds.py), the order
alternating each round; prints the largest difference of y and of every gradient against the
first build, then per case the median wall and CPU time and the median per-round ratio to the
first build (quote the ratios with the load average).

    python tools/ab_ssd_step.py [--batch 1] [--length 4096] [--cases step,train_fwd,prefill] [--rounds 14] A=a.so B=b.so ...
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("builds", nargs="+", help="NAME=PATH of a compiled ssd extension")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--length", type=int, default=4096)
    ap.add_argument("--cases", default="step,train_fwd,prefill")
    ap.add_argument("--rounds", type=int, default=14)
    args = ap.parse_args()
    import numpy as np
    import torch
    from ab_kernels import compare_and_time_builds, load_ssd_builds, on_build, ssd_inputs

    from aura_lab.harness.ssd import H, P
    from aura_lab.ssd import selective_scan

    mods = load_ssd_builds(args.builds)
    inp = ssd_inputs(args.batch, args.length)
    w = torch.from_numpy(np.random.default_rng(2).standard_normal((args.batch, args.length, H, P), dtype=np.float32))

    def forward():
        return selective_scan(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], D=inp["D"], dt_bias=inp["dt_bias"],
                              dt_softplus=True, backend="mojo")

    def step():
        for v in inp.values():
            v.grad = None
        (forward() * w).sum().backward()

    def prefill():
        with torch.no_grad():
            forward()

    every = {"step": step, "train_fwd": forward, "prefill": prefill}
    cases = {c: every[c] for c in args.cases.split(",")}
    outs = {}
    for name, mod in mods.items():  # warm-up, and each build's y and gradients
        on_build(mod, step)()
        outs[name] = {k: v.grad.clone() for k, v in inp.items()} | {"y": on_build(mod, forward)().detach().clone()}
    compare_and_time_builds(mods, outs, cases, args.rounds, "y or gradient", 10,
                            f"; b={args.batch} l={args.length}, {args.rounds} rounds")


if __name__ == "__main__":
    main()
