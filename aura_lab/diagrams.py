"""Persistence-diagram tools: bottleneck distance (gudhi), Betti curves, barcode / diagram plots,
and ``plot_cycle`` for the representatives of ``rips_persistence(..., return_cycles=True)``.

A *diagram* is a ``(k, 2)`` array of (birth, death) pairs, ``death = inf`` for essential bars;
``rips_persistence`` returns a list of them, one per dimension. Every function here takes one
diagram or such a list.
"""

from __future__ import annotations

import itertools

import numpy as np


def as_diagram(dgm, name: str = "dgm") -> np.ndarray:
    """``dgm`` as a float64 ``(k, 2)`` array; ValueError unless births are finite and <= deaths."""
    a = _floats(dgm, name)
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


def _floats(v, name: str) -> np.ndarray:
    try:
        return np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected real numbers, got {type(v).__name__} ({e})") from None


def _as_list(dgms, name: str) -> list[np.ndarray]:
    if isinstance(dgms, np.ndarray) and dgms.ndim == 2:
        return [as_diagram(dgms, name)]
    if not hasattr(dgms, "__iter__") or isinstance(dgms, (str, bytes, dict)):
        raise TypeError(f"{name}: expected a list of (k, 2) diagrams, got {type(dgms).__name__}")
    return [as_diagram(d, f"{name}[{k}]") for k, d in enumerate(dgms)]


def bottleneck_distance(dgm_a, dgm_b, *, e: float = 0.0) -> float:
    """Bottleneck distance between two diagrams of one dimension (gudhi; ``e=0`` is exact).

    Points on the diagonal and at infinity are handled: diagrams with different numbers of
    essential bars are at distance ``inf``.

    Examples:
        >>> import numpy as np, aura_lab
        >>> aura_lab.bottleneck_distance(np.array([[0., 1.]]), np.array([[0., 1.5]]))
        0.5
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
    t = _floats(ts, "ts").reshape(-1)
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


def project(X, dims: int) -> np.ndarray:
    """``X`` (n, d) in ``dims`` coordinates: itself when d <= dims (zero-padded), else its
    projection onto the top ``dims`` principal axes (PCA by SVD of the centered cloud)."""
    X = np.asarray(X, np.float64)
    if X.ndim != 2:
        raise ValueError(f"X: expected an (n, d) point cloud, got shape {X.shape}")
    if X.shape[1] <= dims:
        return np.pad(X, ((0, 0), (0, dims - X.shape[1])))
    C = X - X.mean(axis=0)
    _, _, vt = np.linalg.svd(C, full_matrices=False)
    return C @ vt[:dims].T


def plot_cycle(X, cycle, ax=None, *, color: str = "C3", points: bool = True, title: str | None = None):
    """Draw a representative ``(simplices, coeffs)`` (a cycle or cocycle of
    ``rips_persistence(..., return_cycles=True)``) on the point cloud ``X`` (n, d): vertices
    as dots, edges as segments, triangles as translucent faces. The cloud is drawn in 3-D on a
    3-D ``ax`` (the default when d == 3), else in 2-D; clouds with more coordinates than the
    axes are shown through their principal axes (``project``). Returns the Axes."""
    import matplotlib.pyplot as plt

    X = np.asarray(X, np.float64)
    if X.ndim != 2:
        raise ValueError(f"X: expected an (n, d) point cloud, got shape {X.shape}")
    try:
        simplices, _ = cycle
    except (TypeError, ValueError):
        raise TypeError("cycle: expected a (simplices, coeffs) pair from rips_persistence") from None
    S = np.asarray(simplices)
    if S.ndim != 2 or not np.issubdtype(S.dtype, np.integer):
        raise ValueError(f"cycle: simplices must be an (m, k + 1) integer array, got shape {S.shape} {S.dtype}")
    if S.size and (S.min() < 0 or S.max() >= len(X)):
        raise ValueError(f"cycle: vertex indices must be in [0, {len(X)}), got {S.min()}..{S.max()}")
    if ax is None:
        ax = plt.figure(figsize=(5, 5)).add_subplot(projection="3d" if X.shape[1] == 3 else None)
    three = hasattr(ax, "zaxis")
    P = project(X, 3 if three else 2)
    if points:
        ax.scatter(*P.T, s=6, color="0.7")
    k = S.shape[1] - 1
    if k == 0:
        ax.scatter(*P[S[:, 0]].T, s=30, color=color)
    elif k == 1:
        segs = P[S]
        if three:
            from mpl_toolkits.mplot3d.art3d import Line3DCollection

            ax.add_collection3d(Line3DCollection(segs, colors=color, linewidths=2))
        else:
            from matplotlib.collections import LineCollection

            ax.add_collection(LineCollection(segs, colors=color, linewidths=2))
    else:
        faces = [P[s] for s in S[:, :3]] if k == 2 else [P[list(f)] for s in S for f in itertools.combinations(s, 3)]
        if three:
            from mpl_toolkits.mplot3d.art3d import Poly3DCollection

            ax.add_collection3d(Poly3DCollection(faces, facecolors=color, alpha=0.35, edgecolors=color))
        else:
            from matplotlib.collections import PolyCollection

            ax.add_collection(PolyCollection(faces, facecolors=color, alpha=0.35, edgecolors=color))
    ax.set_title(title or f"H{k} representative: {len(S)} simplices")
    return ax
