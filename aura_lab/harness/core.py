"""Benchmark and validation machinery shared by every op.

Pure functions: they return plain records (lists of dicts) that the CLI prints, the
notebooks plot and the widget panels render.

Timing rule: one warm-up call, then the median of ``repeats`` timed calls. When the
warm-up exceeds ``slow_s`` seconds a second call decides: if it is fast, the first one paid
a one-time cost (a graph compile) and the normal repeats follow; if it is slow too, it is
recorded alone and marked ``runs=1`` rather than stalling a sweep (only slow references).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .._control import current
from ..registry import backend_status


@contextlib.contextmanager
def threads(n: int | None):
    """Within the block the Mojo kernels use ``n`` threads ($AURA_NUM_THREADS); None: unchanged."""
    old = os.environ.get("AURA_NUM_THREADS")
    if n is not None:
        os.environ["AURA_NUM_THREADS"] = str(n)
    try:
        yield
    finally:
        if n is not None:
            if old is None:
                os.environ.pop("AURA_NUM_THREADS", None)
            else:
                os.environ["AURA_NUM_THREADS"] = old


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def release_free_memory() -> None:
    """Hand the allocator's free memory back to the system (glibc ``malloc_trim``; no-op
    elsewhere), so that a call reusing it is counted by ``peak_rss`` as the pages it touches."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_rss(fn) -> tuple[object, float | None]:
    """(fn(), the peak resident memory it added in MiB): free memory is handed back
    (``release_free_memory``) and the kernel's high-water mark reset through
    /proc/self/clear_refs before the call; None where that is not possible."""
    release_free_memory()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _rss_kib("VmRSS")
    except OSError:
        base = None
    out = fn()
    hwm = _rss_kib("VmHWM")
    if base is None or hwm is None:
        return out, None
    return out, max(0.0, (hwm - base) / 1024.0)


def _isolated_child(conn, fn, args) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as e:  # noqa: BLE001 - reported to the parent as the row's note
        conn.send(("error", f"{type(e).__name__}: {str(e)[:300]}"))
    finally:
        conn.close()


def run_isolated(fn: Callable, args: tuple = (), timeout_s: float | None = None) -> tuple[bool, object]:
    """``fn(*args)`` in a fresh spawned process (nothing of this process's memory counted, a
    crash or an out-of-memory kill contained): ``(True, result)``, or ``(False, why)`` when it
    raised, was killed (an out-of-memory kill is SIGKILL) or ran past ``timeout_s`` (then it is
    killed). ``fn`` must be importable by name (a module-level function)."""
    import multiprocessing as mp
    import signal

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_isolated_child, args=(child, fn, args), daemon=True)
    proc.start()
    child.close()
    try:
        ready = parent.poll(timeout_s)
        msg = parent.recv() if ready else None
    except EOFError:  # the child died before it could answer
        msg = None
    finally:
        if proc.is_alive() and msg is None:
            proc.kill()
        proc.join()
        parent.close()
    if msg is not None:
        return msg[0] == "ok", msg[1]
    if not ready:
        return False, f"stopped: still running after {timeout_s:g} s"
    code = proc.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        return False, f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    return False, f"its process exited with status {code}"


def time_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, slow_s: float = 20.0) -> dict:
    """Median wall time of ``fn()`` after warm-up: {"ms", "min_ms", "runs"}. A call over
    ``slow_s`` after the warm-up is timed once (``runs`` 1)."""

    def once() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    for _ in range(max(1, warmup)):
        t_warm = once()
    if t_warm > slow_s:  # slow, or a one-time cost (a graph compile)? a second call tells
        t_warm = once()
        if t_warm > slow_s:
            return {"ms": t_warm * 1e3, "min_ms": t_warm * 1e3, "runs": 1}
    times = []
    for _ in range(repeats):
        times.append(once())
    return {"ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3, "runs": repeats}


def memory_bandwidth(nbytes: int = 256 << 20, repeats: int = 5) -> dict:
    """This machine's memory bandwidth in GB/s, measured now with numpy (best of repeats).

    read: ``a.sum()``-style streaming read; write: ``b.fill``; copy: bytes read + written
    by ``np.copyto`` divided by the time.
    """
    a = np.ones(nbytes // 4, np.float32)
    b = np.empty_like(a)

    def best(fn):
        ts = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts[1:])

    t_read = best(lambda: np.add.reduce(a, dtype=np.float32))
    t_write = best(lambda: b.fill(1.0))
    t_copy = best(lambda: np.copyto(b, a))
    return {
        "read_GBps": nbytes / t_read / 1e9,
        "write_GBps": nbytes / t_write / 1e9,
        "copy_GBps": 2 * nbytes / t_copy / 1e9,
        "bytes": nbytes,
    }


def machine_info() -> dict:
    import os

    info = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for b in ("numpy", "torch", "mojo", "max"):
        st = backend_status(b)
        info[b] = st.version if st.available else f"unavailable ({st.reason})"
    return info


@dataclass
class BenchResult:
    """Rows of one benchmark run plus its context (machine, bandwidth, command)."""

    op: str
    rows: list[dict]
    context: dict = field(default_factory=dict)

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"op": self.op, "context": self.context, "rows": self.rows}, indent=2, default=_jsonable))
        return path

    def table(self, columns: list[str] | None = None) -> str:
        return format_table(self.rows, columns)


