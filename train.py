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
from stn_keras.setting_flags import MAPPING_FLAGS
from stn_keras.setting_flags import add_setting_flag
from stn_keras.settings import OPTIONS
from stn_keras.settings import resolve_settings


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
        add_setting_flag(parser, name, option, allow_unset=True)
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
