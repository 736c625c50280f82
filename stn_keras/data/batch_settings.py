"""``BatchSettings``: what a stream of training or evaluation batches is."""

import dataclasses
from collections.abc import Mapping

from stn_keras.data.augmentation import check_augmentation_options
from stn_keras.data.distortions import check_distortion
from stn_keras.data.distortions import check_distortion_parameters
from stn_keras.validation import check_bool
from stn_keras.validation import check_int


@dataclasses.dataclass(frozen=True)
class BatchSettings:
    """The settings of a batch stream, checked once when they are made.

    ``BatchSequence`` reads its batches from them, and ``make_pipeline``
    takes them as keyword arguments: both refuse the same bad values with
    the same errors, here. Every batch is fixed by these settings, the epoch
    and the batch index, which is what makes a resumed run exact.

    Attributes:
        batch_size: images per batch; the last batch of an epoch may be
            smaller.
        shuffle: reshuffle the order every epoch, seeded by
            ``(seed, epoch)``.
        seed: an int >= 0, the seed of the shuffling, the distortions and
            the augmentation.
        distortion: one of ``stn_keras.data.DISTORTIONS``, drawn afresh for
            every batch of every epoch from ``(seed, epoch, batch)`` (online,
            as the paper trained); ``None`` for none. ``"addition"`` needs
            labels: its label is the sum of two digits'.
        distortion_parameters: the distortion's parameters (paper defaults
            when empty), e.g. ``Dataset.distortion_parameters``; names
            that are not the distortion's raise.
        num_classes: when given, a batch with labels outside
            ``[0, num_classes)`` raises.
        augmentation: ``None``, or a mapping of some of
            ``stn_keras.data.AUGMENTATION_DEFAULTS`` (``{}``: the defaults):
            every batch of every epoch is re-posed and re-lit afresh, after
            any distortion, from a seed apart from the distortion's. Kept
            with every option filled in (``check_augmentation_options``).
        first_epoch: the epoch the stream starts at: a stream started at
            epoch ``k`` yields the batches another yields after ``k`` epochs
            (for resuming a run).
        batch_multiple: every batch holds a multiple of this many images
            (data-parallel replicas each take an equal share): the last
            batch of an epoch is cut down to one, dropping at most
            ``batch_multiple - 1`` images of that epoch's order.
            ``batch_size`` must be a multiple of it.
        num_epochs: ``None`` for one epoch at a time, advanced by
            ``on_epoch_end``; or the number of epochs from ``first_epoch``
            the stream holds end to end, each batch fixed by its index (fit
            it with ``steps_per_epoch=sequence.steps_per_epoch``).

    Raises:
        ValueError: a setting out of its range, with its name and value.
    """

    batch_size: int
    shuffle: bool = False
    seed: int = 0
    distortion: str | None = None
    distortion_parameters: Mapping = dataclasses.field(default_factory=dict)
    num_classes: int | None = None
    augmentation: Mapping | None = None
    first_epoch: int = 0
    batch_multiple: int = 1
    num_epochs: int | None = None

    def __post_init__(self):
        batch_size = check_int("batch_size", self.batch_size, 1)
        batch_multiple = check_int("batch_multiple", self.batch_multiple, 1)
        if batch_size % batch_multiple:
            raise ValueError(
                "`batch_size` must be a multiple of `batch_multiple`. Received: "
                f"batch_size={batch_size}, batch_multiple={batch_multiple}"
            )
        check_distortion(self.distortion)
        distortion_parameters = self.distortion_parameters or {}
        if not isinstance(distortion_parameters, Mapping):
            raise ValueError(
                "`distortion_parameters` must be a mapping of parameter names "
                "to values. Received: "
                f"distortion_parameters={self.distortion_parameters!r}"
            )
        if self.distortion is not None:
            check_distortion_parameters(self.distortion, distortion_parameters)
        augmentation = self.augmentation
        if augmentation is not None:
            augmentation = check_augmentation_options(augmentation)
        checked = {
            "batch_size": batch_size,
            "shuffle": check_bool("shuffle", self.shuffle),
            "seed": check_int("seed", self.seed, 0),
            # A copy: the caller's mapping may change after.
            "distortion_parameters": dict(distortion_parameters),
            "augmentation": augmentation,
            "first_epoch": check_int("first_epoch", self.first_epoch, 0),
            "batch_multiple": batch_multiple,
            "num_classes": _check_optional_count("num_classes", self.num_classes),
            "num_epochs": _check_optional_count("num_epochs", self.num_epochs),
        }
        # Frozen: the checked values are set once, here.
        for name, value in checked.items():
            object.__setattr__(self, name, value)


def _check_optional_count(name, value):
    return None if value is None else check_int(name, value, 1)
