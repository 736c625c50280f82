"""make_pipeline: batches for fit/evaluate/predict, shuffling, online
distortion, and the preview command."""

import dataclasses
import pickle
import re

import keras
import numpy as np
import pytest

from stn_keras.data import BatchSequence
from stn_keras.data import BatchSettings
from stn_keras.data import load_dataset
from stn_keras.data import make_pipeline
from stn_keras.data.__main__ import main


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_batches_are_float_images_in_unit_range(digits):
    x, y = digits.x_train[:10], digits.y_train[:10]
    pipeline = make_pipeline(x, y, batch_size=4)
    assert len(pipeline) == 3
    images, labels = pipeline[2]
    assert images.shape == (2, 28, 28, 1) and images.dtype == np.float32
    np.testing.assert_allclose(images, x[8:] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(labels, y[8:])
    (only_images,) = make_pipeline(x, None, batch_size=4)[0]
    assert only_images.shape == (4, 28, 28, 1)
    with pytest.raises(IndexError):
        pipeline[3]


def test_shuffling_is_seeded_and_changes_every_epoch(digits):
    x, y = digits.x_train[:12], np.arange(12)
    first = make_pipeline(x, y, batch_size=12, shuffle=True, seed=3)
    again = make_pipeline(x, y, batch_size=12, shuffle=True, seed=3)
    epoch_0 = first[0][1]
    np.testing.assert_array_equal(epoch_0, again[0][1])
    assert sorted(epoch_0.tolist()) == list(range(12))
    first.on_epoch_end()
    assert not np.array_equal(first[0][1], epoch_0)


def test_online_distortion_is_fresh_every_epoch_and_reproducible(digits):
    x, y = digits.x_train[:8], digits.y_train[:8]
    pipeline = make_pipeline(x, y, batch_size=8, distortion="rts", seed=1)
    epoch_0, labels = pipeline[0]
    assert epoch_0.shape == (8, 42, 42, 1) and 0.0 <= epoch_0.min() and epoch_0.max() <= 1.0
    np.testing.assert_array_equal(labels, y)
    pipeline.on_epoch_end()
    assert not np.array_equal(pipeline[0][0], epoch_0)
    np.testing.assert_array_equal(
        make_pipeline(x, y, batch_size=8, distortion="rts", seed=1)[0][0], epoch_0
    )
    # Four pairs are eight RTS digits: the sampler compiled above is reused.
    addition = make_pipeline(x[:4], y[:4], batch_size=4, distortion="addition", num_classes=19)
    images, sums = addition[0]
    assert images.shape == (4, 42, 42, 2) and sums.max() <= 18


def test_pipeline_started_at_epoch_k_continues_one_started_at_zero(digits):
    x, y = digits.x_train[:10], digits.y_train[:10]
    settings = {"batch_size": 4, "shuffle": True, "seed": 5, "distortion": "rts"}
    from_zero = make_pipeline(x, y, **settings)
    for _ in range(2):
        from_zero.on_epoch_end()
    from_two = make_pipeline(x, y, **settings, first_epoch=2)
    assert from_two.epoch == 2
    for index in range(len(from_zero)):
        for expected, actual in zip(from_zero[index], from_two[index]):
            np.testing.assert_array_equal(expected, actual)
    from_two.on_epoch_end()
    from_zero.on_epoch_end()
    np.testing.assert_array_equal(from_zero[0][0], from_two[0][0])
    assert not np.array_equal(from_zero[0][0], make_pipeline(x, y, **settings)[0][0])


def test_fit_evaluate_predict_accept_the_pipeline(digits):
    x, y = digits.x_train[:64], digits.y_train[:64]
    model = keras.Sequential(
        [keras.Input((42, 42, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    train = make_pipeline(x, y, batch_size=32, shuffle=True, distortion="rts")
    history = model.fit(train, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    # One epoch's draw: Keras' TensorFlow adapter may read a sequence's next
    # epoch ahead, which an endless pipeline draws afresh.
    test = make_pipeline(x, y, batch_size=32, distortion="rts", num_epochs=1)
    # The pipeline delivers every image once, with its own label: evaluating
    # it is evaluating its batches joined.
    batches = [test[index] for index in range(len(test))]
    joined_x = np.concatenate([images for images, _ in batches])
    joined_y = np.concatenate([labels for _, labels in batches])
    np.testing.assert_array_equal(joined_y, y)
    expected = model.evaluate(joined_x, joined_y, batch_size=64, verbose=0)
    np.testing.assert_allclose(model.evaluate(test, verbose=0), expected, rtol=1e-5)
    assert model.predict(make_pipeline(x, None, 32, distortion="rts"), verbose=0).shape == (64, 10)


def through_make_pipeline(x, y, **settings):
    return make_pipeline(x, y, **settings)


def through_batch_sequence(x, y, **settings):
    return BatchSequence(x, y, BatchSettings(**settings))


# One row per check: both ways of making a stream refuse it the same way.
BAD_ARGUMENTS = [
    ({"batch_size": 0}, "`batch_size` must be an int >= 1. Received: batch_size=0"),
    ({"batch_size": 2.0}, "Received: batch_size=2.0"),
    ({"batch_multiple": 0}, "`batch_multiple` must be an int >= 1. Received: batch_multiple=0"),
    (
        {"batch_size": 3, "batch_multiple": 2},
        "`batch_size` must be a multiple of `batch_multiple`. Received: batch_size=3, batch_multiple=2",
    ),
    ({"shuffle": 1}, "`shuffle` must be a bool. Received: shuffle=1"),
    ({"seed": -1}, "`seed` must be an int >= 0. Received: seed=-1"),
    ({"distortion": "warp"}, "Received: distortion='warp'"),
    (
        {"distortion": "rts", "distortion_parameters": {"angle": 3}},
        "Unknown parameter(s) ['angle'] for distortion 'rts'",
    ),
    ({"distortion_parameters": [("canvas_size", 42)]}, "`distortion_parameters` must be a mapping"),
    ({"num_classes": 0}, "`num_classes` must be an int >= 1. Received: num_classes=0"),
    ({"augmentation": {"flip": True}}, "Unknown augmentation option(s) ['flip']"),
    ({"augmentation": {"brightness_range": 2}}, "Received: brightness_range=2"),
    ({"first_epoch": -1}, "`first_epoch` must be an int >= 0. Received: first_epoch=-1"),
    ({"num_epochs": 0}, "`num_epochs` must be an int >= 1. Received: num_epochs=0"),
    ({"x": np.zeros((0, 28, 28, 1), np.uint8)}, "`x` must be a non-empty batch"),
    ({"x": np.zeros((28, 28, 1), np.uint8)}, "Received: x.shape=(28, 28, 1)"),
    ({"y": np.zeros(3)}, "x.shape=(4, 28, 28, 1), y.shape=(3,)"),
    ({"y": None, "distortion": "addition"}, "Distortion 'addition' needs labels `y`"),
]


@pytest.mark.parametrize("make_stream", [through_make_pipeline, through_batch_sequence])
@pytest.mark.parametrize("arguments, message", BAD_ARGUMENTS)
def test_bad_arguments_are_rejected(make_stream, arguments, message):
    settings = {"x": np.zeros((4, 28, 28, 1), np.uint8), "y": np.zeros(4), "batch_size": 2}
    with pytest.raises(ValueError, match=re.escape(message)):
        make_stream(**{**settings, **arguments})


def test_batch_sequence_needs_batch_settings():
    with pytest.raises(ValueError, match=re.escape("`settings` must be a `stn_keras.data.BatchSettings`")):
        BatchSequence(np.zeros((4, 28, 28, 1), np.uint8), None, {"batch_size": 2})


def test_batch_settings_are_fixed_once_made():
    parameters = {"canvas_size": 30}
    settings = BatchSettings(4, distortion="rts", distortion_parameters=parameters, augmentation={})
    parameters["canvas_size"] = 60
    assert settings.distortion_parameters == {"canvas_size": 30}
    assert settings.augmentation["padding_mode"] == "border"  # the defaults filled in
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.batch_size = 8
    # Worker processes of a PyDataset may receive it pickled.
    assert pickle.loads(pickle.dumps(settings)) == settings
    # A changed copy is checked again.
    assert dataclasses.replace(settings, first_epoch=3).augmentation == settings.augmentation
    with pytest.raises(ValueError, match="Received: first_epoch=-3"):
        dataclasses.replace(settings, first_epoch=-3)


def test_labels_outside_num_classes_raise():
    pipeline = make_pipeline(np.zeros((2, 28, 28, 1), np.uint8), np.array([0, 10]), 2, num_classes=10)
    with pytest.raises(ValueError, match=re.escape("labels outside [0, 10): min 0, max 10")):
        pipeline[0]


def test_preview_command_writes_a_png(tmp_path):
    out = tmp_path / "preview.png"
    main(["preview", "--dataset", "digits", "--distortion", "addition", "--count", "6", "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
