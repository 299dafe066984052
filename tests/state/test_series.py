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


def test_drop_before_keeps_the_rows_at_and_after_the_horizon_across_compactions() -> None:
    rows = FloatRows(2, max_rows=10_000)
    for i in range(1_000):
        rows.append(float(i), -float(i))
        rows.drop_before(i - 99.5)  # a 100-row window, compacted many times over
    assert len(rows) == 100 and rows.first() == 900.0 and rows.last(1) == -999.0
    rows.drop_before(2_000.0)
    assert not rows
    rows.drop_before(5.0)  # nothing left to drop: no error
    rows.append(7.0, 1.0)
    rows.drop_before(0.0, column=1)  # by another column's value
    assert list(rows) == [(7.0, 1.0)]


def test_a_row_of_the_wrong_width_is_refused_and_changes_nothing() -> None:
    rows = FloatRows(3, max_rows=2)
    rows.append(1.0, 2.0, 3.0)
    rows.append(4.0, 5.0, 6.0)
    with pytest.raises(ValueError, match="2 values for 3 columns"):
        rows.append(7.0, 8.0)
    assert list(rows) == [(1.0, 2.0, 3.0), (4.0, 5.0, 6.0)]
