"""Command-line flags built from the settings schema (``settings.OPTIONS``).

``train.py`` makes a flag of every setting, ``evaluate.py`` of the data
settings; both through `add_setting_flag`, so a setting's flag name, type,
choices and help text are written once, in its `settings.Option`.
"""

import argparse

from stn_keras.models.blocks import LOCALIZATION_ACTIVATIONS
from stn_keras.models.blocks import LOCALIZATION_CONVOLUTIONS
from stn_keras.ops import TRANSFORMS

# Flags whose values are keyword mappings, given as repeated KEY=VALUE.
MAPPING_FLAGS = {
    "model_options": "model-option",
    "data_options": "data-option",
    "augmentation_options": "augmentation-option",
}
# Choices that live with the models rather than in the settings schema.
MODEL_CHOICES = {
    "transform": TRANSFORMS,
    "localization_convolution": LOCALIZATION_CONVOLUTIONS,
    "localization_activation": LOCALIZATION_ACTIVATIONS,
}


def key_value(text):
    """``KEY=VALUE`` -> ``(KEY, VALUE parsed as YAML)``, e.g. ``filters=16``."""
    import yaml

    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE, e.g. filters=16. Received: {text!r}"
        )
    return key.replace("-", "_"), yaml.safe_load(value)


def _with_message(parse):
    """``parse`` whose ValueError message reaches the user (argparse would
    replace it with "invalid <function> value")."""
    if parse in (int, float, str):
        return parse

    def parse_with_message(text):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse_with_message.__name__ = parse.__name__
    return parse_with_message


def _or_none(parse):
    """``parse`` that reads ``none`` (any case) as ``None``."""

    def parse_or_none(text):
        return None if text.strip().lower() == "none" else parse(text)

    parse_or_none.__name__ = parse.__name__
    return parse_or_none


def add_setting_flag(parser, name, option, default_text=None, allow_unset=False):
    """Adds the flag of setting ``name`` (``--data-dir`` for ``data_dir``).

    Args:
        parser: an ``argparse.ArgumentParser``.
        name: the setting's name, a key of ``settings.OPTIONS``.
        option: its `settings.Option`.
        default_text: what the help says the default is; unset: the
            option's default (or nothing, for a default of ``None``).
        allow_unset: a setting whose default is ``None`` (off, or the
            data set's or model's own value) also takes ``none``, which
            gives ``None``: so a command line can undo what a config file
            sets (``--ema-momentum none``, ``--transform none``). For
            parsers whose unset flags are absent (``argparse.SUPPRESS``), as
            ``train.py``'s; where ``None`` means "not given" it would read
            as not given.
    """
    if name in MAPPING_FLAGS:
        parser.add_argument(
            "--" + MAPPING_FLAGS[name],
            dest=name,
            type=key_value,
            action="append",
            metavar="KEY=VALUE",
            help=f"{option.help}; repeatable; each KEY changes that key of the config "
            f"file's mapping and keeps the others (default: {default_text or 'none'})",
        )
        return
    flag = "--" + name.replace("_", "-")
    shown_default = option.default if default_text is None else default_text
    text = option.help if shown_default is None else f"{option.help} (default: {shown_default})"
    if isinstance(option.default, bool) or option.boolean_flag:
        parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=text)
    elif name == "mixed_precision":
        # A bare --mixed-precision picks the policy for the device.
        parser.add_argument(
            flag, dest=name, nargs="?", const="auto", choices=option.choices, help=text
        )
    else:
        value_type = option.flag_type or {int: int, float: float}.get(type(option.default), str)
        parse = _with_message(value_type)
        choices = option.choices or MODEL_CHOICES.get(name)
        metavar = None
        if allow_unset and option.default is None:
            parse = _or_none(parse)
            text += "; none: unset, whatever the config file says"
            if choices is not None:
                metavar = "{" + ",".join(map(str, choices)) + ",none}"
                choices = (*choices, None)
        parser.add_argument(
            flag,
            dest=name,
            type=parse,
            choices=choices,
            metavar=metavar,
            help=text,
        )
