"""The stored bench runs (``data/results/*.json``) as markdown: every results table of the docs
and the README's targets table are generated here, so no figure in them is typed by hand.

``results_table(family)`` is one family's stored run as the CLI printed it; ``targets_table()``
reads each project target (``TARGETS``, one declarative row per target) out of those runs;
``load_table()`` is the soak run's RSS growth per op and backend.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .core import format_table

RESULTS = Path(__file__).resolve().parents[2] / "data" / "results"


def stored_run(name: str) -> dict:
    """One stored run: ``data/results/<name>.json`` (``bench-<family>`` or ``reliability-load``)."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no stored run {path}: run the command in docs/results.md to make it")
    return json.loads(path.read_text())


def stored_families() -> list[str]:
    return sorted(p.stem.removeprefix("bench-") for p in RESULTS.glob("bench-*.json"))


def machine_line(ctx: dict) -> str:
    """The machine and library versions of a run, and the bandwidth measured in it."""
    m = ctx.get("machine", {})
    line = (f"{m.get('cpu', m.get('machine', '?'))}, {m.get('cpus', '?')} CPUs; numpy {m.get('numpy')}, "
            f"torch {m.get('torch')}, mojo {m.get('mojo')}, max {m.get('max')}")
    if "bandwidth" in ctx:
        bw = ctx["bandwidth"]
        line += f"; memory bandwidth measured in the run: read {bw['read_GBps']:.1f} GB/s, write {bw['write_GBps']:.1f} GB/s"
    return line


def results_table(family: str) -> str:
    """The stored run of ``aura-lab bench <family>``: its command, machine and table."""
    from . import family_module

    res = stored_run(f"bench-{family}")
    ctx = res["context"]
    columns = getattr(family_module(family), "COLUMNS", None)
    head = f"`{ctx.get('command', 'aura-lab bench ' + family)}`\n\n{machine_line(ctx)}"
    if ctx.get("note"):
        head += f"\n\n{ctx['note']}"
    return f"{head}\n\n{format_table(res['rows'], columns)}\n"


@dataclass(frozen=True)
class Target:
    """One project target read from a stored run: for each case, the value ``column`` of the row
    ``impl`` (with ``per``: divided by the same row's column ``per``; with ``over``: divided by
    the row ``over``'s ``column``; a tuple of columns: the smallest of them, i.e. against the
    best of several peers), met when every
    case's value is ``>= goal`` (``at_most``: ``<= goal``), or, with ``met_by``, its row's
    column ``met_by`` is true (the value is still shown). An ``impl`` ending in ``*`` is the
    best of the rows whose name starts with it."""

    text: str
    family: str
    cases: tuple[str, ...]
    impl: str
    column: str | tuple[str, ...]
    goal: float
    at_most: bool = False
    over: str | None = None
    per: str | None = None
    unit: str = "×"
    met_by: str | None = None


_RIPSER_SETS = ("sphere3", "dragon", "o3_1024", "fract-r", "random16")
_RESEARCH_SETS = ("o3_4096", "clifford", "r3_200k")
_GIOTTO_BEST = ("vs_giotto-ph", "vs_giotto-ph+collapse")

