"""MoE routing: every backend against the numpy reference, the reference against the model
code it transcribes (torch.topk formulations, DeepSeek-V3 Gate.forward, HF
load_balancing_loss_func), the tie and NaN rules, capacity, permute/unpermute and the layer."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from .conftest import backend_params
from hypothesis import given, settings
from hypothesis import strategies as st

import aura_lab
from aura_lab.harness.routing import moe_rounding_bound
from aura_lab import routing
from aura_lab.routing import op, route

BACKENDS = backend_params(op)


def variant(name: str, E: int, rng) -> dict:
    bias = (rng.standard_normal(E) * 0.1).astype(np.float32)
    G = 4 if E % 4 == 0 else 1
    return {
        "softmax": {},
        "softmax-raw": {"renormalize": False},
        "sigmoid": {"scoring": "sigmoid"},
        "sigmoid-raw-scaled": {"scoring": "sigmoid", "renormalize": False, "scale": 2.0},
        "softmax-bias": {"bias": bias},
        "sigmoid-bias": {"scoring": "sigmoid", "bias": bias},
        "grouped": {"n_groups": G, "topk_groups": max(1, G // 2)},
        "dsv3": {"scoring": "sigmoid", "bias": bias, "n_groups": G, "topk_groups": max(1, G // 2), "scale": 2.5},
        "capacity": {"capacity_factor": 1.0},
        "dsv3-capacity": {"scoring": "sigmoid", "bias": bias, "n_groups": G, "topk_groups": max(1, G // 2),
                          "scale": 2.5, "capacity_factor": 0.8},
    }[name]


VARIANTS = ["softmax", "softmax-raw", "sigmoid", "sigmoid-raw-scaled", "softmax-bias", "sigmoid-bias", "grouped",
            "dsv3", "capacity", "dsv3-capacity"]


def assert_same(got: routing.Routing, ref: routing.Routing):
    np.testing.assert_array_equal(got.experts, ref.experts)
    np.testing.assert_allclose(got.weights, ref.weights, rtol=1e-6, atol=1e-37)
    np.testing.assert_array_equal(got.counts, ref.counts)
    np.testing.assert_array_equal(got.permutation, ref.permutation)
    np.testing.assert_array_equal(got.offsets, ref.offsets)
    assert got.capacity == ref.capacity and got.dropped == ref.dropped
    if ref.kept is None:
        assert got.kept is None
    else:
        np.testing.assert_array_equal(got.kept, ref.kept)
    assert got.weights.dtype == np.float32 and got.experts.dtype == np.int32
    assert got.counts.dtype == got.permutation.dtype == got.offsets.dtype == np.int64


def check_invariants(r: routing.Routing):
    T, k, E = r.n_tokens, r.k, r.n_experts
    ids = np.asarray(r.experts)
    assert ids.min(initial=0) >= 0 and ids.max(initial=0) < E
    assert all(len(set(row)) == k for row in ids.tolist())
    assert np.all(np.isfinite(r.weights))
    flat = ids.ravel()
    perm = np.asarray(r.permutation)
    assert sorted(perm.tolist()) == list(range(T * k))
    e_sorted = flat[perm]
    assert np.all(np.diff(e_sorted) >= 0)
    same = np.diff(e_sorted) == 0
    assert np.all(np.diff(perm)[same] > 0)  # stable: ascending assignment (token) within an expert
    np.testing.assert_array_equal(r.counts, np.bincount(flat, minlength=E))
    np.testing.assert_array_equal(r.offsets, np.concatenate([[0], np.cumsum(r.counts)]))


def inputs(kind: str, T: int, E: int, rng) -> np.ndarray:
    if kind == "random":
        return rng.standard_normal((T, E)).astype(np.float32)
    if kind == "all-equal":
        return np.full((T, E), 0.75, np.float32)
    if kind == "quantized":
        return (np.round(rng.standard_normal((T, E)) * 1.5) / 2).astype(np.float32)  # ~7 distinct values per row
    if kind == "zeros-and-dups":
        L = rng.standard_normal((T, E)).astype(np.float32)
        L[::3] = 0.0
        L[1::3, E // 2 :] = L[1::3, : E - E // 2][:, : E // 2]  # duplicated halves
        return L
    raise ValueError(kind)


# ---------------------------------------------------------------- backends vs reference

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("data", ["random", "all-equal", "quantized", "zeros-and-dups"])
def test_backend_equals_reference(backend, name, data):
    rng = np.random.default_rng(zlib.crc32(f"{name}/{data}".encode()))
    T, E, k = 301, 32, 4
    L = inputs(data, T, E, rng)
    kw = variant(name, E, rng)
    if data != "random" and "bias" in kw:  # ties in the bias too
        kw["bias"] = np.round(kw["bias"] * 20) / 20
    ref = route(L, k, backend="numpy", **kw)
    got = route(L, k, backend=backend, **kw)
    assert aura_lab.last_dispatch().backend == backend
    assert_same(got, ref)
    check_invariants(got)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(5000, 64, 2), (4099, 256, 8), (3, 8, 8), (1, 1, 1), (700, 6, 3)])
@pytest.mark.parametrize("name", ["softmax", "softmax-raw", "dsv3-capacity", "sigmoid-bias"])
def test_shapes(backend, shape, name):
    T, E, k = shape
    rng = np.random.default_rng(T + E + k)
    kw = variant(name, E, rng)
    if kw.get("n_groups") and k > kw["topk_groups"] * E // kw["n_groups"]:
        kw["topk_groups"] = kw["n_groups"]
    L = inputs("quantized" if T % 2 else "random", T, E, rng)
    assert_same(route(L, k, backend=backend, **kw), route(L, k, backend="numpy", **kw))


@pytest.mark.parametrize("backend", BACKENDS)
def test_dsv3_configuration(backend):
    rng = np.random.default_rng(3)
    L = rng.standard_normal((2048, 256)).astype(np.float32)
    bias = (rng.standard_normal(256) * 0.05).astype(np.float32)
    kw = dict(scoring="sigmoid", bias=bias, n_groups=8, topk_groups=4, scale=2.5)
    got = route(L, 8, backend=backend, **kw)
    assert_same(got, route(L, 8, backend="numpy", **kw))
    np.testing.assert_allclose(got.weights.sum(1), 2.5, rtol=1e-6)
    groups = got.experts // 32
    assert all(len(set(g)) <= 4 for g in groups.tolist())


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_property_matches_reference(backend, data):
    E = data.draw(st.sampled_from([1, 2, 3, 8, 12, 16, 40]), "E")
    T = data.draw(st.integers(0, 40), "T")
    k = data.draw(st.integers(1, E), "k")
    seed = data.draw(st.integers(0, 2**31), "seed")
    rng = np.random.default_rng(seed)
    L = (rng.integers(-3, 4, (T, E)) * data.draw(st.sampled_from([0.5, 1.0, 40.0]), "unit")).astype(np.float32)
    if data.draw(st.booleans(), "nonfinite"):
        L[rng.random((T, E)) < 0.15] = np.nan
        L[rng.random((T, E)) < 0.05] = np.inf
        L[rng.random((T, E)) < 0.05] = -np.inf
    kw = {"scoring": data.draw(st.sampled_from(["softmax", "sigmoid"]), "scoring"),
          "renormalize": data.draw(st.booleans(), "renormalize")}
    if data.draw(st.booleans(), "bias"):
        kw["bias"] = (rng.integers(-2, 3, E) * 0.25).astype(np.float32)
    divisors = [g for g in range(1, E + 1) if E % g == 0]
    G = data.draw(st.sampled_from([None, *divisors]), "n_groups")
    if G is not None:
        tg = data.draw(st.integers(1, G), "topk_groups")
        if k <= tg * (E // G):
            kw.update(n_groups=G, topk_groups=tg)
    if data.draw(st.booleans(), "capacity"):
        kw["capacity_factor"] = data.draw(st.sampled_from([0.3, 1.0, 1.25]), "cf")
    ref = route(L, k, backend="numpy", **kw)
    check_invariants(ref)
    assert_same(route(L, k, backend=backend, **kw), ref)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scoring", ["softmax", "sigmoid"])
def test_group_sum_composition_ties(backend, scoring):
    """Group scores that tie in exact arithmetic through different compositions:
    (s(1) + 0.25) + (s(0) + 0.5) vs (s(1) + 0.5) + (s(0) + 0.25). Rounding decides, and it
    must decide the same in every backend (bit-identical keys via portable_exp)."""
    rng = np.random.default_rng(4)
    L = rng.integers(0, 2, (3000, 16)).astype(np.float32)
    bias = rng.choice(np.array([0.25, 0.5], np.float32), 16)
    kw = dict(scoring=scoring, bias=bias, n_groups=8, topk_groups=3)
    assert_same(route(L, 3, backend=backend, **kw), route(L, 3, backend="numpy", **kw))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("E", [16, 128])
def test_denormal_logits_and_weights_on_worker_threads(backend, E):
    """Enough rows for the threaded path: denormal logits must not compare as 0 and tiny
    weights must not flush to 0 (the Mojo runtime's workers start with FTZ/DAZ set)."""
    rng = np.random.default_rng(6)
    T = 65536 // E
    L = rng.choice(np.array([0.0, -0.0, 1e-40, -1e-40, 3e-42, 1e-45, 1e-38], np.float32), (T, E))
    ref = route(L, 3, backend="numpy")
    assert_same(route(L, 3, backend=backend), ref)
    H = (rng.standard_normal((T, E)) * (40 if E == 16 else 120)).astype(np.float32)
    ref = route(H, 4, renormalize=False, backend="numpy")
    tiny = (ref.weights > 0) & (ref.weights < np.finfo(np.float32).tiny)
    assert tiny.sum() > 10  # denormal float32 weights exist in the reference
    assert_same(route(H, 4, renormalize=False, backend=backend), ref)


def test_portable_exp_is_exp_and_bit_identical_in_torch():
    from aura_lab.routing.reference import portable_exp
    from aura_lab.routing.torch_impl import _torch_portable_exp

    x = np.concatenate([np.linspace(-708, 708, 100001), np.random.default_rng(0).standard_normal(10000) * 30])
    a = portable_exp(x)
    assert np.max(np.abs(a - np.exp(x)) / np.spacing(np.exp(x))) <= 2.0
    t = _torch_portable_exp(torch.from_numpy(x)).numpy()
    assert np.array_equal(a.view(np.int64), t.view(np.int64))
    np.testing.assert_array_equal(portable_exp(np.array([-709.0, -np.inf, 709.0, np.inf])), [0, 0, np.inf, np.inf])


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b.id == "mojo"])
def test_portable_exp_bit_identical_in_mojo(backend):
    """Mojo fuses a * b + c into an FMA unless fenced; the keys' exp must keep numpy's bits."""
    from aura_lab import _mojo
    from aura_lab.routing import portable_exp

    x = np.concatenate([np.linspace(-720, 720, 100003), np.random.default_rng(1).standard_normal(10000) * 30,
                        [-np.inf, np.inf, 0.0, -0.0]])
    out = np.empty_like(x)
    _mojo.load("routing").portable_exp((x.ctypes.data, out.ctypes.data, x.size))
    assert np.array_equal(out.view(np.int64), portable_exp(x).view(np.int64))


