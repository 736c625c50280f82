"""Keras layers of the spatial transformer, registered for serialisation."""

from stn_keras.layers.affine_grid_generator import AffineGridGenerator
from stn_keras.layers.attention_grid_generator import AttentionGridGenerator
from stn_keras.layers.grid_generator import GridGenerator
from stn_keras.layers.projective_grid_generator import ProjectiveGridGenerator
from stn_keras.layers.similarity_grid_generator import SimilarityGridGenerator
from stn_keras.layers.tps_grid_generator import TPSGridGenerator
from stn_keras.layers.grid_sample import GridSample
from stn_keras.layers.bilinear_interpolation import BilinearInterpolation
from stn_keras.layers.coord_conv import CoordConv
from stn_keras.layers.depthwise_gradient_conv2d import DepthwiseGradientConv2D
from stn_keras.layers.spatial_transformer import SpatialTransformer
