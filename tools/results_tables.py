"""Print the README's results tables from the stored bench runs in data/results/.

    .venv/bin/python tools/results_tables.py [FAMILY ...]

Each data/results/bench-<family>.json is the JSON written by one `aura-lab bench <family>
--json data/results/bench-<family>.json` run; the tables quote it as is (columns as the CLI
prints them), with the machine and bandwidth measured in that run.
"""

import json
import sys
from pathlib import Path

from aura_lab import harness
from aura_lab.harness.core import format_table

RESULTS = Path(__file__).resolve().parent.parent / "data" / "results"

for path in sorted(RESULTS.glob("bench-*.json")):
    fam = path.stem.removeprefix("bench-")
    if sys.argv[1:] and fam not in sys.argv[1:]:
        continue
    res = json.loads(path.read_text())
    ctx = res["context"]
    m = ctx.get("machine", {})
    print(f"### `{ctx.get('command', 'aura-lab bench ' + fam)}`\n")
    line = f"{m.get('cpu', m.get('machine', '?'))}, {m.get('cpus', '?')} CPUs; numpy {m.get('numpy')}, torch {m.get('torch')}, mojo {m.get('mojo')}, max {m.get('max')}"
    if "bandwidth" in ctx:
        bw = ctx["bandwidth"]
        line += f"; memory bandwidth measured in the run: read {bw['read_GBps']:.1f} GB/s, write {bw['write_GBps']:.1f} GB/s"
    print(line + "\n")
    print(format_table(res["rows"], getattr(harness.family_module(fam), "COLUMNS", None)))
    print()
