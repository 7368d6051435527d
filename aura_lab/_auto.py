"""How ``backend="auto"`` chooses: a calibration table measured on this machine.

``aura-lab calibrate`` times every available backend of every op over a size grid and
stores the table per machine in the user cache (``$AURA_LAB_CACHE/calibration/<cpu>.json``)
with the CPU, the versions of numpy/torch/Mojo/MAX and the date. ``auto`` reads it (or the
shipped default table ``aura_lab/auto_default.json`` when this machine has none, its
versions changed, or it cannot be read or has a point of the wrong shape), estimates each
backend's time at the requested size by interpolating log-time against log-work between the
two nearest calibrated sizes, and tries backends fastest first. ``aura_lab.explain(op, **size)`` says which backend ``auto`` picks and why.

This module hands its ``order`` to the registry (``set_auto_policy``); the calibration run
itself is ``aura_lab.harness.calibrate``.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
from functools import lru_cache
from pathlib import Path

from ._cache import cache_dir, cpu_key, write_atomically
from .registry import BACKENDS, Op, backend_status, set_auto_policy

SHIPPED = Path(__file__).resolve().parent / "auto_default.json"
FORMAT = 1


def table_path() -> Path:
    return cache_dir("calibration") / f"{cpu_key()}.json"


# the distributions whose versions a table records; read from their metadata, so that
# loading the table imports no backend (an import of torch on first use can take seconds,
# and a Ctrl-C in the middle of one leaves torch unimportable in that process)
_DISTRIBUTIONS = {"numpy": "numpy", "torch": "torch", "max": "max"}


def versions() -> dict:
    out = {}
    for b in BACKENDS:
        if b in _DISTRIBUTIONS:
            try:
                out[b] = importlib.metadata.version(_DISTRIBUTIONS[b])
            except importlib.metadata.PackageNotFoundError:
                out[b] = ""
        else:
            out[b] = backend_status(b).version
    return out


@lru_cache(maxsize=1)
def load_table() -> tuple[dict, str]:
    """(table, where it came from). The machine's own table wins if its versions match and
    every point has the table's shape (``check_table``); else the shipped default table."""
    mine = table_path()
    if mine.is_file():
        try:
            t = read_table(mine)
            if t.get("format") == FORMAT and t.get("versions") == versions():
                return t, f"calibrated on this machine {t.get('date', '')}".strip()
            reason = "this machine's table is from other versions"
        except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested too deep
            reason = "this machine's table is unreadable"
    else:
        reason = "no calibration on this machine (run `aura-lab calibrate`)"
    try:
        return read_table(SHIPPED), f"shipped default table; {reason}"
    except (OSError, ValueError, RecursionError) as e:
        return {"ops": {}}, f"no table (the shipped one is unreadable: {e}); {reason}"


def read_table(path: Path) -> dict:
    """The calibration table at ``path``; ``OSError`` or ``ValueError`` (which includes
    ``json.JSONDecodeError``) if it cannot be read or has the wrong shape."""
    t = json.loads(path.read_text())
    check_table(t)
    return t


def check_table(t) -> None:
    """``ValueError`` naming the first bad entry unless ``t`` is shaped as ``calibrate`` writes
    it: ``{"ops": {op: {"points": [point, ...]}}, ...}``, every point as ``_check_point`` says."""
    if not isinstance(t, dict) or not isinstance(t.get("ops"), dict):
        raise ValueError("not a calibration table: no 'ops' mapping")
    for name, entry in t["ops"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("points"), list):
            raise ValueError(f"ops[{name!r}]: expected a mapping with a 'points' list")
        for i, p in enumerate(entry["points"]):
            _check_point(p, Op.registry.get(name), f"ops[{name!r}].points[{i}]")


def _check_point(p, op: Op | None, where: str) -> None:
    """One calibrated size: ``size`` a mapping of size names to ints >= 0 (that the op's regime
    accepts), ``work`` a finite number > 0, ``ms`` a mapping of backend name to a finite
    number of milliseconds > 0 (what ``estimate`` takes the logarithm of)."""
    if not isinstance(p, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(p).__name__}")
    size, work, ms = p.get("size"), p.get("work"), p.get("ms")
    if not isinstance(size, dict) or not all(isinstance(k, str) and _is_int(v) and v >= 0 for k, v in size.items()):
        raise ValueError(f"{where}.size: expected a mapping of size names to ints >= 0, got {size!r}")
    if op is not None and op.regime is not None:
        try:
            op.regime(size)
        except Exception as e:
            raise ValueError(f"{where}.size: not a size of {op.name} ({type(e).__name__}: {e})") from None
    if not _positive(work):
        raise ValueError(f"{where}.work: expected a finite number > 0, got {work!r}")
    if not isinstance(ms, dict) or not all(isinstance(b, str) and _positive(v) for b, v in ms.items()):
        raise ValueError(f"{where}.ms: expected a mapping of backend to finite milliseconds > 0, got {ms!r}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive(v) -> bool:
    """A finite real number > 0 (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


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


def comparable(points: list[dict], size: dict, op: Op | None) -> list[dict]:
    """The calibrated points in the same regime as ``size`` (all of them if the op has no
    regimes or none of its points is in this one)."""
    if op is None or op.regime is None:
        return points
    same = [p for p in points if op.regime(p["size"]) == op.regime(size)]
    return same or points


def order(op: Op, size: dict) -> tuple[list[str], str]:
    """Backends to try for ``op`` at ``size``, fastest estimate first, and why."""
    table, source = load_table()
    entry = table.get("ops", {}).get(op.name)
    if not entry or not size:
        why = f"this op is not in the table ({source})" if entry is None else "no size given"
        return list(op.auto_order), f"default order: {why}"
    est = estimate(comparable(entry["points"], size, op), op.work(size))
    ranked = sorted(est, key=est.get)
    rest = [b for b in op.auto_order if b not in ranked]
    why = ", ".join(f"{b} {est[b]:.3g} ms" for b in ranked[:3])
    return ranked + rest, f"{source}: estimated {why} at work {op.work(size):.3g}"


def save(table: dict) -> Path:
    """Store ``table`` as this machine's calibration and use it from now on. The file is
    replaced whole (``write_atomically``): a reader, or a calibration interrupted midway,
    never sees a partial table."""
    path = table_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomically(path, json.dumps(table, indent=1))
    reload()
    return path


#: how far auto's pick may be from the fastest backend measured at a size
TOLERANCE = 0.25


def check(table: dict) -> list[dict]:
    """Held out: each calibrated size's pick is estimated from the table *without* that size,
    then compared with the fastest backend measured there (``within`` TOLERANCE)."""
    rows = []
    for name, entry in table["ops"].items():
        pts = entry["points"]
        for i, p in enumerate(pts):
            est = estimate(comparable(pts[:i] + pts[i + 1:], p["size"], Op.registry.get(name)), p["work"])
            est = {b: v for b, v in est.items() if b in p["ms"]}
            if not est or not p["ms"]:
                continue
            pick = min(est, key=est.get)
            best = min(p["ms"], key=p["ms"].get)
            rows.append({"op": name, "size": p["size"], "auto": pick, "fastest": best,
                         "auto_ms": p["ms"][pick], "fastest_ms": p["ms"][best],
                         "within": p["ms"][pick] <= (1 + TOLERANCE) * p["ms"][best]})
    return rows


set_auto_policy(order)