# ------------------------------------------------------------- the reference, independently

def test_hand_examples_tie_rule():
    L = np.array([[1, 3, 3, 2, 3], [0, 0, 0, 0, 0], [-1, 5, -1, 5, 2]], np.float32)
    r = route(L, 3, backend="numpy")
    np.testing.assert_array_equal(r.experts, [[1, 2, 4], [0, 1, 2], [1, 3, 4]])
    np.testing.assert_allclose(r.weights[1], [1 / 3] * 3, rtol=1e-7)
    e5, e2 = np.exp(5.0), np.exp(2.0)
    np.testing.assert_allclose(r.weights[2], [e5 / (2 * e5 + e2)] * 2 + [e2 / (2 * e5 + e2)], rtol=1e-7)
    # slots by descending key: the lower index comes first among equal keys, even when it is found later
    r = route(np.array([[0, 2, 1, 2]], np.float32), 4, scoring="sigmoid", renormalize=False, backend="numpy")
    np.testing.assert_array_equal(r.experts, [[1, 3, 2, 0]])
    np.testing.assert_allclose(r.weights, 1 / (1 + np.exp(-np.array([[2, 2, 1, 0]]))), rtol=1e-7)


def test_hand_example_groups_and_bias():
    # 2 groups of 3; without bias group score = max: group 1 (max 4) beats group 0 (max 3)
    L = np.array([[3, 2.9, 2.8, 4, -5, -6]], np.float32)
    r = route(L, 2, n_groups=2, topk_groups=1, backend="numpy")
    np.testing.assert_array_equal(r.experts, [[3, 4]])
    # with a zero bias, group score = sum of the top 2 sigmoid keys: group 0 wins
    r = route(L, 2, scoring="sigmoid", bias=np.zeros(6, np.float32), n_groups=2, topk_groups=1, backend="numpy")
    np.testing.assert_array_equal(r.experts, [[0, 1]])
    s = 1 / (1 + np.exp(-np.array([3.0, 2.9])))
    np.testing.assert_allclose(r.weights, [s / s.sum()], rtol=1e-7)
    # bias changes selection but not the weights
    b = np.array([0, 0, 0, 0, 0, 2.0], np.float32)
    r = route(L, 2, scoring="sigmoid", bias=b, renormalize=False, backend="numpy")
    np.testing.assert_array_equal(r.experts, [[5, 3]])
    np.testing.assert_allclose(r.weights, [[1 / (1 + np.exp(6.0)), 1 / (1 + np.exp(-4.0))]], rtol=1e-6)
    # tied group scores: the lower group index is kept
    r = route(np.zeros((1, 6), np.float32), 2, n_groups=3, topk_groups=1, backend="numpy")
    np.testing.assert_array_equal(r.experts, [[0, 1]])


