"""Mixture-of-Experts routing: ``route(logits, k, ...) -> Routing``.

Every variant in use today, one exact definition, four backends (``numpy`` reference,
``torch``, ``mojo`` in ``kernels/routing.mojo`` and ``max``, the same kernel as a MAX graph
op), plus the pieces a MoE layer needs around
it: ``update_bias`` (DeepSeek-V3's auxiliary-loss-free balancing), ``permute`` /
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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import _arrays as A
from ._abi import ADDR, BOOL, FLOAT, INT, Enumeration, KernelABI
from . import _max as max_backend
from ._mojo import num_threads
from ._registry import Op

SCORINGS = ("softmax", "sigmoid")
SCORING = Enumeration("scoring", SCORINGS)
#: the kernel's parameter block (kernels/aura_kernels/routing_abi.mojo is generated from it)
ABI = KernelABI("routing", [("logits", ADDR), ("T", INT), ("E", INT), ("k", INT), ("scoring", INT),
                            ("renormalize", BOOL), ("scale", FLOAT), ("bias", ADDR), ("n_groups", INT),
                            ("topk_groups", INT), ("capacity", INT), ("weights", ADDR), ("experts", ADDR),
                            ("counts", ADDR), ("perm", ADDR), ("offsets", ADDR), ("kept", ADDR), ("threads", INT)],
                enums=(SCORING,))

op = Op("routing", work=lambda size: size["T"] * size["E"])


# ---------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class RouteSpec:
    """Validated parameters of one ``route`` call, handed to every backend."""

    k: int
    scoring: str = "softmax"
    renormalize: bool = True
    scale: float = 1.0
    bias: np.ndarray | None = None  # (E,) float32, finite
    n_groups: int | None = None
    topk_groups: int | None = None
    capacity: int | None = None


def _as_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    return int(v)


def _as_real(v, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a real number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name}: must be finite, got {v}")
    return v


def _logits_array(logits) -> np.ndarray:
    if A.is_torch(logits) and logits.device.type != "cpu":
        raise ValueError(f"logits: only CPU tensors are supported, got a {logits.device.type} tensor")
    L = A.to_numpy(logits, "logits")
    if L.ndim != 2:
        raise ValueError(f"logits: expected a 2-D array (T, E), got {L.ndim}-D shape {L.shape}")
    return L


def _spec(E: int, T: int, k, scoring, renormalize, scale, bias, n_groups, topk_groups, capacity_factor) -> RouteSpec:
    k = _as_int(k, "k")
    if not 1 <= k <= E:
        raise ValueError(f"k: must be between 1 and the number of experts E={E}, got {k}")
    if not isinstance(scoring, str) or scoring not in SCORINGS:
        raise ValueError(f"scoring: unknown scoring {scoring!r}; valid: {', '.join(SCORINGS)}")
    if not isinstance(renormalize, (bool, np.bool_)):
        raise TypeError(f"renormalize: expected a bool, got {type(renormalize).__name__}")
    scale = _as_real(scale, "scale")
    b = None
    if bias is not None:
        if A.is_torch(bias) and bias.device.type != "cpu":
            raise ValueError(f"bias: only CPU tensors are supported, got a {bias.device.type} tensor")
        bn = A.to_numpy(bias, "bias")
        if bn.shape != (E,):
            raise ValueError(f"bias: expected shape ({E},) (one value per expert), got {bn.shape}")
        b = np.ascontiguousarray(bn, np.float32)
        if not np.all(np.isfinite(b)):
            raise ValueError("bias: must be finite (no NaN or inf)")
    if n_groups is None and topk_groups is not None:
        raise ValueError("topk_groups: needs n_groups")
    if n_groups is not None:
        n_groups = _as_int(n_groups, "n_groups")
        if n_groups < 1 or E % n_groups:
            raise ValueError(f"n_groups: must be a positive divisor of E={E}, got {n_groups}")
        if topk_groups is None:
            raise ValueError("topk_groups: required with n_groups (how many groups each token keeps)")
        topk_groups = _as_int(topk_groups, "topk_groups")
        if not 1 <= topk_groups <= n_groups:
            raise ValueError(f"topk_groups: must be between 1 and n_groups={n_groups}, got {topk_groups}")
        held = topk_groups * (E // n_groups)
        if k > held:
            raise ValueError(f"k: {k} experts are more than the {topk_groups} kept groups hold ({held})")
    capacity = None
    if capacity_factor is not None:
        cf = _as_real(capacity_factor, "capacity_factor")
        if cf <= 0:
            raise ValueError(f"capacity_factor: must be > 0, got {cf}")
        capacity = math.ceil(cf * T * k / E)
    return RouteSpec(k, scoring, bool(renormalize), scale, b, n_groups, topk_groups, capacity)


# ------------------------------------------------------------------------------- result

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


# ------------------------------------------------------------------------------- route

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
        n_groups, topk_groups: group-limited routing (DeepSeek-V3: 8 and 4).
        capacity_factor: ``> 0``; ``capacity = ceil(capacity_factor * T * k / E)``.
        backend: ``"auto"``, ``"numpy"``, ``"torch"`` or ``"mojo"``.

    Returns:
        ``Routing`` with numpy arrays for numpy input, torch tensors for torch input.
    """
    kind = A.kind_of(logits, bias)
    L = _logits_array(logits)
    T, E = L.shape
    spec = _spec(E, T, k, scoring, renormalize, scale, bias, n_groups, topk_groups, capacity_factor)
    if T * spec.k >= 2**31:
        raise ValueError(f"logits: T*k = {T * spec.k} assignments exceed the 2**31 - 1 limit")
    L = np.ascontiguousarray(L, np.float32)
    if T == 0:
        out = _empty(E, spec)
    else:
        need = T * spec.k * 25 + 16 * E
        if need > 64 << 20:  # reading /proc/meminfo costs ~20 us: only for large outputs
            A.check_memory(need, f"routing {T} tokens to {spec.k} experts")
        out = op.run(backend, L, spec, size={"T": T, "E": E, "k": spec.k})
    w, ids, counts, perm, offsets, kept = out
    dropped = 0 if spec.capacity is None else int(np.maximum(counts - spec.capacity, 0).sum())
    wrap = (lambda a: a) if kind == "numpy" else (lambda a: None if a is None else A.wrap(a, kind))
    return Routing(wrap(w), wrap(ids), wrap(counts), wrap(perm), wrap(offsets), spec.capacity, wrap(kept),
                   dropped, spec.scoring, L)


