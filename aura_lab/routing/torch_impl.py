"""``route`` in torch ops (the same definitions; stable sorts for the tie rule)."""

from __future__ import annotations

from .. import _arrays as A
from .problem import RouteArrays, RoutingProblem, op
from .reference import _EXP_C, _EXP_LIMIT, _LN2_HI, _LN2_LO, _LOG2E, _rows_per_block


def _torch_rows(l32, spec: RoutingProblem, bias64):
    """The definition in torch ops (stable sorts for the tie rule; torch.topk has none)."""
    import torch

    nan = torch.isnan(l32)
    l = l32.double().masked_fill(nan, float("-inf"))
    n, E = l.shape
    key = l if bias64 is None else (_torch_key_scores(l, spec.scoring) + bias64).masked_fill(nan, float("-inf"))
    cand = None
    if spec.n_groups is not None:
        size = E // spec.n_groups
        g = key.view(n, spec.n_groups, size)
        gscore = g.amax(-1) if bias64 is None else g.topk(min(2, size), dim=-1).values.sum(-1)
        best = torch.sort(gscore, dim=1, descending=True, stable=True).indices[:, : spec.topk_groups]
        best = torch.sort(best, dim=1).values
        cand = (best[:, :, None] * size + torch.arange(size)).reshape(n, -1)
        key = key.gather(1, cand)
    order = _torch_topk_exact(key, spec.k)
    experts = order if cand is None else cand.gather(1, order)
    ls = l.gather(1, experts)
    if spec.scoring == "softmax" and spec.renormalize:
        w = _torch_softmax(ls)
    elif spec.scoring == "softmax":  # p of the selected: exp(l - m) / sum over the row
        m = l.amax(1, keepdim=True)
        fin = torch.isfinite(m)
        z = torch.exp(l - torch.where(fin, m, 0.0)).sum(1, keepdim=True)
        w = torch.where(fin, torch.exp(ls - torch.where(fin, m, 0.0)) / torch.where(fin, z, 1.0), 0.0)
        pos = m == float("inf")
        w = torch.where(pos, (ls == float("inf")).double() / (l == float("inf")).sum(1, keepdim=True), w)
    else:
        w = 1.0 / (1.0 + torch.exp(-ls))
        if spec.renormalize:
            s = w.sum(1, keepdim=True)
            w = torch.where(s > 0, w / torch.where(s > 0, s, 1.0), 0.0)
    return experts, w * spec.scale


def _torch_topk_exact(key, k: int):
    """Indices of the top-k of each row of ``key`` (no NaN) under the tie rule, ordered by
    descending key, then ascending index. torch.topk documents no tie order, so it only
    supplies the k-th largest value and, where no other key equals that value, the set;
    rows with ties at the boundary take every key above it plus the lowest-index ties."""
    import torch

    vals, idx = torch.topk(key, k, dim=1)
    kth = vals[:, k - 1 : k]
    idx = idx.sort(dim=1).values
    ambiguous = (key >= kth).sum(1) > k
    if bool(ambiguous.any()):
        kb, kt = key[ambiguous], kth[ambiguous]
        above, tied = kb > kt, kb == kt
        room = k - above.sum(1, keepdim=True)
        chosen = above | (tied & (torch.cumsum(tied, dim=1) <= room))
        idx[ambiguous] = chosen.nonzero()[:, 1].view(kb.shape[0], k)  # row-major: ascending index
    order = torch.sort(key.gather(1, idx), dim=1, descending=True, stable=True).indices
    return idx.gather(1, order)


def _torch_portable_exp(x):
    """``portable_exp`` in torch ops (the same IEEE operations, so the same bits)."""
    import torch

    xc = x.clamp(-_EXP_LIMIT, _EXP_LIMIT)
    n = torch.floor(xc * _LOG2E + 0.5)
    r = (xc - n * _LN2_HI) - n * _LN2_LO
    p = torch.full_like(r, _EXP_C[12])
    for c in _EXP_C[11::-1]:
        p = p * r + c
    y = p * ((n.long() + 1023) << 52).view(torch.float64)
    return torch.where(x < -_EXP_LIMIT, 0.0, torch.where(x > _EXP_LIMIT, float("inf"), y))


def _torch_key_scores(l, scoring: str):
    import torch

    if scoring == "sigmoid":
        return 1.0 / (1.0 + _torch_portable_exp(-l))
    m = l.amax(1, keepdim=True)
    fin = torch.isfinite(m)
    e = torch.where(fin, _torch_portable_exp(torch.where(fin, l - torch.where(fin, m, 0.0), 0.0)), 0.0)
    e = torch.where(m == float("inf"), (l == float("inf")).double(), e)
    z = torch.zeros_like(m)
    for j in range(l.shape[1]):
        z = z + e[:, j : j + 1]
    return torch.where(z > 0, e / torch.where(z > 0, z, 1.0), 0.0)


def _torch_softmax(x):
    """Row softmax of float64 ``x`` (no NaN) with the same limits as ``_softmax_rows``."""
    import torch

    m = x.amax(1, keepdim=True)
    fin = torch.isfinite(m)
    e = torch.where(fin, torch.exp(x - torch.where(fin, m, 0.0)), 0.0)
    pos = m == float("inf")
    e = torch.where(pos, (x == float("inf")).double(), e)
    s = e.sum(1, keepdim=True)
    return torch.where(s > 0, e / torch.where(s > 0, s, 1.0), 0.0)


@op.impl("torch")
def _torch(spec: RoutingProblem) -> RouteArrays:
    import torch

    L = spec.logits
    T, E = L.shape
    chunk = _rows_per_block(E, 1 << 18)
    Lt = A.to_torch(L)
    bias64 = None if spec.bias is None else A.to_torch(spec.bias).double()
    experts = torch.empty((T, spec.k), dtype=torch.int64)
    weights = torch.empty((T, spec.k), dtype=torch.float32)
    with torch.inference_mode():
        for i in range(0, T, chunk):
            e, w = _torch_rows(Lt[i : i + chunk], spec, bias64)
            experts[i : i + chunk] = e
            weights[i : i + chunk] = w.float()
        flat = experts.reshape(-1)
        counts = torch.bincount(flat, minlength=E)
        perm = torch.sort(flat, stable=True).indices
        offsets = torch.zeros(E + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(counts, 0)
        kept = None
        if spec.capacity is not None:
            rank = torch.empty_like(flat)
            rank[perm] = torch.arange(flat.numel()) - offsets[flat[perm]]
            kept = (rank < spec.capacity).reshape(T, spec.k).numpy()
    return RouteArrays(weights.numpy(), experts.to(torch.int32).numpy(), counts.numpy(), perm.numpy(), offsets.numpy(),
                       kept)
