"""`ResumableEarlyStopping`: early stopping that survives a resume."""

import keras


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """``EarlyStopping`` that carries on a resumed run's count.

    Keras' callback forgets, at the start of every ``fit``, the best value
    and the epochs waited since, so a resumed run would wait ``patience``
    epochs afresh and stop later than the uninterrupted run. This one
    replays the finished epochs' history first.

    Args:
        history_rows: the rows of the run's ``history.csv`` before the
            resume (dicts with ``epoch`` and the monitored metric), in order.
        **kwargs: those of ``keras.callbacks.EarlyStopping`` (``monitor``,
            ``mode``, ``patience``...).
    """

    def __init__(self, history_rows=(), **kwargs):
        super().__init__(**kwargs)
        self.history_rows = list(history_rows)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.monitor_op is None:
            self._set_monitor_op()
        for row in self.history_rows:
            value = row.get(self.monitor)
            if value is None or row["epoch"] < self.start_from_epoch:
                continue
            self.wait += 1
            if self._is_improvement(value, self.best):
                self.best, self.best_epoch = value, row["epoch"]
                if self.baseline is None or self._is_improvement(value, self.baseline):
                    self.wait = 0
