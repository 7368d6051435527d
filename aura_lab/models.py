"""A Mamba-2 block and a tiny language model built from it, on ``aura_lab.selective_scan``.

``Mamba2`` follows mamba_ssm's ``modules/mamba2.py`` (in_proj -> depthwise causal conv1d +
SiLU -> SSD -> gated RMSNorm -> out_proj, same parameter names, initialization and
defaults: d_state=128, d_conv=4, expand=2, headdim=64, ngroups=1, A_init_range=(1, 16),
dt in [0.001, 0.1], rmsnorm with norm_before_gate=False). The scan runs through
``aura_lab.selective_scan`` with the block's ``backend``: it trains on ``"torch"``, ``"mojo"``
(the Mojo forward and backward kernels) or ``"max"``, and ``"auto"`` picks mojo for training
where it is available; in ``torch.no_grad()`` the fastest backend. The decode step goes
through ``aura_lab.selective_state_update`` (inference only: ``step`` is not for training).
``model.set_scan_backend(name)`` switches every block.

``MambaLM`` stacks pre-norm residual Mamba-2 blocks between a token embedding and a tied
LM head. ``associative_recall`` makes the synthetic multi-query associative-recall task
(Zoology's MQAR) that the tests train it on.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .ssd import selective_scan, selective_state_update


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class RMSNormGated(nn.Module):
    """mamba_ssm's gated RMSNorm: ``norm(x * silu(z))`` (norm_before_gate=False) or
    ``norm(x) * silu(z)``, normalized over groups of ``group_size`` channels."""

    def __init__(self, d: int, eps: float = 1e-5, group_size: int | None = None, norm_before_gate: bool = False):
        super().__init__()
        self.eps = eps
        self.group_size = group_size or d
        self.norm_before_gate = norm_before_gate
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x, z=None):
        if z is not None and not self.norm_before_gate:
            x = x * F.silu(z)
        xg = x.unflatten(-1, (-1, self.group_size))
        out = (xg * torch.rsqrt(xg.pow(2).mean(-1, keepdim=True) + self.eps)).flatten(-2) * self.weight
        if z is not None and self.norm_before_gate:
            out = out * F.silu(z)
        return out


class Mamba2(nn.Module):
    """The Mamba-2 mixer. ``forward(u (b, l, d_model)) -> (b, l, d_model)``."""

    def __init__(self, d_model: int, d_state: int = 128, d_conv: int = 4, expand: int = 2, headdim: int = 64,
                 ngroups: int = 1, A_init_range=(1, 16), D_has_hdim: bool = False, rmsnorm: bool = True,
                 norm_before_gate: bool = False, dt_min: float = 0.001, dt_max: float = 0.1, dt_init_floor: float = 1e-4,
                 dt_limit=(0.0, float("inf")), bias: bool = False, conv_bias: bool = True, chunk_size: int = 256,
                 backend: str = "auto"):
        super().__init__()
        self.d_model, self.d_state, self.d_conv, self.headdim, self.ngroups = d_model, d_state, d_conv, headdim, ngroups
        self.d_inner = expand * d_model
        if self.d_inner % headdim:
            raise ValueError(f"headdim: expand * d_model = {self.d_inner} must be a multiple of headdim = {headdim}")
        self.nheads = self.d_inner // headdim
        if self.nheads % ngroups:
            raise ValueError(f"ngroups: the number of heads {self.nheads} must be a multiple of ngroups = {ngroups}")
        self.D_has_hdim, self.rmsnorm, self.dt_limit, self.chunk_size = D_has_hdim, rmsnorm, tuple(dt_limit), chunk_size
        self.backend = backend
        d_in_proj = 2 * self.d_inner + 2 * ngroups * d_state + self.nheads  # [z, xBC, dt]
        self.in_proj = nn.Linear(d_model, d_in_proj, bias=bias)
        self.conv_dim = self.d_inner + 2 * ngroups * d_state
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim, padding=d_conv - 1,
                                bias=conv_bias)
        # dt_bias = softplus^-1(dt), dt log-uniform in [dt_min, dt_max] (mamba_ssm's init)
        dt = torch.exp(torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(*A_init_range)))
        self.D = nn.Parameter(torch.ones(self.d_inner if D_has_hdim else self.nheads))
        if rmsnorm:
            self.norm = RMSNormGated(self.d_inner, eps=1e-5, group_size=self.d_inner // ngroups,
                                     norm_before_gate=norm_before_gate)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def _split(self, zxbcdt):
        return torch.split(zxbcdt, [self.d_inner, self.conv_dim, self.nheads], dim=-1)

    def _ssm_args(self):
        A = -torch.exp(self.A_log.float())
        D = self.D.view(self.nheads, self.headdim) if self.D_has_hdim else self.D
        return A, D

    def _out(self, y, z):
        y = self.norm(y, z) if self.rmsnorm else y
        return self.out_proj(y)

    def forward(self, u, return_states: bool = False):
        """``u (b, l, d_model)``; with ``return_states`` also the decode caches
        ``(conv_state (b, conv_dim, d_conv), ssm_state (b, nheads, headdim, d_state))``."""
        b, l, _ = u.shape
        z, xBC, dt = self._split(self.in_proj(u))
        xBC_t = xBC.transpose(1, 2)  # (b, conv_dim, l): the decode cache's layout
        xBC = F.silu(self._causal_conv(xBC))
        x, B, C = torch.split(xBC, [self.d_inner, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1)
        A, D = self._ssm_args()
        res = selective_scan(x.unflatten(-1, (self.nheads, self.headdim)), dt, A,
                             B.unflatten(-1, (self.ngroups, self.d_state)), C.unflatten(-1, (self.ngroups, self.d_state)),
                             D=D, z=None if self.rmsnorm else z.unflatten(-1, (self.nheads, self.headdim)),
                             dt_bias=self.dt_bias, dt_softplus=True, dt_limit=self.dt_limit,
                             return_final_states=return_states, chunk_size=self.chunk_size, backend=self.backend)
        y, ssm_state = res if return_states else (res, None)
        out = self._out(y.flatten(-2), z)
        if not return_states:
            return out
        conv_state = F.pad(xBC_t, (self.d_conv - l, 0))[..., -self.d_conv:] if l < self.d_conv else xBC_t[..., -self.d_conv:]
        return out, conv_state.detach().contiguous(), ssm_state.detach().float().contiguous()

    def _causal_conv(self, x):
        """The causal depthwise conv1d of ``x (b, l, conv_dim)``, i.e. ``conv1d`` with padding
        ``d_conv - 1`` cut to ``l``, as ``d_conv`` shifted products along l: on CPU these are
        a few contiguous elementwise ops forward and backward, where torch's depthwise
        ``convolution_backward`` took ~5 ms of a ~20 ms step of the tiny model."""
        l = x.shape[1]
        w = self.conv1d.weight[:, 0, :]  # (conv_dim, d_conv)
        xp = F.pad(x, (0, 0, self.d_conv - 1, 0))
        out = xp[:, 0:l] * w[:, 0]
        for k in range(1, self.d_conv):
            out = out + xp[:, k:k + l] * w[:, k]
        return out if self.conv1d.bias is None else out + self.conv1d.bias

    def allocate_inference_cache(self, batch: int, device=None):
        conv = torch.zeros(batch, self.conv_dim, self.d_conv, device=device)
        ssm = torch.zeros(batch, self.nheads, self.headdim, self.d_state, device=device)
        return conv, ssm

    def step(self, u, conv_state, ssm_state):
        """One token ``u (b, d_model)`` -> ``(b, d_model)``; updates both caches in place."""
        z, xBC, dt = self._split(self.in_proj(u))
        with torch.no_grad():
            conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
            conv_state[:, :, -1] = xBC
        xBC = torch.sum(conv_state * self.conv1d.weight[:, 0, :], dim=-1)
        if self.conv1d.bias is not None:
            xBC = xBC + self.conv1d.bias
        xBC = F.silu(xBC)
        x, B, C = torch.split(xBC, [self.d_inner, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1)
        A, D = self._ssm_args()
        y = selective_state_update(ssm_state, x.unflatten(-1, (self.nheads, self.headdim)), dt, A,
                                   B.unflatten(-1, (self.ngroups, self.d_state)),
                                   C.unflatten(-1, (self.ngroups, self.d_state)), D=D,
                                   z=None if self.rmsnorm else z.unflatten(-1, (self.nheads, self.headdim)),
                                   dt_bias=self.dt_bias, dt_softplus=True, dt_limit=self.dt_limit, backend=self.backend)
        return self._out(y.flatten(-2), z)


class Block(nn.Module):
    """Pre-norm residual block: ``x + mixer(norm(x))``."""

    def __init__(self, d_model: int, **mamba_kw):
        super().__init__()
        self.norm = RMSNorm(d_model)
        self.mixer = Mamba2(d_model, **mamba_kw)

    def forward(self, x):
        return x + self.mixer(self.norm(x))


class MambaLM(nn.Module):
    """Embedding -> ``n_layers`` Mamba-2 blocks -> RMSNorm -> tied LM head.
    ``forward(ids (b, l)) -> logits (b, l, vocab_size)``."""

    def __init__(self, vocab_size: int, d_model: int = 64, n_layers: int = 2, *, d_state: int = 32, headdim: int = 16,
                 expand: int = 2, ngroups: int = 1, chunk_size: int = 64, backend: str = "auto", **mamba_kw):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(Block(d_model, d_state=d_state, headdim=headdim, expand=expand, ngroups=ngroups,
                                          chunk_size=chunk_size, backend=backend, **mamba_kw) for _ in range(n_layers))
        self.norm_f = RMSNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.embedding.weight
        # mamba_ssm's _init_weights: small embeddings, out_proj scaled down by sqrt(n_layers)
        nn.init.normal_(self.embedding.weight, std=0.02)
        for layer in self.layers:
            with torch.no_grad():
                layer.mixer.out_proj.weight /= math.sqrt(n_layers)

    def forward(self, ids):
        h = self.embedding(ids)
        for layer in self.layers:
            h = layer(h)
        return self.lm_head(self.norm_f(h))

    def set_scan_backend(self, backend: str) -> "MambaLM":
        """Run every block's scan (and decode step) on ``backend`` from now on."""
        for layer in self.layers:
            layer.mixer.backend = backend
        return self


