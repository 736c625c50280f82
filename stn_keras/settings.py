"""The settings of a training run: the options table and `RunSettings`.

A run is described by one :class:`RunSettings`, a frozen dataclass whose
fields are the settings; :data:`OPTIONS` is its table (default, help, how to
check a value, the command-line choices), from which ``train.py`` builds its
flags. :func:`resolve_settings` merges :data:`DEFAULTS` < a ``--config``
YAML/JSON file < explicit settings, or reads a resumed run's saved ones,
into the one ``RunSettings`` that every later step only reads.
"""

import dataclasses
import functools
import json
import logging
import sys
import types
from collections.abc import Mapping
from pathlib import Path

from stn_keras import models
from stn_keras.run_dir import RunDirectory
from stn_keras.validation import check_bool
from stn_keras.validation import check_choice
from stn_keras.validation import check_int
from stn_keras.validation import check_number
from stn_keras.validation import with_current_names

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "rmsprop")
LR_SCHEDULES = ("constant", "step", "cosine")
# mirrored and multi-worker training are tf.distribute features; data_parallel
# is keras.distribution.DataParallel, which Keras implements on JAX.
STRATEGIES = ("default", "mirrored", "data_parallel")
# "auto": float16 compute on a GPU, bfloat16 on a CPU.
MIXED_PRECISION = ("off", "auto", "bfloat16", "float16")
# Settings that say which data a run used; evaluation reads them back.
DATA_SETTINGS = (
    "dataset",
    "distortion",
    "data_dir",
    "seed",
    "test_seed",
    "val_size",
    "image_size",
    "data_options",
)


def count_or_fraction(text):
    """``--val-size``: ``"500"`` -> 500 images, ``"0.1"`` -> a tenth."""
    text = str(text).strip()
    if text.isdigit():
        return int(text)
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            "expected an image count (e.g. 5000) or a fraction (e.g. 0.1). "
            f"Received: {text!r}"
        ) from None


def _optional(check):
    """``check`` that lets ``None`` (unset) through."""

    @functools.wraps(check)
    def checked(name, value):
        return None if value is None else check(name, value)

    return checked


def _mapping(name, value):
    if not isinstance(value, Mapping):
        raise ValueError(f"`{name}` must be a mapping. Received: {name}={value!r}")
    return dict(value)


def _text(name, value):
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"`{name}` must be a non-empty string. Received: {name}={value!r}"
        )
    return value


def _val_size(name, value):
    if isinstance(value, float):
        return check_number(name, value, 0, 1, exclusive_maximum=True)
    return check_int(name, value, 0)


def _mixed_precision(name, value):
    # Config files written before the policy names took true/false.
    if isinstance(value, bool):
        return "auto" if value else "off"
    return check_choice(name, value, MIXED_PRECISION, "mixed precision policy")


def _jit_compile(name, value):
    if value == "auto":
        return value
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be 'auto' or a bool. Received: {name}={value!r}")
    return value


def _verbose(name, value):
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2):
        return value
    raise ValueError(
        f"`{name}` must be 'auto', 0, 1 or 2. Received: {name}={value!r}"
    )


def _verbose_flag(text):
    """``--verbose auto|0|1|2``."""
    return text if text == "auto" else int(text)


def resolve_verbose(verbose, stream=None):
    """Keras' ``verbose`` for ``verbose="auto"``: the bar on a terminal only.

    On a file or pipe (nohup, CI) the bar would write a carriage-return
    frame per step; one line per epoch reads better there.
    """
    if verbose != "auto":
        return verbose
    stream = sys.stdout if stream is None else stream
    return 1 if stream.isatty() else 2


def _distortion(name, value):
    from stn_keras.data import DISTORTIONS

    if value in (None, "none"):
        return None
    return check_choice(name, value, DISTORTIONS, "distortion")


def _chooser(choices, what):
    return lambda name, value: check_choice(name, value, choices, what)


def _at_least(minimum):
    return lambda name, value: check_int(name, value, minimum)


def _positive_number(name, value):
    return check_number(name, value, 0, exclusive_minimum=True)


def _non_negative_number(name, value):
    return check_number(name, value, 0)


def _augmentation_options(name, value):
    from stn_keras.data import check_augmentation_options

    # Kept as given (the defaults fill in when the batches are made), so
    # config.json records what the user asked for; checked now all the same.
    # Pairs become lists, as config.json reads them back on a resume.
    value = {
        key: list(item) if isinstance(item, tuple) else item
        for key, item in _mapping(name, value).items()
    }
    check_augmentation_options(value)
    return value


def _fraction_below_one(name, value):
    return check_number(name, value, 0, 1, exclusive_maximum=True)


