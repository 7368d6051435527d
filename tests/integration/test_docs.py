"""The docs: the site builds without a warning, the docstrings' examples run, the README stays
short and its targets table is what the stored runs say, and the generated tables read the
stored runs correctly (aura_lab.harness.report)."""

import doctest
import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aura_lab.harness import report

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import results_tables  # noqa: E402  (tools/ is not a package)

#: the modules whose public docstrings carry runnable examples
DOCTEST_MODULES = ("aura_lab.distance.api", "aura_lab.persistence.api", "aura_lab.routing.api", "aura_lab.collection",
                   "aura_lab.diagrams")


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name}: no example found"
    assert result.failed == 0


def test_site_builds_without_warnings(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs, "mkdocs is not installed (it is in the test extra)"
    proc = subprocess.run([mkdocs, "build", "--strict", "-d", str(tmp_path / "site")], cwd=ROOT,
                          capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-4000:]
    results = (tmp_path / "site" / "results" / "index.html").read_text()
    assert "aura:" not in results  # every marker was replaced
    assert "aura-lab bench persistence" in results


def test_readme_is_short_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to a missing file {target}"


def test_readme_targets_table_is_current():
    text = (ROOT / "README.md").read_text()
    assert text == results_tables.readme_with_targets(text), \
        "README's targets table differs from the stored runs: run `python tools/results_tables.py --readme`"


def test_adding_a_kernel_page_is_in_the_site_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in ("adding-a-kernel.md", "results.md", "reliability.md", "architecture.md"):
        assert page in nav


# --- the generated tables read the stored runs as declared ------------------------------------

@pytest.fixture
def stored(tmp_path, monkeypatch):
    """A results folder holding one made-up run of the family ``toy``."""
    rows = [
        {"case": "a", "impl": "mojo", "ms": 2.0, "floor_ms": 1.5, "vs_peer": 3.0, "vs_other": 0.5, "peak": 10.0},
        {"case": "a", "impl": "peer", "ms": 6.0, "peak": 20.0},
        {"case": "b", "impl": "mojo", "ms": 4.0, "floor_ms": 1.0, "vs_peer": 1.5, "vs_other": 2.0, "peak": 30.0},
        {"case": "b", "impl": "peer", "ms": 6.0, "peak": 20.0},
        {"case": "b", "impl": "aura threads", "ms": 3.0, "vs_peer": 2.0},
        {"case": "b", "impl": "aura processes", "ms": 2.0, "vs_peer": 3.0},
    ]
    (tmp_path / "bench-toy.json").write_text(json.dumps({"context": {}, "rows": rows}))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    return rows


def _row(**kw):
    return report.target_row(report.Target("t", "toy", **kw))


def test_target_reads_a_column_per_case(stored):
    assert _row(cases=("a", "b"), impl="mojo", column="vs_peer", goal=2) == \
        {"target": "t", "measured": "a 3×; b 1.5×", "met": "1 of 2", "run": "`aura-lab bench toy`"}
    assert _row(cases=("a",), impl="mojo", column="vs_peer", goal=2)["met"] == "yes"
    assert _row(cases=("b",), impl="mojo", column="vs_peer", goal=2)["met"] == "no"


def test_target_ratios_best_of_and_at_most(stored):
    per = _row(cases=("a", "b"), impl="mojo", column="ms", per="floor_ms", goal=2, at_most=True)
    assert per["measured"] == "a 1.33×; b 4×" and per["met"] == "1 of 2"
    over = _row(cases=("a", "b"), impl="mojo", column="peak", over="peer", goal=1.1, at_most=True)
    assert over["measured"] == "a 0.5×; b 1.5×"
    worst_peer = _row(cases=("a", "b"), impl="mojo", column=("vs_peer", "vs_other"), goal=1)
    assert worst_peer["measured"] == "a 0.5×; b 1.5×" and worst_peer["met"] == "1 of 2"
    best_aura = _row(cases=("b",), impl="aura*", column="vs_peer", goal=3)
    assert best_aura["measured"] == "3×" and best_aura["met"] == "yes"
    missing = _row(cases=("a", "c"), impl="mojo", column="vs_peer", goal=1)
    assert missing["measured"] == "a 3×; c —" and missing["met"] == "1 of 2"


def test_target_met_by_a_row_flag_still_shows_the_value(stored, tmp_path):
    rows = [{"case": "a", "impl": "mojo", "r": 1.2, "same": True}, {"case": "b", "impl": "mojo", "r": 1.2},
            {"case": "c", "impl": "mojo", "r": 1.2, "same": False}, {"case": "d", "impl": "mojo", "r": 0.9}]
    (tmp_path / "bench-toy.json").write_text(json.dumps({"context": {}, "rows": rows}))
    got = _row(cases=("a", "b", "c", "d"), impl="mojo", column="r", goal=1.05, at_most=True, met_by="same")
    assert got["measured"] == "a 1.2× (same); b 1.2×; c 1.2×; d 0.9×" and got["met"] == "2 of 4"


def test_every_declared_target_finds_its_rows():
    for t in report.TARGETS:
        measured = report.target_row(t)["measured"]
        assert "—" not in measured, f"{t.text}: a case has no value in the stored run ({measured})"


def test_markers_expand_and_unknown_ones_are_refused():
    text = report.expand("x\n<!-- aura:targets max -->\ny")
    assert "second process" in text and "aura:" not in text
    with pytest.raises(ValueError, match="unknown docs marker aura:nope"):
        report.expand("<!-- aura:nope -->")


def test_collapse_marker_reads_the_stored_mojo_row(tmp_path, monkeypatch):
    rows = [{"case": "s", "impl": "mojo", "collapse": "edge collapse: 33189 -> 7212 edges in 5 passes (0.08 s)"},
            {"case": "s", "impl": "mojo collapse on", "collapse": "edge collapse: 1 -> 1 edges in 1 pass (0 s)"},
            {"case": "t", "impl": "mojo", "collapse": "edge collapse: 942 -> 331 edges in 1 pass (0.002 s)"},
            {"case": "u", "impl": "mojo"}]
    (tmp_path / "bench-persistence.json").write_text(json.dumps({"context": {}, "rows": rows}))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    assert report.expand("<!-- aura:collapse s -->; <!-- aura:collapse t -->") == \
        "33 189 → 7 212 edges in 5 passes; 942 → 331 edges in 1 pass"
    with pytest.raises(ValueError, match="no collapse on the mojo row of 'u'"):
        report.expand("<!-- aura:collapse u -->")


def test_neighbors_marker_gives_the_range_of_the_auto_rows(tmp_path, monkeypatch):
    rows = [{"set": "s", "n": 50000, "method": "ours auto", "ckdtree_over_this": 1.74},
            {"set": "s", "n": 50000, "method": "ours grid", "ckdtree_over_this": 9.0},
            {"set": "t", "n": 4096, "method": "ours auto", "ckdtree_over_this": 2.81},
            {"set": "t", "n": 4096, "method": "cKDTree pairs+dist", "ckdtree_over_this": 1.0}]
    (tmp_path / "radius-graph.json").write_text(json.dumps({"context": {"command": "python x"}, "rows": rows}))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    assert report.expand("<!-- aura:neighbors -->") == (
        "1.7–2.8× faster than cKDTree's `query_pairs` plus distances on s (n = 50 000), t (n = 4 096) "
        "in one run of `python x`")
