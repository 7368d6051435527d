"""The ``torch`` backend: the chunked SSD in torch (CPU and CUDA; autograd flows through it)."""

from __future__ import annotations

import numpy as np

from .. import _arrays as A_
from .problem import Scan, ScanOutput, Step, needs_grad, op, step_op, write_state
from .reference import check_chunk_memory


def _t(a, device, dtype):
    """A torch tensor on ``device`` in ``dtype`` (autograd flows through ``.to``)."""
    if a is None:
        return None
    if not A_.is_torch(a):
        a = A_.to_torch(a)
    return a.to(device=device, dtype=dtype)


def _segsum_torch(x):
    """Stable segment sum (masked cumsum), as ``segsum`` / ssd_minimal.py."""
    import torch

    T = x.size(-1)
    x = x[..., None].expand(*x.shape, T)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=-1)
    x = x.masked_fill(~mask, 0)
    x_segsum = torch.cumsum(x, dim=-2)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=0)
    return x_segsum.masked_fill(~mask, -torch.inf)


def ssd_chunked_torch(x, dt, A, B, C, chunk_size: int, initial_states=None):
    """Chunked SSD in torch with groups, for already processed ``dt``.

    x ``(b, l, h, p)``, dt ``(b, l, h)`` (after bias / softplus / clamp), A ``(h,)``,
    B, C ``(b, l, g, n)``, initial_states ``(b, h, p, n)``. Returns ``(y, final_states)``.
    The four blocks of ``ssd_minimal_discrete``, with ``C^T B`` computed once per group
    and every contraction a batched matmul; decay exponents clamped to <= 0.
    """
    import torch
    import torch.nn.functional as F

    b, l, h, p = x.shape
    g, n = B.shape[-2:]
    if l == 0:
        return x.new_zeros((b, 0, h, p)), (x.new_zeros((b, h, p, n)) if initial_states is None else initial_states.clone())
    Q = chunk_size
    pad = (-l) % Q
    if pad:  # zero steps at the end: decay 1, no input (exact, see ssd_minimal_discrete)
        x, B, C = (F.pad(M, (0, 0, 0, 0, 0, pad)) for M in (x, B, C))
        dt = F.pad(dt, (0, 0, 0, pad))
    c = x.shape[1] // Q
    hg = h // g
    a = (dt * A).reshape(b, c, Q, h).permute(0, 3, 1, 2)  # (b, h, c, Q)
    a_cs = torch.cumsum(a, dim=-1)
    X = (x * dt[..., None]).reshape(b, c, Q, g, hg, p).permute(0, 1, 3, 4, 2, 5)  # (b, c, g, hg, Q, p)
    Bc = B.reshape(b, c, Q, g, n).permute(0, 1, 3, 2, 4)  # (b, c, g, Q, n)
    Cc = C.reshape(b, c, Q, g, n).permute(0, 1, 3, 2, 4)
    per_head = lambda M: M.permute(0, 2, 1, *range(3, M.dim())).reshape(b, c, g, hg, *M.shape[3:])  # noqa: E731
    # 1. diagonal blocks: y = (C B^T * L) X
    L = per_head(torch.exp(_segsum_torch(a)))  # (b, c, g, hg, Q, Q)
    CB = (Cc @ Bc.transpose(-1, -2))[:, :, :, None]  # (b, c, g, 1, Q, Q)
    Y = (CB * L) @ X
    # 2. chunk states: sum_s decay(s -> end) B_s X_s
    decay_states = per_head(torch.exp(torch.clamp(a_cs[..., -1:] - a_cs, max=0.0)))  # (b, c, g, hg, Q)
    states = (X * decay_states[..., None]).transpose(-1, -2) @ Bc[:, :, :, None]  # (b, c, g, hg, p, n)
    states = states.reshape(b, c, h, p, n)
    # 3. inter-chunk recurrence
    init = states.new_zeros((b, 1, h, p, n)) if initial_states is None else initial_states[:, None]
    states = torch.cat([init, states], dim=1)  # (b, c + 1, h, p, n)
    chunk_decay = torch.exp(a_cs[..., -1])  # (b, h, c): decay across each whole chunk
    new_states = [states[:, 0]]
    for k in range(c):  # chunk by chunk, as upstream's _state_passing_fwd (no 0 * NaN from later chunks)
        new_states.append(chunk_decay[:, :, k, None, None] * new_states[-1] + states[:, k + 1])
    final = new_states[-1]
    prev = torch.stack(new_states[:-1], dim=1).reshape(b, c, g, hg, p, n)
    # 4. off-diagonal blocks: y += exp(a_cs) C h_prev
    Y = Y + (Cc[:, :, :, None] @ prev.transpose(-1, -2)) * per_head(torch.exp(a_cs))[..., None]
    y = Y.reshape(b, c, h, Q, p).permute(0, 1, 3, 2, 4).reshape(b, c * Q, h, p)[:, :l]
    return y, final


