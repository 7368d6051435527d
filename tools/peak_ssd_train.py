"""Peak memory of the mojo training step (forward + backward) per pair of kernels (the training
forward ``aura_lab.ssd.train.forward_kernel`` and the backward ``grad_kernel``): ``harness.core.peak_rss``
around the bench's step (``(y * w).sum().backward()``) of a warm process, repeated over rounds that
alternate the kernels, in one process (``--fresh``: as ``aura-lab bench ssd`` reads a training row's
``peak_MiB`` now, ``harness.ssd.train_step_peak``); it prints every reading,
sorted, and the size of the arrays live together in the backward (y, the checkpoints, y's and
x's gradients).

``--reuse``: read the peak as the bench did before it freed the last step's gradients ahead of
the baseline: the step then frees them itself, and a reading depends on whether the
allocator hands their pages back to the step (at b=4 l=1024 ~100 MiB on some calls, 118-127
on others, with either forward kernel).

``--pairs FWD:BWD,...``: the pairs compared (default ``chunked:chunked,sequential:chunked``, the
forward kernels with the chunked backward; ``chunked:chunked,sequential:sequential`` compares
the bench's rows "mojo" and "mojo (sequential forward and backward)").

``--builds NAME=PATH ...``: compiled ssd extensions (e.g. main's and a branch's ``ssd-*.so``, copied
aside) swapped in turn (``ab_kernels.on_build``; run from tools/), each with every pair.

``--fresh``: each reading in a fresh process (this script with ``--one``): a small step first
(b=1, l=64: the runtime's set-up), then the step at the size asked, its first: the kernels'
scratch is then counted too (a warm step reuses the scratch that the Mojo runtime kept from
the step before, resident already at the baseline: the readings above do not see it).

    python tools/peak_ssd_train.py [--batch 4] [--length 1024] [--rounds 8] [--reuse] [--pairs ...] [--builds ...]
        [--fresh]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def _args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--reuse", action="store_true", help="keep the last step's gradients until the step frees them")
    ap.add_argument("--pairs", default="chunked:chunked,sequential:chunked",
                    help="FWD:BWD kernel pairs, comma-separated (train.FORWARD_CALLS : train.GRAD_KERNELS)")
    ap.add_argument("--builds", nargs="*", default=[], help="NAME=PATH of compiled ssd extensions to alternate")
    ap.add_argument("--fresh", action="store_true", help="each reading the first step of a fresh process")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # FWD:BWD: a --fresh child's one reading
    return ap.parse_args()


def _stepper(b: int, l: int):
    """(step_of, free_gradients): step_of(fwd, bwd) is the bench's training step at b, l on
    fixed inputs, with the forward kernel fwd and the backward bwd (``harness.ssd``'s inputs
    and step)."""
    from aura_lab.harness.ssd import TORCH_CHUNKS, _train_inputs, _train_step

    inp, w = _train_inputs(b, l, 0)
    leaves = {k: v.requires_grad_() for k, v in inp.items()}

    def free_gradients():
        for v in leaves.values():
            v.grad = None

    return (lambda fwd, bwd: lambda: _train_step(leaves, w, "mojo", TORCH_CHUNKS[0], fwd, bwd)), free_gradients


def _builds(specs: list[str]) -> dict:
    """name -> a step wrapper running that build's kernels (the tree's own build: "")."""
    if not specs:
        return {"": lambda f: f}
    from ab_kernels import load_ssd_builds, on_build

    mods = load_ssd_builds(specs)
    return {nm: (lambda f, m=m: on_build(m, f)) for nm, m in mods.items()}


def _one(args) -> None:
    """A --fresh child: the peak of the first step at the size asked (after a small one), as
    the bench reads it (``harness.ssd.train_step_peak``), on the build asked."""
    from aura_lab import _mojo
    from aura_lab.harness.ssd import TORCH_CHUNKS, train_step_peak

    if args.builds:
        from ab_kernels import load_ssd_builds

        _mojo._loaded["ssd"] = next(iter(load_ssd_builds(args.builds).values()))
    fwd, bwd = args.one.split(":")
    print(train_step_peak(args.batch, args.length, 0, "mojo", TORCH_CHUNKS[0], fwd, bwd))


def _fresh_reading(args, spec: str | None, pair: str) -> float:
    cmd = [sys.executable, os.path.abspath(__file__), "--one", pair, "--batch", str(args.batch),
           "--length", str(args.length)] + (["--builds", spec] if spec else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=os.path.dirname(os.path.abspath(__file__)))
    return float(out.stdout.split()[-1])


def _readings(args) -> dict:
    """(build name, pair) -> the peaks over the rounds, the order alternating each round."""
    from aura_lab.harness.core import peak_rss

    specs = {a.split("=", 1)[0]: a for a in args.builds} or {"": None}
    builds = {} if args.fresh else _builds(args.builds)
    step_of, free_gradients = (None, None) if args.fresh else _stepper(args.batch, args.length)
    kernels = [(nm, pair) for nm in specs for pair in args.pairs.split(",")]
    peaks = {k: [] for k in kernels}
    for r in range(args.rounds):
        for k in kernels if r % 2 == 0 else kernels[::-1]:
            if args.fresh:
                peaks[k].append(_fresh_reading(args, specs[k[0]], k[1]))
                continue
            run = builds[k[0]](step_of(*k[1].split(":")))
            run()  # warm: the kernel's first call, and this kernel's allocation pattern
            if not args.reuse:
                free_gradients()  # as the bench's training rows did before their baseline
            peaks[k].append(peak_rss(run)[1])
    return peaks


def main() -> None:
    args = _args()
    if args.one:
        return _one(args)
    import numpy as np

    from aura_lab.harness.ssd import H, N, P
    from aura_lab.ssd import train

    peaks = _readings(args)
    b, l = args.batch, args.length
    x_mib = b * l * H * P * 4 / 2**20
    ckpt_mib = b * -(-l // train.CHECKPOINT) * H * P * N * 4 / 2**20
    print(f"b={b} l={l}: y, y's and x's gradients {x_mib:.1f} MiB each, checkpoints {ckpt_mib:.1f} MiB: "
          f"{3 * x_mib + ckpt_mib:.1f} MiB live together in the backward")
    for k, v in peaks.items():
        print(f"{k[0]:<8} {k[1]:<21} median {np.median(v):.1f} MiB, sorted: {' '.join(f'{p:.1f}' for p in sorted(v))}")


if __name__ == "__main__":
    main()
