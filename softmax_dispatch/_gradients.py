"""Backward passes of softmax, log_softmax and sparsemax: one fused pass each.

Each reads ``grad_output`` and ``output`` once and writes the gradient once (a
row's sum is taken while the row is in cache).  They take the forward call's
``axis``, ``temperature`` and ``where=``, so a masked entry gets exactly zero and
takes no part in the row's sum.
"""

from __future__ import annotations

import numpy as np

from ._args import result_dtype
from . import _arrays
from ._call import UNIT_TEMPERATURE, as_numpy, begin, begin_row_pair, dtype_of
from ._dask import accepts_dask


def _backward(kernel_name, grad_output, output, axis, temperature, where, out, backend, *extra):
    rows = begin_row_pair(output, grad_output, axis, temperature, where, out, backend)
    if rows is not None:
        kernels, y3, g3, result, result3 = rows
        getattr(kernels, kernel_name)(g3, y3, result3, UNIT_TEMPERATURE, *extra, None)
        return result
    y = as_numpy(output, "output")
    g = as_numpy(grad_output, "grad_output")
    on_host = [_arrays.array_kind(a) == _arrays.NUMPY for a in (y, g)]
    if on_host[0] != on_host[1]:
        host, device = ("output", "grad_output") if on_host[0] else ("grad_output", "output")
        host_array = y if on_host[0] else g
        raise TypeError(
            f"{host} is a {type(host_array).__module__}.{type(host_array).__name__} in host "
            f"memory, but {device} is on a CUDA device: pass {host} on the same device"
        )
    dtype = result_dtype(np.promote_types(result_dtype(dtype_of(y)), result_dtype(dtype_of(g))))
    call = begin(y, axis, backend, name="output", dtype=dtype)
    g3 = call.operand(g, "grad_output", "output")
    temperature = call.temperature(temperature, limits=False)
    mask3 = call.mask(where)
    call.check_out(out)
    kernel = getattr(call.kernels, kernel_name)

    def compute(out3):
        kernel(g3, call.x3, out3, temperature, *extra, mask3)

    return call.write(out, compute, inputs=(call.x3, g3))


_PARAMETERS = """
    Parameters
    ----------
    grad_output : array_like
        The gradient of the loss with respect to the forward output: the same
        shape as ``output``.
    output : array_like
        What the forward function returned (float16/32/64).
    axis : int, tuple of ints or None, default -1
        The forward call's axis.
    temperature : float or array_like, default 1.0
        The forward call's temperature: finite and > 0 (the limits 0 and inf have
        no useful gradient), a scalar or one per row.
    where : array_like of bool, optional
        The forward call's mask: masked entries get exactly 0 and take no part.
    out : ndarray, optional
        Exactly the result's shape and dtype; may be ``grad_output`` (in place).
    backend : str, optional
        Force a backend.

    Returns
    -------
    ndarray
        The gradient with respect to the forward input ``x``, the shape of ``output``
        in the promoted dtype of the two operands.
"""


@accepts_dask
def softmax_backward(grad_output, output, axis=-1, temperature=1.0, *, where=None, out=None, backend=None):
    """Gradient of :func:`softmax`: ``y * (g - sum(g * y)) / T``, one fused pass.

    Entries with ``y == 0`` (masked, ``-inf`` logits, fully masked or all ``-inf``
    rows) get exactly 0 and their ``g`` takes no part in the sum, so a fully
    masked row's gradient is zeros, never NaN (PyTorch and JAX give NaN there).
    {parameters}
    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import softmax, softmax_backward
    >>> y = softmax(np.array([0.0, 0.0]))
    >>> softmax_backward(np.array([1.0, 0.0]), y)
    array([ 0.25, -0.25])
    >>> softmax_backward(np.array([1.0, 2.0]), softmax(np.array([-np.inf, -np.inf])))
    array([0., 0.])
    """
    return _backward("softmax_backward", grad_output, output, axis, temperature, where, out, backend, False)


@accepts_dask
def log_softmax_backward(grad_output, output, axis=-1, temperature=1.0, *, where=None, out=None, backend=None):
    """Gradient of :func:`log_softmax`: ``(g - exp(y) * sum(g)) / T``, one fused pass.

    A row whose ``output`` is all ``-inf`` (an all ``-inf`` or fully masked input
    row) gets exactly zeros; with ``where=``, masked entries get 0 and their ``g``
    is left out of ``sum(g)``.
    {parameters}
    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import log_softmax, log_softmax_backward
    >>> y = log_softmax(np.array([0.0, 0.0]))
    >>> log_softmax_backward(np.array([1.0, 0.0]), y)
    array([ 0.5, -0.5])
    """
    return _backward("softmax_backward", grad_output, output, axis, temperature, where, out, backend, True)


@accepts_dask
def sparsemax_backward(grad_output, output, axis=-1, temperature=1.0, *, where=None, out=None, backend=None):
    """Gradient of :func:`sparsemax`: ``(g - mean of g over the support) / T`` on the
    support (``y > 0``), exactly 0 elsewhere (Martins & Astudillo 2016, eq. 14).
    {parameters}
    Examples
    --------
    >>> import numpy as np
    >>> from softmax_dispatch import sparsemax, sparsemax_backward
    >>> y = sparsemax(np.array([1.0, 0.8, -1.0]))
    >>> y
    array([0.6, 0.4, 0. ])
    >>> sparsemax_backward(np.array([1.0, 0.0, 5.0]), y)
    array([ 0.5, -0.5,  0. ])
    """
    return _backward("sparsemax_backward", grad_output, output, axis, temperature, where, out, backend)


for _function in (softmax_backward, log_softmax_backward, sparsemax_backward):
    _function.__doc__ = _function.__doc__.replace("{parameters}", _PARAMETERS)
