"""``Routing``, the result of ``route`` (arrays in the caller's kind, lazy balance statistics)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .. import _arrays as A
from .reference import balance_stats


@dataclass(eq=False)
class Routing:
    """The routing of ``T`` tokens to ``k`` of ``E`` experts (arrays in the caller's kind).

    Attributes:
        weights: ``(T, k)`` float32, slot ``s`` of token ``t`` weighs expert ``experts[t, s]``.
        experts: ``(T, k)`` int32, distinct per token, by descending selection key.
        counts: ``(E,)`` int64 tokens routed to each expert (before capacity drops).
        permutation: ``(T*k,)`` int64 assignment ids ``t*k + s`` sorted by expert, ascending
            token within an expert (stable); ``permutation // k`` are the token rows.
        offsets: ``(E+1,)`` int64, expert ``e`` owns ``permutation[offsets[e]:offsets[e+1]]``.
        capacity: slots per expert, or None without ``capacity_factor``.
        kept: ``(T, k)`` bool, the assignments within capacity (None without capacity).
        dropped: assignments over capacity (0 without capacity).

    Balance statistics are computed on first access, in float64 numpy, from the logits
    passed to ``route`` (kept by reference, not copied): ``aux_loss``, ``hf_aux_loss``,
    ``z_loss``, ``max_load``, ``mean_load``, ``load_imbalance``.
    """

    weights: object
    experts: object
    counts: object
    permutation: object
    offsets: object
    capacity: int | None
    kept: object | None
    dropped: int
    scoring: str
    logits: np.ndarray = field(repr=False)

    @property
    def n_tokens(self) -> int:
        return int(self.experts.shape[0])

    @property
    def k(self) -> int:
        return int(self.experts.shape[1])

    @property
    def n_experts(self) -> int:
        return int(self.counts.shape[0])

    @cached_property
    def _stats(self) -> dict:
        return balance_stats(self.logits, A.to_numpy(self.counts, "counts"), self.k, self.scoring)

    @property
    def aux_loss(self) -> float:
        """``E * sum_i f_i * P_i``: 1.0 at perfect balance, larger when unbalanced.

        ``f_i = counts_i / (T*k)`` is the fraction of assignments routed to expert ``i`` and
        ``P_i`` the mean over tokens of its normalized score (softmax probability; for
        sigmoid scoring the sigmoid scores divided by their sum over the experts, as in
        DeepSeek-V3's balance loss). Switch's loss for k = 1; HF's
        ``load_balancing_loss_func`` divided by ``k`` (see ``hf_aux_loss``).
        """
        return self._stats["aux_loss"]

    @property
    def hf_aux_loss(self) -> float:
        """HF ``load_balancing_loss_func`` (Mixtral, Qwen-MoE) on these experts: ``k * aux_loss`` (k at balance)."""
        return self._stats["hf_aux_loss"]

    @property
    def z_loss(self) -> float:
        """Router z-loss (ST-MoE): mean over tokens of ``logsumexp(logits)**2`` (NaN logits as -inf)."""
        return self._stats["z_loss"]

    @property
    def max_load(self) -> int:
        return self._stats["max_load"]

    @property
    def mean_load(self) -> float:
        """``T * k / E``, the load of every expert at perfect balance."""
        return self._stats["mean_load"]

    @property
    def load_imbalance(self) -> float:
        """``max_load / mean_load`` (1.0 at perfect balance)."""
        return self._stats["load_imbalance"]
