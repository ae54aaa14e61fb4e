"""Importing TensorFlow before triton segfaults on this stack; our packages must make any
import order safe. Each order runs in a fresh interpreter (a segfault kills only it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# After our packages, pull in everything that loads TensorFlow or triton.
HEAVY = (
    "import tensorflow, tensorflow_datasets; import torchvision; "
    "from diffusers import CogVideoXTransformer3DModel; from transformers import T5EncoderModel"
)

ORDERS = [
    "import orv_engine, augment, filtering, vla_finetune, benchmarks",
    "import benchmarks, vla_finetune, filtering, augment, orv_engine",
    "import filtering; import orv_engine.data.rlds_reader as r; r.RLDSReader",
    "import vla_finetune; from orv_engine import import_order; import_order.tensorflow()",
]


def run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("order", ORDERS)
def test_any_order_of_our_packages_then_tensorflow_and_triton(order):
    result = run(f"{order}\n{HEAVY}\nprint('alive')")
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert "alive" in result.stdout


def test_tensorflow_first_is_warned_about_not_crashed():
    result = run("import tensorflow\nimport orv_engine\nprint('alive')")
    assert result.returncode == 0 and "alive" in result.stdout
    assert "TensorFlow was imported before this package" in result.stderr


def test_clip_reading_needs_no_diffusers_transformers_or_tensorflow():
    """The vLLM side venv reads clip folders without diffusers: the data code (and the
    checkpoint-convention vocabulary it uses) must not pull in the model stack."""
    import subprocess
    import sys

    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('diffusers', 'transformers', 'tensorflow'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import orv_engine.data.clip_files, orv_engine.data.clips, orv_engine.preprocessing\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
