# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Mixture-of-Experts routing
#
# A Mixture-of-Experts layer sends each token to `k` of `E` expert MLPs. A linear router gives each
# token a row of logits `l = x W` (shape `(E,)`). Routing then picks `k` experts per token and
# assigns the weights that combine their outputs:
#
# $$y = \sum_{s=1}^{k} w_s \,\mathrm{FFN}_{e_s}(x).$$
#
# `aura_lab.route(logits, k, ...)` implements the variants in use today with one exact definition
# and three backends (`numpy` reference, `torch`, `mojo`). It returns a `Routing` holding the expert
# ids and weights, the per-expert loads (`counts`), the permutation that groups tokens by expert,
# and the capacity bookkeeping. Its balance statistics (`aux_loss`, `load_imbalance`, ...) are
# computed lazily. This notebook covers:
#
# 1. the routing variants on the **same logits**: which experts and weights each one picks;
# 2. expert-load histograms;
# 3. two ways to keep the loads balanced while a simulated router drifts: an auxiliary loss, and
#    DeepSeek-V3's bias;
# 4. the capacity factor against the fraction of dropped tokens;
# 5. a small MoE layer built on `permute` / `unpermute`, checked against a plain per-token loop;
# 6. the backend comparison panel.
#
# `AURA_SIZE` (below) keeps the default run small. Set it to `medium` or `large` to scale up.

# %% tags=["parameters"]
import os

SIZE = os.environ.get("AURA_SIZE", "small")
SEED = 0

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import aura_lab
from aura_lab import harness, routing
from aura_lab.routing import MoELayer, permute, route, unpermute, update_bias
from aura_lab.widgets import ComparisonPanel

CFG = {
    "small": dict(T=4096, d=32, E=64, k=4, groups=(8, 4), n_popular=4, fit_steps=100,
                  sim=dict(B=1024, steps=150, aux_lr=1.0), layer=dict(T=256, d_model=32, d_hidden=64, E=8, k=2)),
    "medium": dict(T=16384, d=64, E=256, k=8, groups=(8, 4), n_popular=8, fit_steps=200,
                   sim=dict(B=2048, steps=300, aux_lr=4.0), layer=dict(T=512, d_model=64, d_hidden=128, E=16, k=2)),
    "large": dict(T=65536, d=64, E=256, k=8, groups=(8, 4), n_popular=8, fit_steps=300,
                  sim=dict(B=4096, steps=600, aux_lr=4.0), layer=dict(T=1024, d_model=64, d_hidden=256, E=32, k=4)),
}[SIZE]
T, d, E, k = CFG["T"], CFG["d"], CFG["E"], CFG["k"]
G, G_KEEP = CFG["groups"]
rng = np.random.default_rng(SEED)
torch.manual_seed(SEED)
BACKENDS = [b.name for b in aura_lab.backends() if b.available and b.name in routing.op.backends]
print(f"AURA_SIZE={SIZE}: T={T} tokens, E={E} experts, k={k}; routing backends available here: {', '.join(BACKENDS)}")

# %% [markdown]
# ## A router with popular experts
#
# The token features are `x ~ N(μ, I)` in `d` dimensions, and they share a common direction `μ`
# (as hidden states do). The router `W (d, E)` starts with random unit-norm columns. A few
# **popular** experts have their column tilted toward `μ`, so their logits are higher for most
# tokens. This stands in for a router partway through training whose loads have become unbalanced.
# Section 3 builds the tilt step by step. All logits below come from this router.


# %%
def tokens(n, rng):
    """n token features x ~ N(mu, I), float32."""
    return (rng.standard_normal((n, d)) + MU).astype(np.float32)


MU = np.zeros(d)
MU[0] = 1.0  # the shared direction (unit length)
W0 = rng.standard_normal((d, E))
W0[0] = 0.0  # no initial preference along mu ...
W0 /= np.linalg.norm(W0, axis=0)  # ... and equal column norms: a balanced router to start with
POPULAR = np.sort(rng.choice(E, CFG["n_popular"], replace=False))
DRIFT = np.zeros((d, E))
DRIFT[:, POPULAR] = 0.015 * MU[:, None]  # per-step tilt of the popular columns (section 3)
W_tilted = W0 + 60 * DRIFT  # 60 steps of drift
X = tokens(T, rng)
L = X @ W_tilted.astype(np.float32)  # (T, E) float32: the logits every variant below routes
print(f"logits {L.shape} {L.dtype}; popular experts {POPULAR.tolist()}")

