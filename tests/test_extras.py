"""Optional dependencies: code that needs an extra names it when it is missing."""

import sys

import pytest

from stn_keras import extras
from stn_keras.serving import app as serving_app
from stn_keras.serving import http_server

SERVING_HINT = "Install stn_keras's serving extra: pip install 'stn_keras[serving]'"


def test_an_installed_module_is_imported():
    import fastapi

    assert extras.import_extra("fastapi", "serving", "The HTTP server") is fastapi


@pytest.mark.parametrize(
    "missing,start",
    [
        ("fastapi", lambda: serving_app.create_app({"model": "/nowhere"})),
        ("uvicorn", lambda: http_server.run_server(app=None, host="127.0.0.1", port=0)),
    ],
)
def test_the_server_without_the_serving_extra_names_it(monkeypatch, missing, start):
    # None in sys.modules makes an import fail as if the package were absent.
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(ModuleNotFoundError) as error:
        start()
    message = str(error.value)
    assert message.startswith(f"The HTTP server needs {missing}, which cannot be imported (")
    assert SERVING_HINT in message
    assert error.value.name == missing
