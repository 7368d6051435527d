"""``pairwise_distances``: validation into one problem, dispatch, the result in the caller's
array kind."""

from __future__ import annotations

from .. import _arrays as A
from .problem import DistanceProblem, check_metric, op, validate


def pairwise_distances(X, Y=None, metric: str = "euclidean", *, backend: str = "auto", out=None):
    """Distances between the rows of ``X`` and the rows of ``Y``.

    Args:
        X: ``(n, d)`` numpy array or torch tensor.
        Y: ``(m, d)``, or None for ``X`` against itself (the result is exactly symmetric).
        metric: ``euclidean``, ``sqeuclidean``, ``cosine`` (1 - cosine similarity, clamped to
            [0, 2]; NaN for a zero vector, as scipy), ``cityblock`` or ``chebyshev``.
        backend: ``"auto"``, ``"numpy"``, ``"torch"``, ``"mojo"`` or ``"max"``.
        out: optional ``(n, m)`` array (or CPU tensor) of the result dtype to write into.

    Returns:
        ``(n, m)`` distances. float32 inputs give float32 (bfloat16 tensors count as float32:
        they are read as float32); float64 gives float64; every other numeric dtype (float16,
        ints, bool) is cast to float64, as scipy does.
        numpy in gives numpy out; torch tensors in give a torch tensor out.

    NaN and inf propagate as in ``scipy.spatial.distance.cdist`` (chebyshev skips NaN
    terms, as scipy does). Euclidean distances use the direct formula, never the GEMM
    identity, so near-duplicate points keep full relative precision in float32.

    Examples:
        >>> import numpy as np, aura_lab
        >>> aura_lab.pairwise_distances(np.array([[0., 0.], [3., 4.]]), backend="numpy")
        array([[0., 5.],
               [5., 0.]])
    """
    check_metric(metric)
    kind = A.kind_of(X, Y, out)
    device = A.device_of(X, Y)
    if device != "cpu":
        return op.run(backend, DistanceProblem(X, Y, metric, None, device))
    prob, res = validate(X, Y, metric, out, kind)
    if res.size:
        op.run(backend, prob)
    else:
        op.check_backend(backend)
    if out is not None:
        return out
    return A.wrap(res, kind)
