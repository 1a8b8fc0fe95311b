"""Properties of the numba_cpu backend itself: lazy compilation, the disk cache, SIMD code."""

import os
import re
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest

NO_LOCATOR = """
import warnings
import numba.core.caching as caching

def refuse(self):
    raise OSError("read-only file system (simulated)")

# Every cache location refuses to be created: numba raises "no locator available".
caching._CacheLocator.ensure_cache_path = refuse
import numpy as np
import softmax_dispatch as sd
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    a = sd.softmax(np.arange(4.0))
    b = sd.log_softmax(np.arange(4.0).reshape(2, 2), axis=0)
messages = [str(w.message) for w in caught if "cannot cache" in str(w.message)]
print(len(messages), messages[0] if messages else "")
print(abs(a.sum() - 1) < 1e-12, b.shape)
"""


def test_unwritable_cache_falls_back_and_says_so_once():
    out = subprocess.run([sys.executable, "-c", NO_LOCATOR], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    count_line, result_line = out.stdout.strip().splitlines()[-2:]
    assert count_line.startswith("1 ") and "NUMBA_CACHE_DIR" in count_line
    assert result_line.startswith("True")


def test_kernels_are_cached_on_disk_and_reused():
    code = "import numpy as np, softmax_dispatch as sd; sd.softmax(np.ones((3, 40), np.float32))"
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        files = [f for _, _, fs in os.walk(cache) for f in fs]
        assert any(f.endswith(".nbi") for f in files) and any(f.endswith(".nbc") for f in files)
        debug = dict(env, NUMBA_DEBUG_CACHE="1")
        out = subprocess.run([sys.executable, "-c", code], env=debug, capture_output=True, text=True, check=True)
        assert "data loaded from" in out.stdout
        assert "data saved to" not in out.stdout


@pytest.mark.skipif(not re.search(r"\bavx2\b", open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""),
                    reason="needs an x86-64 CPU with AVX2")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hot_loops_use_packed_simd_exp(dtype):
    """The exp loops compile to packed FMAs on ymm/zmm registers (our exp vectorises).
    Where the CPU has AVX-512, Intel's included (for which LLVM picks ymm unless
    ``wide_vectors`` lets it do otherwise), every kernel's run on zmm.  The log-space
    exp loops ran on ymm until their counts were kept in int32 (``_logsumexp``; an
    int64 count takes two zmm per 16 lanes, so LLVM chose 8 lanes for the whole loop)
    and a bool (``_softmax_backward``'s log_softmax pass)."""
    avx512 = re.search(r"\bavx512f\b", open("/proc/cpuinfo").read())
    wide = ("_softmax_rows", "_softmax_columns", "_softmax_columns_streamed", "_logsumexp",
            "_softmax_backward", "_cross_entropy") if avx512 else ()
    code = f"""
import numpy as np, softmax_dispatch as sd
from softmax_dispatch.backends import _numba_softmax, _numba_family
x = np.random.default_rng(0).standard_normal((8, 300)).astype("{dtype}")
y = sd.log_softmax(x)
sd.softmax(x); sd.softmax(x, axis=0); sd.logsumexp(x); sd.log_softmax_backward(x, y)
sd.softmax(x[:, ::2], axis=0)  # strided columns: the tiled kernel
sd.cross_entropy(x, np.zeros(8, dtype=int), return_grad=True)
kernels = {{"_softmax_rows": _numba_softmax, "_softmax_columns": _numba_softmax,
           "_softmax_columns_streamed": _numba_softmax, "_logsumexp": _numba_family, "_softmax_backward": _numba_family,
           "_cross_entropy": _numba_family}}
for name, module in kernels.items():
    f = getattr(module, name).serial  # these inputs are small: the serial twin ran
    asm = "".join(f.inspect_asm(s) for s in f.signatures)
    suffix = "ps" if "{dtype}" == "float32" else "pd"
    registers = "zmm" if name in {wide!r} else "[yz]mm"
    print(name, registers, len(__import__("re").findall(r"vfmadd\\d+" + suffix + r"\\s+%" + registers, asm)))
"""
    with tempfile.TemporaryDirectory() as cache:  # a fresh cache, so the code is compiled here
        out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, NUMBA_CACHE_DIR=cache),
                             capture_output=True, text=True, check=True)
    for name, registers, count in (line.split() for line in out.stdout.strip().splitlines()):
        # One vectorised exp body alone has 7 (float32) or 12 (float64) of them.
        assert int(count) >= 5, f"{name} has only {count} packed FMAs on {registers} for {dtype}"


