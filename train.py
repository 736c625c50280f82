"""Train a model of stn_keras: ``python train.py --help``.

Settings resolve as defaults < ``--config FILE`` (YAML or JSON) < flags. The
run directory (``--output-dir``) receives config.json, history.csv,
model.keras, saved_model/ and TensorBoard logs; see docs/TRAINING.md.
"""

import argparse
import logging
import signal
import sys

from stn_keras import training
from stn_keras.models.blocks import LOCALIZATION_ACTIVATIONS
from stn_keras.models.blocks import LOCALIZATION_CONVOLUTIONS
from stn_keras.ops import TRANSFORMS

# Flags whose values are keyword mappings, given as repeated KEY=VALUE.
MAPPING_FLAGS = {"model_options": "model-option", "data_options": "data-option"}
CHOICES = {
    "model": tuple(training.models.MODELS),
    "transform": TRANSFORMS,
    "loc_conv": LOCALIZATION_CONVOLUTIONS,
    "loc_activation": LOCALIZATION_ACTIVATIONS,
    "optimizer": training.OPTIMIZERS,
    "lr_schedule": training.LR_SCHEDULES,
    "strategy": training.STRATEGIES,
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


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train a spatial transformer network (or a baseline) "
        "with model.fit. Settings: defaults < --config FILE < flags.",
        prog="train.py",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--config", help="YAML or JSON file of settings (keys as the flags)"
    )
    for name, (default, help_text) in training.OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        text = help_text if default is None else f"{help_text} (default: {default})"
        if name in MAPPING_FLAGS:
            parser.add_argument(
                "--" + MAPPING_FLAGS[name],
                dest=name,
                type=key_value,
                action="append",
                metavar="KEY=VALUE",
                help=f"{help_text}; repeatable (default: none)",
            )
        elif isinstance(default, bool):
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, help=text
            )
        else:
            value_type = {int: int, float: float}.get(type(default), str)
            if name == "val_size":
                value_type = training.count_or_fraction
            elif name == "image_size":
                value_type = int
            parser.add_argument(
                flag,
                dest=name,
                type=value_type,
                choices=CHOICES.get(name),
                help=text,
            )
    return parser


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = build_parser()
    arguments = vars(parser.parse_args(argv))
    config_path = arguments.pop("config", None)
    for name in MAPPING_FLAGS:
        if name in arguments:
            arguments[name] = dict(arguments[name])
    try:
        config = training.resolve_config(arguments, config_path)
        if config["resume"]:
            ignored = sorted(set(arguments) - {"output_dir", "resume", "verbose"})
            if ignored:
                logging.warning(
                    "Resuming with the run's saved settings; ignoring %s.", ignored
                )
            config = {
                **training.saved_run_config(config["output_dir"]),
                "output_dir": config["output_dir"],
                "resume": True,
            }
        result = training.train(config)
    except (ValueError, FileNotFoundError) as error:
        # Missing data raises the data layer's FileNotFoundError: shown as is.
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except training.TrainingInterrupted as interruption:
        number = getattr(signal, str(interruption), signal.SIGINT)
        return 128 + int(number)
    print(result.summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
