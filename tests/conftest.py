"""Shared test setup.

* ``AURA_TEST_BACKENDS=numpy,torch`` restricts the backends tests run on (default: all).
* The Mojo kernels are compiled once, in the controller process, before any test (and
  before xdist workers start), so no test pays for or races on a cold build.
* ``backend_params(op)`` parametrizes a test over an op's backends; unavailable ones are
  skipped *with the reason* (only when the compiler is really missing, for mojo).
"""

from __future__ import annotations

import os

import pytest

from aura_lab.registry import backend_status


def _wanted():
    env = os.environ.get("AURA_TEST_BACKENDS")
    return set(env.split(",")) if env else None


def backend_params(op):
    wanted = _wanted()
    params = []
    for b in op.backends:
        marks = []
        if wanted is not None and b not in wanted:
            marks.append(pytest.mark.skip(reason=f"{b} not in AURA_TEST_BACKENDS"))
        else:
            st = backend_status(b)
            if not st.available:
                marks.append(pytest.mark.skip(reason=f"{b} unavailable: {st.reason}"))
        params.append(pytest.param(b, marks=marks, id=b))
    return params


def pytest_sessionstart(session):
    if hasattr(session.config, "workerinput"):  # xdist worker: the controller built already
        return
    wanted = _wanted()
    if wanted is not None and "mojo" not in wanted:
        return
    from aura_lab import _mojo

    ok, _, reason = _mojo.status()
    if not ok:
        print(f"\naura_lab tests: mojo backend skipped: {reason}")
        return
    for name in _mojo.kernel_names():
        try:
            _mojo.build(name)
        except _mojo.MojoBuildError as e:  # the tests of that kernel will fail with the diagnostics
            print(f"\naura_lab tests: {e}")