COUNT_IN_PARTS = """
import hashlib, sys
import numpy as np
from softmax_dispatch.backends import _numba_softmax
if sys.argv[1] != "default":
    _numba_softmax._COUNT_BLOCK = int(sys.argv[1])  # read when the kernels compile, below
import softmax_dispatch as sd
rng = np.random.default_rng(3)
digest = hashlib.sha256()
for dtype in ("float32", "float64"):
    x = (rng.standard_normal((40, 50)) * 3).astype(dtype)
    x[3, ::5] = x[3].max()       # ten maxima, spread over several parts
    x[4, :] = 1.5                # every entry a maximum
    x[6, 7] = np.nan
    per_row = rng.uniform(0.5, 2.0, (40, 1))
    for t in (1.0, per_row):
        cases = [(sd.log_softmax, x, -1, t), (sd.logsumexp, x, -1, t),
                 (sd.log_softmax, x.T, 0, t.T if np.ndim(t) else t)]  # the column kernel
        for function, a, axis, temperature in cases:
            result = function(a, axis=axis, temperature=temperature, backend="numba_cpu")
            reference = function(a, axis=axis, temperature=temperature, backend="numpy")
            assert np.allclose(result, reference, rtol=1e-5, atol=1e-5, equal_nan=True), dtype
            digest.update(np.ascontiguousarray(result).tobytes())
print(digest.hexdigest())
"""


def test_maxima_counted_in_parts_give_the_same_bits():
    """``_store_exps`` counts a row's maxima (log_softmax, logsumexp) in int32 parts of
    ``_COUNT_BLOCK`` entries (2**30, so an int32 cannot overflow).  Rows longer than a
    part are out of a test's reach at that size, so a process with parts of 7 entries
    runs the multi-part path: counts, the exps and the next row's max (the row
    pipeline's ``ahead``) must come out bitwise as with one part."""
    digests = {}
    for part in ("7", "default"):
        with tempfile.TemporaryDirectory() as cache:  # a fresh cache: compiled with this part size
            out = subprocess.run([sys.executable, "-c", COUNT_IN_PARTS, part],
                                 env=dict(os.environ, NUMBA_CACHE_DIR=cache),
                                 capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        digests[part] = out.stdout.strip()
    assert digests["7"] == digests["default"]


def test_float16_goes_through_float32():
    import softmax_dispatch as sd

    x = np.full((2, 70_000), 1.0, dtype=np.float16)
    got = sd.softmax(x, backend="numba_cpu")
    assert got.dtype == np.float16
    assert np.all(got == np.float16(1 / 70_000))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 3, 10, 16, 17, 32, 33, 63, 64, 200])
