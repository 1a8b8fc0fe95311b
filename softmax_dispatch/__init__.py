"""softmax_dispatch: softmax and its family on whatever device the data lives on.

``import softmax_dispatch`` is light: it imports NumPy only.  Backends (and Numba,
CuPy, ...) are imported the first time they are used.
"""

from ._errors import BackendUnavailableError
from ._frontend import log_softmax, softmax
from ._registry import available_backends, backend_names, use_backend

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "available_backends",
    "backend_names",
    "log_softmax",
    "softmax",
    "use_backend",
]
