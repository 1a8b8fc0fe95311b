"""cross_entropy: equal to PyTorch's ``cross_entropy(logits / T, ...)`` (class axis moved
to dim 1) for class-index and probability targets with every option, its gradient
equal to PyTorch's autograd, the documented departures (all-ignored batch: 0) and
the argument errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import softmax_dispatch as sd

from ._checks import seed_of
from ._reference import cross_entropy_reference

inf, nan = np.inf, np.nan

# (logits shape, class axis): rows, PyTorch's (N, C, d) layout, classes last, classes first.
LAYOUTS = [((6, 5), -1), ((3, 5, 4), 1), ((3, 4, 5), -1), ((5, 6), 0)]
TOLERANCE = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-5}


def make_case(rng, shape, axis, kind, dtype, ignore_index=None):
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    n = shape[axis]
    row_shape = tuple(s for i, s in enumerate(shape) if i != axis % len(shape))
    if kind == "index":
        target = rng.integers(0, n, row_shape)
        if ignore_index is not None:
            flat = target.reshape(-1)
            flat[::3] = ignore_index  # a third of the rows are ignored
    else:
        target = rng.random(shape)
        target /= target.sum(axis=axis, keepdims=True)
        target = target.astype(dtype)
    return x, target


def options():
    """Every combination of the options (ignore_index only meaningful for class indices)."""
    for weight, ignore_index, smoothing, temperature in itertools.product(
        (False, True), (None, -100, 1), (0.0, 0.2), ("1", "0.5", "per-row")
    ):
        yield weight, ignore_index, smoothing, temperature


def _temperature(rng, shape, axis, name):
    if name == "per-row":
        t_shape = list(shape)
        t_shape[axis] = 1
        return rng.uniform(0.3, 3.0, tuple(t_shape))
    return float(name)


def torch_cross_entropy(torch, x, target, axis, temperature, weight, ignore_index, smoothing, reduction):
    """PyTorch's loss and the gradient of the returned loss (summed for ``"none"``), in float64."""
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    tt = torch.tensor(temperature) if np.ndim(temperature) else temperature
    z = torch.movedim(xt / tt, axis, 1) if x.ndim > 1 else xt / tt
    if target.dtype.kind == "f":
        tgt = torch.tensor(target.astype(np.float64))
        tgt = torch.movedim(tgt, axis, 1) if x.ndim > 1 else tgt
    else:
        tgt = torch.tensor(target.astype(np.int64))
    loss = torch.nn.functional.cross_entropy(
        z, tgt, weight=None if weight is None else torch.tensor(weight),
        ignore_index=-100 if ignore_index is None else ignore_index,
        label_smoothing=smoothing, reduction=reduction,
    )
    (loss.sum() if reduction == "none" else loss).backward()
    return loss.detach().numpy(), xt.grad.numpy()


def assert_loss_and_grad(got_loss, got_grad, want_loss, want_grad, dtype, what):
    rtol = TOLERANCE[np.dtype(dtype)]
    got_loss = np.asarray(got_loss)
    assert got_loss.dtype == dtype, what
    assert got_grad.dtype == dtype and got_grad.shape == want_grad.shape, what
    np.testing.assert_allclose(got_loss, want_loss, rtol=rtol, atol=rtol * float(np.max(np.abs(want_loss), initial=1)),
                               err_msg=what)
    np.testing.assert_allclose(got_grad, want_grad, rtol=rtol, atol=rtol * float(np.max(np.abs(want_grad), initial=0)),
                               err_msg=what)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", ["index", "probs"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_torch(backend, torch, dtype, kind, reduction):
    rng = np.random.default_rng(seed_of(np.dtype(dtype).name, kind, reduction))
    for shape, axis in LAYOUTS:
        n = shape[axis]
        for use_weight, ignore_index, smoothing, t_name in options():
            if kind == "probs" and ignore_index is not None:
                continue
            x, target = make_case(rng, shape, axis, kind, dtype, ignore_index)
            weight = rng.uniform(0.2, 2.0, n) if use_weight else None
            temperature = _temperature(rng, shape, axis, t_name)
            kwargs = dict(weight=weight, ignore_index=ignore_index, label_smoothing=smoothing, reduction=reduction)
            want_loss, want_grad = torch_cross_entropy(torch, x, target, axis, temperature, **{
                "weight": weight, "ignore_index": ignore_index, "smoothing": smoothing, "reduction": reduction})
            got_loss, got_grad = backend.cross_entropy(x, target, axis, temperature, return_grad=True, **kwargs)
            what = f"{shape} axis={axis} {kwargs} T={t_name}"
            if reduction == "mean" and np.isnan(want_loss) and kind == "index":
                # Every target ignored (it happens by chance): PyTorch's 0/0, our documented 0.
                assert np.all(target == ignore_index), what
                assert got_loss == 0 and np.all(got_grad == 0), what
                continue
            assert_loss_and_grad(got_loss, got_grad, want_loss, want_grad, dtype, what)
            loss_only = backend.cross_entropy(x, target, axis, temperature, **kwargs)
            np.testing.assert_array_equal(loss_only, got_loss, err_msg=what)