def test_every_kernel_gives_the_same_bits(dtype, n):
    """Short-row, row and tiled column kernels compute each row identically
    (compared as bit patterns: a -0.0 where another kernel gives 0.0 fails).  Rows
    shorter than ``SHORT_ROW`` are summed in order by the short-row kernel inline
    and by ``_lane_sum`` in the others; the streamed column kernel sums every
    column in order, so it gives the same bits there and agrees to rounding on
    longer columns."""
    import softmax_dispatch as sd
    from softmax_dispatch.backends._numba_softmax import SHORT_ROW

    rng = np.random.default_rng(n)
    x = (rng.standard_normal((300, n)) * 5).astype(dtype)
    x[5, 0] = np.nan
    x[7, :] = -np.inf
    x[9, -1] = np.inf
    # Signed zeros as maxima: both (the max may be either), and a lone -0.0 whose
    # log(sum) is 0, so that log_softmax's sign of zero follows the max's.
    x[11, :], x[11, 0], x[11, -1] = -1e4, 0.0, -0.0
    x[12, :], x[12, 0], x[12, -1] = -1e4, -0.0, 0.0
    x[13, :], x[13, -1] = -1e4, -0.0
    per_row = rng.uniform(0.5, 2.0, (300, 1))
    # Rows at the limits between ordinary ones: the row kernel takes the max of
    # row r + 1 in the exp pass of row r, and a special row in between stops that.
    with_limits = per_row.copy()
    with_limits[::7] = 0.0
    with_limits[3::11] = np.inf
    for log in (False, True):
        f = sd.log_softmax if log else sd.softmax
        for temperature in (1.0, 0.3, 1e-300, per_row, with_limits):
            contiguous = f(x, temperature=temperature, backend="numba_cpu")
            strided_out = np.empty((300, n + 3), dtype)[:, :n]  # not contiguous: row kernel
            f(x, temperature=temperature, out=strided_out, backend="numba_cpu")
            t_columns = temperature if np.ndim(temperature) == 0 else temperature.T
            columns = f(np.ascontiguousarray(x.T), axis=0, backend="numba_cpu",
                        temperature=t_columns).T
            in_place = np.array(x.T, order="C")  # a copy (for n = 1, x.T is contiguous)
            f(in_place, axis=0, out=in_place, backend="numba_cpu", temperature=t_columns)
            np.testing.assert_array_equal(np.ascontiguousarray(columns.T).view(f"u{x.itemsize}"),
                                          in_place.view(f"u{x.itemsize}"))
            # 300 adjacent columns: the streamed column kernel; columns two
            # elements apart: the tiled kernel's element-wise tile copies
            spaced = np.repeat(x.T, 2, axis=1)[:, ::2]
            spaced_columns = f(spaced, axis=0, backend="numba_cpu", temperature=t_columns).T
            # 100 adjacent columns: the tiled kernel's in-register block transposes
            t_narrow = t_columns if np.ndim(temperature) == 0 else t_columns[:, :100]
            narrow = f(np.ascontiguousarray(x[:100].T), axis=0, backend="numba_cpu",
                       temperature=t_narrow).T
            np.testing.assert_array_equal(contiguous[:100].view(f"u{contiguous.itemsize}"),
                                          np.ascontiguousarray(narrow).view(f"u{contiguous.itemsize}"))
            bits = contiguous.view(f"u{contiguous.itemsize}")
            for other in (strided_out, spaced_columns) + ((columns,) if n < SHORT_ROW else ()):
                np.testing.assert_array_equal(bits, np.ascontiguousarray(other).view(bits.dtype))
            if n >= SHORT_ROW:
                # The streamed column kernel sums each column in order, the row
                # kernel in SIMD lanes: for a sum of n positive terms the two
                # orders differ by at most about 2 n eps.
                np.testing.assert_allclose(columns, contiguous, rtol=2 * n * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 10, 33, 63, 64, 300])
