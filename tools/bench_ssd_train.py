"""Issue 27: the training rows of ``aura-lab bench ssd`` alone (forward + backward of the scan at
the bench shape h=24, p=64, n=128), in one process: mojo with its default (chunked)
forward and backward, mojo on the sequential forward and backward, and torch autograd through the chunked SSD at
Q=64 and Q=256; ``vs_torch_ssd`` against the faster torch, ``vs_seq`` against mojo's
sequential kernels.

    python tools/bench_ssd_train.py [--sizes 1x4096,4x4096] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os

from aura_lab.harness.ssd import SEQUENTIAL_ROW, _ratios, _train_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1x4096,4x4096", help="comma-separated BxL")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backends", default="mojo,torch")
    args = ap.parse_args()
    rows = []
    for size in args.sizes.split(","):
        b, l = (int(v) for v in size.split("x"))
        rows += _train_rows(b, l, args.backends.split(","), args.repeats, 0, 5.0)
    _ratios(rows)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print(f"{'case':<18} {'impl':<36} {'ms':>9} {'tok/s':>9} {'peak_MiB':>9} {'saved_MiB':>9} {'vs_torch':>8} "
          f"{'vs_seq':>7} {'grad_err':>9}")
    for r in rows:
        seq = next((q["ms"] for q in rows if q["case"] == r["case"] and q["impl"] == SEQUENTIAL_ROW), None)
        peak = "-" if r.get("peak_MiB") is None else f"{r['peak_MiB']:.0f}"
        print(f"{r['case']:<18} {r['impl']:<36} {r['ms']:>9.1f} {r['tok/s']:>9.0f} {peak:>9} {r['saved_MiB']:>9.0f} "
              f"{r.get('vs_torch_ssd', float('nan')):>8.2f} {(seq / r['ms']) if seq else float('nan'):>7.2f} "
              f"{r.get('grad_rel_err', float('nan')):>9.1e}")


if __name__ == "__main__":
    main()
