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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("builds", nargs="+", help="NAME=PATH of a compiled ssd extension")
    ap.add_argument("--rounds", type=int, default=14)
    ap.add_argument("--cases", default="fwd,chunked,sequential")
    args = ap.parse_args()
    from ab_kernels import compare_and_time_builds, load_ssd_builds, on_build, ssd_calls, ssd_inputs

    mods = load_ssd_builds(args.builds)
    inp = ssd_inputs()
    every = ssd_calls(inp)
    cases = {c: every[c] for c in args.cases.split(",")}
    grads = {}
    for name, mod in mods.items():  # warm-up, and the gradients of each build
        on_build(mod, every["chunked"])()
        grads[name] = {k: v.grad.clone() for k, v in inp.items()}
    compare_and_time_builds(mods, grads, cases, args.rounds, "chunked gradient", 11)


if __name__ == "__main__":
    main()
