"""Optional dependencies: check one is importable, or fail with a one-line install command.

``pip install -e .`` installs what training on the embedded datasets needs. Other paths need an
extra (setup.cfg ``[options.extras_require]``) or a package of their own; each calls
:func:`require` before any device work, so a missing package costs one line, not a traceback::

    tf = require("tensorflow", "reading cifar10 in TFRecord format")
    # MissingDependencyError: tensorflow is not installed: reading cifar10 in TFRecord format
    #   needs it; install it with: pip install -e '.[data]'

The command lines (``jaxssl.main``, ``scripts/*.py``) print the message and exit with code 1.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import shlex
import sys

# module -> (pip package or extra, what installs it). An extra is written '[name]' and is
# installed from this checkout; anything else is a package name on PyPI.
INSTALL = {
    "tensorflow": "[data]",          # tensorflow-cpu: tfds preparation, TFRecord reading, mock_data
    "matplotlib": "[plots]",
    "torch": "torch",
    "torchvision": "torchvision",
    "timm": "timm",
    "safetensors": "safetensors",
    "transformers": "transformers",
    "PIL": "Pillow",
    "apache_beam": "apache-beam",
}


class MissingDependencyError(ImportError):
    """An optional package is not installed; ``str(err)`` is one line ending in the install command."""

    def __init__(self, module: str, needed_for: str, command: str):
        self.module, self.needed_for, self.command = module, needed_for, command
        super().__init__(f"{module} is not installed: {needed_for} needs it; install it with: "
                         f"{command}", name=module)


def _checkout_root() -> str | None:
    """The source checkout jaxssl is imported from (holds setup.cfg), or None (a wheel install)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return root if os.path.isfile(os.path.join(root, "setup.cfg")) else None


def install_command(module: str) -> str:
    """The pip command that installs ``module``: an extra of this checkout or a PyPI package.

    ``pip install -e '.[data]'`` when run from the checkout, ``pip install -e '/path/to/jaxssl[data]'``
    from elsewhere; ``pip install torch`` for a package that is no extra.
    """
    target = INSTALL.get(module, module)
    if not target.startswith("["):
        return f"pip install {shlex.quote(target)}"
    root = _checkout_root()
    if root is None:
        return f"pip install 'jaxssl{target}'"
    where = "." if os.path.abspath(os.getcwd()) == root else root
    return f"pip install -e {shlex.quote(where + target)}"


def is_available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    if sys.modules.get(module) is not None:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, needed_for: str):
    """Import and return ``module``; raise :class:`MissingDependencyError` if it is not installed.

    ``needed_for`` says why, e.g. ``"preparing cifar10 (tensorflow-datasets)"``. Only a missing
    module is turned into the one-line error; an installed module that fails on import raises
    its own error.
    """
    if not is_available(module):
        raise MissingDependencyError(module, needed_for, install_command(module))
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name == module:
            raise MissingDependencyError(module, needed_for, install_command(module)) from None
        raise