def _jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, float) and not np.isfinite(o):
        return str(o)
    return str(o)


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A plain-text (markdown) table of ``rows``."""
    if not rows:
        return "(no rows)"
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))

    def cell(v):
        if isinstance(v, float):
            if not np.isfinite(v):
                return str(v)
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return "" if v is None else str(v)

    body = [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    return "\n".join([line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


def add_ratios(rows: list[dict], *, group: str = "case", ref: str | None = None) -> None:
    """Per case: ``vs_<ref>`` (ref time / this time) and ``vs_best_peer`` (best peer / this)."""
    for case in dict.fromkeys(r[group] for r in rows):
        rs = [r for r in rows if r[group] == case and r.get("ms")]
        peers = [r["ms"] for r in rs if r.get("kind") == "peer"]
        best_peer = min(peers) if peers else None
        ref_ms = next((r["ms"] for r in rs if r["impl"] == ref), None) if ref else None
        for r in rs:
            if ref_ms:
                r[f"vs_{ref}"] = ref_ms / r["ms"]
            if best_peer:
                r["vs_best_peer"] = best_peer / r["ms"]


def available_backends(op, wanted: list[str] | None = None) -> list[str]:
    """The op's backends that can run here (optionally restricted to ``wanted``)."""
    out = []
    for b in op.backends:
        if wanted and b not in wanted:
            continue
        if backend_status(b).available:
            out.append(b)
    return out


def progress(iterable, *, total: int | None = None, desc: str = "", enabled: bool = True):
    """tqdm progress on stderr (notebook-aware) when enabled and tqdm is installed."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False)


@dataclass
class Check:
    """One validation comparison."""

    op: str
    backend: str
    case: str
    max_abs_err: float
    max_rel_err: float
    tol: str
    passed: bool
    note: str = ""

    def row(self) -> dict:
        return dict(self.__dict__)


def compare(got: np.ndarray, ref: np.ndarray, *, rtol: float, atol: float) -> tuple[float, float, bool]:
    """(max abs err, max rel err, passed): each entry within atol OR rtol*|ref|; NaN must match NaN."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return float("inf"), float("inf"), False
    if got.size == 0:
        return 0.0, 0.0, True
    nan_ok = np.array_equal(np.isnan(got), np.isnan(ref))
    inf_ok = np.array_equal(np.isinf(got) & (got > 0), np.isinf(ref) & (ref > 0)) and np.array_equal(
        np.isinf(got) & (got < 0), np.isinf(ref) & (ref < 0))
    fin = np.isfinite(ref) & np.isfinite(got)
    err = np.abs(got[fin] - ref[fin])
    rel = err / np.maximum(np.abs(ref[fin]), np.finfo(np.float64).tiny)
    max_abs = float(err.max()) if err.size else 0.0
    max_rel = float(np.where(err <= atol, 0.0, rel).max()) if err.size else 0.0
    ok = nan_ok and inf_ok and bool(np.all((err <= atol) | (err <= rtol * np.abs(ref[fin]))))
    return max_abs, max_rel, ok


