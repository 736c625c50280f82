"""Every experiments/*.yaml resolves and builds its model."""

from pathlib import Path

import pytest

from stn_keras import training
from stn_keras.settings import resolve_settings

EXPERIMENTS_DIR = Path(__file__).resolve().parents[1] / "experiments"
EXPERIMENTS = sorted(EXPERIMENTS_DIR.rglob("*.yaml"))
# Image shape and class count of each (dataset, distortion), as the paper's.
DATA_SHAPES = {
    ("mnist", None): ((28, 28, 1), 10),
    ("mnist", "rotated"): ((28, 28, 1), 10),
    ("mnist", "projective"): ((28, 28, 1), 10),
    ("mnist", "elastic"): ((28, 28, 1), 10),
    ("mnist", "rts"): ((42, 42, 1), 10),
    ("mnist", "cluttered"): ((60, 60, 1), 10),
    ("mnist", "addition"): ((42, 42, 2), 19),
    ("gtsrb", None): ((32, 32, 3), 43),
}


def test_there_is_one_config_per_experiment():
    names = {path.relative_to(EXPERIMENTS_DIR).as_posix() for path in EXPERIMENTS}
    assert len([name for name in names if name.startswith("table1/")]) == 32
    assert {
        "cluttered_cnn.yaml",
        "cluttered_st_cnn.yaml",
        "addition_st_cnn.yaml",
        "mnist_st_cnn_conv.yaml",
        "mnist_st_cnn_coordconv.yaml",
        "mnist_st_cnn_coordconv_leaky_relu.yaml",
        "rts_cnn_param_matched.yaml",
        "rts_st_cnn_param_matched.yaml",
        "gtsrb_st_idsia.yaml",
        "gtsrb_compact_st_cnn.yaml",
    } <= names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda path: path.stem)
def test_experiment_config_builds_its_model(path):
    settings = resolve_settings({}, path)
    assert settings.output_dir.startswith("runs/")
    image_shape, num_classes = DATA_SHAPES[(settings.dataset, settings.distortion)]
    model = training.build_configured_model(settings, image_shape, num_classes)
    assert model.output_shape == (None, num_classes)


PAPER_SCHEDULES = sorted((EXPERIMENTS_DIR / "table1").glob("*.yaml")) + [
    EXPERIMENTS_DIR / f"{task}_{model}.yaml"
    for task in ("cluttered", "addition")
    for model in ("cnn", "st_cnn")
]


@pytest.mark.parametrize("path", PAPER_SCHEDULES, ids=lambda path: path.stem)
def test_paper_schedules_draw_distortions_online_for_150k_iterations(path):
    # Appendix A.4: distortions generated on the fly, 150k iterations of
    # batch 256 on the 50k digits left after the 10k validation split.
    settings = resolve_settings({}, path)
    assert settings.online_distortion is True
    steps_per_epoch = -(-50_000 // settings.batch_size)
    assert 150_000 <= settings.epochs * steps_per_epoch < 150_000 + steps_per_epoch
    assert (settings.optimizer, settings.learning_rate) == ("sgd", 0.01)
    assert (settings.lr_schedule, settings.lr_decay_steps) == ("step", 50_000)
