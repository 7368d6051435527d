"""Benchmarks and validation per op family: ``bench(name, ...)`` / ``validate(name, ...)``.

Each family has a module here defining ``bench(...) -> BenchResult`` and
``validate(...) -> list[Check]``; the CLI, notebooks and widget panels all call these.
"""

from __future__ import annotations

import importlib
import pkgutil

from .core import BenchResult, Check, PanelSpec, compare, compare_backends, format_table, memory_bandwidth, summarize, time_call

# benchmarks/validations that cut across families (not op families: no panel)
EXTRAS = {
    "max": "aura_lab.harness.maxops",
    "collection": "aura_lab.harness.collection",  # RipsPersistence over a collection of clouds
}
#: the shared machinery and the reliability checks: modules that are no op family
MACHINERY = ("core", "calibrate", "load", "fuzz", "rounding", "report")
#: every other module of this package is one op family's entry: adding ``harness/<op>.py``
#: is all it takes for the CLI, notebooks and panels to find it
FAMILIES = {m.name: f"{__name__}.{m.name}" for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)
            if m.name not in MACHINERY and f"{__name__}.{m.name}" not in EXTRAS.values()}


def family_module(name: str):
    path = FAMILIES.get(name) or EXTRAS.get(name)
    if path is None:
        raise ValueError(f"unknown op family {name!r}; valid: {', '.join([*FAMILIES, *EXTRAS])}")
    return importlib.import_module(path)


def bench(name: str, **kwargs) -> BenchResult:
    """Run the benchmark sweep of one op family (see its module for the arguments)."""
    return family_module(name).bench(**kwargs)


def panel_spec(name: str) -> PanelSpec:
    """What the ComparisonPanel needs for one op family (sizes, dtypes, reference, calls)."""
    return family_module(name).panel_spec()


def validate(name: str, **kwargs) -> list[Check]:
    """Check every available backend of one op family against its independent reference."""
    return family_module(name).validate(**kwargs)


__all__ = ["EXTRAS", "FAMILIES", "family_module", "BenchResult", "Check", "PanelSpec", "bench", "compare", "compare_backends", "format_table", "memory_bandwidth",
           "panel_spec", "summarize", "time_call", "validate"]