def _empty(E: int, spec: RouteSpec):
    k = spec.k
    kept = None if spec.capacity is None else np.zeros((0, k), bool)
    return (np.zeros((0, k), np.float32), np.zeros((0, k), np.int32), np.zeros(E, np.int64), np.zeros(0, np.int64),
            np.zeros(E + 1, np.int64), kept)


# ------------------------------------------------------------------------- numpy reference

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


def _reference_rows(l32: np.ndarray, spec: RouteSpec) -> tuple[np.ndarray, np.ndarray]:
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
def _numpy(L: np.ndarray, spec: RouteSpec, chunk: int | None = None):
    T, E = L.shape
    chunk = chunk or _rows_per_block(E)
    experts = np.empty((T, spec.k), np.int32)
    weights = np.empty((T, spec.k), np.float32)
    for i in range(0, T, chunk):
        experts[i : i + chunk], weights[i : i + chunk] = _reference_rows(L[i : i + chunk], spec)
    return (weights, experts, *_assignments(experts, E, spec.capacity))


# ------------------------------------------------------------------------------- torch

def _torch_rows(l32, spec: RouteSpec, bias64):
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
def _torch(L: np.ndarray, spec: RouteSpec, chunk: int | None = None):
    import torch

    T, E = L.shape
    chunk = chunk or _rows_per_block(E, 1 << 18)
    Lt = torch.from_numpy(L)
    bias64 = None if spec.bias is None else torch.from_numpy(spec.bias).double()
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
    return (weights.numpy(), experts.to(torch.int32).numpy(), counts.numpy(), perm.numpy(), offsets.numpy(), kept)


# ------------------------------------------------------------------ balancing, permute, layer

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


def _make_layer():
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


