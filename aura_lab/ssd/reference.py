"""The numpy references of the scan: the float64 sequential oracle, a 1:1 port of
mamba_ssm's ``ssd_minimal.py`` (the chunked four-block SSD), and the ``numpy`` backend of the
scan and the decode step built on them."""

from __future__ import annotations

import numpy as np

from .. import _arrays as A_
from .problem import INF, Scan, ScanOutput, Step, as_numpy, op, step_op, write_state


def softplus(v):
    """log(1 + exp(v)), the identity above 20 (as mamba_ssm's kernels)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(v <= 20.0, np.log1p(np.exp(np.minimum(v, 20.0))), v)


def silu(v):
    with np.errstate(over="ignore", invalid="ignore"):
        return v / (1.0 + np.exp(-v))


def process_dt(dt, dt_bias=None, dt_softplus=False, dt_limit=(0.0, INF)):
    """dt + dt_bias, softplus, clamp to dt_limit (NaN stays NaN)."""
    v = dt if dt_bias is None else dt + dt_bias
    if dt_softplus:
        v = softplus(v)
    return np.clip(v, dt_limit[0], dt_limit[1])


def _heads(M, h: int):
    """(..., g, n) -> (..., h, n): head i uses group i // (h // g)."""
    return np.repeat(M, h // M.shape[-2], axis=-2)


def _epilogue(y, x, D, z):
    if D is not None:
        y = y + (D[:, None] if D.ndim == 1 else D) * x
    if z is not None:
        y = y * silu(z)
    return y


def ssd_sequential_ref(x, dt, A, B, C, *, D=None, z=None, dt_bias=None, dt_softplus=False, dt_limit=(0.0, INF),
                       initial_states=None, cu_seqlens=None):
    """The oracle: the plain sequential recurrence of the module docstring, in float64.

    Same arguments as ``selective_scan`` (numpy arrays, or anything ``np.asarray`` takes);
    returns ``(y (b, l, h, p), final_states (b or num_seqs, h, p, n))``, both float64.
    """
    f = lambda a: None if a is None else np.asarray(a.detach().cpu().float() if A_.is_torch(a) else a, np.float64)  # noqa: E731
    x, dt, A, B, C, D, z, dt_bias, init = map(f, (x, dt, A, B, C, D, z, dt_bias, initial_states))
    b, l, h, p = x.shape
    n = B.shape[-1]
    dtp = process_dt(dt, dt_bias, dt_softplus, dt_limit)
    Bh, Ch = _heads(B, h), _heads(C, h)  # (b, l, h, n)
    if cu_seqlens is None:
        runs = [(slice(None), 0, l, slice(None))]  # all batches at once
    else:
        cu = np.asarray(cu_seqlens, np.int64)
        runs = [(slice(0, 1), cu[i], cu[i + 1], slice(i, i + 1)) for i in range(len(cu) - 1)]
    nfin = b if cu_seqlens is None else len(runs)
    final = np.zeros((nfin, h, p, n))
    y = np.zeros((b, l, h, p))
    with np.errstate(all="ignore"):
        for bsl, t0, t1, ssl in runs:
            s = np.zeros_like(final[ssl]) if init is None else init[ssl].copy()  # (nb, h, p, n)
            for t in range(t0, t1):
                dA = np.exp(np.minimum(dtp[bsl, t] * A, 0.0))  # (nb, h)
                s = dA[..., None, None] * s + (dtp[bsl, t, :, None] * x[bsl, t])[..., None] * Bh[bsl, t, :, None, :]
                y[bsl, t] = np.einsum("bhpn,bhn->bhp", s, Ch[bsl, t])
            final[ssl] = s
        y = _epilogue(y, x, D, z)
    return y, final


def segsum(x):
    """Stable segment sum (ssd_minimal.py): ``out[..., i, j] = sum(x[..., j+1 : i+1])`` for
    ``i >= j`` and ``-inf`` above the diagonal, computed as a masked cumsum (never the
    difference of two cumsums)."""
    T = x.shape[-1]
    x = np.broadcast_to(x[..., None], (*x.shape, T))  # repeat "... d -> ... d e"
    x = np.where(np.tril(np.ones((T, T), bool), -1), x, 0.0)
    x_segsum = np.cumsum(x, axis=-2)
    return np.where(np.tril(np.ones((T, T), bool), 0), x_segsum, -np.inf)


def ssd_minimal_discrete(X, A, B, C, block_len, initial_states=None, *, state_passing: str = "matmul"):
    """Chunked SSD, a 1:1 port of mamba_ssm ``modules/ssd_minimal.py`` (the paper's Listing 1).

    Inputs are already discretized: ``X = x * dt`` ``(b, l, h, p)``, ``A = A * dt``
    ``(b, l, h)``, ``B, C`` ``(b, l, h, n)`` (per head). ``initial_states (b, h, p, n)``.
    Unlike upstream, ``l`` need not be a multiple of ``block_len``: the tail is padded
    with ``X = A = B = C = 0``, steps that leave the state unchanged (decay 1, no input),
    so the final state is exact. Every decay exponent is clamped to <= 0.

    ``state_passing="matmul"`` is upstream's step 3 (one matmul with the lower-triangular
    chunk-decay matrix); ``"loop"`` runs the same recurrence chunk by chunk, as upstream's
    Triton ``_state_passing_fwd`` does. Same result, but with a NaN/inf in a late chunk the
    matmul form also poisons every earlier chunk (``0 * NaN`` above the diagonal), the loop
    does not; the numpy backend uses the loop.

    Returns ``(Y (b, l, h, p), final_state (b, h, p, n))``.
    """
    b, l = X.shape[:2]
    pad = (-l) % block_len
    if pad:
        X, A, B, C = (np.concatenate([M, np.zeros((b, pad, *M.shape[2:]), M.dtype)], axis=1) for M in (X, A, B, C))
    c = X.shape[1] // block_len
    # rearrange into blocks / chunks: "b (c l) ... -> b c l ..."
    X, A, B, C = (M.reshape(b, c, block_len, *M.shape[2:]) for M in (X, A, B, C))
    A = A.transpose(0, 3, 1, 2)  # "b c l h -> b h c l"
    A_cumsum = np.cumsum(A, axis=-1)
    # 1. the output of each intra-chunk (diagonal blocks)
    L = np.exp(segsum(A))
    Y_diag = np.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", C, B, L, X, optimize=True)
    # 2. the state of each chunk (right term of the low-rank factorization of the off-diagonal blocks)
    decay_states = np.exp(np.minimum(A_cumsum[:, :, :, -1:] - A_cumsum, 0.0))
    states = np.einsum("bclhn,bhcl,bclhp->bchpn", B, decay_states, X, optimize=True)
    # 3. the inter-chunk SSM recurrence: true states at chunk boundaries
    if initial_states is None:
        initial_states = np.zeros((b, 1, *states.shape[2:]), states.dtype)  # (upstream: zeros_like(states[:, :1]), empty when l == 0)
    else:
        initial_states = initial_states[:, None]
    states = np.concatenate([initial_states, states], axis=1)
    if state_passing == "matmul":
        decay_chunk = np.exp(segsum(np.pad(A_cumsum[:, :, :, -1], ((0, 0), (0, 0), (1, 0)))))
        new_states = np.einsum("bhzc,bchpn->bzhpn", decay_chunk, states, optimize=True)
    elif state_passing == "loop":
        new_states = [states[:, 0]]
        for k in range(c):  # h_{k+1} = exp(sum of A over chunk k) h_k + chunk state k
            new_states.append(np.exp(A_cumsum[:, :, k, -1])[..., None, None] * new_states[-1] + states[:, k + 1])
        new_states = np.stack(new_states, axis=1)
    else:
        raise ValueError(f"state_passing: expected 'matmul' or 'loop', got {state_passing!r}")
    states, final_state = new_states[:, :-1], new_states[:, -1]
    # 4. state -> output conversion per chunk (left term of the low-rank factorization)
    state_decay_out = np.exp(A_cumsum)
    Y_off = np.einsum("bclhn,bchpn,bhcl->bclhp", C, states, state_decay_out, optimize=True)
    Y = (Y_diag + Y_off).reshape(b, c * block_len, *X.shape[3:])  # "b c l h p -> b (c l) h p"
    return Y[:, :l], final_state


def check_chunk_memory(prob: Scan, itemsize: int) -> None:
    """The chunked form holds a few (b, h, l, chunk) decay / score blocks at once."""
    q = min(prob.chunk_size, max(1, prob.l))
    A_.check_memory(6 * itemsize * prob.b * prob.h * (prob.l + q) * q,
                    f"the chunked SSD of x {tuple(prob.x.shape)} with chunk_size={prob.chunk_size}")


@op.impl("numpy")
def _numpy(prob: Scan) -> ScanOutput:
    """The chunked SSD (``ssd_minimal_discrete``) per sequence, in the compute dtype."""
    dtype = prob.compute_dtype
    check_chunk_memory(prob, dtype.itemsize)
    x, dt, A, B, C, D, z, bias, init = (as_numpy(a, dtype) for a in (prob.x, prob.dt, prob.A, prob.B, prob.C, prob.D,
                                                                  prob.z, prob.dt_bias, prob.initial_states))
    h = prob.h
    with np.errstate(all="ignore"):
        dtp = process_dt(dt, bias, prob.dt_softplus, (prob.dt_lo, prob.dt_hi)).astype(dtype)
        T = prob.b * prob.l
        xf, dtf = x.reshape(T, h, prob.p), dtp.reshape(T, h)
        Bf, Cf = B.reshape(T, prob.g, prob.n), C.reshape(T, prob.g, prob.n)
        y = np.empty((T, h, prob.p), dtype)
        final = np.empty((prob.nseq, h, prob.p, prob.n), dtype)
        runs = [(0, prob.b)] if not prob.varlen else [(i, i + 1) for i in range(prob.nseq)]
        for s0, s1 in runs:  # whole batch at once, or one packed sequence at a time
            if prob.varlen:
                t0, t1 = prob.offsets[s0], prob.offsets[s1]
                shp = lambda M: M[t0:t1][None]  # noqa: E731
            else:
                shp = lambda M: M.reshape(prob.b, prob.l, *M.shape[1:])  # noqa: E731
            xs, ds = shp(xf), shp(dtf)
            Y, fs = ssd_minimal_discrete(xs * ds[..., None], A * ds, _heads(shp(Bf), h), _heads(shp(Cf), h),
                                         prob.chunk_size, None if init is None else init[s0:s1], state_passing="loop")
            y[prob.offsets[s0]:prob.offsets[s1]] = Y.reshape(-1, h, prob.p)
            final[s0:s1] = fs
        y = _epilogue(y.reshape(x.shape), x, D, z).astype(dtype, copy=False)
    return ScanOutput(y, final)


@step_op.impl("numpy")
def _step_numpy(prob: Step):
    """The recurrence of one step, in the compute dtype."""
    dtype = prob.compute_dtype
    s, x, dt, A, B, C, D, z, bias = (as_numpy(a, dtype) for a in (prob.state, prob.x, prob.dt, prob.A, prob.B, prob.C,
                                                              prob.D, prob.z, prob.dt_bias))
    with np.errstate(all="ignore"):
        dtp = process_dt(dt, bias, prob.dt_softplus, (prob.dt_lo, prob.dt_hi)).astype(dtype)  # (b, h)
        dA = np.exp(np.minimum(dtp * A, 0.0))
        Bh, Ch = _heads(B, prob.h), _heads(C, prob.h)  # (b, h, n)
        s = dA[..., None, None] * s + (dtp[..., None] * x)[..., None] * Bh[:, :, None, :]
        y = np.einsum("bhpn,bhn->bhp", s, Ch)
        y = _epilogue(y, x, D, z).astype(dtype, copy=False)
    write_state(prob.state, s)
    return y
