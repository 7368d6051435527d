"""``auto``'s pick for the scan and its training step at sizes off the calibration grid,
against the fastest backend measured there (issue 27: within 25 %). One process, the
backends alternated in rotating order each round (``ab_kernels.time_rounds``), medians.

    AURA_LAB_CACHE=... python tools/auto_heldout.py [--rounds 9]

It reads the table ``auto`` reads (this machine's calibration, else the shipped one): run it
after ``aura-lab calibrate`` on a quiet machine (a loaded 2-core VM turns near-ties between
mojo and max, which run the same kernels, into noise).
"""

from __future__ import annotations

import argparse
import statistics

#: (b, l, h, p, n) off the calibration grid of aura_lab.harness.ssd.calibration
SIZES = ((1, 1500, 12, 64, 128), (1, 300, 8, 32, 64), (2, 700, 16, 64, 128), (1, 3000, 24, 64, 128))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    from ab_kernels import time_rounds

    from aura_lab import _auto
    from aura_lab.harness import ssd as hs
    from aura_lab.ssd import op, selective_scan
    from aura_lab.ssd.train import train_op

    for b, l, h, p, n in SIZES:
        kw = hs.make_inputs(b, l, 0, h=h, p=p, n=n)
        size = {"b": b, "l": l, "h": h, "p": p, "n": n}
        scan = {be: (lambda be=be: selective_scan(**kw, backend=be)) for be in op.backends if be != "numpy"}
        train = {be: hs._train_call(kw, 0, be) for be in train_op.backends}
        for the_op, calls in ((op, scan), (train_op, train)):
            keys = [k for k in calls if hs.available_backends(the_op, [k])]
            calls = {k: calls[k] for k in keys}
            for fn in calls.values():  # warm-up (a graph compile, first allocations)
                fn()
            wall, _ = time_rounds(calls, [keys[i % len(keys):] + keys[:i % len(keys)] for i in range(args.rounds)])
            ms = {k: 1e3 * statistics.median(v) for k, v in wall.items()}
            order, why = _auto.order(the_op, size)
            pick = next(k for k in order if k in ms)
            best = min(ms, key=ms.get)
            ok = ms[pick] <= (1 + _auto.TOLERANCE) * ms[best]
            print(f"{the_op.name:9s} {size}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items())
                  + f" | auto {pick}: {ms[pick] / ms[best]:.2f}x {best} ({'within' if ok else 'NOT within'}) | {why}",
                  flush=True)


if __name__ == "__main__":
    main()
