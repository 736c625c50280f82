"""Grid generators and the bilinear sampler against torch and by hand.

Runs on every Keras backend; torch (CPU) is the reference. On PyTorch the
library samples with torch's native ``grid_sample``, so the comparisons with
torch and the gradient checks run there twice (the ``implementation``
fixture): once natively, once through the ``keras.ops`` sampler the other
backends use, which would otherwise be compared with nothing but itself.
"""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from keras import ops

from conftest import BACKEND
from conftest import numpy
from conftest import value_and_gradients
from stn_keras import ops as stn_ops

PADDING_MODES = ("zeros", "border", "reflection")
CONVENTIONS = list(itertools.product((False, True), PADDING_MODES))


def torch_grid_sample(images, grid, padding_mode, align_corners):
    """torch's grid_sample on NHWC torch tensors, NHWC output."""
    return F.grid_sample(
        images.permute(0, 3, 1, 2),
        grid,
        mode="bilinear",
        padding_mode=padding_mode,
        align_corners=align_corners,
    ).permute(0, 2, 3, 1)


def random_case(seed, batch=3, size=(9, 7), channels=2):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(batch, *size, channels)).astype("float32")
    # Large entries put many samples far outside the image.
    theta = rng.normal(scale=1.5, size=(batch, 6)).astype("float32")
    return images, theta


