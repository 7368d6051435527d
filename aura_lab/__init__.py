"""aura_lab: a Jupyter workbench for fast compute kernels written in Mojo.

Every op takes ``backend="auto"`` (or "numpy", "torch", "mojo", "max"); see
``aura_lab.backends()`` for what is available here and ``aura_lab.last_dispatch()`` for
which backend ran the last call.
"""

from . import _auto, _max, _mojo  # noqa: F401  (the backend modules register themselves)
from ._control import Control, cancellable
from .errors import AuraCacheWarning, AuraFallbackWarning, BackendUnavailable, Cancelled, UnsupportedProblem
from .registry import (
    BACKENDS,
    BackendStatus,
    Dispatch,
    backends,
    explain,
    last_dispatch,
    use_backend,
)
from .diagrams import betti_curves, bottleneck_distance, plot_barcode, plot_betti_curves, plot_cycle, plot_diagram
from .distance import pairwise_distances
from .routing import Routing, route
from .persistence import PersistenceResult, rips_persistence
from .ssd import selective_scan, selective_state_update
from .collection import collection_persistence
from . import neighbors  # noqa: F401  (radius_graph; declares its kernel ABI)

__version__ = "0.1.0"


def __getattr__(name):
    # scikit-learn takes seconds to import: the estimators load on first use
    if name == "RipsPersistence":
        from .estimators import RipsPersistence

        return RipsPersistence
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), "RipsPersistence"])


__all__ = [
    "BACKENDS",
    "AuraCacheWarning",
    "AuraFallbackWarning",
    "BackendStatus",
    "BackendUnavailable",
    "Cancelled",
    "Control",
    "cancellable",
    "collection_persistence",
    "Dispatch",
    "backends",
    "betti_curves",
    "bottleneck_distance",
    "explain",
    "last_dispatch",
    "pairwise_distances",
    "plot_barcode",
    "plot_betti_curves",
    "plot_cycle",
    "plot_diagram",
    "PersistenceResult",
    "RipsPersistence",
    "rips_persistence",
    "route",
    "Routing",
    "selective_scan",
    "selective_state_update",
    "UnsupportedProblem",
    "use_backend",
]
