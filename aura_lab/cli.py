"""``aura-lab``: info, build, bench, validate, lab.

    aura-lab info                         backends, versions, SIMD width, threads
    aura-lab build [KERNEL ...] [--force] precompile the Mojo kernels into the cache
    aura-lab bench FAMILY [--json PATH]   benchmark sweep (distance, ...)
    aura-lab validate FAMILY              every backend against its reference
    aura-lab calibrate [FAMILY ...]       measure the backends so `auto` picks the fastest
    aura-lab fuzz [--minutes N] [--seed S] [--ops OP ...]   random odd inputs to every op x backend
    aura-lab lab [--headless]             JupyterLab on notebooks/
    aura-lab soak [--calls N] [--threads 8] every op x backend: threads at once, N calls in a row
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import time
from pathlib import Path


def _cmd_info(args) -> int:
    import numpy as np

    from . import _mojo
    from .harness.core import machine_info
    from .registry import backends, num_threads

    info = machine_info()
    print(f"aura_lab {importlib.metadata.version('aura_lab')} on {info.get('cpu', info['machine'])}, {info['cpus']} CPUs, Python {info['python']}")
    print("\nbackends:")
    for st in backends():
        print(f"  {st}")
    print(f"\nkernel threads: {num_threads()} (set AURA_NUM_THREADS to change)")
    try:
        import torch

        print(f"torch threads: {torch.get_num_threads()}")
    except ImportError:
        pass
    ok, version, reason = _mojo.status()
    if ok:
        print(f"Mojo {version}; kernels: {_mojo.kernels_dir()}; cache: {_mojo.build_dir()}")
        print(f"SIMD width (this CPU, AVX-512 if 16): float32 {_simd_width(np.float32)}, float64 {_simd_width(np.float64)}")
    else:
        print(f"Mojo unavailable: {reason}")
    return 0


def _simd_width(dtype) -> str:
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        return "?"
    bits = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    import numpy as np

    return str(bits // (8 * np.dtype(dtype).itemsize))


def _cmd_build(args) -> int:
    from . import _max, _mojo
    from .registry import backend_status

    names = args.kernels or _mojo.kernel_names()
    t0 = time.perf_counter()
    for name in names:
        path = _mojo.build(name, force=args.force)
        print(f"{name}: {path}")
    print(f"built {len(names)} kernel(s) in {time.perf_counter() - t0:.1f} s")
    if args.kernels or args.no_max:
        return 0
    st = backend_status("max")
    if not st.available:
        print(f"max backend skipped: {st.reason}")
        return 0
    t0 = time.perf_counter()
    print(f"max: custom-op library {_max.package()}")
    for fam, warm in _max.WARMUPS.items():
        t1 = time.perf_counter()
        warm()
        print(f"max: {fam} graphs compiled in {time.perf_counter() - t1:.1f} s (cached on disk by MAX)")
    print(f"max backend ready in {time.perf_counter() - t0:.1f} s")
    return 0


def _cmd_bench(args) -> int:
    from . import harness

    kw = {"repeats": args.repeats}
    if args.backends:
        kw["backends"] = args.backends.split(",")
    import inspect

    accepts = inspect.signature(harness.family_module(args.family).bench).parameters
    for option, name, value in (("--sets", "sets", args.sets and args.sets.split(",")),
                                ("--timeout", "timeout_s", args.timeout)):
        if value:
            if name not in accepts:
                raise SystemExit(f"aura-lab bench: {option}: the {args.family} bench does not take it")
            kw[name] = value
    res = harness.bench(args.family, **kw)
    print(f"# aura-lab bench {args.family}")
    ctx = res.context
    if "machine" in ctx:
        m = ctx["machine"]
        print(f"machine: {m.get('cpu', m['machine'])}, {m['cpus']} CPUs; " + ", ".join(f"{k} {m[k]}" for k in ("numpy", "torch", "mojo", "max")))
    if "bandwidth" in ctx:
        bw = ctx["bandwidth"]
        print(f"memory bandwidth (measured now): read {bw['read_GBps']:.1f} GB/s, write {bw['write_GBps']:.1f} GB/s, copy {bw['copy_GBps']:.1f} GB/s")
    print()
    print(res.table(getattr(harness.family_module(args.family), "COLUMNS", None)))
    path = Path(args.json or f"bench-{args.family}.json")
    res.to_json(path)
    print(f"\nwrote {path}")
    return 0


def _cmd_validate(args) -> int:
    from . import harness

    kw = {"show_progress": True}
    if args.backends:
        kw["backends"] = args.backends.split(",")
    checks = harness.validate(args.family, **kw)
    print(harness.summarize(checks))
    return 0 if all(c.passed for c in checks) else 1


def _cmd_calibrate(args) -> int:
    from . import _auto
    from .harness.calibrate import calibrate
    from .harness.core import format_table

    table = calibrate(args.families or None, repeats=args.repeats)
    rows = _auto.check(table)
    print(format_table([{**r, "size": " ".join(f"{k}={v}" for k, v in r["size"].items())} for r in rows]))
    print(f"\nheld out (each size estimated without its own row): auto within {_auto.TOLERANCE:.0%} of the fastest "
          f"at {sum(r['within'] for r in rows)}/{len(rows)} sizes")
    print(f"wrote {_auto.table_path()}")
    return 0


def _cmd_fuzz(args) -> int:
    from .harness import fuzz
    from .harness.core import machine_info

    print(f"aura-lab fuzz: {args.minutes:g} min, seed {args.seed}, ops: {', '.join(args.ops or sorted(fuzz.OPS))}", flush=True)
    report = fuzz.fuzz(minutes=args.minutes, seed=args.seed, ops=args.ops, timeout=args.timeout,
                       on_failure=lambda spec, why: print(f"FAILURE (shrunk): {why}\n  {json.dumps(spec)}", flush=True))
    print(report.summary())
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        ctx = {"machine": machine_info(), "minutes": args.minutes, "seed": args.seed, "ops": args.ops or sorted(fuzz.OPS),
               "command": f"aura-lab fuzz --minutes {args.minutes:g} --seed {args.seed}"}
        path.write_text(json.dumps({"context": ctx, "cases": report.cases, "per_op": report.per_op,
                                    "returned": report.returned, "failures": [why for _, why in report.failures]},
                                   indent=2))
        print(f"wrote {path}")
    if report.failures and args.save:
        print(f"stored {fuzz.save_regressions(args.save, report.failures)} new failing spec(s) in {args.save}")
    return 1 if report.failures else 0


def _cmd_lab(args) -> int:
    root = Path(__file__).resolve().parent.parent / "notebooks"
    if not root.is_dir():
        root = Path.cwd() / "notebooks"
    cmd = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={root}", *args.extra]
    if args.headless:
        cmd += ["--no-browser", f"--ip={args.ip}", f"--port={args.port}"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
    print("starting:", " ".join(cmd), flush=True)
    os.execv(sys.executable, cmd)
    return 0


def _cmd_soak(args) -> int:
    import json

    from .harness import load
    from .harness.core import format_table, machine_info

    names = args.ops.split(",") if args.ops else list(load.CASE)
    unknown = [n for n in names if n not in load.CASE]
    if unknown:
        print(f"aura-lab soak: unknown op(s) {', '.join(unknown)}; valid: {', '.join(load.CASE)}", file=sys.stderr)
        return 2
    cases = [load.CASE[n] for n in names]
    backends = args.backends.split(",") if args.backends else None
    print(f"# aura-lab soak: {args.threads} threads at once, then {args.calls} calls in a row per op x backend", flush=True)
    rows = load.run_all(args.calls, args.threads, args.thread_calls, cases, backends,
                        on_row=lambda r: print(f"{r['op']} {r['backend']}: {r['growth_pct']:+.2f} % RSS, threads identical "
                                               f"{r['threads_identical']}", file=sys.stderr, flush=True))
    print(format_table(rows))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"context": {"machine": machine_info(), "calls": args.calls, "threads": args.threads},
                                    "rows": rows}, indent=2))
        print(f"\nwrote {path}")
    bad = [f"{r['op']} {r['backend']}: " + "; ".join(load.problems(r)) for r in rows if load.problems(r)]
    print("\n".join(["", *bad]) if bad else "\nall flat, all threaded results identical")
    return 1 if bad else 0


def _fuzz_ops():
    from .harness.fuzz import OPS

    return OPS


def _default_regressions() -> str | None:
    return "tests/data/fuzz_regressions.json" if Path("tests/data").is_dir() else None


def main(argv=None) -> int:
    from .harness import EXTRAS, FAMILIES

    p = argparse.ArgumentParser(prog="aura-lab", description="aura_lab: Mojo kernels, measured and checked")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="backends, versions, SIMD width, threads").set_defaults(fn=_cmd_info)
    b = sub.add_parser("build", help="precompile the Mojo kernels into the per-user cache")
    b.add_argument("kernels", nargs="*", help="kernel names (default: all)")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    b.add_argument("--no-max", action="store_true", help="skip the MAX custom-op library and graph warm-up")
    b.set_defaults(fn=_cmd_build)
    be = sub.add_parser("bench", help="benchmark an op family against its peers")
    be.add_argument("family", choices=sorted([*FAMILIES, *EXTRAS]), help="op family, or max (graph compile/overhead costs)")
    be.add_argument("--repeats", type=int, default=5, help="timed runs after warm-up (median reported)")
    be.add_argument("--backends", help="comma-separated subset of backends")
    be.add_argument("--sets", help="comma-separated data sets (persistence: the standard and the research-scale "
                                   "sets; default all)")
    be.add_argument("--timeout", type=float, help="seconds before a row's process is stopped and reported as such "
                                                   "(persistence; default 600)")
    be.add_argument("--json", help="where to write the JSON table (default bench-FAMILY.json)")
    be.set_defaults(fn=_cmd_bench)
    v = sub.add_parser("validate", help="check every backend against the reference")
    v.add_argument("family", choices=sorted([*FAMILIES, *EXTRAS]), help="op family, or max (the max rows of every family)")
    v.add_argument("--backends", help="comma-separated subset of backends")
    v.set_defaults(fn=_cmd_validate)
    ca = sub.add_parser("calibrate", help="time every backend over a size grid; `auto` then picks the fastest")
    ca.add_argument("families", nargs="*", choices=[[], *sorted(FAMILIES)], help="op families (default: all)")
    ca.add_argument("--repeats", type=int, default=3)
    ca.set_defaults(fn=_cmd_calibrate)
    fz = sub.add_parser("fuzz", help="random odd inputs to every op x backend in a child process; nonzero exit on a failure")
    fz.add_argument("--minutes", type=float, default=5.0, help="how long to run")
    fz.add_argument("--seed", type=int, default=0, help="first hypothesis seed (batches use seed, seed + 1, ...)")
    fz.add_argument("--ops", nargs="+", choices=sorted(_fuzz_ops()), help="ops to fuzz (default: all)")
    fz.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it counts as a hang")
    fz.add_argument("--save", default=_default_regressions(), help="JSON file the failing specs are added to")
    fz.add_argument("--json", help="write the run's counts here (the docs read data/results/reliability-fuzz.json)")
    fz.set_defaults(fn=_cmd_fuzz)
    la = sub.add_parser("lab", help="start JupyterLab on notebooks/")
    la.add_argument("--headless", action="store_true", help="no browser; listen on --ip/--port (for a remote box)")
    la.add_argument("--ip", default="127.0.0.1")
    la.add_argument("--port", type=int, default=8888)
    la.set_defaults(fn=_cmd_lab)
    so = sub.add_parser("soak", help="every op x backend from many threads at once, then many calls in a row (RSS)")
    so.add_argument("--calls", type=int, default=10000, help="calls in a row per op x backend")
    so.add_argument("--threads", type=int, default=8, help="Python threads calling at once")
    so.add_argument("--thread-calls", type=int, default=32, help="calls spread over the threads")
    so.add_argument("--ops", help="comma-separated subset of the ops (names as in the table)")
    so.add_argument("--backends", help="comma-separated subset of backends")
    so.add_argument("--json", help="also write the table as JSON here")
    so.set_defaults(fn=_cmd_soak)
    args, extra = p.parse_known_args(argv)
    if extra and args.cmd != "lab":
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra  # `aura-lab lab` passes the rest to JupyterLab (e.g. --ServerApp.token=...)
    try:
        return args.fn(args)
    except KeyboardInterrupt:  # Ctrl-C: the running kernel has stopped and freed its memory
        print(f"aura-lab {args.cmd}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
