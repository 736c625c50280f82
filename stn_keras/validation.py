"""Argument checks shared by the functions and layers, with clear errors."""

import numpy as np


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_bool(name, value):
    """Returns ``value`` if it is a bool, else raises a ValueError naming it."""
    if not isinstance(value, bool):
        raise ValueError(
            f"`{name}` must be a bool. Received: {name}={value!r}"
        )
    return value


def check_int_pair(name, value, minimum, meaning, allow_single=False):
    """Returns ``value`` as a tuple of two ints >= ``minimum``.

    With ``allow_single``, one int stands for the pair ``(value, value)``.
    ``meaning`` says what the two ints are, for the error message.
    """
    if allow_single and _is_int(value):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = None
    if (
        pair is None
        or len(pair) != 2
        or not all(_is_int(size) and size >= minimum for size in pair)
    ):
        single = f"an int >= {minimum} or " if allow_single else ""
        raise ValueError(
            f"`{name}` must be {single}a tuple of two ints >= {minimum} "
            f"({meaning}). Received: {name}={value!r}"
        )
    return tuple(int(size) for size in pair)


def check_int(name, value, minimum):
    """Returns ``value`` as an int >= ``minimum``, else raises a ValueError."""
    if not _is_int(value) or value < minimum:
        raise ValueError(
            f"`{name}` must be an int >= {minimum}. Received: {name}={value!r}"
        )
    return int(value)
