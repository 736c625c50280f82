"""Data sets, paper distortions and input pipelines of stn_keras.

``load_dataset`` reads MNIST, Fashion-MNIST, scikit-learn's digits and GTSRB
(optionally distorted as in Jaderberg et al. 2015, appendix A.4);
``distort`` applies a distortion to a batch; ``augment`` re-poses and
re-lights natural images for training; ``make_pipeline`` makes batches for
``model.fit`` on every backend (a ``BatchSequence`` of ``BatchSettings``).
"""

from stn_keras.data.augmentation import AUGMENTATION_DEFAULTS
from stn_keras.data.augmentation import augment
from stn_keras.data.augmentation import check_augmentation_options
from stn_keras.data.batch_sequence import BatchSequence
from stn_keras.data.batch_settings import BatchSettings
from stn_keras.data.dataset import Dataset
from stn_keras.data.datasets import DATASETS
from stn_keras.data.datasets import load_dataset
from stn_keras.data.distortion_result import DistortionResult
from stn_keras.data.distortions import DISTORTIONS
from stn_keras.data.distortions import distort
from stn_keras.data.distortions import distortion_parameters
from stn_keras.data.images import as_float_images
from stn_keras.data.paths import MissingDataError
from stn_keras.data.paths import resolve_data_dir
from stn_keras.data.pipeline import make_pipeline
from stn_keras.data.split_arrays import SplitArrays
