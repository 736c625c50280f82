"""Train a model of stn_keras: ``python train.py --help``.

Settings resolve as defaults < ``--config FILE`` (YAML or JSON) < flags. The
run directory (``--output-dir``) receives config.json, history.csv,
model.keras, saved_model/ (TensorFlow backend) and TensorBoard logs; see
docs/TRAINING.md. Runs on the Keras backend named by ``KERAS_BACKEND``.
"""

import argparse
import logging
import signal
import sys

from stn_keras import config
from stn_keras import training
from stn_keras.setting_flags import MAPPING_FLAGS
from stn_keras.setting_flags import add_setting_flag


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train a spatial transformer network (or a baseline) "
        "with model.fit on the Keras backend of KERAS_BACKEND (tensorflow, "
        "jax or torch). Settings: defaults < --config FILE < flags.",
        prog="train.py",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", help="YAML or JSON file of settings (keys as the flags)")
    for name, option in config.OPTIONS.items():
        add_setting_flag(parser, name, option)
    return parser


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = build_parser()
    settings = vars(parser.parse_args(argv))
    config_path = settings.pop("config", None)
    for name in MAPPING_FLAGS:
        if name in settings:
            settings[name] = dict(settings[name])
    try:
        result = training.train(settings, config_path=config_path)
    except (ValueError, FileNotFoundError) as error:
        # Missing data raises the data layer's FileNotFoundError: shown as is.
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except training.TrainingFailed as failure:
        parser.exit(1, f"{parser.prog}: error: {failure}\n")
    except training.TrainingInterrupted as interruption:
        number = getattr(signal, str(interruption), signal.SIGINT)
        return 128 + int(number)
    print(result.summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