# %% [markdown]
# ## The routing variants on the same logits
#
# | variant | scores | selection key | weights |
# |---|---|---|---|
# | softmax → top-k (Switch; Qwen1.5-MoE with `norm_topk_prob=False`) | `p = softmax(l)` | `l` | `p` of the k chosen (sum < 1) |
# | top-k → softmax (Mixtral) | `softmax(l)` | `l` | softmax over the k chosen logits (sum = 1) |
# | sigmoid top-k | `p = σ(l)` | `l` | `p` of the k chosen, renormalized |
# | DeepSeek-V3 groups, bias 0 | `σ(l)` | `σ(l)`, only within the best `G_KEEP` of `G` groups; a group scores the sum of its 2 best keys | `σ(l)` renormalized, × 2.5 |
# | DeepSeek-V3 | `σ(l)` | `σ(l) + bias`, groups as above | the unbiased `σ(l)` renormalized, × 2.5 |
#
# Softmax and sigmoid both increase with `l`, so the first three variants **select the same
# experts** and differ only in their weights. Groups limit which experts a token may use (in
# DeepSeek-V3 a group is the experts on one node, which bounds communication). Scoring a group by its best key alone
# (`route(..., n_groups, topk_groups)` without a bias) cannot change the choice when
# `topk_groups ≥ k`, barring ties. The k best experts lie in at most k groups, and the best key in each of those
# groups is at least the k-th best key overall. DeepSeek-V3 scores a group by the sum of its two best
# keys, which `route` uses whenever a bias is given. A zero bias therefore gives the grouping alone.
# The bias shifts the selection, but it never enters the weights.
#
# DeepSeek-V3 learns its bias (`e_score_correction_bias`) during training with the sign rule in
# `update_bias`. Here we fit it by running that rule for a number of steps on *fresh* batches of
# tokens from the same router, not on `L`. Section 3 shows the rule at work while the router drifts.

