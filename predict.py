"""Classify images with a trained stn_keras model: ``python predict.py --help``.

Example:

    python predict.py --model saved_models/gtsrb_st_cnn sign.png other.jpg
    python predict.py --model gtsrb_st_cnn --json --top-k 3 sign.png
    python predict.py --model gtsrb_st_cnn --show-transform where.png sign.png

``--model`` is a folder of saved_models/ (by name or path), any folder with
the same layout, a .keras file or a SavedModel directory. Images of any
size, in PNG, JPEG, BMP, GIF or binary PPM/PGM, are decoded and resized as
the SavedModel's predict_bytes signature does. An image that cannot be read
gets one error line and the others are still answered; the exit status is
1 if any failed.
"""

import argparse
import json
import logging
import sys


def build_parser():
    parser = argparse.ArgumentParser(
        prog="predict.py",
        description="Classify images with a trained model; print the most probable classes.",
    )
    parser.add_argument(
        "--model", required=True,
        help="a saved_models/ folder name or path, a .keras file or a SavedModel directory",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--top-k", type=int, default=5, help="classes per image (default: 5)")
    parser.add_argument(
        "--json", action="store_true",
        help="print a JSON list, one object per answered image",
    )
    parser.add_argument(
        "--show-transform", metavar="OUT.png",
        help="save each input with the transformer's sampled region outlined beside its output",
    )
    return parser


def format_answer(path, result):
    """The text lines of one image: the file, then one line per ranked class."""
    lines = [f"{path}: {result['class_name']} ({100 * result['probability']:.2f}%)"]
    for rank, entry in enumerate(result["top_k"], start=1):
        lines.append(
            f"  {rank}. {100 * entry['probability']:6.2f}%  {entry['class_id']:>3}  "
            f"{entry['class_name']}"
        )
    return "\n".join(lines)


def main(argv=None):
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.top_k < 1:
        parser.error(f"--top-k must be >= 1. Received: {arguments.top_k}")
    from stn_keras import pretrained

    try:
        classifier = pretrained.load(arguments.model)
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    answers = classifier.predict_each(arguments.images, arguments.top_k)
    answered = []
    records = []
    for path, (result, error) in zip(arguments.images, answers):
        if error is not None:
            print(f"{parser.prog}: error: {error}", file=sys.stderr)
        else:
            answered.append(path)
            if arguments.json:
                records.append({"file": path, **result})
            else:
                print(format_answer(path, result))
    if arguments.json:
        print(json.dumps(records, indent=2))
    if arguments.show_transform and answered:
        try:
            classifier.save_transform_figure(answered, arguments.show_transform)
        except ValueError as error:
            parser.exit(2, f"{parser.prog}: error: {error}\n")
        print(f"Transformer view written to {arguments.show_transform}", file=sys.stderr)
    return 0 if len(answered) == len(arguments.images) else 1


if __name__ == "__main__":
    sys.exit(main())
