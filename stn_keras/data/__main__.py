"""Command line of the data layer.

    python -m stn_keras.data preview --dataset mnist --distortion rts --out preview.png
"""

import argparse
import logging

import numpy as np

from stn_keras.data.split_arrays import SPLITS
from stn_keras.data.datasets import DATASETS
from stn_keras.data.datasets import load_dataset
from stn_keras.data.distortions import DISTORTIONS
from stn_keras.data.preview import save_preview

logger = logging.getLogger("stn_keras.data")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m stn_keras.data")
    commands = parser.add_subparsers(dest="command", required=True)
    preview = commands.add_parser("preview", help="write a labelled grid of samples")
    preview.add_argument("--dataset", choices=DATASETS, default="digits")
    preview.add_argument("--distortion", choices=DISTORTIONS, default=None)
    preview.add_argument("--split", choices=SPLITS, default="train")
    preview.add_argument("--count", type=int, default=32)
    preview.add_argument("--seed", type=int, default=0)
    preview.add_argument("--image-size", type=int, default=None)
    preview.add_argument("--crop-to-roi", action="store_true", help="GTSRB only")
    preview.add_argument("--data-dir", default=None)
    preview.add_argument("--out", default="preview.png")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    options = {"crop_to_roi": True} if args.crop_to_roi else {}
    try:
        dataset = load_dataset(
            args.dataset,
            distortion=args.distortion,
            data_dir=args.data_dir,
            seed=args.seed,
            image_size=args.image_size,
            **options,
        )
    except (ValueError, FileNotFoundError) as error:
        # The data layer's errors name the file and what to do: shown as is.
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    images, labels = dataset.split(args.split)
    chosen = np.random.default_rng(args.seed).choice(
        len(images), size=min(args.count, len(images)), replace=False
    )
    title = f"{args.dataset} / {args.distortion or 'undistorted'} / {args.split}"
    save_preview(images[chosen], labels[chosen], dataset.class_names, args.out, title)
    logger.info("Wrote %d %s images to %s", len(chosen), title, args.out)


if __name__ == "__main__":
    main()
