"""The model registry: build any model of the project by name."""

import inspect

from stn_keras.models import blocks
from stn_keras.models import gtsrb
from stn_keras.models import mnist
from stn_keras.models.initialization import check_initialization
from stn_keras.models.initialization import initialize_fan_in_uniform
from stn_keras.ops import TRANSFORMS
from stn_keras.validation import check_choice
from stn_keras.validation import check_int
from stn_keras.validation import with_current_names

MODELS = {
    "fcn": mnist.fcn,
    "cnn": mnist.cnn,
    "st_fcn": mnist.st_fcn,
    "st_cnn": mnist.st_cnn,
    "idsia": gtsrb.idsia,
    "st_idsia": gtsrb.st_idsia,
    "compact_cnn": gtsrb.compact_cnn,
    "compact_st_cnn": gtsrb.compact_st_cnn,
}
TRANSFORMER_OPTIONS = ("transform", "localization_convolution", "localization_activation")
# Old names of builder options (old name -> new), still read from old run configs.
RENAMED_OPTIONS = {
    "loc_conv": "localization_convolution",
    "loc_activation": "localization_activation",
    "grid_shape": "control_shape",
}


def has_spatial_transformer(name):
    """Whether model ``name`` of :data:`MODELS` contains a spatial transformer."""
    return "transform" in inspect.signature(_builder(name)).parameters


def _builder(name):
    return MODELS[check_choice("name", name, MODELS, what="model")]


def check_transformer_options(
    name, transform=None, localization_convolution=None, localization_activation=None
):
    """Validates the transformer options of model ``name``.

    Returns:
        The options that were given (not ``None``), as a dict.

    Raises:
        ValueError: an unknown model or option value, or an option given
            to a model without a spatial transformer.
    """
    given = {
        key: value
        for key, value in zip(
            TRANSFORMER_OPTIONS,
            (transform, localization_convolution, localization_activation),
        )
        if value is not None
    }
    if has_spatial_transformer(name):
        check_choice("transform", given.get("transform", "affine"), TRANSFORMS)
        check_choice(
            "localization_convolution",
            given.get("localization_convolution", "conv"),
            blocks.LOCALIZATION_CONVOLUTIONS,
        )
        check_choice(
            "localization_activation",
            given.get("localization_activation", "relu"),
            blocks.LOCALIZATION_ACTIVATIONS,
        )
    elif given:
        raise ValueError(
            f"Model '{name}' has no spatial transformer, so "
            f"{', '.join(sorted(given))} does not apply. Use one of "
            f"{tuple(n for n in MODELS if has_spatial_transformer(n))} or "
            f"leave it unset. Received: {given}"
        )
    return given


def build_model(
    name,
    input_shape,
    num_classes,
    transform=None,
    localization_convolution=None,
    localization_activation=None,
    initialization="keras",
    **options,
):
    """Builds model ``name`` of :data:`MODELS` for images of ``input_shape``.

    Every model takes float32 images in ``[0, 1]`` of shape
    ``(batch, height, width, channels)`` and returns class probabilities
    (a float32 softmax, also under mixed precision).

    Args:
        name: one of :data:`MODELS`.
        input_shape: ``(height, width, channels)``.
        num_classes: number of classes, >= 2.
        transform: the transformer's transform (one of
            ``stn_keras.ops.TRANSFORMS``); ``None`` means ``"affine"`` for
            models with a transformer. Baselines accept only ``None``.
        localization_convolution: ``"conv"`` or ``"coordconv"`` in the
            localisation net; ``None`` means ``"conv"``. Baselines accept
            only ``None``.
        localization_activation: ``"relu"`` or ``"leaky_relu"`` in the
            localisation net; ``None`` means ``"relu"``. Baselines accept
            only ``None``.
        initialization: ``"keras"`` (Keras' defaults: Glorot-uniform
            kernels, zero biases) or ``"fan_in_uniform"`` (PyTorch's and
            Torch7's: kernels and biases uniform in ``+-1/sqrt(fan_in)``;
            see ``stn_keras.models.initialization``). Transformers start at
            the identity either way.
        **options: keyword arguments of the model's builder function (for
            example ``filters`` or ``num_transformers`` of ``st_cnn``).
            The old names of :data:`RENAMED_OPTIONS` are read as the new
            ones, with a ``DeprecationWarning``.

    Returns:
        A functional ``keras.Model`` whose layers all have names.
    """
    builder = _builder(name)
    try:
        input_shape = tuple(int(size) for size in input_shape)
    except (TypeError, ValueError):
        input_shape = None
    if input_shape is None or len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(
            "`input_shape` must be (height, width, channels) of positive ints. "
            f"Received: input_shape={input_shape!r}"
        )
    num_classes = check_int("num_classes", num_classes, 2)
    explicit = zip(
        TRANSFORMER_OPTIONS, (transform, localization_convolution, localization_activation)
    )
    options = with_current_names(
        {**options, **{key: value for key, value in explicit if value is not None}},
        RENAMED_OPTIONS,
        f"the options of model '{name}'",
    )
    given = check_transformer_options(
        name, *(options.pop(key, None) for key in TRANSFORMER_OPTIONS)
    )
    accepted = [
        parameter
        for parameter in inspect.signature(builder).parameters
        if parameter not in ("input_shape", "num_classes", *TRANSFORMER_OPTIONS)
    ] + ["initialization"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for model '{name}'. "
            f"Expected some of {accepted}. Received: options={options}"
        )
    initialization = check_initialization(initialization)
    model = builder(input_shape, num_classes, **given, **options)
    if initialization == "fan_in_uniform":
        initialize_fan_in_uniform(model)
    return model
