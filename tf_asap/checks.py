"""Argument validators shared by every module, in the Keras error style.

Each validator returns the value in its canonical Python type (an `int`, a
`float`, a `str`) or raises `ConfigurationError` with a message that says
which argument is wrong, what it must be, what was received and, where one
exists, how to fix it. Modules call these instead of writing
`isinstance(x, bool) or not isinstance(x, int)` again.

Imports nothing of tf_asap but `errors`, so every stage may use it.
"""

import math
import numbers
import operator

from tf_asap.errors import ConfigurationError

__all__ = ["check_int", "check_number", "check_fraction", "check_choice", "check_bool"]


def _fail(name, expected, value, fix, error):
    suffix = f" {fix}" if fix else ""
    raise error(f"`{name}` must be {expected}; received {value!r}.{suffix}")


def check_int(name, value, minimum=None, maximum=None, allow_none=False, fix="", error=ConfigurationError):
    """Returns `value` as a Python `int` within `[minimum, maximum]`.

    Booleans are refused (`True` is not a count); floats with an integral value
    (`3.0`) and NumPy integers are accepted.

    Args:
        name: the argument's name, as the user spelt it.
        value: what the user passed.
        minimum: the smallest allowed value, or `None` for no bound.
            Defaults to `None`.
        maximum: the largest allowed value, or `None` for no bound.
            Defaults to `None`.
        allow_none: whether `None` is a valid value (returned as is).
            Defaults to `False`.
        fix: a sentence appended to the message saying how to fix it.
            Defaults to `""`.
        error: the exception class raised. Defaults to `ConfigurationError`.

    Returns:
        The value as an `int` (or `None` when allowed).

    Raises:
        ConfigurationError: (or `error`) when the value is not such an integer.
    """
    if value is None and allow_none:
        return None
    integer = None
    if isinstance(value, bool):
        integer = None
    elif isinstance(value, float) and value.is_integer():
        integer = int(value)
    else:
        try:
            integer = operator.index(value)
        except TypeError:
            integer = None
    if integer is None or (minimum is not None and integer < minimum) or (
        maximum is not None and integer > maximum
    ):
        if minimum is not None and maximum is not None:
            expected = f"an integer in [{minimum}, {maximum}]"
        elif minimum is not None:
            expected = f"an integer >= {minimum}"
        elif maximum is not None:
            expected = f"an integer <= {maximum}"
        else:
            expected = "an integer"
        if allow_none:
            expected += " or None"
        _fail(name, expected, value, fix, error)
    return integer


def check_number(
    name,
    value,
    low=-math.inf,
    high=math.inf,
    low_open=False,
    high_open=False,
    allow_none=False,
    fix="",
    error=ConfigurationError,
):
    """Returns `value` as a finite Python `float` within the given interval.

    Args:
        name: the argument's name.
        value: what the user passed.
        low: the interval's lower end. Defaults to `-inf`.
        high: the interval's upper end. Defaults to `inf`.
        low_open: whether `low` itself is excluded. Defaults to `False`.
        high_open: whether `high` itself is excluded. Defaults to `False`.
        allow_none: whether `None` is valid (returned as is). Defaults to `False`.
        fix: a sentence appended to the message. Defaults to `""`.
        error: the exception class raised. Defaults to `ConfigurationError`.

    Returns:
        The value as a `float` (or `None` when allowed).

    Raises:
        ConfigurationError: (or `error`) when the value is not such a number.
    """
    if value is None and allow_none:
        return None
    number = None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    inside = (
        number is not None
        and math.isfinite(number)
        and (number > low if low_open else number >= low)
        and (number < high if high_open else number <= high)
    )
    if not inside:
        if math.isinf(low) and math.isinf(high):
            expected = "a finite number"
        elif math.isinf(high):
            expected = f"a number {'>' if low_open else '>='} {low:g}"
        elif math.isinf(low):
            expected = f"a number {'<' if high_open else '<='} {high:g}"
        else:
            left, right = ("(" if low_open else "["), (")" if high_open else "]")
            expected = f"a number in {left}{low:g}, {high:g}{right}"
        if allow_none:
            expected += " or None"
        _fail(name, expected, value, fix, error)
    return number


def check_fraction(name, value, allow_zero=True, allow_one=True, allow_none=False, fix="", error=ConfigurationError):
    """Returns `value` as a `float` in `[0, 1]` (ends excluded on request).

    A fraction is never given in percent here: `0.3` means 30%. A value above 1
    gets a hint to divide by 100.

    Args:
        name: the argument's name.
        value: what the user passed.
        allow_zero: whether `0` is valid. Defaults to `True`.
        allow_one: whether `1` is valid. Defaults to `True`.
        allow_none: whether `None` is valid. Defaults to `False`.
        fix: a sentence appended to the message. Defaults to `""`.
        error: the exception class raised. Defaults to `ConfigurationError`.

    Returns:
        The fraction as a `float` (or `None` when allowed).
    """
    if not fix and isinstance(value, numbers.Real) and not isinstance(value, bool) and 1 < value <= 100:
        fix = f"Fractions are not percentages: pass {value / 100:g} for {value:g}%."
    return check_number(
        name,
        value,
        0.0,
        1.0,
        low_open=not allow_zero,
        high_open=not allow_one,
        allow_none=allow_none,
        fix=fix,
        error=error,
    )


def check_choice(name, value, choices, fix="", error=ConfigurationError):
    """Returns `value` if it is one of `choices`, else raises naming them all."""
    if value not in choices:
        options = ", ".join(repr(choice) for choice in choices)
        _fail(name, f"one of {options}", value, fix, error)
    return value


def check_bool(name, value, fix="", error=ConfigurationError):
    """Returns `value` if it is a `bool` (NumPy booleans included), else raises."""
    if isinstance(value, bool):
        return value
    if type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"):  # NumPy's boolean
        return bool(value)
    _fail(name, "True or False", value, fix, error)
    return value
