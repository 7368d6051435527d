"""How ``backend="auto"`` chooses: a calibration table measured on this machine.

``aura-lab calibrate`` times every available backend of every op over a size grid and
stores the table per machine in the user cache (``$AURA_LAB_CACHE/calibration/<cpu>.json``)
with the CPU, the versions of numpy/torch/Mojo/MAX and the date. ``auto`` reads it (or the
shipped default table ``aura_lab/auto_default.json`` when this machine has none or its
versions changed), estimates each backend's time at the requested size by interpolating
log-time against log-work between the two nearest calibrated sizes, and tries backends
fastest first. ``aura_lab.explain(op, **size)`` says which backend ``auto`` picks and why.
"""

from __future__ import annotations

import json
import math
import time
from functools import lru_cache
from pathlib import Path

from . import _mojo
from ._registry import Op, backend_status

SHIPPED = Path(__file__).resolve().parent / "auto_default.json"
FORMAT = 1


def table_path() -> Path:
    return _mojo.cache_root() / "calibration" / f"{_mojo.cpu_key()}.json"


def versions() -> dict:
    return {b: backend_status(b).version for b in ("numpy", "torch", "mojo", "max")}


@lru_cache(maxsize=1)
def load_table() -> tuple[dict, str]:
    """(table, where it came from). The machine's own table wins if its versions match."""
    mine = table_path()
    if mine.is_file():
        try:
            t = json.loads(mine.read_text())
            if t.get("format") == FORMAT and t.get("versions") == versions():
                return t, f"calibrated on this machine {t.get('date', '')}".strip()
            reason = "this machine's table is from other versions"
        except (OSError, ValueError):
            reason = "this machine's table is unreadable"
    else:
        reason = "no calibration on this machine (run `aura-lab calibrate`)"
    if SHIPPED.is_file():
        return json.loads(SHIPPED.read_text()), f"shipped default table; {reason}"
    return {"ops": {}}, f"no table; {reason}"


def reload() -> None:
    load_table.cache_clear()


def estimate(points: list[dict], work: float) -> dict[str, float]:
    """Interpolated ms per backend at ``work`` (log-log between the neighbouring points,
    clamped to the grid's ends)."""
    pts = sorted(points, key=lambda p: p["work"])
    if not pts:
        return {}
    lw = math.log(max(work, 1.0))
    lo = max((p for p in pts if math.log(p["work"]) <= lw), key=lambda p: p["work"], default=pts[0])
    hi = min((p for p in pts if math.log(p["work"]) >= lw), key=lambda p: p["work"], default=pts[-1])
    if lo is hi:
        return dict(lo["ms"])
    out = {}
    for b in set(lo["ms"]) & set(hi["ms"]):
        a, c = math.log(lo["ms"][b]), math.log(hi["ms"][b])
        w0, w1 = math.log(lo["work"]), math.log(hi["work"])
        f = 0.0 if w1 == w0 else min(1.0, max(0.0, (lw - w0) / (w1 - w0)))
        out[b] = math.exp(a + f * (c - a))
    return out


def order(op: Op, size: dict) -> tuple[list[str], str]:
    """Backends to try for ``op`` at ``size``, fastest estimate first, and why."""
    table, source = load_table()
    entry = table.get("ops", {}).get(op.name)
    if not entry or not size:
        why = f"this op is not in the table ({source})" if entry is None else "no size given"
        return list(op.auto_order), f"default order: {why}"
    est = estimate(entry["points"], op.work(size))
    ranked = sorted(est, key=est.get)
    rest = [b for b in op.auto_order if b not in ranked]
    why = ", ".join(f"{b} {est[b]:.3g} ms" for b in ranked[:3])
    return ranked + rest, f"{source}: estimated {why} at work {op.work(size):.3g}"


def calibrate(families=None, *, repeats: int = 3, progress: bool = True, save: bool = True) -> dict:
    """Time every available backend of each op over its calibration grid; save the table."""
    from . import harness
    from .harness.core import machine_info, time_call

    table = {"format": FORMAT, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info(),
             "versions": versions(), "cpu_key": _mojo.cpu_key(), "ops": {}}
    for fam in families or harness.FAMILIES:
        mod = harness._module(fam)
        if not hasattr(mod, "calibration"):
            continue
        for op_name, op, cases in mod.calibration():
            points = []
            for size, calls in harness.core.progress(cases, desc=f"calibrate {op_name}", enabled=progress):
                ms = {}
                for b, fn in calls.items():
                    if not backend_status(b).available:
                        continue
                    ms[b] = time_call(fn, repeats=repeats)["ms"]
                points.append({"size": size, "work": op.work(size), "ms": ms})
            table["ops"][op_name] = {"points": points}
    if save:
        path = table_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(table, indent=1))
        reload()
    return table


def check(table: dict) -> list[dict]:
    """For each calibrated size: auto's pick vs the fastest measured backend."""
    rows = []
    for name, entry in table["ops"].items():
        for p in entry["points"]:
            est = estimate(entry["points"], p["work"])
            pick = min(est, key=est.get)
            best = min(p["ms"], key=p["ms"].get)
            rows.append({"op": name, "size": p["size"], "auto": pick, "fastest": best,
                         "auto_ms": p["ms"][pick], "fastest_ms": p["ms"][best],
                         "within_10pct": p["ms"][pick] <= 1.1 * p["ms"][best]})
    return rows
