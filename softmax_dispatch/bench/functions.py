"""The functions the bench times: their operands, the bytes they must move, our call,
the reference and how a result is checked against it.

Every function reads its operands from memory once and writes its result once, at
best; that traffic (:attr:`Function.moves`) is what GB/s and the fraction of copy
bandwidth count.  A case's operands are drawn from fixed seeds, so the parent
process (which writes the reference) and each worker (which times) build the same.

References, in float64 (a tuple of arrays):

- ``softmax``, ``masked_softmax``: the conformance suite's extended-precision
  softmax (:func:`softmax_dispatch.conformance._reference.reference`);
- ``gumbel_softmax``: the same softmax of ``logits + noise``, with the documented
  Philox noise added in float64 and rounded once to the input dtype;
- the others: the ``numpy`` backend run on the operands cast to float64 (for
  ``cross_entropy`` the loss and the gradient; for the backward passes, ``sparsemax_backward``
  included, the gradient and the size of the terms that cancel in it).

Error metrics (:attr:`Function.metric`) and tolerances are per function: the
relative error per entry for distributions (the contract's tolerance); for
``logsumexp`` the error over ``max(1, |ref|)``; for the backward passes, whose
entries cancel, the row's largest error over the row's largest cancelling term;
for ``sparsemax`` and the cross-entropy gradient the row's largest error over the
row's largest entry (float32 2e-5, float64 1e-12, the conformance suite's gradient
tolerances).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .cases import FUNCTION_NAMES, Case

#: Seed of every ``gumbel_softmax`` call (ours and the reference's).
GUMBEL_SEED = 20240607
#: Fraction of entries ``masked_softmax`` keeps (``where=`` True).
MASK_KEEP = 0.9
#: Entries of a reference below this are left out of a relative error (as in the contract).
SMALLEST = {"float32": 1e-30, "float64": 1e-290}


@dataclass(frozen=True)
class Function:
    name: str
    kernel: str  # the backend kernel it runs (see softmax_dispatch._registry)
    moves: str  # the memory traffic it must do, in words
    moved: Callable[[Case], int]  # ... in bytes
    operands: Callable[[Case], dict[str, np.ndarray]]
    call: Callable  # (operands, axis, backend, out) -> result
    out: Callable | None  # (operands, case) -> an ``out=`` array; None: no out= form
    reference: Callable[[dict, Case], tuple]  # float64 arrays
    error: Callable  # (got, want: tuple, case) -> float
    metric: str
    tolerance: dict[str, float]  # dtype -> largest error accepted
    peer_error: Callable | None = None  # when a peer's result cannot match ours (random draws)
    peer_metric: str | None = None


# -- operands ---------------------------------------------------------------------


def _logits(case: Case) -> dict:
    return {"x": case.make_input()}


def _row_shape(case: Case) -> tuple[int, ...]:
    return tuple(s for i, s in enumerate(case.shape) if i != case.axis % len(case.shape))


def _backward_operands(log_output: bool):
    def make(case: Case) -> dict:
        x = case.make_input().astype(np.float64)
        s = x - x.max(axis=case.axis, keepdims=True)
        lse = np.log(np.exp(s).sum(axis=case.axis, keepdims=True))
        y = s - lse if log_output else np.exp(s - lse)
        g = np.random.default_rng(1).standard_normal(case.shape)
        return {"g": g.astype(case.dtype), "y": y.astype(case.dtype)}

    return make


def _sparsemax_backward_operands(case: Case) -> dict:
    """``g`` standard normal; ``y`` the float64 sparsemax of the case's logits, rounded
    once to the dtype (its zeros, which fix the support, stay exact)."""
    from softmax_dispatch import sparsemax

    y = sparsemax(case.make_input().astype(np.float64), case.axis, backend="numpy")
    g = np.random.default_rng(4).standard_normal(case.shape)
    return {"g": g.astype(case.dtype), "y": y.astype(case.dtype)}


def _cross_entropy_operands(case: Case) -> dict:
    n = case.shape[case.axis]
    target = np.random.default_rng(2).integers(0, n, size=_row_shape(case), dtype=np.int64)
    return {"x": case.make_input(), "target": target}


def _masked_operands(case: Case) -> dict:
    mask = np.random.default_rng(3).random(case.shape, dtype=np.float32) < MASK_KEEP
    return {"x": case.make_input(), "mask": mask}


# -- bytes moved --------------------------------------------------------------------


def _elements(case: Case) -> int:
    return math.prod(case.shape)


def _itemsize(case: Case) -> int:
    return np.dtype(case.dtype).itemsize


# -- references ---------------------------------------------------------------------


def _wide(operands: dict) -> dict:
    return {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in operands.items()}


def _softmax_reference(x, axis):
    from softmax_dispatch.conformance._reference import reference

    return reference(x, axis).astype(np.float64)


def _gumbel_reference(operands: dict, case: Case) -> tuple:
    from softmax_dispatch.backends._philox import gumbel_noise

    x = operands["x"]
    n = x.shape[case.axis]
    rows = np.moveaxis(x, case.axis, -1).reshape(-1, n)  # the logical plan: reduced axis last
    noise = gumbel_noise(
        GUMBEL_SEED, np.arange(rows.shape[0], dtype=np.uint64)[:, None], np.arange(n, dtype=np.uint64)[None, :]
    )
    perturbed = (rows.astype(np.float64) + noise).astype(x.dtype)
    want = _softmax_reference(perturbed, -1)
    return (np.moveaxis(want.reshape(np.moveaxis(x, case.axis, -1).shape), -1, case.axis),)


def _backward_reference(call, log_output: bool):
    """The gradient (``numpy`` backend, float64) and, per entry, the size of the terms
    that cancel in it: ``y (|g| + |sum(g y)|)`` for softmax, ``|g| + exp(y) |sum(g)|``
    for log_softmax.  Errors are measured against the row's largest such term."""
    numpy_backend = _numpy_backend(call)

    def reference(operands: dict, case: Case) -> tuple:
        (dx,) = numpy_backend(operands, case)
        g, y = operands["g"].astype(np.float64), operands["y"].astype(np.float64)
        if log_output:
            scale = np.abs(g) + np.exp(y) * np.abs(np.sum(g, axis=case.axis, keepdims=True))
        else:
            scale = np.abs(y) * (np.abs(g) + np.abs(np.sum(g * y, axis=case.axis, keepdims=True)))
        return dx, scale

    return reference


