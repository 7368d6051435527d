"""Training through the scan: ``train_op``, the differentiable ``selective_scan``.

``selective_scan`` runs ``train_op`` instead of ``op`` when an input requires grad (and grad
mode is on). Its backends:

* ``torch``: autograd through the chunked SSD (``torch_impl``), CPU and CUDA.
* ``mojo``: a ``torch.autograd.Function`` around the Mojo kernels. The forward, by default
  ``kernels/aura_kernels/ssd/chunked.mojo``'s chunked forward (per chunk of ``CHECKPOINT``
  tokens, the outputs and the next state as small matrix products), else
  (``forward_kernel_set("sequential")``) the inference kernel, saves the state before every
  ``CHECKPOINT``-th token of each sequence (and, with ``z``, the output before the gate); the backward, by default
  ``kernels/aura_kernels/ssd/chunked.mojo`` (per chunk of ``CHECKPOINT`` tokens, the
  gradients as small matrix products from the chunk's checkpoint, the state's gradient
  carried from chunk to chunk), else (``grad_kernel_set("sequential")``)
  ``kernels/aura_kernels/ssd/grad.mojo`` (recomputes the states inside each chunk from its
  checkpoint, then the adjoint token by token), gives the gradients of ``x, dt, A, B, C, D, z, dt_bias`` and
  ``initial_states`` in one pass, through ``dt_softplus`` and ``dt_limit`` (zero where the
  clamp is active, as torch's ``clamp``), grouped ``B``/``C``, the final states' gradient
  and ``cu_seqlens`` (no gradient crosses a sequence boundary).
* ``max``: the same, with the forward and the backward as MAX graph custom ops.

The backward is an op call of its own: it leaves a ``last_dispatch()`` record of ``ssd_train``
whose reason names the kernel that ran (``backward: chunked (kernels/aura_kernels/ssd/chunked.mojo)``).

Memory saved for the backward: the inputs (in the compute dtype) and
``ceil(l / CHECKPOINT)`` states per sequence, i.e. O(l / Q * h * p * n + inputs), not the
O(l * h * p * n) of every state. The backward is first order only (``once_differentiable``).
"""

from __future__ import annotations

import contextlib
import functools
import time

import numpy as np

from .. import _arrays as A_
from .. import _control
from .. import _max as max_backend
from ..registry import Op
from . import kernels as K
from . import torch_impl
from .problem import GRAD_ABI, NS_PER_WORK, Scan, ScanOutput, validate_scan

#: tokens between two saved states. The backward recomputes a chunk's states into a
#: (CHECKPOINT + 1) x 8 x n scratch per thread (256 KiB for n = 128, float32: it stays in L2)
CHECKPOINT = 64
#: forward + backward, both chunked, cost about four forwards (the stored bench ssd, b=1,
#: l=4096: 246 ms training against 67 ms for the prefill in the same run)
train_op = Op("ssd_train", auto_order=("mojo", "torch"), ns_per_work=4 * NS_PER_WORK)

train_op.impl("torch", devices=("cpu", "cuda"))(torch_impl.scan_torch)

_GRAD_NAMES = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_states")


