"""A float array that grows at the end in amortised O(1) per value, for series that only get longer.

    values = GrowingArray()
    values.extend(new_rows)
    values.view()  # the filled part, no copy
"""

from __future__ import annotations

import numpy as np


class GrowingArray:
    """float64 values in an over-allocated buffer (capacity doubles when full); views handed out
    stay valid and unchanged, since filled positions are never written again."""

    def __init__(self, capacity: int = 1024):
        self._data = np.empty(capacity)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.size + len(values)
        if self.size == 0 and need > len(self._data):
            # A first block bigger than the buffer (a cold load) is adopted, not copied. Nothing
            # is ever written into it: the next extend finds it full and moves to a new buffer.
            self._data = np.asarray(values, dtype=float)
            self.size = need
            return
        if need > len(self._data):
            grown = np.empty(max(need, 2 * len(self._data)))
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size : need] = values
        self.size = need

    def view(self) -> np.ndarray:
        return self._data[: self.size]
