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


def spatial_transformers(model):
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
        `spatial_transformers`: the transformer's output and its
        ``(batch, num_parameters)`` float32 parameters. ``None`` when the
        model has no spatial transformer.
    """
    found = find_spatial_transformers(model)
    if not found:
        return None
    outputs = []
    for path, layer in found:
        layer_input = model.inputs[0]
        # Walk down the nested models: each level maps the enclosing model's
        # input to the input of the next level.
        for level, enclosing in enumerate(path):
            target = path[level + 1] if level + 1 < len(path) else layer
            layer_input = keras.Model(enclosing.inputs, _first_call_input(target))(
                layer_input
            )
        outputs.extend(_ThetaProbe(layer)(layer_input))
    return keras.Model(model.inputs, outputs, name=f"{model.name}_transformers")


def _first_call_input(layer):
    # `Model.input` is a model's own Input; the tensor that fed the layer's
    # first call is what `Operation.input` returns.
    return keras.Operation.input.fget(layer)


class _ThetaProbe(keras.layers.Layer):
    """Calls a transformer asking for ``[images, theta]``, whatever its setting.

    The transformer computes theta only when ``return_theta`` is set, so the
    probe sets it for the duration of each call: the transformer's own code
    and weights run. Building the probe adds no node to the transformer, so
    its ``input`` and ``output`` stay those of the model.
    """

    def __init__(self, transformer, **kwargs):
        super().__init__(name=f"{transformer.name}_probe", **kwargs)
        self.transformer = transformer

    def _with_theta(self, function, *arguments):
        return_theta = self.transformer.return_theta
        self.transformer.return_theta = True
        try:
            return function(*arguments)
        finally:
            self.transformer.return_theta = return_theta

    def call(self, images):
        images, theta = self._with_theta(self.transformer, images)
        return [images, theta]

    def compute_output_spec(self, images):
        return self._with_theta(self.transformer.compute_output_spec, images)
