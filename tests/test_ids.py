from telematics.ids import is_printable_id, new_id


def test_printable_ids_are_one_to_sixty_four_printable_characters() -> None:
    assert is_printable_id("V-001")
    assert is_printable_id("苏E·12345")
    assert is_printable_id("x" * 64)
    for bad in ("", "x" * 65, "a\x00b", "tab\there", "line\n", None, 7):
        assert not is_printable_id(bad), repr(bad)


def test_new_ids_are_32_hex_digits_and_differ() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
