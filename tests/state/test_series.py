import pytest

from telematics.state.series import FloatRows


def test_rows_come_back_in_order_across_compactions() -> None:
    rows = FloatRows(2, max_rows=10_000)
    for i in range(2_000):
        rows.append(float(i), i * 2.0)
        if i % 3 == 0:
            rows.pop_first()  # the front is dropped often enough to compact many times
    kept = list(rows)
    assert len(kept) == len(rows) == 2_000 - 667
    assert kept[0] == (667.0, 1334.0) and kept[-1] == (1999.0, 3998.0)
    assert [t for t, _ in kept] == sorted(t for t, _ in kept)
    assert rows.first() == 667.0 and rows.last(1) == 3998.0


def test_a_full_window_drops_and_returns_its_oldest_row() -> None:
    rows = FloatRows(3, max_rows=3)
    assert [rows.append(float(i), 0.0, -1.0) for i in range(3)] == [None, None, None]
    assert rows.append(3.0, 0.0, -1.0) == (0.0, 0.0, -1.0)
    assert [r[0] for r in rows] == [1.0, 2.0, 3.0]


def test_empty_rows_say_so() -> None:
    rows = FloatRows(1, max_rows=4)
    assert not rows and len(rows) == 0 and list(rows) == []
    with pytest.raises(IndexError):
        rows.first()
    with pytest.raises(IndexError):
        rows.pop_first()
    rows.append(1.0)
    rows.pop_first()
    assert not rows
