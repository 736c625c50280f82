"""Pictures of a trained model: confusion matrices, transformer samples, mistakes.

Each function builds a ``matplotlib.figure.Figure`` of its own, not a
pyplot figure, and writes it as one PNG (whose path it returns): saving a PNG
renders with Agg without a display, and matplotlib's global backend, which a
notebook user may have chosen, is left as it was.
"""

import textwrap

import numpy as np
from keras import ops
from matplotlib.figure import Figure

from stn_keras.ops import DEFAULT_TPS_CONTROL_SHAPE
from stn_keras.ops import make_grid
from stn_keras.ops import normalized_to_pixel

OUTLINE_COLORS = ("red", "cyan", "yellow", "lime")
# Characters per title line under a 2-inch picture at font size 8: longer
# class names (GTSRB's "Right-of-way at the next intersection") would run
# into the neighbouring titles.
MISTAKE_TITLE_WIDTH = 28


def displayable_images(images):
    """``(N, H, W, C)`` float images -> ``(N, H, W, 1 or 3)`` in ``[0, 1]``.

    One- and three-channel images are clipped to ``[0, 1]``; two-channel
    images (the addition task) become a magenta/green composite, channel 0
    magenta and channel 1 green; any other channel count (feature maps) is
    shown as its channel mean, rescaled per image to ``[0, 1]``.
    """
    images = np.asarray(images, dtype="float32")
    channels = images.shape[-1]
    if channels in (1, 3):
        return np.clip(images, 0.0, 1.0)
    if channels == 2:
        first, second = images[..., 0], images[..., 1]
        return np.clip(np.stack([first, second, first], axis=-1), 0.0, 1.0)
    mean = images.mean(axis=-1, keepdims=True)
    low = mean.min(axis=(1, 2, 3), keepdims=True)
    high = mean.max(axis=(1, 2, 3), keepdims=True)
    return (mean - low) / np.maximum(high - low, 1e-12)


def sampled_region_outline(
    transform,
    theta,
    output_size,
    input_size,
    align_corners=False,
    control_shape=DEFAULT_TPS_CONTROL_SHAPE,
):
    """Where the transformer's output border lies in the input, in pixels.

    The border points of the output grid (its outermost pixel centres, in
    order around the rectangle, closed) are mapped through the grid
    generator with the predicted ``theta``, then from normalised ``[-1, 1]``
    coordinates to input pixel coordinates (pixel ``i`` centred at ``i``,
    as ``imshow`` draws it). Non-affine transforms give a curved outline.

    Args:
        transform: the transformer's transform name.
        theta: ``(batch, num_parameters)`` predicted parameters.
        output_size: ``(height, width)`` of the transformer's output.
        input_size: ``(height, width)`` of the transformer's input.
        align_corners: the transformer's grid convention.
        control_shape: the transformer's TPS lattice shape.

    Returns:
        ``(batch, points, 2)`` numpy array of ``(x, y)`` pixel coordinates.
    """
    grid = ops.convert_to_numpy(
        make_grid(
            transform,
            ops.convert_to_tensor(np.asarray(theta, "float32")),
            output_size,
            align_corners=align_corners,
            control_shape=control_shape,
        )
    )
    border = np.concatenate(
        [
            grid[:, 0, :],
            grid[:, :, -1],
            grid[:, -1, ::-1],
            grid[:, ::-1, 0],
            grid[:, :1, 0],
        ],
        axis=1,
    )
    height, width = input_size
    sizes = np.asarray([width, height], dtype="float32")
    return normalized_to_pixel(border, sizes, align_corners)


def _show(axis, image):
    if image.shape[-1] == 1:
        axis.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    else:
        axis.imshow(image)
    axis.set_xticks([])
    axis.set_yticks([])


def _draw_outlines(axis, image_size, outlines):
    """Draws sampled-region outlines over an image already shown on ``axis``.

    The view grows to hold outlines that reach outside the image (the
    transformer then samples zero padding), shown on a grey background
    with the image's own border dashed.
    """
    height, width = image_size
    low = np.minimum(np.min([o.min(axis=0) for o in outlines], axis=0), -0.5)
    high = np.maximum(
        np.max([o.max(axis=0) for o in outlines], axis=0), [width - 0.5, height - 0.5]
    )
    margin = 0.03 * max(high - low)
    axis.set_facecolor("0.55")
    axis.plot(
        [-0.5, width - 0.5, width - 0.5, -0.5, -0.5],
        [-0.5, -0.5, height - 0.5, height - 0.5, -0.5],
        color="white",
        linestyle="--",
        linewidth=0.8,
    )
    for index, outline in enumerate(outlines):
        axis.plot(
            outline[:, 0],
            outline[:, 1],
            color=OUTLINE_COLORS[index % len(OUTLINE_COLORS)],
            linewidth=1.5,
        )
    axis.set_xlim(low[0] - margin, high[0] + margin)
    axis.set_ylim(high[1] + margin, low[1] - margin)


