"""Mamba-2 selective scan (SSD): ``selective_scan`` and the decode step ``selective_state_update``.

The recurrence, per head ``h`` (group ``g = h // (H / G)``), head channel ``p`` and state
index ``n`` ::

    dt_t      = clamp(softplus?(dt[t, h] + dt_bias[h]), *dt_limit)
    h_t[p, n] = exp(dt_t * A[h]) * h_{t-1}[p, n] + dt_t * x[t, h, p] * B[t, g, n]
    y[t, h, p] = sum_n C[t, g, n] * h_t[p, n] + D[h(, p)] * x[t, h, p]
    y         *= silu(z[t, h, p])                                   # when z is given

with exactly the arguments and semantics of mamba_ssm's ``mamba_chunk_scan_combined``
(dt is always clamped to ``dt_limit``, default ``(0, inf)``, so dt >= 0).

Implementations (one ``Op`` each for the scan and the decode step):

* ``ssd_sequential_ref``: the plain recurrence in float64, the oracle every backend is
  tested against.
* ``ssd_minimal_discrete``: a 1:1 numpy port of mamba_ssm's ``ssd_minimal.py`` (the
  paper's four-block chunked SSD), generalized to lengths that are not a multiple of the
  chunk size. The ``numpy`` backend is built on it.
* ``torch``: the chunked SSD in torch (CPU and CUDA; autograd flows through it).
* ``mojo``: ``kernels/ssd.mojo`` (compute in ``kernels/aura_kernels/ssd/scan.mojo``), the
  sequential recurrence with the state resident in cache, SIMD over ``n`` and both cores.
* ``max``: the same kernel as a MAX graph custom op (``aura_kernels/ssd/ops.mojo``).

Policies:

* dtypes: float16 / bfloat16 / float32 inputs compute in float32 (dt processing, decays,
  states and accumulations); float64 computes in float64. ``y`` has the dtype of ``x``;
  final states are float32 (float64 for float64 ``x``).
* ``A`` must be <= 0 (the decay ``exp(dt * A)`` never exceeds 1; the Mamba2 module uses
  ``A = -exp(A_log)``). Every exponent of a decay is clamped to <= 0 (upstream fix
  state-spaces/mamba#713), which is then exact rounding protection, not a change of result.
* NaN / inf: inputs are not scanned for finiteness. Non-finite values propagate through
  IEEE arithmetic into ``y`` and the states, and never raise or crash: every output that
  depends on a non-finite input is non-finite. The chunked backends (numpy, torch) can in
  addition turn the earlier outputs of the *same chunk* non-finite (``0 * NaN`` in the
  masked intra-chunk matmul); the sequential mojo kernel never touches earlier outputs.
* ``cu_seqlens`` must start at 0, be non-decreasing and end at ``l``; empty sequences are
  allowed (their final state is their initial state, or zeros).
* Non-contiguous inputs are accepted (copied to contiguous where a backend needs it).

The package, one stage per module as in state-spaces/mamba: ``problem`` (validation into
one ``Scan`` / ``Step`` problem), ``reference`` (the oracle, ``ssd_minimal_discrete`` and the
numpy backend), ``torch_impl``, ``kernels`` (mojo and max) and ``api`` (the public functions).
"""

from __future__ import annotations

from . import kernels, reference, torch_impl  # noqa: F401  (register the backends)
from .api import selective_scan, selective_state_update
from .problem import ABI, Scan, ScanOutput, Step, op, step_op
from .reference import process_dt, segsum, silu, softplus, ssd_minimal_discrete, ssd_sequential_ref
from .torch_impl import ssd_chunked_torch

__all__ = ["ABI", "Scan", "ScanOutput", "Step", "op", "process_dt", "segsum", "selective_scan", "selective_state_update",
           "silu", "softplus", "ssd_chunked_torch", "ssd_minimal_discrete", "ssd_sequential_ref", "step_op"]
