"""Train a model of stn_keras: ``python train.py --help``.

Settings resolve as defaults < ``--config FILE`` (YAML or JSON) < flags. The
run directory (``--output-dir``) receives config.json, history.csv,
model.keras and TensorBoard logs; then, as a step of its own that
``--no-export`` skips, saved_model/ (TensorFlow backend); see
docs/TRAINING.md. Runs on the Keras backend named by ``KERAS_BACKEND``.
"""

import argparse
import logging
import signal
import sys

from stn_keras import training
from stn_keras.export import export_best_model
from stn_keras.models.blocks import LOCALIZATION_ACTIVATIONS
from stn_keras.models.blocks import LOCALIZATION_CONVOLUTIONS
from stn_keras.ops import TRANSFORMS
from stn_keras.settings import OPTIONS
from stn_keras.settings import resolve_settings

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


def _add_flag(parser, name, option):
    flag = "--" + name.replace("_", "-")
    text = option.help if option.default is None else f"{option.help} (default: {option.default})"
    if name in MAPPING_FLAGS:
        parser.add_argument(
            "--" + MAPPING_FLAGS[name],
            dest=name,
            type=key_value,
            action="append",
            metavar="KEY=VALUE",
            help=f"{option.help}; repeatable (default: none)",
        )
    elif isinstance(option.default, bool) or option.boolean_flag:
        parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=text)
    elif name == "mixed_precision":
        # A bare --mixed-precision picks the policy for the device.
        parser.add_argument(
            flag, dest=name, nargs="?", const="auto", choices=option.choices, help=text
        )
    else:
        value_type = option.flag_type or {int: int, float: float}.get(type(option.default), str)
        parser.add_argument(
            flag,
            dest=name,
            type=_with_message(value_type),
            choices=option.choices or MODEL_CHOICES.get(name),
            help=text,
        )


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train a spatial transformer network (or a baseline) "
        "with model.fit on the Keras backend of KERAS_BACKEND (tensorflow, "
        "jax or torch). Settings: defaults < --config FILE < flags.",
        prog="train.py",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", help="YAML or JSON file of settings (keys as the flags)")
    for name, option in OPTIONS.items():
        _add_flag(parser, name, option)
    # Not a setting of the run: exporting is the step after it.
    parser.add_argument(
        "--export",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write saved_model/ from the best model.keras after training, "
        "where this process can (TensorFlow backend); --no-export: leave it "
        "to `python -m stn_keras.export RUN_DIR` (default: export)",
    )
    return parser


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = build_parser()
    overrides = vars(parser.parse_args(argv))
    config_path = overrides.pop("config", None)
    export = overrides.pop("export")
    for name in MAPPING_FLAGS:
        if name in overrides:
            overrides[name] = dict(overrides[name])
    try:
        result = training.train(resolve_settings(overrides, config_path))
        print(result.summary(), flush=True)
        if export:
            export_best_model(result.run_dir)
    except (ValueError, FileNotFoundError) as error:
        # Missing data raises the data layer's FileNotFoundError: shown as is.
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except training.TrainingFailed as failure:
        parser.exit(1, f"{parser.prog}: error: {failure}\n")
    except training.TrainingInterrupted as interruption:
        number = getattr(signal, str(interruption), signal.SIGINT)
        return 128 + int(number)
    return 0


if __name__ == "__main__":
    sys.exit(main())
