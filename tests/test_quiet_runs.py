"""Quiet by default (:mod:`orv_engine.console`): a real ``orv-augment`` run prints its own lines
and one progress bar per stage, none of the libraries' chatter (TensorFlow/absl/oneDNN native
lines, FutureWarnings, "Loading weights" / "Loading pipeline components" bars); ``--verbose``
brings the library logs back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import augment  # noqa: F401  (import order)
from augment.demo import write_demo_models
from orv_engine.console import NOISE_PATTERNS, native_stderr_filtered, quiet
from test_augment_loop import small_config

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ORV_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}
    return {**env, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}


def _noise(text: str) -> list[str]:
    return [p for p in NOISE_PATTERNS if p in text]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    """One episode x (1 painted variant + the replay) on the tiny models, 8 steps."""
    folder = tmp_path_factory.mktemp("quiet")
    values = small_config(write_demo_models(folder / "models"), replay=True, max_episodes=1)
    values["first_frames"]["variants_per_episode"] = 1
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _augment(config: Path, run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "augment.cli", "run", "--config", str(config),
                           "--run-dir", str(run_dir), *args], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=600)


def test_a_run_prints_its_own_lines_and_one_bar_per_stage_only(config_file, tmp_path):
    done = _augment(config_file, tmp_path / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _noise(done.stdout + done.stderr) == [], done.stderr[-3000:]
    assert not re.search(r"\w+Warning\b", done.stderr), done.stderr[-3000:]  # no warning of any kind
    for stage in ("sources", "first_frames", "rollouts", "scores"):  # the stage bars, with elapsed<remaining (ETA)
        assert re.search(rf"{stage}: +\d+%.*\[\d\d:\d\d<\d\d:\d\d", done.stderr), done.stderr
    assert "filter: kept" in done.stdout and "report: " in done.stdout


def test_verbose_brings_the_library_logs_back(config_file, tmp_path):
    # sources (TensorFlow reads the RLDS records) and first frames (FLUX + ControlNets) suffice
    done = _augment(config_file, tmp_path / "run", "--stages", "sources", "first_frames", "--verbose")
    assert done.returncode == 0, done.stderr[-3000:]
    shown = _noise(done.stdout + done.stderr)
    assert "oneDNN custom operations" in shown and "FutureWarning" in shown, done.stderr[-3000:]
    assert "Loading weights" in shown or "Loading pipeline components" in shown, done.stderr[-3000:]


def test_native_filter_drops_absl_info_lines_and_keeps_errors(capfd, monkeypatch):
    monkeypatch.delenv("ORV_VERBOSE", raising=False)
    with native_stderr_filtered():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1796643899.485396   18777 port.cc:153] oneDNN custom operations are on.\n"
                    b"E0000 00:00:1796643899.485396   18777 thing.cc:1] a real error\n"
                    b"plain line\n")
    err = capfd.readouterr().err
    assert err == "E0000 00:00:1796643899.485396   18777 thing.cc:1] a real error\nplain line\n"


def test_quiet_is_reversible_and_narrow():
    import warnings

    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    saved_env, saved_filters = dict(os.environ), warnings.filters[:]
    for name in ("ORV_VERBOSE", "TF_CPP_MIN_LOG_LEVEL", "TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY",
                 "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.pop(name, None)
    try:
        quiet(False)
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3" and os.environ["ORV_VERBOSE"] == "0"
        assert not diffusers_logging.is_progress_bar_enabled() and not transformers_logging.is_progress_bar_enabled()
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn("`FluxPosEmbed` is deprecated and will be removed", FutureWarning)
            warnings.warn("something else is deprecated", FutureWarning)  # other warnings still show
        assert [str(w.message) for w in caught] == ["something else is deprecated"]
        quiet(True)
        assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ and os.environ["ORV_VERBOSE"] == "1"
        assert diffusers_logging.is_progress_bar_enabled() and transformers_logging.is_progress_bar_enabled()
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn("`FluxPosEmbed` is deprecated and will be removed", FutureWarning)
        assert len(caught) == 1
    finally:  # this process's later tests see what they saw before
        os.environ.clear()
        os.environ.update(saved_env)
        warnings.filters[:] = saved_filters
        warnings._filters_mutated()  # noqa: SLF001
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()
        diffusers_logging.set_verbosity_warning()
        transformers_logging.set_verbosity_warning()


def _console_scripts() -> dict[str, str]:
    """``name -> module:function`` of every command setup.cfg installs."""
    text = (ROOT / "setup.cfg").read_text()
    block = text.split("console_scripts =", 1)[1]
    scripts = {}
    for line in block.splitlines()[1:]:
        if not line.startswith((" ", "\t")) or "=" not in line:
            break
        name, target = (part.strip() for part in line.split("=", 1))
        scripts[name] = target
    return scripts


def test_every_command_has_verbose(capsys):
    """Each installed command is quiet by default and takes ``--verbose`` (its --help says so)."""
    scripts = _console_scripts()
    assert {"orv-augment", "orv-simpler", "orv-convert", "orv-sim", "orv-data"} <= set(scripts)
    for name, target in scripts.items():
        module, function = target.split(":")
        main = getattr(__import__(module, fromlist=[function]), function)
        with pytest.raises(SystemExit) as exit_info:
            main(["--help"])
        assert exit_info.value.code == 0, name
        assert "--verbose" in capsys.readouterr().out, f"{name} ({target}) has no --verbose"
