"""stn_keras: Spatial Transformer Networks (Jaderberg et al. 2015) for Keras 3.

Importing the package registers its layers and losses with Keras'
serialisation, so ``.keras`` files holding them load with plain
``keras.saving.load_model``.
It leaves the process' file descriptors alone; only stn_keras's own command
lines import Keras with TensorFlow's informational start-up lines filtered
(see ``stn_keras.quiet_import``).
"""

from stn_keras.quiet_import import import_quietly

import_quietly("keras")

from stn_keras import layers  # noqa: E402
from stn_keras import losses  # noqa: E402
from stn_keras import ops  # noqa: E402

__version__ = "0.1.0"
