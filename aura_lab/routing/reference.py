"""The numpy reference of ``route``: the definitions of the package docstring, row block by
row block, plus ``portable_exp`` (the exp every backend's selection keys use)."""

from __future__ import annotations

import math

import numpy as np

from .problem import RouteArrays, RoutingProblem, op


def _rows_per_block(E: int, elements: int = 1 << 20) -> int:
    """Rows per block for the numpy / torch paths, bounding the float64 temporaries (numpy:
    8 MiB, which malloc recycles; torch's bigger temporaries came back as fresh pages on
    every operation, so it uses 2 MiB)."""
    return max(1, elements // max(1, E))


def _clean(l32: np.ndarray) -> np.ndarray:
    """float64 logits with NaN -> -inf."""
    l = np.asarray(l32, np.float64)
    return np.where(np.isnan(l), -np.inf, l)


def _softmax_rows(x: np.ndarray) -> np.ndarray:
    """Row softmax of float64 ``x`` (no NaN) with the limits: max +inf -> equal mass on the +inf
    entries; all -inf -> 0."""
    m = x.max(axis=1, keepdims=True)
    fin = np.isfinite(m)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.where(fin, np.exp(x - np.where(fin, m, 0.0)), 0.0)
    pos = m[:, 0] == np.inf
    e[pos] = x[pos] == np.inf
    s = e.sum(axis=1, keepdims=True)
    return np.divide(e, s, out=np.zeros_like(e), where=s > 0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


# portable_exp: Cody-Waite reduction + degree-12 Taylor polynomial, every step one IEEE
# operation (the Mojo kernel fences each product so that nothing is fused into an FMA).
_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # fdlibm ln2_hi: n * _LN2_HI is exact for |n| < 2**21
_LN2_LO = 1.9082149292705877e-10
_EXP_C = tuple(1.0 / math.factorial(i) for i in range(13))
_EXP_LIMIT = 708.0


def portable_exp(x: np.ndarray) -> np.ndarray:
    """exp(x) in float64 to ~1 ulp, as the same IEEE operations in every backend.

    0 below -708, inf above 708 (the range where 2**n stays a normal float64)."""
    xc = np.clip(x, -_EXP_LIMIT, _EXP_LIMIT)
    n = np.floor(xc * _LOG2E + 0.5)
    r = (xc - n * _LN2_HI) - n * _LN2_LO
    p = np.full_like(r, _EXP_C[12])
    for c in _EXP_C[11::-1]:
        p = p * r + c
    y = p * ((n.astype(np.int64) + 1023) << 52).view(np.float64)
    return np.where(x < -_EXP_LIMIT, 0.0, np.where(x > _EXP_LIMIT, np.inf, y))


def _key_scores(l: np.ndarray, scoring: str) -> np.ndarray:
    """The scores inside the selection keys: portable_exp, sequential softmax sum."""
    if scoring == "sigmoid":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + portable_exp(-l))
    m = l.max(axis=1, keepdims=True)
    fin = np.isfinite(m)
    with np.errstate(invalid="ignore"):
        e = np.where(fin, portable_exp(np.where(fin, l - np.where(fin, m, 0.0), 0.0)), 0.0)
    pos = m[:, 0] == np.inf
    e[pos] = l[pos] == np.inf
    z = np.zeros((l.shape[0], 1))
    for j in range(l.shape[1]):  # in index order, as every backend sums
        z = z + e[:, j : j + 1]
    return np.divide(e, z, out=np.zeros_like(e), where=z > 0)


def _reference_rows(l32: np.ndarray, spec: RoutingProblem) -> tuple[np.ndarray, np.ndarray]:
    """(experts (n, k) int64, weights (n, k) float64) for a block of rows, by the definition."""
    l = _clean(l32)
    n, E = l.shape
    p = _softmax_rows(l) if spec.scoring == "softmax" else _sigmoid(l)
    if spec.bias is None:
        key = l
    else:
        key = np.where(np.isnan(l32), -np.inf, _key_scores(l, spec.scoring) + spec.bias.astype(np.float64))
    cand = np.broadcast_to(np.arange(E), (n, E))
    if spec.n_groups is not None:
        size = E // spec.n_groups
        g = key.reshape(n, spec.n_groups, size)
        gscore = g.max(-1) if spec.bias is None else np.sort(g, axis=-1)[..., -2:].sum(-1)
        best = np.sort(np.argsort(-gscore, axis=1, kind="stable")[:, : spec.topk_groups], axis=1)
        cand = (best[:, :, None] * size + np.arange(size)).reshape(n, -1)
    ckey = np.take_along_axis(key, cand, 1)
    order = np.argsort(-ckey, axis=1, kind="stable")[:, : spec.k]  # stable: lower index first among ties
    experts = np.take_along_axis(cand, order, 1)
    if spec.scoring == "softmax" and spec.renormalize:
        w = _softmax_rows(np.take_along_axis(l, experts, 1))
    else:
        w = np.take_along_axis(p, experts, 1)
        if spec.renormalize:
            s = w.sum(1, keepdims=True)
            w = np.divide(w, s, out=np.zeros_like(w), where=s > 0)
    return experts, w * spec.scale


def _assignments(experts: np.ndarray, E: int, capacity: int | None):
    """counts, stable permutation, offsets and kept mask from the (T, k) expert ids."""
    flat = experts.ravel()
    counts = np.bincount(flat, minlength=E).astype(np.int64)
    perm = np.argsort(flat, kind="stable").astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    kept = None
    if capacity is not None:
        rank = np.empty(flat.size, np.int64)
        rank[perm] = np.arange(flat.size) - offsets[flat[perm]]  # position within the expert's segment
        kept = (rank < capacity).reshape(experts.shape)
    return counts, perm, offsets, kept


@op.impl("numpy")
def _numpy(spec: RoutingProblem) -> RouteArrays:
    L = spec.logits
    T, E = L.shape
    chunk = _rows_per_block(E)
    experts = np.empty((T, spec.k), np.int32)
    weights = np.empty((T, spec.k), np.float32)
    for i in range(0, T, chunk):
        experts[i : i + chunk], weights[i : i + chunk] = _reference_rows(L[i : i + chunk], spec)
    return RouteArrays(weights, experts, *_assignments(experts, E, spec.capacity))


def balance_stats(logits: np.ndarray, counts: np.ndarray, k: int, scoring: str, chunk: int | None = None) -> dict:
    """The balance statistics of ``Routing`` (float64 numpy, ``chunk`` tokens at a time)."""
    T, E = logits.shape
    chunk = chunk or _rows_per_block(E)
    prob_sum = np.zeros(E)
    z_sum = 0.0
    for i in range(0, T, chunk):
        l = _clean(logits[i : i + chunk])
        p = _softmax_rows(l) if scoring == "softmax" else _sigmoid(l)
        if scoring == "sigmoid":
            s = p.sum(1, keepdims=True)
            p = np.divide(p, s, out=np.zeros_like(p), where=s > 0)
        prob_sum += p.sum(0)
        m = l.max(1)
        with np.errstate(invalid="ignore", over="ignore"):
            lse = m + np.log(np.exp(l - np.where(np.isfinite(m), m, 0.0)[:, None]).sum(1))
        lse = np.where(np.isfinite(m), lse, m)
        z_sum += float(np.sum(lse * lse))
    counts = np.asarray(counts, np.float64)
    nan = float("nan")
    if T == 0:
        return {"aux_loss": nan, "hf_aux_loss": nan, "z_loss": nan, "max_load": 0, "mean_load": 0.0, "load_imbalance": nan}
    f = counts / (T * k)
    aux = float(E * np.sum(f * prob_sum / T))
    mean_load = T * k / E
    max_load = int(counts.max())
    return {"aux_loss": aux, "hf_aux_loss": k * aux, "z_loss": z_sum / T, "max_load": max_load,
            "mean_load": mean_load, "load_imbalance": max_load / mean_load}
