"""The distorted-MNIST tasks of Jaderberg et al. 2015 (appendix A.4).

``distort`` applies one of ``DISTORTIONS`` by name. The generators live by
kind: ``placement_distortions`` (the digit placed on a canvas by an affine
map: rotated, rts, translated, cluttered, addition) and
``deformation_distortions`` (the digit bent in place: projective,
elastic). Every distortion is sampled with the library's own grid
generators and ``bilinear_sample`` (``warping.warp``), on the current Keras
backend in large compiled batches. The parameters are drawn in numpy from
``seed`` before any sampling, so the result depends on the seed only, not
on the batching.

Parameters returned (first axis: image index; pixel units are those of the
input image):

* ``rotated``: ``angle`` (degrees, counter-clockwise on screen).
* ``rts``: ``angle``, ``scale``, ``position_x``, ``position_y`` (top-left
  corner of the unscaled digit box on the canvas, in pixels).
* ``projective``: ``scale`` and ``corner_offsets`` ``(N, 4, 2)``: the
  Gaussian move of each corner (top-left, top-right, bottom-left,
  bottom-right) as ``(dx, dy)`` pixels.
* ``elastic``: ``scale`` and ``control_point_offsets`` ``(N, K, 2)``: the
  Gaussian move of each thin-plate-spline control point, in pixels.
* ``translated``: integer ``position_x``, ``position_y``.
* ``cluttered``: those of ``translated`` plus, per patch ``(N, P)``,
  ``patch_source`` (index into the clutter images), ``patch_crop_x``,
  ``patch_crop_y`` (top-left of the crop in its source), ``patch_x``,
  ``patch_y`` (top-left on the canvas).
* ``addition``: those of ``rts`` with shape ``(N, 2)`` (one column per
  channel) plus ``partner`` ``(N,)``: the index of the second digit.
"""

import inspect

import numpy as np

from stn_keras.data.deformation_distortions import elastic
from stn_keras.data.deformation_distortions import projective
from stn_keras.data.distortion_result import DistortionResult
from stn_keras.data.placement_distortions import addition
from stn_keras.data.placement_distortions import cluttered
from stn_keras.data.placement_distortions import rotated
from stn_keras.data.placement_distortions import rts
from stn_keras.data.placement_distortions import translated
from stn_keras.data.warping import sampler_compilation
from stn_keras.validation import check_choice
from stn_keras.validation import check_image_batch

DISTORTIONS = (
    "rotated",
    "rts",
    "projective",
    "elastic",
    "translated",
    "cluttered",
    "addition",
)
_GENERATORS = {
    "rotated": rotated,
    "rts": rts,
    "projective": projective,
    "elastic": elastic,
    "translated": translated,
    "cluttered": cluttered,
    "addition": addition,
}


def distortion_parameters(distortion):
    """The names and paper defaults of the parameters of ``distortion``."""
    check_distortion(distortion)
    signature = inspect.signature(_GENERATORS[distortion])
    return {
        name: parameter.default
        for name, parameter in signature.parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def check_distortion(distortion):
    check_choice("distortion", distortion, DISTORTIONS, allow_none=True)


def check_distortion_parameters(distortion, parameters):
    """Raises unless every name in ``parameters`` is one of ``distortion``'s."""
    allowed = distortion_parameters(distortion)
    unknown = sorted(set(parameters) - set(allowed))
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {unknown} for distortion {distortion!r}. "
            f"Expected some of {sorted(allowed)}. Received: {parameters!r}"
        )


def distort(images, distortion, seed=0, labels=None, compile_sampler=None, **params):
    """Applies a paper distortion to a batch of images.

    Args:
        images: NHWC array (uint8 0..255, or float).
        distortion: one of ``DISTORTIONS``.
        seed: an int or a sequence of ints (``numpy.random.default_rng``);
            the same seed gives the same output.
        labels: int labels of ``images``; required by ``addition``, passed
            through unchanged by the others.
        compile_sampler: compile the sampler with the backend's compiler
            (XLA, ``jax.jit``): worth it for large inputs or many calls of
            one batch shape. ``None`` compiles for inputs of at least
            ``warping.CHUNK_SIZE`` images.
        **params: the distortion's parameters (see ``distortion_parameters``);
            the defaults are the paper's.

    Returns:
        A ``DistortionResult`` with ``images`` (uint8 for uint8 input),
        ``labels`` and the ``parameters`` drawn (see the module docstring).
    """
    check_distortion_parameters(distortion, params)
    images, labels = check_image_batch(images, labels)
    if distortion == "addition" and labels is None:
        raise ValueError("Distortion 'addition' needs `labels`: its label is the sum.")
    rng = np.random.default_rng(seed)
    with sampler_compilation(compile_sampler):
        if distortion == "addition":
            output, labels, drawn = addition(images, rng, labels, **params)
        else:
            output, drawn = _GENERATORS[distortion](images, rng, **params)
    return DistortionResult(images=output, labels=labels, parameters=drawn)
