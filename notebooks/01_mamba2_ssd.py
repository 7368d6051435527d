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
# # Mamba-2: the selective scan (SSD)
#
# A Mamba-2 layer mixes tokens with a selective state-space model. Per head `h`, with a
# state `H_t` of shape `(p, n)`:
#
# $$H_t = e^{\Delta_t A}\, H_{t-1} + \Delta_t\, x_t B_t^\top, \qquad y_t = H_t\, C_t$$
#
# `A ≤ 0` is a scalar per head, and the step size `Δ_t`, the input projection `B_t` and the output projection `C_t`
# depend on the token (that is what makes the model *selective*). The same map can be computed in three ways:
#
# * **recurrence**: one step per token. Linear in the length `l`, but sequential.
# * **quadratic ("attention") form**: unrolling the recurrence gives
#   $y = (L \circ C B^\top)\,(\Delta x)$, with the causal decay mask
#   $L_{ts} = \exp\big(\sum_{k=s+1}^{t} \Delta_k A\big)$ for $s \le t$ and $0$ otherwise. This is a
#   1-semiseparable matrix, built here with `segsum`. It is masked linear attention: all matmuls, but
#   `O(l²)` work and memory.
# * **chunked SSD** (the paper's algorithm): the quadratic form inside chunks of `Q` tokens,
#   plus the recurrence over chunk states between them. It is linear in `l` and uses matmuls.
#
# `aura_lab.selective_scan` has a chunked numpy backend, a chunked torch backend (autograd), and a
# Mojo kernel that runs the recurrence with the state resident in cache (called directly as `mojo`,
# or as a MAX graph op as `max`), with a Mojo backward for training. This notebook checks that the
# three forms agree, times them against the length, trains a tiny Mamba-2 language model on
# associative recall, then swaps the scan backend under the trained model.
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
from aura_lab import harness, ssd
from aura_lab.harness.ssd import make_inputs
from aura_lab.models import MambaLM, associative_recall, recall_accuracy, train_associative_recall
from aura_lab.ssd import segsum, selective_scan, ssd_minimal_discrete, ssd_sequential_ref
from aura_lab.widgets import ComparisonPanel

CFG = {
    "small": dict(
        example=dict(b=2, l=64, h=4, p=8, n=8, chunk=16),
        timing=dict(h=8, p=64, n=64, lengths=(256, 512, 1024, 2048, 4096, 8192), quad_max=1024, repeats=3),
        model=dict(d_model=64, n_layers=1, d_state=32, headdim=16, chunk_size=16),
        task=dict(n_pairs=4, n_keys=16, n_values=16, n_queries=4),
        train=dict(steps=300, batch=64, lr=1e-2), n_test=512),
    "medium": dict(
        example=dict(b=2, l=256, h=8, p=16, n=16, chunk=64),
        timing=dict(h=8, p=64, n=128, lengths=(512, 1024, 2048, 4096, 8192, 16384), quad_max=2048, repeats=3),
        model=dict(d_model=128, n_layers=2, d_state=64, headdim=32, chunk_size=32),
        task=dict(n_pairs=8, n_keys=32, n_values=32, n_queries=8),
        train=dict(steps=800, batch=64, lr=5e-3), n_test=1024),
    "large": dict(
        example=dict(b=4, l=512, h=8, p=32, n=32, chunk=64),
        timing=dict(h=24, p=64, n=128, lengths=(1024, 2048, 4096, 8192, 16384, 32768), quad_max=2048, repeats=5),
        model=dict(d_model=256, n_layers=2, d_state=64, headdim=64, chunk_size=64),
        task=dict(n_pairs=16, n_keys=64, n_values=64, n_queries=16),
        train=dict(steps=2000, batch=64, lr=3e-3), n_test=2048),
}[SIZE]
rng = np.random.default_rng(SEED)
torch.manual_seed(SEED)
BACKENDS = [b.name for b in aura_lab.backends() if b.available and b.name in ssd.op.backends]
print(f"AURA_SIZE={SIZE}; selective_scan backends available here: {', '.join(BACKENDS)}")

