"""The unit tests import ``backend_params`` as ``from .conftest import backend_params``: it is
the one of tests/conftest.py."""

from ..conftest import backend_params, optional_module  # noqa: F401