def dsv3_gate(l, bias, n_groups, topk_groups, k, scoring, scale):
    """deepseek-ai/DeepSeek-V3 inference/model.py Gate.forward, transcribed (float64)."""
    scores = l.softmax(dim=-1) if scoring == "softmax" else l.sigmoid()
    original = scores
    if bias is not None:
        scores = scores + bias
    if n_groups > 1:
        scores = scores.view(l.size(0), n_groups, -1)
        group_scores = scores.amax(dim=-1) if bias is None else scores.topk(2, dim=-1)[0].sum(dim=-1)
        indices = group_scores.topk(topk_groups, dim=-1)[1]
        mask = scores.new_ones(l.size(0), n_groups, dtype=bool).scatter_(1, indices, False)
        scores = scores.masked_fill_(mask.unsqueeze(-1), float("-inf")).flatten(1)
    indices = torch.topk(scores, k, dim=-1)[1]
    weights = original.gather(1, indices)
    if scoring == "sigmoid":
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights * scale, indices


@pytest.mark.parametrize("scoring", ["softmax", "sigmoid"])
@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("groups", [(1, 1), (8, 4), (4, 1)])
def test_reference_matches_deepseek_gate(scoring, use_bias, groups):
    rng = np.random.default_rng(7)
    L = rng.standard_normal((500, 64)).astype(np.float32)
    bias = (rng.standard_normal(64) * 0.1).astype(np.float32) if use_bias else None
    G, tg = groups
    w_ref, i_ref = dsv3_gate(torch.from_numpy(L).double(), None if bias is None else torch.from_numpy(bias).double(),
                             G, tg, 6, scoring, 2.5)
    kw = {"n_groups": G, "topk_groups": tg} if G > 1 else {}
    r = route(L, 6, scoring=scoring, renormalize=scoring == "sigmoid", scale=2.5, bias=bias, backend="numpy", **kw)
    np.testing.assert_array_equal(r.experts, i_ref.numpy())
    np.testing.assert_allclose(r.weights, w_ref.numpy(), rtol=1e-6)


