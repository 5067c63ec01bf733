"""An array that grows at the end in amortised O(1) per value, for series that only get longer.

The one growing buffer of the project: each column of the reader's frames
(trainer.rundir.jsonl_frame.GrowingFrame) is one: the grads, and the metrics rows not cached yet.

    values = GrowingArray()
    values.extend(new_rows)
    values.view()  # the filled part, no copy
"""

from __future__ import annotations

import numpy as np

MIN_GROWTH = 1024  # the smallest buffer a full one moves to: no run of tiny copies after a small start


class GrowingArray:
    """Values of one dtype in an over-allocated buffer (capacity doubles when full).

    Views handed out stay valid and unchanged: filled positions are never written again, and a
    bigger capacity is a fresh buffer.
    """

    def __init__(self, dtype: type | np.dtype = float, capacity: int = MIN_GROWTH):
        self.dtype = np.dtype(dtype)
        self._data = np.empty(capacity, self.dtype)
        self.size = 0

    def __len__(self) -> int:
        return self.size

    @property
    def capacity(self) -> int:
        return len(self._data)

    def reserve(self, capacity: int) -> None:
        """Make room for `capacity` values in all, so appends up to there copy nothing more."""
        if capacity > len(self._data):
            grown = np.empty(capacity, self.dtype)
            grown[: self.size] = self._data[: self.size]
            self._data = grown

    def extend(self, values: np.ndarray) -> None:
        need = self.size + len(values)
        if self.size == 0 and need > len(self._data):
            # A first block bigger than the buffer (a cold load) is adopted, not copied. Nothing
            # is ever written into it: the next extend finds it full and moves to a new buffer.
            self._data = np.asarray(values, dtype=self.dtype)
            self.size = need
            return
        if need > len(self._data):
            self.reserve(max(need, 2 * len(self._data), MIN_GROWTH))
        self._data[self.size : need] = values
        self.size = need

    def fill(self, count: int, value) -> None:
        """Append `count` copies of value (a column's gap: NaN where rows had no value)."""
        if count > 0:
            self.extend(np.full(count, value, self.dtype))

    def view(self) -> np.ndarray:
        return self._data[: self.size]
