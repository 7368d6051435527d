# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # aura_lab: a tour
#
# Every op in aura_lab has a readable numpy reference, interchangeable backends
# (`numpy`, `torch`, `mojo`, `max`), a validation report against an independent reference
# and a benchmark against peer libraries. This notebook shows what runs here, checks every
# backend, gives you one comparison panel per op, and reproduces the docs' results.
#
# `AURA_SIZE` (below) keeps the default run small; raise it (`medium`, `large`) or use the
# panels' size selectors to scale up.

# %% tags=["parameters"]
import os

SIZE = os.environ.get("AURA_SIZE", "small")
SEED = 0

# %%
import json
from pathlib import Path

import numpy as np
import pandas as pd

import aura_lab
from aura_lab import harness
from aura_lab.widgets import ComparisonPanel

RESULTS = Path("../data/results")
FAMILIES = list(harness.FAMILIES)

# %% [markdown]
# ## Backends on this machine
# Unavailable backends say why. `aura_lab.last_dispatch()` tells which backend ran a call.

# %%
pd.DataFrame([{"backend": b.name, "available": b.available, "version": b.version, "detail": b.detail or b.reason}
              for b in aura_lab.backends()])

# %%
X = np.random.default_rng(SEED).standard_normal((500, 3)).astype(np.float32)
D = aura_lab.pairwise_distances(X)
print(aura_lab.last_dispatch())
print(aura_lab.explain("distance", n=500, m=500, d=3))

# %% [markdown]
# ## One comparison panel per op
# Toggle backends, pick sizes and dtype, press **Run**: time, throughput, speed-up over the
# reference, and a correctness badge per backend (its largest error against the reference).
# The sweep runs in the background (the notebook stays usable) and the table fills in case by
# case; **Stop** ends it and keeps the cases finished so far. From code: `p.run.click(); p.wait()`.
# The full validation reports are `aura-lab validate <family>` (distance, ssd, routing,
# persistence) and `aura-lab validate max`; each experiment notebook checks its own op.

# %%
panels = {fam: ComparisonPanel(fam) for fam in FAMILIES}
for p in panels.values():
    display(p)

# %% tags=["nbval-ignore-output"]
# the same panels driven from code, at the smallest size of each op
for fam, p in panels.items():
    p.repeats.value = 1
    p.run.click()
    p.wait()

# %%
# NBVAL_CHECK_OUTPUT
for fam, p in panels.items():
    ok = all(r.get("passed") for r in p.results)
    print(f"{fam} panel: every available backend agrees with the {p.spec.reference} reference: {ok}")

# %% [markdown]
# ## The stored results
# The tables below are the stored output of the one `aura-lab bench <family>` run quoted in
# the docs (`data/results/`). At `AURA_SIZE=large` the sweeps are rerun here, live.

# %%
stored = {p.stem.removeprefix("bench-"): json.loads(p.read_text()) for p in sorted(RESULTS.glob("bench-*.json"))}
for fam, res in stored.items():
    m = res["context"]["machine"]
    print(f"{fam}: {len(res['rows'])} rows, measured on {m.get('cpu', m['machine'])} ({m['cpus']} CPUs)")

# %%
for fam, res in stored.items():
    cols = getattr(harness.family_module(fam), "COLUMNS", None)
    df = pd.DataFrame(res["rows"])
    display(df[[c for c in cols if c in df.columns]] if cols else df)

# %%
if SIZE == "large":
    for fam in FAMILIES:
        live = harness.bench(fam)
        print(f"# live: aura-lab bench {fam}")
        print(live.table(getattr(harness.family_module(fam), "COLUMNS", None)))
