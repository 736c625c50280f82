"""Export a training run's (or a saved_models/ folder's) model.keras.

Examples:

    KERAS_BACKEND=tensorflow python -m stn_keras.export runs/mnist_st_cnn
    python -m stn_keras.export saved_models/gtsrb_st_cnn --format onnx --output m.onnx
    python -m stn_keras.export saved_models/gtsrb_st_cnn --format litert \\
        --quantize int8 --output m_int8.tflite

The default writes RUN_DIR/saved_model (the serving signatures). The run
may have been trained on any backend; the class names come from
RUN_DIR/config.json. Needs TensorFlow; ONNX and LiteRT need the `export`
extra (pip install "stn_keras[export]").
"""

import argparse
import logging
import sys

from stn_keras.export.formats import DEFAULT_CALIBRATION_IMAGES
from stn_keras.export.formats import FORMATS
from stn_keras.export.formats import QUANTIZATIONS
from stn_keras.export.formats import export_model
from stn_keras.export.names import DEFAULT_MAX_IMAGE_PIXELS

logger = logging.getLogger("stn_keras.export")


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m stn_keras.export",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "run_dir", help="a training run's directory or a folder of saved_models/"
    )
    parser.add_argument("--format", choices=FORMATS, default="saved_model")
    parser.add_argument(
        "--quantize", choices=QUANTIZATIONS,
        help="LiteRT only: float16 weights, int8 weights (dynamic_int8), or int8 "
        "weights and activations calibrated on training images, the spatial "
        "transformers and per-image standardisation kept in float (int8)",
    )
    parser.add_argument(
        "--output",
        help="file or directory to write (default: RUN_DIR/saved_model, "
        "RUN_DIR/model.onnx, RUN_DIR/model[_QUANTIZE].tflite)",
    )
    parser.add_argument(
        "--data-dir", help="data directory of the int8 calibration images "
        "(default: STN_DATA_DIR)",
    )
    parser.add_argument(
        "--num-calibration-images", type=int, default=DEFAULT_CALIBRATION_IMAGES,
        help="training images int8 calibrates on",
    )
    parser.add_argument(
        "--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
        help="SavedModel only: most decoded pixels (height x width x GIF "
        "frames) an image sent to predict_bytes may declare",
    )
    return parser.parse_args(argv)


def main(argv=None):
    arguments = parse_arguments(argv)
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    try:
        output, details = export_model(
            arguments.run_dir,
            arguments.format,
            arguments.output,
            quantize=arguments.quantize,
            data_dir=arguments.data_dir,
            num_calibration_images=arguments.num_calibration_images,
            max_image_pixels=arguments.max_image_pixels,
        )
    except ValueError as error:
        sys.exit(f"python -m stn_keras.export: error: {error}")
    if "signatures" in details:
        logger.info("Wrote %s with signatures %s", output, details["signatures"])
    else:
        logger.info("Wrote %s (%s)", output, ", ".join(f"{k}: {v}" for k, v in details.items()))


if __name__ == "__main__":
    main()
