"""augment: training-time re-posing and re-lighting of natural images."""

import numpy as np
import pytest

from conftest import random_images
from stn_keras.data import AUGMENTATION_DEFAULTS
from stn_keras.data import augment
from stn_keras.data import check_augmentation_options
from stn_keras.data import make_pipeline
from stn_keras.data.augmentation import adjust_lighting
from stn_keras.data.augmentation import draw_augmentation
from stn_keras.data.placement import placement_parameters
from stn_keras.data.warping import warp

# Options that leave an image as it is.
IDENTITY = {
    "rotation_range": (0, 0),
    "scale_range": (1, 1),
    "translation_range": 0,
    "brightness_range": 0,
    "contrast_range": (1, 1),
}


# Six 16x16 RGB images as the data sets store them.
IMAGES_SHAPE = (6, 16, 16, 3)


def test_identity_options_return_the_images_unchanged():
    images = random_images(IMAGES_SHAPE, dtype="uint8")
    np.testing.assert_array_equal(augment(images, seed=1, **IDENTITY), images)


def test_a_quarter_turn_is_an_exact_counter_clockwise_rotation():
    # At 90 degrees every output pixel centre lands on an input pixel centre.
    images = random_images((6, 8, 8, 3), dtype="uint8")
    turned = augment(images, seed=0, **{**IDENTITY, "rotation_range": (90, 90)})
    np.testing.assert_array_equal(turned, np.rot90(images, k=1, axes=(1, 2)))


def test_same_seed_same_output_and_new_seeds_new_output():
    images = random_images(IMAGES_SHAPE, dtype="uint8")
    first = augment(images, seed=[3, 0, 1])
    np.testing.assert_array_equal(first, augment(images, seed=[3, 0, 1]))
    assert not np.array_equal(first, augment(images, seed=[3, 0, 2]))
    assert first.shape == images.shape and first.dtype == np.uint8


def test_float_images_stay_float_in_unit_range():
    images = random_images(IMAGES_SHAPE, dtype="uint8").astype(np.float32) / 255.0
    output = augment(images, seed=0, brightness_range=0.5, contrast_range=(2, 3))
    assert output.dtype == np.float32
    assert output.min() >= 0.0 and output.max() <= 1.0
    # Full scale is 1 for float images: a brightness of 0.1 adds 0.1.
    flat = np.full((1, 2, 2, 1), 0.5, np.float32)
    np.testing.assert_allclose(adjust_lighting(flat, [3.0], [0.1]), 0.6, rtol=1e-6)


def test_border_padding_fills_with_the_edge_not_with_black():
    flat = np.full((2, 12, 12, 1), 200, np.uint8)
    zoomed_out = {**IDENTITY, "scale_range": (0.5, 0.5)}
    np.testing.assert_array_equal(augment(flat, **zoomed_out), flat)
    black_corners = augment(flat, **zoomed_out, padding_mode="zeros")
    assert black_corners[:, 0, 0].max() == 0 and black_corners[:, 6, 6].min() == 200


