"""The typed boundary: the generated Mojo side of every parameter block is current, and the
Python side packs exactly the declared fields."""

import ctypes

import pytest

import aura_lab  # noqa: F401  (declares every op's ABI)
from aura_lab import _mojo
from aura_lab._abi import ADDR, BOOL, FLOAT, INT, Enumeration, Flags, KernelABI, Slots


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
                assert f"comptime {e.prefix}{m.upper()} = {e.value(i)}\n" in text


def test_output_slots_and_codes_reach_the_generated_file():
    kernels = _mojo.kernels_dir()
    with_outputs = {name for name, abi in KernelABI.registry.items() if abi.outputs}
    assert {"persistence", "persistence_batch", "collapse"} <= with_outputs
    for name in with_outputs:
        abi = KernelABI.registry[name]
        text = abi.mojo_path(kernels).read_text()
        for e in abi.outputs:
            for i, m in enumerate(e.members):
                assert f"comptime {e.prefix}{m.upper()} = {e.value(i)}\n" in text
            if isinstance(e, Slots):
                assert f"comptime {e.prefix}WORDS = {len(e.members)}\n" in text


def test_persistence_outputs_keep_their_words_and_codes():
    """The values the kernels and Python agreed on as literals before they were declared."""
    from aura_lab.persistence import batch, collapse, problem

    assert [(m.name, int(m)) for m in problem.Status] == [("OK", 0), ("OUT_OF_MEMORY", 1), ("CANCELLED", 2),
                                                          ("INCONSISTENT", 3)]
    assert problem.INFO.words == 8 and (problem.Info.FAIL_DIM, problem.Info.PEAK_BYTES, problem.Info.NREPS) == (3, 5, 7)
    assert (problem.Kind.COCYCLE, problem.Kind.CYCLE, problem.Kind.MERGES) == (0, 1, 2)
    assert problem.STAT.words == 11 and problem.STAT.enum.REDUCE_NS == 10
    assert (collapse.Info.EDGES, collapse.Info.PASSES, collapse.Info.PASS0) == (1, 2, 3)
    assert batch.RESULT.constants()[-2:] == [("RESULT_FAILED", 3), ("RESULT_WORDS", 4)]
    text = KernelABI.registry["persistence_batch"].mojo_source()
    assert "comptime STATUS_CANCELLED = 2\n" in text and "comptime INFO_WORDS = 8\n" in text


def test_ids_from_a_start_and_bit_flags_are_generated_and_enter_the_layout_word():
    stage = Enumeration("stage", ("collapse", "batch"), prefix="STAGE_", start=4096)
    want = Flags("want", ("cocycles", "cycles", "extra"), prefix="WANT_")
    assert stage.constants() == [("STAGE_COLLAPSE", 4096), ("STAGE_BATCH", 4097)] and stage.id("batch") == 4097
    assert stage.enum.BATCH == 4097 and want.enum.CYCLES == 2 and want.id("extra") == 4
    assert want.constants() == [("WANT_COCYCLES", 1), ("WANT_CYCLES", 2), ("WANT_EXTRA", 4)]
    plain = Enumeration("stage", ("collapse", "batch"), prefix="STAGE_")
    layouts = {KernelABI("t_abi_start", [("n", INT)], outputs=(e,)).layout for e in (plain, stage)}
    layouts |= {KernelABI("t_abi_start", [("n", INT)], enums=(e,)).layout
                for e in (Enumeration("want", want.members), Flags("want", want.members))}
    try:
        assert len(layouts) == 4
        text = KernelABI("t_abi_start", [("n", INT)], outputs=(stage,)).mojo_source()
        assert "comptime STAGE_COLLAPSE = 4096\ncomptime STAGE_BATCH = 4097\n" in text
    finally:
        KernelABI.registry.pop("t_abi_start")


def test_the_special_progress_stages_lie_past_the_engine_s():
    """The collapse's and the batch's stages were 100 and 200, which the engine also reports
    (2 k and 2 k + 1 for dimension k) from maxdim 50 on: the bar named such a stage wrongly."""
    from aura_lab.persistence.problem import MAX_MAXDIM, STAGE
    from aura_lab.persistence.progress import ProgressBar

    assert min(v for _, v in STAGE.constants()) > 2 * MAX_MAXDIM + 1
    assert ProgressBar.describe(STAGE.enum.COLLAPSE) == "edge collapse: edges processed"
    assert ProgressBar.describe(STAGE.enum.BATCH) == "collection: inputs done"
    assert ProgressBar.describe(100) == "dim 50: cofacets of dim 49 simplices"
    assert ProgressBar.describe(2 * MAX_MAXDIM + 1) == f"dim {MAX_MAXDIM}: columns reduced"


def test_outputs_enter_the_layout_word_and_leave_others_alone():
    plain = KernelABI("t_abi_out", [("n", INT)])
    status = Enumeration("status", ("ok", "cancelled"), prefix="STATUS_")
    a = KernelABI("t_abi_out", [("n", INT)], outputs=(status,))
    b = KernelABI("t_abi_out", [("n", INT)], outputs=(Enumeration("status", ("ok", "cancelled"), prefix="S_"),))
    c = KernelABI("t_abi_out", [("n", INT)], outputs=(Slots("status", ("ok", "cancelled"), prefix="STATUS_"),))
    d = KernelABI("t_abi_out", [("n", INT)], enums=(status,))
    try:
        assert len({plain.layout, a.layout, b.layout, c.layout, d.layout}) == 5
        assert plain.layout == KernelABI("t_abi_out", [("n", INT)], outputs=()).layout
        assert "# status (written by the kernel)\ncomptime STATUS_OK = 0\ncomptime STATUS_CANCELLED = 1\n" in a.mojo_source()
        assert "comptime STATUS_WORDS = 2\n" in c.mojo_source() and "STATUS_WORDS" not in a.mojo_source()
        assert status.enum.__name__ == "Status" and status.enum(1).name == "CANCELLED"
    finally:
        KernelABI.registry.pop("t_abi_out")


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