#: the project's targets, as the issues state them, and where each is measured
TARGETS = (
    Target("distances n=8192 d=3: mojo ≥ 2× the fastest peer", "distance", ("n=8192 d=3",), "mojo", "vs_best_peer", 2),
    Target("distances n=8192 d=3: within 2× of the write-bandwidth floor", "distance", ("n=8192 d=3",), "mojo",
           "ms", 2, at_most=True, per="floor_ms"),
    Target("distances n=8192 d=64: mojo ≥ 2× the fastest peer", "distance", ("n=8192 d=64",), "mojo", "vs_best_peer", 2),
    Target("selective scan l=4096: ≥ 15× the torch sequential loop", "ssd", ("prefill l=4096",), "mojo", "vs_torch_loop", 15),
    Target("selective scan l=4096: ≥ 3× the torch chunked SSD", "ssd", ("prefill l=4096",), "mojo", "vs_torch_ssd", 3),
    Target("selective scan l=4096: at least MAX's own Mamba-2 op", "ssd", ("prefill l=4096",), "mojo", "vs_max_op", 1),
    Target("scan training b=1 l=4096: ≥ 8× torch autograd (chunked SSD)", "ssd", ("train b=1 l=4096",), "mojo",
           "vs_torch_ssd", 8),
    Target("scan training b=4 l=4096: ≥ 10× torch autograd (chunked SSD)", "ssd", ("train b=4 l=4096",), "mojo",
           "vs_torch_ssd", 10),
    Target("tiny MambaLM training step, scan on mojo: ≥ 3× on torch", "ssd", ("tiny MambaLM step",),
           "MambaLM step, scan on mojo", "vs_torch_ssd", 3),
    Target("routing T=65536 E=256 k=8: mojo ≥ 10× torch", "routing", ("T=65536 E=256 k=8 softmax",), "mojo",
           "vs_best_peer", 10),
    Target("routing: logits read at ≥ 50 % of the read bandwidth", "routing", ("T=65536 E=256 k=8 softmax",), "mojo",
           "%read_bw", 50, unit=" %"),
    Target("persistence: faster than ripser.py on every standard set", "persistence", _RIPSER_SETS, "mojo",
           "vs_ripser.py", 1),
    Target("persistence: faster than giotto-ph (2 threads) on every standard set", "persistence", _RIPSER_SETS, "mojo",
           "vs_giotto-ph", 1),
    Target("persistence, no collapse: faster than giotto-ph without collapse", "persistence", _RESEARCH_SETS,
           "mojo collapse off", "vs_giotto-ph", 1),
    Target("persistence, no collapse: peak memory ≤ 1.1× giotto-ph's without collapse", "persistence", _RESEARCH_SETS,
           "mojo collapse off", "peak_MiB", 1.1, at_most=True, over="giotto-ph"),
    Target("persistence, collapse auto: faster than gudhi RipsPersistence", "persistence", _RIPSER_SETS + _RESEARCH_SETS,
           "mojo", "vs_gudhi RipsPersistence", 1),
    Target("persistence, collapse auto: faster than giotto-ph with or without collapse", "persistence",
           _RIPSER_SETS + _RESEARCH_SETS, "mojo", _GIOTTO_BEST, 1),
    Target("persistence, collapse auto: peak memory ≤ 1.1× the smallest peer's", "persistence",
           _RIPSER_SETS + _RESEARCH_SETS, "mojo", "peak_vs_min_peer", 1.1, at_most=True),
    Target("persistence, collapse auto: at most 5 % slower than collapse off (same process)", "persistence",
           _RIPSER_SETS + _RESEARCH_SETS, "mojo", "auto_vs_off", 1.05, at_most=True, met_by="auto_as_off"),
    Target("persistence: diagrams + cycles + cocycles ≤ 2× diagrams alone", "persistence", _RIPSER_SETS,
           "mojo cycles+cocycles", "ms", 2, at_most=True, over="mojo collapse off"),
    Target("persistence: representatives faster than ripser.py's cocycles", "persistence", _RIPSER_SETS,
           "ripser.py cocycles", "ms", 1, over="mojo cycles+cocycles"),
    Target("max: a second process's first call ≥ 5× faster than the cold one", "max", ("distance", "ssd", "routing"),
           "", "cold/second", 5),
    Target("collection, 10 000 clouds of 50 points: RipsPersistence(n_jobs=2) ≥ 3× gudhi's", "collection",
           ("shapes N=10000 n=50",), "aura RipsPersistence(n_jobs=2)", "vs_gudhi", 3),
    Target("collection, 240 clouds of 70 points: RipsPersistence(n_jobs=2) ≥ 3× gudhi's", "collection",
           ("shapes N=240 n=70",), "aura RipsPersistence(n_jobs=2)", "vs_gudhi", 3),
    Target("collection, 1000 clouds of 200 points: ≥ 2× the best of gudhi and giotto-ph", "collection",
           ("shapes N=1000 n=200",), "aura*", ("vs_gudhi", "vs_giotto"), 2),
    Target("a single rips_persistence call on 70 points ≥ 2× gudhi's single call", "collection", ("single n=70",),
           "aura rips_persistence", "vs_gudhi", 2),
)


