"""Training behind ``train.py``: plan, build and fit, on any Keras backend.

:func:`train` takes a run's `stn_keras.settings.RunSettings`, checks what
the run needs (`plan_run`), builds and compiles the model on the active
backend's devices and fits it, writing the run directory described in
:mod:`stn_keras.run_dir`. The input is a ``keras.utils.PyDataset`` whose
batches depend only on ``(seed, epoch)``, so a resumed run, on any backend,
sees exactly the batches the uninterrupted run would have. Exporting the
best model is a step of its own (`stn_keras.export.export_best_model`).

One module per job: `planning` (what can refuse a run), `inputs` (training
batches, padded validation data), `optimizers`, `fit_callbacks`,
`recording` (``config.json``: started, finished, failed), `interruption`
(SIGINT/SIGTERM) and `fitting` (`compile_and_fit`, `train`).
"""

from stn_keras.training.fitting import TrainingResult
from stn_keras.training.fitting import build_configured_model
from stn_keras.training.fitting import compile_and_fit
from stn_keras.training.fitting import train
from stn_keras.training.inputs import training_batches
from stn_keras.training.inputs import validation_data
from stn_keras.training.interruption import TrainingInterrupted
from stn_keras.training.optimizers import make_optimizer
from stn_keras.training.planning import RunPlan
from stn_keras.training.planning import plan_run
from stn_keras.training.recording import TrainingFailed
