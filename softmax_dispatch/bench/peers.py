"""Other libraries' softmax, as callables ``f(x, axis) -> result`` on NumPy input.

Each peer is imported only when the bench asks for it.  A peer that is not
installed is reported with the reason and left out; it is never an error.
Conversions that a user would do once (NumPy -> torch tensor view, NumPy -> JAX
device array) happen in ``prepare``, outside the timed call; the timed call
returns a new array, as the peer does for its users.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Peer:
    name: str
    prepare: Callable  # (x: np.ndarray, axis) -> prepared input
    run: Callable  # (prepared, axis) -> result (synchronised)
    to_numpy: Callable  # result -> np.ndarray


def _numpy_stable():
    def run(x, axis):
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return e / np.sum(e, axis=axis, keepdims=True)

    return Peer("numpy-stable", lambda x, axis: x, run, np.asarray)


def _scipy():
    from scipy.special import softmax

    return Peer("scipy", lambda x, axis: x, lambda x, axis: softmax(x, axis=axis), np.asarray)


def _torch():
    import torch

    def run(x, axis):
        return torch.softmax(x, dim=axis)

    return Peer(
        f"torch-cpu({torch.get_num_threads()}t)",
        lambda x, axis: torch.from_numpy(x),
        run,
        lambda y: y.numpy(),
    )


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    compiled = {}

    def prepare(x, axis):
        return jax.device_put(jnp.asarray(x))

    def run(x, axis):
        f = compiled.get(axis)
        if f is None:
            f = compiled[axis] = jax.jit(lambda v: jax.nn.softmax(v, axis=axis))
        return f(x).block_until_ready()

    return Peer("jax-jit", prepare, run, np.asarray)


FACTORIES = {
    "numpy-stable": _numpy_stable,
    "scipy": _scipy,
    "torch": _torch,
    "jax": _jax,
}


def load_peers(names=None) -> tuple[list[Peer], dict[str, str]]:
    """The installed peers among ``names`` (all by default), and why the others are not."""
    peers, missing = [], {}
    for name in names or FACTORIES:
        try:
            peers.append(FACTORIES[name]())
        except ImportError as exc:
            missing[name] = f"not installed ({exc})"
    return peers, missing