def __getattr__(name):  # MoELayer needs torch: build the class on first access only
    if name == "MoELayer":
        cls = _make_layer()
        globals()["MoELayer"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------- max

@op.impl("max")
def _max(L: np.ndarray, spec: RouteSpec):
    """kernels/aura_kernels/routing_ops.mojo: the mojo kernel as a MAX graph custom op."""
    from . import _max as MX

    MX.check_op("routing")
    T, E = L.shape
    k = spec.k
    # addresses are presence flags here (1 present, 0 absent): the op substitutes its tensors' addresses
    params = ABI.pack(logits=1, T=T, E=E, k=k, scoring=SCORING.id(spec.scoring), renormalize=spec.renormalize,
                      scale=spec.scale, bias=spec.bias is not None, n_groups=spec.n_groups or 0,
                      topk_groups=spec.topk_groups or 0, capacity=-1 if spec.capacity is None else spec.capacity,
                      weights=1, experts=1, counts=1, perm=1, offsets=1, kept=spec.capacity is not None,
                      threads=1 if T * E < _MOJO_SERIAL else num_threads()).words()
    inputs = [L, np.zeros(1, np.float32) if spec.bias is None else spec.bias, np.zeros(k, np.int8),
              np.zeros(E + 1, np.int8), params]

    def build(dev, pkg):
        from max.dtype import DType
        from max.graph import Graph, TensorType, ops

        T_ = lambda d, *dims: TensorType(d, list(dims), dev)  # noqa: E731
        types = [T_(DType.float32, "T", "E"), T_(DType.float32, "nb"), T_(DType.int8, "k"), T_(DType.int8, "E1"),
                 T_(DType.int64, len(ABI.fields) + 1)]
        with Graph("aura_route", input_types=types, custom_extensions=[pkg]) as g:
            logits, bias, ks, e1, params = g.inputs
            Tn, En, kn, E1 = logits.tensor.shape[0], logits.tensor.shape[1], ks.tensor.shape[0], e1.tensor.shape[0]
            outs = [T_(DType.float32, Tn, kn), T_(DType.int32, Tn, kn), T_(DType.int64, En), T_(DType.int64, Tn, kn),
                    T_(DType.int64, E1), T_(DType.uint8, Tn, kn)]
            g.output(*ops.custom("aura_route", dev, [logits, bias, ks, e1, params], out_types=outs))
        return g

    weights, experts, counts, perm, offsets, kept = MX.run(("routing",), build, *inputs)
    return (weights, experts, counts, perm.reshape(-1), offsets,
            None if spec.capacity is None else kept.view(np.bool_))


def _warm_max():
    route(np.zeros((4, 8), np.float32), 2, backend="max")


max_backend.WARMUPS["routing"] = _warm_max


# -------------------------------------------------------------------------------- mojo

_MOJO_SERIAL = 1 << 15  # below this many logits one thread beats the ~10 us thread dispatch


def _out_views(specs):
    """Views into ONE fresh buffer, 64-byte aligned (None specs give None).

    Separate multi-MB arrays were returned to the OS by malloc after each call and paid
    ~1500 page faults (~3 ms at T=65536, k=8) on the next; one allocation of the total is
    recycled. The views keep the buffer alive as long as any of them is referenced."""
    sizes = [0 if sp is None else math.prod(np.atleast_1d(sp[0]).tolist()) * np.dtype(sp[1]).itemsize for sp in specs]
    padded = [(n + 63) // 64 * 64 for n in sizes]
    buf = np.empty(sum(padded) + 64, np.uint8)
    o = (-buf.ctypes.data) % 64
    out = []
    for sp, n, pn in zip(specs, sizes, padded):
        if sp is None:
            out.append(None)
            continue
        out.append(buf[o : o + n].view(sp[1]).reshape(sp[0]))
        o += pn
    return out


@op.impl("mojo")
def _mojo(L: np.ndarray, spec: RouteSpec):
    from . import _mojo as M

    kernel = M.load("routing")
    T, E = L.shape
    k = spec.k
    perm, weights, experts, counts, offsets, kept = _out_views(
        [(T * k, np.int64), ((T, k), np.float32), ((T, k), np.int32), (E, np.int64), (E + 1, np.int64),
         None if spec.capacity is None else ((T, k), np.bool_)])
    threads = 1 if T * E < _MOJO_SERIAL else num_threads()
    block = ABI.pack(logits=L.ctypes.data, T=T, E=E, k=k, scoring=SCORING.id(spec.scoring),
                     renormalize=spec.renormalize, scale=spec.scale,
                     bias=None if spec.bias is None else spec.bias.ctypes.data, n_groups=spec.n_groups or 0,
                     topk_groups=spec.topk_groups or 0, capacity=-1 if spec.capacity is None else spec.capacity,
                     weights=weights.ctypes.data, experts=experts.ctypes.data, counts=counts.ctypes.data,
                     perm=perm.ctypes.data, offsets=offsets.ctypes.data,
                     kept=None if kept is None else kept.ctypes.data, threads=threads)
    kernel.route(block.address)
    return weights, experts, counts, perm, offsets, kept
