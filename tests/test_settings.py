"""Run settings: the options table, precedence, validation, the frozen RunSettings,
saved configs, data settings."""

import dataclasses
import json
import warnings
from pathlib import Path

import pytest

from stn_keras.settings import DEFAULTS
from stn_keras.settings import OPTIONS
from stn_keras.settings import RENAMED_SETTINGS
from stn_keras.settings import RunSettings
from stn_keras.settings import count_or_fraction
from stn_keras.settings import data_settings
from stn_keras.settings import dataset_arguments
from stn_keras.settings import resolve_settings
from stn_keras.settings import resolve_verbose


def test_resolve_config_precedence(tmp_path):
    path = tmp_path / "experiment.yaml"
    path.write_text(
        "model: cnn\nbatch-size: 32\nepochs: 7\ndistortion: rts\nonline-distortion: true\n"
    )
    resolved = resolve_settings({"epochs": 2}, path)
    assert resolved.online_distortion is True  # from the file, hyphenated key
    assert resolved.model == "cnn"  # from the file
    assert resolved.batch_size == 32  # file, hyphenated key
    assert resolved.epochs == 2  # the command line wins
    assert resolved.optimizer == DEFAULTS["optimizer"]  # default
    json_path = tmp_path / "experiment.json"
    json_path.write_text(json.dumps({"distortion": "none", "lr_schedule": "cosine"}))
    resolved = resolve_settings({}, json_path)
    assert resolved.distortion is None and resolved.lr_schedule == "cosine"


def test_option_flags_merge_into_the_config_file_s_mappings(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "model: compact_st_cnn\naugment: true\nmodel_options: {filters: [8, 16], dropout: 0.5}\n"
        "augmentation_options: {elastic_noise_std: 1.5}\n"
    )
    resolved = resolve_settings(
        {"model_options": {"dropout": 0.3, "dense_units": 64}, "data_options": {"cache": False}},
        path,
    )
    assert resolved.model_options == {"filters": [8, 16], "dropout": 0.3, "dense_units": 64}
    assert resolved.augmentation_options == {"elastic_noise_std": 1.5}  # untouched
    assert resolved.data_options == {"cache": False}  # none in the file
    assert resolve_settings({}, path).model_options == {"filters": [8, 16], "dropout": 0.5}


