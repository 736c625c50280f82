"""stn_keras: Spatial Transformer Networks (Jaderberg et al. 2015) for Keras 3.

Importing the package registers its layers with Keras' serialisation, so
``.keras`` files holding them load with plain ``keras.saving.load_model``.
"""

from stn_keras import layers
from stn_keras import ops

__version__ = "0.1.0"