def test_reference_matches_mixtral_and_vllm_forms():
    rng = np.random.default_rng(8)
    L = rng.standard_normal((400, 8)).astype(np.float32)
    lt = torch.from_numpy(L).double()
    top, idx = torch.topk(lt, 2, dim=-1)  # Mixtral: top-k logits, then softmax over them
    r = route(L, 2, backend="numpy")
    np.testing.assert_array_equal(r.experts, idx.numpy())
    np.testing.assert_allclose(r.weights, top.softmax(-1).numpy(), rtol=1e-6)
    p = lt.softmax(-1)  # vLLM torch_topk without renormalize
    w, idx = torch.topk(p, 3, dim=-1)
    r = route(L, 3, renormalize=False, backend="numpy")
    np.testing.assert_array_equal(r.experts, idx.numpy())
    np.testing.assert_allclose(r.weights, w.numpy(), rtol=1e-6)


def hf_load_balancing_loss(gate_logits, num_experts, top_k):
    """transformers' load_balancing_loss_func without attention mask, transcribed."""
    routing_weights = torch.nn.functional.softmax(gate_logits, dim=-1)
    _, selected_experts = torch.topk(routing_weights, top_k, dim=-1)
    expert_mask = torch.nn.functional.one_hot(selected_experts, num_experts)
    tokens_per_expert = torch.mean(expert_mask.double(), dim=0)
    router_prob_per_expert = torch.mean(routing_weights, dim=0)
    return torch.sum(tokens_per_expert * router_prob_per_expert.unsqueeze(0)) * num_experts