def _checkpoint_count(offsets: np.ndarray) -> int:
    return int(sum(-(-int(ln) // CHECKPOINT) for ln in np.diff(offsets)))


def training_bytes(prob: Scan, npad: int, itemsize: int) -> int:
    """What a training forward keeps for the backward beyond y: the checkpoints, ypre (with
    z) and the compute-dtype copies of the inputs, plus the backward's gradients and
    scratch (the larger of kernels/aura_kernels/ssd/grad.mojo's and ssd/chunked.mojo's)."""
    T, h, p, g = prob.b * prob.l, prob.h, prob.p, prob.g
    ckpt = _checkpoint_count(prob.offsets) * h * p * npad
    inputs = 3 * T * h * p + 2 * T * g * npad + 2 * T * h
    threads, Q = train_op.threads(prob.size), CHECKPOINT
    shared = 2 * T * h * p + 2 * threads * T * g * npad
    sequential = (-(-p // 8)) * T * h + threads * (Q + 2) * 8 * npad
    chunked = (T * h + T * g * Q + threads * (7 * Q * p + 2 * Q * npad + 2 * Q * Q + p * npad + 6 * Q + 2 * g * Q * Q)
               + max(min(prob.nseq, threads) * h, h + threads - 1) * p * npad)  # the threads' slots of dS
    return itemsize * (ckpt + inputs + shared + max(sequential, chunked))


def _check_grad(g, name: str, shape: tuple, dtype):
    """An incoming gradient (custom autograd use can hand anything): shape and dtype."""
    import torch

    if g is None:
        return None
    if not isinstance(g, torch.Tensor):
        raise TypeError(f"selective_scan backward: the gradient of {name} must be a torch tensor, got {type(g).__name__}")
    if not g.dtype.is_floating_point:
        raise TypeError(f"selective_scan backward: the gradient of {name} must be floating point, got {g.dtype}")
    if tuple(g.shape) != tuple(shape):
        raise ValueError(f"selective_scan backward: the gradient of {name} has shape {tuple(g.shape)}, "
                         f"expected {tuple(shape)}")
    # torch makes it contiguous: the gradient of a sum arrives expanded (stride 0), which numpy
    # copies about 10x slower (0.45 s for 100 MB)
    return g.detach().cpu().to(torch.float64 if dtype == np.float64 else torch.float32).contiguous().numpy()


class _Saved:
    """What the forward keeps for the backward (numpy, compute dtype, n padded)."""

    def __init__(self, prob, dtype, npad, operands, offsets, init, ckpt, ypre):
        self.prob, self.dtype, self.npad = prob, dtype, npad
        self.operands, self.offsets, self.init, self.ckpt, self.ypre = operands, offsets, init, ckpt, ypre


def _training_inputs(prob: Scan):
    """``kernels.scan_inputs`` after checking that the training call's memory fits."""
    dtype, npad, operands, init, offsets = K.scan_inputs(prob)
    A_.check_memory(training_bytes(prob, npad, dtype.itemsize), f"training through selective_scan of x {tuple(prob.x.shape)}")
    return dtype, npad, operands, init, offsets


#: the mojo training forward's kernel (``forward_kernel``) -> its call in kernels/ssd.mojo: "chunked"
#: (kernels/aura_kernels/ssd/chunked.mojo, matrix products per chunk of CHECKPOINT tokens) and
#: "sequential" (the inference kernel, kernels/aura_kernels/ssd/scan.mojo, with checkpoints)
FORWARD_CALLS = {"chunked": "scan_chunked", "sequential": "scan"}
#: the kernel the mojo backend's training forward runs (the same y, final states and
#: checkpoints up to rounding; ``forward_kernel_set`` switches it for a block)
forward_kernel = "chunked"


def _mojo_forward(prob: Scan):
    """The training forward (``forward_kernel``), saving checkpoints: (y, fin (n unpadded), what
    the backward needs)."""
    dtype, npad, operands, init, offsets = _training_inputs(prob)
    T = prob.b * prob.l
    y = K.line_aligned((prob.b, prob.l, prob.h, prob.p), dtype)
    fin = np.empty((prob.nseq, prob.h, prob.p, npad), dtype)
    ckpt = np.empty((max(1, _checkpoint_count(offsets)), prob.h, prob.p, npad), dtype)
    ypre = None if prob.z is None else K.line_aligned(y.shape, dtype)
    block = K._block(prob, operands, npad, offsets, T, K._address, init=init, fin=fin, y=y, ckpt=ckpt,
                     chunk=CHECKPOINT, ypre=ypre)
    run = getattr(K._kernel(), FORWARD_CALLS[forward_kernel])
    _control.native(lambda: run(block.address))
    saved = _Saved(prob, dtype, npad, operands, offsets, init, ckpt, ypre)
    return y, np.ascontiguousarray(fin[..., : prob.n]), saved


#: the Mojo backward kernels: "chunked" (kernels/aura_kernels/ssd/chunked.mojo, matrix products
#: per chunk of CHECKPOINT tokens) and "sequential" (ssd/grad.mojo, the adjoint token by token)
GRAD_KERNELS = ("chunked", "sequential")
#: what each backward (``saved.grad_kernel``) runs, for the backward's ``last_dispatch()`` record
BACKWARD_SOURCES = {"chunked": "kernels/aura_kernels/ssd/chunked.mojo",
                    "sequential": "kernels/aura_kernels/ssd/grad.mojo",
                    "max op": "aura_ssd_scan_grad: ssd/chunked.mojo's backward from the MAX forward's checkpoints"}
#: the kernel the mojo backend's backward runs (``grad_kernel_set`` switches it for a block)
grad_kernel = "chunked"


@contextlib.contextmanager
def _kernel_set(var: str, choices: tuple, name: str, who: str):
    """Within the block the module variable ``var`` (a kernel choice) is ``name``, one of ``choices``."""
    if name not in choices:
        raise ValueError(f"{who}: expected one of {choices}, got {name!r}")
    before, globals()[var] = globals()[var], name
    try:
        yield
    finally:
        globals()[var] = before


def grad_kernel_set(name: str):
    """Within the block the mojo backward runs kernel ``name`` (one of ``GRAD_KERNELS``)."""
    return _kernel_set("grad_kernel", GRAD_KERNELS, name, "grad_kernel_set")


def forward_kernel_set(name: str):
    """Within the block the mojo training forward runs kernel ``name`` (one of ``FORWARD_CALLS``)."""
    return _kernel_set("forward_kernel", tuple(FORWARD_CALLS), name, "forward_kernel_set")


def _mojo_backward(saved: _Saved, gy, gfin, wanted):
    """The Mojo backward (``grad_kernel``): a dict name -> gradient (numpy, compute dtype) for
    the inputs in ``wanted`` (plus gx, gB, gC, which the kernel always writes). Records the
    kernel that ran in ``saved.grad_kernel``."""
    if grad_kernel not in GRAD_KERNELS:
        raise ValueError(f"aura_lab.ssd.train.grad_kernel: expected one of {GRAD_KERNELS}, got {grad_kernel!r}")
    prob, npad = saved.prob, saved.npad
    x, dt, A, B, C, D, z, bias = saved.operands
    T = prob.b * prob.l
    out = {"x": np.empty_like(x), "B": np.empty_like(B), "C": np.empty_like(C)}
    for name, like in (("dt", dt), ("A", A), ("D", D), ("z", z), ("dt_bias", bias), ("initial_states", saved.init)):
        if like is not None and name in wanted:
            out[name] = np.empty_like(like)
    if gfin is not None and npad != prob.n:
        gfin = K._padded(gfin, npad)
    fwd = K._block(prob, saved.operands, npad, saved.offsets, T, K._address, init=saved.init, fin=None, y=None,
                   ckpt=saved.ckpt, chunk=CHECKPOINT, ypre=saved.ypre)
    a = lambda k: K._address(out.get(k))  # noqa: E731
    block = GRAD_ABI.pack(fwd=fwd, gy=K._address(gy), gfin=K._address(gfin), gx=a("x"), gdt=a("dt"), gA=a("A"),
                          gB=a("B"), gC=a("C"), gD=a("D"), gz=a("z"), gbias=a("dt_bias"), ginit=a("initial_states"))
    kernel = K._kernel()
    run = kernel.scan_grad_chunked if grad_kernel == "chunked" else kernel.scan_grad
    saved.grad_kernel = grad_kernel
    _control.native(lambda: run(block.address))
    for name in ("B", "C", "initial_states"):
        if name in out and npad != prob.n:
            out[name] = np.ascontiguousarray(out[name][..., : prob.n])
    return out


@functools.cache
def _scan_function():
    """The ``torch.autograd.Function`` over a (forward, backward) pair of the kernels, which
    ``apply`` receives as its first argument (built on first use: torch loads lazily)."""
    import torch
    from torch.autograd.function import once_differentiable

    class ScanFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, kernels, prob, *tensors):
            ctx.backend, forward, ctx.backward_kernel = kernels
            y, fin, saved = forward(prob)
            ctx.saved = saved
            return torch.from_numpy(y), torch.from_numpy(fin)

        @staticmethod
        @once_differentiable
        def backward(ctx, gy, gfin):
            saved = ctx.saved
            prob = saved.prob
            gy = _check_grad(gy, "y", (prob.b, prob.l, prob.h, prob.p), saved.dtype)
            gfin = _check_grad(gfin, "final_states", (prob.nseq, prob.h, prob.p, prob.n), saved.dtype)
            needs = ctx.needs_input_grad[2:]
            wanted = {n for n, need in zip(_GRAD_NAMES, needs) if need}
            # torch calls this after the forward's op call has ended: the backward is an op call
            # of its own, entered before its kernel blocks are packed so that they carry its
            # control (packed outside one, a block's control is 0 and Ctrl-C waits for the end)
            t0 = time.perf_counter()
            grads = _control.run_op(lambda: ctx.backward_kernel(saved, gy, gfin, wanted),
                                    long=train_op.is_long(prob.size))
            ran = saved.grad_kernel
            train_op.record(ctx.backend, ctx.backend, f"backward: {ran} ({BACKWARD_SOURCES[ran]})", time.perf_counter() - t0)
            sources = (prob.x, prob.dt, prob.A, prob.B, prob.C, prob.D, prob.z, prob.dt_bias, prob.initial_states)
            result = [None, None]
            for name, src, need in zip(_GRAD_NAMES, sources, needs):
                g = grads.get(name) if need else None
                result.append(None if g is None else torch.from_numpy(g.reshape(tuple(src.shape))).to(src.dtype))
            return tuple(result)

    return ScanFunction


def _apply(backend: str, forward, backward, prob: Scan) -> ScanOutput:
    y, fin = _scan_function().apply((backend, forward, backward), prob, prob.x, prob.dt, prob.A, prob.B, prob.C, prob.D, prob.z,
                                    prob.dt_bias, prob.initial_states)
    return ScanOutput(y, fin)


@train_op.impl("mojo")
def _mojo_train(prob: Scan) -> ScanOutput:
    """The mojo forward with checkpoints; the Mojo backward (kernels/aura_kernels/ssd/grad.mojo)."""
    return _apply("mojo", _mojo_forward, _mojo_backward, prob)


# --------------------------------------------------------------------------------- max

def _max_forward(prob: Scan):
    """The MAX op aura_ssd_scan_train (kernels/aura_kernels/ssd/ops.mojo): the chunked training
    forward, saving the checkpoints (and ypre with z) as the mojo one does."""
    from max.dtype import DType
    from max.graph import TensorType

    max_backend.check_op("ssd")
    dtype, npad, operands, init, offsets = _training_inputs(prob)
    T = prob.b * prob.l
    block = K._block(prob, operands, npad, offsets, T, K._present, init=init, fin=True, y=True, ckpt=True,
                     chunk=CHECKPOINT, ypre=prob.z)
    ckpt_rows = np.zeros(max(1, _checkpoint_count(offsets)), np.int64)  # its length gives ckpt's
    inputs = [*K.max_operands(prob, operands, npad, offsets, T, init), ckpt_rows, block.words()]

    def extra(shared, dev):  # ckpt_rows, the block
        return [TensorType(DType.int64, ["K"], dev), TensorType(DType.int64, [len(block.abi.fields) + 1], dev)]

    def outs(shared, dev):  # y (like x), the state, ckpt, ypre (like z)
        return [shared[0], shared[9], _ckpt_type(shared, dev), shared[6]]

    y, fin, ckpt, ypre = max_backend.run(("ssd_train", dtype.name), _max_graph("aura_ssd_scan_train", dtype, extra, outs),
                                         *inputs)
    saved = _Saved(prob, dtype, npad, operands, offsets, init, ckpt, None if prob.z is None else ypre)
    return y.reshape(prob.b, prob.l, prob.h, prob.p), np.ascontiguousarray(fin[..., : prob.n]), saved


def _max_graph(op_name: str, dtype, extra_types, out_types):
    """``build(dev, pkg)`` for ``max_backend.run``: the custom op ``op_name`` on the scan's
    inputs (``shared = K.max_input_types(dtype, dev)``) and ``extra_types(shared, dev)``, its
    outputs typed ``out_types(shared, dev)``."""
    def build(dev, pkg):
        from max.graph import Graph, ops

        shared = K.max_input_types(dtype, dev)
        with Graph(f"{op_name}_{dtype.name}", input_types=[*shared, *extra_types(shared, dev)],
                   custom_extensions=[pkg]) as gr:
            gr.output(*ops.custom(op_name, dev, list(gr.inputs), out_types=out_types(shared, dev)))
        return gr

    return build


def _ckpt_type(shared: list, dev):
    """The checkpoints' graph type, (K, h, p, n) in the scan's dtype (``shared``: ``K.max_input_types``)."""
    from max.graph import TensorType

    return TensorType(shared[0].dtype, ["K", "h", "p", "n"], dev)


def _max_backward(saved: _Saved, gy, gfin, wanted):
    """The MAX op aura_ssd_scan_grad (kernels/aura_kernels/ssd/ops.mojo): the chunked backward,
    mojo's, from the checkpoints the MAX training forward saved."""
    from max.dtype import DType
    from max.graph import TensorType

    max_backend.check_op("ssd")
    saved.grad_kernel = "max op"
    prob, dtype, npad = saved.prob, saved.dtype, saved.npad
    x, dt, A, B, C, D, z, bias = saved.operands
    T, h, p, nseq = prob.b * prob.l, prob.h, prob.p, prob.nseq
    gy = np.zeros((T, h, p), dtype) if gy is None else gy.reshape(T, h, p)
    gfin_in = np.zeros((nseq, h, p, npad), dtype) if gfin is None else K._padded(gfin, npad)
    fwd = K._block(prob, saved.operands, npad, saved.offsets, T, K._present, init=saved.init, fin=None, y=None,
                   ckpt=True, chunk=CHECKPOINT, ypre=saved.ypre)
    flag = lambda name, a: int(a is not None and name in wanted)  # noqa: E731
    grad = GRAD_ABI.pack(fwd=0, gy=1, gfin=int(gfin is not None), gx=1, gdt=flag("dt", dt), gA=flag("A", A), gB=1, gC=1,
                         gD=flag("D", D), gz=flag("z", z), gbias=flag("dt_bias", bias),
                         ginit=flag("initial_states", saved.init))
    shared = K.max_operands(prob, saved.operands, npad, saved.offsets, T, saved.init)
    ypre = shared[6] if saved.ypre is None else saved.ypre.reshape(T, h, p)  # without z: z's placeholder
    inputs = [*shared, saved.ckpt, ypre, gy, gfin_in, fwd.words(), grad.words()]

    def extra(shared, dev):  # ckpt, ypre (like z), gy (like x), gfin (like the state), the two blocks
        return [_ckpt_type(shared, dev), shared[6], shared[0], shared[9],
                TensorType(DType.int64, [len(fwd.abi.fields) + 1], dev), TensorType(DType.int64, [len(GRAD_ABI.fields) + 1], dev)]

    def grads(shared, dev):  # each gradient typed as its input: x .. dt_bias, then the state
        return [*shared[:8], shared[9]]

    outs = max_backend.run(("ssd_grad", dtype.name), _max_graph("aura_ssd_scan_grad", dtype, extra, grads), *inputs)
    res = {}
    for name, arr, src in zip(_GRAD_NAMES, outs, saved.operands + (saved.init,)):
        if name in ("x", "B", "C") or (src is not None and name in wanted):
            res[name] = arr
    for name in ("B", "C", "initial_states"):
        if name in res:
            res[name] = np.ascontiguousarray(res[name][..., : prob.n])
    return res


@train_op.impl("max")
def _max_train(prob: Scan) -> ScanOutput:
    """The MAX training forward op; the MAX backward op (kernels/aura_kernels/ssd/ops.mojo)."""
    return _apply("max", _max_forward, _max_backward, prob)


def _warm_max():
    import torch

    for dtype in (torch.float32, torch.float64):
        x, dt, B, C = (torch.zeros(*s, dtype=dtype, requires_grad=True) for s in ((1, 2, 2, 4), (1, 2, 2), (1, 2, 1, 4),
                                                                                  (1, 2, 1, 4)))
        A = -torch.ones(2, dtype=dtype)
        y, _ = train_op.run("max", validate_scan(x, dt, A, B, C, None, None, None, False, (0.0, float("inf")), None,
                                                 None, 256))
        y.sum().backward()


max_backend.WARMUPS["ssd_train"] = _warm_max
