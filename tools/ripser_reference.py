"""ripser.py's diagrams of the standard sets, stored for tests/unit/test_persistence.py.

    python tools/ripser_reference.py

``test_standard_set_matches_ripser`` compares the mojo engine with ripser.py on the five
standard sets; ripser.py takes ~80 s of the suite on them (47 s on fract-r alone), the same
every run. So its output is computed here once and stored in
``tests/data/ripser_standard_sets.json``: for each set, the sha256 of its data file, the
``rips_persistence`` arguments, and ripser.py's ``dgms`` exactly as it returned them (bars as
[birth, death], death null for infinity; "digits": "float32" when every value is a float32,
written in float32's shortest digits and read back through float32, else float64's). The file records the
ripser.py, numpy and Python versions that made it. It stays an independent check: it is
ripser.py's output, not ours; the test checks that each data file still has the stored hash,
and ``test_stored_ripser_reference_is_ripsers_output`` recomputes one set (o3_1024) live.

Run it (~80 s) after a change of a standard set's data or arguments, or of ripser.py's version.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np

from aura_lab.harness.persistence import DATA_DIR, STANDARD_SETS, load_standard_set, ripser_dgms

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "ripser_standard_sets.json"


def data_sha256(name: str) -> str:
    return hashlib.sha256((DATA_DIR / STANDARD_SETS[name][0]).read_bytes()).hexdigest()


def digits(dgms: list[np.ndarray]) -> str:
    """"float32" when every value is a float32 (ripser.py's from float32 input, held in float64):
    then float32's shortest digits are written, read back through float32; else "float64"."""
    v = np.concatenate([d.ravel() for d in dgms])
    return "float32" if np.array_equal(v.astype(np.float32).astype(np.float64), v) else "float64"


def written(x, kind: str):
    if np.isinf(x):
        return None
    return float(np.format_float_positional(np.float32(x), unique=True)) if kind == "float32" else float(x)


def entry(name: str) -> dict:
    """One set's stored record: its data file's hash, its arguments and ripser.py's diagrams."""
    X, kw, _ = load_standard_set(name)
    dgms = ripser_dgms(X, kw)
    kind = digits(dgms)
    return {"sha256": data_sha256(name), "kw": kw, "dtype": str(dgms[0].dtype), "digits": kind,
            "dgms": [[[written(b, kind), written(d, kind)] for b, d in dgm] for dgm in dgms]}


def provenance() -> dict:
    import ripser

    return {"made_by": "tools/ripser_reference.py", "ripser.py": getattr(ripser, "__version__", "?"),
            "numpy": np.__version__, "python": platform.python_version(),
            "input": "load_standard_set(name) (float32), ripser.ripser(X, maxdim, thresh, distance_matrix)['dgms']"}


def main() -> int:
    sets = {name: entry(name) for name in STANDARD_SETS}
    OUT.write_text(json.dumps({"provenance": provenance(), "sets": sets}, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
