"""Calibrated ``backend="auto"``: interpolation, table selection, calibration run, explain."""

import json
import math

import numpy as np
import pytest

import aura_lab
from aura_lab import _auto
from aura_lab.distance import op as distance_op


def test_estimate_interpolates_log_log_and_clamps():
    pts = [{"work": 1e3, "ms": {"a": 1.0, "b": 10.0}}, {"work": 1e5, "ms": {"a": 100.0, "b": 10.0}}]
    est = _auto.estimate(pts, 1e4)  # halfway in log(work)
    assert math.isclose(est["a"], 10.0) and math.isclose(est["b"], 10.0)
    assert _auto.estimate(pts, 1.0) == {"a": 1.0, "b": 10.0}  # below the grid: the first point
    assert _auto.estimate(pts, 1e9) == {"a": 100.0, "b": 10.0}  # above: the last point


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A private calibration table (the kernel cache stays where it is: no rebuilds)."""
    monkeypatch.setattr(_auto, "table_path", lambda: tmp_path / "calibration" / "this-cpu.json")
    _auto.reload()
    yield tmp_path
    _auto.reload()


def _write_table(path, ms_by_point, versions=None):
    table = {"format": _auto.FORMAT, "date": "test", "versions": versions or _auto.versions(),
             "ops": {"distance": {"points": [{"size": s, "work": distance_op.work(s), "ms": ms} for s, ms in ms_by_point]}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table))


def test_order_follows_the_machine_table(private_cache):
    small, big = {"n": 10, "m": 10, "d": 3}, {"n": 4000, "m": 4000, "d": 3}
    _write_table(_auto.table_path(), [(small, {"numpy": 0.01, "mojo": 0.02, "torch": 0.05}),
                                      (big, {"numpy": 500.0, "mojo": 5.0, "torch": 60.0})])
    order, why = _auto.order(distance_op, small)
    assert order[:3] == ["numpy", "mojo", "torch"] and why.startswith("calibrated on this machine")
    assert _auto.order(distance_op, big)[0][:3] == ["mojo", "torch", "numpy"]
    assert aura_lab.explain("distance", **big).startswith("distance: auto picks mojo (calibrated on this machine")
    aura_lab.pairwise_distances(np.ones((10, 3)))
    assert aura_lab.last_dispatch().backend == "numpy"


def test_other_versions_fall_back_to_the_shipped_table(private_cache):
    _write_table(_auto.table_path(), [({"n": 10, "m": 10, "d": 3}, {"numpy": 0.01})], versions={"numpy": "0.0"})
    table, source = _auto.load_table()
    assert source.startswith("shipped default table; this machine's table is from other versions")
    assert "distance" in table["ops"]


def test_no_table_uses_the_shipped_default(private_cache):
    _, source = _auto.load_table()
    assert source == "shipped default table; no calibration on this machine (run `aura-lab calibrate`)"
    assert _auto.SHIPPED.is_file()
    shipped = json.loads(_auto.SHIPPED.read_text())
    assert {"distance", "ssd", "ssd_step", "routing"} <= set(shipped["ops"])


def test_unknown_op_in_explain():
    with pytest.raises(ValueError, match="op: unknown op 'nope'"):
        aura_lab.explain("nope", n=1)


def test_calibration_run_and_auto_within_10_percent(private_cache, monkeypatch):
    from aura_lab.harness import distance as hd

    full = hd.calibration
    monkeypatch.setattr(hd, "calibration", lambda: full(sizes=((8, 3), (96, 3), (512, 3), (8, 64), (256, 64))))
    table = _auto.calibrate(["distance"], repeats=3, progress=False)
    saved = json.loads(_auto.table_path().read_text())
    assert saved["versions"] == _auto.versions() and saved["cpu_key"]
    pts = saved["ops"]["distance"]["points"]
    assert len(pts) >= 4 and all({"numpy", "torch"} <= set(p["ms"]) for p in pts)
    rows = _auto.check(table)
    assert rows and all(r["within_10pct"] for r in rows), rows
    # auto now follows this machine's measurements
    p = min(pts, key=lambda p: p["work"])
    best = min(p["ms"], key=p["ms"].get)
    assert aura_lab.explain("distance", **p["size"]).startswith(f"distance: auto picks {best} (calibrated on this machine")
