"""The optimizer of a run, with its learning-rate schedule, weight decay and
moving average of the weights."""

import keras

from stn_keras import models


def make_optimizer(settings, steps_per_epoch, model=None):
    """The optimizer that ``settings`` describe, with its learning-rate schedule.

    With ``weight_decay``, ``model`` is required: its variables of rank 0 or
    1 (biases, the transformer's identity bias) are excluded from the decay,
    as pulling them to zero would move the transformer away from the
    identity, and so are the transformers frozen by a
    ``localization_learning_rate_multiplier`` of 0.

    Args:
        settings: the run's `stn_keras.settings.RunSettings`.
        steps_per_epoch: training steps of one epoch (the cosine schedule
            decays over all of the run's steps).
        model: the model to train; required with ``weight_decay``.
    """
    optimizer = _optimizer(settings, steps_per_epoch)
    if settings.weight_decay:
        if model is None:
            raise ValueError(
                "`make_optimizer` needs the model when `weight_decay` is set, "
                "to spare its biases and frozen transformers. Received: "
                f"weight_decay={settings.weight_decay}, model=None"
            )
        optimizer.exclude_from_weight_decay(var_list=_undecayed_variables(model))
    return optimizer


def _undecayed_variables(model):
    frozen = [
        variable
        for layer in models.spatial_transformer_layers(model)
        if layer.localization_learning_rate_multiplier == 0
        for variable in layer.trainable_variables
    ]
    return frozen + [variable for variable in model.trainable_variables if len(variable.shape) <= 1]


def _optimizer(settings, steps_per_epoch):
    learning_rate = settings.learning_rate
    if settings.lr_schedule == "step":
        learning_rate = keras.optimizers.schedules.ExponentialDecay(
            learning_rate,
            decay_steps=settings.lr_decay_steps,
            decay_rate=settings.lr_decay_factor,
            staircase=True,
        )
    elif settings.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=settings.epochs * steps_per_epoch
        )
    common = {
        # Keras' weight_decay is decoupled from the gradient (AdamW's), on
        # every optimizer; None turns it off.
        "weight_decay": settings.weight_decay or None,
        **_moving_average(settings),
    }
    if settings.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=settings.momentum, **common)
    if settings.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, momentum=settings.momentum, **common)
    return keras.optimizers.Adam(learning_rate, **common)


def _moving_average(settings):
    """The optimizer's arguments of the weights' moving average, if any."""
    if settings.ema_momentum is None:
        return {}
    return {"use_ema": True, "ema_momentum": settings.ema_momentum}