@pytest.mark.parametrize("kind", ["index", "probs"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_reference(backend, kind, reduction):
    """The same against the suite's own extended-precision formula (runs without torch)."""
    rng = np.random.default_rng(7)
    for shape, axis in LAYOUTS[:3]:
        for use_weight, ignore_index, smoothing, t_name in options():
            if kind == "probs" and ignore_index is not None:
                continue
            x, target = make_case(rng, shape, axis, kind, np.float64, ignore_index)
            weight = rng.uniform(0.2, 2.0, shape[axis]) if use_weight else None
            temperature = _temperature(rng, shape, axis, t_name)
            kwargs = dict(weight=weight, ignore_index=ignore_index, label_smoothing=smoothing, reduction=reduction)
            want_loss, want_grad = cross_entropy_reference(x, target, axis, temperature, **kwargs)
            # The weights and per-row temperatures on the device (test_matches_torch gives them
            # from the host): the front end reads them back.
            device_kwargs = dict(kwargs, weight=None if weight is None else backend.put_operand(weight))
            device_t = backend.put_operand(temperature) if t_name == "per-row" else temperature
            got_loss, got_grad = backend.cross_entropy(x, target, axis, device_t, return_grad=True, **device_kwargs)
            assert_loss_and_grad(got_loss, got_grad, want_loss.astype(float), want_grad.astype(float),
                                 np.float64, f"{shape} {axis} {kwargs} {t_name}")


def test_spelled_out(backend):
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    loss, grad = backend.cross_entropy(logits, np.array([0, 2]), return_grad=True)
    want = (-(2 - np.log(np.exp(2) + 2)) + np.log(3)) / 2
    assert loss == pytest.approx(want, rel=1e-15)
    p0 = np.exp(2) / (np.exp(2) + 2)
    np.testing.assert_allclose(grad, [[(p0 - 1) / 2, (1 - p0) / 4, (1 - p0) / 4], [1 / 6, 1 / 6, -1 / 3]],
                               rtol=1e-14)
    # Probability targets: the same as their one-hot.
    np.testing.assert_allclose(backend.cross_entropy(logits, np.eye(3)[[0, 2]]), want, rtol=1e-14)
    # reduction="none": one loss per row, in the target's row shape.
    rows = backend.cross_entropy(logits.reshape(2, 1, 3), np.array([[0], [2]]), reduction="none")
    assert rows.shape == (2, 1)
    np.testing.assert_allclose(rows.sum() / 2, want, rtol=1e-14)
    # 1-D logits and a 0-d target (on the device too): one row.
    assert backend.cross_entropy(np.array([0.0, 0.0]), np.array(1)) == pytest.approx(np.log(2), rel=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
def test_all_ignored_batch_gives_zero(backend, reduction, dtype):
    logits = np.random.default_rng(0).standard_normal((4, 3)).astype(dtype)
    target = np.full(4, -100)
    loss, grad = backend.cross_entropy(logits, target, ignore_index=-100, reduction=reduction,
                                       label_smoothing=0.1, return_grad=True)
    assert np.all(np.asarray(loss) == 0) and np.asarray(loss).dtype == dtype
    assert grad.dtype == dtype and np.all(grad == 0)
    if reduction == "none":
        assert np.shape(loss) == (4,)
    # A zero total weight of the counted targets: the same (PyTorch gives NaN).
    for weight in (np.array([0.0, 1.0, 1.0]), backend.put_operand(np.array([0.0, 1.0, 1.0]))):
        loss, grad = backend.cross_entropy(logits, np.zeros(4, int), weight=weight, reduction="mean", return_grad=True)
        assert loss == 0 and np.all(grad == 0)
    # Ignored rows within a batch contribute exactly nothing.
    target = np.array([0, -100, 2, -100])
    loss, grad = backend.cross_entropy(logits, target, ignore_index=-100, reduction="none", return_grad=True)
    assert loss[1] == 0 and loss[3] == 0 and np.all(grad[[1, 3]] == 0)
    assert np.all(loss[[0, 2]] > 0)


def test_empty_batch(backend):
    loss, grad = backend.cross_entropy(np.zeros((0, 3)), np.zeros(0, int), return_grad=True)
    assert loss == 0 and grad.shape == (0, 3)
    losses = backend.cross_entropy(np.zeros((0, 3)), np.zeros(0, int), reduction="none")
    assert losses.shape == (0,)


def test_special_logits(backend):
    """A -inf logit off the target: probability 0 there, finite loss, gradient 0 there.
    With smoothing the -inf class has target mass: the loss is +inf (PyTorch too)."""
    logits = np.array([[-inf, 1.0, 2.0], [0.5, 0.5, 0.5]])
    loss, grad = backend.cross_entropy(logits, np.array([2, 0]), reduction="none", return_grad=True)
    assert np.isfinite(loss).all() and grad[0, 0] == 0 and np.isfinite(grad).all()
    smoothed = backend.cross_entropy(logits, np.array([2, 0]), reduction="none", label_smoothing=0.1)
    assert smoothed[0] == inf and np.isfinite(smoothed[1])
    assert np.isnan(backend.cross_entropy(np.array([[nan, 1.0]]), np.array([1]), reduction="none")).all()


def test_large_logits_do_not_overflow(backend):
    logits = np.array([[1000.0, 0.0, -1000.0]], np.float32)
    loss, grad = backend.cross_entropy(logits, np.array([1]), return_grad=True)
    assert loss == pytest.approx(1000.0, rel=1e-6)
    np.testing.assert_allclose(grad, [[1.0, -1.0, 0.0]], atol=1e-6)


def test_integer_and_float16_logits(backend):
    got = backend.cross_entropy(np.array([[1, 2, 3]]), np.array([2]))
    assert got.dtype == np.float64
    assert got == pytest.approx(np.log(np.exp([1, 2, 3]).sum()) - 3, rel=1e-14)
    x16 = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], np.float16)
    loss, grad = backend.cross_entropy(x16, np.array([0, 1]), return_grad=True)
    assert loss.dtype == np.float16 and grad.dtype == np.float16
    want_loss, want_grad = cross_entropy_reference(x16, np.array([0, 1]))
    assert abs(float(loss) - float(want_loss)) <= float(np.spacing(np.float16(want_loss)))
    np.testing.assert_allclose(grad.astype(float), want_grad.astype(float), atol=2e-3)


def test_layouts(backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 7))
    target = rng.integers(0, 7, 5)
    want = backend.cross_entropy(x, target, return_grad=True)
    for view in (np.asfortranarray(x), np.ascontiguousarray(x[::-1])[::-1]):
        loss, grad = backend.cross_entropy(view, target, return_grad=True)
        assert loss == pytest.approx(want[0], rel=1e-14)
        np.testing.assert_allclose(grad, want[1], rtol=1e-13, atol=1e-17)
    loss, grad = backend.cross_entropy(np.ascontiguousarray(x.T), target, axis=0, return_grad=True)
    assert loss == pytest.approx(want[0], rel=1e-14)
    np.testing.assert_allclose(grad.T, want[1], rtol=1e-13, atol=1e-17)
    # Targets of any layout and integer dtype.
    assert backend.cross_entropy(x, target.astype(np.uint8)) == pytest.approx(want[0], rel=1e-15)
    assert backend.cross_entropy(x, target.astype(np.int32)) == pytest.approx(want[0], rel=1e-15)


