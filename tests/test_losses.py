"""The smoothed sparse crossentropy: its values, weights and serialisation."""

import keras
import numpy as np
import pytest

from stn_keras.losses import SmoothedSparseCategoricalCrossentropy

LABELS = np.array([0, 2, 1, 2])
PROBABILITIES = np.array(
    [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3], [0.5, 0.25, 0.25]], dtype="float32"
)


def by_hand(labels, probabilities, smoothing):
    """Each sample's loss: -sum(target * log(p)), the target smoothed."""
    num_classes = probabilities.shape[-1]
    targets = np.full(probabilities.shape, smoothing / num_classes)
    targets[np.arange(len(labels)), labels] += 1 - smoothing
    return -np.sum(targets * np.log(probabilities), axis=-1)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_the_loss_is_the_smoothed_crossentropy_of_one_hot_labels(smoothing):
    loss = SmoothedSparseCategoricalCrossentropy(smoothing)
    value = float(loss(LABELS, PROBABILITIES))
    assert value == pytest.approx(by_hand(LABELS, PROBABILITIES, smoothing).mean(), rel=1e-5)
    one_hot = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
    assert value == pytest.approx(float(one_hot(np.eye(3)[LABELS], PROBABILITIES)), rel=1e-6)
    # Labels of shape (batch, 1) read the same.
    assert float(loss(LABELS[:, None], PROBABILITIES)) == pytest.approx(value, rel=1e-6)
    if smoothing == 0.0:
        plain = keras.losses.SparseCategoricalCrossentropy()
        assert value == pytest.approx(float(plain(LABELS, PROBABILITIES)), rel=1e-6)


def test_a_zero_sample_weight_drops_the_sample():
    loss = SmoothedSparseCategoricalCrossentropy(0.2)
    weights = np.array([1.0, 0.5, 0.0, 2.0])
    value = float(loss(LABELS, PROBABILITIES, sample_weight=weights))
    # Keras' sum_over_batch_size: the weighted sum over all the samples' count.
    expected = np.sum(weights * by_hand(LABELS, PROBABILITIES, 0.2)) / len(LABELS)
    assert value == pytest.approx(expected, rel=1e-5)
    one_hot = keras.losses.CategoricalCrossentropy(label_smoothing=0.2)
    assert value == pytest.approx(
        float(one_hot(np.eye(3)[LABELS], PROBABILITIES, sample_weight=weights)), rel=1e-6
    )
    # Whatever the weightless sample predicts, the loss is the same.
    changed = PROBABILITIES.copy()
    changed[2] = [0.98, 0.01, 0.01]
    assert float(loss(LABELS, changed, sample_weight=weights)) == pytest.approx(value, rel=1e-6)


@pytest.mark.parametrize("smoothing", [-0.1, 1.0, 1.5, float("nan"), "0.1", True])
def test_a_smoothing_outside_zero_to_one_is_refused(smoothing):
    with pytest.raises(ValueError, match=r"`label_smoothing` must be a finite number >= 0 and < 1\. Received: label_smoothing="):
        SmoothedSparseCategoricalCrossentropy(smoothing)


def test_the_loss_round_trips_through_its_config_and_a_keras_file(tmp_path):
    loss = SmoothedSparseCategoricalCrossentropy(0.3, reduction="sum", name="smoothed")
    copy = SmoothedSparseCategoricalCrossentropy.from_config(loss.get_config())
    assert (copy.label_smoothing, copy.reduction, copy.name) == (0.3, "sum", "smoothed")
    assert float(copy(LABELS, PROBABILITIES)) == pytest.approx(float(loss(LABELS, PROBABILITIES)))
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss=loss)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.loss, SmoothedSparseCategoricalCrossentropy)
    assert loaded.loss.get_config() == loss.get_config()
    x = np.ones((4, 2), dtype="float32")
    assert loaded.evaluate(x, LABELS, verbose=0) == pytest.approx(
        model.evaluate(x, LABELS, verbose=0), rel=1e-6
    )
