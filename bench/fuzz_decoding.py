"""Fuzzes the ``predict_bytes`` signature with mutated images, in child processes.

Exports a tiny ST-CNN (random weights) as a SavedModel, makes ``--cases``
cases with tests/image_fuzzing.py (a valid file of every variant of PNG,
JPEG, GIF, BMP, WebP and PPM/PGM, then structural mutants: header fields set
to negative, zero and huge values, truncations, appended garbage, byte
flips) and feeds them, ``--batch`` per child process, one image per call.
A child that dies (abort, segfault) is reported with the case it died on,
and the run goes on with the next case in a new child.

    KERAS_BACKEND=tensorflow python bench/fuzz_decoding.py [--cases 20000] [--seed 0]

Prints, per format, how many cases were decoded, refused (with the error
classes) and crashed the process, and the most frequent refusal messages;
exits 1 if any case crashed the process or was refused with anything but
InvalidArgumentError.
"""

import argparse
import collections
import logging
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from machine import machine_description  # noqa: E402
from tests.image_fuzzing import DECODED  # noqa: E402
from tests.image_fuzzing import fuzz_cases  # noqa: E402
from tests.image_fuzzing import run_in_child  # noqa: E402
from tests.serving_helpers import build_st_cnn  # noqa: E402

logger = logging.getLogger("fuzz_decoding")
CRASHED = "crashed"


def run_cases(saved_model_dir, cases, batch):
    """Outcomes of every case; a crashed child's case is marked and skipped."""
    outcomes = []
    while len(outcomes) < len(cases):
        chunk = cases[len(outcomes):len(outcomes) + batch]
        returncode, finished, output = run_in_child(saved_model_dir, chunk)
        outcomes += finished
        if returncode != 0:
            crashed = cases[len(outcomes)]
            logger.error(
                "Case %d (%s: %s) ended the child with %d:\n%s",
                len(outcomes), crashed[0], crashed[1], returncode, output[-1000:],
            )
            outcomes.append((CRASHED, str(returncode), ""))
        logger.info("%d / %d cases", len(outcomes), len(cases))
    return outcomes


def _without_framing(message):
    """TensorFlow's message without the graph node and the stack framing."""
    message = message.split("<stack traces unavailable>")[-1].split(" [[")[0].strip()
    return message.removeprefix("assertion failed: [").removesuffix("]")[:200]


def summary(cases, outcomes):
    """Markdown tables: outcomes per format, then the commonest refusals."""
    counts = collections.defaultdict(collections.Counter)
    messages = collections.Counter()
    for (image_format, _, _), (outcome, error_class, message) in zip(cases, outcomes):
        counts[image_format]["cases"] += 1
        counts[image_format][outcome if outcome in (DECODED, CRASHED) else error_class] += 1
        if message:
            messages[_without_framing(message)] += 1
    columns = sorted({key for counter in counts.values() for key in counter} - {"cases"})
    lines = ["| format | cases | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for image_format, counter in sorted(counts.items()):
        lines.append(
            f"| {image_format} | {counter['cases']} | "
            + " | ".join(str(counter[column]) for column in columns) + " |"
        )
    total = collections.Counter()
    for counter in counts.values():
        total.update(counter)
    lines.append(
        f"| all | {total['cases']} | " + " | ".join(str(total[column]) for column in columns) + " |"
    )
    lines += ["", "Most frequent refusals:", ""]
    lines += [f"- {count} x `{message}`" for message, count in messages.most_common(20)]
    return "\n".join(lines), total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20000, help="number of cases")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutations")
    parser.add_argument("--batch", type=int, default=2000, help="cases per child process")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from stn_keras.export import export_saved_model

    cases = fuzz_cases(arguments.cases, arguments.seed)
    with tempfile.TemporaryDirectory() as folder:
        saved_model_dir = os.path.join(folder, "st_cnn")
        export_saved_model(build_st_cnn(), saved_model_dir)
        outcomes = run_cases(saved_model_dir, cases, arguments.batch)
    table, total = summary(cases, outcomes)
    print(f"Machine: {machine_description()}; {arguments.cases} cases, seed {arguments.seed}\n")
    print(table)
    bad = total[CRASHED] + sum(
        count for key, count in total.items()
        if key not in ("cases", DECODED, CRASHED, "InvalidArgumentError")
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
