"""softmax_dispatch: softmax and its family on whatever device the data lives on.

``import softmax_dispatch`` is light: it imports NumPy only.  Backends (and Numba,
CuPy, ...) are imported the first time they are used.
"""

from ._alternatives import gumbel_softmax, hardmax, sparsemax
from ._cross_entropy import cross_entropy
from ._errors import BackendUnavailableError
from ._frontend import log_softmax, logsumexp, softmax
from ._gradients import log_softmax_backward, softmax_backward, sparsemax_backward
from ._registry import available_backends, backend_names, use_backend

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "available_backends",
    "backend_names",
    "cross_entropy",
    "gumbel_softmax",
    "hardmax",
    "log_softmax",
    "log_softmax_backward",
    "logsumexp",
    "softmax",
    "softmax_backward",
    "sparsemax",
    "sparsemax_backward",
    "use_backend",
]
