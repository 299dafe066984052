"""A time window of float rows kept in flat arrays, not one Python object per row.

Thousands of vehicles keep minutes of fixes and tire readings each. As tuples those are
millions of objects, each of which the cycle collector walks at least once (stalling the
event loop) and each costing ~150 bytes; here a row costs 8 bytes per column.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

_COMPACT_AFTER = 256  # dropped rows at the front before the arrays are shifted down


class FloatRows:
    """Rows of ``width`` floats in arrival order; append at the back, drop at the front.

    At most ``max_rows`` are kept: appending to a full window drops its oldest row first.
    """

    __slots__ = ("_columns", "_start", "max_rows")

    def __init__(self, width: int, max_rows: int) -> None:
        self._columns = tuple(array("d") for _ in range(width))
        self._start = 0  # index of the oldest live row
        self.max_rows = max_rows

    def __len__(self) -> int:
        return len(self._columns[0]) - self._start

    def __bool__(self) -> bool:
        return len(self._columns[0]) > self._start

    def __iter__(self) -> Iterator[tuple[float, ...]]:
        start = self._start
        return zip(*(column[start:] for column in self._columns), strict=True)

    def first(self, column: int = 0) -> float:
        """A value of the oldest row (IndexError when empty)."""
        if not self:
            raise IndexError("no rows")
        return self._columns[column][self._start]

    def last(self, column: int = 0) -> float:
        if not self:
            raise IndexError("no rows")
        return self._columns[column][-1]

    def append(self, *row: float) -> tuple[float, ...] | None:
        """Add a row; returns the row dropped to stay within ``max_rows``, if any."""
        columns = self._columns  # (on the hot path: one call per fix, so no len(self))
        if len(row) != len(columns):
            raise ValueError(f"a row of {len(row)} values for {len(columns)} columns")
        dropped = None
        if len(columns[0]) - self._start >= self.max_rows:
            dropped = self.pop_first()
        for column, value in zip(columns, row, strict=False):  # widths checked above
            column.append(value)
        return dropped

    def drop_before(self, horizon: float, column: int = 0) -> None:
        """Drop the oldest rows while their value in ``column`` is below ``horizon``."""
        values = self._columns[column]
        while len(values) > self._start and values[self._start] < horizon:
            self.pop_first()  # (compacting shifts the arrays in place)

    def pop_first(self) -> tuple[float, ...]:
        if not self:
            raise IndexError("no rows")
        start = self._start
        row = tuple(column[start] for column in self._columns)
        self._start = start + 1
        if self._start >= _COMPACT_AFTER and self._start * 2 >= len(self._columns[0]):
            for column in self._columns:
                del column[: self._start]
            self._start = 0
        return row
