"""The public functions: argument work once, then one backend call.

Every function follows the same path: recognise the array kind, choose the backend
(explicit ``backend=`` > :func:`use_backend` > the kind's default), validate
dtype/axis/temperature/``out=``, map the reduction onto ``(outer, n, inner)``
(:mod:`._layout`) and hand the 3-D views to the backend's kernel.
"""

from __future__ import annotations

import numpy as np

from . import _arrays, _layout, _registry
from ._args import check_out, normalize_axes, normalize_temperature, result_dtype

_CONTRACT = """
    Numerical contract (the same on every backend):

    - The maximum of each row is subtracted before exponentiating (no overflow);
      ``log_softmax`` is ``(x - m)/T - log(sum(exp((x - m)/T)))``, never
      ``log(softmax(x))``.
    - A NaN anywhere in a row makes the whole row NaN.
    - ``+inf`` entries are taken at their limit: the k infinite entries share the
      mass (``1/k``; log: ``-log(k)``), every other entry gets 0 (log: ``-inf``).
    - A row that is entirely ``-inf`` gives zeros (log: ``-inf``), never NaN.
    - float16 input is accumulated in float32; bool and integer input give float64.
"""


# Shared by every call with T = 1.  Left writeable: Numba compiles a separate
# specialisation for read-only arrays, and no kernel writes its temperature.
_UNIT_TEMPERATURE = np.ones((1, 1))


def _as_numpy(x):
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            "masked arrays are not supported: their mask would be ignored; "
            "pass the data and handle the mask explicitly"
        )
    return np.asarray(x)


def _normalize(x, axis, temperature, out, backend, log_output: bool):
    kind = _arrays.array_kind(x)
    _, kernels = _registry.resolve(backend, kind)
    if type(x) is np.ndarray:
        xa, scalar_input = x, False
    else:
        scalar_input = np.ndim(x) == 0 and not isinstance(x, np.ndarray)
        xa = _as_numpy(x)
    dtype = result_dtype(xa.dtype)
    axes = normalize_axes(axis, xa.ndim)
    reduced_shape = tuple(1 if i in axes else s for i, s in enumerate(xa.shape))
    temperature = normalize_temperature(temperature, reduced_shape)
    if out is not None:
        check_out(out, xa.shape, dtype, np.ndarray)
    if xa.dtype != dtype:
        xa = xa.astype(dtype)

    if xa.size == 0:
        result = out if out is not None else np.empty(xa.shape, dtype=dtype)
        return result

    plan = _layout.make_plan(xa.shape, xa.strides, axes)
    x3 = _layout.as_3d(xa, plan)
    if isinstance(temperature, float):
        temperature = _UNIT_TEMPERATURE if temperature == 1.0 else np.full((1, 1), temperature)
    else:
        temperature = _layout.per_row(temperature, plan)

    if out is None:
        result = _layout.empty_result(np, plan, dtype)
        out3 = _layout.as_3d_view(result, plan)
        kernels.softmax(x3, out3, temperature, log_output)
    else:
        result = out
        out3 = _layout.as_3d_view(out, plan)
        # Write straight into out= unless its layout cannot be viewed as 3-D, or it
        # overlaps the input other than as the very same elements (in place).
        aliased = np.may_share_memory(out3, x3) if out3 is not None else False
        same_view = (
            aliased
            and out3.__array_interface__["data"][0] == x3.__array_interface__["data"][0]
            and out3.strides == x3.strides
        )
        if out3 is not None and (not aliased or same_view):
            kernels.softmax(x3, out3, temperature, log_output)
        else:
            scratch = _layout.empty_result(np, plan, dtype)
            kernels.softmax(x3, _layout.as_3d_view(scratch, plan), temperature, log_output)
            np.copyto(out, scratch)

    if scalar_input and out is None:
        return result[()]
    return result


def softmax(x, axis=-1, temperature=1.0, *, out=None, backend=None):
    """Softmax of ``x`` along ``axis`` at ``temperature``.

    Computes ``exp(x/T - logsumexp(x/T))`` along the reduced axes, so each slice
    is non-negative and sums to 1.

    Parameters
    ----------
    x : array_like
        Logits: a NumPy array (any dtype of float16/32/64, bool or integer; any
        memory layout), a list or a scalar.
    axis : int, tuple of ints or None, default -1
        Axis or axes normalised jointly; ``None`` means all elements.
    temperature : float or array_like, default 1.0
        Finite and > 0.  An array gives one temperature per slice: it must
        broadcast to ``x.shape`` with the reduced axes of size 1.
    out : ndarray, optional
        Where to write the result: exactly the result's shape, dtype and array
        type.  May be ``x`` itself (in place).
    backend : str, optional
        Force a backend (see :func:`available_backends`); an unavailable one raises
        :class:`BackendUnavailableError` with the reason.

    Returns
    -------
    ndarray
        Same shape as ``x``; dtype of ``x`` for floats, float64 for bool/integers.
    {contract}
    References
    ----------
    P. Blanchard, D. J. Higham, N. J. Higham, "Accurately computing the log-sum-exp
    and softmax functions", IMA J. Numer. Anal. 41 (2021).

    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import softmax
    >>> softmax(np.array([1.0, 2.0, 3.0]))
    array([0.09003057, 0.24472847, 0.66524096])
    >>> softmax(np.array([1.0, 2.0, 3.0]), temperature=1e6).round(4)
    array([0.3333, 0.3333, 0.3333])
    >>> softmax(np.array([0.0, np.inf, np.inf]))
    array([0. , 0.5, 0.5])
    """
    return _normalize(x, axis, temperature, out, backend, log_output=False)


def log_softmax(x, axis=-1, temperature=1.0, *, out=None, backend=None):
    """Logarithm of :func:`softmax`, computed in log space.

    ``(x - m)/T - log(sum(exp((x - m)/T)))`` with ``m`` the row maximum: accurate
    where ``log(softmax(x))`` would give ``-inf`` (tiny probabilities).

    Parameters
    ----------
    x, axis, temperature, out, backend
        As for :func:`softmax`.

    Returns
    -------
    ndarray
        Same shape as ``x``; values ``<= 0``; ``-inf`` where the probability is 0.
    {contract}
    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import log_softmax
    >>> log_softmax(np.array([0.0, 1000.0]))
    array([-1000.,     0.])
    >>> log_softmax(np.array([-np.inf, -np.inf]))
    array([-inf, -inf])
    """
    return _normalize(x, axis, temperature, out, backend, log_output=True)


softmax.__doc__ = softmax.__doc__.replace("{contract}", _CONTRACT)
log_softmax.__doc__ = log_softmax.__doc__.replace("{contract}", _CONTRACT)
