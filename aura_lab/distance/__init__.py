"""Pairwise distances: ``pairwise_distances(X, Y=None, metric="euclidean")``.

The first stage of Vietoris-Rips persistence, and a kernel worth having fast on its own.
Backends: ``numpy`` (the float64 reference), ``torch`` (exact, no GEMM identity),
``mojo`` (``kernels/aura_kernels/distance/kernel.mojo``: tiled, SIMD, both cores) and ``max`` (the
same kernel as a MAX graph custom op, ``kernels/aura_kernels/distance/ops.mojo``).

Every metric is one row of ``METRIC_INFO`` (as scipy's ``MetricInfo``), which both the
dispatch and the checks read: its float64 numpy definition, its torch form, and whether
float32 output must be computed in float64.

The package, one stage per module like the other ops: ``metrics`` (the table of metrics),
``problem`` (validation into one ``DistanceProblem``, the kernel ABI, the work dtype),
``reference`` (the numpy backend), ``torch_impl``, ``kernels`` (mojo and max) and ``api``
(the public function).
"""

from __future__ import annotations

from . import kernels, reference, torch_impl  # noqa: F401  (register the backends)
from .api import pairwise_distances
from .metrics import METRIC_INFO, METRICS, MetricInfo
from .problem import ABI, METRIC, DistanceProblem, op, work_dtype

__all__ = ["ABI", "METRIC", "METRICS", "METRIC_INFO", "DistanceProblem", "MetricInfo", "op", "pairwise_distances",
           "work_dtype"]