def _sparsemax_backward_reference(operands: dict, case: Case) -> tuple:
    """The gradient (``numpy`` backend, float64) and the terms that cancel in it:
    ``|g| + |mean of g over the support|`` on the support, 0 off it."""
    (dx,) = _numpy_backend(_sparsemax_backward_call)(operands, case)
    g, support = operands["g"].astype(np.float64), operands["y"] > 0
    size = np.maximum(np.sum(support, axis=case.axis, keepdims=True), 1)
    mean = np.sum(np.where(support, g, 0), axis=case.axis, keepdims=True) / size
    return dx, np.where(support, np.abs(g) + np.abs(mean), 0)


def _numpy_backend(call):
    """The reference of a function: our ``numpy`` backend on float64 operands."""

    def reference(operands: dict, case: Case) -> tuple:
        got = call(_wide(operands), case.axis, "numpy", None)
        return tuple(np.asarray(a, dtype=np.float64) for a in (got if isinstance(got, tuple) else (got,)))

    return reference


# -- errors -------------------------------------------------------------------------


def _finite_or_inf(got) -> np.ndarray | None:
    got = np.asarray(got, dtype=np.float64)
    return None if np.isnan(got).any() else got


def relative_error(got, want: np.ndarray, dtype: str) -> float:
    """``max |got - want| / want`` over the entries ``>= SMALLEST``; infinite if an
    exact zero of the reference (a masked entry) is not zero, or anything is NaN."""
    got = _finite_or_inf(got)
    if got is None:
        return math.inf
    zeros = want == 0
    if np.any(got[zeros] != 0):
        return math.inf
    keep = want >= SMALLEST[dtype]
    if not keep.any():
        return 0.0
    return float(np.max(np.abs(got[keep] - want[keep]) / want[keep]))