# ---------------------------------------------------------------- the kernels check the layout word

def _stale(abi, **fields):
    """A block of ``abi`` whose layout word is not the kernel's (as from another declaration)."""
    blk = abi.pack(**fields)
    blk.params.layout = 0
    return blk


@pytest.mark.requires("mojo")
def test_distance_kernel_refuses_a_block_of_another_layout():
    import numpy as np
    from aura_lab.distance import ABI, METRIC

    x = np.zeros((4, 3))
    res = np.full((4, 4), -1.0)
    blk = _stale(ABI, dtype_bits=64, metric=METRIC.id("euclidean"), x=x.ctypes.data, y=x.ctypes.data,
                 result=res.ctypes.data, n=4, m=4, d=3, ldo=4, threads=1)
    with pytest.raises(Exception, match="parameter block has layout"):
        _mojo.load("distance").cdist(blk.address)
    assert np.all(res == -1.0)  # nothing was computed


@pytest.mark.requires("mojo")
def test_ssd_kernel_refuses_a_block_of_another_layout():
    import numpy as np
    from aura_lab.ssd import ABI

    kernel = _mojo.load("ssd")
    n = kernel.lanes(64)
    x, dt, A = np.zeros((2, 1, 1)), np.zeros((2, 1)), -np.ones(1)
    B = C = np.zeros((2, 1, n))
    offsets = np.array([0, 2], np.int64)
    fin, y = np.zeros((1, 1, 1, n)), np.full((2, 1, 1), -1.0)
    blk = _stale(ABI, dtype_bits=64, x=x.ctypes.data, dt=dt.ctypes.data, A=A.ctypes.data, B=B.ctypes.data,
                 C=C.ctypes.data, D=None, d_per_p=False, z=None, dt_bias=None, softplus=False, lo=0.0,
                 hi=float("inf"), offsets=offsets.ctypes.data, nseq=1, h=1, p=1, n=n, g=1, init=None,
                 fin=fin.ctypes.data, y=y.ctypes.data, threads=1, ckpt=None, chunk=0, ypre=None)
    with pytest.raises(Exception, match="parameter block has layout"):
        kernel.scan(blk.address)
    assert np.all(y == -1.0)


@pytest.mark.requires("mojo")
def test_ssd_backward_refuses_a_block_of_another_layout():
    import numpy as np
    from aura_lab.ssd.problem import GRAD_ABI

    gx = np.full((2, 1, 1), -1.0)
    blk = _stale(GRAD_ABI, fwd=None, gy=None, gfin=None, gx=gx.ctypes.data, gdt=None, gA=None, gB=None, gC=None,
                 gD=None, gz=None, gbias=None, ginit=None)
    with pytest.raises(Exception, match="ssd_grad: the parameter block has layout"):
        _mojo.load("ssd").scan_grad(blk.address)
    assert np.all(gx == -1.0)


@pytest.mark.requires("mojo")
def test_routing_kernel_refuses_a_block_of_another_layout():
    import numpy as np
    from aura_lab.routing import ABI, SCORING

    T, E, k = 4, 8, 2
    logits = np.zeros((T, E), np.float32)
    weights, experts = np.full((T, k), -1, np.float32), np.full((T, k), -1, np.int32)
    counts, perm, offsets = np.zeros(E, np.int64), np.zeros(T * k, np.int64), np.zeros(E + 1, np.int64)
    blk = _stale(ABI, logits=logits.ctypes.data, T=T, E=E, k=k, scoring=SCORING.id("softmax"), renormalize=True,
                 scale=1.0, bias=None, n_groups=0, topk_groups=0, capacity=-1, weights=weights.ctypes.data,
                 experts=experts.ctypes.data, counts=counts.ctypes.data, perm=perm.ctypes.data,
                 offsets=offsets.ctypes.data, kept=None, threads=1)
    with pytest.raises(Exception, match="parameter block has layout"):
        _mojo.load("routing").route(blk.address)
    assert np.all(experts == -1)


@pytest.mark.requires("mojo")
def test_persistence_kernel_refuses_a_block_of_another_layout():
    import numpy as np
    from aura_lab.persistence import ABI

    D = np.zeros((3, 3))
    info, stats = np.full(8, -1, np.int64), np.zeros(11, np.int64)
    blk = _stale(ABI, dtype_bits=64, dist=D.ctypes.data, n=3, maxdim=0, threshold=1.0, modulus=2, reps=0, threads=1,
                 budget=1 << 26, info=info.ctypes.data, stats=stats.ctypes.data,
                 sparse=False, indptr=0, indices=0, births=0)
    with pytest.raises(Exception, match="parameter block has layout"):
        _mojo.load("persistence").rips(blk.address)
    assert np.all(info == -1)
