"""Dask arrays on Dask's threaded scheduler: every function against the in-memory
computation, for several chunkings (the reduced axes in one chunk, split in
uneven chunks with an empty one, chunks of length 1), with Dask temperatures and
masks; laziness; the graph's shape (the input read at most twice, never
rechunked); the errors.  The conformance suite's ``dask`` entry runs its own
tests on top of these; tests/test_dask_distributed.py runs on a LocalCluster."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import softmax_dispatch as sd  # noqa: E402

inf, nan = np.inf, np.nan


@pytest.fixture(autouse=True)
def threads():
    with dask.config.set(scheduler="threads"):
        yield


def special(shape, dtype=np.float64, seed=0):
    """Normal logits with special rows mixed in (+inf sharing, NaN, all -inf, huge values)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    flat = x.reshape(-1, shape[-1])
    flat[1, 3] = inf
    flat[2, :] = -inf
    flat[3, 5] = nan
    flat[4, [2, shape[-1] - 2]] = inf
    flat[5, :4] = [1e308, -1e308, 0.0, 1e308]
    flat[6, :] = 0.5  # ties everywhere
    with np.errstate(over="ignore"):
        return x.astype(dtype)


CHUNKINGS = {
    "rows": lambda shape, axes: tuple((n,) if d in axes else (n // 2, n - n // 2) for d, n in enumerate(shape)),
    "split": lambda shape, axes: tuple((n // 3, 0, n - n // 3) for n in shape),
    "ones": lambda shape, axes: tuple((1,) * n if d in axes else (n,) for d, n in enumerate(shape)),
}


def chunked(x, axes, chunking):
    return da.from_array(x, chunks=CHUNKINGS[chunking](x.shape, axes))


def assert_same(got, want, dtype, what="", cancelling=False):
    """Against the in-memory result: equal special values, float64 within 1e-12,
    float32 within 2e-6, float16 within one ulp (both are correctly rounded up to
    the contract's accuracy, by different sums).  ``cancelling``: a gradient,
    whose entries are differences; its error is relative to its largest entry."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape, got.dtype)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)], err_msg=what)
    g, w = got[finite].astype(np.float64), want[finite].astype(np.float64)
    if np.dtype(dtype) == np.float16:
        tol = np.spacing(np.abs(want[finite])).astype(np.float64) * 1.01
    else:
        rtol = 1e-12 if np.dtype(dtype) == np.float64 else 2e-6
        floor = 1.0 if cancelling else 1e-6
        tol = rtol * np.maximum(np.abs(w), np.max(np.abs(w), initial=0) * floor) + 1e-300
    bad = np.abs(g - w) > tol
    assert not bad.any(), f"{what}: got {g[bad][:4]}, want {w[bad][:4]}"


ELEMENTWISE = {
    "softmax": lambda x, **kw: sd.softmax(x, **kw),
    "log_softmax": lambda x, **kw: sd.log_softmax(x, **kw),
    "sparsemax": lambda x, **kw: sd.sparsemax(x, **kw),
    "hardmax": lambda x, **kw: sd.hardmax(x, **{k: v for k, v in kw.items() if k != "temperature"}),
    "hardmax_first": lambda x, **kw: sd.hardmax(x, ties="first", **{k: v for k, v in kw.items() if k != "temperature"}),
    "gumbel": lambda x, **kw: sd.gumbel_softmax(x, seed=11, tau=kw.get("temperature", 1.0), axis=kw["axis"]),
    "gumbel_hard": lambda x, **kw: sd.gumbel_softmax(x, seed=11, hard=True, axis=kw["axis"]),
}


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("function", list(ELEMENTWISE))
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16], ids=lambda d: np.dtype(d).name)
def test_elementwise_match_memory(function, chunking, dtype):
    f = ELEMENTWISE[function]
    x = special((9, 13), dtype)
    rng = np.random.default_rng(1)
    for axis in (-1, 0):
        axes = (axis % 2,)
        t_shape = (9, 1) if axis == -1 else (1, 13)
        for temperature in (1.0, 0.0, inf, 0.7, rng.uniform(0.2, 3.0, t_shape)):
            if function.startswith("gumbel") and np.ndim(temperature) == 0 and temperature != 1.0:
                continue
            want = f(x, axis=axis, temperature=temperature)
            xd = chunked(x, axes, chunking)
            got = f(xd, axis=axis, temperature=temperature)
            assert isinstance(got, da.Array) and got.chunks == xd.chunks
            if function in ("hardmax_first", "gumbel_hard"):
                np.testing.assert_array_equal(got.compute(), want, err_msg=f"{function} {axis}")
            else:
                assert_same(got.compute(), want, dtype, f"{function} axis={axis} T={temperature!r:.20}")


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("axis", [-1, 1, (0, 2), None, ()], ids=str)
def test_any_axes_and_masks(chunking, axis):
    rng = np.random.default_rng(2)
    x = special((4, 5, 7))
    axes = sd._args.normalize_axes(axis, 3)
    mask = rng.random(x.shape) < 0.7
    mask[0, 0] = False  # fully masked rows for every axis choice
    xd = chunked(x, axes, chunking)
    md = chunked(mask, axes, chunking)
    for name, f in ELEMENTWISE.items():
        if name.startswith("gumbel"):
            got, want = f(xd, axis=axis), f(x, axis=axis)
        else:
            got, want = f(xd, axis=axis, where=md), f(x, axis=axis, where=mask)
        if name in ("hardmax_first", "gumbel_hard"):
            np.testing.assert_array_equal(got.compute(), want, err_msg=name)
        else:
            assert_same(got.compute(), want, np.float64, name)
    for keepdims in (False, True):
        want = sd.logsumexp(x, axis=axis, where=mask, keepdims=keepdims)
        got = sd.logsumexp(xd, axis=axis, where=md, keepdims=keepdims)
        assert_same(got.compute(), want, np.float64, f"logsumexp keepdims={keepdims}")


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16], ids=lambda d: np.dtype(d).name)
def test_logsumexp_and_backward_match_memory(chunking, dtype):
    rng = np.random.default_rng(3)
    x = special((9, 13), dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    for temperature in (1.0, 0.0, inf, 2.5):
        assert_same(sd.logsumexp(chunked(x, (1,), chunking), temperature=temperature).compute(),
                    sd.logsumexp(x, temperature=temperature), dtype, f"logsumexp T={temperature}")
    ordinary = (rng.standard_normal((9, 13)) * 2).astype(dtype)
    mask = rng.random(x.shape) < 0.8
    t = rng.uniform(0.5, 2.0, (9, 1))
    for forward, backward in ((sd.softmax, sd.softmax_backward), (sd.log_softmax, sd.log_softmax_backward),
                              (sd.sparsemax, sd.sparsemax_backward)):
        y = forward(ordinary, temperature=t, where=mask)
        want = backward(g, y, temperature=t, where=mask)
        got = backward(chunked(g, (1,), chunking), chunked(y, (1,), chunking), temperature=t, where=mask)
        assert_same(got.compute(), want, dtype, backward.__name__, cancelling=True)


def test_dask_temperature_and_mask_operands():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((10, 12))
    xd = da.from_array(x, chunks=(5, 4))
    t = rng.uniform(0.3, 2.0, (10, 1))
    mask = rng.random((10, 12)) < 0.75
    want = sd.softmax(x, temperature=t, where=mask)
    # Aligned, unaligned (rechunked, the input is not) and 1-D masks broadcast along rows.
    for td in (da.from_array(t, chunks=(5, 1)), da.from_array(t, chunks=(3, 1))):
        for md in (da.from_array(mask, chunks=(5, 4)), da.from_array(mask, chunks=(2, 6))):
            got = sd.softmax(xd, temperature=td, where=md)
            assert got.chunks == xd.chunks
            assert_same(got.compute(), want, np.float64)
    column = mask[0]
    assert_same(sd.log_softmax(xd, where=da.from_array(column, chunks=5)).compute(),
                sd.log_softmax(x, where=column), np.float64)
    # A NumPy input with a Dask mask: a Dask result.
    got = sd.softmax(x, where=da.from_array(mask, chunks=(5, 4)))
    assert isinstance(got, da.Array)
    assert_same(got.compute(), sd.softmax(x, where=mask), np.float64)


def test_nothing_is_computed_until_the_user_computes():
    calls = []

    def make(block, block_info=None):
        calls.append(1)
        return np.ones(block.shape)

    x = da.zeros((8, 10), chunks=(4, 3)).map_blocks(make, dtype=float, meta=np.empty((0, 0)))
    t = da.full((8, 1), 2.0, chunks=(4, 1))
    labels = da.zeros(8, dtype=np.int64, chunks=4)
    results = [
        sd.softmax(x, temperature=t), sd.log_softmax(x, axis=0), sd.logsumexp(x, axis=None),
        sd.sparsemax(x), sd.hardmax(x, ties="first"), sd.gumbel_softmax(x, seed=1),
        sd.softmax_backward(x, x), sd.cross_entropy(x, labels, return_grad=True)[1],
        sd.cross_entropy(x, labels, ignore_index=0),
    ]
    assert calls == []
    assert all(isinstance(r, da.Array) for r in results)
    np.testing.assert_allclose(results[0].compute(), np.full((8, 10), 0.1))
    assert calls


def _dependents(collection):
    graph = dict(collection.__dask_graph__())
    dependents = {}
    for key, task in graph.items():
        for dep in dask.core.get_dependencies(graph, key):
            dependents.setdefault(dep, set()).add(key)
    return graph, dependents


@pytest.mark.parametrize("function", ["softmax", "sparsemax", "hardmax_first", "cross_entropy"])
def test_the_input_is_read_at_most_twice_and_never_rechunked(function):
    x = da.random.default_rng(0).standard_normal((12, 40), chunks=(4, 7))
    if function == "cross_entropy":
        result = sd.cross_entropy(x, np.zeros(12, int), return_grad=True)[1]
    else:
        result = ELEMENTWISE[function](x, axis=-1)
    graph, dependents = _dependents(result)
    x_keys = [k for k in graph if isinstance(k, tuple) and k[0] == x.name]
    assert len(x_keys) == 3 * 6
    for key in x_keys:
        assert len(dependents[key]) <= 2, (key, dependents[key])
    assert not any("rechunk" in (k[0] if isinstance(k, tuple) else k) for k in graph)
    assert result.chunks == x.chunks


def test_one_chunk_along_the_axis_is_one_backend_call_per_block():
    x = da.from_array(np.random.default_rng(5).standard_normal((12, 50)), chunks=(4, 50))
    result = sd.softmax(x)
    graph = dict(result.__dask_graph__())
    assert len(graph) == 2 * 3  # the input's blocks and one softmax call each
    assert not any("merge" in k[0] for k in graph)


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_memory(chunking, dtype, reduction):
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((8, 11)) * 2).astype(dtype)
    labels = rng.integers(0, 11, 8)
    labels[::3] = -100
    probs = rng.random((8, 11))
    probs = (probs / probs.sum(1, keepdims=True)).astype(dtype)
    weight = rng.uniform(0.2, 2.0, 11)
    t = rng.uniform(0.5, 2.0, (8, 1))
    xd = chunked(x, (1,), chunking)
    labels_d = da.from_array(labels, chunks=xd.chunks[0])
    for target, target_d, kw in (
        (labels, labels, dict(ignore_index=-100)),
        (labels, labels_d, dict(ignore_index=-100, weight=weight, label_smoothing=0.1)),
        (probs, chunked(probs, (1,), chunking), dict(weight=weight, label_smoothing=0.2)),
    ):
        want_loss, want_grad = sd.cross_entropy(x, target, temperature=t, reduction=reduction,
                                                return_grad=True, **kw)
        loss, grad = sd.cross_entropy(xd, target_d, temperature=t, reduction=reduction, return_grad=True, **kw)
        assert grad.chunks == xd.chunks
        if reduction != "none":
            assert loss.shape == () and loss.compute().dtype == dtype
        assert_same(loss.compute(), want_loss, dtype, "loss")
        if dtype == np.float16:  # in memory: one rounding of the scaled gradient; here two
            np.testing.assert_allclose(grad.compute().astype(float), want_grad.astype(float), atol=2e-3)
        else:
            assert_same(grad.compute(), want_grad, dtype, "grad", cancelling=True)
        np.testing.assert_array_equal(sd.cross_entropy(xd, target_d, temperature=t, reduction=reduction,
                                                       **kw).compute(), loss.compute())


def test_cross_entropy_special_cases():
    x = da.from_array(np.array([[-inf, 1.0, 2.0], [0.5, 0.5, 0.5], [nan, 0.0, 1.0]]), chunks=(2, 1))
    want = sd.cross_entropy(x.compute(), np.array([2, 0, 1]), reduction="none", label_smoothing=0.1)
    got = sd.cross_entropy(x, np.array([2, 0, 1]), reduction="none", label_smoothing=0.1).compute()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert got[0] == inf and np.isfinite(got[1])
    # The all-ignored batch: loss 0, zero gradient (lazily when the target is a Dask array).
    logits = da.from_array(np.random.default_rng(7).standard_normal((4, 6)), chunks=(2, 2))
    for target in (np.full(4, -100), da.full(4, -100, chunks=2)):
        loss, grad = sd.cross_entropy(logits, target, ignore_index=-100, return_grad=True)
        assert loss.compute() == 0 and np.all(grad.compute() == 0)


def test_gumbel_softmax_same_sample_as_memory_for_any_chunking():
    x = np.random.default_rng(8).standard_normal((6, 4, 9))
    for axis in (-1, 1, (0, 2)):
        axes = sd._args.normalize_axes(axis, 3)
        want = sd.gumbel_softmax(x, axis=axis, hard=True, seed=2**40 + 3)
        for chunking in CHUNKINGS:
            got = sd.gumbel_softmax(chunked(x, axes, chunking), axis=axis, hard=True, seed=2**40 + 3)
            np.testing.assert_array_equal(got.compute(), want, err_msg=f"{axis} {chunking}")
    # seed=None draws one seed for the whole array: every block agrees.
    y = sd.gumbel_softmax(da.from_array(x, chunks=(3, 2, 3)), hard=True).compute()
    np.testing.assert_array_equal(y.sum(axis=-1), 1)


def test_sparsemax_candidates_near_uniform_and_peaked_rows():
    rng = np.random.default_rng(9)
    near_uniform = rng.uniform(0, 1e-3, (3, 200))  # the support is the whole row
    peaked = rng.standard_normal((3, 200)) * 10  # a handful in the support
    for x in (near_uniform, peaked):
        for temperature in (1.0, 1e-3, 50.0):
            got = sd.sparsemax(da.from_array(x, chunks=(3, 7)), temperature=temperature).compute()
            assert_same(got, sd.sparsemax(x, temperature=temperature), np.float64)


def test_hardmax_first_across_chunks_is_the_first_in_c_order():
    x = np.zeros((2, 3, 4))
    x[0, 2, 1] = x[0, 1, 3] = x[0, 1, 2] = 5.0
    want = sd.hardmax(x, axis=(1, 2), ties="first")
    got = sd.hardmax(da.from_array(x, chunks=(1, 1, 1)), axis=(1, 2), ties="first").compute()
    np.testing.assert_array_equal(got, want)
    assert got[0, 1, 2] == 1


def test_zero_d_and_empty_inputs():
    assert sd.softmax(da.from_array(np.array(3.0))).compute() == 1.0
    assert sd.logsumexp(da.from_array(np.array([1.0, 2.0]), chunks=1)).compute() == pytest.approx(
        sd.logsumexp(np.array([1.0, 2.0])))
    empty = da.from_array(np.ones((0, 5), np.float32), chunks=(0, 2))
    assert sd.softmax(empty).compute().shape == (0, 5)
    lse = sd.logsumexp(da.from_array(np.ones((3, 0)), chunks=(1, 0)))
    np.testing.assert_array_equal(lse.compute(), [-inf] * 3)
    loss = sd.cross_entropy(da.from_array(np.zeros((0, 3)), chunks=(0, 1)), np.zeros(0, int))
    assert loss.compute() == 0


def test_errors():
    x = da.from_array(np.ones((4, 6)), chunks=(2, 3))
    with pytest.raises(TypeError, match="out= is not supported for Dask arrays"):
        sd.softmax(x, out=np.empty((4, 6)))
    with pytest.raises(TypeError, match="complex128"):
        sd.softmax(da.ones(3, dtype=complex))
    with pytest.raises(np.exceptions.AxisError):
        sd.log_softmax(x, axis=2)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        sd.softmax(x, temperature=-1.0)
    with pytest.raises(ValueError, match="does not broadcast"):
        sd.softmax(x, temperature=da.ones((4, 6)))
    with pytest.raises(TypeError, match="where must be a boolean array"):
        sd.softmax(x, where=da.ones((4, 6)))
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        sd.softmax(x[x[:, 0] > 0])
    with pytest.raises(ValueError, match=r"class index 3 at target\[2\] is out of range"):
        sd.cross_entropy(x[:, :3], np.array([0, 1, 3, 2]))
    # A Dask weight (one value per class) is the one operand computed when the graph is built.
    w = np.linspace(0.5, 2.0, 6)
    assert sd.cross_entropy(x, np.zeros(4, int), weight=da.from_array(w)).compute() == pytest.approx(
        sd.cross_entropy(x.compute(), np.zeros(4, int), weight=w))
    # Values of Dask operands are checked when computed, naming the index in the whole array.
    bad_t = da.from_array(np.array([[1.0], [1.0], [1.0], [-2.0]]), chunks=(2, 1))
    lazy = sd.softmax(x, temperature=bad_t)
    with pytest.raises(ValueError, match=r"temperature must be >= 0.*got -2.0 at index \(3, 0\)"):
        lazy.compute()
    lazy = sd.cross_entropy(x, da.from_array(np.array([0, 1, 2, 9]), chunks=2))
    with pytest.raises(ValueError, match=r"class index 9 at target\[3\] is out of range for 6 classes"):
        lazy.compute()


def test_import_and_numpy_calls_stay_off_dask():
    """With Dask imported, a NumPy call still goes straight to its backend."""
    x = np.arange(6.0).reshape(2, 3)
    assert type(sd.softmax(x)) is np.ndarray
    assert type(sd.cross_entropy(x, np.array([0, 2]))) is np.float64
