"""A labelled grid of samples, so a person can see what a model sees."""

import numpy as np
from matplotlib.figure import Figure


def _displayable(image):
    """An image as matplotlib shows it: grey, RGB, or two channels side by side."""
    if image.shape[-1] == 1:
        return image[..., 0], "gray"
    if image.shape[-1] == 3:
        return image, None
    # Multi-channel images (addition: one digit per channel) side by side,
    # with a grey bar between them.
    separator = np.full((image.shape[0], 1), 128, dtype=image.dtype)
    channels = []
    for channel in np.moveaxis(image, -1, 0):
        channels += [channel, separator]
    return np.concatenate(channels[:-1], axis=1), "gray"


def save_preview(images, labels, class_names, path, title=None, columns=8):
    """Writes a grid of ``images`` captioned with their class names to ``path``.

    Args:
        images: NHWC uint8 images.
        labels: their int labels.
        class_names: a name per class.
        path: the output image file (``.png``).
        title: a title over the grid.
        columns: images per row.
    """
    count = len(images)
    if count == 0:
        raise ValueError("There are no images to preview.")
    rows = -(-count // columns)
    aspect = images.shape[2] * max(1, images.shape[3] if images.shape[3] != 3 else 1)
    width_per_image = 1.6 * aspect / images.shape[1]
    # A Figure of its own: saving renders with Agg, and matplotlib's global
    # backend (a notebook's choice) is left alone.
    figure = Figure(figsize=(columns * width_per_image, rows * 1.9))
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= count:
            continue
        picture, colour_map = _displayable(images[index])
        axis.imshow(picture, cmap=colour_map, vmin=0, vmax=255, interpolation="nearest")
        name = class_names[int(labels[index])]
        axis.set_title(name if len(name) <= 22 else name[:21] + "…", fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path
