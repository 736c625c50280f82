"""``st_samples.png``: inputs with the regions their transformers sample."""

import logging

import numpy as np

from stn_keras import visualization
from stn_keras.evaluation.sample_picking import pick_samples
from stn_keras.export.names import TRANSFORMERS_METADATA

logger = logging.getLogger(__name__)


def draw_transformer_views(views, images, labels, predictions, class_names, path):
    """``st_samples.png`` from the `TransformerView` list of a batch.

    ``labels=None`` (images of unknown class) shows the predictions alone.

    Returns the path, or ``None`` when there is no transformer to draw.
    """
    if not views:
        return None
    input_size = tuple(images.shape[1:3])
    transformed = [(view.name, view.images) for view in views]
    outlines = [
        visualization.sampled_region_outline(
            view.transform,
            view.theta,
            tuple(view.images.shape[1:3]),
            input_size,
            align_corners=view.align_corners,
            control_shape=view.control_shape,
        )
        for view in views
    ]
    return visualization.plot_transformer_samples(
        path, images, transformed, outlines, predictions, labels, class_names
    )


def write_transformer_samples(trained, images, labels, predictions, class_names,
                              num_samples, path):
    """Draws ``num_samples`` images of varied classes, or logs why it cannot.

    Returns the path, or ``None`` for a model without a spatial transformer
    on its input or a SavedModel without transformer metadata.
    """
    if trained.transformer_views is None:
        logger.info(
            "The SavedModel has no transformer metadata (%s): re-export it "
            "with `python -m stn_keras.export` to get st_samples.png.",
            TRANSFORMERS_METADATA,
        )
        return None
    chosen = pick_samples(labels, num_samples)
    written = draw_transformer_views(
        trained.transformer_views(images[chosen]),
        images[chosen],
        np.asarray(labels)[chosen],
        predictions[chosen],
        class_names,
        path,
    )
    if written is None:
        logger.info("The model has no spatial transformer: no st_samples.png.")
    return written
