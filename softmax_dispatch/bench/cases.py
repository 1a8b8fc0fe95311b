"""The bench cases (issue 2): shapes users meet, in float32 and float64, per function.

A case is one function of :mod:`.functions` on one shape, axis and dtype.  The
``softmax`` cases are the original six shapes; every other function runs on the
two shapes the issue names for them, ``(4096, 4096)`` and ``(64, 50257)`` along the
last axis (``--quick``: on ``(64, 50257)`` only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Case:
    shape: tuple[int, ...]
    axis: int
    dtype: str
    label: str
    function: str = "softmax"

    @property
    def nbytes(self) -> int:
        """Bytes of one array of the case's shape and dtype (the logits)."""
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    @property
    def rows(self) -> int:
        """How many slices are reduced (the size of a per-row result)."""
        return int(np.prod(self.shape)) // self.shape[self.axis]

    @property
    def name(self) -> str:
        where = f"{self.label} {'x'.join(map(str, self.shape))} axis={self.axis} {self.dtype}"
        return where if self.function == "softmax" else f"{self.function} {where}"

    def make_input(self, seed: int = 0) -> np.ndarray:
        """Random logits (never zeros: untouched pages and fast paths would flatter us)."""
        rng = np.random.default_rng(seed)
        return (rng.standard_normal(self.shape, dtype=np.float32) * 4).astype(self.dtype)

    def describe(self) -> dict:
        """The fields a worker process rebuilds the case from."""
        return dict(shape=self.shape, axis=self.axis, dtype=self.dtype, label=self.label, function=self.function)


SHAPES = [
    ((4096, 4096), -1, "square"),
    ((64, 50257), -1, "llm-vocab"),
    ((1_000_000, 10), -1, "short-rows"),
    ((16, 12, 512, 512), -1, "attention"),
    ((4096, 4096), 0, "axis0"),
    ((100, 1000), -1, "small"),
]

#: The functions after ``softmax``, in the order the bench runs them (see
#: :data:`.functions.FUNCTIONS` for what each computes and moves).
OTHER_FUNCTIONS = (
    "logsumexp",
    "softmax_backward",
    "log_softmax_backward",
    "cross_entropy",
    "masked_softmax",
    "sparsemax",
    "sparsemax_backward",
    "hardmax",
    "gumbel_softmax",
)
FUNCTION_NAMES = ("softmax", *OTHER_FUNCTIONS)

#: The shapes (labels of :data:`SHAPES`) the other functions run on, in a full run
#: and with ``--quick``.
OTHER_LABELS = ("square", "llm-vocab")
QUICK_LABELS = ("llm-vocab",)


def cases(dtypes=("float32", "float64"), functions=None, quick: bool = False) -> list[Case]:
    """Every case of ``functions`` (all by default), dtype by dtype, function by function."""
    functions = FUNCTION_NAMES if functions is None else tuple(functions)
    unknown = set(functions) - set(FUNCTION_NAMES)
    if unknown:
        raise ValueError(f"unknown bench function(s) {sorted(unknown)}; known: {', '.join(FUNCTION_NAMES)}")
    labels = QUICK_LABELS if quick else OTHER_LABELS
    work = []
    for dtype in dtypes:
        for function in FUNCTION_NAMES:
            if function not in functions:
                continue
            for shape, axis, label in SHAPES:
                if function == "softmax" or label in labels:
                    work.append(Case(shape, axis, dtype, label, function))
    return work
