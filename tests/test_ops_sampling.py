"""grid_sample in every mode, on images and volumes, against torch.

Values, first and second-order gradients, on the active Keras backend. On
PyTorch both code paths run: the native kernel the library dispatches to and
the ``keras.ops`` sampler the other backends use.
"""

import itertools

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from keras import ops

from conftest import BACKEND
from conftest import numpy
from conftest import value_and_gradients
from stn_keras import ops as stn_ops
from stn_keras.ops.tensorflow_speedups import tensorflow_speedups

PADDING_MODES = ("zeros", "border", "reflection")
IMAGE_CASES = list(
    itertools.product(("nearest", "bilinear", "bicubic"), PADDING_MODES, (False, True))
)
VOLUME_CASES = list(itertools.product(("nearest", "bilinear"), PADDING_MODES, (False, True)))


def in_graph(function):
    """``function(images, grid, *settings)`` run inside ``tf.function``s.

    One traced function per setting, so repeated calls reuse its trace.
    """
    import tensorflow as tf

    traced = {}

    def call(images, grid, *settings, **named):
        key = (settings, tuple(sorted(named.items())))
        if key not in traced:
            traced[key] = tf.function(
                lambda i, g: function(i, g, *settings, **named), autograph=False
            )
        return traced[key](images, grid)

    return call


@pytest.fixture
def compiled_graph(monkeypatch):
    """In a graph (model.fit, predict, tf.function) TensorFlow runs the
    sampler as compiled stages with gradients of their own: a code path of
    its own, held to torch here on the cases training uses and one of each
    other mode (compiling each case takes seconds)."""
    if BACKEND != "tensorflow":
        pytest.skip("compiled sampler stages exist on TensorFlow only")
    monkeypatch.setattr(stn_ops, "grid_sample", in_graph(stn_ops.grid_sample))




def channels_first(array):
    return np.moveaxis(array, -1, 1)


def channels_last(array):
    return np.moveaxis(array, 1, -1)


def torch_reference(images, grid, mode, padding_mode, align_corners, weights):
    """torch's output (channels last) and gradients of sum(weights * output)."""
    torch_images = torch.tensor(channels_first(images), dtype=torch.float64, requires_grad=True)
    torch_grid = torch.tensor(grid, dtype=torch.float64, requires_grad=True)
    output = F.grid_sample(
        torch_images, torch_grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners
    )
    loss = (output * torch.tensor(channels_first(weights), dtype=torch.float64)).sum()
    images_gradient, grid_gradient = torch.autograd.grad(loss, [torch_images, torch_grid])
    return (
        channels_last(output.detach().numpy()),
        channels_last(images_gradient.numpy()),
        grid_gradient.numpy(),
    )


def random_case(seed, images_shape, grid_shape):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=images_shape).astype("float32")
    # Most points inside the image, some up to two image-widths outside.
    grid = rng.uniform(-1.2, 1.2, size=grid_shape)
    far = rng.uniform(size=grid_shape[:-1]) < 0.2
    grid[far] *= 4.0
    weights = rng.normal(size=(*grid_shape[:-1], images_shape[-1])).astype("float32")
    return images, grid.astype("float32"), weights