def plot_confusion_matrix(matrix, class_names, path):
    """Counts and row-normalised confusion matrix side by side.

    Args:
        matrix: ``(num_classes, num_classes)`` integer counts, true classes
            as rows, predicted classes as columns.
        class_names: one name per class.
        path: where to write the PNG.
    """
    matrix = np.asarray(matrix)
    row_totals = matrix.sum(axis=1, keepdims=True)
    normalised = matrix / np.maximum(row_totals, 1)
    num_classes = len(class_names)
    size = max(6.0, 0.32 * num_classes + 3.0)
    figure = Figure(figsize=(2 * size + 1, size))
    axes = figure.subplots(1, 2)
    annotate = num_classes <= 20
    for axis, values, title, fmt in (
        (axes[0], matrix, "Counts", "d"),
        (axes[1], normalised, "Row-normalised (recall per class)", ".2f"),
    ):
        image = axis.imshow(values, cmap="Blues")
        figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
        axis.set_title(title)
        axis.set_xlabel("Predicted class")
        axis.set_ylabel("True class")
        ticks = np.arange(num_classes)
        long_names = max(len(str(name)) for name in class_names) > 3
        axis.set_xticks(ticks, labels=class_names, rotation=90 if long_names else 0)
        axis.set_yticks(ticks, labels=class_names)
        if annotate:
            threshold = values.max() / 2.0 if values.max() > 0 else 1.0
            for row in range(num_classes):
                for column in range(num_classes):
                    value = values[row, column]
                    if value == 0:
                        continue
                    axis.text(
                        column,
                        row,
                        format(value, fmt),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if value > threshold else "black",
                    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def plot_transformer_samples(
    path,
    images,
    transformed,
    outlines,
    predictions,
    labels,
    class_names,
):
    """One row per image: input, input with outlines, outputs, prediction.

    Args:
        path: where to write the PNG.
        images: ``(count, H, W, C)`` float inputs in ``[0, 1]``.
        transformed: list of ``(name, outputs)`` per transformer that
            samples the input, ``outputs`` ``(count, h, w, C)``.
        outlines: list (same order) of ``(count, points, 2)`` pixel outlines
            from :func:`sampled_region_outline`.
        predictions, labels: ``(count,)`` class indices; ``labels=None``
            (images without a known class) shows the prediction alone.
        class_names: one name per class.
    """
    count = len(images)
    columns = 3 + len(transformed)
    figure = Figure(figsize=(2.1 * columns, 2.1 * count))
    axes = figure.subplots(count, columns, squeeze=False)
    shown = displayable_images(images)
    for row in range(count):
        _show(axes[row, 0], shown[row])
        _show(axes[row, 1], shown[row])
        _draw_outlines(axes[row, 1], images.shape[1:3], [o[row] for o in outlines])
        for index, (_, outputs) in enumerate(transformed):
            _show(axes[row, 2 + index], displayable_images(outputs[row : row + 1])[0])
        text = f"predicted {class_names[predictions[row]]}"
        color = "black"
        if labels is not None:
            text += f"\ntrue {class_names[labels[row]]}"
            color = "darkgreen" if predictions[row] == labels[row] else "firebrick"
        text_axis = axes[row, -1]
        text_axis.axis("off")
        text_axis.text(
            0.5,
            0.5,
            text,
            ha="center",
            va="center",
            fontsize=11,
            color=color,
            transform=text_axis.transAxes,
        )
    titles = ["input", "sampled region"]
    titles += [f"{name} output" for name, _ in transformed]
    titles.append("prediction")
    for axis, title in zip(axes[0], titles):
        axis.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def mistake_title(predicted_name, confidence, true_name, width=MISTAKE_TITLE_WIDTH):
    """The caption of a misclassified image: prediction, confidence, truth.

    Each part is wrapped to lines of at most ``width`` characters.
    """
    return "\n".join(
        (
            textwrap.fill(f"pred {predicted_name} ({confidence:.2f})", width),
            textwrap.fill(f"true {true_name}", width),
        )
    )


def plot_misclassified(
    path, images, predictions, labels, confidences, class_names, limit=24
):
    """A grid of up to ``limit`` misclassified images with their labels.

    Args:
        path: where to write the PNG.
        images: ``(N, H, W, C)`` float images in ``[0, 1]``.
        predictions, labels: ``(N,)`` class indices.
        confidences: ``(N,)`` probability of the predicted class.
        class_names: one name per class.
        limit: most images to show.
    """
    wrong = np.flatnonzero(np.asarray(predictions) != np.asarray(labels))[:limit]
    columns = 6
    rows = max(1, int(np.ceil(len(wrong) / columns)))
    figure = Figure(figsize=(2.0 * columns, 2.6 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    if len(wrong) == 0:
        axes[0, 0].text(
            0.0, 0.5, "No misclassified images.", transform=axes[0, 0].transAxes
        )
    shown = displayable_images(np.asarray(images)[wrong]) if len(wrong) else []
    for axis, index, image in zip(axes.ravel(), wrong, shown):
        _show(axis, image)
        axis.set_title(
            mistake_title(
                class_names[predictions[index]], confidences[index], class_names[labels[index]]
            ),
            fontsize=8,
            color="firebrick",
        )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path