# %%
bias_fit = np.zeros(E, np.float32)
fit_rng = np.random.default_rng(SEED + 1)
DSV3 = dict(scoring="sigmoid", n_groups=G, topk_groups=G_KEEP, scale=2.5)
for _ in range(CFG["fit_steps"]):
    Lb = tokens(T // 4, fit_rng) @ W_tilted.astype(np.float32)
    bias_fit = update_bias(bias_fit, route(Lb, k, bias=bias_fit, **DSV3).counts, gamma=0.01)

VARIANTS = {
    "softmax → top-k": dict(renormalize=False),
    "top-k → softmax (Mixtral)": dict(),
    "sigmoid top-k": dict(scoring="sigmoid"),
    f"DeepSeek-V3 groups ({G} keep {G_KEEP}), bias 0": dict(DSV3, bias=np.zeros(E, np.float32)),
    "DeepSeek-V3 + fitted bias": dict(DSV3, bias=bias_fit),
}
R = {name: route(L, k, backend="numpy", **kw) for name, kw in VARIANTS.items()}  # the reference
base = R["softmax → top-k"]
pd.DataFrame([{
    "variant": name,
    "same experts as softmax→top-k": f"{np.mean(np.all(np.sort(r.experts, 1) == np.sort(base.experts, 1), 1)):.1%}",
    "weight sum (mean)": r.weights.sum(1).mean(),
    "top-1 weight (mean)": r.weights[:, 0].mean(),
    "max load / mean load": r.load_imbalance,
    "aux_loss (1 = balanced)": r.aux_loss,
} for name, r in R.items()]).round(3)

# %% [markdown]
# The first three tokens under each variant (expert ids by descending key, with their weights):

# %%
pd.DataFrame([{"variant": name, "token": t, "experts": r.experts[t].tolist(),
               "weights": np.round(r.weights[t], 3).tolist()} for name, r in R.items() for t in range(3)])

# %% [markdown]
# Every backend must reproduce the reference exactly. The expert ids, counts, permutation and
# offsets must be identical, and the weights must agree within 1e-6 relative. The cell also checks
# each variant's defining property.

# %%
same_ids, close_w, ran = {}, {}, []
for name, kw in VARIANTS.items():
    for be in BACKENDS:
        r = route(L, k, backend=be, **kw)
        ran.append(aura_lab.last_dispatch().backend == be)
        ref = R[name]
        same_ids[name, be] = all(np.array_equal(getattr(r, a), getattr(ref, a))
                                 for a in ("experts", "counts", "permutation", "offsets"))
        close_w[name, be] = harness.compare(r.weights, ref.weights, rtol=1e-6, atol=1e-37)[2]

# %%
# NBVAL_CHECK_OUTPUT
print(f"backends compared: at least two: {len(BACKENDS) >= 2}; numpy among them: {'numpy' in BACKENDS}; "
      f"each ran when asked: {all(ran)}")
for name in VARIANTS:
    print(f"{name}: every backend gives identical expert ids, counts and permutation: "
          f"{all(same_ids[name, be] for be in BACKENDS)}; weights within 1e-6: {all(close_w[name, be] for be in BACKENDS)}")
names = list(VARIANTS)
print(f"softmax→top-k, Mixtral and sigmoid top-k select the same experts: "
      f"{all(np.array_equal(R[n].experts, base.experts) for n in names[:3])}")
print(f"Mixtral and sigmoid top-k weights sum to 1 (1e-5): "
      f"{all(np.allclose(R[n].weights.sum(1), 1, atol=1e-5) for n in names[1:3])}; both DeepSeek-V3 variants' "
      f"to 2.5: {all(np.allclose(R[n].weights.sum(1), 2.5, atol=1e-5) for n in names[3:])}")
print(f"DeepSeek-V3 variants: every token's experts lie in at most {G_KEEP} of {G} groups: "
      f"{all(len(set(row)) <= G_KEEP for n in names[3:] for row in (R[n].experts // (E // G)).tolist())}")
grouped_max = route(L, k, scoring="sigmoid", n_groups=G, topk_groups=G_KEEP)
print(f"groups scored by their best key (no bias) change no token's experts when topk_groups >= k: "
      f"{G_KEEP < k or np.array_equal(grouped_max.experts, base.experts)}")
print(f"the two-best-keys group score changes some tokens' experts: {not np.array_equal(R[names[3]].experts, base.experts)}")
print(f"the fitted bias lowers the max load below softmax→top-k's: {R[names[4]].max_load < base.max_load}")

# %% [markdown]
# ## Expert-load histograms
#
# The tokens routed to each expert (`Routing.counts`, before any capacity drop) under each variant.
# The popular experts are drawn in red, and the dashed line is the mean load `T·k/E`. The first three
# panels are identical because those variants select the same experts. The group restriction changes
# the experts of many tokens (table above) but leaves the popular experts just as overloaded. The
# fitted bias brings them down to about the mean load.

# %%
fig, axes = plt.subplots(1, len(R), figsize=(3.1 * len(R), 2.8), sharey=True)
colors = np.where(np.isin(np.arange(E), POPULAR), "tab:red", "tab:blue")
for ax, (name, r) in zip(axes, R.items()):
    ax.bar(np.arange(E), r.counts, width=1.0, color=colors)
    ax.axhline(r.mean_load, color="k", ls="--", lw=0.8)
    ax.set_title(f"{name}\nmax/mean {r.load_imbalance:.2f}", fontsize=8)
    ax.set_xlabel("expert")
axes[0].set_ylabel("tokens routed")
fig.tight_layout()
plt.show()

# %% [markdown]
# The weights differ between variants even where the experts are the same. Below is the distribution
# of the top-1 slot's weight. Raw softmax probabilities are small. Mixtral's top-k softmax makes the
# top-1 weight dominant. Sigmoid scores stay between 0 and 1 independently of each other, so after
# renormalization the k weights come out flatter.

# %%
fig, ax = plt.subplots(figsize=(6.4, 2.8))
for name, r in R.items():
    ax.hist(r.weights[:, 0] / VARIANTS[name].get("scale", 1.0), bins=60, histtype="step", label=name)
ax.set(xlabel="weight of the top-1 expert (DeepSeek-V3 divided by its scale 2.5)", ylabel="tokens")
ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# ## Balancing while the router drifts: auxiliary loss vs bias
#
# **What is simulated.** We start from the balanced router `W0`. At each training step a fresh batch
# of `B` tokens is routed with `logits = x W`. Then the popular experts' columns move a fixed amount
# toward `μ` (`W += DRIFT`), which raises their logits for most tokens. This drift stands in for
# the language-model gradient, which tends to reward experts that are already used ("the rich get
# richer"). The LM loss itself and the experts are **not** simulated. Three runs see identical
# batches and drift:
#
# * **none**: top-k routing with no balancing;
# * **aux loss** (Switch/GShard/Mixtral): after routing, one gradient step on `W` for the auxiliary
#   loss `E · Σ_i f_i P_i`. Here `f_i` is the fraction of assignments routed to expert `i`, a count
#   with no gradient (as in Switch), and `P_i` is the mean softmax probability. Its gradient with
#   respect to the logits is `(E/B) · p_ti (f_i - Σ_j f_j p_tj)`. We use a step size
#   `α·η = AUX_LR` chosen by hand for each size (the gradient shrinks roughly as `1/E`). A smaller
#   step lets the drift win, and a larger one fights the task harder;
# * **bias** (DeepSeek-V3, auxiliary-loss-free): sigmoid scores, selection by `σ(l) + bias`, and
#   after each step `update_bias(bias, counts, γ)` moves each bias by `γ` against its load. `W`
#   itself is left to the drift.
#
# Without a bias, softmax and sigmoid select the same experts, so both balanced runs start from the
# same unbalanced baseline. The curves are measured on each step's batch with
# `Routing.load_imbalance` (max load / mean load).

# %%
S = CFG["sim"]
B, STEPS = S["B"], S["steps"]
AUX_LR, GAMMA = S["aux_lr"], 0.01
sim_rng = np.random.default_rng(SEED + 2)
batches = [tokens(B, sim_rng) for _ in range(STEPS)]


def aux_grad_W(Xb, W, counts):
    """(aux_loss, d aux / d W) for the Switch-style loss E * sum_i f_i P_i, f held constant."""
    X64 = Xb.astype(np.float64)
    lg = X64 @ W
    p = np.exp(lg - lg.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    f = counts / counts.sum()
    aux = E * float(f @ p.mean(0))
    return aux, X64.T @ ((E / len(Xb)) * p * (f - (p @ f)[:, None]))


def simulate(mode):
    W, bias = W0.copy(), np.zeros(E, np.float32)
    hist = {"imbalance": [], "bias": [], "counts": None}
    for Xb in batches:
        lg = Xb @ W.astype(np.float32)
        if mode == "bias":
            r = route(lg, k, scoring="sigmoid", bias=bias)
            bias = update_bias(bias, r.counts, gamma=GAMMA)
            hist["bias"].append(bias.copy())
        else:
            r = route(lg, k)
        if mode == "aux loss":
            W = W - AUX_LR * aux_grad_W(Xb, W, r.counts)[1]
        W = W + DRIFT  # the simulated task gradient, the same in every run
        hist["imbalance"].append(r.load_imbalance)
    hist["counts"], hist["W"], hist["final_bias"] = r.counts, W, bias
    return hist


t0 = time.perf_counter()
runs = {mode: simulate(mode) for mode in ("none", "aux loss", "bias")}
sim_s = time.perf_counter() - t0

# %% tags=["nbval-ignore-output"]
print(f"{len(runs)} runs x {STEPS} steps of {B} tokens in {sim_s:.1f} s")

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
for mode, h in runs.items():
    axes[0].plot(h["imbalance"], lw=1, label=mode)
axes[0].axhline(1.0, color="k", lw=0.6)
axes[0].set(xlabel="training step", ylabel="max load / mean load", title="load imbalance per step", yscale="log")
axes[0].legend(fontsize=8)
for mode, h in runs.items():
    axes[1].plot(np.arange(E), np.maximum(h["counts"], 0.5), drawstyle="steps-mid", lw=1, label=mode)
axes[1].axhline(B * k / E, color="k", ls="--", lw=0.8)
axes[1].set(xlabel="expert (popular ones shaded)", ylabel="tokens routed", title="loads at the last step", yscale="log")
for e in POPULAR:
    axes[1].axvspan(e - 0.5, e + 0.5, color="tab:red", alpha=0.12, lw=0)
bias_hist = np.array(runs["bias"]["bias"])
others = np.setdiff1d(np.arange(E), POPULAR)
axes[2].plot(bias_hist[:, POPULAR], color="tab:red", lw=0.8)
axes[2].plot(bias_hist[:, others].mean(1), color="tab:blue", lw=1.5, label="mean over the other experts")
axes[2].plot([], color="tab:red", lw=0.8, label="popular experts")
axes[2].set(xlabel="training step", ylabel="bias", title=f"DeepSeek-V3 bias (γ = {GAMMA})")
axes[2].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Both mechanisms hold the load near the mean while the unbalanced run drifts away. They differ in
# what they change. The auxiliary loss adds its gradient to the router weights `W`, and so it competes
# with the task gradient. The bias touches only the selection: `W` follows the drift exactly as in the
# unbalanced run, and the combine weights stay the unbiased sigmoid scores. The bias plot shows the
# sign rule: the popular experts' biases fall steadily to offset the drift, and the others rise
# slowly. Both runs also show the cost of a fixed step size: the load oscillates around the mean
# instead of settling.

# %%
h_none, h_aux, h_bias = (runs[m] for m in ("none", "aux loss", "bias"))
moved = np.linalg.norm(h_aux["W"] - h_none["W"]) / np.linalg.norm(h_none["W"])
print(f"router weights after {STEPS} steps: the aux-loss run's W differs from the drift-only W by {moved:.0%}; "
      f"the bias run's by {np.linalg.norm(h_bias['W'] - h_none['W']) / np.linalg.norm(h_none['W']):.0%}")
# the hand-written aux-loss gradient against Routing.aux_loss and torch autograd, on the first batch
Xb = batches[0]
r0 = route(Xb @ W0.astype(np.float32), k)
aux0, g0 = aux_grad_W(Xb, W0, r0.counts)
Wt = torch.tensor(W0, requires_grad=True)
p_t = torch.softmax(torch.from_numpy(Xb).double() @ Wt, -1)
(E * (torch.from_numpy(r0.counts / r0.counts.sum()) * p_t.mean(0)).sum()).backward()

# %%
# NBVAL_CHECK_OUTPUT
q = STEPS * 3 // 4  # the last quarter of the run
late = {m: float(np.mean(h["imbalance"][q:])) for m, h in runs.items()}
print(f"simulation: {STEPS} steps of {B} tokens, E={E}, k={k}, {len(POPULAR)} popular experts")
print(f"aux loss as written here (float64 logits) equals Routing.aux_loss (of the float32 logits) within 1e-6: "
      f"{abs(aux0 - r0.aux_loss) <= 1e-6 * r0.aux_loss}")
print(f"its gradient matches torch autograd (rtol 1e-10): {np.allclose(g0, Wt.grad.numpy(), rtol=1e-10, atol=1e-14)}")
print(f"no balancing: mean imbalance over the last quarter > 3: {late['none'] > 3}")
for m in ("aux loss", "bias"):
    print(f"{m}: last-quarter mean imbalance < 2.5 and below a third of the unbalanced run's: "
          f"{late[m] < 2.5 and late[m] < late['none'] / 3}")
print(f"bias run leaves the router weights exactly as the drift made them: {np.array_equal(h_bias['W'], h_none['W'])}")
print(f"bias of every popular expert ends below every other expert's: "
      f"{h_bias['final_bias'][POPULAR].max() < h_bias['final_bias'][others].min()}")

# %% [markdown]
# ## Capacity factor vs dropped tokens
#
# Kernels that give every expert a fixed-size buffer cap its load at
# `capacity = ceil(capacity_factor · T·k / E)`. Each expert keeps its first `capacity` assignments
# in token order (`Routing.kept`). The rest are **dropped**, and the token then receives nothing
# from that expert. We sweep the capacity factor on three routings of the same fresh batch:
# a balanced router (`W0`), the drifted router at the end of the unbalanced run, and the same
# router with the bias that the bias run learned. Every point is `Routing.dropped / (T·k)` as
# measured by `route`. The grey line is the floor `max(0, 1 - capacity_factor)`, reached only when
# every expert has exactly the mean load. The dropped fraction reaches zero at `capacity_factor =
# load_imbalance` (dotted lines).

# %%
CAP_FACTORS = [0.25, 0.5, 0.75, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0]
Xc = tokens(T, np.random.default_rng(SEED + 3))
routers = {
    "balanced router (W0)": (Xc @ W0.astype(np.float32), {}),
    "drifted, no balancing": (Xc @ h_none["W"].astype(np.float32), {}),
    "drifted + learned bias": (Xc @ h_bias["W"].astype(np.float32), dict(scoring="sigmoid", bias=h_bias["final_bias"])),
}
cap_rows, cap_ok = [], []
for label, (lg, kw) in routers.items():
    for cf in CAP_FACTORS:
        r = route(lg, k, capacity_factor=cf, **kw)
        expected = int(np.maximum(r.counts - r.capacity, 0).sum())
        cap_ok.append(r.dropped == expected == int((~r.kept).sum()))
        cap_rows.append({"router": label, "capacity_factor": cf, "capacity": r.capacity, "dropped": r.dropped,
                         "dropped_frac": r.dropped / (T * k), "imbalance": r.load_imbalance})
cap = pd.DataFrame(cap_rows)

fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
for label, g in cap.groupby("router", sort=False):
    line, = axes[0].plot(g["capacity_factor"], g["dropped_frac"], "o-", ms=3, label=label)
    axes[0].axvline(g["imbalance"].iloc[0], color=line.get_color(), ls=":", lw=1)
cfs = np.linspace(min(CAP_FACTORS), max(CAP_FACTORS), 200)
axes[0].plot(cfs, np.maximum(0, 1 - cfs), color="0.6", lw=1, label="floor: perfect balance")
axes[0].set(xscale="log", xlabel="capacity factor", ylabel="dropped fraction of assignments",
            title=f"T={T}, E={E}, k={k}")
axes[0].legend(fontsize=8)
# which tokens lose their experts: first come, first served
lg, kw = routers["drifted, no balancing"]
r = route(lg, k, capacity_factor=1.0, **kw)
bins = np.array_split(np.arange(T), 16)
axes[1].bar(np.arange(16), [1 - r.kept[b].mean() for b in bins], width=0.9)
axes[1].set(xlabel=f"token position in the batch (16 bins of {T // 16})", ylabel="dropped fraction",
            title="drifted router, capacity factor 1.0: drops by position")
fig.tight_layout()
plt.show()

# %% [markdown]
# Once an expert's buffer is full, it turns away every later assignment. For the drifted router the
# popular experts fill up within the first ~1/9 of the batch, so every later token loses them. This
# policy is deterministic and identical on every backend, but it is not fair across positions. Balancing raises the throughput you get from a given
# capacity: with the learned bias, a capacity factor near the measured imbalance already drops almost
# nothing.

# %%
# NBVAL_CHECK_OUTPUT
mono = all(np.all(np.diff(g["dropped"].to_numpy()) <= 0) for _, g in cap.groupby("router"))
edge = []
for label, (lg, kw) in routers.items():
    r = route(lg, k, **kw)
    at = route(lg, k, capacity_factor=r.load_imbalance, **kw).dropped
    below = route(lg, k, capacity_factor=(r.max_load - 1.5) / r.mean_load, **kw).dropped
    edge.append(at == 0 and below > 0)
floor_ok = all(row["dropped_frac"] >= max(0.0, 1 - row["capacity_factor"]) - 1e-12 for row in cap_rows)
print(f"{len(cap_rows)} capacity runs: dropped == sum(max(counts - capacity, 0)) == (~kept).sum(): {all(cap_ok)}")
print(f"dropped never increases with the capacity factor: {mono}")
print(f"nothing is dropped at capacity_factor = load_imbalance, something just below it: {all(edge)}")
print(f"no router beats the perfect-balance floor: {floor_ok}")
learned = cap[cap.router.str.contains("bias")].set_index("capacity_factor")["dropped"]
drifted = cap[cap.router.str.startswith("drifted, no")].set_index("capacity_factor")["dropped"]
print(f"at capacity factor 1.25 the learned bias drops fewer tokens than no balancing: {learned[1.25] < drifted[1.25]}")

# %% [markdown]
# ## A small MoE layer
#
# `MoELayer` puts the pieces together. A linear router feeds `route`. Then `permute` gathers the
# token rows by expert into contiguous segments (`offsets`), each expert's SiLU MLP runs once on
# its segment, and `unpermute` combines the outputs back with the routing weights (assignments
# over capacity contribute nothing). `forward_dense` computes the same layer as a plain loop over
# tokens and slots, and it serves as the reference. Each configuration below has one set of
# weights, and both paths run on every backend.
#
# The two paths do the same float32 arithmetic in a different order: one matrix product per expert
# segment against one vector product per token. They agree only up to rounding, and by how much
# depends on the CPU (its BLAS picks different kernels on AVX2 and AVX-512 machines). So instead of a
# tolerance read off one machine's output, the check uses a bound from the standard float32 error
# analysis, computed from this layer's own weights and inputs. A sum of `n` products in float32,
# in any order and with or without FMA, is within `γ_n · Σ|products|` of the exact sum, where
# `γ_n = n·u / (1 - n·u)` and `u = 2⁻²⁴`. Applied layer by layer (`rounding_bound` below):
#
# * `h = W1 x + b1`: `|Δh| ≤ γ_{d_model+1} (|W1| |x| + |b1|)`;
# * `a = silu(h)`: silu is 1.1-Lipschitz and float32 evaluates it to within `8u` relative (an exp
#   good to 1 ulp and three roundings, with room to spare), so `|Δa| ≤ 1.1 |Δh| + 8u (|h| + |Δh|)`;
# * `y = W2 a + b2`: `|Δy| ≤ γ_{d_hidden+1} (|W2| (|a| + |Δa|) + |b2|) + |W2| |Δa|`;
# * the combine `Σ_s w_s y_s` adds `γ_k Σ_s |w_s| (|y_s| + |Δy_s|)`.
#
# Each path is within that bound of the exact output, so the two paths are within twice it of each
# other. Two backends' weights may also differ by 1e-6 relative (checked above), which adds
# `1e-6 · Σ_s |w_s| |y_s|` between backends. The bound is a worst case, typically some hundred times
# the actual difference. A routing mistake (a wrong expert, weight or dropped token) changes the
# output by the size of the output itself, far above it.

# %%
from aura_lab.harness.routing import moe_rounding_bound as rounding_bound  # the analysis above, as code


# %%
LC = CFG["layer"]
xl = torch.from_numpy(np.random.default_rng(SEED + 4).standard_normal((LC["T"], LC["d_model"])).astype(np.float32))
layer_bias = np.random.default_rng(SEED + 5).normal(0, 0.05, LC["E"]).astype(np.float32)
LAYER_CONFIGS = {
    f"Mixtral-style (softmax top-{LC['k']})": {},
    "DeepSeek-V3-style (sigmoid + bias, 4 groups keep 2, x2.5)":
        dict(scoring="sigmoid", bias=layer_bias, n_groups=4, topk_groups=2, scale=2.5),
    "softmax top-k, capacity factor 0.8": dict(capacity_factor=0.8),
}
WEIGHT_RTOL = 1e-6  # how far two backends' routing weights may differ (checked in the routing cell above)
layer_ok, layer_rows, grads_ok, outs = {}, [], [], {}
for cname, kw in LAYER_CONFIGS.items():
    torch.manual_seed(SEED)
    layer = MoELayer(LC["d_model"], LC["d_hidden"], LC["E"], LC["k"], **kw)
    for be in BACKENDS:
        layer.route_kwargs["backend"] = be
        t0 = time.perf_counter()
        out = layer(xl)
        t_perm = time.perf_counter() - t0
        rt = layer.last_routing
        with torch.no_grad():
            t0 = time.perf_counter()
            ref = layer.forward_dense(xl)
            t_dense = time.perf_counter() - t0
        bound, wy = rounding_bound(layer, xl, rt)
        diff = (out.detach() - ref).abs().double()
        layer_ok[cname, be] = bool((diff <= 2 * bound).all())  # each path within the bound of the exact output
        outs[cname, be] = (out.detach().double(), bound, wy)
        layer.zero_grad()
        out.square().mean().backward()
        grads_ok.append(all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in (layer.w1, layer.w2)))
        layer_rows.append({"config": cname, "backend": be, "max |permute - dense|": float(diff.max()),
                           "max |permute - dense| / bound": float((diff / (2 * bound).clamp_min(1e-300)).max()),
                           "dropped": rt.dropped, "permute path (ms)": 1e3 * t_perm, "dense loop (ms)": 1e3 * t_dense})

# %% tags=["nbval-ignore-output"]
pd.DataFrame(layer_rows).round(6)

# %% [markdown]
# What `permute` builds, for the last configuration: expert `e` owns rows `offsets[e]:offsets[e+1]`
# of the permuted input, which are its tokens in ascending order.

# %%
xs = permute(xl, rt)
seg_ok = all(torch.equal(xs[rt.offsets[e]:rt.offsets[e + 1]], xl[(rt.experts == e).any(1)]) for e in range(LC["E"]))
r_rt = route(torch.randn(LC["T"], LC["E"]), LC["k"])  # softmax top-k, renormalized: weights sum to 1
roundtrip = unpermute(permute(xl, r_rt), r_rt)
print(f"x {tuple(xl.shape)} -> permute -> {tuple(xs.shape)}; loads per expert {rt.counts.tolist()}")
print(f"offsets {rt.offsets.tolist()}")

# %%
# NBVAL_CHECK_OUTPUT
def same_output(cname):
    """Every backend's permute-path output within the rounding bounds (and the weight tolerance) of the first's."""
    o0, b0, wy0 = outs[cname, BACKENDS[0]]
    return all(bool(((o - o0).abs() <= b + b0 + WEIGHT_RTOL * (wy + wy0)).all())
               for o, b, wy in (outs[cname, be] for be in BACKENDS))


print(f"layer: T={LC['T']}, d_model={LC['d_model']}, d_hidden={LC['d_hidden']}, E={LC['E']}, k={LC['k']}; "
      f"permute output shape {tuple(xs.shape)}")
for cname in LAYER_CONFIGS:
    print(f"{cname}: permute/unpermute output equals the dense per-token loop within the float32 rounding bound "
          f"on every backend: {all(layer_ok[cname, be] for be in BACKENDS)}; same output on every backend: "
          f"{same_output(cname)}")
print(f"capacity 0.8 drops assignments: {all(r['dropped'] > 0 for r in layer_rows if 'capacity' in r['config'])}")
print(f"each expert's segment holds exactly its tokens, ascending: {seg_ok}")
print(f"unpermute(permute(x)) == x when weights sum to 1 (1e-6): {torch.allclose(roundtrip, xl, rtol=1e-6, atol=1e-6)}")
print(f"gradients reach the experts through permute/unpermute: {all(grads_ok)}")

# %% [markdown]
# ## Comparison panel
#
# Toggle the backends, pick sizes and press **Run**. The panel shows the time, GB/s of logits
# read, the speed-up over the numpy reference and a correctness badge for each backend (exact
# ids, weights within 1e-6), plus the backend that `auto` would choose. The cell after it drives
# the panel from code at the smallest size.

# %%
panel = ComparisonPanel("routing")
display(panel)

# %% tags=["nbval-ignore-output"]
panel.repeats.value = 1
panel.run.click()  # the sweep runs in the background ...
panel.wait()  # ... until it has finished
panel.frame()

# %%
# NBVAL_CHECK_OUTPUT
print(f"routing panel at {panel.sizes.value[0]}: no backend errors: {not panel.errors}; "
      f"every run agrees with the {panel.spec.reference} reference: {all(r.get('passed') for r in panel.results)}")