@pytest.mark.parametrize("backend", BACKENDS)
def test_balance_statistics(backend):
    rng = np.random.default_rng(9)
    L = (rng.standard_normal((1000, 16)) + np.linspace(0, 2, 16)).astype(np.float32)  # skewed to high experts
    r = route(L, 4, backend=backend)
    hf = hf_load_balancing_loss(torch.from_numpy(L).double(), 16, 4).item()
    assert r.hf_aux_loss == pytest.approx(hf, rel=1e-12)
    assert r.aux_loss == pytest.approx(hf / 4, rel=1e-12) and r.aux_loss > 1.2
    z = torch.logsumexp(torch.from_numpy(L).double(), -1).pow(2).mean().item()
    assert r.z_loss == pytest.approx(z, rel=1e-12)
    counts = np.bincount(np.asarray(r.experts).ravel(), minlength=16)
    assert r.max_load == counts.max() and r.mean_load == 250.0
    assert r.load_imbalance == pytest.approx(counts.max() / 250.0)
    # perfect balance: token t -> expert t (k=1), 1.0 exactly as documented
    b = route(np.eye(16, dtype=np.float32) * 5, 1, backend=backend)
    assert b.aux_loss == pytest.approx(1.0, rel=1e-12) and b.load_imbalance == 1.0
    # all tokens to expert 0 with probability ~1: aux_loss ~ E
    c = route(np.tile(np.array([[30.0] + [0.0] * 15], np.float32), (50, 1)), 1, backend=backend)
    assert c.aux_loss == pytest.approx(16.0, rel=1e-9)
    # sigmoid scoring: P = sigmoid scores normalized over the experts
    s = route(L, 4, scoring="sigmoid", backend=backend)
    sig = 1 / (1 + np.exp(-L.astype(np.float64)))
    P = (sig / sig.sum(1, keepdims=True)).mean(0)
    assert s.aux_loss == pytest.approx(16 * np.sum(np.asarray(s.counts) / 4000 * P), rel=1e-12)


# -------------------------------------------------------------------------- NaN / inf

