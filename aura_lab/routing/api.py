"""``route``: validation into one problem, dispatch, the result in the caller's array kind."""

from __future__ import annotations

import numpy as np

from .. import _arrays as A
from .problem import empty_result, op, validate
from .result import Routing


def route(logits, k: int, *, scoring: str = "softmax", renormalize: bool = True, scale: float = 1.0, bias=None,
          n_groups: int | None = None, topk_groups: int | None = None, capacity_factor: float | None = None,
          backend: str = "auto") -> Routing:
    """Route each of ``T`` tokens to ``k`` of ``E`` experts (see the module docstring for the math).

    Args:
        logits: ``(T, E)`` router logits, numpy or CPU torch (cast to float32).
        k: experts per token, ``1 <= k <= E`` (and at most what the kept groups hold).
        scoring: ``"softmax"`` or ``"sigmoid"``.
        renormalize: divide the k weights by their sum (softmax: softmax over the top-k logits).
        scale: multiplies the final weights (DeepSeek-V3: 2.5).
        bias: ``(E,)`` finite selection bias (DeepSeek-V3 ``e_score_correction_bias``); selection only.
        n_groups: group-limited routing: the number of expert groups (DeepSeek-V3: 8).
        topk_groups: group-limited routing: the groups kept per token (DeepSeek-V3: 4).
        capacity_factor: ``> 0``; ``capacity = ceil(capacity_factor * T * k / E)``.
        backend: ``"auto"``, ``"numpy"``, ``"torch"``, ``"mojo"`` or ``"max"``.

    Returns:
        ``Routing`` with numpy arrays for numpy input, torch tensors for torch input.

    Examples:
        >>> import numpy as np, aura_lab
        >>> r = aura_lab.route(np.array([[1., 3., 2.]]), 2, backend="numpy")
        >>> r.experts
        array([[1, 2]], dtype=int32)
        >>> np.round(r.weights, 4)
        array([[0.7311, 0.2689]], dtype=float32)
    """
    kind = A.kind_of(logits, bias)
    prob = validate(logits, k, scoring, renormalize, scale, bias, n_groups, topk_groups, capacity_factor)
    if prob.logits.shape[0] == 0:
        op.check_backend(backend)
    out = empty_result(prob) if prob.logits.shape[0] == 0 else op.run(backend, prob)
    dropped = 0 if prob.capacity is None else int(np.maximum(out.counts - prob.capacity, 0).sum())
    wrap = (lambda a: a) if kind == "numpy" else (lambda a: None if a is None else A.wrap(a, kind))
    return Routing(*(wrap(a) for a in out[:5]), prob.capacity, wrap(out.kept), dropped, prob.scoring, prob.logits)