def test_backward_short_rows_give_the_called_row_routines_bits(dtype, n):
    """Rows shorter than ``SHORT_ROW`` run the backward row routines inlined into
    the kernel; each row must equal the called routine's, bit for bit, for both
    functions, masked or not, at T = 1 and not (and longer rows, which take the
    called routine, trivially so)."""
    import softmax_dispatch as sd
    from softmax_dispatch.backends import _numba_family as family

    rng = np.random.default_rng(n)
    rows = 120
    g = rng.standard_normal((rows, n)).astype(dtype)
    x = (rng.standard_normal((rows, n)) * 3).astype(dtype)
    x[3, :] = -np.inf
    x[5, -1] = np.inf
    mask = rng.random((rows, n)) > 0.3
    mask[7, :] = False
    no_mask = np.ones((1, 1), dtype=np.bool_)
    for log_output in (False, True):
        y = np.asarray(sd.log_softmax(x) if log_output else sd.softmax(x))
        y[9, 0] = 0.0 if not log_output else -np.inf  # an entry out of the sum
        g[9, 0] = np.inf
        routine = (family._log_softmax_backward_row_called if log_output
                   else family._softmax_backward_row_called)
        for masked, m in ((False, no_mask), (True, mask)):
            for temperature in (np.ones((1, 1)), rng.uniform(0.5, 2.0, (rows, 1))):
                in_kernel = np.full((rows, n), 7.0, dtype=dtype)
                family._softmax_backward(g, y, in_kernel, temperature, log_output, masked, m, 4)
                by_row = np.full((rows, n), 7.0, dtype=dtype)
                for r in range(rows):
                    t = temperature[r if temperature.shape[0] > 1 else 0, 0]
                    routine(g[r], y[r], by_row[r], t, masked, m[r if masked else 0])
                np.testing.assert_array_equal(in_kernel, by_row)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "kernel, n",
    [("_cross_entropy_short_rows", n) for n in (1, 2, 10, 33, 63)]
    + [("_cross_entropy", n) for n in (10, 64, 300)],
)
def test_cross_entropy_short_rows_give_the_called_row_routines_bits(dtype, kernel, n):
    """Rows shorter than ``SHORT_ROW`` run in groups (``_cross_entropy_short_rows``),
    with the row routine's expressions; every loss and every gradient entry must
    equal the called routine's, bit for bit: class indices with weights, label
    smoothing and ignored rows, probability targets, per-row temperatures and
    gradient scales, rows with NaN and infinite logits and a shift that overflows
    at T > 1 (the careful path, left to the routine), several groups of rows, and
    no gradient.  (``_cross_entropy``, the kernel of longer rows, runs the routine
    itself: it is here for its per-row arguments and ignored rows.)"""
    from softmax_dispatch.backends import _numba_family as family

    rng = np.random.default_rng(100 + n)
    rows = 150  # several groups of about 4096 entries for the longer rows
    x = (rng.standard_normal((rows, n)) * 3).astype(dtype)
    x[4, 0] = np.inf
    x[6, -1] = np.nan
    x[8, :] = -np.inf
    if n > 1:  # x - max overflows where (x - max) / T may not
        big = np.finfo(dtype).max / 2
        x[10, 0], x[10, 1] = big, -big
        x[rows - 3, :] = x[rows - 3, 0]  # all maxima
    labels = rng.integers(0, n, rows)
    labels[2] = -1  # ignored
    probs = rng.random((rows, n)).astype(dtype)
    probs /= probs.sum(axis=1, keepdims=True)
    ones = np.ones((1, 1))
    per_row = rng.uniform(0.5, 2.0, (rows, 1))
    per_row[10] = 1.5  # T > 1 on the row whose shift overflows
    cases = [  # index_mode, weights, smoothing, temperature, gradient scale
        (True, np.ones(n), 0.0, ones, ones / rows),
        (True, rng.uniform(0.1, 2.0, n), 0.1, per_row, per_row / 7),
        (False, np.ones(n), 0.0, ones, ones),
        (False, rng.uniform(0.1, 2.0, n), 0.2, per_row, ones / rows),
    ]
    no_probs = np.ones((1, 1), dtype=dtype)
    for index_mode, w, smoothing, temperature, grad_scale in cases:
        p = probs if not index_mode else no_probs
        for want_grad in (True, False):
            grad = np.full((rows, n) if want_grad else (1, 1), 7.0, dtype=dtype)
            loss = np.full(rows, 7.0)
            getattr(family, kernel)(x, labels, p, w, smoothing, temperature, grad_scale, loss,
                                    index_mode, want_grad, grad, 4)
            by_row = np.full_like(grad, 7.0)
            scratch, terms, lp = np.empty(n, dtype=dtype), np.empty(n), np.empty(n)
            w_total = np.cumsum(w)[-1]  # the kernel's order: one add after another
            for r in range(rows):
                if index_mode and labels[r] < 0:
                    continue
                t = temperature[r if temperature.shape[0] > 1 else 0, 0]
                scale = grad_scale[r if grad_scale.shape[0] > 1 else 0, 0]
                row_loss = family._cross_entropy_row_called(
                    x[r], labels[r] if index_mode else 0, p[0 if index_mode else r], w, w_total,
                    smoothing, t, scale, index_mode, want_grad, by_row[r if want_grad else 0],
                    scratch, terms, lp)
                np.testing.assert_array_equal(loss[r], row_loss)
                if want_grad:
                    np.testing.assert_array_equal(grad[r], by_row[r])


