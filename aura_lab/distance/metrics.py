"""The metrics, one row each of ``METRIC_INFO`` (as scipy's ``MetricInfo``): the float64 numpy
definition on a block of rows, the torch form, and what the dtype policy needs to know."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


def _cosine(x, y):
    dot = x @ y.T
    nx = np.sqrt(np.einsum("ij,ij->i", x, x))
    ny = np.sqrt(np.einsum("ij,ij->i", y, y))
    return np.clip(1.0 - dot / (nx[:, None] * ny[None, :]), 0.0, 2.0)


def _sq_sum(x, y):
    diff = x[:, None, :] - y[None, :, :]
    return np.einsum("ijk,ijk->ij", diff, diff)


def _chebyshev(x, y):
    a = np.abs(x[:, None, :] - y[None, :, :])
    a[np.isnan(a)] = 0.0  # scipy keeps max(0, |x_k - y_k| ...) and NaN never wins
    return a.max(axis=-1, initial=0.0)


def _torch_cosine(x, y):
    x64, y64 = x.double(), y.double()
    nx, ny = x64.norm(dim=1), y64.norm(dim=1)
    return (1.0 - (x64 @ y64.T) / (nx[:, None] * ny[None, :])).clamp(0.0, 2.0)


def _torch_euclidean(x, y):
    import torch

    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")


def _torch_cityblock(x, y):
    import torch

    return torch.cdist(x, y, p=1.0)


def _torch_chebyshev(x, y):
    """max_k |x_k - y_k| skipping NaN terms as scipy does (torch's p=inf propagates NaN)."""
    import torch

    rows = max(1, (8 << 20) // max(1, y.shape[0] * x.shape[1]))
    parts = [x.new_zeros((x.shape[0], y.shape[0]))] if x.shape[1] == 0 else [
        (x[i : i + rows, None, :] - y[None]).abs().nan_to_num(nan=0.0, posinf=float("inf")).amax(-1)
        for i in range(0, x.shape[0], rows)
    ]
    return torch.cat(parts)


@dataclass(frozen=True)
class MetricInfo:
    """One metric: ``numpy(x, y)`` is its float64 definition on a block of rows, ``torch(x, y)``
    its torch form; ``squares``: sums squares (float32 can overflow, see
    ``problem.F32_SAFE``); ``float64``: float32 results are computed in float64 (1 - cos near 0
    cancels; scipy too)."""

    name: str
    numpy: Callable
    torch: Callable
    squares: bool = False
    float64: bool = False


_METRIC_INFOS = (
    MetricInfo("euclidean", lambda x, y: np.sqrt(_sq_sum(x, y)), _torch_euclidean, squares=True),
    MetricInfo("sqeuclidean", _sq_sum, lambda x, y: _torch_euclidean(x, y) ** 2, squares=True),
    MetricInfo("cosine", _cosine, _torch_cosine, float64=True),
    MetricInfo("cityblock", lambda x, y: np.abs(x[:, None, :] - y[None, :, :]).sum(axis=-1), _torch_cityblock),
    MetricInfo("chebyshev", _chebyshev, _torch_chebyshev),
)
METRIC_INFO = {m.name: m for m in _METRIC_INFOS}
METRICS = tuple(METRIC_INFO)
