"""In-process A/B of builds of the ssd kernels (e.g. main's and a branch's): each build's
compiled ``ssd-*.so`` (the path ``aura-lab build ssd`` prints, copied aside) is loaded under
the stem ``ssd`` and swapped into ``aura_lab._mojo``'s module cache between timed calls, so
every build runs in the same process, interleaved (the order alternates each round), on the
same inputs: the bench shape h=24, p=64, n=128, b=1, l=4096, float32. The builds must share
this tree's Python side (the parameter block layouts). Prints each build's gradients against
the first's (0 for a change that does not touch the arithmetic), then per case the median
wall and CPU time (all threads) and the median over rounds of the per-round ratio to the
first build: on a shared machine quote the ratios, with the load average.

    python tools/ab_ssd_builds.py [--rounds 14] [--cases fwd,chunked,sequential] A=a.so B=b.so ...
"""

from __future__ import annotations

import argparse
import os


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("builds", nargs="+", help="NAME=PATH of a compiled ssd extension")
    ap.add_argument("--rounds", type=int, default=14)
    ap.add_argument("--cases", default="fwd,chunked,sequential")
    args = ap.parse_args()
    from ab_kernels import load_ssd_builds, on_build, ratio_line, ssd_calls, ssd_inputs, time_rounds

    mods = load_ssd_builds(args.builds)
    inp = ssd_inputs()
    every = ssd_calls(inp)
    cases = {c: every[c] for c in args.cases.split(",")}
    grads = {}
    for name, mod in mods.items():  # warm-up, and the gradients of each build
        on_build(mod, every["chunked"])()
        grads[name] = {k: v.grad.clone() for k, v in inp.items()}
    names = list(mods)
    for name in names:
        err = max(float((grads[name][k] - grads[names[0]][k]).abs().max()) for k in grads[name])
        print(f"{name}: max |chunked gradient - {names[0]}'s| = {err:.3g}")
    calls = {(c, n): on_build(mods[n], call) for c, call in cases.items() for n in names}
    orders = [[(c, n) for c in cases for n in (names if r % 2 == 0 else names[::-1])] for r in range(args.rounds)]
    wall, cpu = time_rounds(calls, orders)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    for c in cases:
        for name in names:
            print(ratio_line(f"{c:<11} {name:<10}", wall, cpu, (c, name), (c, names[0])))


if __name__ == "__main__":
    main()
