"""The paper's distortions: shapes, determinism, parameter distributions and
hand-computed reference cases."""

import re

import keras
import numpy as np
import pytest

from stn_keras.data import DISTORTIONS
from stn_keras.data import distort
from stn_keras.data import distortion_parameters
from stn_keras.data import warping
from stn_keras.data.deformation_distortions import CORNERS
from stn_keras.data.deformation_distortions import homographies
from stn_keras.data.digits import load_digits
from stn_keras.data.placement_distortions import paste_patches

OUTPUT_SHAPES = {
    "rotated": (28, 28, 1),
    "rts": (42, 42, 1),
    "projective": (28, 28, 1),
    "elastic": (28, 28, 1),
    "translated": (60, 60, 1),
    "cluttered": (60, 60, 1),
    "addition": (42, 42, 2),
}
# Parameters that make each distortion the identity on a 28x28 canvas.
IDENTITY = {
    "rotated": {"rotation_range": (0, 0)},
    "rts": {"rotation_range": (0, 0), "scale_range": (1, 1), "canvas_size": 28},
    "projective": {"scale_range": (1, 1), "corner_noise_std": 0},
    "elastic": {"scale_range": (1, 1), "control_point_noise_std": 0},
    "translated": {"canvas_size": 28},
    "cluttered": {"canvas_size": 28, "num_clutter_patches": 0},
}


@pytest.fixture(scope="module")
def digits():
    images, labels = load_digits()
    return images[:12], labels[:12]


@pytest.mark.parametrize("distortion", DISTORTIONS)
def test_shapes_dtype_and_determinism(digits, distortion):
    images, labels = digits
    first = distort(images, distortion, seed=3, labels=labels)
    again = distort(images, distortion, seed=3, labels=labels)
    other = distort(images, distortion, seed=4, labels=labels)
    assert first.images.shape == (len(images), *OUTPUT_SHAPES[distortion])
    assert first.images.dtype == np.uint8
    np.testing.assert_array_equal(first.images, again.images)
    assert not np.array_equal(first.images, other.images)
    for name, value in first.parameters.items():
        np.testing.assert_array_equal(value, again.parameters[name])
        assert value.shape[0] == len(images)
    assert first.images.max() > 100  # the digit is on the canvas


@pytest.mark.parametrize("distortion", sorted(IDENTITY))
def test_identity_parameters_reproduce_the_digit(digits, distortion):
    images, labels = digits
    result = distort(images, distortion, seed=0, labels=labels, **IDENTITY[distortion])
    np.testing.assert_array_equal(result.images, images)
    np.testing.assert_array_equal(result.labels, labels)


def test_rotation_by_90_degrees_is_counter_clockwise_on_screen(digits):
    images, _ = digits
    result = distort(images, "rotated", seed=0, rotation_range=(90, 90))
    np.testing.assert_array_equal(result.images, np.rot90(images, k=1, axes=(1, 2)))


def test_translated_is_an_exact_paste_at_the_drawn_position(digits):
    images, _ = digits
    result = distort(images, "translated", seed=1)
    for image, output, x, y in zip(
        images, result.images, result.parameters["position_x"], result.parameters["position_y"]
    ):
        expected = np.zeros((60, 60, 1), dtype=np.uint8)
        expected[y : y + 28, x : x + 28] = image
        np.testing.assert_array_equal(output, expected)


def test_cluttered_is_exactly_the_digit_plus_six_patches(digits):
    images, _ = digits
    result = distort(images, "cluttered", seed=2)
    drawn = result.parameters
    assert drawn["patch_source"].shape == (len(images), 6)
    assert not np.any(drawn["patch_source"] == np.arange(len(images))[:, None])
    translated = distort(images, "translated", seed=2).images
    rebuilt = paste_patches(translated, images, drawn, 6)
    np.testing.assert_array_equal(result.images, rebuilt)
    # Nothing outside the digit box and the six 6x6 patches.
    covered = np.zeros(result.images.shape[:3], dtype=bool)
    for index in range(len(images)):
        x, y = drawn["position_x"][index], drawn["position_y"][index]
        covered[index, y : y + 28, x : x + 28] = True
        for patch_x, patch_y in zip(drawn["patch_x"][index], drawn["patch_y"][index]):
            covered[index, patch_y : patch_y + 6, patch_x : patch_x + 6] = True
    assert not result.images[~covered].any()
    assert (result.images[..., 0] != translated[..., 0]).any()


def test_addition_sums_the_labels_of_two_channels(digits):
    images, labels = digits
    result = distort(
        images, "addition", seed=5, labels=labels,
        rotation_range=(0, 0), scale_range=(1, 1), canvas_size=28,
    )
    partner = result.parameters["partner"]
    assert not np.any(partner == np.arange(len(images)))
    np.testing.assert_array_equal(result.labels, labels + labels[partner])
    np.testing.assert_array_equal(result.images[..., :1], images)
    np.testing.assert_array_equal(result.images[..., 1:], images[partner])


