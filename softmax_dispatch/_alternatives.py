"""Alternatives to softmax: sparsemax, hardmax and Gumbel-softmax sampling."""

from __future__ import annotations

import numbers
import secrets

import numpy as np

from ._call import begin
from ._dask import accepts_dask


@accepts_dask
def sparsemax(x, axis=-1, temperature=1.0, *, where=None, out=None, backend=None):
    """Sparsemax: the Euclidean projection of ``x / T`` onto the probability simplex.

    ``p = max(x/T - tau, 0)`` with ``tau`` chosen so each row sums to 1
    (Martins & Astudillo, "From softmax to sparsemax", ICML 2016): like softmax it
    gives a distribution, but with exact zeros wherever ``x/T`` is more than the
    threshold below the top entries.

    Parameters
    ----------
    x, axis, temperature, where, out, backend
        As for :func:`softmax`.  ``temperature=0`` gives the hardmax (ties share),
        ``temperature=inf`` the uniform distribution over the entries that are
        neither masked nor ``-inf``.

    Returns
    -------
    ndarray
        Same shape as ``x``: each row non-negative, summing to 1 (up to rounding).

    Notes
    -----
    Special values follow the softmax contract: a NaN makes its row NaN, the k
    ``+inf`` entries of a row share the mass (1/k each), ``-inf`` entries get 0, an
    all ``-inf`` or fully masked row gives zeros.  Each row is sorted once
    (``O(n log n)``), in float64.

    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import sparsemax
    >>> sparsemax(np.array([1.0, 0.8, -1.0]))
    array([0.6, 0.4, 0. ])
    >>> sparsemax(np.array([0.0, np.inf, 2.0]))
    array([0., 1., 0.])
    """
    call = begin(x, axis, backend)
    temperature = call.temperature(temperature)
    mask3 = call.mask(where)
    call.check_out(out)

    def compute(out3):
        call.kernels.sparsemax(call.x3, out3, temperature, mask3)

    return call.write(out, compute, inputs=(call.x3,))


@accepts_dask
def hardmax(x, axis=-1, *, ties="split", where=None, out=None, backend=None):
    """The one-hot of the row maximum.

    Parameters
    ----------
    x, axis, where, out, backend
        As for :func:`softmax`.
    ties : {"split", "first"}, default "split"
        ``"split"``: the k maxima of a row share the mass, ``1/k`` each, which is
        ``softmax(x, temperature=0)``.  ``"first"``: 1 at the first maximum only
        (ONNX ``Hardmax``), first in the input's C order over the reduced axes,
        whatever the memory layout.

    Returns
    -------
    ndarray
        Same shape and dtype as ``softmax(x)`` would give.  A NaN row is NaN; an
        all ``-inf`` or fully masked row is zeros.

    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import hardmax
    >>> hardmax(np.array([1.0, 3.0, 3.0]))
    array([0. , 0.5, 0.5])
    >>> hardmax(np.array([1.0, 3.0, 3.0]), ties="first")
    array([0., 1., 0.])
    """
    if ties not in ("split", "first"):
        raise ValueError(f"ties must be 'split' or 'first', got {ties!r}")
    call = begin(x, axis, backend)
    if ties == "first":
        first, last = call.plan.reduced
        reduced_order = list(call.plan.perm[first:last])
        if reduced_order != sorted(reduced_order):
            # "first" is in the input's C order over the reduced axes; the memory plan
            # flattens them in memory order (Fortran, transposed), so plan logically.
            call = begin(x, axis, backend, plan="logical")
    mask3 = call.mask(where)
    call.check_out(out)

    def compute(out3):
        call.kernels.hardmax(call.x3, out3, ties == "first", mask3)

    return call.write(out, compute, inputs=(call.x3,))


def _check_seed(seed) -> int:
    if seed is None:
        return secrets.randbits(64)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int in [0, 2**64) or None, got {seed!r}")
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return seed


@accepts_dask
def gumbel_softmax(logits, axis=-1, tau=1.0, *, hard=False, seed=None, out=None, backend=None):
    """A relaxed one-hot sample: ``softmax((logits + g) / tau)`` with ``g`` Gumbel noise.

    The argmax of ``logits + g`` is an exact sample from ``softmax(logits)``
    (the Gumbel-max trick); the softmax at temperature ``tau`` relaxes it
    (Jang, Gu & Poole 2017; Maddison, Mnih & Teh 2017).

    Parameters
    ----------
    logits : array_like
        Unnormalised log-probabilities (any dtype of :func:`softmax`).
    axis : int, tuple of ints or None, default -1
        The category axis (or axes, sampled jointly).
    tau : float or array_like, default 1.0
        The relaxation temperature, ``>= 0``, a scalar or one per row;
        ``tau=0`` gives the hard sample.
    hard : bool, default False
        Return the one-hot of the sample (the argmax of ``logits + g``) instead of
        the relaxed sample.  For the straight-through estimator, draw the soft
        sample with the same ``seed`` and back-propagate through it:
        ``y_soft = gumbel_softmax(x, seed=s)``, ``y_hard = gumbel_softmax(x, hard=True,
        seed=s)``; use ``y_hard`` forward and
        ``softmax_backward(grad, y_soft, temperature=tau)`` as the gradient
        with respect to ``logits``.
    seed : int, optional
        In ``[0, 2**64)``.  The noise of each element comes from the counter-based
        generator Philox4x32-10 keyed by ``seed`` and the element's row and position
        (rows and positions in the logical C order of ``logits``, reduced axes
        last), so a seed gives the same sample on every backend, for any thread
        count and memory layout.  ``None`` draws a fresh seed from the OS.
    out, backend
        As for :func:`softmax`.

    Returns
    -------
    ndarray
        Same shape as ``logits``; each row sums to 1.

    Notes
    -----
    The uniforms behind the noise lie strictly inside (0, 1) (52-bit, centred,
    exact in float64), so the noise is always finite (between -3.60 and 36.74): a sample is never NaN
    or infinite unless ``logits`` are (then the softmax special-value rules apply).

    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import gumbel_softmax
    >>> y = gumbel_softmax(np.log([[0.2, 0.3, 0.5]]), seed=42)
    >>> bool(np.isclose(y.sum(), 1.0))
    True
    >>> gumbel_softmax(np.log([[0.2, 0.3, 0.5]]), hard=True, seed=42).sum()
    np.float64(1.0)
    """
    seed = _check_seed(seed)
    call = begin(logits, axis, backend, name="logits", plan="logical")
    temperature = call.temperature(tau, name="tau")
    call.check_out(out)

    def compute(out3):
        call.kernels.gumbel_softmax(call.x3, out3, temperature, bool(hard), seed)

    return call.write(out, compute, inputs=(call.x3,))
