"""The project's models by name: paper architectures for MNIST and GTSRB."""

from stn_keras.models.registry import MODELS
from stn_keras.models.registry import build_model
from stn_keras.models.registry import check_transformer_options
from stn_keras.models.registry import has_spatial_transformer
from stn_keras.models.introspection import find_spatial_transformers
from stn_keras.models.introspection import spatial_transformer_layers
from stn_keras.models.introspection import transformer_model
