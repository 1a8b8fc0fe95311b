"""Exception types shared by the front end, the registry and the backends.

One misuse, one exception type, wherever it is detected (see STYLE notes):
bad values are ``ValueError``, bad types are ``TypeError``, axes out of range are
``numpy.exceptions.AxisError`` and a backend that cannot run is
:class:`BackendUnavailableError`.
"""

from __future__ import annotations


class BackendUnavailableError(RuntimeError):
    """A backend was asked for (explicitly or as the default) but cannot run here.

    The message always says why (missing package, no device, wrong kind of array).
    There is never a silent fallback to another backend.
    """
