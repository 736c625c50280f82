"""Evaluation behind ``evaluate.py``: metrics, confusion matrix and pictures.

`evaluate` runs a trained model (a ``.keras`` file or an exported
SavedModel directory) on one split of a data set and writes, to an output
directory, ``metrics.json``, ``confusion_matrix.csv``,
``confusion_matrix.png``, ``misclassified.png`` and, for models with a
spatial transformer on their input, ``st_samples.png`` (from a SavedModel
through its ``spatial_transforms`` signature and transformer metadata).

One job a module:

- ``loading.py``: a ``.keras`` file or a SavedModel as one `TrainedModel`
  (``trained_model.py``), with the `TransformerView` of each transformer
  (``transformer_view.py``).
- ``model_run.py``: the data settings and evaluation directory of the run
  a model comes from.
- ``metrics.py``: loss, accuracies and the confusion matrix.
- ``reports.py``: ``metrics.json``, the confusion matrix CSV, the text table.
- ``paired_comparison.py``: two models' predictions of the same images
  compared image by image (exact McNemar test).
- ``error_breakdown.py``: one model's errors by distortion parameter and
  on the same digits undistorted.
- ``error_overlap.py``: several models' errors on the same images, which
  they share and what their averaged probabilities make.
- ``sample_picking.py``: which images the transformer pictures show.
- ``transformer_pictures.py``: ``st_samples.png``.
- ``evaluate_model.py``: `evaluate`, which runs the others in turn.
"""

from stn_keras.evaluation.evaluate_model import check_compatible
from stn_keras.evaluation.evaluate_model import distortion_breakdown
from stn_keras.evaluation.evaluate_model import evaluate
from stn_keras.evaluation.evaluate_model import write_reports
from stn_keras.evaluation.error_breakdown import centred_on_canvas
from stn_keras.evaluation.error_breakdown import errors_by_parameter
from stn_keras.evaluation.error_breakdown import format_error_breakdown
from stn_keras.evaluation.error_breakdown import undistorted_errors
from stn_keras.evaluation.error_overlap import error_overlap
from stn_keras.evaluation.error_overlap import format_error_overlap
from stn_keras.evaluation.loading import load_trained_model
from stn_keras.evaluation.metrics import PROBABILITY_EPSILON
from stn_keras.evaluation.metrics import compute_metrics
from stn_keras.evaluation.model_run import data_config_for
from stn_keras.evaluation.model_run import default_output_dir
from stn_keras.evaluation.paired_comparison import compare_predictions
from stn_keras.evaluation.paired_comparison import exact_mcnemar_p_value
from stn_keras.evaluation.paired_comparison import format_comparison
from stn_keras.evaluation.reports import format_report
from stn_keras.evaluation.reports import write_confusion_matrix_csv
from stn_keras.evaluation.reports import write_metrics_json
from stn_keras.evaluation.sample_picking import pick_samples
from stn_keras.evaluation.trained_model import TrainedModel
from stn_keras.evaluation.transformer_pictures import draw_transformer_views
from stn_keras.evaluation.transformer_pictures import write_transformer_samples
from stn_keras.evaluation.transformer_view import TransformerView