def summarize(checks: list[Check]) -> str:
    rows = [c.row() for c in checks]
    failed = [c for c in checks if not c.passed]
    text = format_table(rows, ["backend", "case", "max_abs_err", "max_rel_err", "tol", "passed", "note"])
    verdict = f"{len(checks) - len(failed)}/{len(checks)} checks passed"
    return f"{text}\n\n{verdict}" + ("" if not failed else " - FAILED: " + ", ".join(f"{c.backend}/{c.case}" for c in failed))


# ----------------------------------------------------------------- backend comparison

@dataclass
class PanelSpec:
    """What a ComparisonPanel (or ``compare_backends``) needs to know about one op.

    sizes: label -> size dict, small to large. ``make(size, dtype, seed)`` builds the inputs;
    ``call(backend, inputs)`` runs one backend; ``check(out, ref_out, dtype)`` returns
    (largest error, passed, tolerance text) against the reference backend's output.
    ``throughput(size, ms)`` -> (value, unit) is optional.
    """

    name: str
    backends: list[str]
    reference: str
    sizes: dict[str, dict]
    dtypes: list[str]
    make: Callable
    call: Callable
    check: Callable
    status: Callable[[str], tuple[bool, str]] | None = None
    explain: Callable[[dict], str] | None = None
    throughput: Callable[[dict, float], tuple[float, str]] | None = None
    work: Callable[[dict], float] | None = None

    def available(self, backend: str) -> tuple[bool, str]:
        if self.status is not None:
            return self.status(backend)
        st = backend_status(backend)
        return st.available, st.reason


def compare_backends(spec: PanelSpec, backends: list[str], sizes: list[str], dtype: str, repeats: int = 3,
                     seed: int = 0, on_step: Callable[[int, int, str], None] | None = None,
                     on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Time each backend at each size and check it against the reference, side by side.

    Returns one row per (size, backend): ms, throughput, speed-up over the reference, the
    largest error against the reference and pass/fail; a backend that raises gets a row
    with ``error`` set instead (the others still run).

    ``on_step(k, total, what)`` is called before each step; ``on_row(row)`` as each row is
    finished (its speed-up may be filled in later, in place, once the reference has run).
    Under ``aura_lab.cancellable`` the control is checked before every call, so a cancel
    stops the sweep between calls even for backends that do not poll it; ``Cancelled``
    (a ``KeyboardInterrupt``) propagates, with the rows finished so far already reported.
    """
    def check_cancel():
        ctl = current()
        if ctl is not None:
            ctl.raise_if_cancelled()

    def call(b, inputs):
        check_cancel()
        return spec.call(b, inputs)

    rows: list[dict] = []
    steps = [(s, b) for s in sizes for b in backends]
    total = len(steps) + len(sizes)
    k = 0
    for label in sizes:
        check_cancel()
        size = spec.sizes[label]
        inputs = spec.make(size, dtype, seed)
        k += 1
        if on_step:
            on_step(k, total, f"{label}: reference ({spec.reference})")
        try:
            ref_out = call(spec.reference, inputs)
            ref_err = None
        except Exception as e:  # the reference itself failed: report, keep going
            ref_out, ref_err = None, f"{type(e).__name__}: {e}"
        ref_ms = None
        for b in backends:
            k += 1
            if on_step:
                on_step(k, total, f"{label}: {b}")
            row = {"size": label, "backend": b, "dtype": dtype, "work": spec.work(size) if spec.work else None}
            try:
                out = call(b, inputs)
                t = time_call(lambda: call(b, inputs), repeats=repeats, warmup=0)
                row.update(ms=t["ms"], runs=t["runs"])
                if spec.throughput:
                    val, unit = spec.throughput(size, t["ms"])
                    row[unit] = val
                if ref_out is None:
                    row.update(max_err=float("nan"), passed=False, tol="", error=f"reference failed: {ref_err}")
                else:
                    err, ok, tol = spec.check(out, ref_out, dtype)
                    row.update(max_err=err, passed=bool(ok), tol=tol)
                if b == spec.reference:
                    ref_ms = t["ms"]
            except Exception as e:
                row.update(ms=float("nan"), passed=False, max_err=float("nan"), error=f"{type(e).__name__}: {e}")
            rows.append(row)
            for r in rows:  # speed-ups of this size so far (all of them once the reference has run)
                if r["size"] == label and ref_ms and r.get("ms") == r.get("ms"):
                    r[f"speedup_vs_{spec.reference}"] = ref_ms / r["ms"]
            if on_row:
                on_row(row)
    return rows
