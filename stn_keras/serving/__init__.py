"""A server speaking TensorFlow Serving's REST API for exported SavedModels.

`create_app` builds the FastAPI application; ``python -m stn_keras.serving``
(or ``serve.py`` at the repository root) runs it with uvicorn
(`run_server`). Needs TensorFlow, FastAPI and uvicorn.
"""

from stn_keras.serving.app import create_app
from stn_keras.serving.batcher import Batcher
from stn_keras.serving.http_server import run_server
from stn_keras.serving.served_model import ServedModel
from stn_keras.serving.serving_error import ServingError