@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_policy(backend):
    nan, inf = np.nan, np.inf
    L = np.array([[nan, 1, nan, 0], [nan] * 4, [inf, 0, inf, 1], [-inf] * 4, [nan, -inf, 2, nan]], np.float32)
    r = route(L, 3, backend=backend)
    np.testing.assert_array_equal(r.experts, [[1, 3, 0], [0, 1, 2], [0, 2, 3], [0, 1, 2], [2, 0, 1]])
    e = np.e
    np.testing.assert_allclose(r.weights, [[e / (e + 1), 1 / (e + 1), 0], [0, 0, 0], [0.5, 0.5, 0], [0, 0, 0], [1, 0, 0]],
                               rtol=1e-6, atol=1e-38)
    # a NaN expert is never preferred to a finite one, whatever its bias; -inf follows sigmoid(-inf) + bias
    b = np.array([9, 0, 0, 5], np.float32)
    r = route(np.array([[nan, 0, 1, -inf]], np.float32), 2, scoring="sigmoid", bias=b, backend=backend)
    np.testing.assert_array_equal(r.experts, [[3, 2]])
    np.testing.assert_allclose(r.weights, [[0, 1]], atol=1e-38)
    # non-renormalized softmax of a row with NaN: NaN is left out of the normalization
    r = route(np.array([[nan, 0, 0]], np.float32), 1, renormalize=False, backend=backend)
    np.testing.assert_array_equal(r.experts, [[1]])
    np.testing.assert_allclose(r.weights, [[0.5]], rtol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", VARIANTS)
def test_nan_rows_unique_ids_finite_weights(backend, name):
    rng = np.random.default_rng(11)
    L = rng.standard_normal((200, 32)).astype(np.float32)
    L[rng.random(L.shape) < 0.3] = np.nan
    L[5] = np.nan
    L[6, :] = np.inf
    L[7, ::2] = -np.inf
    kw = variant(name, 32, rng)
    r = route(L, 8, backend=backend, **kw)
    check_invariants(r)
    assert_same(r, route(L, 8, backend="numpy", **kw))


# ---------------------------------------------------------------------------- capacity

@pytest.mark.parametrize("backend", BACKENDS)
def test_capacity_first_come_first_served(backend):
    L = np.array([[5, 0, 0], [5, 1, 0], [5, 0, 1], [0, 5, 1], [5, 1, 0], [0, 1, 5]], np.float32)
    r = route(L, 2, capacity_factor=1.0, backend=backend)  # capacity = ceil(1.0 * 6 * 2 / 3) = 4
    np.testing.assert_array_equal(r.experts, [[0, 1], [0, 1], [0, 2], [1, 2], [0, 1], [2, 1]])
    assert r.capacity == 4
    np.testing.assert_array_equal(r.counts, [4, 5, 3])
    np.testing.assert_array_equal(r.permutation, [0, 2, 4, 8, 1, 3, 6, 9, 11, 5, 7, 10])
    np.testing.assert_array_equal(r.offsets, [0, 4, 9, 12])
    # expert 1's fifth assignment (token 5, slot 1) is over capacity
    np.testing.assert_array_equal(r.kept, [[1, 1], [1, 1], [1, 1], [1, 1], [1, 1], [1, 0]])
    assert r.dropped == 1
    assert route(L, 2, capacity_factor=0.25, backend=backend).capacity == 1  # ceil(0.25 * 6 * 2 / 3)
    r = route(L, 1, capacity_factor=0.1, backend=backend)
    assert r.capacity == 1 and r.dropped == 6 - 3 and r.kept.sum() == 3


# ---------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("args, kwargs, exc, match", [
    ((np.zeros(4, np.float32), 1), {}, ValueError, "logits: expected a 2-D"),
    ((np.zeros((2, 3, 4), np.float32), 1), {}, ValueError, "logits: expected a 2-D"),
    ((np.zeros((2, 4), np.float32), 0), {}, ValueError, "k: must be between 1"),
    ((np.zeros((2, 4), np.float32), 5), {}, ValueError, "k: must be between 1"),
    ((np.zeros((2, 4), np.float32), 2.0), {}, TypeError, "k: expected an int"),
    ((np.zeros((2, 4), np.float32), 2), {"scoring": "relu"}, ValueError, "scoring: unknown"),
    ((np.zeros((2, 4), np.float32), 2), {"bias": np.zeros(3)}, ValueError, r"bias: expected shape \(4,\)"),
    ((np.zeros((2, 4), np.float32), 2), {"bias": np.zeros((1, 4))}, ValueError, r"bias: expected shape \(4,\)"),
    ((np.zeros((2, 4), np.float32), 2), {"bias": np.array([0, np.nan, 0, 0])}, ValueError, "bias: must be finite"),
    ((np.zeros((2, 6), np.float32), 2), {"n_groups": 4, "topk_groups": 1}, ValueError, "n_groups: must be a positive divisor"),
    ((np.zeros((2, 6), np.float32), 2), {"n_groups": 0, "topk_groups": 1}, ValueError, "n_groups: must be a positive divisor"),
    ((np.zeros((2, 6), np.float32), 2), {"n_groups": 3, "topk_groups": 4}, ValueError, "topk_groups: must be between 1"),
    ((np.zeros((2, 6), np.float32), 2), {"n_groups": 3}, ValueError, "topk_groups: required with n_groups"),
    ((np.zeros((2, 6), np.float32), 2), {"topk_groups": 1}, ValueError, "topk_groups: needs n_groups"),
    ((np.zeros((2, 8), np.float32), 3), {"n_groups": 4, "topk_groups": 1}, ValueError, "k: 3 experts are more than the 1 kept groups hold"),
    ((np.zeros((2, 4), np.float32), 2), {"capacity_factor": 0}, ValueError, "capacity_factor: must be > 0"),
    ((np.zeros((2, 4), np.float32), 2), {"capacity_factor": -1.0}, ValueError, "capacity_factor: must be > 0"),
    ((np.zeros((2, 4), np.float32), 2), {"capacity_factor": float("nan")}, ValueError, "capacity_factor: must be finite"),
    ((np.zeros((2, 4), np.float32), 2), {"scale": float("inf")}, ValueError, "scale: must be finite"),
    # a float() conversion past float64's range names the argument, and the int is not printed
    ((np.zeros((2, 4), np.float32), 2), {"scale": 10**400}, ValueError, "^scale: an int of 1329 bits is too large for a float"),
    ((np.zeros((2, 4), np.float32), 2), {"scale": -10**5000}, ValueError, "^scale: an int of 16610 bits is too large"),
    ((np.zeros((2, 4), np.float32), 2), {"scale": np.longdouble(2.0) ** 2000}, ValueError, "^scale: .* is too large for a float"),
    ((np.zeros((2, 4), np.float32), 2), {"capacity_factor": 10**400}, ValueError, "^capacity_factor: an int of 1329 bits is too large"),
    ((np.zeros((2, 4), np.float32), 2), {"capacity_factor": 1e300}, ValueError, "^capacity_factor: .* slots, past int64"),
    ((np.zeros((2, 4), np.float32), 2), {"renormalize": "yes"}, TypeError, "renormalize: expected a bool"),
    ((np.array([["a", "b"]]), 1), {}, TypeError, "logits: expected a real numeric"),
    ((np.zeros((2, 4), np.float32), 2), {"backend": "cuda"}, ValueError, "unknown backend"),
])
def test_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        route(*args, **kwargs)


