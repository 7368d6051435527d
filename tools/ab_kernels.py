"""A/B of the Mojo kernels of two source trees (e.g. main and a branch) through the public
calls: each round runs one fresh process per tree, alternating which goes first, and each
process times every case (a warm-up call, then the median of --calls); the report is the
median over --rounds of each tree's per-process times and the ratio B / A, for the wall
time and for the process's CPU time (all threads: on an oversubscribed machine the wall
time mostly measures waiting for a core, the CPU time the work). Fresh processes and
alternation cancel the drift of a shared machine; quote the ratios, not the times.

    python tools/ab_kernels.py OLD_TREE NEW_TREE [--rounds 7] [--calls 3] [--suite issue28|collection|ssd|persistence]

--suite ssd times the scan instead (the bench shape h=24, p=64, n=128, b=1, l=4096): the
forward, and forward + backward with the chunked and the sequential mojo backward (the
kernels of the max backend's ops; max itself is left out: every fresh process would
compile its graph for minutes).

--suite persistence times the engine on the standard sets of ``aura-lab bench persistence``
(collapse auto).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def cases():
    """(name, call) at the sizes of issue 28's check, float32, mojo backend."""
    import numpy as np

    import aura_lab
    from aura_lab.neighbors import radius_graph

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((65536, 256)).astype(np.float32)
    X64 = rng.standard_normal((4096, 64)).astype(np.float32)
    X3 = rng.standard_normal((8192, 3)).astype(np.float32)
    P = rng.random((200_000, 3)).astype(np.float32)  # r3_200k's cloud size, its threshold
    return [
        ("route T=65536 E=256 k=8", lambda: aura_lab.route(logits, 8, backend="mojo")),
        ("pairwise_distances n=4096 d=64", lambda: aura_lab.pairwise_distances(X64, backend="mojo")),
        ("pairwise_distances n=8192 d=3", lambda: aura_lab.pairwise_distances(X3, backend="mojo")),
        ("radius_graph n=200000 d=3 r=0.05", lambda: radius_graph(P, 0.05)),
    ]


def collection_cases():
    """(name, call): the persistence engine on the collection bench's clouds (noisy shapes,
    maxdim 1), batched on one thread: the per-cloud engine cost, without Python per cloud."""
    import numpy as np

    from aura_lab.harness.collection import make_collection
    from aura_lab.persistence.batch import rips_batch

    X200, _ = make_collection(40, 200, seed=0)
    X70, _ = make_collection(240, 70, seed=0)
    return [
        ("rips_batch 40 x 200 maxdim 1, 1 thread", lambda: rips_batch(X200, 1, np.inf, 2, False, threads=1)),
        ("rips_batch 240 x 70 maxdim 1, 1 thread", lambda: rips_batch(X70, 1, np.inf, 2, False, threads=1)),
    ]


def ssd_calls(inp: dict) -> dict:
    """The scan's calls at the bench shape on the leaves ``inp`` (float32, mojo): ``fwd`` the
    forward without autograd, ``chunked`` / ``sequential`` a training step with that backward."""
    import torch

    from aura_lab.ssd import selective_scan, train

    def forward():
        return selective_scan(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], D=inp["D"], dt_bias=inp["dt_bias"],
                              dt_softplus=True, backend="mojo")

    def step(kernel):
        for v in inp.values():
            v.grad = None
        with train.grad_kernel_set(kernel):
            forward().sum().backward()

    def infer():
        with torch.no_grad():
            forward()

    return {"fwd": infer, "chunked": lambda: step("chunked"), "sequential": lambda: step("sequential")}


def ssd_inputs(batch: int = 1, length: int = 4096) -> dict:
    """The bench shape's inputs (b=``batch``, l=``length``), each a leaf that requires a gradient."""
    import torch

    from aura_lab.harness.ssd import make_inputs

    return {k: torch.from_numpy(v).requires_grad_() for k, v in make_inputs(batch, length, 0).items()}


def load_ssd_builds(specs: list[str]) -> dict:
    """NAME=PATH specs -> each compiled ssd extension loaded under the stem ``ssd`` (after the
    runtime's set-up, once, through this tree's own build), for swapping into
    ``aura_lab._mojo``'s module cache (``on_build``)."""
    import importlib.util

    from aura_lab import _mojo

    _mojo.load("ssd")
    mods = {}
    for arg in specs:
        name, path = arg.split("=", 1)
        spec = importlib.util.spec_from_file_location("ssd", path)
        mods[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mods[name])
    return mods


def on_build(mod, call):
    """``call`` with the ssd kernels of the build ``mod`` (``load_ssd_builds``)."""
    from aura_lab import _mojo

    def run():
        _mojo._loaded["ssd"] = mod
        return call()
    return run


