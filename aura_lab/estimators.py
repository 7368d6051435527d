"""scikit-learn estimators: ``RipsPersistence``, persistence diagrams of a collection as a
transformer (imported lazily by ``aura_lab.RipsPersistence``: scikit-learn takes seconds to
import, and ``import aura_lab`` does not need it)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .collection import check_params, collection_persistence


class RipsPersistence(TransformerMixin, BaseEstimator):
    """Vietoris-Rips persistence diagrams of every point cloud (or distance matrix) of a
    collection, with aura_lab's engine, in parallel with joblib.

    A drop-in for ``gudhi.sklearn.RipsPersistence``: the same output format, so
    ``gudhi.representations`` (``PersistenceImage``, ``Landscape``, ``BettiCurve``,
    ``DiagramSelector``, ...) consumes it in a ``Pipeline``::

        pipe = make_pipeline(RipsPersistence(homology_dimensions=1, n_jobs=2),
                             DiagramSelector(use=True, point_type="finite"),
                             PersistenceImage(bandwidth=0.05, resolution=[20, 20]),
                             LogisticRegression())

    Parameters:
        homology_dimensions: an int k: ``transform`` returns one H_k diagram (``(m, 2)``
            array) per input; a list ``[i, j]``: one list ``[H_i, H_j]`` per input. Default
            ``(0, 1)``.
        threshold: largest edge length (default ``inf``: the enclosing radius, as ripser).
        input_type: ``"point cloud"`` (``(n, d)`` arrays; clouds may differ in n and d) or
            ``"distance matrix"`` (``(n, n)``; ``"full distance matrix"``, gudhi's name, is the
            same).
        metric: distance between points of a cloud (``aura_lab.distance.METRICS``).
        coeff: prime p of the coefficient field Z/p (gudhi's ``homology_coeff_field``; its
            default there is 11, here 2).
        n_jobs: joblib workers over the collection. ``None``: the joblib context decides (1
            outside any; under ``joblib.parallel_config(backend="dask")`` every thread of the
            dask cluster); ``-1``: every core. Each chunk of the collection is one native
            call into the batched engine (its threads over the inputs). Processes (loky) by
            default, each running its kernels on ``cores // n_jobs`` threads, but only where
            the inputs that run one call each are estimated long enough to pay for starting
            them (``aura_lab.collection.PROCESS_MIN_S``); otherwise the collection runs in this
            process as one batched call on ``n_jobs`` threads. Any joblib backend the caller selects with
            ``joblib.parallel_config`` (threads, dask) is used as asked.
        backend: the aura_lab backend every worker runs (``"auto"``, ``"mojo"``,
            ``"gudhi"``).

    ``collapse_edges``: as ``aura_lab.rips_persistence`` (``"auto"``: the strong edge collapse
    by its rule, ``True`` / ``False`` to force it). ``aura_lab.collection.last_run()`` says
    how the last ``transform`` in this thread ran (joblib backend, workers, kernel threads per task, backends, time).

    Attributes (after ``fit``):
        dim_list_: the homology dimensions, a tuple of ints.
    """

    def __init__(self, homology_dimensions=(0, 1), threshold=float("inf"), input_type="point cloud", metric="euclidean",
                 coeff=2, n_jobs=None, backend="auto", collapse_edges="auto"):
        self.homology_dimensions = homology_dimensions
        self.threshold = threshold
        self.input_type = input_type
        self.metric = metric
        self.coeff = coeff
        self.n_jobs = n_jobs
        self.backend = backend
        self.collapse_edges = collapse_edges

    def _params(self):
        return check_params(self.homology_dimensions, self.threshold, self.input_type, self.metric, self.coeff,
                            self.backend, self.collapse_edges)

    def fit(self, X=None, y=None):
        """Check the parameters (nothing is learned: the diagrams depend on each input only)."""
        self.dim_list_ = self._params().dims
        return self

    def transform(self, X):
        """The diagrams of every input of ``X`` (a list of clouds or matrices), in input order:
        ``[H_k(X[0]), H_k(X[1]), ...]`` for ``homology_dimensions=k``, else
        ``[[H_i(X[0]), H_j(X[0])], [H_i(X[1]), H_j(X[1])], ...]``; each ``(m, 2)`` float64
        (birth, death), sorted, infinite deaths ``inf``. ``ValueError`` names a bad input's
        index."""
        check_is_fitted(self, "dim_list_")
        return collection_persistence(X, params=self._params(), n_jobs=self.n_jobs)

    def get_feature_names_out(self, input_features=None):
        """``["H0", "H1", ...]``: one name per homology dimension (as gudhi's)."""
        check_is_fitted(self, "dim_list_")
        return np.asarray([f"H{d}" for d in self.dim_list_], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # a collection of 2-D arrays, not one
        tags.input_tags.three_d_array = True
        tags.requires_fit = True
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = []
        return tags
