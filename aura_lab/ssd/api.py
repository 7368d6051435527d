"""``selective_scan`` and ``selective_state_update``: validation into one problem, dispatch,
the result in the caller's array kind and dtype."""

from __future__ import annotations

import numpy as np

from .. import _arrays as A_
from .problem import INF, check_grad_backend, needs_grad, op, step_op, validate_scan, validate_step
from .train import train_op


def selective_scan(x, dt, A, B, C, *, D=None, z=None, dt_bias=None, dt_softplus: bool = False,
                   dt_limit=(0.0, INF), initial_states=None, cu_seqlens=None, return_final_states: bool = False,
                   chunk_size: int = 256, backend: str = "auto"):
    """The Mamba-2 selective scan (``mamba_chunk_scan_combined`` semantics).

    Args:
        x: ``(b, l, h, p)`` input (batch, length, heads, head dim).
        dt: ``(b, l, h)`` time steps (before ``dt_bias`` / softplus / ``dt_limit``).
        A: ``(h,)`` per-head decay rate, ``<= 0``.
        B: ``(b, l, g, n)`` input projection, ``h % g == 0``; head ``i`` uses group
            ``i // (h // g)``.
        C: ``(b, l, g, n)`` output projection, grouped as ``B``.
        D: ``(h,)`` or ``(h, p)`` skip connection, ``y += D * x``.
        z: ``(b, l, h, p)`` gate, ``y *= silu(z)`` (applied after D).
        dt_bias: ``(h,)`` added to dt (with or without softplus).
        dt_softplus: apply ``softplus`` (identity above 20, as upstream) after the bias.
        dt_limit: ``(lo, hi)``, ``0 <= lo <= hi``; dt is always clamped to it.
        initial_states: ``(b, h, p, n)``, or ``(num_seqs, h, p, n)`` with ``cu_seqlens``.
        cu_seqlens: ``(num_seqs + 1,)`` integer offsets packing variable-length sequences
            into a batch of one (``b == 1``): starts at 0, non-decreasing, ends at ``l``.
            The state restarts at every boundary.
        return_final_states: also return the final states, ``(b, h, p, n)`` or
            ``(num_seqs, h, p, n)`` with ``cu_seqlens``.
        chunk_size: chunk length of the chunked SSD form (numpy and torch backends; the
            result does not depend on it beyond rounding); one longer than ``l`` is ``l``.
        backend: ``"auto"``, ``"numpy"``, ``"torch"``, ``"mojo"`` or ``"max"``. With an input that
            requires grad (and grad mode on), ``auto`` runs torch, the only backend that
            propagates gradients; another explicit backend raises ``RuntimeError``.

    Returns:
        ``y (b, l, h, p)`` in the dtype and array kind of ``x`` (torch in, torch out), or
        ``(y, final_states)``; final states are float32 (float64 for float64 ``x``).

    Determinism: ``y``, the final states and every gradient but those of ``B`` and ``C`` are
    bit-identical across runs and kernel thread counts (``AURA_NUM_THREADS``,
    ``thread_budget``); the mojo/max gradients of ``B`` and ``C`` sum one partial per kernel
    thread, so across thread counts they agree to within 1e-6 of their largest entry (float32;
    measured 2.3e-7, tests/integration/test_determinism.py).
    """
    prob = validate_scan(x, dt, A, B, C, D, z, dt_bias, dt_softplus, dt_limit, initial_states, cu_seqlens, chunk_size)
    run = op
    if needs_grad(prob.x, prob.dt, prob.A, prob.B, prob.C, prob.D, prob.z, prob.dt_bias, prob.initial_states):
        check_grad_backend(backend, "selective_scan", train_op.backends)
        run = train_op
    itemsize = 8 if prob.f64 else 4
    A_.check_memory(itemsize * (3 * prob.b * prob.l * prob.h * prob.p + 2 * prob.nseq * prob.h * prob.p * prob.n),
                    f"selective_scan of x {tuple(prob.x.shape)}")
    y, final = run.run(backend, prob)
    y = _out_kind(y, prob.kind, prob.x)
    if not return_final_states:
        return y
    return y, _out_kind(final, prob.kind, None)


def selective_state_update(state, x, dt, A, B, C, *, D=None, z=None, dt_bias=None, dt_softplus: bool = False,
                           dt_limit=(0.0, INF), backend: str = "auto"):
    """One decode step of the scan: updates ``state`` in place and returns ``y``.

    Args:
        state: ``(b, h, p, n)`` writable numpy array or torch tensor (floating point),
            e.g. the final states of a prefill ``selective_scan``; updated in place.
        x: ``(b, h, p)``.
        dt: ``(b, h)``.
        A: ``(h,)``, ``<= 0``.
        B: ``(b, g, n)``.
        C: ``(b, g, n)``.
        D: ``(h,)`` or ``(h, p)``.
        z: ``(b, h, p)``.
        dt_bias: ``(h,)``.
        dt_softplus: as in ``selective_scan``.
        dt_limit: as in ``selective_scan`` (dt is clamped to ``dt_limit`` here too, so that a
            prefill followed by decode steps equals one scan).
        backend: ``"auto"``, ``"numpy"``, ``"torch"``, ``"mojo"`` or ``"max"``.

    Returns:
        ``y (b, h, p)`` in the dtype and kind of ``x``. Computes in float32 (float64 for
        float64 ``x``) and stores the new state in ``state``'s own dtype.

    A step is never stopped midway: cancelled (``cancellable``) before it starts it raises
    ``Cancelled`` with ``state`` untouched; a cancel that arrives while it runs takes effect
    at the next call, and a Ctrl-C is raised once the step's kernel has returned, leaving
    ``state`` either as it was or advanced by the whole token (never partly).
    """
    prob = validate_step(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus, dt_limit)
    if needs_grad(prob.x, prob.dt, prob.A, prob.B, prob.C, prob.D, prob.z, prob.dt_bias):
        check_grad_backend(backend, "selective_state_update (inference only on mojo and max)", ("torch",))
        backend = "torch"
    y = step_op.run(backend, prob)
    return _out_kind(y, prob.kind, prob.x)


def _out_kind(arr, kind: str, like):
    """Convert a backend result to the caller's kind and the dtype of ``like`` (None: keep)."""
    if kind == "torch":
        t = arr if A_.is_torch(arr) else A_.to_torch(arr)
        if like is not None:
            t = t.to(like.dtype if A_.is_torch(like) else _torch_dtype(like.dtype))
        return t
    a = arr.detach().cpu().numpy() if A_.is_torch(arr) else arr
    if like is not None and a.dtype != like.dtype:
        a = a.astype(like.dtype)
    return a


def _torch_dtype(np_dtype):
    import torch

    return {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32,
            np.dtype(np.float64): torch.float64}[np.dtype(np_dtype)]