# %% [markdown]
# ## Three forms of one scan
#
# The quadratic form in a few lines of numpy: build `L` from `segsum(Δ·A)` (‑inf above the
# diagonal, so `exp` gives the causal mask), multiply it entrywise with the scores `C Bᵀ`, and
# apply the result to `Δ·x`. A head `i` uses the `B`/`C` group `i // (h / g)`.


# %%
def mixing_matrix(dt, A, B, C):
    """L ∘ C Bᵀ per batch and head, (b, h, l, l), with L = exp(segsum(Δ·A)) (zero above the diagonal).
    dt (b, l, h) (already > 0), A (h,), B, C (b, l, g, n); head i uses group i // (h / g)."""
    h = dt.shape[2]
    Bh, Ch = (np.repeat(M, h // M.shape[2], axis=2) for M in (B, C))  # groups -> heads
    L = np.exp(segsum((dt * A).transpose(0, 2, 1)))  # (b, h, l, l): the 1-semiseparable decay mask
    return L * np.einsum("bthn,bshn->bhts", Ch, Bh)


def ssd_quadratic(x, dt, A, B, C):
    """The 'attention' form y = (L ∘ C Bᵀ)(Δ·x): x (b, l, h, p) -> y (b, l, h, p)."""
    return np.einsum("bhts,bshp->bthp", mixing_matrix(dt, A, B, C), x * dt[..., None])


# %%
E = CFG["example"]
b, l, h, p, n, Q = (E[k] for k in ("b", "l", "h", "p", "n", "chunk"))
ex = dict(x=rng.standard_normal((b, l, h, p)), dt=rng.uniform(0.01, 0.2, (b, l, h)),
          A=-np.exp(rng.uniform(0.0, np.log(16.0), h)), B=rng.standard_normal((b, l, 1, n)),
          C=rng.standard_normal((b, l, 1, n)))  # float64, one B/C group shared by all heads

y_rec, _ = ssd_sequential_ref(**ex)  # the plain recurrence (the oracle)
y_quad = ssd_quadratic(**ex)
Bh, Ch = (np.repeat(ex[k], h, axis=2) for k in ("B", "C"))
y_chunk, _ = ssd_minimal_discrete(ex["x"] * ex["dt"][..., None], ex["A"] * ex["dt"], Bh, Ch, Q)
ex32 = {k: v.astype(np.float32) for k, v in ex.items()}
y_backend = {be: selective_scan(**ex32, chunk_size=Q, backend=be) for be in BACKENDS}
forms = {"quadratic (L ∘ C Bᵀ) Δx, float64": y_quad, f"chunked SSD Q={Q}, float64": y_chunk,
         **{f"selective_scan {be}, float32": y for be, y in y_backend.items()}}
pd.DataFrame({"form": list(forms), "max |y - y_recurrence|": [np.abs(y - y_rec).max() for y in forms.values()]})

# %% [markdown]
# The verdicts. The float64 forms must agree to 1e-10. The float32 backends must meet mamba_ssm's
# fp32 tolerance against the float64 recurrence (rtol 6e-4, atol 2e-3). The off-diagonal blocks of
# the mixing matrix have rank at most `n`. That low rank lets the chunked form pass a state of size
# `p × n` between chunks instead of the whole `L ∘ C Bᵀ`.
#
# None of these verdicts depends on the CPU (its vector math and BLAS round differently), because
# each tolerance sits far above the rounding error of what it compares. The float64 forms are
# within about `γ_l · Σ|terms|` of each other (`γ_l = l·ε/(1 - l·ε)`, `ε = 2⁻⁵³`), some 1e-13 here.
# The float32 scan is within `γ_K · Σ|terms|` of the exact one, `K` about `l (2 + |Δ A|) + n` roundings
# along the longest path, some 1e-5 here. For the rank, a block computed in float64 carries
# relative errors up to about `n·ε` from `C Bᵀ` and `γ_l · Σ|Δ A|` from the exponent of `L`, up to
# ~1e-11 at the large size: above numpy's default rank tolerance (`max(rows, cols)·ε·σ_max`), so
# with it a rounding-only singular value could count as rank on some machine. The rank below uses
# `1e-8·σ_max` instead: a thousand times that rounding, and still far below any real singular value
# (a block of rank `n + 1` would have to be that close to rank `n`).

# %%
# NBVAL_CHECK_OUTPUT
Mmat = mixing_matrix(ex["dt"], ex["A"], ex["B"], ex["C"])
RANK_RTOL = 1e-8  # singular values below RANK_RTOL * the largest are float64 rounding (see above)
ranks = [np.linalg.matrix_rank(M_, tol=RANK_RTOL * np.linalg.norm(M_, 2)) for i in range(b) for j in range(h)
         for k in range(1, l // Q) for M_ in [Mmat[i, j, k * Q:(k + 1) * Q, :k * Q]]]
print(f"example: x {ex['x'].shape}, B/C {ex['B'].shape}, chunk {Q}")
print(f"quadratic form == recurrence (float64, 1e-10): {np.allclose(y_quad, y_rec, rtol=0, atol=1e-10)}")
print(f"chunked SSD == recurrence (float64, 1e-10): {np.allclose(y_chunk, y_rec, rtol=0, atol=1e-10)}")
print(f"every available backend (float32) agrees with the recurrence (rtol 6e-4, atol 2e-3): "
      f"{all(harness.compare(y_backend[be], y_rec, rtol=6e-4, atol=2e-3)[2] for be in BACKENDS)}")
print(f"numpy backend among them: {'numpy' in BACKENDS}")
print(f"every off-diagonal block of L ∘ C Bᵀ has rank <= n = {n}: {max(ranks) <= n} ({len(ranks)} blocks)")

# %% [markdown]
# The mixing matrix of one head. It is lower triangular, and the decays fade it away from the
# diagonal. The grid marks the chunks: the chunked form computes the diagonal blocks exactly and
# reaches the blocks below them only through the chunk states.

# %%
fig, ax = plt.subplots(figsize=(4.6, 4))
im = ax.imshow(np.log10(np.abs(Mmat[0, 0]) + 1e-12), cmap="magma", vmin=-6, vmax=np.log10(np.abs(Mmat[0, 0]).max()))
for k in range(Q, l, Q):
    ax.axhline(k - 0.5, color="w", lw=0.6)
    ax.axvline(k - 0.5, color="w", lw=0.6)
ax.set(title="log10 |L ∘ C Bᵀ|, batch 0, head 0", xlabel="source token s", ylabel="output token t")
fig.colorbar(im, ax=ax, shrink=0.8)
plt.show()

# %% [markdown]
# ## Time against the sequence length
#
# The same float32 problem (`b = 1`, one group, `softplus(dt + dt_bias)`) at growing lengths:
# every `selective_scan` backend (chunk 64 for the chunked ones) and the quadratic form above,
# which is capped at `quad_max` tokens because it stores `h · l²` numbers. Each point is the best
# of a few calls after one warm-up. The dashed line has slope 1 (linear) and the dotted line slope 2
# (quadratic).

# %% tags=["nbval-ignore-output"]
T = CFG["timing"]
rows = []
for L_ in T["lengths"]:
    inp = make_inputs(1, L_, SEED, h=T["h"], p=T["p"], n=T["n"])  # float32
    kw = dict(dt_bias=inp["dt_bias"], dt_softplus=True)
    for be in BACKENDS:
        t = harness.time_call(lambda: selective_scan(inp["x"], inp["dt"], inp["A"], inp["B"], inp["C"], **kw,
                                                     chunk_size=64, backend=be), repeats=T["repeats"])
        rows.append({"l": L_, "impl": be, "ms": t["min_ms"]})
    if L_ <= T["quad_max"]:
        dtp = ssd.process_dt(inp["dt"], inp["dt_bias"], True).astype(np.float32)
        t = harness.time_call(lambda: ssd_quadratic(inp["x"], dtp, inp["A"], inp["B"], inp["C"]),
                              repeats=1 if L_ >= T["quad_max"] else T["repeats"])
        rows.append({"l": L_, "impl": "quadratic form (numpy)", "ms": t["min_ms"]})
times = pd.DataFrame(rows)
times.pivot(index="l", columns="impl", values="ms").round(3)

# %% tags=["nbval-ignore-output"]
fig, ax = plt.subplots(figsize=(8, 4.2))
for impl, g in times.groupby("impl", sort=False):
    ax.loglog(g["l"], g["ms"], "o-", label=impl)
ls = np.array(T["lengths"], float)
fastest = times[times.l == ls[-1]]["ms"].min()  # anchor the reference lines at measured points
quad = times[times.impl.str.startswith("quadratic")]
ax.loglog(ls, fastest * ls / ls[-1], "k--", lw=0.8, label="slope 1 (∝ l)")
lq = quad["l"].to_numpy(float)
ax.loglog(lq, quad["ms"].iloc[-1] * (lq / lq[-1]) ** 2, "k:", lw=1.0, label="slope 2 (∝ l²)")
ax.set_xticks(ls, [str(int(v)) for v in ls], minor=False)
ax.xaxis.set_minor_locator(plt.NullLocator())
ax.set(xlabel="sequence length l", ylabel="time (ms)",
       title=f"selective scan, h={T['h']} p={T['p']} n={T['n']}, float32")
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
fig.tight_layout()
plt.show()
# measured slopes: least squares on log-log over the three longest lengths of each curve
for impl, g in times.groupby("impl", sort=False):
    g = g.tail(3)
    slope = np.polyfit(np.log(g["l"]), np.log(g["ms"]), 1)[0]
    print(f"{impl:>24}: slope {slope:.2f} over l = {g['l'].min()}..{g['l'].max()}")
print(aura_lab.explain("ssd", b=1, l=int(ls[-1]), h=T["h"], p=T["p"], n=T["n"]))

# %% [markdown]
# The quadratic form's time grows about 4× per doubling of `l`. The backends grow about 2×
# once the length is large enough to hide the fixed per-call costs. At the shortest lengths a
# few milliseconds of overhead dominate, so the measured slopes there lie below 1.

# %% [markdown]
# ## A tiny Mamba-2 language model on associative recall
#
# `MambaLM` consists of a token embedding, Mamba-2 blocks (in_proj, a causal depthwise conv, the scan,
# a gated RMSNorm and out_proj, as in mamba_ssm), and a tied LM head. The task is multi-query
# associative recall (Zoology's MQAR). Each sequence lists key-value pairs, then asks for some of
# the keys again, and the model must output the value stored with each queried key. Predicting
# the value requires keeping the pairs in the state.
#
# The model trains twice from the same seed: once with the scan on `torch` (autograd through the
# chunked SSD) and once on `mojo`, whose backward is a Mojo kernel (`kernels/aura_kernels/ssd/grad.mojo`:
# it recomputes the states inside each 64-token chunk from the states the forward saved at the
# chunk boundaries). Everything else in the model (projections, conv, norm, AdamW) is the same
# torch code. `backend="auto"` picks mojo for training where it is available.

# %%
task, MODEL = CFG["task"], CFG["model"]
x_demo, y_demo = associative_recall(1, seed=SEED + 7, **task)
print("inputs :", x_demo[0].tolist())
print("targets:", ["·" if v < 0 else v for v in y_demo[0].tolist()])

# %% tags=["nbval-ignore-output"]
threads = torch.get_num_threads()
torch.set_num_threads(1 if SIZE == "small" else threads)  # tiny tensors: more threads only add sync
TRAIN_BACKENDS = [be for be in ("torch", "mojo") if be in BACKENDS]
models, losses_by, train_s = {}, {}, {}
try:
    for be in TRAIN_BACKENDS:
        torch.manual_seed(SEED)
        models[be] = MambaLM(task["n_keys"] + task["n_values"], backend=be, **MODEL)
        t0 = time.perf_counter()
        losses_by[be] = train_associative_recall(models[be], seed=SEED, **CFG["train"], **task)
        train_s[be] = time.perf_counter() - t0
    x_test, y_test = associative_recall(CFG["n_test"], seed=SEED + 999, **task)  # held out
    acc_by = {be: recall_accuracy(m, x_test, y_test)[0] for be, m in models.items()}
finally:
    torch.set_num_threads(threads)
model = models["torch"]
losses = losses_by["torch"]
acc, pred = recall_accuracy(model.set_scan_backend("torch"), x_test, y_test)
n_params = sum(q.numel() for q in model.parameters())
steps = CFG["train"]["steps"]
for be in TRAIN_BACKENDS:
    print(f"trained on {be:>5}: {steps} steps in {train_s[be]:.1f} s ({1e3 * train_s[be] / steps:.1f} ms/step); "
          f"held-out accuracy {acc_by[be]:.1%}")
if "mojo" in train_s:
    print(f"time per step, torch / mojo: {train_s['torch'] / train_s['mojo']:.2f}x ({n_params} parameters)")
fig, ax = plt.subplots(figsize=(6, 3))
for be in TRAIN_BACKENDS:
    ax.plot(losses_by[be], lw=0.8, label=f"scan on {be}")
ax.axhline(np.log(task["n_values"]), color="k", ls="--", lw=0.8, label="chance (log n_values)")
ax.set(xlabel="step", ylabel="cross-entropy", title="training loss (query positions), same seed")
ax.legend()
plt.show()

# %% [markdown]
# Pass criteria: held-out accuracy above 50 % (chance is `1 / n_values`) for both trainings, and the
# two loss curves the same: within 1e-3 for the first 100 steps, where only rounding separates
# them, and within 0.02 in 20-step means over the whole run (training amplifies rounding
# differences slowly).
#
# Only the accuracies are pinned by the notebook tests. How far the two loss curves drift apart
# depends on the CPU: both trainings run float32 matrix products whose rounding differs between
# BLAS kernels (AVX2, AVX-512), and training amplifies the first rounding differences at a rate no
# error analysis bounds. So the curve comparison is printed for reading, not compared. The accuracy
# bar is a property of the task, far from both results (chance is 6 %).

# %%
# NBVAL_CHECK_OUTPUT
BAR, chance = 0.5, 1 / task["n_values"]
print(f"MambaLM {MODEL}")
print(f"task {task}: test set {tuple(x_test.shape)}")
print(f"accuracy above {BAR:.0%} (chance {100 * chance:g}%): {acc > BAR}")
if "mojo" in losses_by:
    print(f"trained on mojo, accuracy above {BAR:.0%}: {acc_by['mojo'] > BAR}")

# %% tags=["nbval-ignore-output"]
if "mojo" in losses_by:
    lt, lm = np.array(losses_by["torch"]), np.array(losses_by["mojo"])
    w = len(lt) // 20 * 20
    d100, dmean = np.abs(lm - lt)[:100].max(), np.abs(lm[:w].reshape(-1, 20).mean(1) - lt[:w].reshape(-1, 20).mean(1)).max()
    print(f"same loss curve on mojo and torch: first 100 steps within 1e-3: {d100 < 1e-3} (max |difference| {d100:.1e}); "
          f"20-step means within 0.02: {dmean < 0.02} (max {dmean:.1e})")

# %% [markdown]
# ## Same model, another scan backend
#
# The weights stay the same and only the scan changes. `set_scan_backend` switches every block's
# scan, and `aura_lab.last_dispatch()` confirms which backend ran. The chunked numpy form and the
# sequential Mojo kernel add in different orders, so the logits differ only by rounding, and the
# argmax predictions must be identical wherever the model is not torn between two answers.
#
# How large that rounding is depends on the CPU as well as the backend (the model's float32 matrix
# products round differently with each BLAS), so the notebook tests pin only conclusions that hold
# well clear of it. The logits pass through a few dozen float32 roundings, each at most
# `u = 2⁻²⁴ ≈ 6e-8` relative, so backends differ by some `1e-6 · max|logit|`; the check allows
# `1e-3 · max|logit|`, a thousand times more, and far less than a wrong scan changes (the logits
# themselves). An argmax can flip only where the top two logits are closer than twice that
# difference. Some positions of an untrained output are that close (the smallest top-2 gap is ~1e-4
# here), so equal predictions are checked at the positions where the gap exceeds
# `1e-2 · max|logit|`, which is most query positions. The exact comparison is printed after it.

# %%
same, close, ran, preds, diffs = {}, {}, {}, {}, {}
with torch.no_grad():
    logits_ref = model.set_scan_backend("torch")(x_test)
    for be in BACKENDS:
        acc_b, pred_b = recall_accuracy(model.set_scan_backend(be), x_test, y_test)
        ran[be] = aura_lab.last_dispatch().backend == be
        same[be], preds[be] = torch.equal(pred_b, pred), pred_b
        logits = model(x_test)
        close[be] = bool(torch.allclose(logits, logits_ref, rtol=1e-4, atol=1e-4))
        diffs[be] = float((logits - logits_ref).abs().max())
        print(f"{be:>6}: accuracy {acc_b:.1%}, max |logits - torch logits| = {(logits - logits_ref).abs().max():.1e}")
model.set_scan_backend("auto")

# %%
# NBVAL_CHECK_OUTPUT
others = [be for be in BACKENDS if be != "torch"]
scale = float(logits_ref.abs().max())
top2 = logits_ref.topk(2, dim=-1).values
clear = (top2[..., 0] - top2[..., 1]) > 1e-2 * scale  # positions where rounding cannot move the argmax
print(f"other backends tried: at least one: {len(others) >= 1}; numpy among them: {'numpy' in others}")
print(f"each backend actually ran: {all(ran.values())}")
print(f"identical predictions on every backend where the top two logits are not within 1% of the logit scale: "
      f"{all(torch.equal(p_[clear], pred[clear]) for p_ in preds.values())}")
print(f"logits within 1e-3 x max|logit| of torch's on every backend: {all(d <= 1e-3 * scale for d in diffs.values())}")

# %% tags=["nbval-ignore-output"]
print(f"identical predictions at every position on every backend: {all(same.values())}; "
      f"logits within 1e-4 of torch's on every backend: {all(close.values())}")
print(f"max |logits - torch logits| over the backends: {max(diffs.values()):.1e} (logit scale {scale:.1f}); "
      f"smallest top-2 gap: {float((top2[..., 0] - top2[..., 1]).min()):.1e}")

# %% [markdown]
# ## Comparison panel
#
# Toggle the backends, pick sizes and the dtype, and press **Run**. The panel shows time, GFLOP/s
# (`5·h·p·n` flops per token), the speed-up over the numpy reference and a correctness badge for
# each backend. The cell after it drives the panel from code at the smallest size.

# %%
panel = ComparisonPanel("ssd")
display(panel)

# %% tags=["nbval-ignore-output"]
panel.repeats.value = 1
panel.run.click()  # the sweep runs in the background ...
panel.wait()  # ... until it has finished
panel.frame()

# %%
# NBVAL_CHECK_OUTPUT
print(f"ssd panel at {panel.sizes.value[0]}: no backend errors: {not panel.errors}; "
      f"every run agrees with the {panel.spec.reference} reference: {all(r.get('passed') for r in panel.results)}")