def test_every_option_has_a_valid_default_and_help():
    assert resolve_settings({}).as_dict() == DEFAULTS == RunSettings().as_dict()
    for name, option in OPTIONS.items():
        assert option.help, name


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"epochs": 0}, "`epochs` must be an int >= 1. Received: epochs=0"),
        ({"epochs": True}, "`epochs` must be an int >= 1. Received: epochs=True"),
        ({"optimizer": "adagrad"}, "Unknown optimizer. Expected one of ('sgd', 'adam', 'rmsprop')"),
        ({"lr_schedule": "linear"}, "Unknown learning-rate schedule. Expected one of ('constant', 'step', 'cosine')"),
        ({"strategy": "tpu"}, "Unknown strategy. Expected one of ('default', 'mirrored', 'data_parallel')"),
        ({"model": "vgg"}, "Unknown model. Expected one of ('fcn', 'cnn'"),
        ({"distortion": "swirl"}, "Unknown distortion. Expected one of"),
        ({"learning_rate": -1.0}, "`learning_rate` must be a finite number > 0"),
        ({"learning_rate": float("nan")}, "`learning_rate` must be a finite number > 0"),
        ({"momentum": 1.5}, "`momentum` must be a finite number >= 0 and < 1"),
        ({"mixed_precision": "yes"}, "Unknown mixed precision policy. Expected one of ('off', 'auto', 'bfloat16', 'float16')"),
        ({"val_size": 1.5}, "`val_size` must be a finite number >= 0 and < 1"),
        ({"val_size": -3}, "`val_size` must be an int >= 0"),
        ({"model_options": [1]}, "`model_options` must be a mapping"),
        ({"output_dir": ""}, "`output_dir` must be a non-empty string"),
        ({"batchsize": 3}, "Unknown setting(s) ['batchsize'] in arguments"),
        (
            {"online_distortion": True},
            "`online_distortion` needs a distortion to draw afresh every epoch: "
            "set `distortion` (e.g. rts) or turn online_distortion off. "
            "Received: online_distortion=True, distortion=None",
        ),
        ({"online_distortion": 1}, "`online_distortion` must be a bool"),
        ({"jit_compile": "xla"}, "`jit_compile` must be 'auto' or a bool. Received: jit_compile='xla'"),
        ({"model": "cnn", "transform": "tps"}, "Model 'cnn' has no spatial transformer"),
        ({"weight_decay": -0.1}, "`weight_decay` must be a finite number >= 0. Received: weight_decay=-0.1"),
        ({"ema_momentum": 0.0}, "`ema_momentum` must be a finite number > 0 and < 1. Received: ema_momentum=0.0"),
        ({"ema_momentum": 1}, "`ema_momentum` must be a finite number > 0 and < 1. Received: ema_momentum=1"),
        ({"ema_momentum": "0.9"}, "`ema_momentum` must be a finite number > 0 and < 1. Received: ema_momentum='0.9'"),
        ({"label_smoothing": 1.0}, "`label_smoothing` must be a finite number >= 0 and < 1. Received: label_smoothing=1.0"),
        ({"label_smoothing": -0.1}, "`label_smoothing` must be a finite number >= 0 and < 1. Received: label_smoothing=-0.1"),
        ({"verbose": 3}, "`verbose` must be 'auto', 0, 1 or 2. Received: verbose=3"),
        ({"verbose": True}, "`verbose` must be 'auto', 0, 1 or 2. Received: verbose=True"),
        ({"augment": "yes"}, "`augment` must be a bool"),
        (
            {"augmentation_options": {"rotation_range": [-5, 5]}},
            "`augmentation_options` are only used with `augment`: set augment "
            "(--augment) or drop the options.",
        ),
        (
            {"augment": True, "augmentation_options": {"flip": True}},
            "Unknown augmentation option(s) ['flip']",
        ),
        (
            {"augment": True, "augmentation_options": {"translation_range": 2}},
            "`translation_range` must be a finite number >= 0 and <= 1. Received: translation_range=2",
        ),
    ],
)
def test_bad_settings(overrides, message):
    with pytest.raises(ValueError) as error:
        resolve_settings(overrides)
    assert message in str(error.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ValueError, match="Config file not found"):
        resolve_settings({}, tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("settings.txt", "epochs: 3", r"must end in \.yaml, \.yml or \.json"),
        ("list.yaml", "- 1\n- 2\n", "must hold a mapping of settings"),
        ("broken.json", "{epochs: ", "Cannot parse config file"),
        ("broken.yaml", "epochs: [3\n", "Cannot parse config file"),
        ("unknown.yaml", "epochz: 3\n", r"Unknown setting\(s\) \['epochz'\] in config file"),
    ],
)
def test_bad_config_files(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        resolve_settings({}, path)


def test_mixed_precision_true_false_of_older_files_are_policies():
    assert resolve_settings({"mixed_precision": True}).mixed_precision == "auto"
    assert resolve_settings({"mixed_precision": False}).mixed_precision == "off"


def test_saved_config_of_an_older_run_gets_new_settings_defaults():
    older = {
        key: value
        for key, value in DEFAULTS.items()
        if key not in ("online_distortion", "download", "ema_momentum", "label_smoothing")
    }
    saved = RunSettings.from_saved({**older, "epochs": 3, "mixed_precision": False})
    assert saved.online_distortion is False and saved.download is False
    assert saved.ema_momentum is None and saved.label_smoothing == 0.0
    assert saved.epochs == 3 and saved.mixed_precision == "off"


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_files_with_the_old_localisation_keys_still_load(tmp_path, suffix):
    path = tmp_path / f"old{suffix}"
    values = {"model": "st_cnn", "loc_conv": "coordconv", "loc-activation": "leaky_relu"}
    path.write_text(json.dumps(values))  # JSON is YAML too
    with pytest.warns(DeprecationWarning, match="`loc_conv` in config file"):
        resolved = resolve_settings({}, path)
    assert resolved.localization_convolution == "coordconv"
    assert resolved.localization_activation == "leaky_relu"
    assert "loc_conv" not in resolved.as_dict() and "loc_activation" not in resolved.as_dict()


def test_saved_configs_with_the_old_localisation_keys_still_load():
    saved = dict(DEFAULTS)
    saved["loc_conv"] = saved.pop("localization_convolution")
    saved["loc_activation"] = saved.pop("localization_activation")
    saved["loc_conv"] = "coordconv"
    with pytest.warns(DeprecationWarning, match="saved configuration"):
        completed = RunSettings.from_saved(saved)
    assert completed == RunSettings(localization_convolution="coordconv")


def test_shipped_run_configs_still_load():
    for path in sorted(Path("saved_models").glob("*/config.json")):
        saved = json.loads(path.read_text())["config"]
        old_names = sorted(set(saved) & set(RENAMED_SETTINGS))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            completed = RunSettings.from_saved(saved)
        # Configs saved before the renaming warn once for their old names.
        assert bool(old_names) == any(
            issubclass(warning.category, DeprecationWarning) for warning in caught
        ), path
        for old, new in RENAMED_SETTINGS.items():
            if old in saved:
                assert getattr(completed, new) == saved[old], (path, old)
        assert completed.epochs == saved["epochs"] and completed.model == saved["model"], path


def test_old_and_new_setting_names_together_are_an_error():
    with pytest.raises(ValueError, match="give only `localization_convolution`"):
        resolve_settings({"loc_conv": "conv", "localization_convolution": "conv"})


def test_dataset_arguments_pass_download_only_when_asked():
    arguments = dataset_arguments(
        resolve_settings({"dataset": "mnist", "data_options": {"source": "idx"}})
    )
    assert arguments == {
        "name": "mnist",
        "distortion": None,
        "data_dir": None,
        "seed": 0,
        "test_seed": 0,
        "val_size": None,
        "image_size": None,
        "source": "idx",
    }
    asked = dataset_arguments(resolve_settings({"download": True}))
    assert asked["download"] is True


@pytest.mark.parametrize("text, value", [("500", 500), ("0.1", 0.1), (" 7 ", 7)])
def test_count_or_fraction(text, value):
    assert count_or_fraction(text) == value


def test_count_or_fraction_refuses_words():
    with pytest.raises(ValueError, match="expected an image count"):
        count_or_fraction("ten")


def test_augmentation_options_are_kept_as_given():
    resolved = resolve_settings(
        {"augment": True, "augmentation_options": {"rotation_range": [-5, 5]}}
    )
    # config.json records what was asked; the defaults fill in at batching.
    assert resolved.augmentation_options == {"rotation_range": [-5, 5]}
    # A pair given as a tuple is saved as config.json will read it back.
    from_python = resolve_settings(
        {"augment": True, "augmentation_options": {"scale_range": (0.8, 1.2)}}
    )
    assert from_python.augmentation_options == {"scale_range": [0.8, 1.2]}


class _Stream:
    def __init__(self, terminal):
        self.terminal = terminal

    def isatty(self):
        return self.terminal


@pytest.mark.parametrize(
    "verbose, terminal, expected",
    [("auto", True, 1), ("auto", False, 2), (0, True, 0), (1, False, 1), (2, True, 2)],
)
def test_auto_verbose_draws_the_bar_on_terminals_only(verbose, terminal, expected):
    # A log file gets one line per epoch, not a carriage-return frame per step.
    assert resolve_verbose(verbose, _Stream(terminal)) == expected
    assert resolve_settings({"verbose": verbose}).verbose == verbose


def test_run_settings_are_frozen():
    settings = resolve_settings({"model_options": {"filters": [4, 4, 4]}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.epochs = 3
    with pytest.raises(TypeError, match="does not support item assignment"):
        settings.model_options["dropout"] = 0.5
    # as_dict gives copies: changing them leaves the settings alone.
    values = settings.as_dict()
    values["model_options"]["dropout"] = 0.5
    assert settings.model_options == {"filters": [4, 4, 4]}
    assert type(values["model_options"]) is dict


def test_run_settings_check_their_values_when_made():
    # Made directly, dataclasses.replace included: checked as resolve_settings checks.
    with pytest.raises(ValueError, match="`epochs` must be an int >= 1. Received: epochs=0"):
        RunSettings(epochs=0)
    with pytest.raises(ValueError, match="`online_distortion` needs a distortion"):
        dataclasses.replace(RunSettings(), online_distortion=True)
    assert RunSettings(distortion="none").distortion is None  # normalised
    with pytest.raises(TypeError, match="positional"):
        RunSettings("digits")


def test_saved_settings_with_an_unknown_key_are_refused():
    with pytest.raises(ValueError, match=r"Unknown setting\(s\) \['epochz'\] in the saved configuration"):
        RunSettings.from_saved({"epochz": 3})


def test_run_settings_round_trip_through_config_json():
    settings = resolve_settings(
        {"augment": True, "augmentation_options": {"scale_range": (0.8, 1.2)}, "epochs": 3}
    )
    saved = json.loads(json.dumps(settings.as_dict()))
    assert RunSettings.from_saved(saved) == settings


def _started_run(run_dir, **settings):
    """A run directory that an interrupted run with ``settings`` left."""
    (run_dir / "backup").mkdir(parents=True)
    saved = resolve_settings({"output_dir": str(run_dir), **settings})
    (run_dir / "config.json").write_text(json.dumps({"config": saved.as_dict()}))
    (run_dir / "backup" / "state.json").write_text('{"epoch": 1}')


def test_resume_is_resolved_once_from_the_saved_settings(tmp_path, caplog):
    run_dir = tmp_path / "run"
    _started_run(run_dir, epochs=3, verbose=0)
    with caplog.at_level("WARNING"):
        resumed = resolve_settings(
            {"output_dir": str(run_dir), "resume": True, "epochs": 9, "seed": 0, "verbose": 2}
        )
    assert isinstance(resumed, RunSettings)
    assert resumed.epochs == 3 and resumed.resume is True
    assert resumed.verbose == 2  # the one setting a resume may change
    assert "ignoring ['epochs']" in caplog.text  # seed=0 is what the run used


def test_resume_names_a_config_file_it_ignores(tmp_path, caplog):
    run_dir = tmp_path / "run"
    _started_run(run_dir, epochs=3)
    path = tmp_path / "other.yaml"
    path.write_text("epochs: 5\n")
    with caplog.at_level("WARNING"):
        resumed = resolve_settings({"output_dir": str(run_dir), "resume": True}, path)
    assert resumed.epochs == 3
    assert f"--config {path}" in caplog.text


def test_resume_without_a_run_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="config.json' does not exist: no run was started"):
        resolve_settings({"output_dir": str(tmp_path / "never"), "resume": True})


def test_data_settings_of_settings_and_of_a_partial_saved_config():
    settings = resolve_settings({"dataset": "mnist", "data_options": {"source": "idx"}})
    assert data_settings(settings) == data_settings(settings.as_dict())
    assert data_settings({"dataset": "mnist"}) == {
        "dataset": "mnist",
        "distortion": None,
        "data_dir": None,
        "seed": 0,
        "test_seed": 0,
        "val_size": None,
        "image_size": None,
        "data_options": {},
    }
