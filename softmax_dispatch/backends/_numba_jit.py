"""``jit``: Numba's ``njit`` with an on-disk cache that never breaks import.

``@njit(cache=True)`` raises ``RuntimeError: cannot cache function ...: no locator
available`` at decoration time when neither the package folder nor the user's
cache folder is writable (a read-only install, a locked-down container).  Then we
compile without the disk cache (each new process pays the compile time again) and
say so once, naming the fix (``NUMBA_CACHE_DIR``).
"""

from __future__ import annotations

import functools
import types
import warnings

import numba
from numba import types as _types
from numba.core import cgutils, ir_utils
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

#: Inputs with fewer elements than this run serially (a row kernel; a column kernel
#: from ``COLUMN_SERIAL_FACTOR`` times as many).  The pool's threads wait spinning
#: (Numba's OpenMP layer), so sharing the rows pays from about 8 K elements: each
#: twin forced in turn, 2000 calls each, Xeon 2 cores, float32 ``out=`` softmax
#: (32, 512) 22.4 -> 15.8 us, (64, 250) 37.2 -> 23.0, (1600, 10) 34.6 -> 22.0,
#: softmax_backward (1600, 10) 200.9 -> 56.5; at (16, 512) 15.3 / 13.7, and at
#: 4000 elements the serial one is faster (softmax (400, 10) 21.8 / 24.3 us).
SERIAL_BELOW = 2**13
#: The column kernels (a non-last axis) stay serial up to twice as many: their
#: tiles were faster on one thread there (axis 0 of (512, 24) float32: 44.1 us
#: serial, 46.9 pooled; of (512, 32): 39.0 / 41.6; of (512, 48): 47.1 / 43.3).
COLUMN_SERIAL_FACTOR = 2

#: Tasks per parallel call: several chunks per thread balance the load.  How the
#: work is chunked never changes a result (a row is always computed whole by one
#: task), so this uses the pool's size, not ``numba.get_num_threads()`` (0.7 us
#: per call, a twentieth of a small call).
CHUNKS_PER_CALL = 8 * numba.config.NUMBA_NUM_THREADS

#: The LLVM function attribute that ``wide_vectors`` sets.
PREFER_VECTOR_WIDTH = '"prefer-vector-width"="512"'


@intrinsic
def wide_vectors(typingctx):
    """Let LLVM vectorise the calling function's loops 512 bits wide.

    LLVM tunes every Intel CPU with AVX-512 since Skylake-X to prefer 256-bit
    vectors (``TuningPrefer256Bit``: older parts lowered their clock on 512-bit
    instructions), and Numba compiles for the host CPU, so on those machines our
    exp, max and sum loops ran on 8 float32 lanes instead of 16.  AMD's Zen 4 and
    5 are tuned for 512 bits already; CPUs without AVX-512 ignore the attribute.
    Per function, so a user's own Numba code keeps its target settings (the
    global alternative, ``NUMBA_CPU_FEATURES=...,-prefer-256-bit``, would change
    them and their cache keys).  Measured on a 2-core Xeon (Emerald Rapids),
    one thread, a 4096-element row in L1: float32 softmax row 1.25 -> 2.24
    Gelem/s, float64 0.71 -> 1.00 (docs/performance.md).

    Call it first in every function that Numba compiles by itself (every ``jit``
    but ``inline="always"``, whose body lands in its callers), and first in every
    ``prange`` body (Numba outlines that body into a function of its own).  Even
    a function with no loop needs it: LLVM inlines callees and vectorises their
    loops under the caller's attribute (``_lse_row`` ran its exp on ymm until it
    had one).  It costs nothing at run time.
    """

    def codegen(context, builder, signature, args):
        # llvmlite checks attribute names against the enum attributes it knows;
        # a string attribute ("key"="value") is written into the IR as given.
        set.add(builder.function.attributes, PREFER_VECTOR_WIDTH)
        return context.get_dummy_value()

    return _types.none(), codegen