def _relative(got, want, case):
    return relative_error(got, want[0], case.dtype)


def _log_space(got, want, case):
    """``max |got - want| / max(1, |want|)``: absolute near 0, relative for large values."""
    got = _finite_or_inf(got)
    if got is None:
        return math.inf
    return float(np.max(np.abs(got - want[0]) / np.maximum(1.0, np.abs(want[0]))))


def row_error(got, want: np.ndarray, axis: int, scale: np.ndarray | None = None) -> float:
    """The largest ``max_row |got - want| / max_row |want|`` (or ``/ max_row scale``);
    a row of zeros must be exact."""
    got = _finite_or_inf(got)
    if got is None:
        return math.inf
    diff = np.max(np.abs(got - want), axis=axis)
    scale = np.max(np.abs(want if scale is None else scale), axis=axis)
    if np.any(diff[scale == 0] != 0):
        return math.inf
    keep = scale > 0
    return float(np.max(diff[keep] / scale[keep])) if keep.any() else 0.0


def _row(got, want, case):
    return row_error(got, want[0], case.axis)


def _row_terms(got, want, case):
    return row_error(got, want[0], case.axis, scale=want[1])


def _cross_entropy_error(got, want, case):
    loss, grad = got
    loss_error = abs(float(loss) - float(want[0])) / abs(float(want[0]))
    return max(loss_error, row_error(grad, want[1], case.axis))


def _row_sums(got, want, case):
    """For random samples a peer draws with its own generator: how far each row's sum
    is from 1 (infinite if an entry is negative or NaN)."""
    got = _finite_or_inf(got)
    if got is None or (got < 0).any():
        return math.inf
    return float(np.max(np.abs(got.sum(axis=case.axis) - 1)))


# -- our calls --------------------------------------------------------------------


def _sd():
    import softmax_dispatch

    return softmax_dispatch


def _same_as(name):
    return lambda o, case: np.empty_like(o[name])


def _reduced_out(o, case):
    return np.empty(_row_shape(case), dtype=o["x"].dtype)


CONTRACT = {"float32": 5e-6, "float64": 1e-13}  # the softmax contract (relative)
TERMS = "row max |err| / row max |terms that cancel|"
ROWWISE = {"float32": 2e-5, "float64": 1e-12}  # gradients, sparsemax: over the row's largest entry (the conformance tolerances)

_softmax_call = lambda o, axis, b, out: _sd().softmax(o["x"], axis, backend=b, out=out)  # noqa: E731
_logsumexp_call = lambda o, axis, b, out: _sd().logsumexp(o["x"], axis, backend=b, out=out)  # noqa: E731
_softmax_backward_call = lambda o, axis, b, out: _sd().softmax_backward(o["g"], o["y"], axis, backend=b, out=out)  # noqa: E731
_log_softmax_backward_call = lambda o, axis, b, out: _sd().log_softmax_backward(o["g"], o["y"], axis, backend=b, out=out)  # noqa: E731
_cross_entropy_call = lambda o, axis, b, out: _sd().cross_entropy(o["x"], o["target"], axis, return_grad=True, backend=b)  # noqa: E731
_masked_call = lambda o, axis, b, out: _sd().softmax(o["x"], axis, where=o["mask"], backend=b, out=out)  # noqa: E731
_sparsemax_call = lambda o, axis, b, out: _sd().sparsemax(o["x"], axis, backend=b, out=out)  # noqa: E731
_sparsemax_backward_call = lambda o, axis, b, out: _sd().sparsemax_backward(o["g"], o["y"], axis, backend=b, out=out)  # noqa: E731
_hardmax_call = lambda o, axis, b, out: _sd().hardmax(o["x"], axis, backend=b, out=out)  # noqa: E731
_gumbel_call = lambda o, axis, b, out: _sd().gumbel_softmax(o["x"], axis, seed=GUMBEL_SEED, backend=b, out=out)  # noqa: E731

FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function(
            "softmax", "softmax", "read x, write y",
            lambda c: 2 * c.nbytes, _logits, _softmax_call, _same_as("x"),
            lambda o, c: (_softmax_reference(o["x"], c.axis),),
            _relative, "relative", CONTRACT,
        ),
        Function(
            "logsumexp", "logsumexp", "read x, write one value per row",
            lambda c: c.nbytes + c.rows * _itemsize(c), _logits, _logsumexp_call, _reduced_out,
            _numpy_backend(_logsumexp_call),
            _log_space, "|err| / max(1, |ref|)", CONTRACT,
        ),
        Function(
            "softmax_backward", "softmax_backward", "read g and y, write dx",
            lambda c: 3 * c.nbytes, _backward_operands(False), _softmax_backward_call, _same_as("g"),
            _backward_reference(_softmax_backward_call, False),
            _row_terms, TERMS, ROWWISE,
        ),
        Function(
            "log_softmax_backward", "softmax_backward", "read g and y, write dx",
            lambda c: 3 * c.nbytes, _backward_operands(True), _log_softmax_backward_call, _same_as("g"),
            _backward_reference(_log_softmax_backward_call, True),
            _row_terms, TERMS, ROWWISE,
        ),
        Function(
            "cross_entropy", "cross_entropy",
            "read logits and int64 targets, write dlogits (return_grad=True, mean)",
            lambda c: 2 * c.nbytes + 8 * c.rows, _cross_entropy_operands, _cross_entropy_call, None,
            _numpy_backend(_cross_entropy_call),
            _cross_entropy_error, "max(loss relative, dlogits row max |err| / row max |ref|)", ROWWISE,
        ),
        Function(
            "masked_softmax", "softmax", "read x and a bool mask, write y (softmax where=)",
            lambda c: 2 * c.nbytes + _elements(c), _masked_operands, _masked_call, _same_as("x"),
            lambda o, c: (_softmax_reference(np.where(o["mask"], o["x"], -np.inf), c.axis),),
            _relative, "relative", CONTRACT,
        ),
        Function(
            "sparsemax", "sparsemax", "read x, write y",
            lambda c: 2 * c.nbytes, _logits, _sparsemax_call, _same_as("x"),
            _numpy_backend(_sparsemax_call),
            _row, "row max |err| / row max |ref|", ROWWISE,
        ),
        Function(
            "sparsemax_backward", "sparsemax_backward", "read g and y, write dx",
            lambda c: 3 * c.nbytes, _sparsemax_backward_operands, _sparsemax_backward_call, _same_as("g"),
            _sparsemax_backward_reference,
            _row_terms, TERMS, ROWWISE,
        ),
        Function(
            "hardmax", "hardmax", "read x, write y",
            lambda c: 2 * c.nbytes, _logits, _hardmax_call, _same_as("x"),
            _numpy_backend(_hardmax_call),
            _relative, "relative", {"float32": 6e-8, "float64": 1.2e-16},
        ),
        Function(
            "gumbel_softmax", "gumbel_softmax", "read x, write y (the noise is computed, not read)",
            lambda c: 2 * c.nbytes, _logits, _gumbel_call, _same_as("x"),
            _gumbel_reference,
            _relative, "relative", {"float32": 2e-5, "float64": 1e-13},
            peer_error=_row_sums, peer_metric="max |row sum - 1| (own random draws)",
        ),
    )
}

assert tuple(FUNCTIONS) == FUNCTION_NAMES


def missing_kernel(backend: str, function: Function) -> str | None:
    """Why ``backend`` cannot run ``function`` (its module lacks the kernel), or None."""
    from softmax_dispatch import _registry

    module = _registry.load(backend)
    if not hasattr(module, function.kernel):
        return f"backend {backend!r} has no {function.kernel!r} kernel yet"
    return None
