import json
import subprocess
import sys

import numpy as np

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