@pytest.mark.parametrize("distortion", ["projective", "elastic"])
def test_pure_scaling_matches_the_affine_placement(digits, distortion):
    # Without noise, the homography and the thin-plate spline reduce to the
    # scaling about the centre that the affine placement computes.
    images, _ = digits
    scaled = distort(images, distortion, seed=0, scale_range=(0.8, 0.8), **{
        "projective": {"corner_noise_std": 0},
        "elastic": {"control_point_noise_std": 0},
    }[distortion])
    reference = distort(
        images, "rts", seed=0, rotation_range=(0, 0), scale_range=(0.8, 0.8), canvas_size=28
    )
    difference = np.abs(scaled.images.astype(int) - reference.images.astype(int))
    assert difference.max() <= 1


def test_homographies_map_source_quads_onto_targets():
    rng = np.random.default_rng(0)
    source = CORNERS + rng.normal(0, 0.1, (5, 4, 2))
    target = CORNERS * 0.8 + rng.normal(0, 0.1, (5, 4, 2))
    theta = homographies(source, target)
    matrix = np.concatenate([theta, np.ones((5, 1))], -1).reshape(5, 3, 3)
    points = np.einsum("nij,nkj->nki", matrix, np.concatenate([source, np.ones((5, 4, 1))], -1))
    np.testing.assert_allclose(points[..., :2] / points[..., 2:], target, atol=1e-9)


def test_drawn_parameters_lie_within_and_cover_their_ranges():
    images = np.zeros((600, 28, 28, 1), dtype=np.uint8)
    rts = distort(images, "rts", seed=0).parameters
    for name, (low, high) in {
        "angle": (-45, 45), "scale": (0.7, 1.2), "position_x": (0, 14), "position_y": (0, 14)
    }.items():
        span = high - low
        assert low <= rts[name].min() < low + 0.02 * span, name
        assert high - 0.02 * span < rts[name].max() <= high, name
    rotated = distort(images, "rotated", seed=0).parameters["angle"]
    assert -90 <= rotated.min() < -88 and 88 < rotated.max() <= 90
    translated = distort(images, "translated", seed=0).parameters
    assert set(np.unique(translated["position_x"])) == set(range(33))
    projective = distort(images, "projective", seed=0).parameters
    assert 0.75 <= projective["scale"].min() < 0.76 and 0.99 < projective["scale"].max() <= 1.0
    assert abs(projective["corner_offsets"].std() - 5.0) < 0.25
    assert abs(projective["corner_offsets"].mean()) < 0.25
    elastic = distort(images[:200], "elastic", seed=0).parameters
    assert elastic["control_point_offsets"].shape == (200, 16, 2)
    assert abs(elastic["control_point_offsets"].std() - 1.5) < 0.06


def test_result_does_not_depend_on_chunking(digits, monkeypatch):
    images, _ = digits
    # Eager where eager is cheap; JAX compiles every eager operation anyway.
    compile_sampler = keras.backend.backend() == "jax"
    whole = distort(images, "rts", seed=9, compile_sampler=compile_sampler)
    monkeypatch.setattr(warping, "CHUNK_SIZE", 5)
    chunked = distort(images, "rts", seed=9, compile_sampler=compile_sampler)
    np.testing.assert_array_equal(whole.images, chunked.images)


def test_paper_defaults_are_the_parameters():
    assert distortion_parameters("rts") == {
        "rotation_range": (-45.0, 45.0), "scale_range": (0.7, 1.2), "canvas_size": 42
    }
    assert distortion_parameters("cluttered")["num_clutter_patches"] == 6
    assert distortion_parameters("elastic")["control_point_noise_std"] == 1.5
    assert distortion_parameters("projective")["corner_noise_std"] == 5.0


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"distortion": "shear"}, "Unknown distortion. Expected one of ('rotated', "),
        ({"distortion": "rts", "angle": 3}, "Unknown parameter(s) ['angle'] for distortion 'rts'"),
        ({"distortion": "addition"}, "Distortion 'addition' needs `labels`"),
        ({"distortion": "rts", "rotation_range": (5, -5)}, "Received: rotation_range=(5, -5)"),
        ({"distortion": "rts", "canvas_size": 20}, "at least the image size (28, 28). Received: canvas_size=20"),
        ({"distortion": "projective", "corner_noise_std": -1}, "Received: corner_noise_std=-1"),
        ({"distortion": "cluttered", "clutter_patch_size": 40}, "Received: clutter_patch_size=40"),
    ],
)
def test_bad_arguments_are_rejected(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        distort(np.zeros((2, 28, 28, 1), dtype=np.uint8), seed=0, **arguments)


def test_images_must_be_a_batch():
    with pytest.raises(ValueError, match=re.escape("Received: images.shape=(28, 28)")):
        distort(np.zeros((28, 28)), "rts")
    with pytest.raises(ValueError, match="`labels` must have one entry per image"):
        distort(np.zeros((2, 28, 28, 1)), "rts", labels=[1])


@pytest.mark.parametrize("distortion", DISTORTIONS)
def test_an_empty_split_distorts_to_an_empty_array_of_the_distorted_shape(digits, distortion):
    # An empty validation split (val_size=0) is distorted like any other.
    images, labels = digits
    full = distort(images[:2], distortion, labels=labels[:2])
    empty = distort(images[:0], distortion, labels=labels[:0])
    assert empty.images.shape == (0, *full.images.shape[1:])
    assert empty.images.dtype == full.images.dtype
    assert empty.labels.shape == (0, *full.labels.shape[1:])