def test_stores_into_borrowed_rows_survive_inlining():
    """Numba's dead-code elimination drops a store into an array that it believes
    is new and never read again; ``row_of``'s result is a view, registered as an
    alias of its argument.  ``_cross_entropy_row`` inlined into a kernel over
    borrowed rows lost its last store (the label entry of the gradient) without
    that registration."""
    import numba

    from softmax_dispatch.backends import _numba_family as family
    from softmax_dispatch.backends._numba_jit import row_of

    inlined = numba.njit(inline="always")(family._cross_entropy_row)

    @numba.njit
    def losses_and_gradients(x, labels, grad, inline):
        tasks, n = x.shape
        w = np.ones(n)
        probs = np.zeros((1, 1), dtype=x.dtype)
        scratch = np.empty(n, dtype=x.dtype)
        terms = np.empty(n)
        lp = np.empty(n)
        loss = np.empty(tasks)
        for r in range(tasks):
            pr = row_of(probs, 0)
            gr = row_of(grad, r)
            if inline:
                loss[r] = inlined(row_of(x, r), labels[r], pr, w, float(n), 0.0, 1.0, 0.25,
                                  True, True, gr, scratch, terms, lp)
            else:
                loss[r] = family._cross_entropy_row_called(row_of(x, r), labels[r], pr, w, float(n),
                                                           0.0, 1.0, 0.25, True, True, gr, scratch,
                                                           terms, lp)
        return loss

    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 16)
    by_call, by_inlining = np.full_like(x, 7.0), np.full_like(x, 7.0)
    np.testing.assert_array_equal(losses_and_gradients(x, labels, by_call, False),
                                  losses_and_gradients(x, labels, by_inlining, True))
    np.testing.assert_array_equal(by_inlining, by_call)