def _rows_of(rows: list[dict], case: str, impl: str) -> list[dict]:
    """The rows of one case (``op`` names the case in runs without one) with the named impl."""
    same_case = [r for r in rows if r.get("case", r.get("op")) == case]
    if impl.endswith("*"):
        return [r for r in same_case if str(r.get("impl", "")).startswith(impl[:-1])]
    return [r for r in same_case if r.get("impl", "") == impl]


def _value(t: Target, rows: list[dict], case: str) -> float | None:
    """The target's value on one case; ``None`` where the run has no such figure."""
    found = []
    for row in _rows_of(rows, case, t.impl):
        if t.per is not None:
            num, den = row.get(t.column), row.get(t.per)
            v = num / den if num and den else None
        elif isinstance(t.column, tuple):
            vals = [row.get(c) for c in t.column]
            v = min(vals) if all(isinstance(x, float | int) for x in vals) else None
        elif t.over is not None:
            other = _rows_of(rows, case, t.over)
            num, den = row.get(t.column), other[0].get(t.column) if other else None
            v = num / den if num and den else None
        else:
            v = row.get(t.column)
        if isinstance(v, float | int):
            found.append(float(v))
    if not found:
        return None
    return min(found) if t.at_most else max(found)


def _fmt(v: float, unit: str) -> str:
    return f"{v:.3g}{unit}" if abs(v) < 100 else f"{v:.0f}{unit}"


def _met_by(t: Target, rows: list[dict], case: str) -> bool:
    """Whether the case meets the target through its rows' ``met_by`` column."""
    return t.met_by is not None and any(row.get(t.met_by) is True for row in _rows_of(rows, case, t.impl))


def target_row(t: Target) -> dict:
    """One target's line: the value per case from the stored run and whether it is met."""
    rows = stored_run(f"bench-{t.family}")["rows"]
    values = {case: _value(t, rows, case) for case in t.cases}
    by = {case: _met_by(t, rows, case) for case in t.cases}
    ok = [v is not None and (by[case] or (v <= t.goal if t.at_most else v >= t.goal)) for case, v in values.items()]
    shown = {case: "—" if v is None else _fmt(v, t.unit) + (f" ({t.met_by})" if by[case] else "")
             for case, v in values.items()}
    measured = "; ".join(f"{case} {v}" if len(values) > 1 else v for case, v in shown.items())
    met = "yes" if all(ok) else ("no" if not any(ok) else f"{sum(ok)} of {len(ok)}")
    return {"target": t.text, "measured": measured, "met": met, "run": f"`aura-lab bench {t.family}`"}


def targets_table(family: str | None = None) -> str:
    """Every target (of one family, if given) against its stored run, one markdown table."""
    rows = [target_row(t) for t in TARGETS if family in (None, t.family)]
    if not rows:
        raise ValueError(f"no target reads the family {family!r}")
    return format_table(rows, ["target", "measured", "met", "run"])


def load_table() -> str:
    """The soak run's RSS growth over all calls and per call of the second half, op × backend."""
    res = stored_run("reliability-load")
    rows = res["rows"]
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    table = []
    for op in dict.fromkeys(r["op"] for r in rows):
        line = {"op": f"`{op}`"}
        for r in rows:
            if r["op"] == op:
                line[r["backend"]] = f"{r['growth_pct']:+.3f} %, {r['kib_per_call']:.3f} KiB"
        table.append(line)
    ctx = res.get("context", {})
    return f"{ctx.get('calls', '?')} calls, {machine_line(ctx)}\n\n{format_table(table, ['op', *backends])}\n"


