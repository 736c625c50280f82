"""Optional dependencies, installed by the extras of the package.

``pip install stn_keras`` installs what the layers, models, training and
evaluation need; ``stn_keras[serving]`` adds the HTTP server's packages and
``stn_keras[tensorboard]`` TensorBoard's log writer. Code that needs one of
them imports it through :func:`import_extra`, so that a missing package
says which extra installs it.
"""

import importlib


def install_hint(extra):
    """How to install ``extra``, as a sentence."""
    return (
        f"Install stn_keras's {extra} extra: pip install 'stn_keras[{extra}]' "
        "(or, in a checkout of the repository, pip install -r requirements.txt)."
    )


def import_extra(module_name, extra, needed_by):
    """Imports ``module_name``, one of the packages of the extra ``extra``.

    Args:
        module_name: the module to import, e.g. ``"uvicorn"``.
        extra: the extra that installs it, e.g. ``"serving"``.
        needed_by: what needs it, for the message, e.g. ``"The HTTP server"``.

    Returns:
        The module.

    Raises:
        ModuleNotFoundError: the module (or a package it needs) is not
            installed; the message names the extra to install.
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"{needed_by} needs {module_name}, which cannot be imported ({error}). "
            + install_hint(extra),
            name=error.name,
        ) from error
