"""The public functions: argument work once, then one backend call.

Every function follows the same path: recognise the array kind, choose the backend
(explicit ``backend=`` > :func:`use_backend` > the kind's default), validate
dtype/axis/temperature/``out=``, map the reduction onto ``(outer, n, inner)``
(:mod:`._layout`) and hand the 3-D views to the backend's kernel.
"""

from __future__ import annotations

import numpy as np

from ._call import UNIT_TEMPERATURE, begin, begin_rows
from ._dask import accepts_dask

_CONTRACT = """
    Numerical contract (the same on every backend):

    - The maximum of each row is subtracted before exponentiating (no overflow);
      ``log_softmax`` is ``(x - m)/T - log(sum(exp((x - m)/T)))``, never
      ``log(softmax(x))``.
    - A NaN anywhere in a row makes the whole row NaN.
    - ``+inf`` entries are taken at their limit: the k infinite entries share the
      mass (``1/k``; log: ``-log(k)``), every other entry gets 0 (log: ``-inf``).
    - A row that is entirely ``-inf`` gives zeros (log: ``-inf``), never NaN.
    - ``temperature=0`` is the exact T -> 0 limit: the maxima share the mass
      (the hardmax; log: ``-log(k)`` at the k maxima).  ``temperature=inf`` is the
      uniform distribution over the entries that are neither masked nor ``-inf``.
      (``+inf`` entries and NaN follow the rules above at every temperature.)
    - ``where=``: masked-out entries take no part; they get 0 (log: ``-inf``),
      and a fully masked row gives zeros (log: ``-inf``).
    - float16 input is accumulated in float32; bool and integer input give float64.
"""

_WHERE_DOC = """where : array_like of bool, optional
        Broadcastable to ``x``: only entries where it is True take part; the others
        get 0 (log: ``-inf``).  A fully masked row gives zeros (log: ``-inf``)."""


def _softmax(x, axis, temperature, where, out, backend, log_output: bool):
    rows = begin_rows(x, axis, temperature, where, out, backend)
    if rows is not None:
        kernels, x3, result, result3 = rows
        kernels.softmax(x3, result3, UNIT_TEMPERATURE, log_output, None)
        return result
    call = begin(x, axis, backend)
    temperature = call.temperature(temperature)
    mask3 = call.mask(where)
    call.check_out(out)

    def compute(out3):
        call.kernels.softmax(call.x3, out3, temperature, log_output, mask3)

    return call.write(out, compute, inputs=(call.x3,))


@accepts_dask
def softmax(x, axis=-1, temperature=1.0, *, where=None, out=None, backend=None):
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
        ``>= 0``; 0 and ``inf`` give the limits.  An array gives one temperature
        per slice: it must broadcast to ``x.shape`` with the reduced axes of size 1.
    {where}
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
    >>> softmax(np.array([1.0, 3.0, 3.0]), temperature=0)
    array([0. , 0.5, 0.5])
    >>> softmax(np.array([1.0, 2.0, 3.0]), where=np.array([True, True, False]))
    array([0.26894142, 0.73105858, 0.        ])
    """
    return _softmax(x, axis, temperature, where, out, backend, log_output=False)


@accepts_dask
def log_softmax(x, axis=-1, temperature=1.0, *, where=None, out=None, backend=None):
    """Logarithm of :func:`softmax`, computed in log space.

    ``(x - m)/T - log(sum(exp((x - m)/T)))`` with ``m`` the row maximum: accurate
    where ``log(softmax(x))`` would give ``-inf`` (tiny probabilities).

    Parameters
    ----------
    x, axis, temperature, where, out, backend
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
    return _softmax(x, axis, temperature, where, out, backend, log_output=True)




@accepts_dask
def logsumexp(x, axis=-1, temperature=1.0, *, keepdims=False, where=None, out=None, backend=None):
    """``T * log(sum(exp(x / T)))`` along ``axis``: the smooth maximum.

    Computed as ``m + T * log1p(sum(exp((x - m)/T)) - 1)`` with ``m`` the row
    maximum (no overflow, accurate when one entry dominates).  It tends to
    ``max(x)`` as T -> 0, and its gradient with respect to ``x`` is
    ``softmax(x, temperature=T)``.

    Parameters
    ----------
    x, axis, temperature, backend
        As for :func:`softmax`.  ``temperature=0`` gives the maximum;
        ``temperature=inf`` gives ``+inf`` when two or more entries are finite
        (``T * log(count)`` diverges), the entry itself when only one is.
    keepdims : bool, default False
        Keep the reduced axes, with size 1.
    {where}
    out : ndarray, optional
        Exactly the result's shape and dtype.

    Returns
    -------
    ndarray or scalar
        The reduced shape, in the dtype of ``x`` (float64 for bool/integers);
        a NumPy scalar when every axis is reduced and ``keepdims`` is False.

    Notes
    -----
    An all ``-inf`` (or fully masked) row gives ``-inf``; a row holding ``+inf``
    gives ``+inf``; a NaN (not masked) gives NaN.  A zero-length reduction gives
    ``-inf``, the log of an empty sum.

    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import logsumexp
    >>> logsumexp(np.array([1000.0, 1000.0]))
    np.float64(1000.6931471805599)
    >>> logsumexp(np.array([[1.0, 2.0], [3.0, -np.inf]]), temperature=0)
    array([2., 3.])
    >>> logsumexp(np.array([1.0, 2.0, 50.0]), where=np.array([True, True, False]))
    np.float64(2.313261687518223)
    """
    call = begin(x, axis, backend)
    temperature = call.temperature(temperature)
    mask3 = call.mask(where)
    outer, n, inner = call.plan.shape3
    if keepdims:
        shape = call.reduced_shape
    else:
        shape = tuple(s for i, s in enumerate(call.shape) if i not in call.axes)
    call.check_out(out, shape)
    if n == 0:  # the log of an empty sum
        rows = call.to_device(np.full((outer, inner), -np.inf))
    else:
        rows = call.rows_float64()
        if rows.size:
            with call.on_device():
                call.kernels.logsumexp(call.x3, rows, temperature, mask3)
    return call.reduced_result(rows, out, keepdims)


for _function in (softmax, log_softmax, logsumexp):
    _function.__doc__ = _function.__doc__.replace("{contract}", _CONTRACT).replace(
        "{where}", _WHERE_DOC
    )
