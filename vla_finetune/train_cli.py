"""``orv-vla-train``: post-finetune RoboVLM or SpatialVLA on an RLDS mixture from a YAML config.

    orv-vla-train configs/vla/robovlm_bridge_orv.yaml
    orv-vla-train configs/vla/spatialvla_bridge_orv.yaml --resume latest
    orv-vla-train configs/vla/tiny_robovlm.yaml --set train.max_steps=20 --check
    accelerate launch --config_file configs/vla/accelerate/deepspeed_zero2.yaml \\
        -m vla_finetune.train_cli configs/vla/robovlm_bridge_orv.yaml

The config is read and checked (unknown keys, wrong types, missing folders/statistics)
before anything is loaded; ``--check`` stops there.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from orv_engine import config_validation
from orv_engine.config_validation import ConfigError, config_epilog
from orv_engine.console import add_verbose_argument, quiet
from orv_engine.weight_files import CheckpointError
from vla_finetune.training.config import VLAConfig, check_inputs
from vla_finetune.training.trainer import VLATrainer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orv-vla-train", description="Post-finetune a VLA policy (RoboVLM, SpatialVLA).",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=config_epilog(VLAConfig))
    parser.add_argument("config", help="YAML config (see configs/vla/)")
    parser.add_argument("--resume", default=None, help="'latest' or a checkpoint folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, dotted key, YAML value (repeatable; keys below)")
    parser.add_argument("--check", action="store_true", help="check the config, print it and exit")
    return add_verbose_argument(parser)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    quiet(args.verbose)  # before any model is loaded or TensorFlow imported
    try:
        config = config_validation.load_config(VLAConfig, args.config, args.overrides, check_inputs)
    except ConfigError as e:
        print(f"orv-vla-train: config error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False))
        return 0
    trainer = VLATrainer(config)
    try:
        summary = trainer.train(resume=args.resume)
    except (CheckpointError, FileNotFoundError) as e:  # a damaged checkpoint or --resume folder, named
        print(f"orv-vla-train: {e}", file=sys.stderr)
        return 2
    trainer.log(f"done: step {summary['step']}, peak memory {summary['peak_memory_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