def check_against_torch(images, grid, weights, mode, padding_mode, align_corners):
    def loss(images, grid):
        sampled = stn_ops.grid_sample(
            images, grid, mode, padding_mode, align_corners, "channels_last"
        )
        return ops.sum(sampled * ops.convert_to_tensor(weights))

    sampled = numpy(
        stn_ops.grid_sample(images, grid, mode, padding_mode, align_corners, "channels_last")
    )
    _, (images_gradient, grid_gradient) = value_and_gradients(loss, images, grid)
    expected, expected_images_gradient, expected_grid_gradient = torch_reference(
        images, grid, mode, padding_mode, align_corners, weights
    )
    value_tolerance = 1e-4 if mode == "bicubic" else 1e-5
    np.testing.assert_allclose(sampled, expected, atol=value_tolerance)
    np.testing.assert_allclose(images_gradient, expected_images_gradient, atol=1e-5)
    # The grid gradient scales with the image size (d pixel / d x = W / 2);
    # a relative bound keeps the check as strict on the large entries.
    np.testing.assert_allclose(grid_gradient, expected_grid_gradient, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mode,padding_mode,align_corners", IMAGE_CASES)
def test_images_match_torch(implementation, mode, padding_mode, align_corners):
    images, grid, weights = random_case(1, (2, 7, 9, 3), (2, 5, 6, 2))
    check_against_torch(images, grid, weights, mode, padding_mode, align_corners)


@pytest.mark.parametrize("mode,padding_mode,align_corners", VOLUME_CASES)
def test_volumes_match_torch(implementation, mode, padding_mode, align_corners):
    images, grid, weights = random_case(2, (2, 5, 4, 6, 2), (2, 3, 4, 5, 3))
    check_against_torch(images, grid, weights, mode, padding_mode, align_corners)


@pytest.mark.parametrize(
    "images_shape,grid_shape,mode,padding_mode,align_corners",
    [((2, 7, 9, 3), (2, 5, 6, 2), "bilinear", padding_mode, align_corners)
     for padding_mode in PADDING_MODES for align_corners in (False, True)]
    + [
        ((2, 7, 9, 3), (2, 5, 6, 2), "nearest", "reflection", False),
        ((2, 7, 9, 3), (2, 5, 6, 2), "bicubic", "border", True),
        ((2, 5, 4, 6, 2), (2, 3, 4, 5, 3), "bilinear", "zeros", False),
        ((2, 5, 4, 6, 2), (2, 3, 4, 5, 3), "nearest", "border", True),
    ],
)
def test_compiled_graph_matches_torch(
    compiled_graph, images_shape, grid_shape, mode, padding_mode, align_corners
):
    images, grid, weights = random_case(1, images_shape, grid_shape)
    check_against_torch(images, grid, weights, mode, padding_mode, align_corners)


def test_compiled_graph_turns_off_for_exports():
    """``tensorflow_speedups(False)`` traces plain ops (no XLA-compiled calls)."""
    if BACKEND != "tensorflow":
        pytest.skip("compiled sampler stages exist on TensorFlow only")
    import tensorflow as tf

    images, grid, _ = random_case(2, (2, 6, 5, 1), (2, 4, 4, 2))

    def traced_call_ops(enabled):
        with tensorflow_speedups(enabled):
            function = tf.function(lambda i, g: stn_ops.grid_sample(i, g)).get_concrete_function(
                tf.TensorSpec((None, 6, 5, 1)), tf.TensorSpec((None, 4, 4, 2))
            )
        return [op.type for op in function.graph.get_operations() if "PartitionedCall" in op.type]

    assert traced_call_ops(True)
    assert traced_call_ops(False) == []
    with tensorflow_speedups(False):
        plain = numpy(in_graph(stn_ops.grid_sample)(images, grid))
    np.testing.assert_allclose(plain, numpy(in_graph(stn_ops.grid_sample)(images, grid)), atol=1e-6)


def test_nearest_rounds_half_to_even_as_torch(implementation):
    """Pixel coordinates 0.5, 1.5 and 2.5 read pixels 0, 2 and 2."""
    images = np.arange(5, dtype="float32").reshape(1, 1, 5, 1)
    # align_corners=True: pixel = (x + 1) * 2.
    x = np.array([0.5, 1.5, 2.5], "float32") / 2.0 - 1.0
    grid = np.stack([x, np.zeros_like(x)], axis=-1).reshape(1, 1, 3, 2)
    sampled = numpy(stn_ops.grid_sample(images, grid, "nearest", "zeros", True, "channels_last"))
    np.testing.assert_array_equal(sampled.ravel(), [0.0, 2.0, 2.0])


@pytest.mark.parametrize("mode", ("nearest", "bilinear", "bicubic"))
@pytest.mark.parametrize("align_corners", (False, True))
def test_identity_grid_returns_the_input(implementation, mode, align_corners):
    images = np.random.default_rng(3).uniform(size=(2, 6, 7, 2)).astype("float32")
    theta = np.tile(stn_ops.identity_parameters("affine"), (2, 1))
    grid = stn_ops.affine_grid(theta, (6, 7), align_corners)
    sampled = numpy(stn_ops.grid_sample(images, grid, mode, "zeros", align_corners, "channels_last"))
    np.testing.assert_allclose(sampled, images, atol=1e-5)


@pytest.mark.parametrize("mode", ("nearest", "bilinear"))
def test_volume_identity_returns_the_input(implementation, mode):
    volumes = np.random.default_rng(4).uniform(size=(2, 4, 5, 6, 3)).astype("float32")
    theta = np.tile(stn_ops.identity_parameters("affine", spatial_rank=3), (2, 1))
    grid = stn_ops.affine_grid(theta, (4, 5, 6))
    sampled = numpy(stn_ops.grid_sample(volumes, grid, mode, data_format="channels_last"))
    np.testing.assert_allclose(sampled, volumes, atol=1e-6)


def test_volume_axes_follow_x_y_z(implementation):
    """x runs along the width, y along the height, z along the depth."""
    volumes = np.random.default_rng(5).uniform(size=(1, 4, 4, 4, 1)).astype("float32")
    # Source x = target y, y = target z, z = target x (align_corners=True
    # makes the permuted lattice land on pixels).
    theta = np.array([[0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0]], "float32")
    grid = stn_ops.affine_grid(theta, (4, 4, 4), align_corners=True)
    sampled = numpy(stn_ops.grid_sample(volumes, grid, align_corners=True, data_format="channels_last"))
    # output[d, h, w] = input[z=w, y=d, x=h]
    expected = np.transpose(volumes[0, ..., 0], (1, 2, 0))
    np.testing.assert_allclose(sampled[0, ..., 0], expected, atol=1e-6)


def test_channels_first_volumes_match_channels_last(implementation):
    volumes, grid, _ = random_case(6, (2, 3, 4, 5, 2), (2, 2, 3, 4, 3))
    last = numpy(stn_ops.grid_sample(volumes, grid, data_format="channels_last"))
    first = numpy(
        stn_ops.grid_sample(channels_first(volumes), grid, data_format="channels_first")
    )
    np.testing.assert_allclose(channels_last(first), last, atol=1e-6)


def test_bilinear_sample_is_the_bilinear_mode():
    images, grid, _ = random_case(7, (2, 6, 5, 3), (2, 4, 4, 2))
    np.testing.assert_array_equal(
        numpy(stn_ops.bilinear_sample(images, grid, "border", True)),
        numpy(stn_ops.grid_sample(images, grid, "bilinear", "border", True, "channels_last")),
    )


# torch warns that a unit-size axis is unusual; matching it there is the point.
@pytest.mark.filterwarnings("ignore:Since version 1.3.0, affine_grid")
@pytest.mark.parametrize("align_corners", (False, True))
@pytest.mark.parametrize("size", [(3, 5, 7), (1, 4, 6), (6, 1, 2), (8, 8, 8)])
def test_volumetric_affine_grid_matches_torch(align_corners, size):
    theta = np.random.default_rng(8).normal(size=(3, 12)).astype("float32")
    grid = numpy(stn_ops.affine_grid(theta, size, align_corners))
    expected = F.affine_grid(
        torch.tensor(theta.reshape(-1, 3, 4)), (3, 1, *size), align_corners=align_corners
    ).numpy()
    assert grid.shape == (3, *size, 3)
    np.testing.assert_allclose(grid, expected, atol=1e-6)
    matrix_form = stn_ops.affine_grid(theta.reshape(-1, 3, 4), size, align_corners)
    np.testing.assert_array_equal(numpy(matrix_form), grid)


def second_order_gradients(function, images, grid, direction):
    """Gradients w.r.t. images and grid of ``sum(direction * d function / d grid)``."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        images, grid = tf.Variable(images), tf.Variable(grid)
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                value = function(images, grid)
            first = inner.gradient(value, grid)
            directional = tf.reduce_sum(first * direction)
        gradients = outer.gradient(
            directional, [images, grid], unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return first.numpy(), [gradient.numpy() for gradient in gradients]
    if BACKEND == "jax":
        import jax

        def directional(images, grid):
            first = jax.grad(function, argnums=1)(images, grid)
            return (first * direction).sum(), first

        gradients, first = jax.grad(directional, argnums=(0, 1), has_aux=True)(images, grid)
        return np.asarray(first), [np.asarray(gradient) for gradient in gradients]
    images = torch.tensor(images, requires_grad=True)
    grid = torch.tensor(grid, requires_grad=True)
    (first,) = torch.autograd.grad(function(images, grid), grid, create_graph=True)
    gradients = torch.autograd.grad(
        (first * torch.tensor(direction)).sum(), [images, grid], allow_unused=True
    )
    gradients = [
        torch.zeros_like(tensor) if gradient is None else gradient
        for tensor, gradient in zip((images, grid), gradients)
    ]
    return first.detach().numpy(), [gradient.numpy() for gradient in gradients]


SECOND_ORDER_CASES = [
    ((1, 5, 6, 2), "bilinear", "zeros", False),
    ((1, 5, 6, 2), "bilinear", "reflection", True),
    ((1, 5, 6, 2), "bicubic", "zeros", False),
    ((1, 5, 6, 2), "bicubic", "border", True),
    ((1, 4, 5, 3, 2), "bilinear", "border", False),
]


def second_order_case(images_shape, padding_mode, align_corners):
    """Images, grid, weights and a direction for the second-order tests."""
    rng = np.random.default_rng(9)
    spatial_rank = len(images_shape) - 2
    images = rng.normal(size=images_shape).astype("float32")
    sizes = np.array(images_shape[1:-1][::-1])  # (x, y[, z]) sizes
    grid_shape = (1, *(3,) * spatial_rank, spatial_rank)
    # Points a fraction 0.2-0.8 into their cell, inside or just outside the
    # image, so that a small step stays in one cell and off any clamp.
    pixels = rng.integers(-1, sizes, size=grid_shape) + rng.uniform(0.2, 0.8, size=grid_shape)
    if padding_mode != "zeros":
        pixels = np.clip(pixels, 0.2, sizes - 1.2)
    if align_corners:
        grid = pixels * 2.0 / (sizes - 1) - 1.0
    else:
        grid = (pixels * 2.0 + 1.0) / sizes - 1.0
    grid = grid.astype("float32")
    weights = rng.normal(size=(*grid_shape[:-1], images_shape[-1])).astype("float32")
    direction = rng.normal(size=grid_shape).astype("float32")
    return rng, images, grid, weights, direction


def check_second_order_against_torch(images_shape, mode, padding_mode, align_corners):
    """Returns what the finite-difference check needs: the weighted loss,
    the case's arrays and the library's second-order grid gradient."""
    rng, images, grid, weights, direction = second_order_case(
        images_shape, padding_mode, align_corners
    )

    def function(images, grid):
        sampled = stn_ops.grid_sample(images, grid, mode, padding_mode, align_corners, "channels_last")
        return ops.sum(sampled * ops.convert_to_tensor(weights))

    first, (images_second, grid_second) = second_order_gradients(function, images, grid, direction)

    torch_images = torch.tensor(channels_first(images), dtype=torch.float64, requires_grad=True)
    torch_grid = torch.tensor(grid, dtype=torch.float64, requires_grad=True)
    output = F.grid_sample(torch_images, torch_grid, mode, padding_mode, align_corners)
    loss = (output * torch.tensor(channels_first(weights), dtype=torch.float64)).sum()
    (torch_first,) = torch.autograd.grad(loss, torch_grid, create_graph=True)
    torch_images_second, torch_grid_second = torch.autograd.grad(
        (torch_first * torch.tensor(direction, dtype=torch.float64)).sum(), [torch_images, torch_grid]
    )
    np.testing.assert_allclose(first, torch_first.detach().numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(
        images_second, channels_last(torch_images_second.numpy()), rtol=1e-5, atol=1e-4
    )
    np.testing.assert_allclose(grid_second, torch_grid_second.numpy(), rtol=1e-4, atol=1e-3)
    return function, rng, images, grid, direction, grid_second


@pytest.mark.parametrize("images_shape,mode,padding_mode,align_corners", SECOND_ORDER_CASES)
def test_second_order_gradients_match_torch_and_finite_differences(
    implementation, images_shape, mode, padding_mode, align_corners
):
    function, rng, images, grid, direction, grid_second = check_second_order_against_torch(
        images_shape, mode, padding_mode, align_corners
    )

    # The grid part, against central differences of the first gradient.
    def directional_first(grid):
        return np.sum(second_order_gradients(function, images, grid, direction)[0] * direction)

    step = 1e-3
    # Eight entries chosen at random keep the test fast on eager backends.
    indices = list(itertools.product(*(range(size) for size in grid.shape)))
    for position in rng.choice(len(indices), size=8, replace=False):
        index = indices[position]
        plus, minus = grid.copy(), grid.copy()
        plus[index] += step
        minus[index] -= step
        difference = (directional_first(plus) - directional_first(minus)) / (2 * step)
        np.testing.assert_allclose(grid_second[index], difference, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize(
    "images_shape,mode,padding_mode,align_corners",
    SECOND_ORDER_CASES[:2],
)
def test_compiled_graph_second_order_gradients_match_torch(
    compiled_graph, images_shape, mode, padding_mode, align_corners
):
    check_second_order_against_torch(images_shape, mode, padding_mode, align_corners)


def test_grids_do_not_use_reduced_precision_matmuls(monkeypatch):
    """Grids and sampler stay exact when every matmul rounds to bfloat16.

    TF32 (TensorFlow's default on NVIDIA GPUs) and JAX's default GPU matmul
    precision round float32 matmul inputs; bfloat16 inputs exaggerate that,
    so any grid computed through a matmul fails here, on any device.
    """

    def rounding(original):
        def reduced(*arguments, **options):
            arguments = [
                ops.cast(ops.cast(argument, "bfloat16"), "float32")
                if keras.backend.is_tensor(argument) or isinstance(argument, np.ndarray)
                else argument
                for argument in arguments
            ]
            return original(*arguments, **options)

        return reduced

    for name in ("matmul", "einsum", "dot", "tensordot"):
        monkeypatch.setattr(keras.ops, name, rounding(getattr(keras.ops, name)))
    rng = np.random.default_rng(10)
    offsets = rng.normal(scale=0.1, size=(2, 32)).astype("float32")
    control = stn_ops.tps_control_points((4, 4))
    grid = numpy(stn_ops.tps_grid(offsets, (10, 10), (4, 4), True))
    np.testing.assert_allclose(
        grid[:, 0:10:3, 0:10:3].reshape(2, 16, 2),
        control[None] + offsets.reshape(2, 16, 2),
        atol=2e-6,
    )
    theta = rng.normal(size=(2, 12)).astype("float32")
    expected = F.affine_grid(torch.tensor(theta.reshape(-1, 3, 4)), (2, 1, 3, 4, 5), align_corners=False)
    np.testing.assert_allclose(
        numpy(stn_ops.affine_grid(theta, (3, 4, 5))), expected.numpy(), atol=1e-6
    )
    projective = rng.normal(scale=0.1, size=(2, 8)).astype("float32") + stn_ops.identity_parameters(
        "projective"
    )
    homography = np.concatenate([projective, np.ones((2, 1))], axis=1).reshape(2, 3, 3)
    lattice = stn_ops.base_grid((4, 5))
    mapped = np.einsum("pk,bjk->bpj", lattice, homography)
    np.testing.assert_allclose(
        numpy(stn_ops.projective_grid(projective, (4, 5))).reshape(2, 20, 2),
        mapped[..., :2] / mapped[..., 2:],
        atol=2e-6,
    )


@pytest.mark.parametrize(
    "call,message",
    [
        (
            lambda: stn_ops.grid_sample(np.zeros((1, 4, 4, 1)), np.zeros((1, 2, 2, 2)), "linear"),
            "Unknown sampling mode.*mode='linear'",
        ),
        (
            lambda: stn_ops.grid_sample(
                np.zeros((1, 3, 4, 4, 1)), np.zeros((1, 2, 2, 2, 3)), "bicubic"
            ),
            "images \\(rank 4\\) only",
        ),
        (
            lambda: stn_ops.grid_sample(np.zeros((1, 3, 4, 4, 1)), np.zeros((1, 2, 2, 2, 2))),
            r"\(x, y, z\) in its last axis",
        ),
        (
            lambda: stn_ops.grid_sample(np.zeros((1, 3, 4, 4, 1)), np.zeros((1, 2, 2, 3))),
            "grid.shape",
        ),
        (
            lambda: stn_ops.grid_sample(np.zeros((1, 1, 3, 4, 4, 1)), np.zeros((1, 2, 2, 3))),
            "rank-5 batch of volumes",
        ),
        (lambda: stn_ops.affine_grid(np.zeros((2, 6)), (3, 3, 3)), r"\(batch, 12\)"),
        (lambda: stn_ops.affine_grid(np.zeros((2, 2, 3)), (3, 3, 3)), r"\(batch, 3, 4\)"),
        (lambda: stn_ops.affine_grid(np.zeros((2, 12)), (3, 0, 3)), "depth, height, width"),
        (
            lambda: stn_ops.make_grid("similarity", np.zeros((2, 4)), (3, 3, 3)),
            "Only the affine transform has a volumetric",
        ),
        (
            lambda: stn_ops.num_parameters("tps", spatial_rank=3),
            "Only the affine transform has a volumetric",
        ),
    ],
)
def test_bad_input_raises_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
