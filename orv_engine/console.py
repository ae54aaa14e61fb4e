"""What the command-line tools print: their own lines and one progress bar per stage, not
the libraries' chatter. ``--verbose`` brings the libraries' logs back.

Every CLI's ``main`` calls :func:`quiet` right after parsing its arguments, before a model is
loaded or TensorFlow is imported (TensorFlow is only ever imported lazily, through
:mod:`orv_engine.import_order`). Quiet (the default) means:

- TensorFlow: ``TF_CPP_MIN_LOG_LEVEL=3``, and the native lines TF 2.21 writes to stderr while
  it loads (``WARNING: All log messages before absl::InitializeLog() ...``, the oneDNN notice,
  the CPU-feature notice) are dropped: absl logs them before its logging is initialised, so
  ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them. :func:`native_stderr_filtered` captures stderr
  around ``import tensorflow`` and writes back every other line (errors stay visible).
- Python loggers of TensorFlow, absl, transformers, diffusers, huggingface_hub, accelerate at
  ERROR; transformers' and diffusers' progress bars ("Loading weights", "Loading pipeline
  components...", "Writing model shards") off, so the stage bars of our runners (tqdm, with
  ETA) are the only bars.
- One known warning raised inside a library, not by our calls, is filtered (see
  :data:`LIBRARY_INTERNAL_WARNINGS`); warnings caused by our own calls are fixed at the call.

The choice travels to child processes (Ray actors, workers) in the environment variables set
here (``ORV_VERBOSE``, read by :mod:`orv_engine.import_order`; ``TF_CPP_MIN_LOG_LEVEL``,
``TRANSFORMERS_VERBOSITY``, ``DIFFUSERS_VERBOSITY``, ``HF_HUB_DISABLE_PROGRESS_BARS``, read by
the libraries when imported). diffusers' progress bars follow only its API
(``disable_progress_bar``), applied here to an already imported diffusers.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings

VERBOSE_ENV = "ORV_VERBOSE"

# Native lines (C++, absl) that TensorFlow writes to fd 2 at import, dropped when quiet. Lines
# of severity E (error) and F (fatal) are kept.
NATIVE_NOISE = (
    re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
    re.compile(r"[IW]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] "),  # absl INFO/WARNING: oneDNN, cpu_feature_guard
    re.compile(r"To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags"),
)

# Python loggers set to ERROR when quiet.
LIBRARY_LOGGERS = ("tensorflow", "absl", "transformers", "diffusers", "huggingface_hub", "accelerate", "h5py")

# (message regex, category): warnings a library raises from its own code whatever we call.
# diffusers' FluxControlNetModel builds its rotary embedding with the deprecated
# diffusers.models.embeddings.FluxPosEmbed internally (diffusers 0.42), so every ControlNet
# load warns although our code never names FluxPosEmbed. Narrow: this message only.
LIBRARY_INTERNAL_WARNINGS = ((r"`FluxPosEmbed` is deprecated", FutureWarning),)

# Substrings of the output that quiet runs must not show (tests/test_quiet_runs.py).
NOISE_PATTERNS = ("absl::InitializeLog", "oneDNN custom operations", "This TensorFlow binary is optimized",
                  "FutureWarning", "Loading weights", "Loading pipeline components", "Writing model shards",
                  "Downloading and preparing dataset")


# environment variables libraries read at import (and TF_CPP_MIN_LOG_LEVEL at its first log)
_QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error",
              "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "0") == "1"


def add_verbose_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--verbose`` on ``parser`` and on each of its subcommands' parsers (call it once the
    subcommands are added), so that ``tool --verbose cmd`` and ``tool cmd --verbose`` both work:
    on a subcommand the default is SUPPRESS, so an absent flag there does not overwrite the
    top-level one. A parser that already has ``--verbose`` is left as it is."""
    parsers = [parser]
    for action in parser._actions:  # noqa: SLF001 (argparse keeps subcommands only here)
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            parsers += list(dict.fromkeys(action.choices.values()))
    for i, p in enumerate(parsers):
        if "--verbose" in p._option_string_actions:  # noqa: SLF001
            continue
        p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS if i else False,
                       help="show the libraries' logs, warnings and loading bars (TensorFlow, absl, transformers, "
                            "diffusers); quiet by default")
    return parser


def quiet(verbose: bool = False) -> None:
    """Quiet (default) or verbose console for this process and its children; idempotent."""
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    if verbose:
        # the libraries' own defaults: the quiet values are removed (also when inherited from a
        # quiet parent process), any other value the user exported stays
        for name in ("TF_CPP_MIN_LOG_LEVEL", "TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY",
                     "HF_HUB_DISABLE_PROGRESS_BARS"):
            if os.environ.get(name) == _QUIET_ENV[name]:
                del os.environ[name]
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        for message, category in LIBRARY_INTERNAL_WARNINGS:  # in front of an earlier quiet()'s "ignore"
            warnings.filterwarnings("default", message=message, category=category)
    else:
        for name, value in _QUIET_ENV.items():  # read by libraries imported from now on
            os.environ.setdefault(name, value)
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        for message, category in LIBRARY_INTERNAL_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
    _configure_loaded_libraries(verbose)


def _configure_loaded_libraries(verbose: bool) -> None:
    """transformers / diffusers read their verbosity and bars at import: set them on the
    modules already imported (the CLIs import both at module top), not importing them here
    (a CLI that never uses diffusers does not pay for its import)."""
    hub = sys.modules.get("huggingface_hub.utils")
    if hub is not None and verbose:
        hub.enable_progress_bars()
    elif hub is not None:
        hub.disable_progress_bars()
    for name in ("transformers", "diffusers"):
        lib_logging = sys.modules.get(f"{name}.utils.logging")
        if lib_logging is None:
            continue
        if verbose:
            lib_logging.set_verbosity_warning()
            lib_logging.enable_progress_bar()
        else:
            lib_logging.set_verbosity_error()
            lib_logging.disable_progress_bar()


@contextlib.contextmanager
def native_stderr_filtered(patterns=NATIVE_NOISE):
    """Capture what native code writes to fd 2 inside the block and write back the lines no
    pattern matches (nothing is held back when verbose or when fd 2 cannot be duplicated)."""
    if is_verbose():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not any(p.match(line) for p in patterns)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
