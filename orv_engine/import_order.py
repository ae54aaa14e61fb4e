"""The one module that imports TensorFlow.

Why this exists: on this stack (torch 2.14 + triton 3.x, tensorflow-cpu 2.21), importing
``triton`` *after* TensorFlow segfaults the process. triton is pulled in by torchvision and
by diffusers/transformers model classes, so any module could trigger it. The rule is
therefore simple: triton (and torch) load first, TensorFlow last, and only here.

Every other module gets TensorFlow through :func:`tensorflow` / :func:`tensorflow_datasets`.
Importing any of this project's packages runs :func:`load_torch_first`, so even a user who
later imports TensorFlow directly is safe, as long as one of our packages came first.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings

from orv_engine.console import is_verbose, native_stderr_filtered

_TF_CONFIGURED = False


def load_torch_first() -> None:
    """Import torch and triton (when installed) before anything can import TensorFlow."""
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        warnings.warn(
            "TensorFlow was imported before this package. Importing triton afterwards "
            "(torchvision, diffusers and transformers model classes do) segfaults on this "
            "stack; import orv_engine (or torch and triton) before tensorflow.",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    importlib.import_module("torch")
    try:
        importlib.import_module("triton")
    except ImportError:  # CPU-only wheels without triton are fine
        pass


def tensorflow():
    """Return the ``tensorflow`` module, imported after torch/triton and configured.

    Configuration: TensorFlow never takes GPU memory (torch owns the GPUs; TF only parses
    records and decodes images) and its C++ logging is quiet unless the user asked
    (``--verbose``, :mod:`orv_engine.console`): the native lines TF prints while loading
    ignore ``TF_CPP_MIN_LOG_LEVEL``, so they are filtered out of stderr around the import.
    """
    global _TF_CONFIGURED
    load_torch_first()
    if not is_verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
    else:
        with native_stderr_filtered():
            tf = importlib.import_module("tensorflow")
    if not _TF_CONFIGURED:
        try:
            tf.config.set_visible_devices([], "GPU")
        except (RuntimeError, ValueError):  # already initialised by the user: leave as is
            pass
        _TF_CONFIGURED = True
    return tf


def tensorflow_datasets():
    """Return ``tensorflow_datasets``, after :func:`tensorflow` set the order up."""
    tensorflow()
    return importlib.import_module("tensorflow_datasets")