# -- errors ----------------------------------------------------------------------


def test_out_of_range_labels(backend):
    x = backend.put(np.zeros((4, 3)))
    # Labels on the device (read back to name the bad one) and, a few, from the host.
    with pytest.raises(ValueError, match=r"class index 3 at target\[2\] is out of range for 3 classes"):
        sd.cross_entropy(x, backend.put(np.array([0, 1, 3, 2])), backend=backend.name)
    with pytest.raises(ValueError, match=r"class index 3 at target\[2\] is out of range for 3 classes"):
        sd.cross_entropy(x, np.array([0, 1, 3, 2]), backend=backend.name)
    with pytest.raises(ValueError, match=r"class index -1 at target\[0\].*no ignore_index"):
        sd.cross_entropy(x, backend.put(np.array([-1, 1, 0, 2])), backend=backend.name)
    with pytest.raises(ValueError, match="class index -100"):
        sd.cross_entropy(x, np.array([-100, 1, 0, 2]), ignore_index=-1, backend=backend.name)
    with pytest.raises(ValueError, match="class index 7"):
        sd.cross_entropy(x, backend.put(np.array([0, 1, 0, 7], np.uint64)), backend=backend.name)
    with pytest.raises(ValueError, match=r"class index 5 at target\[1, 0\]"):
        sd.cross_entropy(backend.put(np.zeros((2, 3, 2))), backend.put(np.array([[0, 1], [5, 0]])), axis=1,
                         backend=backend.name)
    # A label equal to ignore_index is fine even when it is a valid class.
    assert backend.get(sd.cross_entropy(x, backend.put(np.array([1, 1, 0, 2])), ignore_index=1,
                                        backend=backend.name)) == pytest.approx(np.log(3))


