import json
import subprocess
import sys

import numpy as np
import pytest

from aura_lab import cli, harness


def test_info_lists_backends_simd_and_threads(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("numpy", "torch", "mojo", "max", "kernel threads", "SIMD width"):
        assert word in out


def test_validate_distance_passes(capsys):
    assert cli.main(["validate", "distance", "--backends", "numpy,mojo"]) == 0
    out = capsys.readouterr().out
    assert "checks passed" in out and "FAILED" not in out


def test_bench_distance_small_sweep(tmp_path):
    res = harness.bench("distance", sizes=[(64, 3), (48, 64)], repeats=2, show_progress=False)
    impls = {r["impl"] for r in res.rows}
    assert {"numpy", "scipy.cdist", "torch.cdist"} <= impls
    for r in res.rows:
        assert r["ms"] > 0 and r["runs"] >= 1
        assert ("GB/s" in r) == (r["d"] <= 16)
        assert "vs_best_peer" in r
    assert res.context["bandwidth"]["write_GBps"] > 0
    path = res.to_json(tmp_path / "b.json")
    data = json.loads(path.read_text())
    assert data["op"] == "distance" and len(data["rows"]) == len(res.rows)


def test_unknown_family_is_rejected():
    r = subprocess.run([sys.executable, "-m", "aura_lab.cli", "bench", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and "invalid choice: 'nope'" in r.stderr


def test_build_command(capsys):
    assert cli.main(["build", "distance"]) == 0
    assert "built 1 kernel(s)" in capsys.readouterr().out


def test_validate_report_format():
    checks = harness.validate("distance", backends=["numpy"])
    assert checks and all(c.passed for c in checks)
    text = harness.summarize(checks)
    assert text.splitlines()[-1] == f"{len(checks)}/{len(checks)} checks passed"
    assert np.isfinite([c.max_abs_err for c in checks]).all()


def test_lab_starts_jupyterlab_headless(tmp_path):
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**__import__("os").environ, "JUPYTER_RUNTIME_DIR": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg")}
    proc = subprocess.Popen([sys.executable, "-m", "aura_lab.cli", "lab", "--headless", "--port", str(port), "--ServerApp.token=t0k"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token=t0k", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.time() < deadline, "JupyterLab did not answer within 90 s"
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token=t0k", timeout=5) as r:
            listing = json.loads(r.read())
        assert listing["type"] == "directory"  # serving notebooks/
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---------------------------------------------------------------- isolated bench rows

def _raise_memory_error():
    raise MemoryError("the (200000, 200000) matrix needs 149 GiB")


def _killed():
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does


def _sleeps(seconds):
    import time

    time.sleep(seconds)


def test_run_isolated_reports_what_ended_a_child():
    from aura_lab.harness.core import run_isolated

    assert run_isolated(divmod, (7, 2)) == (True, (3, 1))
    assert run_isolated(_raise_memory_error) == (False, "MemoryError: the (200000, 200000) matrix needs 149 GiB")
    assert run_isolated(_killed) == (False, "killed by SIGKILL (out of memory?)")
    assert run_isolated(_sleeps, (60,), timeout_s=2) == (False, "stopped: still running after 2 s")


def test_time_call_times_a_slow_call_once():
    from aura_lab.harness.core import time_call

    calls = []
    slow = time_call(lambda: calls.append(1), repeats=5, slow_s=0.0)
    assert slow["runs"] == 1 and len(calls) == 2  # the warm-up, the timed call
    calls.clear()
    fast = time_call(lambda: calls.append(1), repeats=3, slow_s=60.0)
    assert fast["runs"] == 3 and len(calls) == 4


def test_bench_persistence_sets_and_peers():
    from aura_lab.harness import persistence as H

    jobs = H._jobs(["random16", "clifford"], list(H.OURS), None)
    peers = H._peers()
    assert ("random16", H.REPS) in jobs and ("random16", "gudhi") in jobs and ("clifford", H.REPS) not in jobs
    ours = {"mojo", "mojo collapse off", "mojo collapse on"}
    assert {i for s, i in jobs if s == "clifford"} == {*ours, *(p for p in H.LARGE_PEERS if p in peers)}
    assert {i for s, i in jobs if s == "random16"} == {*ours, H.REPS, "gudhi", *(p for p in H.LARGE_PEERS if p in peers),
                                                        *([H.RIPSER_COCYCLES] if H.RIPSER_COCYCLES in peers else [])}
    X, kw, counts = H.load_set("r3_200k")
    assert X.shape == (200_000, 3) and X.dtype == np.float32 and kw == {"maxdim": 1, "threshold": 0.05}
    assert counts is None and 0 <= X.min() and X.max() < 1
    with pytest.raises(ValueError, match="sets: unknown set"):
        H.bench(sets=["nope"], show_progress=False)


def test_bench_persistence_ratios_and_memory_against_the_smallest_peer():
    from aura_lab.harness import persistence as H

    rows = [{"case": "c", "impl": "mojo", "kind": "backend", "ms": 10.0, "peak_MiB": 50.0},
            {"case": "c", "impl": "mojo collapse off", "kind": "backend", "ms": 20.0, "peak_MiB": 150.0},
            {"case": "c", "impl": "giotto-ph", "kind": "peer", "ms": 30.0, "peak_MiB": 100.0},
            {"case": "c", "impl": "giotto-ph+collapse", "kind": "peer", "ms": 5.0, "peak_MiB": 200.0},
            {"case": "c", "impl": "ripser.py", "kind": "peer", "note": "did not finish: killed by SIGKILL"}]
    H._add_ratios(rows, ["c"])
    mojo = rows[0]
    assert mojo["vs_giotto-ph"] == 3.0 and mojo["vs_giotto-ph+collapse"] == 0.5 and "vs_ripser.py" not in mojo
    assert mojo["peak_vs_min_peer"] == 0.5 and rows[1]["peak_vs_min_peer"] == 1.5 and rows[1]["vs_giotto-ph"] == 1.5
    assert rows[2]["vs_giotto-ph+collapse"] == 5.0 / 30.0


def test_bench_persistence_auto_vs_off_alternates_in_one_process(monkeypatch):
    """auto_vs_off: median auto / median off, the calls alternating auto-off, off-auto, ...,
    off warmed up first, at least min_pairs pairs, more until the budget is spent, at most
    max_pairs (on a fake clock that each call advances by its cost); same: every call did the
    same work without collapse."""
    from aura_lab.harness import persistence as H

    clock, calls = [0.0], []

    def call(name, cost):
        def fn():
            calls.append(name)
            clock[0] += cost.pop(0) if isinstance(cost, list) else cost
        return fn

    monkeypatch.setattr(H.time, "perf_counter", lambda: clock[0])
    ratio, pairs, same = H.auto_vs_off(call("auto", [1.0, 3.0, 2.0]), call("off", 2.0), min_pairs=3, budget_s=1.0)
    assert calls == ["off", "auto", "off", "off", "auto", "auto", "off"]
    assert ratio == 1.0 and pairs == 3 and same is False  # median(1, 3, 2) / median(2, 2, 2); no work read
    calls.clear()
    assert H.auto_vs_off(call("auto", 5.0), call("off", 4.0), min_pairs=1, budget_s=1.0)[:2] == (1.25, 1)
    assert calls == ["off", "auto", "off"]
    assert H.auto_vs_off(call("auto", 0.1), call("off", 0.1), min_pairs=3, budget_s=1.0)[:2] == (1.0, 5)  # 5 x 0.2 s
    assert H.auto_vs_off(call("auto", 0.01), call("off", 0.01), min_pairs=3, max_pairs=7, budget_s=1.0)[1] == 7

    def same_of(auto_work, off_work):
        calls.clear()
        return H.auto_vs_off(call("auto", 1.0), call("off", 1.0), min_pairs=2, budget_s=0.0,
                             work=lambda: (auto_work if calls[-1] == "auto" else off_work))[2]

    plain = ("sparse", False, (3,), (1,), (0,))
    assert same_of(plain, plain) is True
    assert same_of(("sparse", True, (3,), (1,), (0,)), plain) is False  # auto collapsed
    assert same_of(("sparse", False, (2,), (1,), (0,)), plain) is False  # other work


def test_bench_persistence_warms_up_on_the_set_s_first_points_with_its_arguments():
    from aura_lab.harness import persistence as H

    X = np.arange(40.0).reshape(20, 2)
    assert np.array_equal(H.warm_input(X, {"maxdim": 7}), X[:H.WARM_N])
    D = np.arange(400.0).reshape(20, 20)
    assert np.array_equal(H.warm_input(D, {"distance_matrix": True}), D[:H.WARM_N, :H.WARM_N])
    assert H.warm_input(X[:5], {}).shape == (5, 2)

def test_bench_sets_option_only_for_families_with_sets():
    r = subprocess.run([sys.executable, "-m", "aura_lab.cli", "bench", "distance", "--sets", "x"], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "--sets: the distance bench does not take it" in r.stderr


def test_bench_persistence_work_done_tells_auto_resolving_to_off_from_a_collapse():
    from aura_lab.harness import persistence as H
    from aura_lab.persistence import rips_persistence

    X = np.random.default_rng(0).standard_normal((40, 3))
    work = {}
    for name, kw in {"auto1": dict(maxdim=1), "off1": dict(maxdim=1, collapse_edges=False),
                     "auto3": dict(maxdim=3, threshold=1.5), "off3": dict(maxdim=3, threshold=1.5, collapse_edges=False)
                     }.items():
        rips_persistence(X, backend="mojo", **kw)
        work[name] = H.work_done()
    assert work["auto1"] == work["off1"] and work["off1"][1] is False
    assert work["auto3"][1] is True and work["auto3"] != work["off3"]
