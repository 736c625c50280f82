"""Stateless spatial-transformer math: grid generators and the sampler."""

from stn_keras.ops.grids import DEFAULT_TPS_CONTROL_SHAPE
from stn_keras.ops.grids import TRANSFORMS
from stn_keras.ops.grids import affine_grid
from stn_keras.ops.grids import attention_grid
from stn_keras.ops.grids import attention_matrix
from stn_keras.ops.grids import base_grid
from stn_keras.ops.grids import check_control_shape
from stn_keras.ops.grids import check_output_size
from stn_keras.ops.grids import check_transform
from stn_keras.ops.grids import identity_parameters
from stn_keras.ops.grids import make_grid
from stn_keras.ops.grids import normalized_to_pixel
from stn_keras.ops.grids import num_parameters
from stn_keras.ops.grids import pixel_to_normalized
from stn_keras.ops.grids import projective_grid
from stn_keras.ops.grids import similarity_grid
from stn_keras.ops.grids import similarity_matrix
from stn_keras.ops.grids import spatial_rank_of
from stn_keras.ops.grids import tps_control_points
from stn_keras.ops.grids import tps_grid
from stn_keras.ops.sampling import MODES
from stn_keras.ops.sampling import PADDING_MODES
from stn_keras.ops.sampling import bilinear_sample
from stn_keras.ops.sampling import check_mode
from stn_keras.ops.sampling import check_padding_mode
from stn_keras.ops.sampling import grid_sample
