"""Pretrained classifiers by name or folder, on images of any size and format.

Example:

    import stn_keras.pretrained

    classifier = stn_keras.pretrained.load("gtsrb_st_cnn")
    print(classifier.predict(["sign.png"])[0]["class_name"])

`load` takes the name of a folder of the repository's ``saved_models/``,
or the path of any folder with the same layout (``model.keras`` and
``config.json``, as a training run writes them), of a ``.keras`` file or of
a SavedModel directory. The images are decoded and resized exactly as the
SavedModel's ``predict_bytes`` signature does (one implementation:
`stn_keras.export.signatures.decode_model_inputs`). Everything is read from
local files: no download.
"""

from stn_keras.pretrained.loading import available_models
from stn_keras.pretrained.loading import load
from stn_keras.pretrained.loading import saved_models_directory
from stn_keras.pretrained.pretrained_classifier import PretrainedClassifier
