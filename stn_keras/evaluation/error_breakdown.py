"""A model's errors read against the distortion of each image.

When a distorted-MNIST model's error will not move, two explanations call
for different fixes. Errors gathered where the distortion is strongest
(rotations near the limit, the smallest scales) are the transformer's or
the training range's to fix. Errors the model makes on the same digits
undistorted are the digits' own (ambiguous or badly written ones), which
no transformer undoes. `errors_by_parameter` bins the errors by each
parameter drawn per image; `centred_on_canvas` gives the same digits
undistorted the model's input size, and `undistorted_errors` compares the
model's errors on them with its errors on the distorted ones
(``evaluate_model.distortion_breakdown`` runs the model).
"""

import numpy as np

from stn_keras.validation import check_int
from stn_keras.validation import check_int_pair

# Parameters that index other images (the second digit of a sum, the source
# of a clutter patch): numbers, but not amounts of distortion.
INDEX_PARAMETERS = ("partner", "patch_source")


def _check_wrong(name, wrong):
    wrong = np.asarray(wrong)
    if wrong.ndim != 1 or wrong.dtype != bool:
        raise ValueError(
            f"`{name}` must be a 1-D boolean array, True for each image the model "
            f"gets wrong. Received: dtype={wrong.dtype}, shape={wrong.shape}"
        )
    return wrong


def errors_by_parameter(wrong, parameters, bin_count=6):
    """Images and errors in equal-width bins of each per-image parameter.

    Args:
        wrong: boolean array ``(n,)``: which images the model gets wrong.
        parameters: ``{name: array}`` as a distortion draws them (see
            ``Dataset.split_distortion``), first axis the image. Parameters
            of shape ``(n,)`` that take more than one value are binned. Left
            out: those with several values per image (per clutter patch,
            corner, control point, or per digit of ``addition``), those
            with one value for every image, and ``INDEX_PARAMETERS``.
        bin_count: bins over each parameter's drawn range, the last one
            closed on the right.

    Returns:
        ``{name: [{"low", "high", "images", "errors"}, ...]}``, one entry
        per bin from the lowest values up, in the order of ``parameters``.

    Raises:
        ValueError: ``wrong`` is not a 1-D boolean array, ``bin_count`` is
            not a positive int, or a parameter's first axis is not one entry
            per image.
    """
    wrong = _check_wrong("wrong", wrong)
    check_int("bin_count", bin_count, 1)
    table = {}
    for name, values in parameters.items():
        values = np.asarray(values)
        if values.ndim == 0 or len(values) != len(wrong):
            raise ValueError(
                f"Parameter {name!r} must have one entry per image. Received: "
                f"len(wrong)={len(wrong)}, {name}.shape={values.shape}"
            )
        if (
            name in INDEX_PARAMETERS
            or values.ndim != 1
            or len(values) == 0
            or values.min() == values.max()
        ):
            continue
        edges = np.linspace(float(values.min()), float(values.max()), bin_count + 1)
        images, _ = np.histogram(values, edges)
        errors, _ = np.histogram(values[wrong], edges)
        table[name] = [
            {"low": float(low), "high": float(high), "images": int(count), "errors": int(error)}
            for low, high, count, error in zip(edges[:-1], edges[1:], images, errors)
        ]
    return table


def centred_on_canvas(images, canvas_size):
    """Each image pasted, unchanged, in the middle of a black canvas.

    Args:
        images: NHWC array.
        canvas_size: ``(height, width)`` of the canvas, or one int for a
            square one; at least the images' size.

    Returns:
        An array ``(n, height, width, channels)`` of the images' dtype; an
        odd margin puts the extra row or column below or right.

    Raises:
        ValueError: ``images`` is not NHWC, or larger than the canvas.
    """
    images = np.asarray(images)
    height, width = check_int_pair("canvas_size", canvas_size, 1, "pixels", allow_single=True)
    if images.ndim != 4 or images.shape[1] > height or images.shape[2] > width:
        raise ValueError(
            f"`images` must be an NHWC batch no larger than the {height}x{width} "
            f"canvas. Received: shape={images.shape}"
        )
    top = (height - images.shape[1]) // 2
    left = (width - images.shape[2]) // 2
    canvas = np.zeros((len(images), height, width, images.shape[3]), images.dtype)
    canvas[:, top : top + images.shape[1], left : left + images.shape[2]] = images
    return canvas


def undistorted_errors(wrong, undistorted_wrong):
    """The errors on the undistorted digits, and how many of the errors on
    the distorted ones they account for.

    Args:
        wrong: boolean ``(n,)``: the model's errors on the distorted images.
        undistorted_wrong: boolean ``(n,)``: its errors on the same digits
            undistorted, in the same order.

    Returns:
        A dict: ``errors`` (undistorted) and ``also_wrong_distorted``, the
        digits wrong both ways.

    Raises:
        ValueError: either is not a 1-D boolean array, or their lengths
            differ.
    """
    wrong = _check_wrong("wrong", wrong)
    undistorted_wrong = _check_wrong("undistorted_wrong", undistorted_wrong)
    if wrong.shape != undistorted_wrong.shape:
        raise ValueError(
            "`wrong` and `undistorted_wrong` must mark the same images. Received: "
            f"len(wrong)={len(wrong)}, len(undistorted_wrong)={len(undistorted_wrong)}"
        )
    return {
        "errors": int(undistorted_wrong.sum()),
        "also_wrong_distorted": int((undistorted_wrong & wrong).sum()),
    }


def format_error_breakdown(breakdown, num_errors):
    """The breakdown as the text ``evaluate.py`` prints.

    Args:
        breakdown: ``{"by_parameter": ..., "undistorted": ... or None}``, as
            ``evaluate`` puts it in ``metrics.json`` (``by_parameter`` may be
            empty).
        num_errors: the model's errors on the distorted images.
    """
    lines = []
    for name, rows in breakdown["by_parameter"].items():
        lines.append(f"Errors by {name}:")
        for row in rows:
            rate = f"{100 * row['errors'] / row['images']:6.2f}%" if row["images"] else "    n/a"
            lines.append(
                f"  {row['low']:9.3f} to {row['high']:9.3f}  "
                f"{row['errors']:5d} of {row['images']:6d}  {rate}"
            )
    undistorted = breakdown["undistorted"]
    if undistorted is not None:
        lines.append(
            f"The same digits undistorted, centred on the canvas: {undistorted['errors']} "
            f"errors, {undistorted['also_wrong_distorted']} of them among the "
            f"{num_errors} errors on the distorted images"
        )
    return "\n".join(lines)
