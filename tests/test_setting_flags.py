"""Command-line flags from the settings schema: names, types, help, errors."""

import argparse

import pytest

from stn_keras.settings import Option
from stn_keras.settings import count_or_fraction
from stn_keras.setting_flags import add_setting_flag


def parser_of(**options):
    parser = argparse.ArgumentParser(prog="tool", add_help=False)
    for name, option in options.items():
        add_setting_flag(parser, name, option)
    return parser


def accept(name, value):
    return value


def test_flag_names_types_and_values_follow_the_option():
    parser = parser_of(
        batch_size=Option(32, "images per step", accept),
        learning_rate=Option(0.001, "base rate", accept),
        dataset=Option("digits", "data set name", accept),
        augment=Option(False, "re-pose the images", accept),
        val_size=Option(None, "held out", accept, flag_type=count_or_fraction),
        data_options=Option({}, "extra arguments", accept),
    )
    arguments = parser.parse_args(
        ["--batch-size", "8", "--learning-rate", "0.5", "--dataset", "mnist", "--no-augment",
         "--val-size", "0.25", "--data-option", "size=3", "--data-option", "names=[a, b]"]
    )
    assert vars(arguments) == {
        "batch_size": 8, "learning_rate": 0.5, "dataset": "mnist", "augment": False,
        "val_size": 0.25, "data_options": [("size", 3), ("names", ["a", "b"])],
    }
    assert parser.parse_args(["--val-size", "500"]).val_size == 500
    assert parser.parse_args(["--augment"]).augment is True


def test_help_shows_the_default_or_the_text_given_for_it():
    option = Option(0, "seed of the data split", accept)
    assert "seed of the data split (default: 0)" in parser_of(seed=option).format_help()
    unset = Option(None, "data directory", accept)
    help_text = parser_of(data_dir=unset).format_help()
    assert "data directory" in help_text and "default" not in help_text
    parser = argparse.ArgumentParser(prog="tool")
    add_setting_flag(parser, "seed", option, default_text="the run's, or 0")
    assert "seed of the data split (default: the run's, or 0)" in " ".join(
        parser.format_help().split()
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--val-size", "ten"], "argument --val-size: expected an image count (e.g. 5000) or a fraction (e.g. 0.1). Received: 'ten'"),
        (["--model", "resnet"], "argument --model: invalid choice: 'resnet' (choose from"),
        (["--transform", "spline"], "argument --transform: invalid choice: 'spline'"),
        (["--data-option", "size"], "argument --data-option: expected KEY=VALUE, e.g. filters=16. Received: 'size'"),
    ],
)
def test_bad_values_are_refused_with_the_reason(argv, message, capsys):
    parser = parser_of(
        val_size=Option(None, "held out", accept, flag_type=count_or_fraction),
        model=Option("cnn", "model name", accept, choices=("cnn", "st_cnn")),
        transform=Option(None, "transform", accept),
        data_options=Option({}, "extra arguments", accept),
    )
    with pytest.raises(SystemExit):
        parser.parse_args(argv)
    assert message in capsys.readouterr().err


def test_an_optional_number_can_be_turned_off_where_unset_flags_are_absent():
    momentum = Option(None, "weight average", accept, flag_type=float)
    parser = argparse.ArgumentParser(prog="tool", argument_default=argparse.SUPPRESS)
    add_setting_flag(parser, "ema_momentum", momentum, allow_unset=True)
    add_setting_flag(parser, "val_size", Option(None, "held out", accept, flag_type=count_or_fraction),
                     allow_unset=True)
    add_setting_flag(parser, "data_dir", Option(None, "data directory", accept), allow_unset=True)
    assert vars(parser.parse_args(["--ema-momentum", "None", "--val-size", "none"])) == {
        "ema_momentum": None, "val_size": None,
    }
    assert vars(parser.parse_args(["--ema-momentum", "0.99", "--data-dir", "NONE"])) == {
        "ema_momentum": 0.99, "data_dir": None,
    }
    assert parser.parse_args(["--data-dir", "data/none"]).data_dir == "data/none"
    assert vars(parser.parse_args([])) == {}
    assert "none: unset, whatever the config file says" in " ".join(parser.format_help().split())
    # Without allow_unset, "none" is no number.
    with pytest.raises(SystemExit):
        parser_of(ema_momentum=momentum).parse_args(["--ema-momentum", "none"])
