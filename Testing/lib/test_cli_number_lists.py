"""The one number-list parser (LuDoseResponseLib.parsing) that the command line and the Slicer panel use.

Expected values are the literal numbers typed; rejected texts are those Python's float() would
accept although no user means them as a plain number (NaN, infinity, digit separators, non-ASCII digits).
"""

from __future__ import annotations

import pytest

from LuDoseResponseLib.errors import InputError
from LuDoseResponseLib.parsing import parse_number, parse_number_list


@pytest.mark.parametrize(("text", "expected"), [
    ("76,135", (76.0, 135.0)),
    (" 76 ; 135, ", (76.0, 135.0)),
    ("0.5", (0.5,)),
    (".5,-2,+3", (0.5, -2.0, 3.0)),
    ("1e2,2.5E-1", (100.0, 0.25)),
])
def test_plain_numbers(text, expected):
    assert parse_number_list(text, "doses") == expected


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-Infinity", "1_000", "\u0661\u0662", "\uff17\uff16", "0x10",
                                 "76 135", "1,,a", "5 Gy"])
def test_what_float_would_take_but_a_user_does_not_mean_is_rejected(bad):
    with pytest.raises(InputError, match=r"^TCP report doses: '.*' is not a number"):
        parse_number_list(bad, "TCP report doses")


def test_overflow_and_empty_are_named():
    with pytest.raises(InputError, match=r"^--doses: '1e400' is too large to be a number"):
        parse_number_list("76,1e400", "--doses")
    with pytest.raises(InputError, match=r"^TCP targets: give at least one number"):
        parse_number_list(" , ;", "TCP targets")
    with pytest.raises(InputError, match=r"^--seed: 'x' is not a number"):
        parse_number("x", "--seed")
