"""``orv-train``: train ORV, or ORV-MV when the config has a ``multiview`` section.

    orv-train configs/bridge/stage1.yaml
    orv-train configs/bridge/stage1.yaml --resume latest
    orv-train configs/tiny.yaml --set train.max_steps=50 --set optim.learning_rate=3e-4
    orv-train configs/droid/mv.yaml                       # multi-view (orv-mv-train is the same command)
    accelerate launch --config_file configs/accelerate/8gpu.yaml -m orv_engine.training.cli configs/bridge/stage1.yaml

The config is read and checked (unknown keys, wrong types, missing paths) before anything
is loaded; ``--check`` stops there. ``--pre-encode`` (single view) only fills ``data.latents_dir``.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from orv_engine import config_validation
from orv_engine.config_validation import ConfigError, config_epilog, describe_config, read_yaml_mapping
from orv_engine.console import add_verbose_argument, quiet
from orv_engine.training.config import Config, check_inputs
from orv_engine.training.config_mv import MultiViewConfig
from orv_engine.training.trainer import Trainer
from orv_engine.training.trainer_mv import MultiViewTrainer
from orv_engine.weight_files import CheckpointError


def build_parser(prog: str = "orv-train", description: str = "Train ORV (two-stage SFT of CogVideoX-2B).",
                 pre_encode: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=config_epilog(Config, describe_config(MultiViewConfig,
                                                                                  names=["multiview"])))
    parser.add_argument("config", help="YAML training config (see configs/)")
    parser.add_argument("--resume", default=None,
                        help="'latest' (the newest checkpoint under output_dir, or a fresh start if none) "
                             "or a checkpoint folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, dotted key, YAML value (repeatable; keys below)")
    parser.add_argument("--check", action="store_true", help="check the config, print it and exit")
    if pre_encode:
        parser.add_argument("--pre-encode", action="store_true", help="only pre-encode data.latents_dir, then exit")
    return add_verbose_argument(parser)


def _load_checked(prog: str, load, args):
    """The config, or None after printing the error (exit status 2)."""
    try:
        return load(args.config, args.overrides)
    except ConfigError as e:
        print(f"{prog}: config error: {e}", file=sys.stderr)
        return None


def _print_config(config) -> int:
    print(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return 0


def _train(trainer, resume) -> int:
    summary = trainer.train(resume=resume)
    trainer.log(f"done: step {summary['step']}, peak memory {summary['peak_memory_mb']:.0f} MB")
    return 0


def load_run_config(path, overrides=(), check_paths: bool = True):
    """A training config, single- or multi-view: a YAML with a ``multiview`` section is an ORV-MV
    run (:class:`~orv_engine.training.config_mv.MultiViewConfig`), any other an ORV run."""
    values = read_yaml_mapping(path)
    return config_validation.config_from_dict(MultiViewConfig if "multiview" in values else Config, values,
                                              overrides, check_inputs if check_paths else None)


def main(argv=None, prog: str = "orv-train", require_multiview: bool = False) -> int:
    args = build_parser(prog).parse_args(argv)
    quiet(args.verbose)  # before any model is loaded or TensorFlow imported
    try:
        if require_multiview and "multiview" not in read_yaml_mapping(args.config):
            raise ConfigError(f"{args.config} has no multiview section (an ORV-MV config does)")
    except ConfigError as e:
        print(f"{prog}: config error: {e}", file=sys.stderr)
        return 2
    config = _load_checked(prog, load_run_config, args)
    if config is None:
        return 2
    multiview = isinstance(config, MultiViewConfig)
    if args.check:
        return _print_config(config)
    if args.pre_encode and (multiview or not config.data.latents_dir):
        what = "ORV-MV encodes its clips online" if multiview else "data.latents_dir: required for --pre-encode"
        print(f"{prog}: config error: {what}", file=sys.stderr)
        return 2

    try:
        trainer = (MultiViewTrainer if multiview else Trainer)(config)
        if args.pre_encode:
            trainer.setup()
            return 0
        return _train(trainer, args.resume)
    except (CheckpointError, FileNotFoundError) as e:  # a damaged model folder or checkpoint, named
        print(f"{prog}: {e}", file=sys.stderr)
        return 2


def main_multiview(argv=None) -> int:
    """``orv-mv-train``: ``orv-train`` for a config with a ``multiview`` section (kept as a name)."""
    return main(argv, prog="orv-mv-train", require_multiview=True)


if __name__ == "__main__":
    sys.exit(main())