def test_empty_and_kinds():
    r = route(np.zeros((0, 5), np.float32), 2, capacity_factor=1.0)
    assert r.experts.shape == (0, 2) and r.weights.shape == (0, 2) and r.kept.shape == (0, 2)
    np.testing.assert_array_equal(r.offsets, np.zeros(6))
    assert r.capacity == 0 and r.dropped == 0
    t = route(torch.randn(10, 8), 2, bias=torch.zeros(8), backend="numpy")
    assert isinstance(t.experts, torch.Tensor) and t.experts.dtype == torch.int32
    assert isinstance(t.weights, torch.Tensor) and t.weights.dtype == torch.float32
    assert isinstance(t.permutation, torch.Tensor) and t.permutation.dtype == torch.int64
    # float64 / int logits are routed as float32
    L = np.random.default_rng(1).standard_normal((20, 6))
    np.testing.assert_array_equal(route(L, 2).experts, route(L.astype(np.float32), 2).experts)
    # non-contiguous input
    np.testing.assert_array_equal(route(L.T.copy().T, 2).experts, route(L, 2).experts)


# --------------------------------------------------------------- bias update, permute, layer

def test_update_bias_sign_rule():
    b = np.array([0.1, 0.0, -0.2, 0.3], np.float32)
    new = routing.update_bias(b, np.array([5, 1, 3, 3]), gamma=0.01)  # mean load 3
    np.testing.assert_allclose(new, [0.09, 0.01, -0.2, 0.3], rtol=1e-6)
    assert new.dtype == np.float32 and b[0] == np.float32(0.1)  # not in place
    t = routing.update_bias(torch.zeros(4), torch.tensor([0, 0, 8, 0]))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), [1e-3, 1e-3, -1e-3, 1e-3], rtol=1e-6)
    with pytest.raises(ValueError, match=r"counts: expected shape \(4,\)"):
        routing.update_bias(b, np.ones(3))
    with pytest.raises(ValueError, match="gamma: must be >= 0"):
        routing.update_bias(b, np.ones(4), gamma=-1.0)


def test_update_bias_balances_a_skewed_router():
    rng = np.random.default_rng(5)
    L = (rng.standard_normal((2000, 16)) + np.linspace(0, 1.5, 16)).astype(np.float32)
    bias = np.zeros(16, np.float32)
    first = route(L, 2, scoring="sigmoid", bias=bias).load_imbalance
    for _ in range(300):
        bias = routing.update_bias(bias, route(L, 2, scoring="sigmoid", bias=bias).counts, gamma=0.01)
    last = route(L, 2, scoring="sigmoid", bias=bias).load_imbalance
    assert first > 2.0 and last < 1.2


@pytest.mark.parametrize("to_torch", [False, True])
def test_permute_unpermute(to_torch):
    rng = np.random.default_rng(2)
    L = rng.standard_normal((37, 8)).astype(np.float32)
    x = rng.standard_normal((37, 5))
    r = route(L, 3, scoring="sigmoid", scale=2.0)
    if to_torch:
        x = torch.from_numpy(x)
    xs = routing.permute(x, r)
    assert type(xs) is type(x) and xs.shape == (37 * 3, 5)
    for e in range(8):  # expert e's segment holds its tokens, ascending
        toks = np.nonzero((r.experts == e).any(1))[0]
        seg = np.asarray(xs[r.offsets[e] : r.offsets[e + 1]])
        np.testing.assert_array_equal(seg, np.asarray(x)[toks])
    back = routing.unpermute(xs, r)
    np.testing.assert_allclose(np.asarray(back), np.asarray(x) * 2.0, rtol=1e-6)  # weights sum to scale
    # an expert-dependent transform combines as the dense formula
    ys = xs * 1.0
    for e in range(8):
        ys[r.offsets[e] : r.offsets[e + 1]] *= e + 1
    dense = sum(np.asarray(r.weights)[:, s, None] * (np.asarray(r.experts)[:, s, None] + 1) * np.asarray(x) for s in range(3))
    np.testing.assert_allclose(np.asarray(routing.unpermute(ys, r)), dense, rtol=1e-6)
    with pytest.raises(ValueError, match=r"x: expected shape \(T=37, D\)"):
        routing.permute(np.zeros((36, 5)), r)
    with pytest.raises(ValueError, match=r"y: expected shape \(T\*k=111, D\)"):
        routing.unpermute(np.zeros((37, 5)), r)


