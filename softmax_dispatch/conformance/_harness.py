"""How a test talks to one backend: move data to its device and back, and call it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import softmax_dispatch as sd
from softmax_dispatch import _registry


@dataclass(frozen=True)
class Backend:
    """One registered backend, as seen by a conformance test."""

    name: str

    @property
    def device(self) -> str:
        return _registry.spec(self.name).device

    def put(self, array: np.ndarray):
        """A NumPy array as an input array of this backend's kind."""
        if self.device == "cpu":
            return array
        raise AssertionError(f"no transfer to device {self.device!r} in this harness yet")

    def get(self, array) -> np.ndarray:
        """A result of this backend as a NumPy array (checking its array type)."""
        if self.device == "cpu":
            assert isinstance(array, (np.ndarray, np.generic)), type(array)
            return np.asarray(array)
        raise AssertionError(f"no transfer from device {self.device!r} in this harness yet")

    def call(self, function, x, *args, **kwargs) -> np.ndarray:
        """``function(x, ..., backend=name)`` with ``x`` moved to the device, result back."""
        return self.get(function(self.put(np.asarray(x)), *args, backend=self.name, **kwargs))

    def softmax(self, x, *args, **kwargs) -> np.ndarray:
        return self.call(sd.softmax, x, *args, **kwargs)

    def log_softmax(self, x, *args, **kwargs) -> np.ndarray:
        return self.call(sd.log_softmax, x, *args, **kwargs)

    def function(self, log: bool):
        return self.log_softmax if log else self.softmax