def _grouped(k: int) -> str:
    """An integer in the docs' digit grouping: 33 189."""
    return f"{k:,}".replace(",", " ")


def collapse_counts(case: str) -> str:
    """What the edge collapse did to one set in the stored persistence run (the mojo row,
    ``collapse_edges="auto"``): "33 189 → 7 212 edges in 5 passes"."""
    row = next((r for r in stored_run("bench-persistence")["rows"] if r["case"] == case and r["impl"] == "mojo"), None)
    m = re.search(r"(\d+) -> (\d+) edges in (\d+) pass", (row or {}).get("collapse", ""))
    if m is None:
        raise ValueError(f"the stored persistence run has no collapse on the mojo row of {case!r}")
    before, after, passes = (int(g) for g in m.groups())
    return f"{_grouped(before)} → {_grouped(after)} edges in {passes} pass{'es' if passes > 1 else ''}"


def fuzz_counts() -> str:
    """The stored ``aura-lab fuzz`` run: cases tried, how many returned a result, failures."""
    res = stored_run("reliability-fuzz")
    return (f"{_grouped(res['cases'])} cases (incl. shrinking; {_grouped(sum(res['returned'].values()))} returned a result), "
            f"{len(res['failures'])} failures")


def poll_table() -> str:
    """The stored run of ``tools/poll_overhead.py``: each op's mojo call with cancellation
    polling and the worker thread against the same call with them switched off."""
    res = stored_run("reliability-poll")
    ctx = res["context"]
    return f"`{ctx['command']}`, {machine_line(ctx)}\n\n{format_table(res['rows'])}\n"


def radius_graph_speedup() -> str:
    """The stored run of ``tools/bench_neighbors.py``: the range of cKDTree's time (``query_pairs``
    plus distances) over ``radius_graph``'s ``auto`` on the sets it timed, and its command."""
    res = stored_run("radius-graph")
    rows = [r for r in res["rows"] if r["method"] == "ours auto"]
    lo, hi = min(r["ckdtree_over_this"] for r in rows), max(r["ckdtree_over_this"] for r in rows)
    sets = ", ".join(dict.fromkeys(f"{r['set']} (n = {_grouped(r['n'])})" for r in rows))
    ctx = res["context"]
    load = f" (load average {ctx['load_after']:.1f} after it)" if "load_after" in ctx else ""
    return f"{lo:.1f}–{hi:.1f}× faster than cKDTree's `query_pairs` plus distances on {sets} in one run of `{ctx['command']}`{load}"


#: the markers that docs pages hold (``<!-- aura:NAME [ARG] -->``), each a generator
MARKERS = {"results": results_table, "targets": targets_table, "load": load_table, "collapse": collapse_counts,
           "fuzz": fuzz_counts, "poll": poll_table,
           "neighbors": radius_graph_speedup}


def expand(text: str) -> str:
    """``text`` with every ``<!-- aura:NAME [ARG] -->`` marker replaced by its generated
    markdown: ``results FAMILY`` that family's stored run, ``targets [FAMILY]`` the targets
    table, ``load`` the soak run, ``collapse SET`` the edges the collapse kept on that set,
    ``fuzz`` the stored fuzz run's counts, ``poll`` the stored polling-overhead run, ``neighbors``
    the stored radius-graph speed-up over cKDTree."""

    def one(m):
        name, arg = m.group(1), m.group(2)
        if name not in MARKERS:
            raise ValueError(f"unknown docs marker aura:{name}; valid: {', '.join(MARKERS)}")
        return MARKERS[name](*([arg] if arg else []))

    return re.sub(r"<!-- aura:(\w+)(?: ([\w-]+))? -->", one, text)
