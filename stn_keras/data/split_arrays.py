"""The arrays of a data set's splits, each prepared when first read."""

import threading

from stn_keras.validation import check_choice

SPLITS = ("train", "val", "test")


class SplitArrays:
    """The ``(images, labels)`` of each split, each prepared when first read.

    A distorted data set distorts a split only when something reads it, so
    evaluating on the test split does not distort the training split, and
    online-distortion training never distorts a fixed copy of it. Each split
    is prepared once; its result does not depend on which splits were read
    before (every split's distortion has a seed of its own).

    Args:
        arrays: ``{split: (images, labels)}`` for each of ``SPLITS``.
        prepare: ``None``, or a function ``(split, images, labels) ->
            (images, labels, parameters)`` applied to a split on its first
            read; ``parameters`` is a dict of what the preparation drew for
            each image (a distortion's parameters), kept for `parameters`.
    """

    def __init__(self, arrays, prepare=None):
        missing = sorted(set(SPLITS) - set(arrays))
        if missing:
            raise ValueError(
                f"SplitArrays needs the arrays of every split {SPLITS}. "
                f"Missing: {missing}"
            )
        # Kept after preparation: the undistorted digits are small beside
        # the models that read them, and evaluation needs them.
        self._unprepared = {split: arrays[split] for split in SPLITS}
        self._prepare = prepare
        self._ready = {}
        self._parameters = {}
        # Two threads reading one split must not prepare it twice.
        self._lock = threading.Lock()

    def __getitem__(self, split):
        check_choice("split", split, SPLITS)
        with self._lock:
            if split not in self._ready:
                images, labels = self._unprepared[split]
                parameters = {}
                if self._prepare is not None:
                    prepared = self._prepare(split, images, labels)
                    if not isinstance(prepared, tuple) or len(prepared) != 3:
                        raise ValueError(
                            "`prepare` must return a tuple (images, labels, parameters). "
                            f"Received: {type(prepared).__name__} of length "
                            f"{len(prepared) if isinstance(prepared, (tuple, list)) else 'n/a'}"
                        )
                    images, labels, parameters = prepared
                self._ready[split] = (images, labels)
                self._parameters[split] = parameters
        return self._ready[split]

    def parameters(self, split):
        """What the preparation of ``split`` drew for each image (preparing
        it if it was not read yet); ``{}`` without a preparation."""
        self[split]
        return self._parameters[split]

    def unprepared(self, split):
        """The ``(images, labels)`` of ``split`` as given, before ``prepare``."""
        check_choice("split", split, SPLITS)
        return self._unprepared[split]

    def __repr__(self):
        return f"SplitArrays(ready={sorted(self._ready)})"