def associative_recall(n: int, *, n_pairs: int = 8, n_keys: int = 16, n_values: int = 16, n_queries: int = 8,
                       seed: int = 0):
    """Multi-query associative recall (Zoology's MQAR), ``n`` sequences.

    Each sequence lists ``n_pairs`` key-value pairs ``k1 v1 k2 v2 ...`` (distinct keys,
    tokens ``0..n_keys-1``; values ``n_keys..n_keys+n_values-1``), then ``n_queries`` keys
    drawn from those pairs. The target at each query position is that key's value; every
    other target is -100 (ignored). Chance accuracy is ``1 / n_values``.

    Returns ``(inputs (n, 2 n_pairs + n_queries), targets)`` as int64 tensors.
    """
    rng = np.random.default_rng(seed)
    keys = np.argsort(rng.random((n, n_keys)), axis=1)[:, :n_pairs]  # distinct keys per sequence
    vals = rng.integers(n_keys, n_keys + n_values, (n, n_pairs))
    pick = rng.integers(0, n_pairs, (n, n_queries))
    rows = np.arange(n)[:, None]
    inputs = np.concatenate([np.stack([keys, vals], axis=2).reshape(n, 2 * n_pairs), keys[rows, pick]], axis=1)
    targets = np.full_like(inputs, -100)
    targets[:, 2 * n_pairs:] = vals[rows, pick]
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def train_associative_recall(model: MambaLM, *, steps: int = 300, batch: int = 64, lr: float = 3e-3, seed: int = 0,
                             **task):
    """Train ``model`` on fresh MQAR batches with AdamW; returns the loss history."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    losses = []
    model.train()
    for step in range(steps):
        x, y = associative_recall(batch, seed=seed * 1_000_003 + step + 1, **task)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def recall_accuracy(model: MambaLM, inputs, targets) -> tuple[float, torch.Tensor]:
    """(accuracy over the query positions, argmax predictions (n, l))."""
    model.eval()
    pred = model(inputs).argmax(-1)
    mask = targets != -100
    return (pred[mask] == targets[mask]).float().mean().item(), pred