def time_rounds(calls: dict, orders) -> tuple[dict, dict]:
    """(wall, cpu): the seconds (CPU: all threads) of each of ``calls`` (key -> zero-argument
    call) in one process, over the rounds ``orders`` (each the keys in the order they run)."""
    wall = {k: [] for k in calls}
    cpu = {k: [] for k in calls}
    for order in orders:
        for k in order:
            t0, c0 = time.perf_counter(), time.process_time()
            calls[k]()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return wall, cpu


def ratio_line(label: str, wall: dict, cpu: dict, key, base) -> str:
    """``key``'s median wall and CPU time and the median over rounds of its per-round ratio to ``base``."""
    ratio = [statistics.median(b / a for a, b in zip(d[base], d[key])) for d in (wall, cpu)]
    return (f"{label} wall {1e3 * statistics.median(wall[key]):8.1f} ms {ratio[0]:6.3f}x   "
            f"cpu {1e3 * statistics.median(cpu[key]):8.1f} ms {ratio[1]:6.3f}x")


def compare_and_time_builds(mods: dict, outs: dict, cases: dict, rounds: int, what: str, width: int,
                            note: str = "") -> None:
    """The A/B tail shared by the ssd build tools: each build's largest difference of ``outs``
    (build name -> {name: tensor}) against the first build's (``what`` names them), then
    ``cases`` (name -> call) on every build of ``mods`` (``on_build``), alternating the
    builds' order each of ``rounds``, and per case and build the ratio line to the first build
    (labels ``width`` wide; ``note`` follows the load average)."""
    names = list(mods)
    for name in names:
        err = max(float((outs[name][k] - outs[names[0]][k]).abs().max()) for k in outs[name])
        print(f"{name}: max |{what} - {names[0]}'s| = {err:.3g}")
    calls = {(c, n): on_build(mods[n], call) for c, call in cases.items() for n in names}
    orders = [[(c, n) for c in cases for n in (names if r % 2 == 0 else names[::-1])] for r in range(rounds)]
    wall, cpu = time_rounds(calls, orders)
    print(f"load average at the end {os.getloadavg()[0]:.2f}{note}")
    for c in cases:
        for name in names:
            print(ratio_line(f"{c:<{width}} {name:<10}", wall, cpu, (c, name), (c, names[0])))


def ssd_cases():
    """(name, call) of the scan at the bench shape, float32: mojo forward, and training steps."""
    calls = ssd_calls(ssd_inputs())
    return [
        ("scan fwd b=1 l=4096 mojo", calls["fwd"]),
        ("train b=1 l=4096 mojo chunked", calls["chunked"]),
        ("train b=1 l=4096 mojo sequential", calls["sequential"]),
    ]


def persistence_cases():
    """rips_persistence on the bench's standard sets, float32, collapse auto (the default)."""
    from aura_lab.harness.persistence import STANDARD_SETS, load_standard_set
    from aura_lab.persistence import rips_persistence

    def call(X, kw):
        return lambda: rips_persistence(X, backend="mojo", progress=False, **kw)

    return [(name, call(*load_standard_set(name)[:2])) for name in STANDARD_SETS]


SUITES = {"issue28": cases, "collection": collection_cases, "ssd": ssd_cases,
          "persistence": persistence_cases}


def child(calls: int, suite: str) -> None:
    out = {}
    for name, call in SUITES[suite]():
        call()
        wall, cpu = [], []
        for _ in range(calls):
            t0, c0 = time.perf_counter(), time.process_time()
            call()
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        out[name] = [statistics.median(wall), statistics.median(cpu)]
    print(json.dumps(out))


def run(tree: str, calls: int, suite: str) -> dict:
    env = {**os.environ, "PYTHONPATH": tree}
    res = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(calls), "--suite", suite],
                         env=env, cwd=tree,
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a", nargs="?")
    ap.add_argument("b", nargs="?")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=3)
    ap.add_argument("--suite", choices=SUITES, default="issue28")
    ap.add_argument("--child", type=int)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.suite)
        return
    got = {args.a: [], args.b: []}
    for r in range(args.rounds):
        order = (args.a, args.b) if r % 2 == 0 else (args.b, args.a)
        for tree in order:
            got[tree].append(run(tree, args.calls, args.suite))
        print(f"round {r + 1}/{args.rounds}, load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    print(f"{'case':36} {'wall A ms':>10} {'B ms':>9} {'B/A':>6}   {'cpu A ms':>9} {'B ms':>9} {'B/A':>6}")
    for name in got[args.a][0]:
        row = []
        for i in (0, 1):
            ta = statistics.median(g[name][i] for g in got[args.a])
            tb = statistics.median(g[name][i] for g in got[args.b])
            row.append(f"{1e3 * ta:9.2f} {1e3 * tb:9.2f} {tb / ta:6.3f}")
        print(f"{name:36} {row[0]}    {row[1]}")


if __name__ == "__main__":
    main()
