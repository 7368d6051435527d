"""The typed boundary: the generated Mojo side of every parameter block is current, and the
Python side packs exactly the declared fields."""

import ctypes

import pytest

import aura_lab  # noqa: F401  (declares every op's ABI)
from aura_lab import _mojo
from aura_lab._abi import ADDR, BOOL, FLOAT, INT, Enumeration, KernelABI


def test_every_generated_file_is_current():
    kernels = _mojo.kernels_dir()
    assert {"distance", "ssd", "routing", "persistence"} <= set(KernelABI.registry)
    for abi in KernelABI.registry.values():
        path = abi.mojo_path(kernels)
        assert path.is_file(), f"{path} is missing: run `python tools/gen_abi.py`"
        assert path.read_text() == abi.mojo_source(), f"{path} is stale: run `python tools/gen_abi.py`"


def test_enumeration_ids_reach_the_generated_file():
    kernels = _mojo.kernels_dir()
    for abi in KernelABI.registry.values():
        text = abi.mojo_path(kernels).read_text()
        for e in abi.enums:
            for i, m in enumerate(e.members):
                assert f"comptime {m.upper()} = {i}\n" in text


def test_layout_word_changes_with_any_field_or_member():
    a = KernelABI("t_abi_a", [("n", INT), ("x", ADDR)])
    b = KernelABI("t_abi_a", [("x", ADDR), ("n", INT)])
    c = KernelABI("t_abi_a", [("n", INT), ("x", ADDR)], enums=(Enumeration("e", ("p", "q")),))
    d = KernelABI("t_abi_a", [("n", INT), ("x", ADDR)], enums=(Enumeration("e", ("q", "p")),))
    e = KernelABI("t_abi_a", [("n", INT), ("x", ADDR)], version=2)
    assert len({a.layout, b.layout, c.layout, d.layout, e.layout}) == 5
    KernelABI.registry.pop("t_abi_a")


def test_pack_writes_every_field_by_name():
    abi = KernelABI("t_abi_pack", [("n", INT), ("flag", BOOL), ("s", FLOAT), ("x", ADDR)])
    try:
        blk = abi.pack(n=7, flag=True, s=2.5, x=None)
        words = blk.words()
        assert words.tolist()[:2] == [abi.layout, 7] and words[2] == 1 and words[4] == 0
        assert ctypes.c_double.from_address(blk.address + 24).value == 2.5
        with pytest.raises(TypeError, match=r"missing \['x'\], unexpected \['y'\]"):
            abi.pack(n=1, flag=False, s=0.0, y=3)
    finally:
        KernelABI.registry.pop("t_abi_pack")


def test_bad_declarations_are_refused():
    with pytest.raises(ValueError, match="distinct and not 'layout'"):
        KernelABI("t_abi_bad", [("n", INT), ("n", INT)])
    with pytest.raises(ValueError, match="unknown field kind 'ptr'"):
        KernelABI("t_abi_bad", [("n", "ptr")])
