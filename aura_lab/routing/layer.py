"""What a MoE layer needs around ``route``: DeepSeek-V3's bias update, ``permute`` /
``unpermute`` (gather tokens by expert, weighted combine back) and ``MoELayer``."""

from __future__ import annotations

import numpy as np

from .. import _arrays as A
from .api import route
from .problem import _as_real
from .result import Routing


def update_bias(bias, counts, gamma: float = 1e-3):
    """DeepSeek-V3's auxiliary-loss-free balancing step (a sign rule, not a gradient).

    ``bias_i - gamma`` for an overloaded expert (``counts_i`` above the mean load
    ``sum(counts) / E``), ``bias_i + gamma`` for an underloaded one, unchanged at the mean.
    ``bias (E,)``, ``counts (E,)`` (e.g. ``Routing.counts`` summed over a step); returns a new
    float32 bias of the same array kind as ``bias``.
    """
    kind = A.kind_of(bias)
    b = A.to_numpy(bias, "bias")
    c = A.to_numpy(counts, "counts")
    if b.ndim != 1:
        raise ValueError(f"bias: expected a 1-D array (E,), got shape {b.shape}")
    if c.shape != b.shape:
        raise ValueError(f"counts: expected shape {b.shape} like bias, got {c.shape}")
    gamma = _as_real(gamma, "gamma")
    if gamma < 0:
        raise ValueError(f"gamma: must be >= 0, got {gamma}")
    c = c.astype(np.float64)
    step = np.sign(c.mean() - c) if c.size else c  # +1 underloaded, -1 overloaded
    return A.wrap((b.astype(np.float64) + gamma * step).astype(np.float32), kind)


def _index_like(idx: np.ndarray, x):
    if A.is_torch(x):
        import torch

        return torch.as_tensor(A.to_numpy(idx, "index"), dtype=torch.int64, device=x.device)
    return A.to_numpy(idx, "index")


def permute(x, routing: Routing):
    """Gather token rows by expert: ``x (T, D)`` -> ``(T*k, D)`` with row ``j`` =
    ``x[routing.permutation[j] // k]``; expert ``e``'s rows are ``offsets[e]:offsets[e+1]``.

    Torch in, torch out (differentiable in ``x``); numpy in, numpy out.
    """
    T, k = routing.n_tokens, routing.k
    if len(getattr(x, "shape", ())) != 2 or x.shape[0] != T:
        raise ValueError(f"x: expected shape (T={T}, D), got {tuple(getattr(x, 'shape', ()))}")
    rows = _index_like(A.to_numpy(routing.permutation, "permutation") // k, x)
    return x[rows]


def unpermute(y, routing: Routing, weights=None):
    """Weighted combine back: ``y (T*k, D)`` in ``permute`` order -> ``(T, D)`` with
    ``out[t] = sum_s weights[t, s] * y[row of (t, s)]``; assignments dropped by capacity
    (``kept`` False) contribute nothing.

    ``weights (T, k)`` defaults to ``routing.weights`` (pass differentiable weights to train a
    router through the combine). Torch in, torch out (differentiable in ``y`` and ``weights``).
    """
    T, k = routing.n_tokens, routing.k
    if len(getattr(y, "shape", ())) != 2 or y.shape[0] != T * k:
        raise ValueError(f"y: expected shape (T*k={T * k}, D), got {tuple(getattr(y, 'shape', ()))}")
    w = routing.weights if weights is None else weights
    if tuple(w.shape) != (T, k):
        raise ValueError(f"weights: expected shape ({T}, {k}), got {tuple(w.shape)}")
    perm = A.to_numpy(routing.permutation, "permutation")
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size)
    kept = None if routing.kept is None else A.to_numpy(routing.kept, "kept")
    D = y.shape[1]
    if A.is_torch(y):
        import torch

        wt = torch.as_tensor(w, device=y.device).to(y.dtype)
        if kept is not None:
            wt = wt * torch.as_tensor(kept, device=y.device).to(y.dtype)
        ys = y.index_select(0, _index_like(inv, y)).reshape(T, k, D)
        return (ys * wt[:, :, None]).sum(1)
    wn = A.to_numpy(w, "weights").astype(y.dtype)
    if kept is not None:
        wn = wn * kept
    return np.einsum("tkd,tk->td", y[inv].reshape(T, k, D), wn)


def make_layer():
    import torch

    class MoELayer(torch.nn.Module):
        """A small MoE layer: linear router -> ``route`` -> ``permute`` -> one SiLU MLP per
        expert on its contiguous segment -> ``unpermute``.

        ``x (T, D)`` -> ``(T, D)``; experts ``y = W2 silu(W1 x + b1) + b2``. ``route_kwargs``
        go to ``route`` (scoring, bias, groups, capacity_factor, backend, ...). The routing
        decision and its weights are not differentiated (as in inference kernels); the
        experts and inputs are. ``forward_dense`` is the same layer as a plain per-token
        loop, the reference the tests compare against.
        """

        def __init__(self, d_model: int, d_hidden: int, n_experts: int, k: int, **route_kwargs):
            super().__init__()
            self.k = k
            self.route_kwargs = route_kwargs
            self.gate = torch.nn.Linear(d_model, n_experts, bias=False)
            s1, s2 = d_model**-0.5, d_hidden**-0.5
            self.w1 = torch.nn.Parameter(torch.randn(n_experts, d_hidden, d_model) * s1)
            self.b1 = torch.nn.Parameter(torch.zeros(n_experts, d_hidden))
            self.w2 = torch.nn.Parameter(torch.randn(n_experts, d_model, d_hidden) * s2)
            self.b2 = torch.nn.Parameter(torch.zeros(n_experts, d_model))
            self.last_routing: Routing | None = None

        def expert(self, e: int, h):
            return torch.nn.functional.silu(h @ self.w1[e].T + self.b1[e]) @ self.w2[e].T + self.b2[e]

        def routing(self, x) -> Routing:
            return route(self.gate(x).detach().float(), self.k, **self.route_kwargs)

        def forward(self, x):
            r = self.routing(x)
            self.last_routing = r
            xs = permute(x, r)
            offsets = r.offsets.tolist()
            cap = r.capacity
            parts = []
            for e in range(r.n_experts):
                a, b = offsets[e], offsets[e + 1]
                n_run = b - a if cap is None else min(b - a, cap)  # rows past capacity are dropped
                if n_run:
                    parts.append(self.expert(e, xs[a : a + n_run]))
                if b - a - n_run:
                    parts.append(xs.new_zeros((b - a - n_run, xs.shape[1])))
            ys = torch.cat(parts) if parts else xs.new_zeros((0, x.shape[1]))
            return unpermute(ys, r)

        def forward_dense(self, x):
            r = self.routing(x)
            out = torch.zeros_like(x)
            for t in range(x.shape[0]):
                for s in range(self.k):
                    if r.kept is None or bool(r.kept[t, s]):
                        out[t] += r.weights[t, s] * self.expert(int(r.experts[t, s]), x[t])
            return out

    return MoELayer