@pytest.mark.parametrize("align_corners,padding_mode", CONVENTIONS)
def test_values_and_gradients_match_torch(implementation, align_corners, padding_mode):
    images, theta = random_case(seed=1)
    output_size = (6, 11)
    weights = np.random.default_rng(2).normal(
        size=(3, *output_size, 2)
    ).astype("float32")

    def loss(images, theta):
        grid = stn_ops.affine_grid(theta, output_size, align_corners)
        sampled = stn_ops.bilinear_sample(
            images, grid, padding_mode, align_corners
        )
        return ops.sum(sampled * ops.convert_to_tensor(weights))

    value, (images_gradient, theta_gradient) = value_and_gradients(
        loss, images, theta
    )
    torch_images = torch.tensor(images, requires_grad=True)
    torch_theta = torch.tensor(theta, requires_grad=True)
    grid = F.affine_grid(
        torch_theta.reshape(-1, 2, 3),
        (3, 2, *output_size),
        align_corners=align_corners,
    )
    torch_output = torch_grid_sample(
        torch_images, grid, padding_mode, align_corners
    )
    sampled = numpy(
        stn_ops.bilinear_sample(
            images,
            stn_ops.affine_grid(theta, output_size, align_corners),
            padding_mode,
            align_corners,
        )
    )
    np.testing.assert_allclose(sampled, torch_output.detach().numpy(), atol=1e-5)
    torch_loss = (torch_output * torch.tensor(weights)).sum()
    torch_loss.backward()
    np.testing.assert_allclose(value, torch_loss.item(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(
        images_gradient, torch_images.grad.numpy(), atol=1e-5
    )
    np.testing.assert_allclose(
        theta_gradient, torch_theta.grad.numpy(), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize("align_corners,padding_mode", CONVENTIONS)
def test_grid_gradient_matches_torch_far_outside(implementation, align_corners, padding_mode):
    """Samples up to 3 image-widths away, where padding modes differ most."""
    rng = np.random.default_rng(3)
    images = rng.normal(size=(2, 5, 8, 3)).astype("float32")
    grid = rng.uniform(-7, 7, size=(2, 4, 6, 2)).astype("float32")
    weights = rng.normal(size=(2, 4, 6, 3)).astype("float32")

    def loss(grid):
        sampled = stn_ops.bilinear_sample(
            images, grid, padding_mode, align_corners
        )
        return ops.sum(sampled * ops.convert_to_tensor(weights))

    _, (grid_gradient,) = value_and_gradients(loss, grid)
    torch_grid = torch.tensor(grid, requires_grad=True)
    sampled = torch_grid_sample(
        torch.tensor(images), torch_grid, padding_mode, align_corners
    )
    (sampled * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(
        numpy(
            stn_ops.bilinear_sample(images, grid, padding_mode, align_corners)
        ),
        sampled.detach().numpy(),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        grid_gradient, torch_grid.grad.numpy(), rtol=1e-5, atol=1e-4
    )


# torch warns that a unit-size axis is unusual; matching it there is the point.
@pytest.mark.filterwarnings("ignore:Since version 1.3.0, affine_grid")
@pytest.mark.parametrize("align_corners", (False, True))
@pytest.mark.parametrize("size", [(5, 7), (13, 4), (1, 6), (28, 28)])
def test_affine_grid_matches_torch(align_corners, size):
    theta = random_case(seed=4)[1]
    grid = numpy(stn_ops.affine_grid(theta, size, align_corners))
    expected = F.affine_grid(
        torch.tensor(theta.reshape(-1, 2, 3)),
        (3, 1, *size),
        align_corners=align_corners,
    ).numpy()
    np.testing.assert_allclose(grid, expected, atol=1e-6)
    matrix_form = stn_ops.affine_grid(
        theta.reshape(-1, 2, 3), size, align_corners
    )
    np.testing.assert_array_equal(numpy(matrix_form), grid)


@pytest.mark.parametrize(
    "size,align_corners,pixels,normalized",
    [
        # Outer edges: pixel i of 4 spans [i - 0.5, i + 0.5]; -1 and +1 are
        # the image's edges, -0.5 and 3.5.
        (4, False, [-0.5, 0, 1, 2, 3, 3.5], [-1, -0.75, -0.25, 0.25, 0.75, 1]),
        # Centres: the first and last pixel centres are -1 and +1.
        (5, True, [-1, 0, 1, 2, 4, 6], [-1.5, -1, -0.5, 0, 1, 2]),
        (1, False, [0], [0]),
        (1, True, [0], [0]),
    ],
)
def test_pixel_and_normalized_coordinates_by_hand(
    size, align_corners, pixels, normalized
):
    pixels = np.asarray(pixels, "float64")
    normalized = np.asarray(normalized, "float64")
    np.testing.assert_array_equal(
        stn_ops.pixel_to_normalized(pixels, size, align_corners), normalized
    )
    if size > 1:
        # A single pixel maps every normalised coordinate to itself.
        np.testing.assert_array_equal(
            stn_ops.normalized_to_pixel(normalized, size, align_corners), pixels
        )


@pytest.mark.parametrize("align_corners", (False, True))
def test_pixel_and_normalized_coordinates_round_trip_on_tensors(align_corners):
    size = ops.convert_to_tensor(37.0)
    pixels = ops.convert_to_tensor(np.linspace(-3, 40, 11, dtype="float32"))
    normalized = stn_ops.pixel_to_normalized(pixels, size, align_corners)
    back = stn_ops.normalized_to_pixel(normalized, size, align_corners)
    assert ops.dtype(normalized) == ops.dtype(back) == "float32"
    np.testing.assert_allclose(numpy(back), numpy(pixels), atol=1e-5)


IDENTITY_SIZES = [(7, 5), (1, 9), (28, 28), (41, 60)]


@pytest.mark.parametrize("transform", stn_ops.TRANSFORMS)
@pytest.mark.parametrize("align_corners", (False, True))
@pytest.mark.parametrize("size", IDENTITY_SIZES)
def test_identity_parameters_return_the_input(transform, align_corners, size):
    rng = np.random.default_rng(5)
    images = rng.uniform(size=(2, *size, 3)).astype("float32")
    theta = np.tile(stn_ops.identity_parameters(transform), (2, 1))
    grid = stn_ops.make_grid(transform, theta, size, align_corners)
    sampled = numpy(stn_ops.bilinear_sample(images, grid, "zeros", align_corners))
    # Exact up to float32 rounding of the normalised lattice, which grows
    # with the size (torch's own identity is off by as much); a wrong pixel
    # mapping or a lost last row/column is off by ~0.1 or more.
    np.testing.assert_allclose(sampled, images, atol=2e-7 * max(size) + 1e-7)


def test_integer_positions_have_one_sided_gradients(implementation):
    """At an exact pixel the gradient is the forward difference, as torch.

    A sampler that takes floor/ceil of the same integer, or masks by the
    clamped corner, returns a zero or halved gradient there.
    """
    images = np.arange(25, dtype="float32").reshape(1, 5, 5, 1) ** 1.5
    # align_corners=True maps x in {-1, -0.5, 0, 0.5, 1} to pixels 0..4.
    points = np.array([-1.0, -0.5, 0.0, 0.5], dtype="float32")
    grid_x, grid_y = np.meshgrid(points, points)
    grid = np.stack([grid_x, grid_y], axis=-1)[None]

    def loss(grid):
        return ops.sum(stn_ops.bilinear_sample(images, grid, "zeros", True))

    _, (gradient,) = value_and_gradients(loss, grid)
    picture = images[0, :, :, 0]
    # d sample / d x_normalised = (v[j + 1] - v[j]) * (W - 1) / 2.
    expected_x = (picture[:4, 1:5] - picture[:4, 0:4]) * 2.0
    expected_y = (picture[1:5, :4] - picture[0:4, :4]) * 2.0
    np.testing.assert_allclose(gradient[0, ..., 0], expected_x, rtol=1e-5)
    np.testing.assert_allclose(gradient[0, ..., 1], expected_y, rtol=1e-5)

    step = 1e-3
    for axis in (0, 1):
        shifted = grid.copy()
        shifted[..., axis] += step
        forward = (numpy(loss(shifted)) - numpy(loss(grid))) / step
        np.testing.assert_allclose(
            forward, gradient[..., axis].sum(), rtol=1e-3
        )


@pytest.mark.parametrize("align_corners,padding_mode", CONVENTIONS)
def test_gradients_match_central_differences(implementation, align_corners, padding_mode):
    rng = np.random.default_rng(6)
    images = rng.normal(size=(1, 6, 5, 2)).astype("float32")
    # Points kept away from cell edges so a small step stays in one cell.
    pixels = rng.integers(-3, 8, size=(1, 3, 4, 2)) + rng.uniform(
        0.2, 0.8, size=(1, 3, 4, 2)
    )
    sizes = np.array([5, 6])
    if align_corners:
        grid = pixels * 2.0 / (sizes - 1) - 1.0
    else:
        grid = (pixels * 2.0 + 1.0) / sizes - 1.0
    grid = grid.astype("float32")
    weights = rng.normal(size=(1, 3, 4, 2)).astype("float32")

    def loss(grid):
        sampled = stn_ops.bilinear_sample(
            images, grid, padding_mode, align_corners
        )
        return ops.sum(sampled * ops.convert_to_tensor(weights))

    _, (gradient,) = value_and_gradients(loss, grid)
    step = 1e-3
    for index in itertools.product(range(3), range(4), range(2)):
        plus, minus = grid.copy(), grid.copy()
        plus[(0, *index)] += step
        minus[(0, *index)] -= step
        difference = (numpy(loss(plus)) - numpy(loss(minus))) / (2 * step)
        np.testing.assert_allclose(
            gradient[(0, *index)], difference, rtol=2e-2, atol=2e-2
        )


def test_rotation_by_90_degrees_is_numpy_rot90():
    images = np.arange(2 * 6 * 6 * 2, dtype="float32").reshape(2, 6, 6, 2)
    theta = np.tile([[0.0, -1.0, 0.0, 1.0, 0.0, 0.0]], (2, 1)).astype("float32")
    sampled = numpy(
        stn_ops.bilinear_sample(images, stn_ops.affine_grid(theta, (6, 6)))
    )
    np.testing.assert_allclose(
        sampled, np.rot90(images, k=1, axes=(1, 2)), atol=1e-4
    )


def test_attention_crop_of_top_left_quadrant():
    """Half scale, shifted by -0.5: output pixels land on input pixels 0-3."""
    images = np.random.default_rng(7).uniform(size=(1, 8, 8, 1)).astype(
        "float32"
    )
    theta = np.array([[0.5, -0.5, -0.5]], dtype="float32")
    sampled = numpy(
        stn_ops.bilinear_sample(images, stn_ops.attention_grid(theta, (4, 4)))
    )
    np.testing.assert_allclose(sampled, images[:, :4, :4], atol=1e-6)


def test_similarity_and_attention_are_affine():
    rng = np.random.default_rng(8)
    angle, scale, tx, ty = rng.normal(size=(4, 3)).astype("float32")
    similarity = np.stack([angle, scale, tx, ty], axis=-1)
    cosine, sine = scale * np.cos(angle), scale * np.sin(angle)
    affine = np.stack([cosine, -sine, tx, sine, cosine, ty], axis=-1)
    np.testing.assert_allclose(
        numpy(stn_ops.similarity_grid(similarity, (5, 4))),
        numpy(stn_ops.affine_grid(affine, (5, 4))),
        atol=1e-6,
    )
    attention = np.stack([scale, tx, ty], axis=-1)
    zeros = np.zeros_like(scale)
    np.testing.assert_allclose(
        numpy(stn_ops.attention_grid(attention, (5, 4))),
        numpy(
            stn_ops.affine_grid(
                np.stack([scale, zeros, tx, zeros, scale, ty], -1), (5, 4)
            )
        ),
        atol=1e-6,
    )


def test_projective_with_affine_last_row_equals_affine():
    theta = random_case(seed=9)[1]
    projective = np.concatenate([theta, np.zeros((3, 2), "float32")], axis=1)
    np.testing.assert_allclose(
        numpy(stn_ops.projective_grid(projective, (6, 9), True)),
        numpy(stn_ops.affine_grid(theta, (6, 9), True)),
        atol=1e-6,
    )


def test_projective_matches_homography_by_hand():
    theta = np.array([[1.1, 0.2, -0.1, -0.3, 0.9, 0.2, 0.3, -0.2]], "float32")
    homography = np.append(theta[0], 1.0).reshape(3, 3).astype("float64")
    x = (2 * np.arange(4) + 1) / 4 - 1
    y = (2 * np.arange(3) + 1) / 3 - 1
    grid_x, grid_y = np.meshgrid(x, y)
    points = np.stack([grid_x, grid_y, np.ones_like(grid_x)], axis=-1)
    mapped = points @ homography.T
    expected = mapped[..., :2] / mapped[..., 2:]
    np.testing.assert_allclose(
        numpy(stn_ops.projective_grid(theta, (3, 4)))[0], expected, atol=1e-6
    )


def test_tps_passes_through_displaced_control_points():
    """On a lattice that contains the control points, the grid hits them."""
    rng = np.random.default_rng(10)
    offsets = rng.normal(scale=0.1, size=(2, 32)).astype("float32")
    # align_corners=True, 10 pixels: positions -1 + 2j/9 hit -1, -1/3, 1/3, 1.
    grid = numpy(stn_ops.tps_grid(offsets, (10, 10), (4, 4), True))
    control = stn_ops.tps_control_points((4, 4))
    at_control = grid[:, 0:10:3, 0:10:3].reshape(2, 16, 2)
    np.testing.assert_allclose(
        at_control, control[None] + offsets.reshape(2, 16, 2), atol=1e-5
    )


def test_tps_of_affine_offsets_is_the_affine_grid():
    """A thin-plate spline reproduces affine maps exactly."""
    theta = np.array([[0.9, 0.1, 0.05, -0.2, 1.1, -0.1]], "float64")
    control = stn_ops.tps_control_points((3, 5))
    moved = np.concatenate([control, np.ones((15, 1))], axis=1) @ theta.reshape(
        2, 3
    ).T
    offsets = (moved - control).reshape(1, -1).astype("float32")
    np.testing.assert_allclose(
        numpy(stn_ops.tps_grid(offsets, (7, 6), (3, 5))),
        numpy(stn_ops.affine_grid(theta.astype("float32"), (7, 6))),
        atol=1e-5,
    )


def test_channels_first_matches_channels_last(implementation):
    images, theta = random_case(seed=11)
    grid = stn_ops.affine_grid(theta, (4, 5))
    last = numpy(stn_ops.bilinear_sample(images, grid))
    first = numpy(
        stn_ops.bilinear_sample(
            np.transpose(images, (0, 3, 1, 2)),
            grid,
            data_format="channels_first",
        )
    )
    np.testing.assert_array_equal(np.transpose(first, (0, 2, 3, 1)), last)


def test_integer_images_are_sampled_as_floats():
    images = np.arange(16, dtype="uint8").reshape(1, 4, 4, 1)
    theta = np.array([[1, 0, 0, 0, 1, 0]], "float32")
    sampled = stn_ops.bilinear_sample(images, stn_ops.affine_grid(theta, 4))
    assert "float32" in str(sampled.dtype)
    np.testing.assert_allclose(numpy(sampled), images, atol=1e-5)


def test_non_finite_coordinates_give_nan_not_a_crash():
    images = np.ones((1, 4, 4, 1), "float32")
    grid = np.zeros((1, 2, 2, 2), "float32")
    grid[0, 0, 0] = np.nan
    grid[0, 0, 1] = np.inf
    sampled = numpy(stn_ops.bilinear_sample(images, grid))
    assert np.isnan(sampled[0, 0, 0, 0])
    np.testing.assert_allclose(sampled[0, 1], 1.0)


@pytest.mark.skipif(BACKEND == "jax", reason="JAX runs without x64 by default")
def test_float64_stays_float64():
    images, theta = random_case(seed=12)
    grid = stn_ops.affine_grid(theta.astype("float64"), (3, 3))
    sampled = stn_ops.bilinear_sample(images.astype("float64"), grid)
    assert "float64" in str(sampled.dtype)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: stn_ops.affine_grid(np.zeros((2, 5)), (3, 3)), r"\(batch, 6\)"),
        (
            lambda: stn_ops.affine_grid(np.zeros((2, 3, 2)), (3, 3)),
            r"\(batch, 2, 3\)",
        ),
        (lambda: stn_ops.affine_grid(np.zeros((6,)), (3, 3)), "theta.shape"),
        (lambda: stn_ops.attention_grid(np.zeros((2, 4)), 3), r"\(batch, 3\)"),
        (lambda: stn_ops.similarity_grid(np.zeros((2, 3)), 3), r"\(batch, 4\)"),
        (lambda: stn_ops.projective_grid(np.zeros((2, 9)), 3), r"\(batch, 8\)"),
        (lambda: stn_ops.tps_grid(np.zeros((2, 8)), 3), r"\(batch, 32\)"),
        (lambda: stn_ops.affine_grid(np.zeros((1, 6)), (0, 3)), "output_size"),
        (lambda: stn_ops.affine_grid(np.zeros((1, 6)), (3,)), "output_size"),
        (lambda: stn_ops.affine_grid(np.zeros((1, 6)), 2.5), "output_size"),
        (lambda: stn_ops.tps_grid(np.zeros((1, 2)), 3, (1, 1)), "control_shape"),
        (lambda: stn_ops.make_grid("shear", np.zeros((1, 6)), 3), "shear"),
        (
            lambda: stn_ops.bilinear_sample(
                np.zeros((1, 4, 4, 1)), np.zeros((1, 2, 2, 3))
            ),
            "last axis",
        ),
        (
            lambda: stn_ops.bilinear_sample(
                np.zeros((4, 4, 1)), np.zeros((1, 2, 2, 2))
            ),
            "rank-4",
        ),
        (
            lambda: stn_ops.bilinear_sample(
                np.zeros((2, 4, 4, 1)), np.zeros((3, 2, 2, 2))
            ),
            "same batch size",
        ),
        (
            lambda: stn_ops.bilinear_sample(
                np.zeros((1, 4, 4, 1)), np.zeros((1, 2, 2, 2)), "wrap"
            ),
            "padding_mode='wrap'",
        ),
        (
            lambda: stn_ops.bilinear_sample(
                np.zeros((1, 4, 4, 1)),
                np.zeros((1, 2, 2, 2)),
                data_format="NHWC",
            ),
            "data_format='NHWC'",
        ),
    ],
)
def test_bad_input_raises_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
