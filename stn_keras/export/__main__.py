"""Write RUN_DIR/saved_model from a training run's model.keras.

Example:

    KERAS_BACKEND=tensorflow python -m stn_keras.export runs/mnist_st_cnn

The run may have been trained on any backend; the class names come from
RUN_DIR/config.json. Needs TensorFlow.
"""

import argparse
import logging
import sys

from stn_keras.export.names import DEFAULT_MAX_IMAGE_PIXELS
from stn_keras.export.run_export import export_run

logger = logging.getLogger("stn_keras.export")


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m stn_keras.export",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run_dir", help="a training run's directory")
    parser.add_argument(
        "--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
        help="most decoded pixels (height x width x GIF frames) an image sent "
        "to predict_bytes may declare",
    )
    return parser.parse_args(argv)


def main(argv=None):
    arguments = parse_arguments(argv)
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    try:
        export_dir, signatures = export_run(
            arguments.run_dir, max_image_pixels=arguments.max_image_pixels
        )
    except ValueError as error:
        sys.exit(f"python -m stn_keras.export: error: {error}")
    logger.info("Wrote %s with signatures %s", export_dir, signatures)


if __name__ == "__main__":
    main()