def test_pose_matches_torch_affine_grid_and_grid_sample():
    torch = pytest.importorskip("torch")
    images = random_images((4, 10, 10, 2), dtype="uint8").astype(np.float32) / 255.0
    drawn = draw_augmentation(
        np.random.default_rng(5), 4, (10, 10), check_augmentation_options({"rotation_range": (-30, 30)})
    )
    theta = placement_parameters(
        drawn["angle"], drawn["scale"], drawn["shift_x"], drawn["shift_y"], (10, 10), (10, 10)
    ).astype(np.float32)
    ours = warp(images, "affine", theta, (10, 10), padding_mode="border")
    torch_images = torch.from_numpy(images).permute(0, 3, 1, 2)
    grid = torch.nn.functional.affine_grid(
        torch.from_numpy(theta).reshape(-1, 2, 3), torch_images.shape, align_corners=False
    )
    reference = torch.nn.functional.grid_sample(
        torch_images, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    np.testing.assert_allclose(ours, reference.permute(0, 2, 3, 1).numpy(), atol=1e-5)


def test_shifts_stay_within_the_translation_range():
    drawn = draw_augmentation(
        np.random.default_rng(0), 1000, (32, 40), check_augmentation_options({"translation_range": 0.1})
    )
    assert np.abs(drawn["shift_x"]).max() <= 4.0 and np.abs(drawn["shift_x"]).max() > 3.5
    assert np.abs(drawn["shift_y"]).max() <= 3.2 and np.abs(drawn["shift_y"]).max() > 2.8


def test_a_shift_moves_the_picture_by_that_many_pixels():
    images = np.zeros((1, 16, 16, 1), np.uint8)
    images[0, 4:8, 4:8] = 255
    theta = placement_parameters([0.0], [1.0], [3.0], [-2.0], (16, 16), (16, 16))
    moved = warp(images, "affine", theta, (16, 16), padding_mode="zeros")
    expected = np.zeros_like(images)
    expected[0, 2:6, 7:11] = 255
    np.testing.assert_array_equal(moved, expected)


def test_augment_shifts_by_the_drawn_pixels():
    images = np.zeros((3, 16, 16, 1), np.uint8)
    images[:, 6:10, 6:10] = 255
    options = {**IDENTITY, "translation_range": 0.25}
    drawn = draw_augmentation(
        np.random.default_rng([4]), 3, (16, 16), check_augmentation_options(options)
    )
    moved = augment(images, seed=[4], **options, padding_mode="zeros").astype(float)
    rows, columns = np.mgrid[:16, :16]
    for index in range(3):
        weights = moved[index, ..., 0] / moved[index].sum()
        # The square's centre (7.5, 7.5) moves right by shift_x and down by shift_y.
        assert (weights * columns).sum() == pytest.approx(7.5 + drawn["shift_x"][index], abs=0.05)
        assert (weights * rows).sum() == pytest.approx(7.5 + drawn["shift_y"][index], abs=0.05)


def test_lighting_by_hand():
    images = np.array([[[[10], [30]], [[50], [70]]]], np.uint8)  # mean 40
    doubled = adjust_lighting(images, [2.0], [0.0])
    np.testing.assert_array_equal(doubled[0, ..., 0], [[0, 20], [60, 100]])
    brighter = adjust_lighting(images, [1.0], [0.1])  # + 25.5, rounded
    np.testing.assert_array_equal(brighter[0, ..., 0], [[36, 56], [76, 96]])
    clipped = adjust_lighting(images, [10.0], [0.0])
    np.testing.assert_array_equal(clipped[0, ..., 0], [[0, 0], [140, 255]])


def test_options_are_merged_over_the_defaults():
    options = check_augmentation_options({"rotation_range": [-5, 5]})
    assert options == {**AUGMENTATION_DEFAULTS, "rotation_range": (-5.0, 5.0)}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"rotate": 5}, r"Unknown augmentation option\(s\) \['rotate'\]"),
        ({"rotation_range": (10, -10)}, "rotation_range=\\(10, -10\\)"),
        ({"rotation_range": 10}, "must be a pair"),
        ({"rotation_range": (0, float("inf"))}, "pair \\(low, high\\) of finite numbers"),
        ({"rotation_range": (-200, 0)}, "each >= -180 and <= 180"),
        ({"contrast_range": (True, True)}, "contrast_range=\\(True, True\\)"),
        ({"scale_range": (0, 1)}, "scale_range"),
        ({"translation_range": 1.5}, "translation_range=1.5"),
        ({"brightness_range": -0.1}, "brightness_range=-0.1"),
        ({"contrast_range": (-1, 1)}, "contrast_range"),
        ({"padding_mode": "wrap"}, "padding_mode"),
        ({"elastic_noise_std": -1}, "elastic_noise_std=-1"),
        ({"elastic_noise_std": float("nan")}, "elastic_noise_std"),
        ({"elastic_control_shape": (1, 4)}, "elastic_control_shape"),
        ({"elastic_control_shape": 4}, "elastic_control_shape"),
    ],
)
def test_bad_options_are_refused_with_their_name(options, message):
    with pytest.raises(ValueError, match=message):
        augment(random_images((1, 16, 16, 3), dtype="uint8"), **options)


