"""Argument checks shared by the functions and layers, with clear errors."""

import math
import warnings

import keras
import numpy as np

DATA_FORMATS = ("channels_last", "channels_first")


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def with_current_names(values, renamed, where):
    """``values`` (a dict of arguments or settings) with renamed keys updated.

    Files and code written before a rename keep working: each old key of
    ``renamed`` (old name -> new name) found in ``values`` is moved to its
    new name, with a ``DeprecationWarning`` naming ``where`` it was read.

    Raises:
        ValueError: both the old and the new name are given.
    """
    values = dict(values)
    for old, new in renamed.items():
        if old not in values:
            continue
        if new in values:
            raise ValueError(
                f"`{old}` is the old name of `{new}`; give only `{new}` in "
                f"{where}. Received: {old}={values[old]!r}, {new}={values[new]!r}"
            )
        warnings.warn(
            f"`{old}` in {where} is deprecated; it is now called `{new}`.",
            DeprecationWarning,
            stacklevel=3,
        )
        values[new] = values.pop(old)
    return values


def check_bool(name, value):
    """Returns ``value`` if it is a bool, else raises a ValueError naming it."""
    if not isinstance(value, bool):
        raise ValueError(
            f"`{name}` must be a bool. Received: {name}={value!r}"
        )
    return value


def check_int_tuple(name, value, length, minimum, meaning, allow_single=False):
    """Returns ``value`` as a tuple of ``length`` ints >= ``minimum``.

    With ``allow_single``, one int stands for ``length`` copies of itself.
    ``meaning`` says what the ints are, for the error message.
    """
    if allow_single and _is_int(value):
        value = (value,) * length
    try:
        ints = tuple(value)
    except TypeError:
        ints = None
    if (
        ints is None
        or len(ints) != length
        or not all(_is_int(size) and size >= minimum for size in ints)
    ):
        single = f"an int >= {minimum} or " if allow_single else ""
        count = {2: "two", 3: "three"}.get(length, str(length))
        raise ValueError(
            f"`{name}` must be {single}a tuple of {count} ints >= {minimum} "
            f"({meaning}). Received: {name}={value!r}"
        )
    return tuple(int(size) for size in ints)


def check_int_pair(name, value, minimum, meaning, allow_single=False):
    """Returns ``value`` as a tuple of two ints >= ``minimum``.

    With ``allow_single``, one int stands for the pair ``(value, value)``.
    ``meaning`` says what the two ints are, for the error message.
    """
    return check_int_tuple(name, value, 2, minimum, meaning, allow_single)


def check_data_format(data_format):
    """Returns ``data_format``, or Keras' image data format for ``None``."""
    data_format = data_format or keras.config.image_data_format()
    return check_choice("data_format", data_format, DATA_FORMATS, "data format")


def check_int(name, value, minimum, maximum=None):
    """Returns ``value`` as an int in ``[minimum, maximum]``, else raises.

    ``maximum=None`` leaves the int unbounded above. bools are refused: a
    ``True`` where a count belongs is a mistake, not 1.
    """
    if (
        not _is_int(value)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bounds = (
            f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        )
        raise ValueError(
            f"`{name}` must be an int {bounds}. Received: {name}={value!r}"
        )
    return int(value)


def check_number(name, value, minimum=None, maximum=None, exclusive_minimum=False,
                 exclusive_maximum=False):
    """Returns ``value`` as a finite float within the given bounds, else raises.

    ``minimum``/``maximum`` are inclusive unless ``exclusive_minimum`` /
    ``exclusive_maximum``; ``None`` leaves that side open. bools are refused.
    """
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not (
        isinstance(value, bool)
    )
    valid = is_number and math.isfinite(value)
    if valid and minimum is not None:
        valid = value > minimum if exclusive_minimum else value >= minimum
    if valid and maximum is not None:
        valid = value < maximum if exclusive_maximum else value <= maximum
    if not valid:
        bounds = []
        if minimum is not None:
            bounds.append(f"{'>' if exclusive_minimum else '>='} {minimum}")
        if maximum is not None:
            bounds.append(f"{'<' if exclusive_maximum else '<='} {maximum}")
        expected = "a finite number" + (" " + " and ".join(bounds) if bounds else "")
        raise ValueError(
            f"`{name}` must be {expected}. Received: {name}={value!r}"
        )
    return float(value)


def check_number_pair(name, value, minimum=None, maximum=None):
    """Returns ``value`` as a ``(low, high)`` float pair, else raises.

    Both must be finite numbers (not bools) with ``low <= high``, within the
    inclusive ``minimum`` / ``maximum`` when given.
    """
    try:
        low, high = value
    except (TypeError, ValueError):
        low = high = None
    try:
        low = check_number(name, low, minimum, maximum)
        high = check_number(name, high, minimum, maximum)
        valid = low <= high
    except ValueError:
        valid = False
    if not valid:
        bounds = [f">= {minimum}"] if minimum is not None else []
        bounds += [f"<= {maximum}"] if maximum is not None else []
        within = f", each {' and '.join(bounds)}" if bounds else ""
        raise ValueError(
            f"`{name}` must be a pair (low, high) of finite numbers with low <= "
            f"high{within}. Received: {name}={value!r}"
        )
    return low, high


def check_choice(name, value, choices, what=None, allow_none=False):
    """Returns ``value`` if it is one of ``choices``, else raises a ValueError.

    ``what`` names the kind of thing in the message ("Unknown padding mode");
    it defaults to ``name``. ``allow_none`` also accepts ``None``.
    """
    if (allow_none and value is None) or value in tuple(choices):
        return value
    or_none = " or None" if allow_none else ""
    raise ValueError(
        f"Unknown {what or name}. Expected one of {tuple(choices)}{or_none}. "
        f"Received: {name}={value!r}"
    )


def check_image_batch(
    images, labels=None, images_name="images", labels_name="labels",
    allow_empty=True,
):
    """Returns ``(images, labels)`` as numpy arrays after checking their shapes.

    ``images`` must be a rank-4 batch ``(N, height, width, channels)`` (and
    not empty unless ``allow_empty``); ``labels``, when given, one per image.
    """
    images = np.asarray(images)
    if images.ndim != 4 or (not allow_empty and len(images) == 0):
        kind = "a batch" if allow_empty else "a non-empty batch"
        raise ValueError(
            f"`{images_name}` must be {kind} of images (N, height, width, "
            f"channels). Received: {images_name}.shape={images.shape}"
        )
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != images.shape[:1]:
            raise ValueError(
                f"`{labels_name}` must have one entry per image. Received: "
                f"{images_name}.shape={images.shape}, "
                f"{labels_name}.shape={labels.shape}"
            )
    return images, labels