def _fraction_between_zero_and_one(name, value):
    return check_number(name, value, 0, 1, exclusive_minimum=True, exclusive_maximum=True)


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting: its default, help text and check.

    ``check(name, value)`` returns the value, normalised, or raises a
    ValueError naming the setting. ``choices`` are offered on the command
    line; ``flag_type`` parses a flag's text.
    """

    default: object
    help: str
    check: object
    choices: tuple = None
    flag_type: object = None
    boolean_flag: bool = False


def _plain(value):
    """``value`` with a read-only mapping view as the dict ``config.json`` holds."""
    return dict(value) if isinstance(value, Mapping) else value


def _setting(default, help, check, **flag_options):
    """A field of :class:`RunSettings` whose metadata is its :class:`Option`."""
    option = Option(default, help, check, **flag_options)
    if isinstance(default, dict):
        return dataclasses.field(default_factory=dict, metadata={"option": option})
    return dataclasses.field(default=default, metadata={"option": option})


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSettings:
    """The settings of a training run, checked, read-only.

    Each field is one setting; its ``metadata["option"]`` (:data:`OPTIONS`)
    holds its help text and check. Making one checks every value, and the
    combinations, once: a ``RunSettings`` is valid for as long as it lives.
    Mappings are read-only views; :meth:`as_dict` gives plain values, as
    ``config.json`` records them.

    Raises:
        ValueError: naming the first invalid setting, or a combination of
            settings that cannot work together.
    """

    dataset: str = _setting("digits", "data set name (stn_keras.data.DATASETS)", _text)
    distortion: str | None = _setting(
        None,
        "distortion of the images (stn_keras.data.DISTORTIONS); unset or "
        "'none': undistorted",
        _distortion,
    )
    online_distortion: bool = _setting(
        False,
        "distort the training images afresh every epoch (as the paper "
        "trained) instead of training on one fixed distortion; needs a "
        "distortion",
        check_bool,
    )
    augment: bool = _setting(
        False,
        "re-pose and re-light every training batch afresh (random rotation, "
        "scale, shift, contrast and brightness; stn_keras.data.augment), "
        "for natural images such as traffic signs",
        check_bool,
    )
    augmentation_options: Mapping = _setting(
        {},
        "options of the augmentation (stn_keras.data.AUGMENTATION_DEFAULTS), "
        "e.g. rotation_range=[-15,15]; needs augment",
        _augmentation_options,
    )
    model: str = _setting(
        "st_cnn",
        "model name (see docs/TRAINING.md)",
        _chooser(tuple(models.MODELS), "model"),
        choices=tuple(models.MODELS),
    )
    transform: str | None = _setting(None, "transformer's transform; unset means affine", _optional(_text))
    localization_convolution: str | None = _setting(
        None, "localisation net convolutions; unset means conv", _optional(_text)
    )
    localization_activation: str | None = _setting(
        None, "localisation net activation; unset means relu", _optional(_text)
    )
    model_options: Mapping = _setting({}, "extra keyword arguments of the model builder", _mapping)
    data_options: Mapping = _setting({}, "extra keyword arguments of load_dataset", _mapping)
    epochs: int = _setting(10, "number of epochs", _at_least(1))
    batch_size: int = _setting(
        32, "images per training step (global, over all devices)", _at_least(1)
    )
    optimizer: str = _setting(
        "adam", "optimizer", _chooser(OPTIMIZERS, "optimizer"), choices=OPTIMIZERS
    )
    learning_rate: float = _setting(0.001, "base learning rate", _positive_number)
    momentum: float = _setting(0.0, "momentum of sgd and rmsprop", _fraction_below_one)
    weight_decay: float = _setting(
        0.0,
        "decoupled weight decay of every optimizer (AdamW-style), applied to "
        "kernels only: biases, among them the transformer's identity bias, "
        "are left alone",
        _non_negative_number,
    )
    ema_momentum: float | None = _setting(
        None,
        "keep an exponential moving average of the weights with this "
        "momentum, in (0, 1); validation, the best model and the final "
        "model use the average. Unset: off",
        _optional(_fraction_between_zero_and_one),
        flag_type=float,
    )
    label_smoothing: float = _setting(
        0.0,
        "label smoothing of the crossentropy loss, in [0, 1): the true "
        "class's target is 1 - s + s / classes, every other class's s / classes",
        _fraction_below_one,
    )
    lr_schedule: str = _setting(
        "constant",
        "constant, step (the paper's: multiply by lr_decay_factor every "
        "lr_decay_steps iterations) or cosine (to 0 over the run)",
        _chooser(LR_SCHEDULES, "learning-rate schedule"),
        choices=LR_SCHEDULES,
    )
    lr_decay_steps: int = _setting(50000, "iterations between step decays", _at_least(1))
    lr_decay_factor: float = _setting(0.1, "multiplier of each step decay", _positive_number)
    early_stopping_patience: int = _setting(
        0,
        "stop after this many epochs without better validation accuracy "
        "(0: never)",
        _at_least(0),
    )
    seed: int = _setting(
        0,
        "seed of the data split, the training and validation distortions, "
        "initialisation and shuffling",
        _at_least(0),
    )
    test_seed: int = _setting(
        0,
        "seed of the test split's distortion, apart from --seed so that runs "
        "of every seed are measured on the same test images",
        _at_least(0),
    )
    data_dir: str | None = _setting(
        None,
        "data directory; unset: STN_DATA_DIR or the data layer's default",
        _optional(_text),
    )
    download: bool = _setting(
        False,
        "download a missing data set into --data-dir (without it, only the "
        "default data directory is downloaded into)",
        check_bool,
    )
    output_dir: str = _setting("runs/run", "run directory", _text)
    val_size: int | float | None = _setting(
        None,
        "validation images held out of training, a count or a fraction; "
        "unset: the data layer's default; 0: train on every training image and keep "
        "the last epoch's model",
        _optional(_val_size),
        flag_type=count_or_fraction,
    )
    image_size: int | None = _setting(
        None,
        "resize images to this size; unset: the data set's own size",
        _optional(_at_least(1)),
        flag_type=int,
    )
    mixed_precision: str = _setting(
        "off",
        "compute policy: off (float32), auto (float16 on a GPU, bfloat16 on "
        "a CPU), bfloat16 or float16; the transformer's grid and sampling "
        "stay float32",
        _mixed_precision,
        choices=MIXED_PRECISION,
    )
    jit_compile: str | bool = _setting(
        "auto",
        "compile the train step: auto (Keras' choice: XLA on JAX, and on "
        "TensorFlow when the model allows; torch runs eagerly), or "
        "--jit-compile / --no-jit-compile to force it on or off",
        _jit_compile,
        boolean_flag=True,
    )
    strategy: str = _setting(
        "default",
        "default (one device); mirrored (TensorFlow: all local GPUs, or all "
        "logical CPUs when there is none); data_parallel (JAX: all local "
        "devices, through keras.distribution.DataParallel)",
        _chooser(STRATEGIES, "strategy"),
        choices=STRATEGIES,
    )
    tensorboard_images: int = _setting(
        8, "validation images shown in TensorBoard", _at_least(0)
    )
    resume: bool = _setting(False, "continue the interrupted run in output_dir", check_bool)
    verbose: str | int = _setting(
        "auto",
        "Keras progress output: 0 silent, 1 bar, 2 one line/epoch; auto: the "
        "bar on a terminal, one line per epoch when stdout is a file or pipe",
        _verbose,
        flag_type=_verbose_flag,
    )

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = field.metadata["option"].check(field.name, getattr(self, field.name))
            if isinstance(value, dict):
                value = types.MappingProxyType(value)
            # Frozen: the checked value goes in the way dataclasses' own
            # __init__ sets fields.
            object.__setattr__(self, field.name, value)
        _check_combinations(self)

    def as_dict(self):
        """Every setting by name, mappings as plain dicts (``config.json``'s ``config``)."""
        return {
            field.name: _plain(getattr(self, field.name)) for field in dataclasses.fields(self)
        }

    @classmethod
    def from_saved(cls, saved):
        """The settings an earlier run saved, with settings added since.

        ``config.json`` records every setting, so only settings added after
        the run started are missing; their defaults reproduce what the run
        did. Old names of settings (:data:`RENAMED_SETTINGS`) are read too.
        """
        saved = with_current_names(saved, RENAMED_SETTINGS, "the saved configuration")
        _check_known(saved, "the saved configuration")
        return cls(**saved)


OPTIONS = {
    field.name: field.metadata["option"] for field in dataclasses.fields(RunSettings)
}
DEFAULTS = {name: option.default for name, option in OPTIONS.items()}
# Old names of settings (old name -> new): config files and the config.json
# of runs written before the renames still read.
RENAMED_SETTINGS = {
    "loc_conv": "localization_convolution",
    "loc_activation": "localization_activation",
}


def read_config_file(path):
    """Reads a YAML (``.yaml``/``.yml``) or JSON file of settings into a dict.

    Keys may use hyphens or underscores (``batch-size`` or ``batch_size``).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Config file not found. Received: path='{path}'")
    if path.suffix not in (".yaml", ".yml", ".json"):
        raise ValueError(
            f"Config file must end in .yaml, .yml or .json. Received: path='{path}'"
        )
    text = path.read_text()
    try:
        if path.suffix == ".json":
            values = json.loads(text)
        else:
            values = _yaml().safe_load(text)
    except Exception as error:
        if isinstance(error, json.JSONDecodeError) or type(
            error
        ).__module__.startswith("yaml"):
            raise ValueError(f"Cannot parse config file '{path}': {error}") from error
        raise
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(
            f"Config file '{path}' must hold a mapping of settings. "
            f"Received: {type(values).__name__}"
        )
    values = {str(key).replace("-", "_"): value for key, value in values.items()}
    return with_current_names(values, RENAMED_SETTINGS, f"config file '{path}'")


def _yaml():
    try:
        import yaml
    except ImportError as error:
        raise ValueError(
            "Reading a YAML config file needs PyYAML (pip install pyyaml); "
            "or write the settings as JSON."
        ) from error
    return yaml


def _check_known(values, source):
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise ValueError(
            f"Unknown setting(s) {unknown} in {source}. Expected some of "
            f"{sorted(DEFAULTS)}."
        )


def _check_combinations(settings):
    if settings.online_distortion and settings.distortion is None:
        raise ValueError(
            "`online_distortion` needs a distortion to draw afresh every "
            "epoch: set `distortion` (e.g. rts) or turn online_distortion "
            "off. Received: online_distortion=True, distortion=None"
        )
    if settings.augmentation_options and not settings.augment:
        raise ValueError(
            "`augmentation_options` are only used with `augment`: set "
            "augment (--augment) or drop the options. Received: "
            f"augmentation_options={dict(settings.augmentation_options)!r}, augment=False"
        )
    models.check_transformer_options(
        settings.model,
        settings.transform,
        settings.localization_convolution,
        settings.localization_activation,
    )


def resolve_settings(overrides=None, config_path=None):
    """The settings of a run: :data:`DEFAULTS` < the config file < ``overrides``.

    Mapping settings (``model_options``, ``data_options``,
    ``augmentation_options``) merge key by key: ``--model-option
    dropout=0.3`` over a config's ``model_options`` changes its dropout and
    keeps its other keys.

    With ``resume``, the settings are those the run in ``output_dir`` was
    started with (its ``config.json``); other explicit settings are ignored,
    said in a warning, except ``verbose``.

    Args:
        overrides: settings given explicitly (the command line's flags).
        config_path: optional YAML or JSON file of settings.

    Returns:
        A :class:`RunSettings`.

    Raises:
        ValueError: an unknown or invalid setting or config file, or, with
            ``resume``, a run directory without a readable ``config.json``.
    """
    values = dict(DEFAULTS)
    if config_path is not None:
        from_file = read_config_file(config_path)
        _check_known(from_file, f"config file '{config_path}'")
        values.update(from_file)
    overrides = with_current_names(overrides or {}, RENAMED_SETTINGS, "the arguments")
    _check_known(overrides, "arguments")
    for name, value in overrides.items():
        if isinstance(DEFAULTS[name], Mapping) and isinstance(values[name], Mapping) and isinstance(value, Mapping):
            value = {**values[name], **value}
        values[name] = value
    settings = RunSettings(**values)
    if not settings.resume:
        return settings
    saved = RunDirectory(settings.output_dir).read_config()
    resumed = RunSettings.from_saved(
        {
            **saved,
            "output_dir": settings.output_dir,
            "resume": True,
            "verbose": settings.verbose,
        }
    )
    ignored = sorted(
        name for name in overrides if getattr(settings, name) != getattr(resumed, name)
    )
    if config_path is not None:
        ignored.append(f"--config {config_path}")
    if ignored:
        logger.warning("Resuming with the run's saved settings; ignoring %s.", ignored)
    return resumed


def data_settings(values):
    """The data-identifying settings (:data:`DATA_SETTINGS`) of ``values``.

    ``values`` is a :class:`RunSettings` or a mapping of settings, such as
    the ``config`` of a run's ``config.json``, or evaluation flags; a
    missing one takes its default, and each is checked as a run's would be.
    """
    values = _as_mapping(values)
    return {
        name: _plain(OPTIONS[name].check(name, values.get(name, DEFAULTS[name])))
        for name in DATA_SETTINGS
    }


def load_data(values):
    """Loads the data set that the data settings of ``values`` describe.

    ``values`` is a :class:`RunSettings` or a mapping of settings.
    """
    from stn_keras.data import load_dataset

    return load_dataset(**dataset_arguments(values))


def dataset_arguments(values):
    """Keyword arguments of ``stn_keras.data.load_dataset`` for ``values``."""
    values = _as_mapping(values)
    settings = data_settings(values)
    # Only an explicit request is passed on: the data sets that cannot
    # download (digits) then refuse it instead of ignoring it.
    download = {"download": True} if values.get("download") else {}
    return {
        "name": settings["dataset"],
        "distortion": settings["distortion"],
        "data_dir": settings["data_dir"],
        "seed": settings["seed"],
        "test_seed": settings["test_seed"],
        "val_size": settings["val_size"],
        "image_size": settings["image_size"],
        **download,
        **settings["data_options"],
    }


def _as_mapping(values):
    return values.as_dict() if isinstance(values, RunSettings) else values
