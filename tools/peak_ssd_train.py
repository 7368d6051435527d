"""Peak memory of the mojo training step (forward + backward) per pair of kernels (the training
forward ``aura_lab.ssd.train.forward_kernel`` and the backward ``grad_kernel``), as ``aura-lab bench ssd`` measures a row's
``peak_MiB`` (``harness.core.peak_rss`` around the bench's step: ``(y * w).sum().backward()``),
repeated over rounds that alternate the kernels, in one process; it prints every reading,
sorted, and the size of the arrays live together in the backward (y, the checkpoints, y's and
x's gradients).

``--reuse``: read the peak as the bench did before it freed the last step's gradients ahead of
the baseline: the step then frees them itself, and a reading depends on whether the
allocator hands their pages back to the step (at b=4 l=1024 ~100 MiB on some calls, 118-127
on others, with either forward kernel).

``--pairs FWD:BWD,...``: the pairs compared (default ``chunked:chunked,sequential:chunked``, the
forward kernels with the chunked backward; ``chunked:chunked,sequential:sequential`` compares
the bench's rows "mojo" and "mojo (sequential forward and backward)").

    python tools/peak_ssd_train.py [--batch 4] [--length 1024] [--rounds 8] [--reuse] [--pairs ...]
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--reuse", action="store_true", help="keep the last step's gradients until the step frees them")
    ap.add_argument("--pairs", default="chunked:chunked,sequential:chunked",
                    help="FWD:BWD kernel pairs, comma-separated (train.FORWARD_CALLS : train.GRAD_KERNELS)")
    args = ap.parse_args()
    import numpy as np
    import torch

    from aura_lab.harness.core import peak_rss
    from aura_lab.harness.ssd import H, N, P, make_inputs
    from aura_lab.ssd import selective_scan, train

    b, l = args.batch, args.length
    leaves = {k: torch.from_numpy(v).requires_grad_() for k, v in make_inputs(b, l, 0).items()}
    w = torch.from_numpy(np.random.default_rng(2).standard_normal((b, l, H, P), dtype=np.float32))

    def free_gradients():
        for v in leaves.values():
            v.grad = None

    def step():
        free_gradients()
        y = selective_scan(leaves["x"], leaves["dt"], leaves["A"], leaves["B"], leaves["C"], D=leaves["D"],
                           dt_bias=leaves["dt_bias"], dt_softplus=True, chunk_size=64, backend="mojo")
        (y * w).sum().backward()

    kernels = args.pairs.split(",")
    peaks = {k: [] for k in kernels}
    for r in range(args.rounds):
        for k in kernels if r % 2 == 0 else kernels[::-1]:
            fwd, bwd = k.split(":")
            with train.forward_kernel_set(fwd), train.grad_kernel_set(bwd):
                step()  # warm: the kernel's first call, and this kernel's allocation pattern
                if not args.reuse:
                    free_gradients()  # as the bench's training rows do before their baseline
                peaks[k].append(peak_rss(step)[1])
    x_mib = b * l * H * P * 4 / 2**20
    ckpt_mib = b * -(-l // train.CHECKPOINT) * H * P * N * 4 / 2**20
    print(f"b={b} l={l}: y, y's and x's gradients {x_mib:.1f} MiB each, checkpoints {ckpt_mib:.1f} MiB: "
          f"{3 * x_mib + ckpt_mib:.1f} MiB live together in the backward")
    for k, v in peaks.items():
        print(f"{k:<21} peak MiB, sorted: {' '.join(f'{p:.1f}' for p in sorted(v))}")


if __name__ == "__main__":
    main()
