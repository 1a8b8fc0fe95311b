"""Other libraries' versions of the bench functions, on NumPy operands.

Each peer is imported only when the bench asks for it.  A peer that is not
installed is reported with the reason and left out; it is never an error.
Conversions that a user would do once (NumPy -> torch tensor view, NumPy -> JAX
device array, a leaf tensor that requires grad) happen in ``inputs``, outside the
timed call; the timed call returns new arrays, as the peer does for its users.

What each peer runs for each function (:data:`SUPPORTS` lists which it has):

============================  ===================================================
``softmax``                   numpy max-shift formula, ``scipy.special.softmax``,
                              ``torch.softmax``, ``jax.nn.softmax`` (jit)
``logsumexp``                 numpy ``m + log(sum(exp(x - m)))``,
                              ``scipy.special.logsumexp``, ``torch.logsumexp``,
                              ``jax.nn.logsumexp`` (jit)
``softmax_backward``          numpy ``y * (g - sum(g * y))``,
                              ``torch._softmax_backward_data`` (what autograd runs),
                              the same formula under ``jax.jit`` (what JAX's
                              autodiff of softmax computes)
``log_softmax_backward``      numpy ``g - exp(y) * sum(g)``,
                              ``torch._log_softmax_backward_data``, jitted formula
``cross_entropy``             forward and backward: numpy (log-softmax, loss,
                              ``(p - onehot) / N``), ``F.cross_entropy`` on a leaf
                              tensor with ``requires_grad`` then
                              ``torch.autograd.grad``, ``jax.value_and_grad`` of
                              ``-mean(log_softmax[target])`` (jit)
``masked_softmax``            ``-inf`` where masked, then softmax: numpy, scipy,
                              ``masked_fill`` + ``torch.softmax``;
                              ``jax.nn.softmax(where=)`` (jit)
``sparsemax``                 numpy sort/cumsum formula (no torch or JAX built-in)
``sparsemax_backward``        numpy ``where(y > 0, g - mean of g over y > 0, 0)``
                              (no torch or JAX built-in)
``hardmax``                   one-hot of the argmax: numpy ``put_along_axis``,
                              ``torch.zeros_like().scatter_``,
                              ``jax.nn.one_hot`` (jit)
``gumbel_softmax``            softmax of ``x + gumbel noise`` with each library's
                              own generator: numpy ``Generator.random``,
                              ``F.gumbel_softmax``, ``jax.random.gumbel`` (jit)
============================  ===================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

_ALL = frozenset(
    ("softmax", "logsumexp", "softmax_backward", "log_softmax_backward", "cross_entropy",
     "masked_softmax", "sparsemax", "sparsemax_backward", "hardmax", "gumbel_softmax")
)

#: The functions each peer has (read without importing the peer).
SUPPORTS: dict[str, frozenset[str]] = {
    "numpy-stable": _ALL,
    "scipy": frozenset(("softmax", "logsumexp", "masked_softmax")),
    "torch": _ALL - {"sparsemax", "sparsemax_backward"},
    "jax": _ALL - {"sparsemax", "sparsemax_backward"},
}


@dataclass
class Peer:
    name: str
    convert: Callable  # np.ndarray -> the peer's array (untimed)
    to_numpy: Callable  # the peer's array -> np.ndarray
    functions: dict[str, Callable]  # function -> run(inputs: dict, axis) -> result (synchronised)
    prepare: dict[str, Callable] = field(default_factory=dict)  # function -> (operands, axis) -> inputs

    def inputs(self, function: str, operands: dict, axis: int):
        """The operands as this peer takes them (done once, outside the timed calls)."""
        custom = self.prepare.get(function)
        if custom is not None:
            return custom(operands, axis)
        return {k: self.convert(v) for k, v in operands.items()}

    def run(self, function: str, inputs, axis: int):
        return self.functions[function](inputs, axis)

    def result(self, result):
        """A result as NumPy (a tuple stays a tuple)."""
        if isinstance(result, tuple):
            return tuple(np.asarray(self.to_numpy(r)) for r in result)
        return np.asarray(self.to_numpy(result))


# -- numpy ------------------------------------------------------------------------


def _np_softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _np_logsumexp(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)), axis)


def _np_cross_entropy(o, axis):
    x, target = o["x"], o["target"]
    s = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(s)
    total = np.sum(e, axis=axis, keepdims=True)
    index = np.expand_dims(target, axis)
    count = target.size
    loss = np.mean(np.squeeze(np.log(total), axis) - np.squeeze(np.take_along_axis(s, index, axis), axis))
    grad = e / (total * count)
    np.put_along_axis(grad, index, np.take_along_axis(grad, index, axis) - 1 / count, axis)
    return loss, grad


def _np_sparsemax(x, axis):
    z = np.moveaxis(x, axis, -1)
    z_sorted = -np.sort(-z, axis=-1)
    cumulative = np.cumsum(z_sorted, axis=-1)
    k = np.arange(1, z.shape[-1] + 1, dtype=x.dtype)
    support = np.sum(1 + k * z_sorted > cumulative, axis=-1, keepdims=True)
    tau = (np.take_along_axis(cumulative, support - 1, -1) - 1) / support.astype(x.dtype)
    return np.moveaxis(np.maximum(z - tau, 0), -1, axis)


def _np_sparsemax_backward(o, axis):
    g, support = o["g"], o["y"] > 0
    size = np.sum(support, axis=axis, keepdims=True)
    mean = np.sum(np.where(support, g, 0), axis=axis, keepdims=True) / np.maximum(size, 1).astype(g.dtype)
    return np.where(support, g - mean, 0).astype(g.dtype)


def _np_hardmax(x, axis):
    out = np.zeros_like(x)
    np.put_along_axis(out, np.expand_dims(np.argmax(x, axis=axis), axis), 1, axis)
    return out


def _numpy_stable():
    rng = np.random.default_rng(0)

    def gumbel(o, axis):
        x = o["x"]
        return _np_softmax(x - np.log(-np.log(rng.random(x.shape, dtype=x.dtype))), axis)

    return Peer(
        "numpy-stable",
        convert=lambda a: a,
        to_numpy=np.asarray,
        functions={
            "softmax": lambda o, axis: _np_softmax(o["x"], axis),
            "logsumexp": lambda o, axis: _np_logsumexp(o["x"], axis),
            "softmax_backward": lambda o, axis: o["y"] * (o["g"] - np.sum(o["g"] * o["y"], axis=axis, keepdims=True)),
            "log_softmax_backward": lambda o, axis: o["g"] - np.exp(o["y"]) * np.sum(o["g"], axis=axis, keepdims=True),
            "cross_entropy": _np_cross_entropy,
            "masked_softmax": lambda o, axis: _np_softmax(np.where(o["mask"], o["x"], -np.inf), axis),
            "sparsemax": lambda o, axis: _np_sparsemax(o["x"], axis),
            "sparsemax_backward": _np_sparsemax_backward,
            "hardmax": lambda o, axis: _np_hardmax(o["x"], axis),
            "gumbel_softmax": gumbel,
        },
    )


def _scipy():
    from scipy import special

    return Peer(
        "scipy",
        convert=lambda a: a,
        to_numpy=np.asarray,
        functions={
            "softmax": lambda o, axis: special.softmax(o["x"], axis=axis),
            "logsumexp": lambda o, axis: special.logsumexp(o["x"], axis=axis),
            "masked_softmax": lambda o, axis: special.softmax(np.where(o["mask"], o["x"], -np.inf), axis=axis),
        },
    )


# -- torch ------------------------------------------------------------------------


def _torch():
    import torch
    import torch.nn.functional as F

    def cross_entropy_inputs(o, axis):
        if o["x"].ndim != 2 or axis not in (-1, 1):
            raise ValueError("the torch cross_entropy peer takes 2-D logits with classes on the last axis")
        return {"x": torch.from_numpy(o["x"]).requires_grad_(), "target": torch.from_numpy(o["target"])}

    def cross_entropy(o, axis):
        loss = F.cross_entropy(o["x"], o["target"])  # reduction="mean"
        (grad,) = torch.autograd.grad(loss, o["x"])
        return loss.detach(), grad

    def hardmax(o, axis):
        x = o["x"]
        return torch.zeros_like(x).scatter_(axis, x.argmax(dim=axis, keepdim=True), 1.0)

    return Peer(
        f"torch-cpu({torch.get_num_threads()}t)",
        convert=torch.from_numpy,
        to_numpy=lambda t: t.detach().numpy(),
        functions={
            "softmax": lambda o, axis: torch.softmax(o["x"], dim=axis),
            "logsumexp": lambda o, axis: torch.logsumexp(o["x"], dim=axis),
            "softmax_backward": lambda o, axis: torch._softmax_backward_data(o["g"], o["y"], axis, o["g"].dtype),
            "log_softmax_backward": lambda o, axis: torch._log_softmax_backward_data(o["g"], o["y"], axis, o["g"].dtype),
            "cross_entropy": cross_entropy,
            "masked_softmax": lambda o, axis: torch.softmax(o["x"].masked_fill(o["masked_out"], float("-inf")), dim=axis),
            "hardmax": hardmax,
            "gumbel_softmax": lambda o, axis: F.gumbel_softmax(o["x"], tau=1.0, hard=False, dim=axis),
        },
        prepare={
            "cross_entropy": cross_entropy_inputs,
            # A user keeps the mask in the polarity masked_fill wants.
            "masked_softmax": lambda o, axis: {"x": torch.from_numpy(o["x"]), "masked_out": torch.from_numpy(~o["mask"])},
        },
    )


# -- jax --------------------------------------------------------------------------


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def cross_entropy_loss(x, target, axis):
        picked = jnp.take_along_axis(jax.nn.log_softmax(x, axis=axis), jnp.expand_dims(target, axis), axis=axis)
        return -jnp.mean(picked)

    formulas = {
        "softmax": lambda o, axis: jax.nn.softmax(o["x"], axis=axis),
        "logsumexp": lambda o, axis: jax.nn.logsumexp(o["x"], axis=axis),
        "softmax_backward": lambda o, axis: o["y"] * (o["g"] - jnp.sum(o["g"] * o["y"], axis=axis, keepdims=True)),
        "log_softmax_backward": lambda o, axis: o["g"] - jnp.exp(o["y"]) * jnp.sum(o["g"], axis=axis, keepdims=True),
        "cross_entropy": lambda o, axis: jax.value_and_grad(cross_entropy_loss)(o["x"], o["target"], axis),
        "masked_softmax": lambda o, axis: jax.nn.softmax(o["x"], axis=axis, where=o["mask"]),
        "hardmax": lambda o, axis: jax.nn.one_hot(
            jnp.argmax(o["x"], axis=axis), o["x"].shape[axis], dtype=o["x"].dtype, axis=axis
        ),
        "gumbel_softmax": lambda o, axis: jax.nn.softmax(
            o["x"] + jax.random.gumbel(o["key"], o["x"].shape, o["x"].dtype), axis=axis
        ),
    }
    compiled = {}

    def runner(function):
        def run(o, axis):
            f = compiled.get((function, axis))
            if f is None:
                f = compiled[function, axis] = jax.jit(lambda o: formulas[function](o, axis))
            return jax.block_until_ready(f(o))

        return run

    def convert(a):
        return jax.device_put(jnp.asarray(a))

    return Peer(
        "jax-jit",
        convert=convert,
        to_numpy=np.asarray,
        functions={name: runner(name) for name in formulas},
        prepare={"gumbel_softmax": lambda o, axis: {"x": convert(o["x"]), "key": jax.random.key(0)}},
    )


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
