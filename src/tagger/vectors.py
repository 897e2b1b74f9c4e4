"""Small vector helpers every stage shares."""

from __future__ import annotations

import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row (the last axis) scaled to length 1; a zero row stays zero. Keeps the dtype."""
    x = np.asarray(x)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12).astype(x.dtype, copy=False)
