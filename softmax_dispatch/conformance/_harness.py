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
        """A result of this backend as a NumPy array (checking its array type); a tuple
        of results (``cross_entropy(..., return_grad=True)``) element by element."""
        if isinstance(array, tuple):
            return tuple(self.get(a) for a in array)
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

    def call2(self, function, a, b, *args, **kwargs):
        """``function(a, b, ...)`` with both array operands moved to the device."""
        return self.get(function(self.put(np.asarray(a)), self.put(np.asarray(b)), *args,
                                 backend=self.name, **kwargs))

    def logsumexp(self, x, *args, **kwargs):
        return self.call(sd.logsumexp, x, *args, **kwargs)

    def sparsemax(self, x, *args, **kwargs) -> np.ndarray:
        return self.call(sd.sparsemax, x, *args, **kwargs)

    def hardmax(self, x, *args, **kwargs) -> np.ndarray:
        return self.call(sd.hardmax, x, *args, **kwargs)

    def gumbel_softmax(self, logits, *args, **kwargs) -> np.ndarray:
        return self.call(sd.gumbel_softmax, logits, *args, **kwargs)

    def softmax_backward(self, grad_output, output, *args, **kwargs) -> np.ndarray:
        return self.call2(sd.softmax_backward, grad_output, output, *args, **kwargs)

    def log_softmax_backward(self, grad_output, output, *args, **kwargs) -> np.ndarray:
        return self.call2(sd.log_softmax_backward, grad_output, output, *args, **kwargs)

    def sparsemax_backward(self, grad_output, output, *args, **kwargs) -> np.ndarray:
        return self.call2(sd.sparsemax_backward, grad_output, output, *args, **kwargs)

    def backward(self, log: bool):
        return self.log_softmax_backward if log else self.softmax_backward

    def cross_entropy(self, logits, target, *args, **kwargs):
        """``cross_entropy``; the loss (and with ``return_grad`` the gradient) as NumPy."""
        return self.call2(sd.cross_entropy, logits, target, *args, **kwargs)
