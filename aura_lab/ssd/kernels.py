"""The ``mojo`` and ``max`` backends of the scan and the decode step: ``kernels/ssd.mojo``
(compute in ``kernels/aura_kernels/ssd/scan.mojo``) and the same kernel as a MAX graph op
(``kernels/aura_kernels/ssd/ops.mojo``)."""

from __future__ import annotations

import numpy as np

from .. import _arrays as A_
from .. import _max as max_backend
from .. import _control, _mojo
from .problem import ABI, Scan, ScanOutput, Step, as_numpy, op, step_op, validate_scan, write_state


def _kernel():
    return _mojo.load("ssd")


def _padded(a: np.ndarray, npad: int) -> np.ndarray:
    """Zero-pad the last axis (n) to npad: zero B, C and state lanes never change the result."""
    if a.shape[-1] == npad:
        return a
    out = np.zeros((*a.shape[:-1], npad), a.dtype)
    out[..., : a.shape[-1]] = a
    return out


def _kernel_inputs(prob, dtype):
    """(dtype, padded n, contiguous x, dt, A, B, C, D, z, dt_bias of ``dtype``) for the Mojo
    kernel of a scan or a decode step: B and C zero-padded on n to the kernel's vector width."""
    dtype = np.dtype(dtype)
    lanes = _kernel().lanes(8 * dtype.itemsize)
    npad = -(-prob.n // lanes) * lanes
    x, dt, A, D, z, bias = (as_numpy(a, dtype) for a in (prob.x, prob.dt, prob.A, prob.D, prob.z, prob.dt_bias))
    B, C = (_padded(as_numpy(a, dtype), npad) for a in (prob.B, prob.C))
    return dtype, npad, (x, dt, A, B, C, D, z, bias)


def scan_inputs(prob: Scan):
    """(dtype, npad, operands, init, offsets) of a validated scan for the kernels: operands as
    ``_kernel_inputs``, the initial states padded on n (or None), the int64 offsets."""
    dtype, npad, operands = _kernel_inputs(prob, prob.compute_dtype)
    init = None if prob.initial_states is None else _padded(as_numpy(prob.initial_states, dtype), npad)
    return dtype, npad, operands, init, np.ascontiguousarray(prob.offsets, np.int64)


#: bytes in a cache line
CACHE_LINE = 64


def line_aligned(shape, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)`` starting on a cache line, for y (and ypre): the scan kernel's
    threads write its (token, head) rows, which then share no line when p fills whole lines
    (numpy's large arrays start 16 bytes past a page, so every head boundary fell in a line)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    buf = np.empty(nbytes + CACHE_LINE, np.uint8)
    start = -buf.ctypes.data % CACHE_LINE
    return buf[start:start + nbytes].view(dtype).reshape(shape)


def _address(a):
    """The address field for array ``a`` (or None): the array itself, whose address ``pack``
    takes while the block keeps it alive."""
    return a


def _present(a) -> int:
    """For the MAX op: 1 where an input is given (the op substitutes its tensor's address)."""
    return 0 if a is None else 1


def _block(prob, operands, npad: int, offsets, tokens: int, addr, *, init, fin, y, ckpt=None, chunk=0, ypre=None):
    """The scan's parameter block (``ABI``) for ``operands`` = (x, dt, A, B, C, D, z, bias) of
    one dtype, n padded to ``npad``; ``addr`` maps an array to its address field. A training
    forward also passes ``ckpt`` (every ``chunk``-th state) and ``ypre`` (see ``ABI``)."""
    x, dt, A, B, C, D, z, bias = operands
    return ABI.pack(dtype_bits=8 * x.dtype.itemsize, x=addr(x), dt=addr(dt), A=addr(A), B=addr(B), C=addr(C),
                    D=addr(D), d_per_p=D is not None and D.ndim == 2, z=addr(z), dt_bias=addr(bias),
                    softplus=prob.dt_softplus, lo=prob.dt_lo, hi=prob.dt_hi, offsets=addr(offsets),
                    nseq=len(offsets) - 1, h=prob.h, p=prob.p, n=npad, g=prob.g, init=addr(init), fin=addr(fin),
                    y=addr(y), threads=op.threads({"tokens": tokens, "h": prob.h, "p": prob.p, "n": npad}),
                    ckpt=addr(ckpt), chunk=chunk, ypre=addr(ypre))


def _mojo_scan(prob, operands, npad: int, offsets, tokens: int, init, fin, y) -> None:
    """kernels/ssd.mojo on validated, C-contiguous arrays (n padded); init may be fin (in place)."""
    block = _block(prob, operands, npad, offsets, tokens, _address, init=init, fin=fin, y=y)
    kernel = _kernel()
    _control.native(lambda: kernel.scan(block.address))


@op.impl("mojo")
def _mojo_impl(prob: Scan) -> ScanOutput:
    """kernels/ssd.mojo: the sequential recurrence, SIMD over n, both cores."""
    dtype, npad, operands, init, offsets = scan_inputs(prob)
    y = line_aligned((prob.b, prob.l, prob.h, prob.p), dtype)
    fin = np.empty((prob.nseq, prob.h, prob.p, npad), dtype)
    _mojo_scan(prob, operands, npad, offsets, prob.b * prob.l, init, fin, y)
    return ScanOutput(y, fin if npad == prob.n else np.ascontiguousarray(fin[..., : prob.n]))


#: the register blocks ``chunk_gemm_seconds`` can time (kernels/aura_kernels/ssd/chunk_gemm.mojo
#: gemm_rate): 0 the kernels' own (8 x 2 vectors), then 4 x 4, 8 x 2, 2 x 4, 4 x 2
GEMM_VARIANTS = (0, 1, 2, 3, 4)


def chunk_gemm_seconds(m: int, n: int, k: int, reps: int, dtype=np.float32, variant: int = 0) -> float:
    """Seconds for ``reps`` chunk-sized products (m, k) x (k, n) on one thread with the chunked
    kernels' GEMM micro-kernel (``aura_kernels/ssd/chunk_gemm.mojo``; ``variant`` another of its
    register blocks, ``GEMM_VARIANTS``), operands resident in cache: the bench's measure of what
    the chunked form's matrix products can reach."""
    if min(m, n, k, reps) <= 0:
        raise ValueError(f"m, n, k and reps must be positive, got {(m, n, k, reps)}")
    bits = 8 * np.dtype(dtype).itemsize
    if bits not in (32, 64):
        raise TypeError(f"dtype: float32 or float64, got {np.dtype(dtype)}")
    if variant not in GEMM_VARIANTS:
        raise ValueError(f"variant: one of {GEMM_VARIANTS}, got {variant!r}")
    return float(_kernel().gemm_rate([m, n, k, reps, bits, variant]))


# --------------------------------------------------------------------------------- max

def max_operands(prob, operands, npad: int, offsets, tokens: int, init) -> list:
    """The inputs the MAX scan op and its backward share, in their order: x, dt, A, B, C, D, z,
    dt_bias, offsets, state (x/z seen as (tokens, h, p); absent optional inputs as 1-element
    placeholders, the state zeros without init)."""
    x, dt, A, B, C, D, z, bias = operands
    dtype, h, p, g, nseq = x.dtype, prob.h, prob.p, prob.g, len(offsets) - 1
    one = lambda a, shape: np.zeros(shape, dtype) if a is None else a  # noqa: E731
    state = np.zeros((nseq, h, p, npad), dtype) if init is None else init
    return [x.reshape(tokens, h, p), dt.reshape(tokens, h), A, B.reshape(tokens, g, npad), C.reshape(tokens, g, npad),
            one(None if D is None else D.reshape(h, -1), (1, 1)), one(None if z is None else z.reshape(tokens, h, p),
                                                                      (1, 1, 1)),
            one(bias, (1,)), offsets, state]


def max_input_types(dtype, dev) -> list:
    """The graph input types of ``max_operands`` (every dimension symbolic)."""
    from max.dtype import DType
    from max.graph import TensorType

    dt_ = DType.float32 if dtype == np.float32 else DType.float64
    T = lambda *dims, d=dt_: TensorType(d, list(dims), dev)  # noqa: E731
    return [T("T", "h", "p"), T("T", "h"), T("h"), T("T", "g", "n"), T("T", "g", "n"), T("dh", "dp"),
            T("zT", "zh", "zp"), T("bh"), T("S1", d=DType.int64), T("S", "h", "p", "n")]


def _max_scan(prob, operands, npad: int, offsets, tokens: int, init):
    """The same kernel as a MAX graph op (kernels/aura_kernels/ssd/ops.mojo): returns (y, fin),
    with x/z/y seen as (tokens, h, p). Absent optional inputs go in as 1-element placeholders
    with their flag off, so one graph per dtype serves all."""
    max_backend.check_op("ssd")
    dtype = operands[0].dtype
    params = _block(prob, operands, npad, offsets, tokens, _present, init=init, fin=True, y=True).words()
    inputs = [*max_operands(prob, operands, npad, offsets, tokens, init), params]

    def build(dev, pkg):
        from max.dtype import DType
        from max.graph import Graph, TensorType, ops

        types = [*max_input_types(dtype, dev), TensorType(DType.int64, [len(ABI.fields) + 1], dev)]
        with Graph(f"aura_ssd_{dtype.name}", input_types=types, custom_extensions=[pkg]) as gr:
            vals = list(gr.inputs)
            outs = ops.custom("aura_ssd_scan", dev, vals, out_types=[vals[0].type, vals[9].type])
            gr.output(*outs)
        return gr

    y, fin = max_backend.run(("ssd", dtype.name), build, *inputs)
    return y, fin


@op.impl("max")
def _max_impl(prob: Scan) -> ScanOutput:
    """kernels/aura_kernels/ssd/ops.mojo: the mojo kernel as a MAX graph custom op."""
    dtype, npad, operands, init, offsets = scan_inputs(prob)
    y, fin = _max_scan(prob, operands, npad, offsets, prob.b * prob.l, init)
    return ScanOutput(y.reshape(prob.b, prob.l, prob.h, prob.p), np.ascontiguousarray(fin[..., : prob.n]))


def _warm_max():
    for dtype in (np.float32, np.float64):
        z = lambda *s: np.zeros(s, dtype)  # noqa: E731
        op.run("max", validate_scan(z(1, 2, 2, 4), z(1, 2, 2), -np.ones(2, dtype), z(1, 2, 1, 4), z(1, 2, 1, 4),
                                    None, None, None, False, (0.0, float("inf")), None, None, 256))


max_backend.WARMUPS["ssd"] = _warm_max


@step_op.impl("max")
def _step_max(prob: Step):
    """The MAX scan op with one token per sequence; the final states are written back."""
    dtype, npad, operands = _kernel_inputs(prob, prob.compute_dtype)
    init = _padded(np.ascontiguousarray(A_.to_numpy(prob.state, "state"), dtype), npad)
    y, fin = _max_scan(prob, operands, npad, np.arange(prob.b + 1, dtype=np.int64), prob.b, init)
    write_state(prob.state, fin[..., : prob.n])
    return y.reshape(prob.b, prob.h, prob.p)


@step_op.impl("mojo")
def _step_mojo(prob: Step):
    """The scan kernel with one token per sequence, updating the state in place (init == fin)."""
    dtype, npad, operands = _kernel_inputs(prob, prob.compute_dtype)
    st = prob.state
    view = st
    if A_.is_torch(st):  # a zero-copy numpy view where numpy has the dtype (not bfloat16)
        view = st.detach().numpy() if str(st.dtype) in ("torch.float16", "torch.float32", "torch.float64") else None
    direct = (view is not None and view.dtype == dtype and view.flags.c_contiguous and view.flags.writeable
              and npad == prob.n)
    work = view if direct else _padded(np.ascontiguousarray(A_.to_numpy(st, "state"), dtype), npad)
    y = np.empty((prob.b, prob.h, prob.p), dtype)
    offsets = np.arange(prob.b + 1, dtype=np.int64)
    _mojo_scan(prob, operands, npad, offsets, prob.b, work, work, y)
    if not direct:
        write_state(st, work[..., : prob.n])
    return y
