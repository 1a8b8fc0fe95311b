"""Bad input gets the documented exception, naming the bad value; good input of any layout works."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from numpy.exceptions import AxisError

import softmax_dispatch as sd
from softmax_dispatch import BackendUnavailableError

from ._checks import assert_matches_reference
from ._reference import reference


@pytest.mark.parametrize(
    "x, name",
    [
        (np.ones(3, dtype=np.complex128), "complex128"),
        (np.array([1, "a"], dtype=object), "object"),
        (np.array(["a", "b"]), "<U1"),
        (np.array(["2020-01-01"], dtype="datetime64[D]"), "datetime64"),
        (np.ones(3, dtype=np.longdouble), "float128"),
    ],
)
def test_unsupported_dtypes(backend, x, name):
    if backend.on_device:
        # Host data (a NumPy array of any dtype, a list, a scalar) with a device backend
        # forced is an error that says so: checked here, once for every function kind.
        for host in (x, np.ones(3), [1.0, 2.0], 3.0):
            for function in (sd.softmax, sd.log_softmax, sd.logsumexp, sd.sparsemax, sd.hardmax):
                with pytest.raises(BackendUnavailableError,
                                   match=rf"runs on {backend.device} .*not numpy arrays"):
                    function(host, backend=backend.name)
        if not backend.can_hold(x.dtype):
            backend.host_only(f"{name} arrays")
    for function in (sd.softmax, sd.log_softmax):
        with pytest.raises(TypeError, match=name):
            function(backend.put(x), backend=backend.name)


def test_axis_errors(backend):
    x = backend.put(np.ones((2, 3)))
    with pytest.raises(AxisError):
        sd.softmax(x, axis=2, backend=backend.name)
    with pytest.raises(AxisError):
        sd.softmax(x, axis=-3, backend=backend.name)
    with pytest.raises(AxisError):
        sd.softmax(x, axis=(0, 5), backend=backend.name)
    with pytest.raises(ValueError, match="repeated axis"):
        sd.softmax(x, axis=(1, -1), backend=backend.name)
    with pytest.raises(TypeError, match="axis"):
        sd.softmax(x, axis=1.0, backend=backend.name)
    with pytest.raises(AxisError):
        sd.softmax(backend.put(np.array(1.0)), axis=1, backend=backend.name)


@pytest.mark.parametrize("bad", [-1.0, -1e-300, np.nan, -np.inf, -2])
def test_bad_scalar_temperature(backend, bad):
    x = backend.put(np.ones(3))
    for function in (sd.softmax, sd.log_softmax):
        with pytest.raises(ValueError, match=f"temperature must be >= 0 .*got {bad!r}"):
            function(x, temperature=bad, backend=backend.name)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        sd.softmax(x, temperature=np.float64(bad), backend=backend.name)
    with pytest.raises(ValueError, match="temperature must be >= 0"):  # a 0-d array (on the device)
        sd.softmax(x, temperature=backend.put_operand(np.array(float(bad))), backend=backend.name)


@pytest.mark.parametrize("limit", [0, 0.0, -0.0, np.inf, np.float64(np.inf), np.array(0.0)], ids=repr)
def test_zero_and_infinite_temperature_are_the_limits(backend, limit):
    x = np.array([1.0, 3.0, 3.0])
    want = [0, 0.5, 0.5] if float(limit) == 0 else [1 / 3] * 3
    np.testing.assert_array_equal(backend.softmax(x, temperature=limit), want)
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal(backend.log_softmax(x, temperature=limit), np.log(want))


def test_bad_temperature_types_and_shapes(backend):
    x = backend.put(np.ones((4, 3)))
    with pytest.raises(TypeError):
        sd.softmax(x, temperature=1j, backend=backend.name)
    with pytest.raises(TypeError):
        sd.softmax(x, temperature=True, backend=backend.name)
    with pytest.raises(TypeError):
        sd.softmax(x, temperature=np.array(["a"]), backend=backend.name)
    with pytest.raises(ValueError, match="does not broadcast"):
        sd.softmax(x, temperature=backend.put_operand(np.ones((4, 3))), backend=backend.name)  # varies along the axis
    with pytest.raises(ValueError, match="does not broadcast"):
        sd.softmax(x, temperature=np.ones(5), backend=backend.name)
    with pytest.raises(ValueError, match=r"got -2.0 at index \(2, 0\)"):
        sd.softmax(x, temperature=backend.put_operand(np.array([[1.0], [1.0], [-2.0], [1.0]])), backend=backend.name)
    with pytest.raises(ValueError, match=r"got nan at index \(1,\)"):
        sd.softmax(backend.put(np.ones((3, 2))), axis=0, temperature=np.array([1.0, np.nan]), backend=backend.name)


def test_out_argument_checks(backend):
    x = backend.put(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        sd.softmax(x, out=backend.put(np.empty((3, 2), np.float32)), backend=backend.name)
    with pytest.raises(ValueError, match="dtype"):
        sd.softmax(x, out=backend.put(np.empty((2, 3), np.float64)), backend=backend.name)
    with pytest.raises(TypeError, match="out must be"):
        sd.softmax(x, out=[[0.0] * 3] * 2, backend=backend.name)
    if backend.on_device:  # out= in host memory for a device result
        with pytest.raises(TypeError, match="out must be"):
            sd.softmax(x, out=np.empty((2, 3), np.float32), backend=backend.name)
    else:  # device arrays have no read-only flag
        readonly = np.empty((2, 3), np.float32)
        readonly.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            sd.softmax(x, out=readonly, backend=backend.name)
    with pytest.raises(ValueError, match="dtype"):  # integer input gives float64
        sd.softmax(backend.put(np.ones((2, 3), dtype=np.int32)), out=backend.put(np.empty((2, 3), np.int32)),
                   backend=backend.name)


@pytest.mark.parametrize("axis", [-1, 0, (0, 1), None])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_out_and_in_place(backend, axis, log):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 40))
    want = reference(x, axis, log=log)
    function = sd.log_softmax if log else sd.softmax
    xd = backend.put(x)
    out = backend.put(np.full_like(x, np.nan))
    assert function(xd, axis=axis, out=out, backend=backend.name) is out
    got = backend.get(out)
    assert_matches_reference(got, want, log, axis=axis if axis is not None else (0, 1))
    inplace = backend.put(x.copy())
    assert function(inplace, axis=axis, out=inplace, backend=backend.name) is inplace
    np.testing.assert_array_equal(backend.get(inplace), got)
    # out= with a layout unlike the input, and out= overlapping the input shifted.
    fortran = backend.put(np.asfortranarray(np.full_like(x, np.nan)))
    assert function(xd, axis=axis, out=fortran, backend=backend.name) is fortran
    np.testing.assert_array_equal(backend.get(fortran), got)
    buffer = backend.put(np.concatenate([x, x[:1]]))  # one allocation; its views overlap
    function(buffer[:-1], axis=axis, out=buffer[1:], backend=backend.name)
    np.testing.assert_array_equal(backend.get(buffer[1:]), got)


@pytest.mark.parametrize("shape, axis", [((60, 10), -1), ((12, 70), -1), ((10, 12), 0)],
                         ids=["short-rows", "rows", "columns"])
@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.0, np.inf], ids=lambda t: f"T={t}")
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_in_place_with_special_rows(backend, shape, axis, temperature, log):
    """In place gives the bits of a separate ``out``, also on the rows that take a
    slow path (NaN, +inf, all -inf) and at the limit temperatures, which read the
    row again after the fast path has written over it."""
    x = np.random.default_rng(5).standard_normal(shape) * 3
    rows = np.moveaxis(x, axis, -1)  # a view: the special values land in x
    rows[1, 2] = np.nan
    rows[3, 1] = np.inf
    rows[4, :] = -np.inf
    rows[6, 0] = rows[6, -1] = np.inf
    rows[8, 1] = rows[8, -2] = rows[8].max() + 1  # a tie at the max (the T = 0 limit splits it)
    function = sd.log_softmax if log else sd.softmax
    want = backend.get(function(backend.put(x), axis=axis, temperature=temperature, backend=backend.name))
    inplace = backend.put(x.copy())
    assert function(inplace, axis=axis, temperature=temperature, out=inplace, backend=backend.name) is inplace
    np.testing.assert_array_equal(backend.get(inplace), want)


def layouts(x):
    """The same logical array in many memory layouts."""
    yield "C", np.ascontiguousarray(x)
    yield "F", np.asfortranarray(x)
    big = np.zeros((x.shape[0] * 2, x.shape[1] * 3, x.shape[2]), x.dtype) + 7
    big[::2, ::3] = x
    yield "strided", big[::2, ::3]
    rev = np.ascontiguousarray(x[::-1, :, ::-1])
    yield "negative", rev[::-1, :, ::-1]
    yield "transposed", np.ascontiguousarray(x.transpose(2, 0, 1)).transpose(1, 2, 0)
    ro = x.copy()
    ro.flags.writeable = False
    yield "readonly", ro


@pytest.mark.parametrize("axis", [-1, 0, 1, (0, 2), None])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16], ids=lambda d: np.dtype(d).name)
def test_any_memory_layout(backend, axis, dtype):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((4, 5, 34)) * 4).astype(dtype)
    for log in (False, True):
        want = reference(x, axis, log=log)
        for name, view in layouts(x):
            got = backend.function(log)(view, axis=axis)
            assert got.shape == x.shape, name
            assert_matches_reference(got, want, log, axis=axis if axis is not None else (0, 1, 2))


# -- the rest of the family ------------------------------------------------------------

# Each function called on an array x (already put on the backend b's device) with
# its other required operands filled in (put there too).
FAMILY = {
    "softmax": lambda b, x, **kw: sd.softmax(x, **kw),
    "log_softmax": lambda b, x, **kw: sd.log_softmax(x, **kw),
    "logsumexp": lambda b, x, **kw: sd.logsumexp(x, **kw),
    "sparsemax": lambda b, x, **kw: sd.sparsemax(x, **kw),
    "hardmax": lambda b, x, **kw: sd.hardmax(x, **kw),
    "gumbel_softmax": lambda b, x, **kw: sd.gumbel_softmax(x, seed=0, **kw),
    "softmax_backward": lambda b, x, **kw: sd.softmax_backward(b.put(np.ones(np.shape(x))), x, **kw),
    "log_softmax_backward": lambda b, x, **kw: sd.log_softmax_backward(b.put(np.ones(np.shape(x))), x, **kw),
    "sparsemax_backward": lambda b, x, **kw: sd.sparsemax_backward(b.put(np.ones(np.shape(x))), x, **kw),
    "softmax_backward (grad_output)": lambda b, x, **kw: sd.softmax_backward(x, b.put(np.ones(np.shape(x))), **kw),
    "cross_entropy": lambda b, x, **kw: sd.cross_entropy(x, b.put(np.zeros(np.shape(x)[:-1], int)), **kw),
}


@pytest.mark.parametrize("function", list(FAMILY))
@pytest.mark.parametrize(
    "x, name",
    [
        (np.ones((2, 3), dtype=np.complex128), "complex128"),
        (np.array([[1, "a"]], dtype=object), "object"),
        (np.array([["a", "b"]]), "<U1"),
        (np.ones((2, 3), dtype=np.longdouble), "float128"),
    ],
    ids=["complex", "object", "str", "longdouble"],
)
def test_family_unsupported_dtypes(backend, function, x, name):
    if not backend.can_hold(x.dtype):
        backend.host_only(f"{name} arrays")
    with pytest.raises(TypeError, match=name):
        FAMILY[function](backend, backend.put(x), backend=backend.name)


@pytest.mark.parametrize("function", [f for f in FAMILY if f != "cross_entropy"])
def test_family_axis_errors(backend, function):
    f = functools.partial(FAMILY[function], backend)
    x = backend.put(np.full((2, 3), 0.25))
    with pytest.raises(AxisError):
        f(x, axis=2, backend=backend.name)
    with pytest.raises(AxisError):
        f(x, axis=(0, -3), backend=backend.name)
    with pytest.raises(ValueError, match="repeated axis"):
        f(x, axis=(1, -1), backend=backend.name)
    with pytest.raises(TypeError, match="axis"):
        f(x, axis=1.0, backend=backend.name)


@pytest.mark.parametrize("function", [f for f in FAMILY if f not in ("cross_entropy", "logsumexp")])
def test_family_out_checks(backend, function):
    f = functools.partial(FAMILY[function], backend)
    x = backend.put(np.full((2, 3), 0.25, np.float32))
    # The gradients promote x with their float64 second operand.
    dtype, other = (np.float64, np.float32) if "backward" in function else (np.float32, np.float64)
    with pytest.raises(ValueError, match="out has shape"):
        f(x, out=backend.put(np.empty((3, 2), dtype)), backend=backend.name)
    with pytest.raises(ValueError, match="out has dtype"):
        f(x, out=backend.put(np.empty((2, 3), other)), backend=backend.name)
    with pytest.raises(TypeError, match="out must be"):
        f(x, out=[[0.0] * 3] * 2, backend=backend.name)
    if backend.on_device:  # out= in host memory for a device result
        with pytest.raises(TypeError, match="out must be"):
            f(x, out=np.empty((2, 3), dtype), backend=backend.name)
    else:  # device arrays have no read-only flag
        readonly = np.empty((2, 3), dtype)
        readonly.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            f(x, out=readonly, backend=backend.name)


@pytest.mark.parametrize("function", ["softmax", "log_softmax", "logsumexp", "sparsemax", "gumbel_softmax",
                                      "softmax_backward", "cross_entropy"])
def test_family_temperature_types(backend, function):
    f = functools.partial(FAMILY[function], backend)
    name = "tau" if function == "gumbel_softmax" else "temperature"
    x = backend.put(np.full((4, 3), 0.25))
    for bad in (1j, True, np.array(["a"]), backend.put_operand(np.ones((4, 1), complex))):
        with pytest.raises(TypeError):
            f(x, **{name: bad}, backend=backend.name)
    with pytest.raises(ValueError, match="does not broadcast"):
        f(x, **{name: np.ones(5)}, backend=backend.name)
    with pytest.raises(ValueError, match="does not broadcast"):
        f(x, **{name: backend.put_operand(np.ones((4, 3)))}, backend=backend.name)


def test_masked_arrays_are_refused(backend):
    backend.host_only("a masked array")
    masked = np.ma.masked_array(np.ones((2, 3)), mask=[[0, 1, 0], [0, 0, 0]])
    for function in ("softmax", "logsumexp", "sparsemax", "hardmax", "gumbel_softmax", "cross_entropy"):
        with pytest.raises(TypeError, match="masked array"):
            FAMILY[function](backend, masked, backend=backend.name)
