"""The ``numpy`` backend: every metric's float64 definition (``metrics.METRIC_INFO``), by
blocks of rows."""

from __future__ import annotations

import numpy as np

from .metrics import METRIC_INFO
from .problem import DistanceProblem, op


@op.impl("numpy")
def _numpy(prob: DistanceProblem) -> np.ndarray:
    """The definition, in float64, ~64 MiB of temporaries per block of rows."""
    x = np.asarray(prob.X, np.float64)
    y = x if prob.Y is None else np.asarray(prob.Y, np.float64)
    rows = max(1, (8 << 20) // max(1, y.shape[0] * max(1, x.shape[1])))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for i in range(0, x.shape[0], rows):
            prob.out[i : i + rows] = METRIC_INFO[prob.metric].numpy(x[i : i + rows], y)
    return prob.out
