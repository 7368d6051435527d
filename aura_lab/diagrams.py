"""Persistence-diagram tools: bottleneck distance (gudhi), Betti curves, barcode / diagram plots.

A *diagram* is a ``(k, 2)`` array of (birth, death) pairs, ``death = inf`` for essential bars;
``rips_persistence`` returns a list of them, one per dimension. Every function here takes one
diagram or such a list.
"""

from __future__ import annotations

import numpy as np


def as_diagram(dgm, name: str = "dgm") -> np.ndarray:
    """``dgm`` as a float64 ``(k, 2)`` array; ValueError unless births are finite and <= deaths."""
    a = np.asarray(dgm, dtype=np.float64)
    if a.size == 0:
        return np.empty((0, 2))
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{name}: expected a (k, 2) array of (birth, death), got shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError(f"{name}: contains NaN")
    if not np.all(np.isfinite(a[:, 0])):
        raise ValueError(f"{name}: births must be finite")
    if np.any(a[:, 1] < a[:, 0]):
        raise ValueError(f"{name}: every death must be >= its birth")
    return a


def _as_list(dgms, name: str) -> list[np.ndarray]:
    if isinstance(dgms, np.ndarray) and dgms.ndim == 2:
        return [as_diagram(dgms, name)]
    return [as_diagram(d, f"{name}[{k}]") for k, d in enumerate(dgms)]


def bottleneck_distance(dgm_a, dgm_b, *, e: float = 0.0) -> float:
    """Bottleneck distance between two diagrams of one dimension (gudhi; ``e=0`` is exact).

    Points on the diagonal and at infinity are handled: diagrams with different numbers of
    essential bars are at distance ``inf``.
    """
    import gudhi

    a = as_diagram(dgm_a, "dgm_a")
    b = as_diagram(dgm_b, "dgm_b")
    if (np.isinf(a[:, 1]).sum()) != (np.isinf(b[:, 1]).sum()):
        return float("inf")
    return float(gudhi.bottleneck_distance(a, b, e))


def bottleneck_distances(dgms_a, dgms_b, *, e: float = 0.0) -> list[float]:
    """Per-dimension bottleneck distances between two lists of diagrams of equal length."""
    la, lb = _as_list(dgms_a, "dgms_a"), _as_list(dgms_b, "dgms_b")
    if len(la) != len(lb):
        raise ValueError(f"dgms_b: {len(lb)} diagrams, but dgms_a has {len(la)}")
    return [bottleneck_distance(a, b, e=e) for a, b in zip(la, lb)]


def betti_curves(dgms, ts) -> np.ndarray:
    """Betti numbers ``(len(dgms), len(ts))``: beta_k(t) = #{bars of H_k with birth <= t < death}."""
    ds = _as_list(dgms, "dgms")
    t = np.asarray(ts, dtype=np.float64).reshape(-1)
    out = np.zeros((len(ds), t.size), dtype=np.int64)
    for k, d in enumerate(ds):
        if d.size:
            out[k] = ((d[:, 0][None, :] <= t[:, None]) & (t[:, None] < d[:, 1][None, :])).sum(axis=1)
    return out


def _finite_max(ds: list[np.ndarray]) -> float:
    vals = [v for d in ds for v in d[np.isfinite(d)].ravel()] if ds else []
    return float(max(vals)) if vals else 1.0


def plot_barcode(dgms, ax=None, *, dims=None, colors=None):
    """Horizontal bars, one row per interval, grouped by dimension; infinite bars end in an
    arrow past the largest finite value. Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    ds = _as_list(dgms, "dgms")
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    top = _finite_max(ds) * 1.1 or 1.0
    colors = colors or plt.rcParams["axes.prop_cycle"].by_key()["color"]
    row = 0
    for k, d in enumerate(ds):
        if dims is not None and k not in dims:
            continue
        order = np.lexsort((d[:, 1], d[:, 0])) if d.size else []
        c = colors[k % len(colors)]
        for i, j in enumerate(order):
            b, e = d[j]
            ax.plot([b, min(e, top)], [row, row], color=c, lw=1.5, label=f"H{k}" if i == 0 else None)
            if np.isinf(e):
                ax.plot([top], [row], marker=">", color=c, ms=4)
            row += 1
        row += 1
    ax.set_xlabel("filtration value")
    ax.set_yticks([])
    ax.set_title("barcode")
    if row:
        ax.legend(loc="lower right")
    return ax


def plot_diagram(dgms, ax=None, *, dims=None, colors=None):
    """Persistence diagram: (birth, death) points per dimension, the diagonal, and infinite
    deaths drawn on a dashed line above the finite ones. Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    ds = _as_list(dgms, "dgms")
    ax = ax or plt.subplots(figsize=(4.5, 4.5))[1]
    top = _finite_max(ds)
    inf_y = top * 1.1 or 1.0
    colors = colors or plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ax.plot([0, inf_y], [0, inf_y], color="0.6", lw=1)
    ax.axhline(inf_y, color="0.6", ls="--", lw=1)
    for k, d in enumerate(ds):
        if dims is not None and k not in dims:
            continue
        if d.size:
            y = np.where(np.isinf(d[:, 1]), inf_y, d[:, 1])
            ax.scatter(d[:, 0], y, s=12, color=colors[k % len(colors)], label=f"H{k}")
    ax.set_xlabel("birth")
    ax.set_ylabel("death")
    ax.set_title("persistence diagram")
    ax.legend(loc="lower right")
    return ax


def plot_betti_curves(dgms, ax=None, *, ts=None, num: int = 256):
    """Betti curves beta_k(t) over ``ts`` (default: ``num`` points from 0 to the largest finite
    value). Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    ds = _as_list(dgms, "dgms")
    ts = np.linspace(0.0, _finite_max(ds) * 1.05, num) if ts is None else np.asarray(ts, np.float64)
    curves = betti_curves(ds, ts)
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for k, c in enumerate(curves):
        ax.step(ts, c, where="post", label=f"β{k}")
    ax.set_xlabel("filtration value")
    ax.set_ylabel("Betti number")
    ax.set_title("Betti curves")
    ax.legend()
    return ax
