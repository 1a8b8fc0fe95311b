"""The bench cases (issue 2): shapes users meet, in float32 and float64."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Case:
    shape: tuple[int, ...]
    axis: int
    dtype: str
    label: str

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    @property
    def name(self) -> str:
        return f"{self.label} {'x'.join(map(str, self.shape))} axis={self.axis} {self.dtype}"

    def make_input(self, seed: int = 0) -> np.ndarray:
        """Random logits (never zeros: untouched pages and fast paths would flatter us)."""
        rng = np.random.default_rng(seed)
        return (rng.standard_normal(self.shape, dtype=np.float32) * 4).astype(self.dtype)


SHAPES = [
    ((4096, 4096), -1, "square"),
    ((64, 50257), -1, "llm-vocab"),
    ((1_000_000, 10), -1, "short-rows"),
    ((16, 12, 512, 512), -1, "attention"),
    ((4096, 4096), 0, "axis0"),
    ((100, 1000), -1, "small"),
]


def cases(dtypes=("float32", "float64")) -> list[Case]:
    return [Case(shape, axis, dtype, label) for dtype in dtypes for shape, axis, label in SHAPES]
