"""How far each export format is from the Keras model, on a run's own data.

``python -m stn_keras.export.parity MODEL_DIR`` exports ``MODEL_DIR``'s
``model.keras`` to ONNX and to LiteRT (float, float16, dynamic_int8, int8),
runs them, the ``.keras`` file and ``MODEL_DIR/saved_model`` on the split
the model card reports (``metrics.json``'s ``split``, else ``test``), and
prints a Markdown table: format, file size, accuracy, top-1 agreement with
Keras and the largest absolute difference of a probability. Example:

    KERAS_BACKEND=tensorflow STN_DATA_DIR=/path/to/data \\
        python -m stn_keras.export.parity saved_models/gtsrb_st_cnn
"""

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

from stn_keras.export.formats import default_output
from stn_keras.export.formats import export_model
from stn_keras.export.runtimes import load_predictor

logger = logging.getLogger(__name__)

# (format, quantize) of every file the table compares with model.keras.
EXPORTS = (
    ("onnx", None),
    ("litert", None),
    ("litert", "float16"),
    ("litert", "dynamic_int8"),
    ("litert", "int8"),
)
BATCH_SIZE = 256
# The model card's table lies between these lines; --update-card replaces it.
CARD_START = "<!-- export parity: start -->"
CARD_END = "<!-- export parity: end -->"


@dataclasses.dataclass(frozen=True)
class FormatParity:
    """One format's figures against the Keras model on the same images."""

    format: str
    path: str
    bytes: int
    accuracy: float
    top1_agreement: float
    max_abs_difference: float


def file_size(path):
    """Bytes of a file, or of every file under a directory."""
    path = Path(path)
    if path.is_dir():
        return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
    return path.stat().st_size


def predict_batched(predict, images, batch_size=BATCH_SIZE):
    """``predict`` over ``images`` in batches, concatenated."""
    return np.concatenate(
        [predict(images[start : start + batch_size]) for start in range(0, len(images), batch_size)]
    )


def compare(name, path, images, labels, reference):
    """`FormatParity` of the model at ``path`` against ``reference`` probabilities."""
    probabilities = predict_batched(load_predictor(path), images)
    predictions = probabilities.argmax(axis=-1)
    return FormatParity(
        format=name,
        path=str(path),
        bytes=file_size(path),
        accuracy=float(np.mean(predictions == labels)),
        top1_agreement=float(np.mean(predictions == reference.argmax(axis=-1))),
        max_abs_difference=float(np.max(np.abs(probabilities - reference))),
    )


def evaluation_split(model_dir):
    """The split the model card reports: ``metrics.json``'s, else ``"test"``."""
    metrics_path = Path(model_dir) / "metrics.json"
    if metrics_path.is_file():
        return json.loads(metrics_path.read_text()).get("split", "test")
    return "test"


def measure(model_dir, output_dir, data_dir=None, split=None, exports=EXPORTS):
    """Exports ``model_dir`` to each of ``exports`` and compares every format.

    Args:
        model_dir: a run directory or ``saved_models/`` folder.
        output_dir: where the exported files are written.
        data_dir: the data directory (else ``STN_DATA_DIR``).
        split: the split to measure on (default: `evaluation_split`).
        exports: ``(format, quantize)`` pairs.

    Returns:
        ``(split, num_images, rows)``: the split used, its size and one
        `FormatParity` per format,
        ``model.keras`` first (difference 0 by definition), then
        ``saved_model/`` when the folder has one, then ``exports``.
    """
    from stn_keras.data import as_float_images
    from stn_keras.run_dir import RunDirectory
    from stn_keras.settings import data_settings
    from stn_keras.settings import load_data

    model_dir = Path(model_dir)
    run_dir = RunDirectory(model_dir)
    settings = data_settings(run_dir.read_config())
    if data_dir is not None:
        settings["data_dir"] = str(data_dir)
    split = split or evaluation_split(model_dir)
    images, labels = load_data(settings).split(split)
    images = as_float_images(images)
    logger.info("Measuring on the %s split (%d images)", split, len(images))
    reference = predict_batched(load_predictor(run_dir.model_path), images)
    rows = [compare("keras", run_dir.model_path, images, labels, reference)]
    if run_dir.saved_model_path.is_dir():
        rows.append(compare("saved_model", run_dir.saved_model_path, images, labels, reference))
    for format, quantize in exports:
        name = format if quantize is None else f"{format} {quantize}"
        path, _ = export_model(
            model_dir,
            format,
            default_output(output_dir, format, quantize),
            quantize=quantize,
            data_dir=data_dir,
        )
        rows.append(compare(name, path, images, labels, reference))
    return split, len(images), rows


def markdown_table(split, num_images, rows):
    """The rows as the Markdown table of a model card."""
    lines = [
        f"| format | file size | accuracy ({split}, {num_images:,} images) "
        "| top-1 agreement with Keras | max abs. difference to Keras |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.format} | {row.bytes / 1e6:.2f} MB | {100 * row.accuracy:.2f}% "
            f"| {100 * row.top1_agreement:.2f}% | {row.max_abs_difference:.1e} |"
        )
    return "\n".join(lines)


def update_card(card_path, text):
    """Puts ``text`` between the card's parity markers, or appends it with them.

    Returns:
        The card's new contents (also written to ``card_path``).
    """
    card_path = Path(card_path)
    card = card_path.read_text() if card_path.is_file() else ""
    block = f"{CARD_START}\n{text.strip()}\n{CARD_END}"
    if CARD_START in card and CARD_END in card:
        before, _, rest = card.partition(CARD_START)
        _, _, after = rest.partition(CARD_END)
        card = before + block + after
    else:
        card = card.rstrip("\n") + ("\n\n" if card else "") + block + "\n"
    card_path.write_text(card)
    return card


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m stn_keras.export.parity", description=__doc__.splitlines()[0]
    )
    parser.add_argument("model_dir", help="a run directory or saved_models/ folder")
    parser.add_argument("--data-dir", help="data directory (default: STN_DATA_DIR)")
    parser.add_argument("--split", help="split (default: the one metrics.json reports)")
    parser.add_argument(
        "--output-dir", help="keep the exported files here (default: a temporary directory)"
    )
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument(
        "--update-card", action="store_true",
        help="also write the table into MODEL_DIR/README.md, between its parity markers",
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as scratch:
        try:
            split, num_images, rows = measure(
                arguments.model_dir,
                arguments.output_dir or scratch,
                data_dir=arguments.data_dir,
                split=arguments.split,
            )
        except ValueError as error:
            sys.exit(f"python -m stn_keras.export.parity: error: {error}")
    if arguments.json:
        Path(arguments.json).write_text(
            json.dumps([dataclasses.asdict(row) for row in rows], indent=2)
        )
    print(markdown_table(split, num_images, rows))
    if arguments.update_card:
        update_card(
            Path(arguments.model_dir) / "README.md",
            card_text(arguments.model_dir, split, num_images, rows),
        )


def card_text(model_dir, split, num_images, rows):
    """The table with the command that refreshes it, the device and the date."""
    command = f"python -m stn_keras.export.parity {model_dir} --update-card"
    return (
        f"{markdown_table(split, num_images, rows)}\n\nMeasured by "
        f"`KERAS_BACKEND=tensorflow STN_DATA_DIR=/path/to/data {command}` on {machine_line()}."
    )


def machine_line():
    """The device Keras computes on and the UTC date of this run."""
    import time

    from stn_keras.runtime import describe_devices

    return f"{describe_devices().describe()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"


if __name__ == "__main__":
    main()
