"""Bit-identity of builds of the ssd kernels (e.g. main's and a branch's) on the training step:
each build's compiled ``ssd-*.so`` (``aura-lab build ssd`` prints the path; copy it aside) is
loaded in this one process (``ab_kernels.load_ssd_builds``) and runs the mojo training step
(the chunked forward and backward by default) on the same random inputs, over cases that
cover the kernels' paths: several sequences (batch, or ``cu_seqlens`` with lengths that are
no multiple of the chunk, an empty one included), initial states and final-state gradients,
z, D per channel, grouped B/C, head counts the threads do not divide, float32 and float64,
on 1 to 5 threads (``AURA_NUM_THREADS``; the serial threshold is lifted so that small cases
run threaded). Every output (y, the final states, the checkpoints) and every gradient of
each build is compared with the first build's by ``np.array_equal``; prints one line per
case and exits 1 on any difference.

    python tools/same_ssd_builds.py A=a.so B=b.so [--pairs chunked:chunked,sequential:chunked]
"""

from __future__ import annotations

import argparse
import os
import sys

#: (name, batch, length, heads, groups, cu_seqlens or None, dtype, threads)
CASES = [
    ("b=3 h=5 g=1 f32 t=2", 3, 200, 5, 1, None, "float32", 2),
    ("b=4 h=24 g=2 f32 t=2", 4, 256, 24, 2, None, "float32", 2),
    ("b=2 h=7 g=7 f64 t=3", 2, 150, 7, 7, None, "float64", 3),
    ("b=5 h=3 g=1 f32 t=5", 5, 70, 3, 1, None, "float32", 5),
    ("cu 4 seqs h=6 g=3 f32 t=4", 1, 300, 6, 3, [0, 1, 130, 130, 300], "float32", 4),
    ("cu 3 seqs h=5 g=1 f64 t=2", 1, 257, 5, 1, [0, 64, 200, 257], "float64", 2),
    ("b=1 h=9 g=3 f32 t=1", 1, 190, 9, 3, None, "float32", 1),
]


def case_inputs(b, l, h, g, cu, dtype, seed=0):
    """Leaves (requiring gradients) of one case, p=16, n=32, and the gradients of y and fin."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    p, n = 16, 32
    nseq = b if cu is None else len(cu) - 1

    def arr(*shape, scale=1.0):
        return torch.from_numpy((scale * rng.standard_normal(shape)).astype(dtype)).requires_grad_()

    leaves = {"x": arr(b, l, h, p), "dt": arr(b, l, h, scale=0.5), "A": arr(h), "B": arr(b, l, g, n, scale=0.3),
              "C": arr(b, l, g, n, scale=0.3), "D": arr(h, p), "z": arr(b, l, h, p), "dt_bias": arr(h, scale=0.1),
              "initial_states": arr(nseq, h, p, n, scale=0.5)}
    with torch.no_grad():
        leaves["A"].copy_(-leaves["A"].abs())
    gy = torch.from_numpy(rng.standard_normal((b, l, h, p)).astype(dtype))
    gfin = torch.from_numpy(rng.standard_normal((nseq, h, p, n)).astype(dtype))
    return leaves, gy, gfin, (None if cu is None else torch.tensor(cu, dtype=torch.int64))


def run_case(case, pair):
    """Every output and gradient of one training step of ``case`` with the kernel ``pair``."""
    import torch

    from aura_lab.ssd import selective_scan, train

    _, b, l, h, g, cu, dtype, threads = case
    leaves, gy, gfin, cus = case_inputs(b, l, h, g, cu, dtype)
    os.environ["AURA_NUM_THREADS"] = str(threads)
    fwd, bwd = pair.split(":")
    with train.forward_kernel_set(fwd), train.grad_kernel_set(bwd):
        kw = {k: leaves[k] for k in ("D", "z", "dt_bias", "initial_states")}
        y, fin = selective_scan(leaves["x"], leaves["dt"], leaves["A"], leaves["B"], leaves["C"], dt_softplus=True,
                                cu_seqlens=cus, return_final_states=True, backend="mojo", **kw)
        ckpt = y.grad_fn.saved.ckpt.copy()
        torch.autograd.backward([y, fin], [gy, gfin])
    out = {"y": y.detach().numpy().copy(), "fin": fin.detach().numpy().copy(), "ckpt": ckpt}
    out.update({f"grad {k}": v.grad.numpy().copy() for k, v in leaves.items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("builds", nargs="+", help="NAME=PATH of a compiled ssd extension")
    ap.add_argument("--pairs", default="chunked:chunked", help="FWD:BWD kernel pairs, comma-separated")
    args = ap.parse_args()
    import numpy as np

    from ab_kernels import load_ssd_builds, on_build

    from aura_lab import registry

    registry.SERIAL_NS = 0  # every case threaded as its AURA_NUM_THREADS says
    mods = load_ssd_builds(args.builds)
    names = list(mods)
    bad = 0
    for pair in args.pairs.split(","):
        for case in CASES:
            outs = {nm: on_build(mods[nm], lambda c=case: run_case(c, pair))() for nm in names}
            for nm in names[1:]:
                diff = [k for k in outs[names[0]] if not np.array_equal(outs[nm][k], outs[names[0]][k], equal_nan=True)]
                bad += bool(diff)
                print(f"{pair} {case[0]:<28} {nm} vs {names[0]}: {'identical' if not diff else 'DIFFER: ' + ', '.join(diff)}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