def _process_dt_torch(dt, bias, softplus_: bool, lo: float, hi: float):
    import torch.nn.functional as F

    v = dt if bias is None else dt + bias
    if softplus_:
        v = F.softplus(v, beta=1.0, threshold=20.0)
    return v.clamp(lo, hi)


def _epilogue_torch(y, x, D, z):
    import torch.nn.functional as F

    if D is not None:
        y = y + (D[:, None] if D.dim() == 1 else D) * x
    if z is not None:
        y = y * F.silu(z)
    return y


@op.impl("torch", devices=("cpu", "cuda"))
def scan_torch(prob: Scan) -> ScanOutput:
    """The chunked SSD in torch (autograd flows through it: also ``train_op``'s torch backend)."""
    import torch

    dev = torch.device(prob.device) if prob.device != "cpu" else torch.device("cpu")
    if prob.device != "cpu":
        dev = next(a.device for a in (prob.x, prob.dt, prob.A, prob.B, prob.C, prob.D, prob.z, prob.dt_bias,
                                      prob.initial_states) if A_.is_torch(a) and a.device.type != "cpu")
    dtype = torch.float64 if prob.f64 else torch.float32
    if dev.type == "cpu":
        check_chunk_memory(prob, 8 if prob.f64 else 4)
    x, dt, A, B, C, D, z, bias, init = (_t(a, dev, dtype) for a in (prob.x, prob.dt, prob.A, prob.B, prob.C, prob.D,
                                                                     prob.z, prob.dt_bias, prob.initial_states))
    dtp = _process_dt_torch(dt, bias, prob.dt_softplus, prob.dt_lo, prob.dt_hi)
    if not prob.varlen:
        y, final = ssd_chunked_torch(x, dtp, A, B, C, prob.chunk_size, init)
    else:
        ys, finals = [], []
        for i in range(prob.nseq):
            t0, t1 = int(prob.offsets[i]), int(prob.offsets[i + 1])
            yi, fi = ssd_chunked_torch(x[:, t0:t1], dtp[:, t0:t1], A, B[:, t0:t1], C[:, t0:t1], prob.chunk_size,
                                       None if init is None else init[i:i + 1])
            ys.append(yi)
            finals.append(fi)
        y, final = torch.cat(ys, dim=1), torch.cat(finals, dim=0)
    return ScanOutput(_epilogue_torch(y, x, D, z), final)


@step_op.impl("torch", devices=("cpu", "cuda"))
def _step_torch(prob: Step):
    """In place on the state when it already has the compute dtype and no gradient is needed;
    otherwise out of place (autograd flows to y) and copied back."""
    import torch

    st = prob.state
    dev = st.device if A_.is_torch(st) else torch.device("cpu")
    dtype = torch.float64 if prob.f64 else torch.float32
    x, dt, A, B, C, D, z, bias = (_t(a, dev, dtype) for a in (prob.x, prob.dt, prob.A, prob.B, prob.C, prob.D,
                                                               prob.z, prob.dt_bias))
    dtp = _process_dt_torch(dt, bias, prob.dt_softplus, prob.dt_lo, prob.dt_hi)
    dA = torch.exp(torch.clamp(dtp * A, max=0.0))[..., None, None]
    rep = prob.h // prob.g
    Bh, Ch = B.repeat_interleave(rep, dim=1)[:, :, None, :], C.repeat_interleave(rep, dim=1)[..., None]
    u = (dtp[..., None] * x)[..., None]  # (b, h, p, 1)
    viewable = st.dtype in (np.float32, np.float64) and min(st.strides, default=0) >= 0
    view = st if A_.is_torch(st) else (torch.from_numpy(st) if viewable else None)
    grad = needs_grad(x, dt, A, B, C)
    if view is not None and view.dtype == dtype and not grad:
        with torch.no_grad():
            view.mul_(dA).addcmul_(u, Bh)
            y = (view @ Ch)[..., 0]
    else:
        s = _t(st, dev, dtype).detach() * dA + u * Bh
        y = (s @ Ch)[..., 0]
        write_state(st, s.detach())
    return _epilogue_torch(y, x, D, z)