@intrinsic
def row_of(typingctx, array, row):
    """``array[row]`` of a 2-D array, borrowed: a view without a reference count.

    Numba's ``array[row]`` takes a reference on the array's memory (a call to
    ``NRT_incref``, an atomic add) and drops it after the row's last use.  With
    both threads taking rows of the same arrays, every one of those updates
    moves the count's cache line between the cores.  The backward kernel took
    three such views a row: (65536, 32) float32 ``softmax_backward`` ran in
    1.5-1.9 ms with them and 0.8-1.0 ms without (two threads, the row routine
    called in both; docs/performance.md, "Rows without reference counts").
    This view has no ``meminfo`` (``NRT_incref`` returns at once on a null one);
    it must not outlive ``array`` nor leave the kernel that made it.  Its type is
    that of ``array[row]`` (layout and read-only flag included), so callees
    compile the same specialisations and give the same bits.
    """
    if not isinstance(array, _types.Array) or array.ndim != 2 or not isinstance(row, _types.Integer):
        return None
    result = array.copy(ndim=1, layout="C" if array.layout == "C" else "A", readonly=not array.mutable)

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        source = context.make_array(array_type)(context, builder, args[0])
        view = context.make_array(signature.return_type)(context, builder)
        shape = cgutils.unpack_tuple(builder, source.shape)
        strides = cgutils.unpack_tuple(builder, source.strides)
        intp = context.get_value_type(_types.intp)
        index = context.cast(builder, args[1], signature.args[1], _types.intp)
        address = builder.add(builder.ptrtoint(source.data, intp), builder.mul(index, strides[0]))
        populate_array(
            view,
            data=builder.inttoptr(address, source.data.type),
            shape=cgutils.pack_array(builder, [shape[1]]),
            strides=cgutils.pack_array(builder, [strides[1]]),
            itemsize=source.itemsize,
            meminfo=None,
        )
        return view._getvalue()

    return result(array, row), codegen


def _row_of_aliases(lhs, args, alias_map, arg_aliases):
    """Tell Numba's alias analysis that ``row_of``'s result is a view of its
    first argument.  Numba takes an unknown call's result for a new array, and
    its dead-code elimination then drops a store into the row after which the
    row is not read again: inlined into a kernel, ``_cross_entropy_row`` lost its
    last store, ``gr[label] = ...`` (docs/performance.md, "Rows without reference
    counts")."""
    ir_utils._add_alias(lhs, args[0].name, alias_map, arg_aliases)


ir_utils.alias_func_extensions[("row_of", __name__)] = _row_of_aliases


_warned = False


def _warn_once(function_name: str, error: Exception) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        f"softmax_dispatch: Numba cannot cache compiled kernels on disk ({error}); "
        f"kernels such as {function_name} will be compiled in every new process. "
        "Set NUMBA_CACHE_DIR to a writable folder to cache them.",
        RuntimeWarning,
        stacklevel=4,
    )


def jit(**options):
    """``numba.njit(cache=True, **options)``, falling back to no cache if impossible."""

    def decorate(function):
        try:
            return numba.njit(cache=True, **options)(function)
        except RuntimeError as error:
            if "no locator available" not in str(error):
                raise
            _warn_once(function.__name__, error)
            return numba.njit(cache=False, **options)(function)

    return decorate


class RowKernel:
    """A ``prange`` kernel compiled twice: ``parallel=True`` for large inputs, and
    plain (``prange`` runs as ``range``) for inputs of fewer than ``SERIAL_BELOW``
    elements in the first argument (``RowKernel.columns``: ``COLUMN_SERIAL_FACTOR``
    times as many).

    A small input gains nothing from the thread pool: waking it costs more than
    the work, and a pool thread that the OS has descheduled (another process busy
    on the other core) stalls the call for a whole time slice.  Calling a serial
    twin also saves the 4 us that lowering Numba's thread count around the call
    cost (two ``set_num_threads``, one ``get_num_threads``).  Both twins call the
    same compiled row routines, and a row is always computed whole by one task,
    so the choice never changes a result.

    The twin is compiled from a copy of the function under another qualified
    name: Numba's on-disk cache keys entries by name and signature, not by the
    ``parallel`` flag, so two dispatchers of one function would share entries.
    """

    def __init__(self, function, serial_factor: int = 1):
        functools.update_wrapper(self, function)
        self.serial_factor = serial_factor
        self.parallel = jit(parallel=True)(function)
        # parallel=True implies NumPy's error model (a float division by zero is
        # inf or NaN, not ZeroDivisionError); the serial twin must match it.
        self.serial = jit(error_model="numpy")(_renamed(function, "_serial"))

    @classmethod
    def columns(cls, function):
        """A column kernel: serial below ``COLUMN_SERIAL_FACTOR * SERIAL_BELOW``."""
        return cls(function, COLUMN_SERIAL_FACTOR)

    def __call__(self, *args):
        # SERIAL_BELOW is read at call time (the tests force each twin with it).
        kernel = self.parallel if args[0].size >= self.serial_factor * SERIAL_BELOW else self.serial
        return kernel(*args)


def _renamed(function, suffix: str):
    twin = types.FunctionType(function.__code__, function.__globals__, function.__name__ + suffix,
                              function.__defaults__, function.__closure__)
    twin.__qualname__ = function.__qualname__ + suffix
    twin.__module__ = function.__module__
    return twin
