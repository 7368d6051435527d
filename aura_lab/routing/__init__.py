"""Mixture-of-Experts routing: ``route(logits, k, ...) -> Routing``.

Every variant in use today, one exact definition, four backends (``numpy`` reference,
``torch``, ``mojo`` in ``kernels/routing.mojo`` and ``max``, the same kernel as a MAX graph
op), plus the pieces a MoE layer needs around it (``layer``): ``update_bias`` (DeepSeek-V3's auxiliary-loss-free balancing), ``permute`` /
``unpermute`` (gather tokens by expert, weighted combine back) and ``MoELayer`` (a small
torch layer with MLP experts built on them).

Definitions (``l = logits (T, E)`` cast to float32; scores and weights are computed in
float64 and stored as float32):

* **NaN policy.** A NaN logit counts as ``-inf`` in the scores (probability / sigmoid 0,
  left out of the softmax normalization) and its *selection key* is ``-inf`` even when a
  bias is given. NaN experts are therefore chosen only when a token has fewer than ``k``
  other candidates, and then lowest index first. Ids are always in range and distinct,
  weights always finite. ``+inf`` / ``-inf`` logits keep their order; a softmax whose row
  maximum is ``+inf`` puts equal mass on the ``+inf`` entries (the limit), one whose entries
  are all ``-inf`` gives 0.
* **Scores.** ``softmax``: ``p = softmax(l)`` over the E experts; ``sigmoid``: ``p = 1 / (1 + exp(-l))``.
* **Selection key.** Without ``bias``: the logit itself (scores are a strictly increasing
  function of it, so this is selection by score, exactly, without rounding ties). With
  ``bias (E,)``: ``p + bias`` in float64 (DeepSeek-V3: the bias steers selection only),
  where ``p`` is computed with ``portable_exp`` (a fixed sequence of IEEE operations, so
  every backend gets the same bits and therefore the same ties, also between group sums;
  it is 0 below -708 and inf above 708) and, for softmax, a sequential sum over the
  experts in index order. ``bias`` is cast to float32 first.
* **Groups** (``n_groups``, ``topk_groups``; DeepSeek-V2/V3): experts ``[g*E/G, (g+1)*E/G)``
  form group ``g``; a group's score is the max key in it without a bias, the sum of its
  two largest keys with one; the ``topk_groups`` best groups are kept (ties: lower group
  index) and the ``k`` experts are chosen among their experts only.
* **Tie rule.** Among equal keys the lower expert index is chosen first; a token's ``k``
  slots are ordered by descending key, then ascending expert index.
* **Weights.** ``softmax`` + ``renormalize``: softmax over the ``k`` selected logits
  (= Mixtral's top-k-then-softmax = HF's softmax, top-k, divide by the sum);
  ``softmax`` without: ``p`` of the selected experts; ``sigmoid``: ``p`` of the selected
  experts, divided by their sum with ``renormalize`` (0 stays 0). Then ``* scale``. The bias
  never enters the weights.
* **Permutation.** The ``T*k`` assignments ``a = t*k + s`` (token ``t``, slot ``s``) sorted
  by expert with a stable sort: ascending token index within an expert. ``offsets (E+1,)``
  delimit each expert's segment.
* **Capacity.** ``capacity = ceil(capacity_factor * T * k / E)`` (evaluated in Python
  floats: ``math.ceil(capacity_factor * T * k / E)``). Each expert keeps its first
  ``capacity`` assignments in token order (first come, first served; a token never holds an
  expert twice, so slot order within a token never competes); ``kept (T, k)`` marks them and
  ``dropped`` counts the rest. ``counts`` are the routed (pre-drop) loads.

All backends return identical ids, counts, permutation, offsets and kept masks (the keys
are the float32 logits themselves or bit-identical float64 values) and weights within
1e-6 relative of the float64 reference.

The package, one module per stage as state-spaces/mamba lays out its ops: ``problem``
(validation into one ``RoutingProblem``, the backends' result type), ``reference`` (the numpy
definition and the balance statistics), ``torch_impl``, ``kernels`` (mojo and max),
``result`` (``Routing``), ``api`` (``route``) and ``layer``.
"""

from __future__ import annotations

from . import kernels, reference, torch_impl  # noqa: F401  (register the backends)
from .api import route
from .layer import permute, unpermute, update_bias
from .problem import ABI, SCORING, SCORINGS, RouteArrays, RoutingProblem, op
from .reference import balance_stats, portable_exp
from .result import Routing

__all__ = ["ABI", "SCORING", "SCORINGS", "MoELayer", "RouteArrays", "Routing", "RoutingProblem", "balance_stats", "op",
           "permute", "portable_exp", "route", "unpermute", "update_bias"]


def __getattr__(name):  # MoELayer needs torch: build the class on first access only
    if name == "MoELayer":
        from .layer import make_layer

        cls = make_layer()
        globals()["MoELayer"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
