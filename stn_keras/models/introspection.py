"""Finding the spatial transformers of a model and what they compute.

The one place that walks a model for its `SpatialTransformer` layers, nested
functional and sequential sub-models included; the training callbacks, the
evaluation, the SavedModel export and the tests all call it.
"""

import keras

from stn_keras.layers.spatial_transformer import SpatialTransformer


def find_spatial_transformers(model):
    """Lists the `SpatialTransformer` layers of a model with where they sit.

    Transformers inside another transformer's localisation network are not
    listed: their input is not an intermediate tensor of ``model``.

    Args:
        model: a Keras functional or sequential model.

    Returns:
        A list of ``(path, layer)`` in graph order, where ``path`` is the
        tuple of models leading to the layer, ``model`` first and the model
        that calls the layer last.
    """
    found = []
    for layer in model.layers:
        if isinstance(layer, SpatialTransformer):
            found.append(((model,), layer))
        elif isinstance(layer, keras.Model):
            found.extend(
                ((model, *path), inner)
                for path, inner in find_spatial_transformers(layer)
            )
    return found


def spatial_transformer_layers(model):
    """The `SpatialTransformer` layers of ``model`` in graph order, nested ones included."""
    return [layer for _, layer in find_spatial_transformers(model)]


def transformer_model(model):
    """A model from ``model``'s input to what each spatial transformer computes.

    Works for transformers built with or without ``return_theta`` and for
    transformers inside nested sub-models; the sub-model shares the weights
    of ``model``. Call it or ``predict`` with it on any backend, or inside a
    traced ``tf.function``.

    Args:
        model: a functional or sequential model with one input.

    Returns:
        A ``keras.Model`` returning the flat list ``[images_1, theta_1,
        images_2, theta_2, ...]``, one pair per transformer of
        `spatial_transformer_layers`: the transformer's output and its
        ``(batch, num_parameters)`` float32 parameters. ``None`` when the
        model has no spatial transformer.
    """
    if not find_spatial_transformers(model):
        return None
    collected = []
    _rerun(model, model.inputs[0], collected)
    return keras.Model(model.inputs, collected, name=f"{model.name}_transformers")


def _rerun(model, inputs, collected):
    """Calls ``model``'s layers anew on the symbolic ``inputs``.

    Each spatial transformer is called through a `_ThetaProbe`, whose images
    and theta are appended to ``collected``; nested models holding a
    transformer are rerun the same way, so that every collected tensor is
    one of the graph of ``inputs``. Returns the outputs of ``model``.
    """
    if isinstance(model, keras.Sequential):
        outputs = inputs
        for layer in model.layers:
            outputs = _call_collecting(layer, collected, outputs)
        return outputs
    found = []
    # A functional model reruns on inputs of its own; the rerun, returning
    # what it found as well, is then called on ``inputs``.
    rerun = keras.models.clone_model(
        model,
        clone_function=lambda layer: layer,
        call_function=lambda layer, *arguments, **keywords: _call_collecting(
            layer, found, *arguments, **keywords
        ),
    )
    outputs, found_here = keras.Model(rerun.inputs, [rerun.output, found])(inputs)
    collected.extend(found_here)
    return outputs


def _call_collecting(layer, collected, *arguments, **keywords):
    """Calls ``layer`` as the model did, collecting what transformers compute."""
    if isinstance(layer, SpatialTransformer):
        images, theta = _ThetaProbe(layer)(arguments[0])
        collected.extend([images, theta])
        return [images, theta] if layer.return_theta else images
    if isinstance(layer, keras.Model) and find_spatial_transformers(layer):
        return _rerun(layer, arguments[0], collected)
    return layer(*arguments, **keywords)


class _ThetaProbe(keras.layers.Layer):
    """Calls a transformer for its output and theta, whatever ``return_theta``.

    It runs the transformer's own `localize` and `sample` with its weights,
    in one pass.
    """

    def __init__(self, transformer, **kwargs):
        super().__init__(name=f"{transformer.name}_probe", **kwargs)
        self.transformer = transformer

    def call(self, images):
        theta = self.transformer.localize(images)
        return [self.transformer.sample(images, theta), theta]

    def compute_output_spec(self, images):
        output = self.transformer.compute_output_spec(images)
        if self.transformer.return_theta:
            return output
        spatial_rank = len(images.shape) - 2
        theta_shape = (images.shape[0], self.transformer.num_parameters(spatial_rank))
        return [output, keras.KerasTensor(theta_shape, dtype="float32")]