def test_unpermute_drops_over_capacity():
    L = np.array([[5, 0], [5, 0], [5, 0], [0, 5]], np.float32)
    r = route(L, 1, capacity_factor=1.0)  # capacity 2: token 2 is dropped
    y = np.arange(4.0)[:, None] + 1
    out = routing.unpermute(routing.permute(y, r), r)
    np.testing.assert_allclose(out[:, 0], [1, 2, 0, 4])


def layer_rounding_bound(layer, x, r):
    """The float32 bound of a MoE layer's output (see ``moe_rounding_bound``)."""
    return moe_rounding_bound(layer, x, r)[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kw", [{}, {"scoring": "sigmoid", "n_groups": 4, "topk_groups": 2, "scale": 2.5},
                                {"capacity_factor": 0.6}, {"renormalize": False}])
def test_moe_layer_equals_dense_loop(backend, kw):
    torch.manual_seed(0)
    layer = routing.MoELayer(12, 24, 8, 2, backend=backend, **kw)
    x = torch.randn(64, 12)
    out = layer(x)
    assert aura_lab.last_dispatch().op == "routing"
    with torch.no_grad():
        ref = layer.forward_dense(x)
    # within float32 rounding of each other: a bound from the data, not a tolerance fitted to one
    # machine's BLAS (rtol 1e-5 / atol 1e-6 failed on an AVX-512 Xeon)
    diff = (out.detach() - ref).abs().double()
    bound = 2 * layer_rounding_bound(layer, x, layer.last_routing)
    assert bool((diff <= bound).all()), f"max |diff| {diff.max():.3g}, worst diff / bound {(diff / bound).nan_to_num().max():.3g}"
    if "capacity_factor" in kw:
        assert layer.last_routing.dropped > 0
    out.sum().backward()  # gradients reach the experts through permute / unpermute
    assert layer.w1.grad is not None and layer.w1.grad.abs().sum() > 0


def test_layer_rounding_bound_is_tight_enough_to_catch_a_routing_mistake():
    """The bound is a worst case, yet far below what a routing mistake changes: the same expert
    outputs combined with each token's two weights swapped fall outside it."""
    import dataclasses

    torch.manual_seed(0)
    layer = routing.MoELayer(12, 24, 8, 2, backend="numpy")
    x = torch.randn(64, 12)
    with torch.no_grad():
        out = layer(x)
        r = layer.last_routing
        bound = 2 * layer_rounding_bound(layer, x, r)
        assert float(bound.max()) < 1e-3 * float(out.abs().mean())
        ys = _expert_outputs(layer, x, r)
        np.testing.assert_array_equal(routing.unpermute(ys, r).numpy(), out.numpy())
        swapped = routing.unpermute(ys, dataclasses.replace(r, weights=np.ascontiguousarray(np.asarray(r.weights)[:, ::-1])))
    assert not bool(((swapped - out).abs().double() <= bound).all())


def _expert_outputs(layer, x, r):
    """Each assignment's expert output in permute order (the layer's forward before the combine)."""
    xs = routing.permute(x, r)
    off = r.offsets.tolist()
    return torch.cat([layer.expert(e, xs[off[e]:off[e + 1]]) for e in range(r.n_experts)])


# ---------------------------------------------------------------------------- harness

@pytest.mark.slow  # a bench sweep and the validation report
def test_bench_and_validate_smoke():
    from aura_lab.harness import routing as H

    res = H.bench(sizes=[(512, 64, 2, "softmax"), (512, 256, 8, "dsv3")], repeats=1, show_progress=False)
    impls = {(r["case"].split()[1], r["impl"]) for r in res.rows}
    assert ("E=64", "torch.topk") in impls and ("DeepSeek-V3", "torch.grouped") in impls
    for r in res.rows:
        assert r["ms"] > 0 and r["GB/s"] == pytest.approx(4 * 512 * r["E"] / (r["ms"] * 1e-3) / 1e9)
        assert "vs_best_peer" in r and r["%read_bw"] > 0
    assert "torch.topk = softmax -> topk" in res.context["timed"]
    checks = H.validate(backends=["numpy", "torch"])
    assert checks and all(c.passed for c in checks), [c.case for c in checks if not c.passed]
    assert {c.backend for c in checks} == {"torch", "numpy (reference)"}