def test_borrowed_row_views_are_the_rows():
    """``row_of(a, r)``: the row ``a[r]`` as a view (writes land in ``a``), for any
    strides, with the type Numba gives ``a[r]`` (layout and read-only flag), so
    that row routines compile the same specialisations as before."""
    import numba

    from softmax_dispatch.backends._numba_jit import row_of

    @numba.njit
    def double_rows(a, out):
        for r in range(a.shape[0]):
            source, target = row_of(a, r), row_of(out, r)
            for i in range(source.shape[0]):
                target[i] = 2 * source[i]

    @numba.njit
    def both_views(a):
        borrowed = row_of(a, 1)
        counted = a[1]
        return borrowed.sum() - counted.sum()

    base = np.arange(60.0).reshape(6, 10)
    readonly = base.copy()
    readonly.flags.writeable = False
    for a in (base, base[::2, ::-3], np.asfortranarray(base), readonly):
        if a.flags.writeable:
            out = np.zeros((a.shape[0], a.shape[1] * 2))[:, ::2]
            double_rows(a, out)
            np.testing.assert_array_equal(out, 2 * a)
        assert both_views(a) == 0
    for signature in both_views.signatures:
        typemap = both_views.overloads[signature].type_annotation.typemap
        assert typemap["borrowed"] == typemap["counted"], signature


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 10, 33, 63])
def test_logsumexp_short_rows_give_the_row_kernels_bits(dtype, n):
    """logsumexp of rows shorter than ``SHORT_ROW`` runs in the short-row kernel
    (its logsumexp mode); the family's row kernel (``_lse_row``, which masked
    calls and longer rows take) gives the same bits on every kind of row."""
    from softmax_dispatch.backends import _numba_family as family
    from softmax_dispatch.backends._numba_softmax import launch_short_logsumexp

    rng = np.random.default_rng(n)
    rows = 200
    x = (rng.standard_normal((rows, n)) * 5).astype(dtype)
    x[5, 0] = np.nan
    x[7, :] = -np.inf
    x[9, -1] = np.inf
    x[11, :], x[11, 0] = -1e4, -0.0
    x[13, :] = np.finfo(dtype).max / 2  # a row whose min and max are far apart
    x[13, 0] = -np.finfo(dtype).max / 2
    per_row = rng.uniform(0.5, 2.0, (rows, 1))
    with_limits = per_row.copy()
    with_limits[::7] = 0.0
    with_limits[3::11] = np.inf
    with_limits[13] = 3.0  # T > 1 on the far-apart row: the careful path
    no_mask = np.ones((1, 1), dtype=np.bool_)
    for temperature in (np.ones((1, 1)), np.full((1, 1), 0.3), per_row, with_limits):
        short = np.empty(rows)
        assert launch_short_logsumexp(x, short, temperature)
        by_row = np.empty(rows)
        family._logsumexp(x, by_row, False, no_mask, temperature, 4)
        np.testing.assert_array_equal(short.view(np.uint64), by_row.view(np.uint64))
    assert not launch_short_logsumexp(np.zeros((3, 64), dtype), np.empty(3), np.ones((1, 1)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
def test_streamed_columns_take_the_slow_paths_in_place_or_not(dtype, log):
    """The streamed column kernel hands the columns it cannot vectorise to the row
    routine after its passes, which in place must still see their ``x``: a column
    whose ``x - max`` overflows at T > 1, a NaN, a +inf, an all -inf column and
    limit temperatures, among 300 ordinary columns of 10 (short enough that every
    bit must be the row kernel's)."""
    import softmax_dispatch as sd

    f = sd.log_softmax if log else sd.softmax
    big = np.finfo(dtype).max
    x = np.random.default_rng(3).standard_normal((10, 300)).astype(dtype)
    x[0, 5], x[1, 5] = big, -big
    x[2, 6] = np.nan
    x[3, 7] = np.inf
    x[:, 8] = -np.inf
    per_column = np.full((1, 300), 4.0)
    per_column[0, 9], per_column[0, 10] = 0.0, np.inf
    for temperature in (4.0, per_column):
        t_rows = temperature if np.ndim(temperature) == 0 else temperature.T
        rows = f(np.array(x.T, order="C"), temperature=t_rows, backend="numba_cpu")
        assert np.all(np.isfinite(rows[5])) and np.isnan(rows[6]).all()
        columns = f(x, axis=0, temperature=temperature, backend="numba_cpu")
        in_place = x.copy()
        f(in_place, axis=0, temperature=temperature, out=in_place, backend="numba_cpu")
        bits = f"u{x.itemsize}"
        for got in (columns, in_place):
            np.testing.assert_array_equal(np.ascontiguousarray(got.T).view(bits), rows.view(bits))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_serial_and_parallel_twins_give_the_same_bits(dtype, monkeypatch):
    """Every kernel runs serially below ``SERIAL_BELOW`` elements and on the thread
    pool above: forcing one twin, then the other, on the same inputs gives the same
    bits for every function (row, short-row and strided kernels included)."""
    import softmax_dispatch as sd
    from softmax_dispatch.backends import _numba_jit

    rng = np.random.default_rng(7)
    x = (rng.standard_normal((40, 70)) * 4).astype(dtype)
    x[3, 5] = np.nan
    x[4, :] = -np.inf
    x[6, 2] = np.inf
    short = (rng.standard_normal((300, 10)) * 4).astype(dtype)
    mask = rng.random(x.shape) > 0.2
    g = rng.standard_normal(x.shape).astype(dtype)
    labels = rng.integers(0, x.shape[1], x.shape[0])
    labels_short = rng.integers(0, short.shape[1], short.shape[0])
    per_row = rng.uniform(0.5, 2.0, (x.shape[0], 1))

    def results():
        y = sd.softmax(x, backend="numba_cpu")
        ly = sd.log_softmax(x, backend="numba_cpu")
        s = sd.sparsemax(x, backend="numba_cpu")
        loss, grad = sd.cross_entropy(x, labels, return_grad=True, reduction="none", backend="numba_cpu")
        return [
            y, ly, sd.softmax(short, backend="numba_cpu"), sd.softmax(x, axis=0, backend="numba_cpu"),
            sd.softmax(x, temperature=per_row, backend="numba_cpu"),
            sd.softmax(x, where=mask, backend="numba_cpu"),
            sd.logsumexp(x, backend="numba_cpu"),
            sd.softmax_backward(g, y, backend="numba_cpu"), sd.log_softmax_backward(g, ly, backend="numba_cpu"),
            s, sd.sparsemax_backward(g, s, backend="numba_cpu"), sd.hardmax(x, backend="numba_cpu"),
            sd.gumbel_softmax(x, seed=3, backend="numba_cpu"), loss, grad,
            *sd.cross_entropy(short, labels_short, return_grad=True, reduction="none",
                              backend="numba_cpu"),
        ]

    monkeypatch.setattr(_numba_jit, "SERIAL_BELOW", 0)  # everything on the thread pool
    pooled = results()
    monkeypatch.setattr(_numba_jit, "SERIAL_BELOW", 2**62)  # everything serial
    serial = results()
    for a, b in zip(pooled, serial):
        np.testing.assert_array_equal(a, b)


def test_column_kernels_stay_serial_up_to_a_larger_size(monkeypatch):
    """A row kernel takes the thread pool from ``SERIAL_BELOW`` elements, a column
    kernel from ``COLUMN_SERIAL_FACTOR`` times that (its tiles ran faster on one
    thread in between)."""
    from softmax_dispatch.backends import _numba_jit
    from softmax_dispatch.backends._numba_softmax import (
        _softmax_columns, _softmax_columns_streamed, _softmax_rows, _softmax_short_rows)

    assert _numba_jit.COLUMN_SERIAL_FACTOR > 1
    monkeypatch.setattr(_numba_jit, "SERIAL_BELOW", 100)
    between = np.zeros(100 * _numba_jit.COLUMN_SERIAL_FACTOR - 1)
    for kernel, expected in ((_softmax_rows, "pool"), (_softmax_short_rows, "pool"),
                             (_softmax_columns, "serial"), (_softmax_columns_streamed, "serial")):
        monkeypatch.setattr(kernel, "parallel", lambda *args: "pool")
        monkeypatch.setattr(kernel, "serial", lambda *args: "serial")
        assert kernel(between) == expected, kernel.__name__
        assert kernel(np.zeros(99)) == "serial"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_max_and_min_over_integer_keys_are_exact(dtype):
    """``_row_max``/``_row_max_min`` reduce integer keys of the floats
    (``_float_keys``): the result is NumPy's ``nanmax``/``nanmin`` for every
    special value, with ``-inf``/``+inf`` for a row of NaN."""
    from softmax_dispatch.backends._numba_softmax import _row_max, _row_max_min

    info = np.finfo(dtype)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, info.max, -info.max,
                         info.tiny, -info.tiny, info.smallest_subnormal, -info.smallest_subnormal,
                         1.0, -1.0], dtype=dtype)
    rng = np.random.default_rng(3)
    rows = [specials, specials[::-1], np.full(5, np.nan, dtype), np.array([-np.inf, np.nan], dtype),
            np.array([-0.0, 0.0], dtype), np.array([0.0, -0.0], dtype), np.array([-5.0], dtype)]
    for n in (1, 7, 16, 17, 100, 1000):  # vector body and scalar tail
        for _ in range(20):
            row = rng.choice(specials, n) if rng.random() < 0.5 else (rng.standard_normal(n) * 1e3).astype(dtype)
            rows.append(row)
            rows.append(row[::3])  # a strided row
    for row in rows:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmax of an all-NaN row
            want_max = np.nanmax(row) if not np.all(np.isnan(row)) else -np.inf
            want_min = np.nanmin(row) if not np.all(np.isnan(row)) else np.inf
        got_max = _row_max(row)
        got_max2, got_min = _row_max_min(row)
        assert got_max == want_max and got_max2 == want_max, (row, got_max, want_max)
        assert got_min == want_min, (row, got_min, want_min)
        if want_max == 0:  # the max of a row holding +0.0 is +0.0 whatever the order
            assert np.signbit(got_max) == (not np.any((row == 0) & ~np.signbit(row)))


@pytest.mark.skipif(not re.search(r"\bsse2\b", open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""),
                    reason="needs an x86-64 CPU")
def test_row_kernel_prefetches_short_rows_ahead():
    """The row kernel asks for short rows ``PREFETCH_BYTES`` ahead (``prefetcht1``):
    softmax of 512-entry float32 rows into ``out=`` ran 12-19 % faster with it."""
    code = """
import numpy as np, softmax_dispatch as sd
from softmax_dispatch.backends import _numba_softmax
sd.softmax(np.random.default_rng(0).standard_normal((64, 512)).astype(np.float32))
f = _numba_softmax._softmax_rows.parallel
asm = "".join(f.inspect_asm(s) for s in f.signatures)
print(asm.count("prefetcht1"))
"""
    with tempfile.TemporaryDirectory() as cache:  # a fresh cache, so the code is compiled here
        out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, NUMBA_CACHE_DIR=cache),
                             capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) >= 1
