"""Tests for the shared argument validators (tf_asap/checks.py)."""

import math

import numpy as np
import pytest

from tf_asap.checks import check_bool, check_choice, check_fraction, check_int, check_number
from tf_asap.errors import ConfigurationError, DataError


@pytest.mark.parametrize("value, expected", [(3, 3), (3.0, 3), (np.int64(4), 4), (0, 0)])
def test_check_int_accepts_integral_values(value, expected):
    result = check_int("epochs", value, minimum=0)
    assert result == expected and type(result) is int


@pytest.mark.parametrize("value", [True, 2.5, "3", None, -1, math.nan])
def test_check_int_rejects_non_counts_naming_the_argument(value):
    with pytest.raises(ConfigurationError, match=r"`epochs` must be an integer >= 0; received"):
        check_int("epochs", value, minimum=0)


def test_check_int_bounds_fix_and_error_class():
    with pytest.raises(DataError, match=r"in \[1, 5\]; received 9\. Pass fewer\.$"):
        check_int("n", 9, minimum=1, maximum=5, fix="Pass fewer.", error=DataError)
    assert check_int("n", None, allow_none=True) is None


def test_check_number_intervals():
    assert check_number("lr", 0.1, 0.0, low_open=True) == 0.1
    with pytest.raises(ConfigurationError, match=r"a number > 0; received 0"):
        check_number("lr", 0, 0.0, low_open=True)
    for bad in (math.inf, math.nan, True, "1"):
        with pytest.raises(ConfigurationError, match="`x` must be a finite number"):
            check_number("x", bad)


def test_check_fraction_hints_at_percentages():
    assert check_fraction("params_reduction", 0.3) == 0.3
    with pytest.raises(ConfigurationError, match=r"pass 0\.3 for 30%"):
        check_fraction("params_reduction", 30)
    with pytest.raises(ConfigurationError, match=r"in \(0, 1\)"):
        check_fraction("f", 1.0, allow_zero=False, allow_one=False)


def test_check_choice_and_bool():
    assert check_choice("mode", "max", ("max", "min")) == "max"
    with pytest.raises(ConfigurationError, match=r"one of 'max', 'min'; received 'up'"):
        check_choice("mode", "up", ("max", "min"))
    assert check_bool("flag", np.bool_(True)) is True
    with pytest.raises(ConfigurationError, match="True or False"):
        check_bool("flag", 1)