def test_argument_errors(backend):
    x = backend.put(np.zeros((4, 3)))
    labels = backend.put(np.array([0, 1, 2, 0]))
    probs = np.full((4, 3), 1 / 3)
    name = backend.name
    with pytest.raises(ValueError, match="reduction must be one of"):
        sd.cross_entropy(x, labels, reduction="avg", backend=name)
    with pytest.raises(ValueError, match="reduction must be one of"):
        sd.cross_entropy(x, labels, reduction=None, backend=name)
    for bad in (-0.1, 1.5, nan):
        with pytest.raises(ValueError, match="label_smoothing must be in"):
            sd.cross_entropy(x, labels, label_smoothing=bad, backend=name)
    for bad in (True, "0.1", None):
        with pytest.raises(TypeError, match="label_smoothing"):
            sd.cross_entropy(x, labels, label_smoothing=bad, backend=name)
    with pytest.raises(ValueError, match=r"weight has shape \(4,\), expected \(3,\)"):
        sd.cross_entropy(x, labels, weight=backend.put_operand(np.ones(4)), backend=name)
    with pytest.raises(ValueError, match="weight has shape"):
        sd.cross_entropy(x, labels, weight=np.ones((1, 3)), backend=name)
    with pytest.raises(ValueError, match="weight must be finite"):
        sd.cross_entropy(x, labels, weight=backend.put_operand(np.array([1.0, inf, 1.0])), backend=name)
    with pytest.raises(TypeError, match="weight must be real"):
        sd.cross_entropy(x, labels, weight=backend.put_operand(np.ones(3, complex)), backend=name)
    with pytest.raises(ValueError, match="ignore_index applies to class-index targets"):
        sd.cross_entropy(x, backend.put(probs), ignore_index=-100, backend=name)
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        sd.cross_entropy(x, labels, ignore_index=1.5, backend=name)
    with pytest.raises(ValueError, match="fits neither form"):
        sd.cross_entropy(x, backend.put(np.array([0, 1, 2])), backend=name)  # wrong row count
    with pytest.raises(ValueError, match="fits neither form"):
        sd.cross_entropy(x, backend.put(probs.astype(int)), backend=name)  # integers of the logits' shape
    with pytest.raises(ValueError, match="fits neither form"):
        sd.cross_entropy(x, backend.put(np.full((4, 2), 0.5)), backend=name)
    with pytest.raises(TypeError, match="target must hold integers or floats"):
        sd.cross_entropy(x, backend.put(np.ones(4, bool)), backend=name)
    with pytest.raises(TypeError, match="target must hold integers or floats"):
        sd.cross_entropy(x, backend.put(np.ones((4, 3), complex)), backend=name)
    for bad in (0, 0.0, -1.0, inf, nan):
        with pytest.raises(ValueError, match="temperature must be finite and > 0"):
            sd.cross_entropy(x, labels, temperature=bad, backend=name)
    with pytest.raises(ValueError, match=r"at index \(2, 0\)"):
        sd.cross_entropy(x, labels, temperature=backend.put_operand(np.array([[1.0], [1.0], [0.0], [1.0]])), backend=name)
    with pytest.raises(ValueError, match="does not broadcast"):
        sd.cross_entropy(x, labels, temperature=np.ones((4, 3)), backend=name)
    with pytest.raises(TypeError, match="one class axis"):
        sd.cross_entropy(x, labels, axis=(0, 1), backend=name)
    with pytest.raises(TypeError, match="one class axis"):
        sd.cross_entropy(x, labels, axis=None, backend=name)
    with pytest.raises(ValueError, match="at least one dimension"):
        sd.cross_entropy(backend.put(np.array(1.0)), backend.put(np.array(0)), backend=name)
    if not backend.on_device:  # a NumPy scalar: host only
        with pytest.raises(ValueError, match="at least one dimension"):
            sd.cross_entropy(np.float64(1.0), np.array(0), backend=name)
    with pytest.raises(TypeError, match="complex"):
        sd.cross_entropy(backend.put(np.zeros((4, 3), complex)), labels, backend=name)
    from numpy.exceptions import AxisError

    with pytest.raises(AxisError):
        sd.cross_entropy(x, labels, axis=2, backend=name)
