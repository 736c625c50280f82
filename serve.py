"""Serve exported SavedModels over TensorFlow Serving's REST API.

The same as ``python -m stn_keras.serving``; see stn_keras/serving/cli.py and
docs/SERVING.md. Example:

    python serve.py --model-dir runs/mnist/saved_model --model-name mnist
"""

from stn_keras.serving.cli import main

if __name__ == "__main__":
    main()
