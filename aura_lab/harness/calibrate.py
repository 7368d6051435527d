"""``aura-lab calibrate``: time every available backend of each op over its calibration grid
and store the table that ``backend="auto"`` reads (``aura_lab._auto``)."""

from __future__ import annotations

import time

from .. import _auto
from .._cache import cpu_key
from ..registry import backend_status
from . import FAMILIES, family_module
from .core import machine_info, progress, time_call


def calibrate(families=None, *, repeats: int = 3, show_progress: bool = True, save: bool = True) -> dict:
    """Each family's ``calibration()`` cases timed per available backend; saved as this
    machine's table unless ``save=False``."""
    table = {"format": _auto.FORMAT, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info(),
             "versions": _auto.versions(), "cpu_key": cpu_key(), "ops": {}}
    for fam in families or FAMILIES:
        mod = family_module(fam)
        if not hasattr(mod, "calibration"):
            continue
        for op_name, op, cases in mod.calibration():
            points = []
            for size, calls in progress(cases, desc=f"calibrate {op_name}", enabled=show_progress):
                ms = {b: time_call(fn, repeats=repeats)["ms"] for b, fn in calls.items() if backend_status(b).available}
                points.append({"size": size, "work": op.work(size), "ms": ms})
            table["ops"][op_name] = {"points": points}
    if save:
        _auto.save(table)
    return table