def test_a_vanishing_elastic_jitter_is_the_affine_pose():
    # A thin-plate spline reproduces an affine map exactly: with control
    # points moved by next to nothing, the spline path samples the pose the
    # affine path does.
    images = random_images(IMAGES_SHAPE, dtype="uint8").astype(np.float32) / 255.0
    pose = {"rotation_range": (-30, 30), "scale_range": (0.8, 1.2), "translation_range": 0.1}
    affine = augment(images, seed=7, **pose)
    spline = augment(images, seed=7, **pose, elastic_noise_std=1e-9)
    np.testing.assert_allclose(spline, affine, atol=1e-4)


def test_elastic_jitter_moves_each_control_point_by_its_drawn_pixels():
    # On identity pose, the spline through the control points moved by the
    # drawn offsets is what the distortion module's TPS warp samples.
    images = random_images((3, 12, 12, 1), dtype="uint8").astype(np.float32) / 255.0
    options = check_augmentation_options(
        {**IDENTITY, "elastic_noise_std": 1.5, "elastic_control_shape": (3, 3), "padding_mode": "zeros"}
    )
    drawn = draw_augmentation(np.random.default_rng([2]), 3, (12, 12), options)
    offsets = drawn["control_point_offsets"]
    assert offsets.shape == (3, 9, 2)
    # Offsets in pixels, normalised as the sampler expects: 2 / 12 per pixel.
    expected = warp(images, "tps", (offsets * 2.0 / 12.0).reshape(3, -1), (12, 12), (3, 3))
    output = augment(images, seed=[2], **options)
    np.testing.assert_allclose(output, expected, atol=1e-6)
    assert not np.allclose(output, images, atol=1e-2)


def test_elastic_jitter_leaves_the_other_draws_of_a_seed_alone():
    rng_options = check_augmentation_options({})
    plain = draw_augmentation(np.random.default_rng(4), 5, (16, 16), rng_options)
    jittered = draw_augmentation(
        np.random.default_rng(4), 5, (16, 16), {**rng_options, "elastic_noise_std": 1.0}
    )
    assert "control_point_offsets" not in plain
    for name, values in plain.items():
        np.testing.assert_array_equal(jittered[name], values)


def test_options_must_be_a_mapping():
    with pytest.raises(ValueError, match="must be a mapping"):
        check_augmentation_options([("rotation_range", (0, 1))])


def test_pipeline_augments_every_batch_afresh_and_resumes_exactly():
    images, labels = random_images((8, 16, 16, 3), dtype="uint8"), np.arange(8)
    plain = make_pipeline(images, labels, batch_size=4)
    stream = make_pipeline(
        images, labels, batch_size=4, seed=2, augmentation={}, num_epochs=2
    )
    first, second = stream[0][0], stream[2][0]  # epoch 0 and epoch 1, same images
    assert not np.allclose(first, plain[0][0])
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(stream[0][1], labels[:4])
    resumed = make_pipeline(
        images, labels, batch_size=4, seed=2, augmentation={}, first_epoch=1
    )
    np.testing.assert_array_equal(resumed[0][0], second)


def test_pipeline_refuses_bad_augmentation_options():
    with pytest.raises(ValueError, match="Unknown augmentation option"):
        make_pipeline(random_images(IMAGES_SHAPE, dtype="uint8"), np.arange(6), batch_size=2, augmentation={"flip": True})
